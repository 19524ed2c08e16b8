"""TLS against real servers: etcd with client-certificate auth, etcd passwords over TLS, mongod
in requireTLS mode, the manager's HTTPS listener, and a job run end to end through TLS stores.
Certificates are made per session by tests/certs.py; nothing here is mocked."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import pytest_asyncio
from aetcd import rpc
from cryptography.hazmat.primitives import serialization
from pymongo import AsyncMongoClient, monitoring

from gdts.config import StoreConfig, WorkerConfig, load_config
from gdts.errors import ConfigError, StoreUnavailableError
from gdts.etcd import EtcdClient, EtcdTls, etcd_errors, open_etcd
from gdts.localstack import EtcdProcess, MongoProcess, ServerTls, free_port
from gdts.mongo import mongo_errors, open_mongo
from tests.certs import CertFiles, make_certs
from tests.support import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    EVERY_SECOND,
    Cluster,
    Stack,
    holds,
    job_runs,
    save_job,
    wait_until,
)

# A bound on each TLS exchange below, above the clients' own deadlines (1-3 s): a client that
# hangs instead of failing shows as a TimeoutError, not as the error the test expects.
REFUSAL_LIMIT_S = 10


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tls_etcd(
    certs: CertFiles, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[EtcdProcess]:
    """etcd on https that requires a client certificate signed by the test CA."""
    base = tmp_path_factory.mktemp("tls-etcd")
    tls = ServerTls(certs.server_cert, certs.server_key, certs.ca, client_cert_auth=True)
    async with EtcdProcess(base / "data", log_path=base / "etcd.log", tls=tls) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tls_mongo(
    certs: CertFiles, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[MongoProcess]:
    """mongod in requireTLS mode that requires a client certificate signed by the test CA."""
    base = tmp_path_factory.mktemp("tls-mongo")
    tls = ServerTls(certs.server_cert, certs.server_key, certs.ca, client_cert_auth=True)
    async with MongoProcess(base / "data", log_path=base / "mongod.log", tls=tls) as server:
        yield server


def etcd_tls(certs: CertFiles, *, ca: Path | None = None, client_cert: bool = True) -> EtcdTls:
    if not client_cert:
        return EtcdTls((ca or certs.ca).read_bytes())
    return EtcdTls(
        (ca or certs.ca).read_bytes(), certs.client_cert.read_bytes(), certs.client_key.read_bytes()
    )


def etcd_tls_config(server: EtcdProcess, certs: CertFiles) -> dict[str, object]:
    """Config keys for a manager or worker that talks to ``server``."""
    return {
        "etcdEndpoints": [server.endpoint],
        "etcdCaFile": str(certs.ca),
        "etcdCertFile": str(certs.client_cert),
        "etcdKeyFile": str(certs.client_key),
    }


def mongo_tls_uri(server: MongoProcess, *, ca: Path, client_pem: Path | None) -> str:
    uri = f"mongodb://{server.endpoint}/?tls=true&tlsCAFile={quote(str(ca))}"
    if client_pem is not None:
        uri += f"&tlsCertificateKeyFile={quote(str(client_pem))}"
    return uri


async def put_and_get(client: EtcdClient, key: bytes, value: bytes) -> bytes:
    """Write and read back one key, then close the client."""
    async with asyncio.timeout(REFUSAL_LIMIT_S):
        try:
            with etcd_errors():
                await client.put(key, value)
                got = await client.get(key)
        finally:
            await client.close()
    assert got is not None
    return bytes(got.value)


# --- config: checked at start, naming the key -------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        ({"etcd_ca_file": "ca.pem", "etcd_cert_file": "c.pem"}, "etcdCertFile"),
        ({"etcd_ca_file": "ca.pem", "etcd_key_file": "k.pem"}, "etcdCertFile"),
        ({"etcd_cert_file": "c.pem", "etcd_key_file": "k.pem"}, "etcdCaFile"),
    ],
    ids=["cert without key", "key without cert", "cert without CA"],
)
def test_config_refuses_incomplete_etcd_tls(keys: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=f"^config {named}: "):
        StoreConfig(**keys).validate()


def test_config_reads_etcd_tls_keys_from_the_environment(certs: CertFiles) -> None:
    config = load_config(
        WorkerConfig,
        None,
        {
            "GDTS_ETCD_CA_FILE": str(certs.ca),
            "GDTS_ETCD_CERT_FILE": str(certs.client_cert),
            "GDTS_ETCD_KEY_FILE": str(certs.client_key),
        },
    )
    assert (config.etcd_ca_file, config.etcd_cert_file) == (str(certs.ca), str(certs.client_cert))


@pytest.mark.parametrize("missing", ["etcd_ca_file", "etcd_cert_file", "etcd_key_file"])
def test_an_unreadable_etcd_tls_file_is_a_config_error(
    certs: CertFiles, tmp_path: Path, missing: str
) -> None:
    config = dataclasses.replace(
        StoreConfig(
            etcd_ca_file=str(certs.ca),
            etcd_cert_file=str(certs.client_cert),
            etcd_key_file=str(certs.client_key),
        ),
        **{missing: str(tmp_path / "absent.pem")},
    )
    key = {"etcd_ca_file": "etcdCaFile", "etcd_cert_file": "etcdCertFile"}.get(
        missing, "etcdKeyFile"
    )
    with pytest.raises(ConfigError, match=f"^config {key}: cannot read .*absent.pem"):
        open_etcd(config)


def test_an_etcd_ca_file_without_a_certificate_is_a_config_error(tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="^config etcdCaFile: .* holds no PEM certificate"):
        open_etcd(StoreConfig(etcd_ca_file=str(garbage)))


def test_an_etcd_key_that_does_not_match_its_certificate_is_a_config_error(
    certs: CertFiles,
) -> None:
    config = StoreConfig(
        etcd_ca_file=str(certs.ca),
        etcd_cert_file=str(certs.client_cert),
        etcd_key_file=str(certs.server_key),
    )
    with pytest.raises(ConfigError, match="^config etcdCertFile: .* not a PEM certificate"):
        open_etcd(config)


def encrypted_copy(key_file: Path, to: Path) -> Path:
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    to.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    return to


def test_an_encrypted_etcd_key_is_a_config_error_not_a_prompt(
    certs: CertFiles, tmp_path: Path
) -> None:
    config = StoreConfig(
        etcd_ca_file=str(certs.ca),
        etcd_cert_file=str(certs.client_cert),
        etcd_key_file=str(encrypted_copy(certs.client_key, tmp_path / "key.pem")),
    )
    with pytest.raises(ConfigError, match="^config etcdCertFile: .* unencrypted key"):
        open_etcd(config)


def test_the_client_key_stays_out_of_repr(certs: CertFiles) -> None:
    tls = etcd_tls(certs)
    assert tls.key is not None and tls.key.decode() not in repr(tls)


# --- etcd over TLS ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_client_certificate_signed_by_the_ca_can_put_and_get(
    tls_etcd: EtcdProcess, certs: CertFiles
) -> None:
    client = EtcdClient([tls_etcd.endpoint], timeout=3, tls=etcd_tls(certs))
    assert await put_and_get(client, b"/tls/one", b"1") == b"1"
    # The certificate's DNS name works as well as its IP address.
    client = EtcdClient([f"localhost:{tls_etcd.client_port}"], timeout=3, tls=etcd_tls(certs))
    assert await put_and_get(client, b"/tls/dns", b"2") == b"2"
    # localstack's own probes speak TLS too.
    assert (await tls_etcd.status())["header"]["member_id"]


@pytest.mark.asyncio
async def test_several_ip_endpoints_are_checked_against_the_ip_san(
    tls_etcd: EtcdProcess, certs: CertFiles
) -> None:
    # One member listed twice is enough to get grpc's "ipv4:a,b" target, whose name no
    # certificate carries: the client checks the first endpoint's address instead.
    endpoints = [tls_etcd.endpoint, f"http://{tls_etcd.endpoint}"]
    client = EtcdClient(endpoints, timeout=3, tls=etcd_tls(certs))
    assert await put_and_get(client, b"/tls/several", b"3") == b"3"


@pytest.mark.asyncio
async def test_a_server_certificate_from_another_ca_is_refused(
    tls_etcd: EtcdProcess, certs: CertFiles
) -> None:
    client = EtcdClient([tls_etcd.endpoint], timeout=3, tls=etcd_tls(certs, ca=certs.other_ca))
    with pytest.raises(StoreUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
        await put_and_get(client, b"/tls/wrong-ca", b"x")


@pytest.mark.asyncio
async def test_a_server_certificate_for_another_name_is_refused(
    tls_etcd: EtcdProcess, certs: CertFiles
) -> None:
    tls = dataclasses.replace(etcd_tls(certs), server_name="etcd.example.org")
    client = EtcdClient([tls_etcd.endpoint], timeout=3, tls=tls)
    with pytest.raises(StoreUnavailableError, match="[Hh]ostname"):
        await put_and_get(client, b"/tls/wrong-name", b"x")


@pytest.mark.asyncio
async def test_etcd_server_name_from_config_is_what_certificates_are_checked_against(
    tls_etcd: EtcdProcess, certs: CertFiles
) -> None:
    keys = {
        "etcd_endpoints": (tls_etcd.endpoint,),
        "etcd_ca_file": str(certs.ca),
        "etcd_cert_file": str(certs.client_cert),
        "etcd_key_file": str(certs.client_key),
    }
    # The server certificate names localhost too: connecting by IP, checking the name works.
    named = open_etcd(StoreConfig(**keys, etcd_server_name="localhost"))
    assert await put_and_get(named, b"/tls/named", b"n") == b"n"
    wrong = open_etcd(StoreConfig(**keys, etcd_server_name="etcd.example.org"))
    with pytest.raises(StoreUnavailableError, match="[Hh]ostname"):
        await put_and_get(wrong, b"/tls/named-wrong", b"x")


@pytest.mark.asyncio
async def test_etcd_requiring_client_certificates_refuses_a_client_without_one(
    tls_etcd: EtcdProcess, certs: CertFiles
) -> None:
    client = EtcdClient([tls_etcd.endpoint], timeout=3, tls=etcd_tls(certs, client_cert=False))
    with pytest.raises(StoreUnavailableError):
        await put_and_get(client, b"/tls/no-cert", b"x")
    plaintext = EtcdClient([tls_etcd.endpoint], timeout=3)
    with pytest.raises(StoreUnavailableError):
        await put_and_get(plaintext, b"/tls/plaintext", b"x")


@pytest.mark.asyncio
async def test_username_and_password_over_tls(certs: CertFiles, tmp_path: Path) -> None:
    # Server TLS without client certificates: the password is what identifies the client.
    tls = ServerTls(certs.server_cert, certs.server_key, certs.ca, client_cert_auth=False)
    async with EtcdProcess(tmp_path / "etcd", log_path=tmp_path / "etcd.log", tls=tls) as server:
        # What `etcdctl user add root; etcdctl auth enable` does, without needing etcdctl.
        admin = EtcdClient([server.endpoint], timeout=3, tls=etcd_tls(certs, client_cert=False))
        try:
            await admin.connect()
            auth = rpc.AuthStub(admin.channel)
            await auth.RoleAdd(rpc.AuthRoleAddRequest(name="root"), timeout=3)
            await auth.UserAdd(rpc.AuthUserAddRequest(name="root", password="s3cret"), timeout=3)
            await auth.UserGrantRole(
                rpc.AuthUserGrantRoleRequest(user="root", role="root"), timeout=3
            )
            await auth.AuthEnable(rpc.AuthEnableRequest(), timeout=3)
        finally:
            await admin.close()

        def client(username: str, password: str) -> EtcdClient:
            return EtcdClient(
                [server.endpoint],
                timeout=3,
                username=username,
                password=password,
                tls=etcd_tls(certs, client_cert=False),
            )

        assert await put_and_get(client("root", "s3cret"), b"/tls/auth", b"ok") == b"ok"
        with pytest.raises(StoreUnavailableError, match="authentication failed"):
            await put_and_get(client("root", "wrong"), b"/tls/auth", b"no")
        with pytest.raises(StoreUnavailableError, match="user name is empty"):
            await put_and_get(client("", ""), b"/tls/auth", b"no")


# --- MongoDB over TLS, configured through the URI ---------------------------------------------


@pytest.mark.asyncio
async def test_mongo_client_certificate_signed_by_the_ca_reads_and_writes(
    tls_mongo: MongoProcess, certs: CertFiles, stack: Stack
) -> None:
    client = open_mongo(mongo_tls_uri(tls_mongo, ca=certs.ca, client_pem=certs.client_pem), 3000)
    try:
        with mongo_errors():
            await client[stack.database].tls.insert_one({"_id": 1, "over": "tls"})
            assert await client[stack.database].tls.find_one({"_id": 1}) == {
                "_id": 1,
                "over": "tls",
            }
    finally:
        await client.close()


class HeartbeatsInFlight(monitoring.ServerHeartbeatListener):
    """Counts the driver's server checks that have started and not yet ended."""

    def __init__(self) -> None:
        self.running = 0

    def started(self, event: monitoring.ServerHeartbeatStartedEvent) -> None:
        self.running += 1

    def succeeded(self, event: monitoring.ServerHeartbeatSucceededEvent) -> None:
        self.running -= 1

    def failed(self, event: monitoring.ServerHeartbeatFailedEvent) -> None:
        self.running -= 1


@pytest.mark.asyncio
@pytest.mark.parametrize("refused", ["wrong CA", "no client certificate"])
async def test_mongo_refuses_a_wrong_ca_or_no_client_certificate(
    tls_mongo: MongoProcess, certs: CertFiles, stack: Stack, refused: str
) -> None:
    if refused == "wrong CA":
        uri = mongo_tls_uri(tls_mongo, ca=certs.other_ca, client_pem=certs.client_pem)
        reason = "CERTIFICATE_VERIFY_FAILED"
    else:
        uri = mongo_tls_uri(tls_mongo, ca=certs.ca, client_pem=None)
        reason = "ServerSelectionTimeoutError"  # mongod just closes the connection
    checks = HeartbeatsInFlight()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        uri, serverSelectionTimeoutMS=1000, event_listeners=[checks]
    )
    try:
        async with asyncio.timeout(REFUSAL_LIMIT_S):
            with pytest.raises(StoreUnavailableError, match=reason):
                with mongo_errors():
                    await client[stack.database].tls.insert_one({"_id": 1})
        # pymongo leaks the socket of a server check that close() cancels mid-connect, and
        # a refused client keeps reconnecting: close it between two checks.
        await wait_until(holds(lambda: checks.running == 0), 10, "no server check running")
    finally:
        await client.close()


# --- processes ----------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.e2e
async def test_a_job_runs_with_etcd_and_mongo_over_tls_with_client_certificates(
    cluster: Cluster, tls_etcd: EtcdProcess, tls_mongo: MongoProcess, certs: CertFiles
) -> None:
    stores = {
        **etcd_tls_config(tls_etcd, certs),
        "mongodbUri": mongo_tls_uri(tls_mongo, ca=certs.ca, client_pem=certs.client_pem),
    }
    await cluster.start_together(
        cluster.start_manager(**stores), cluster.start_worker("tls-w1", **stores)
    )
    await save_job(cluster.api, "over-tls", "echo secured", EVERY_SECOND)

    runs = await wait_until(lambda: job_runs(cluster, "over-tls"), 30, "a logged run over TLS")
    assert runs[0]["status"] == "succeeded" and runs[0]["output"] == "secured\n"
    assert runs[0]["worker"] == "tls-w1"


@pytest.mark.asyncio
@pytest.mark.e2e
async def test_manager_serves_https_and_refuses_plain_http(
    cluster: Cluster, stack: Stack, certs: CertFiles
) -> None:
    port = free_port()
    manager = await cluster.spawn(
        "manager",
        "manager-https",
        stack.manager_config(
            port, tlsCertFile=str(certs.server_cert), tlsKeyFile=str(certs.server_key)
        ),
    )
    trust = ssl.create_default_context(cafile=str(certs.ca))

    async def alive_over_https() -> bool:
        if manager.process.returncode is not None:
            raise AssertionError(f"manager exited:\n{manager.log_text()}")
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"https://127.0.0.1:{port}/health/alive", ssl=trust) as response,
            ):
                return response.status == 200
        except aiohttp.ClientConnectionError:
            return False

    await wait_until(alive_over_https, 30, "the manager to answer over https")
    assert f"manager listening on https://127.0.0.1:{port}" in manager.log_text()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"http://127.0.0.1:{port}/health/alive") as response:
                await response.read()
        # A client that does not trust the test CA is refused too.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with session.get(f"https://127.0.0.1:{port}/health/alive") as response:
                await response.read()
        # Over HTTPS the session cookie is Secure: a browser never sends it in clear.
        form = {"username": ADMIN_USER, "password": ADMIN_PASSWORD}
        url = f"https://127.0.0.1:{port}/auth/login"
        async with session.post(url, data=form, ssl=trust) as response:
            assert response.status == 200
            cookie = response.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


@pytest.mark.asyncio
@pytest.mark.e2e
@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("tlsCertFile", "config tlsCertFile: cannot read {absent}"),
        ("tlsKeyFile", "config tlsKeyFile: cannot read {absent}"),
        ("encrypted key", "config tlsCertFile: {cert} and tlsKeyFile {key} are not a PEM"),
    ],
    ids=["missing cert", "missing key", "encrypted key"],
)
async def test_manager_with_an_unusable_tls_file_stops_at_start(
    cluster: Cluster, stack: Stack, certs: CertFiles, broken: str, message: str
) -> None:
    files = {"tlsCertFile": str(certs.server_cert), "tlsKeyFile": str(certs.server_key)}
    absent = stack.tmp / "absent.pem"
    if broken == "encrypted key":
        files["tlsKeyFile"] = str(encrypted_copy(certs.server_key, stack.tmp / "key.pem"))
    else:
        files[broken] = str(absent)
    manager = await cluster.spawn(
        "manager", "manager-bad-tls", stack.manager_config(free_port(), **files)
    )
    assert await asyncio.wait_for(manager.process.wait(), 60) == 2
    expected = message.format(absent=absent, cert=files["tlsCertFile"], key=files["tlsKeyFile"])
    assert expected in manager.log_text()
