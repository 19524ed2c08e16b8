"""Which addresses an http job may reach (gdts.worker.egress): public ones, and others only when
httpJobAllow lists them."""

from __future__ import annotations

import socket

import pytest

from gdts.config import WorkerConfig, load_config
from gdts.errors import ConfigError
from gdts.worker.egress import EgressPolicy, EgressRefused


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("192.168.1.1", "private"),
        ("fd00::5", "private"),
        ("100.64.0.1", "not public"),
        ("224.0.0.251", "multicast"),
    ],
)
def test_what_is_not_public_is_refused_by_default_naming_the_rule(address: str, kind: str) -> None:
    reason = EgressPolicy().refusal(address)
    assert reason is not None
    assert f"is {kind}:" in reason and "httpJobAllow" in reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert EgressPolicy().refusal(address) is None


def test_httpjoballow_opens_exactly_what_it_lists() -> None:
    policy = EgressPolicy(["127.0.0.1", "10.1.0.0/16", "::1"])
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("::1") is None
    assert policy.refusal("10.1.200.3") is None
    assert policy.refusal("127.0.0.2") is not None
    assert policy.refusal("10.2.0.1") is not None
    assert policy.refusal("169.254.169.254") is not None


def test_the_socket_factory_refuses_before_any_socket_exists() -> None:
    policy = EgressPolicy()
    with pytest.raises(EgressRefused, match="169.254.169.254 is link-local"):
        policy.socket_for((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80)))
    sock = EgressPolicy(["127.0.0.1"]).socket_for(
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80))
    )
    sock.close()


def test_a_bad_allow_entry_is_a_config_error_naming_the_key(tmp_path) -> None:
    path = tmp_path / "worker.json"
    path.write_text('{"httpJobAllow": ["127.0.0.1", "not-a-network"]}')
    with pytest.raises(ConfigError, match="httpJobAllow.*not-a-network"):
        load_config(WorkerConfig, path, {})
