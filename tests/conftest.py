"""Real etcd and mongod for the whole session, and a unique prefix and database per test."""

from __future__ import annotations

import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from gdts.etcd import EtcdClient
from gdts.localstack import EtcdProcess, MongoProcess
from tests.notify_receiver import WebhookReceiver
from tests.support import Cluster, Stack


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EtcdProcess]:
    base = tmp_path_factory.mktemp("etcd")
    async with EtcdProcess(base / "data", log_path=base / "etcd.log") as server:
        yield server


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MongoProcess]:
    base = tmp_path_factory.mktemp("mongo")
    # MongoDB's TTL monitor wakes every 60 s by default and, in 6.0, a ttlMonitorSleepSecs set
    # later waits for the sleep under way to end: every second from the start, so a test of a
    # TTL index waits a second or two, not a minute.
    async with MongoProcess(
        base / "data", log_path=base / "mongod.log", parameters={"ttlMonitorSleepSecs": "1"}
    ) as server:
        yield server


@pytest.fixture
def stack(etcd_server: EtcdProcess, mongo_server: MongoProcess, tmp_path: Path) -> Stack:
    unique = uuid.uuid4().hex[:12]
    return Stack(
        etcd_endpoint=etcd_server.endpoint,
        mongo_uri=mongo_server.uri,
        prefix=f"/gdts-test-{unique}/",
        database=f"gdts_test_{unique}",
        tmp=tmp_path,
    )


@pytest_asyncio.fixture
async def etcd(stack: Stack) -> AsyncIterator[EtcdClient]:
    """A client of the session's etcd, for tests that look at or change keys directly."""
    client = EtcdClient([stack.etcd_endpoint], timeout=5)
    try:
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    """A webhook receiver on loopback for the notification tests (see notify_receiver)."""
    hook = WebhookReceiver("hook-signing-s3cr3t")
    await hook.up()
    try:
        yield hook
    finally:
        await hook.down()


@pytest_asyncio.fixture
async def cluster(stack: Stack, request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    cluster = Cluster(stack)
    try:
        yield cluster
    finally:
        await cluster.stop_all()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(cluster.logs())


def pytest_configure(config: pytest.Config) -> None:
    """xdist's worker processes ignore SIGINT and SIGQUIT (Ctrl-C is the controller's), and a
    process inherits what its parent ignores: give them back their defaults so that every
    process and job a test starts sees the signals it would under ``-n 0``."""
    if hasattr(config, "workerinput"):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Two lanes under ``-n 2 --dist each`` (pyproject's addopts): each worker process collects
    every test and keeps its own lane's, so the tests marked ``waits`` run one after another
    in gw1 while every other test runs, in its usual order, in gw0. Without xdist (``-n 0``)
    one process keeps them all. Not ``--dist loadgroup``: it groups by a suffix it writes into
    ``item._nodeid``, which pytest 9 no longer reads, so every test would be dealt to either
    process, and tests that sweep a uid range or count processes would meet."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return
    lane = int(str(workerinput["workerid"]).removeprefix("gw"))
    kept = [item for item in items if _lane_of(item) == lane]
    config.hook.pytest_deselected(items=[item for item in items if _lane_of(item) != lane])
    items[:] = kept


def _lane_of(item: pytest.Item) -> int:
    return 1 if item.get_closest_marker("waits") else 0


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, "rep_" + report.when, report)
    return report
