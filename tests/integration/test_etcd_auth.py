"""etcd with username/password auth whose tokens expire within seconds: a client keeps working
after its token lapsed (unary calls, a watch and a lease from before, a watch opened after), on
a real etcd with auth enabled through its own gRPC Auth API. Nothing here is mocked."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from aetcd import rpc

from gdts.etcd import (
    EtcdClient,
    WatchEvent,
    WatchSpec,
    prefix_changed_since,
    read_prefix,
    watch_prefixes,
)
from gdts.localstack import EtcdProcess
from tests.support import wait_until

PASSWORD = "s3cret"
# etcd drops an unused simple token TTL seconds after its last use, checking once a second.
TOKEN_TTL_S = 2
EXPIRY_LIMIT_S = 30
EVENT_LIMIT_S = 5


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def auth_etcd(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EtcdProcess]:
    base: Path = tmp_path_factory.mktemp("auth-etcd")
    async with EtcdProcess(
        base / "data", log_path=base / "etcd.log", extra_args=[f"--auth-token-ttl={TOKEN_TTL_S}"]
    ) as server:
        await enable_auth(server)
        yield server


async def enable_auth(server: EtcdProcess) -> None:
    """What `etcdctl user add root; etcdctl auth enable` does, without needing etcdctl."""
    async with grpc.aio.insecure_channel(server.endpoint) as channel:
        auth = rpc.AuthStub(channel)
        await auth.RoleAdd(rpc.AuthRoleAddRequest(name="root"), timeout=3)
        await auth.UserAdd(rpc.AuthUserAddRequest(name="root", password=PASSWORD), timeout=3)
        await auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user="root", role="root"), timeout=3)
        await auth.AuthEnable(rpc.AuthEnableRequest(), timeout=3)


@pytest_asyncio.fixture
async def client(auth_etcd: EtcdProcess) -> AsyncIterator[EtcdClient]:
    client = EtcdClient([auth_etcd.endpoint], timeout=3, username="root", password=PASSWORD)
    try:
        await client.connect()
        yield client
    finally:
        await client.close()


@pytest.fixture
def prefix() -> bytes:
    return f"/auth-test-{uuid.uuid4().hex[:12]}/".encode()


def token_of(client: EtcdClient) -> str:
    return dict(client.metadata or ())["token"]


async def wait_for_expiry(server: EtcdProcess, token: str) -> None:
    """Until etcd refuses ``token``, asked on a channel of its own."""
    async with grpc.aio.insecure_channel(server.endpoint) as channel:
        kv = rpc.KVStub(channel)

        async def refused() -> bool:
            try:
                await kv.Range(rpc.RangeRequest(key=b"/"), metadata=(("token", token),), timeout=3)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                    return True
                raise
            return False

        # An accepted probe starts the token's TTL again: probes must be further apart than it.
        await wait_until(
            refused, EXPIRY_LIMIT_S, "etcd to expire the token", interval=TOKEN_TTL_S + 2
        )


async def admin_put(server: EtcdProcess, key: bytes, value: bytes) -> int:
    """A write by another client, leaving the tested client's token as it was; its revision."""
    async with EtcdClient(
        [server.endpoint], timeout=3, username="root", password=PASSWORD
    ) as admin:
        reply = await admin.kvstub.Put(
            rpc.PutRequest(key=key, value=value), timeout=3, metadata=admin.metadata
        )
        return reply.header.revision


@pytest.mark.asyncio
@pytest.mark.waits  # for the token's TTL
async def test_calls_after_the_token_expired_authenticate_again_once(
    auth_etcd: EtcdProcess,
    client: EtcdClient,
    prefix: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gdts.etcd")
    await client.put(prefix + b"a", b"1")
    first = token_of(client)
    await wait_for_expiry(auth_etcd, first)

    # Several calls refused together, through aetcd's methods and through the raw stubs.
    got, (kvs, revision), (changed, _), _ = await asyncio.gather(
        client.get(prefix + b"a"),
        read_prefix(client, prefix),
        prefix_changed_since(client, prefix, 1, 0),
        client.put(prefix + b"b", b"2"),
    )
    assert got is not None and got.value == b"1"
    assert prefix + b"a" in {kv.key for kv in kvs}
    assert revision > 0 and changed
    assert token_of(client) != first
    renewals = [r for r in caplog.records if "authenticating again" in r.getMessage()]
    assert len(renewals) == 1

    # aetcd's own watcher opens its stream with the new token too.
    watch = await client.watch_prefix(prefix)
    try:
        await client.put(prefix + b"c", b"3")
        event = await asyncio.wait_for(anext(aiter(watch)), EVENT_LIMIT_S)
        assert event.kv.key == prefix + b"c"
    finally:
        await watch.cancel()


@pytest.mark.asyncio
@pytest.mark.waits  # for the token's TTL
async def test_a_watch_and_a_lease_from_before_expiry_keep_working(
    auth_etcd: EtcdProcess, client: EtcdClient, prefix: bytes
) -> None:
    events: asyncio.Queue[WatchEvent] = asyncio.Queue()
    # From a revision, not from "now": the put below may reach etcd before the watch does.
    _, revision = await read_prefix(client, prefix)

    async def follow() -> None:
        async for event in watch_prefixes(client, [WatchSpec(prefix, revision + 1)]):
            await events.put(event)

    lease = await client.lease(30)
    watching = asyncio.create_task(follow())
    try:
        # The first event shows the watch was created, with the first token.
        await client.put(prefix + b"before", b"1")
        assert (await asyncio.wait_for(events.get(), EVENT_LIMIT_S)).key == prefix + b"before"
        first = token_of(client)
        await wait_for_expiry(auth_etcd, first)

        reply = await client.refresh_lease(lease.id)  # how a worker keeps its lease
        assert reply is not None and reply.TTL > 0
        await client.put(prefix + b"after", b"2", lease=lease.id)
        assert token_of(client) != first
        # Still the stream opened before expiry: it never ended, so follow() never returned.
        assert (await asyncio.wait_for(events.get(), EVENT_LIMIT_S)).key == prefix + b"after"
        assert not watching.done()
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await lease.revoke()


@pytest.mark.asyncio
@pytest.mark.waits  # for the token's TTL
async def test_a_watch_opened_after_expiry_ends_for_the_caller_to_resume(
    auth_etcd: EtcdProcess, client: EtcdClient, prefix: bytes
) -> None:
    first = token_of(client)
    await wait_for_expiry(auth_etcd, first)
    revision = await admin_put(auth_etcd, prefix + b"k", b"v")
    spec = WatchSpec(prefix, revision)

    # etcd cancels the watch's creation; the stream ends (no full re-read) with a new token.
    async with asyncio.timeout(EVENT_LIMIT_S):
        assert [event async for event in watch_prefixes(client, [spec])] == []
    assert token_of(client) != first

    # Resumed from the same revision, nothing is missed.
    stream = watch_prefixes(client, [spec])
    try:
        event = await asyncio.wait_for(anext(stream), EVENT_LIMIT_S)
        assert (event.key, event.mod_revision) == (prefix + b"k", revision)
    finally:
        await stream.aclose()


@pytest.mark.asyncio
async def test_a_client_authenticates_again_after_etcd_restarts(tmp_path: Path) -> None:
    """A restart forgets every token: the next calls, a lease and a new watch get a new one."""
    async with EtcdProcess(tmp_path / "data", log_path=tmp_path / "etcd.log") as server:
        await enable_auth(server)
        async with EtcdClient(
            [server.endpoint], timeout=3, username="root", password=PASSWORD
        ) as client:
            await client.put(b"/restart/before", b"1")
            before = token_of(client)
            await server.stop()
            await server.start()

            async def answers() -> bool:
                try:
                    await client.put(b"/restart/after", b"2")
                except Exception:  # noqa: BLE001 - unavailable while it starts: ask again
                    return False
                return True

            await wait_until(answers, 30, "a write after the restart")
            assert token_of(client) != before
            got = await client.get(b"/restart/before")
            assert got is not None and got.value == b"1"
            lease = await client.lease(5)
            await client.put(b"/restart/leased", b"3", lease=lease)
            _, revision = await read_prefix(client, b"/restart/")
            events: list[WatchEvent] = []

            async def watch() -> None:
                async for event in watch_prefixes(client, [WatchSpec(b"/restart/", revision + 1)]):
                    events.append(event)

            watcher = asyncio.ensure_future(watch())
            try:
                await admin_put(server, b"/restart/seen", b"4")
                await wait_until(lambda: _has(events, b"/restart/seen"), 10, "the watch event")
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher


async def _has(events: list[WatchEvent], key: bytes) -> bool:
    return any(event.key == key for event in events)
