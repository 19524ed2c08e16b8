"""Multi-member etcd clusters and MongoDB replica sets of real local processes, for the
fault-injection tests: kill the leader or the primary, watch the rest elect a new one."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import aiohttp
from pymongo import AsyncMongoClient
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from gdts.localstack import EtcdProcess, LocalStackError, MongoProcess, free_port
from gdts.localstack.process import POLL_INTERVAL, ServerProcess, StartStop

_T = TypeVar("_T")


async def retry_until(
    op: Callable[[], Awaitable[_T]],
    *,
    timeout: float,  # noqa: ASYNC109
    transient: Callable[[Exception], bool],
    interval: float = 0.1,
) -> _T:
    """Await op() until it succeeds, retrying errors that transient() accepts until timeout.

    After the deadline the last transient error propagates; other errors propagate at once.
    op() is called again after a failure whose effect is unknown (a write may have committed
    before the connection broke), so make it idempotent, e.g. treat DuplicateKeyError as done.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await op()
        except Exception as exc:
            if not transient(exc) or loop.time() + interval >= deadline:
                raise
        await asyncio.sleep(interval)


def mongo_transient(exc: Exception) -> bool:
    """Errors a replica-set client sees while a primary is lost and a new one elected."""
    if isinstance(exc, ConnectionFailure):  # incl. NotPrimaryError, ServerSelectionTimeoutError
        return True
    if isinstance(exc, PyMongoError) and exc.has_error_label("RetryableWriteError"):
        return True
    # ShutdownInProgress, InterruptedDueToReplStateChange, PrimarySteppedDown, NotWritablePrimary
    return isinstance(exc, OperationFailure) and exc.code in {91, 189, 10107, 11600, 11602, 13435}


def _oplog_term(hello: dict[str, Any]) -> int:
    term = hello.get("lastWrite", {}).get("opTime", {}).get("t", -1)
    return int(term)


def _distinct_free_ports(count: int, host: str) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port(host)
        if port not in ports:
            ports.append(port)
    return ports


async def _gather_all(aws: Sequence[Awaitable[object]]) -> None:
    """Run all to the end (no sibling is abandoned half-way); then raise the first error."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def _start_together(starts: Sequence[Coroutine[Any, Any, None]]) -> None:
    """Run the start() coroutines concurrently; on the first failure cancel the others (each
    start() kills its own child when cancelled) and raise that failure."""
    tasks = [asyncio.ensure_future(start) for start in starts]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        # Also on our own cancellation: never leave a start() running unsupervised.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error


_M = TypeVar("_M", bound=ServerProcess)


class _Cluster(StartStop, Generic[_M]):
    """Members, start/stop/kill/restart plumbing shared by EtcdCluster and MongoReplicaSet."""

    _what: str

    def __init__(self, base_dir: Path, size: int, log_dir: Path | None) -> None:
        if size < 1:
            raise ValueError(f"a {self._what} needs at least one member, not {size}")
        self.base_dir = Path(base_dir)
        self.size = size
        self.log_dir = Path(log_dir) if log_dir is not None else None
        # Created by the first start(), when the ports are picked.
        self.members: list[_M] = []

    def _create_members(self) -> None:
        raise NotImplementedError

    def _running(self) -> list[int]:
        return [i for i, member in enumerate(self.members) if member.pid is not None]

    async def _check_alive(self) -> None:
        """Raise if a member we did not kill has exited: waiting for it would be pointless."""
        for i, member in enumerate(self.members):
            if member.pid is not None and member.returncode is not None:
                raise LocalStackError(
                    f"{self._what} member {i} ({member.endpoint}) exited with code "
                    f"{member.returncode}" + await member.log_tail()
                )

    async def kill_member(self, i: int) -> None:
        """SIGKILL member i (no clean shutdown); restart_member(i) brings it back."""
        await self.members[i].kill()

    async def stop(self) -> None:
        """Stop every member (SIGTERM, then SIGKILL after 10 s); idempotent."""
        await _gather_all([member.stop() for member in self.members])

    async def start(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        raise NotImplementedError

    async def _start_members(self, timeout: float) -> None:  # noqa: ASYNC109
        running = self._running()
        if running:
            raise LocalStackError(f"{self._what} is already started (members {running} run)")
        try:
            await _start_together([member.start(timeout) for member in self.members])
        except BaseException:
            await self._kill_all()
            raise

    async def _kill_all(self) -> None:
        await _gather_all([member.kill() for member in self.members])


class EtcdCluster(_Cluster[EtcdProcess]):
    """N etcd members, each its own process, on free loopback ports.

    Members are created by the first start(); after stop() a new start() brings the same
    members back on their data dirs and ports. Member i is `members[i]`, named etcd<i>, with
    data dir base_dir/etcd<i> and (with log_dir) log log_dir/etcd<i>.log.
    """

    _what = "etcd cluster"

    def __init__(self, base_dir: Path, size: int = 3, *, log_dir: Path | None = None) -> None:
        super().__init__(base_dir, size, log_dir)
        self.token = f"gdts-{secrets.token_hex(8)}"

    @property
    def endpoints(self) -> list[str]:
        """Client endpoint "127.0.0.1:PORT" of each member (empty before the first start())."""
        return [member.endpoint for member in self.members]

    def _create_members(self) -> None:
        host = "127.0.0.1"
        ports = _distinct_free_ports(2 * self.size, host)
        names = [f"etcd{i}" for i in range(self.size)]
        initial_cluster = ",".join(
            f"{name}=http://{host}:{ports[2 * i + 1]}" for i, name in enumerate(names)
        )
        self.members = [
            EtcdProcess(
                self.base_dir / name,
                host=host,
                client_port=ports[2 * i],
                peer_port=ports[2 * i + 1],
                name=name,
                log_path=self.log_dir / f"{name}.log" if self.log_dir is not None else None,
                initial_cluster=initial_cluster,
                initial_cluster_token=self.token,
                heartbeat_interval_ms=100,
                election_timeout_ms=1000,
            )
            for i, name in enumerate(names)
        ]

    async def start(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109 (public contract)
        """Start all members at once (none is healthy before a quorum has elected a leader)
        and wait until every one is healthy and agrees on the leader."""
        if not self.members:
            self._create_members()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self._start_members(timeout)
        try:
            await self.wait_healthy(max(0.0, deadline - loop.time()))
        except BaseException:
            await self._kill_all()
            raise

    async def stop(self) -> None:
        """Stop every member (SIGTERM, then SIGKILL after 10 s); idempotent.

        A leader that gets SIGTERM hands leadership to the follower it has been connected to
        longest and, if that one is going away too, waits 5 s + 2 election timeouts for the
        handover. So the followers go first, and the leader once it has seen them disconnect
        (etcd_network_active_peers all 0; at most 3 s): then it has nobody to hand over to.
        """
        if not self.members:
            return
        try:
            leader: int | None = await self.leader_index()
        except LocalStackError:
            leader = None
        try:
            await _gather_all([m.stop() for i, m in enumerate(self.members) if i != leader])
        finally:
            if leader is not None:
                await self._await_alone(self.members[leader], 3.0)
                await self.members[leader].stop()

    async def _await_alone(self, member: EtcdProcess, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until member's transport has noticed that all its peers are gone."""
        if member.pid is None or self.size == 1:
            return  # a lone member has nobody to hand over to: it stops at once
        if any(m is not member and m.pid is not None for m in self.members):
            return  # a follower failed to stop; do not wait on top of that
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and member.returncode is None:
            try:
                _, text = await member.request("GET", "/metrics", 0.5)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                return
            active = [
                line
                for line in text.splitlines()
                if line.startswith("etcd_network_active_peers{") and not line.endswith(" 0")
            ]
            if not active:
                return
            await asyncio.sleep(POLL_INTERVAL)

    async def restart_member(self, i: int, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Start member i again on its data dir and ports (--initial-cluster-state existing);
        wait until it is healthy, which needs a quorum: restart several members concurrently
        (asyncio.gather) if fewer than a quorum are running."""
        await self.members[i].start(timeout)

    async def leader_index(self) -> int:
        """Index of the leader that it and a quorum of members agree on; LocalStackError if
        there is none right now (election in progress, no quorum running)."""
        running = self._running()
        replies = await asyncio.gather(
            *(self.members[i].status() for i in running), return_exceptions=True
        )
        index_of: dict[str, int] = {}
        votes: dict[str, int] = {}
        for i, reply in zip(running, replies, strict=True):
            if isinstance(reply, BaseException):
                if not isinstance(reply, LocalStackError):
                    raise reply
                continue
            member_id = str(reply.get("header", {}).get("member_id", ""))
            leader = str(reply.get("leader", "0"))
            index_of[member_id] = i
            if leader != "0":
                votes[leader] = votes.get(leader, 0) + 1
        quorum = self.size // 2 + 1
        for leader, count in votes.items():
            # The leader must be one of the members that answered: a SIGKILLed leader is still
            # "the leader" for its followers until their election timeout runs out.
            if count >= quorum and leader in index_of:
                return index_of[leader]
        raise LocalStackError(f"etcd cluster has no leader right now (votes {votes})")

    async def wait_healthy(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109
        """Wait until every running member reports /health true and a leader is elected;
        return the leader's index."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: object = "no member running"
        while True:
            await self._check_alive()
            running = self._running()
            try:
                # Leader first: /health blocks for up to a second while there is none.
                leader = await self.leader_index()
            except LocalStackError as exc:
                last = exc
            else:
                remaining = max(0.01, deadline - loop.time())
                healthy = await asyncio.gather(
                    *(self.members[i].probe(min(1.0, remaining)) for i in running)
                )
                if all(healthy) and await self.leader_index() == leader:
                    return leader
                sick = [i for i, ok in zip(running, healthy, strict=True) if not ok]
                last = f"unhealthy members {sick}"
            if loop.time() >= deadline:
                raise LocalStackError(f"etcd cluster not healthy after {timeout:.1f}s: {last}")
            await asyncio.sleep(min(POLL_INTERVAL, max(0.0, deadline - loop.time())))


class MongoReplicaSet(_Cluster[MongoProcess]):
    """An N-member mongod replica set on free loopback ports, without auth.

    Members are created by the first start(); after stop() a new start() brings the same
    members back (their stored config, no new initiate). Member i is `members[i]` with data
    dir base_dir/mongo<i> and (with log_dir) log log_dir/mongo<i>.log. All members have the
    same priority, so a restarted old primary stays a secondary.
    """

    _what = "mongo replica set"

    def __init__(
        self,
        base_dir: Path,
        size: int = 3,
        *,
        name: str = "rs0",
        log_dir: Path | None = None,
    ) -> None:
        super().__init__(base_dir, size, log_dir)
        self.name = name

    @property
    def uri(self) -> str:
        """Replica-set URI listing every member (the driver finds the primary itself)."""
        if not self.members:
            raise LocalStackError("mongo replica set has no ports yet: call start()")
        hosts = ",".join(member.endpoint for member in self.members)
        return f"mongodb://{hosts}/?replicaSet={self.name}"

    def _create_members(self) -> None:
        host = "127.0.0.1"
        ports = _distinct_free_ports(self.size, host)
        self.members = [
            MongoProcess(
                self.base_dir / f"mongo{i}",
                host=host,
                client_port=port,
                log_path=self.log_dir / f"mongo{i}.log" if self.log_dir is not None else None,
                repl_set=self.name,
            )
            for i, port in enumerate(ports)
        ]

    def config(self) -> dict[str, Any]:
        """The replSetInitiate document: every member, equal priority, fast elections."""
        return {
            "_id": self.name,
            "members": [
                {"_id": i, "host": member.endpoint} for i, member in enumerate(self.members)
            ],
            "settings": {"electionTimeoutMillis": 1000, "heartbeatIntervalMillis": 200},
        }

    async def start(self, timeout: float = 90.0) -> None:  # noqa: ASYNC109 (public contract)
        """Start all members at once, initiate the set (first start only) and wait for a
        primary."""
        if not self.members:
            self._create_members()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self._start_members(timeout)
        try:
            await self._initiate(deadline)
            await self.wait_primary(max(0.0, deadline - loop.time()))
        except BaseException:
            await self._kill_all()
            raise

    async def _initiate(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        first = self.members[0]
        hello = await first.hello(min(5.0, max(0.1, deadline - loop.time())))
        if "setName" in hello:
            return  # restarted on data dirs that already hold the config
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            first.uri, serverSelectionTimeoutMS=5000
        )
        try:
            await client.admin.command({"replSetInitiate": self.config()})
        except OperationFailure as exc:
            if exc.code != 23:  # AlreadyInitialized
                raise LocalStackError(f"replSetInitiate on {first.endpoint} failed: {exc}") from exc
        except PyMongoError as exc:
            raise LocalStackError(f"replSetInitiate on {first.endpoint} failed: {exc}") from exc
        finally:
            await client.close()

    async def hello(self, i: int, timeout: float = 1.0) -> dict[str, Any]:  # noqa: ASYNC109
        """Member i's `hello` reply; LocalStackError if it does not answer."""
        return await self.members[i].hello(timeout)

    async def primary_index(self) -> int:
        """Index of the member that says it is the writable primary; LocalStackError if none
        does right now. Should two claim it (a stale primary), the newer election wins."""
        running = self._running()
        replies = await asyncio.gather(
            *(self.members[i].hello() for i in running), return_exceptions=True
        )
        primaries: list[tuple[Any, int]] = []
        for i, reply in zip(running, replies, strict=True):
            if isinstance(reply, BaseException):
                if not isinstance(reply, LocalStackError):
                    raise reply
                continue
            if reply.get("isWritablePrimary"):
                primaries.append((reply.get("electionId"), i))
        if not primaries:
            raise LocalStackError(f"mongo replica set {self.name} has no primary right now")
        if len(primaries) == 1:
            return primaries[0][1]
        return max(primaries, key=lambda p: (p[0] is not None, p[0] or 0))[1]

    async def wait_primary(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109
        """Wait until some member is the writable primary; return its index."""
        return await self._wait(self.primary_index, timeout, "has no primary")

    async def wait_secondary(self, i: int, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until member i is a SECONDARY that has caught up into the primary's term.

        A killed primary usually comes back with writes nobody else has (mongod writes right
        after an election), so it is briefly SECONDARY, then ROLLBACK, then SECONDARY again;
        holding oplog entries of the current term shows the rollback is behind it.
        """
        await self._wait(lambda: self._synced(i, primary_ok=False), timeout, "no synced secondary")

    async def restart_member(self, i: int, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Start member i again on its data dir and port; wait until it is the primary, or a
        secondary caught up into the current term (see wait_secondary)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self.members[i].start(timeout)
        await self._wait(
            lambda: self._synced(i, primary_ok=True),
            max(0.0, deadline - loop.time()),
            f"member {i} has not rejoined",
        )

    async def _synced(self, i: int, *, primary_ok: bool) -> None:
        hello = await self.members[i].hello()
        if primary_ok and hello.get("isWritablePrimary"):
            return
        if not hello.get("secondary"):
            raise LocalStackError(f"member {i} is not a secondary")
        try:
            primary = await self.primary_index()
            primary_hello = await self.members[primary].hello()
        except LocalStackError:
            return  # no primary to catch up with: SECONDARY is all there is to wait for
        if _oplog_term(hello) < _oplog_term(primary_hello):
            raise LocalStackError(f"member {i} has not caught up with primary {primary}")

    async def _wait(
        self,
        check: Callable[[], Awaitable[_T]],
        timeout: float,  # noqa: ASYNC109
        what: str,
    ) -> _T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            await self._check_alive()
            try:
                return await check()
            except LocalStackError as exc:
                if loop.time() >= deadline:
                    raise LocalStackError(
                        f"mongo replica set {self.name} {what} after {timeout:.1f}s: {exc}"
                    ) from exc
            await asyncio.sleep(min(0.1, max(0.0, deadline - loop.time())))
