"""gdts.etcd.channel_target: the grpc target built from the configured etcd endpoints."""

import pytest

from gdts.errors import ConfigError
from gdts.etcd import channel_target, names_to_resolve

# --- one endpoint -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "target"),
    [
        ("127.0.0.1:2379", "127.0.0.1:2379"),
        ("etcd.internal:2380", "etcd.internal:2380"),
        ("localhost:12379", "localhost:12379"),
        ("http://127.0.0.1:2379", "127.0.0.1:2379"),
        ("http://etcd.internal:2379/", "etcd.internal:2379"),
        ("https://etcd.internal:2379", "etcd.internal:2379"),
        ("  10.0.0.1:2379  ", "10.0.0.1:2379"),
        ("10.0.0.1", "10.0.0.1:2379"),
        ("http://etcd.internal", "etcd.internal:2379"),
    ],
)
def test_one_endpoint_is_host_port(endpoint: str, target: str) -> None:
    assert channel_target([endpoint]) == target


def test_one_ipv6_endpoint_keeps_its_brackets() -> None:
    # "::1:2379" would be read by grpc as the bare address ::1:2379 (0:0:0:0:0:0:1:2379) on the
    # default port, not as ::1 port 2379.
    assert channel_target(["[::1]:2379"]) in ("[::1]:2379", "ipv6:[::1]:2379")
    assert channel_target(["http://[fd00::1]:2380"]) in ("[fd00::1]:2380", "ipv6:[fd00::1]:2380")


# --- several endpoints --------------------------------------------------------------------------


def test_several_ipv4_endpoints() -> None:
    endpoints = ["10.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379"]
    assert channel_target(endpoints) == "ipv4:10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379"


def test_several_ipv4_endpoints_with_schemes_and_ports() -> None:
    endpoints = ["http://10.0.0.1:2379", "10.0.0.2:2380", "https://10.0.0.3"]
    assert channel_target(endpoints) == "ipv4:10.0.0.1:2379,10.0.0.2:2380,10.0.0.3:2379"


def test_several_ipv6_endpoints() -> None:
    endpoints = ["[fd00::1]:2379", "http://[fd00::2]:2380"]
    assert channel_target(endpoints) == "ipv6:[fd00::1]:2379,[fd00::2]:2380"


def test_several_ipv6_endpoints_keep_their_order() -> None:
    endpoints = ["[::1]:3", "[::1]:1", "[::1]:2"]
    assert channel_target(endpoints) == "ipv6:[::1]:3,[::1]:1,[::1]:2"


@pytest.mark.parametrize(
    "endpoints",
    [
        ["etcd1:2379", "etcd2:2379"],
        ["10.0.0.1:2379", "etcd2:2379"],
        ["etcd1:2379", "[fd00::1]:2379"],
        ["10.0.0.1:2379", "[fd00::1]:2379"],
        ["localhost:2379", "127.0.0.1:2380"],
    ],
    ids=["names", "ipv4-and-name", "name-and-ipv6", "ipv4-and-ipv6", "localhost-and-ipv4"],
)
def test_several_endpoints_not_all_of_one_ip_family_are_refused(endpoints: list[str]) -> None:
    with pytest.raises(ConfigError, match=r"^config etcdEndpoints: several endpoints") as exc:
        channel_target(endpoints)
    assert exc.value.key == "etcdEndpoints"


# --- bad endpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    ["10.0.0.1:abc", "10.0.0.1:70000", "10.0.0.1:65536", "etcd:-1", "http://etcd:port"],
)
def test_bad_port_is_refused(endpoint: str) -> None:
    with pytest.raises(ConfigError, match=r"^config etcdEndpoints: .* has a bad port") as exc:
        channel_target([endpoint])
    assert exc.value.key == "etcdEndpoints"


def test_bad_port_in_a_list_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^config etcdEndpoints: '10\.0\.0\.2:x' has a bad port"):
        channel_target(["10.0.0.1:2379", "10.0.0.2:x"])


def test_port_zero_is_refused_not_replaced_by_the_default() -> None:
    with pytest.raises(ConfigError, match=r"^config etcdEndpoints: "):
        channel_target(["10.0.0.1:0"])


@pytest.mark.parametrize(
    "endpoint",
    ["ftp://10.0.0.1:2379", "unix:///run/etcd.sock", "10.0.0.1:2379/v3", "http://:2379", ""],
)
def test_endpoint_that_is_not_host_port_is_refused(endpoint: str) -> None:
    with pytest.raises(ConfigError, match=r"^config etcdEndpoints: .* is not host:port"):
        channel_target([endpoint])


def test_several_host_names_need_resolving_and_then_share_one_target() -> None:
    endpoints = ["etcd-a:2379", "10.0.0.2:2379", "etcd-c:2380"]
    assert names_to_resolve(endpoints) == ["etcd-a", "etcd-c"]
    target = channel_target(endpoints, {"etcd-a": "10.0.0.1", "etcd-c": "10.0.0.3"})
    assert target == "ipv4:10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2380"


def test_a_single_host_name_is_left_to_grpc() -> None:
    assert names_to_resolve(["etcd.internal:2379"]) == []
    assert names_to_resolve(["10.0.0.1:1", "10.0.0.2:2"]) == []
