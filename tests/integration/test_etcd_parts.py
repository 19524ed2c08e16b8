"""The worker's etcd parts against a real etcd: tick claims, paged snapshot reads, and a job
watch that survives a broken connection and a compacted revision."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gdts.etcd import (
    EtcdClient,
    WatchCompactedError,
    WatchSpec,
    prefix_changed_since,
    read_prefix,
    scan_prefix,
    watch_prefixes,
)
from gdts.job import Job
from gdts.keys import BUCKETS, KeyLayout, KillOrder, RunningKey, bucket_of
from gdts.routing import Candidate
from gdts.worker.clusterwatch import ClusterWatch
from gdts.worker.deadruns import DeadRunFinder
from gdts.worker.lock import ClaimOutcome, StoredJob, TickClaimer
from gdts.worker.lostruns import LostRun
from tests.support import TcpProxy, holds, wait_until

pytestmark = pytest.mark.asyncio


async def test_a_tick_is_won_once_and_a_running_job_blocks_its_next_tick(etcd, stack) -> None:
    keys = KeyLayout(stack.prefix)
    lease_a, lease_b = await etcd.lease(30), await etcd.lease(30)
    worker_a = TickClaimer(etcd, keys, "a", start_window_s=10)
    worker_b = TickClaimer(etcd, keys, "b", start_window_s=10)

    a_1000 = await worker_a.claim("job", 1000, lease_a.id, worker_a.marker(1000, 1001))
    b_1000 = await worker_b.claim("job", 1000, lease_b.id, worker_b.marker(1000, 1001))
    assert (a_1000.outcome, b_1000.outcome) == (ClaimOutcome.WON, ClaimOutcome.TAKEN)
    # The run of tick 1000 is still going, so tick 2000 is skipped cluster-wide.
    assert (
        await worker_b.claim("job", 2000, lease_b.id, worker_b.marker(2000, 2001))
    ).outcome is ClaimOutcome.BUSY
    # Another job is independent, even one whose name extends this one.
    assert (
        await worker_b.claim("jobs", 2000, lease_b.id, worker_b.marker(2000, 2001))
    ).outcome is ClaimOutcome.WON

    await worker_b.release(b_1000)  # b lost that tick: releasing must not remove a's marker
    assert (
        await worker_b.claim("job", 3000, lease_b.id, worker_b.marker(3000, 3001))
    ).outcome is ClaimOutcome.BUSY
    await worker_a.release(a_1000)
    b_3000 = await worker_b.claim("job", 3000, lease_b.id, worker_b.marker(3000, 3001))
    assert b_3000.outcome is ClaimOutcome.WON
    # The finished tick stays claimed: nobody can run it again after the run ended.
    await worker_b.release(b_3000)
    assert (
        await worker_a.claim("job", 1000, lease_a.id, worker_a.marker(1000, 9000))
    ).outcome is ClaimOutcome.TAKEN


async def test_tick_claim_outlives_the_worker_lease_and_the_start_window(etcd, stack) -> None:
    keys = KeyLayout(stack.prefix)
    worker_lease = await etcd.lease(30)
    claimer = TickClaimer(etcd, keys, "a", start_window_s=10)
    won = await claimer.claim("job", 5000, worker_lease.id, claimer.marker(5000, 5003))
    assert won.outcome is ClaimOutcome.WON
    claim = await etcd.get(keys.tick_claim("job", 0, 5000))
    running = await etcd.get(keys.running("job", 0))
    stored = json.loads(running.value)
    assert stored.pop("claim")  # this claim's own id
    assert stored == {"worker": "a", "planTime": 5000, "claimedAt": 5003}
    assert running.lease == worker_lease.id
    assert claim.lease != worker_lease.id
    claim_ttl = (await etcd.get_lease_info(claim.lease)).TTL
    assert claim_ttl > 10  # longer than the start window

    await worker_lease.revoke()  # the worker dies
    assert await etcd.get(keys.running("job", 0)) is None  # its job may run elsewhere now
    assert await etcd.get(keys.tick_claim("job", 0, 5000)) is not None  # but not this tick
    other = TickClaimer(etcd, keys, "b", start_window_s=10)
    late = await other.claim("job", 5000, (await etcd.lease(30)).id, other.marker(5000, 9000))
    assert late.outcome is ClaimOutcome.TAKEN


async def test_a_claim_repeated_after_a_lost_answer_is_recognised_as_won(etcd, stack) -> None:
    keys = KeyLayout(stack.prefix)
    lease = await etcd.lease(30)
    claimer = TickClaimer(etcd, keys, "a", start_window_s=10)
    marker = claimer.marker(7000, 7001)
    first = await claimer.claim("job", 7000, lease.id, marker)
    again = await claimer.claim("job", 7000, lease.id, marker)  # as after a timed-out answer
    assert first.outcome is again.outcome is ClaimOutcome.WON
    other = await claimer.claim("job", 7000, lease.id, claimer.marker(7000, 7500))
    assert other.outcome is ClaimOutcome.TAKEN  # a different attempt is not ours


async def test_restore_puts_a_running_marker_on_a_new_lease_unless_taken(etcd, stack) -> None:
    keys = KeyLayout(stack.prefix)
    old, new = await etcd.lease(30), await etcd.lease(30)
    claimer = TickClaimer(etcd, keys, "a", start_window_s=10)
    claim = await claimer.claim("job", 8000, old.id, claimer.marker(8000, 8001))
    await old.revoke()  # the lease expired while the run went on
    assert await claimer.restore(claim, new.id) is True
    assert (await etcd.get(keys.running("job", 0))).lease == new.id
    await etcd.delete(keys.running("job", 0))
    await etcd.put(keys.running("job", 0), b"someone else")
    assert await claimer.restore(claim, new.id) is False
    assert (await etcd.get(keys.running("job", 0))).value == b"someone else"


async def test_paged_read_is_one_snapshot_even_while_keys_change(etcd, stack) -> None:
    prefix = f"{stack.prefix}snap/".encode()
    for i in range(25):
        await etcd.put(prefix + b"k%02d" % i, b"v%d" % i)
    real_range = etcd.kvstub.Range
    pages = 0

    async def range_with_writes_between_pages(request: Any, **kwargs: Any) -> Any:
        nonlocal pages
        pages += 1
        if pages > 1:  # after the first page: add, change and delete keys
            await etcd.put(prefix + b"k99", b"new")
            await etcd.put(prefix + b"k20", b"changed")
            await etcd.delete(prefix + b"k24")
        return await real_range(request, **kwargs)

    etcd.kvstub.Range = range_with_writes_between_pages
    try:
        kvs, revision = await read_prefix(etcd, prefix, page_size=7)
    finally:
        etcd.kvstub.Range = real_range
    assert pages >= 4  # more when a request's range is narrower than the rest of the prefix
    assert [kv.key for kv in kvs] == [prefix + b"k%02d" % i for i in range(25)]
    assert [kv.value for kv in kvs] == [b"v%d" % i for i in range(25)]
    assert all(kv.mod_revision <= revision for kv in kvs)
    now, _ = await read_prefix(etcd, prefix)
    assert len(now) == 25 and now[-1].key == prefix + b"k99"  # the writes did happen


async def test_a_scan_whose_snapshot_is_compacted_mid_read_starts_again_and_says_so(
    etcd, stack
) -> None:
    prefix = f"{stack.prefix}scan/".encode()
    for i in range(10):
        await etcd.put(prefix + b"k%02d" % i, b"v")
    real_range = etcd.kvstub.Range
    calls = 0

    async def compacting_before_the_second_page(request: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:  # the first attempt's revision is gone before its second page
            reply = await etcd.put(prefix + b"k99", b"later")
            await etcd.compact(reply.header.revision)
        return await real_range(request, **kwargs)

    pages: list[tuple[bool, list[bytes]]] = []

    async def take(page: Any, first: bool) -> None:
        pages.append((first, [kv.key for kv in page]))

    etcd.kvstub.Range = compacting_before_the_second_page
    try:
        revision = await scan_prefix(etcd, prefix, take, page_size=4)
    finally:
        etcd.kvstub.Range = real_range
    restarts = [i for i, (first, keys) in enumerate(pages) if first and keys]
    assert len(restarts) == 2  # the first attempt and the one after the compaction
    keys = [key for _, page in pages[restarts[-1] :] for key in page]
    assert keys == [prefix + b"k%02d" % i for i in range(10)] + [prefix + b"k99"]
    assert revision == (await etcd.get(prefix + b"k99")).mod_revision


async def test_a_page_too_large_for_one_message_is_read_in_smaller_pages(etcd, stack) -> None:
    prefix = KeyLayout(stack.prefix).jobs_prefix
    values = {prefix + b"big%02d" % i: bytes([65 + i % 26]) * 60_000 for i in range(40)}
    for key, value in values.items():
        await etcd.put(key, value)
    # 40 values of 60 kB do not fit a 1 MB message: the read must split its pages.
    small = EtcdClient([stack.etcd_endpoint], timeout=5, max_message_bytes=1_000_000)
    try:
        kvs, _ = await read_prefix(small, prefix, page_size=1000)
    finally:
        await small.close()
    assert {kv.key: kv.value for kv in kvs} == values


class Recorder:
    """A JobListener that keeps what a worker's scheduler would hold."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.kills: list[str] = []
        self.resets = 0
        self.workers: dict[str, int] = {}
        self.full: set[str] = set()  # workers whose registration says atCapacity
        self.cards: dict[str, Candidate] = {}  # what each registration says routing needs
        self.gone: list[tuple[str, int, int]] = []
        self.markers_gone: list[str] = []
        self.followed = frozenset(range(BUCKETS))  # the buckets whose markers are followed
        self.claims: list[tuple[str, int, int]] = []
        self.markers: dict[str, bytes] = {}
        self.run_requests: dict[bytes, tuple[str, int]] = {}
        self.kill_bounds: list[int | None] = []
        self.other_runs: list[tuple[str, bytes]] = []

    async def jobs_reset(self, jobs: list[Job]) -> None:
        self.jobs = {job.name: job for job in jobs}
        self.resets += 1

    def job_saved(self, job: Job) -> None:
        self.jobs[job.name] = job

    def job_deleted(self, name: str) -> None:
        self.jobs.pop(name, None)

    def kill_requested(self, name: str, order: KillOrder) -> None:
        self.kills.append(name)
        self.kill_bounds.append(order.before_plan_ms)

    def workers_reset(self, workers: dict[str, int], cards: dict[str, Candidate]) -> None:
        self.workers = dict(workers)
        self.cards = dict(cards)
        self.full = {worker_id for worker_id, card in cards.items() if card.full}

    def worker_registered(self, worker_id: str, lease: int, card: Candidate) -> None:
        self.workers[worker_id] = lease
        self.cards[worker_id] = card
        if card.full:
            self.full.add(worker_id)
        else:
            self.full.discard(worker_id)

    def worker_gone(self, worker_id: str, lease: int, revision: int) -> None:
        self.workers.pop(worker_id, None)
        self.gone.append((worker_id, lease, revision))

    def buckets(self) -> frozenset[int]:
        return self.followed

    async def running_reset(
        self, markers: list[tuple[RunningKey, bytes]], claims: list[tuple[str, int, int]]
    ) -> None:
        self.markers = {m.name: value for m, value in markers if m.plan_ms is None}
        self.other_runs = [(m.name, value) for m, value in markers if m.plan_ms is not None]
        self.claims = claims

    def running_marker_put(self, marker: RunningKey, value: bytes) -> None:
        if marker.plan_ms is None:
            self.markers[marker.name] = value
        else:
            self.other_runs.append((marker.name, value))

    def running_marker_gone(self, marker: RunningKey) -> None:
        if marker.plan_ms is None:
            self.markers.pop(marker.name, None)
        self.markers_gone.append(marker.name)

    def run_requests_reset(self, requests: list[tuple[str, int, bytes, bytes]]) -> None:
        self.run_requests = {key: (name, ms) for name, ms, key, _ in requests}

    def run_requested(self, job_name: str, requested_ms: int, key: bytes, value: bytes) -> None:
        self.run_requests[key] = (job_name, requested_ms)

    def run_request_gone(self, key: bytes) -> None:
        self.run_requests.pop(key, None)


def _job(name: str, command: str = "true") -> Job:
    return Job.create(name, command, "@daily")


@contextlib.asynccontextmanager
async def running(sync: ClusterWatch | DeadRunFinder) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(sync.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_running_markers_of_the_layout_before_buckets_are_ignored_and_said(
    etcd, stack, caplog
) -> None:
    keys = KeyLayout(stack.prefix)
    await etcd.put(keys.running_prefix + b"old-job@7", b'{"worker":"w0","planTime":1}')
    await etcd.put(keys.running("new-job", 7), b'{"worker":"w0","planTime":1}')
    recorder = Recorder()
    sync = ClusterWatch(etcd, keys, recorder)
    async with running(sync):
        await wait_until(holds(lambda: sync.synced.is_set()), 10, "the initial read")
    assert set(recorder.markers) == {"new-job"}
    assert "a worker of an older version is running" in caplog.text


def _names_in_two_buckets() -> tuple[str, str]:
    first = "mine-0"
    other = next(f"other-{n}" for n in range(1000) if bucket_of(f"other-{n}") != bucket_of(first))
    return first, other


async def test_a_worker_follows_its_buckets_markers_alone_and_reads_new_ones_when_they_change(
    etcd, stack
) -> None:
    keys = KeyLayout(stack.prefix)
    mine, other = _names_in_two_buckets()
    recorder = Recorder()
    recorder.followed = frozenset({bucket_of(mine)})
    sync = ClusterWatch(etcd, keys, recorder)
    async with running(sync):
        await wait_until(holds(lambda: sync.synced.is_set()), 10, "the initial read")
        await etcd.put(keys.running(other, 1), b'{"worker":"w2","planTime":1}')
        await etcd.put(keys.running(mine, 1), b'{"worker":"w2","planTime":2}')
        await wait_until(
            holds(lambda: mine in recorder.markers), 10, "the marker of a followed bucket"
        )
        assert other not in recorder.markers  # its bucket is another worker's
        await etcd.put(keys.tick_claim(other, 1, 1), b"")
        # Another worker left: the other bucket comes here.
        recorder.followed = frozenset({bucket_of(mine), bucket_of(other)})
        sync.rescope()
        await wait_until(holds(lambda: sync.marker_reads == 1), 10, "the markers read again")
        assert set(recorder.markers) == {mine, other}
        assert (other, 1, 1) in recorder.claims
        await etcd.delete(keys.running(other, 1))
        await wait_until(
            holds(lambda: other not in recorder.markers), 10, "the new bucket followed"
        )
        # And a bucket given away is no longer followed.
        recorder.followed = frozenset({bucket_of(other)})
        sync.rescope()
        await wait_until(holds(lambda: sync.marker_reads == 2), 10, "the markers read again")
        await etcd.delete(keys.running(mine, 1))
        await etcd.put(keys.running(other, 1), b'{"worker":"w2","planTime":3}')
        await wait_until(holds(lambda: other in recorder.markers), 10, "the other bucket's put")
        assert recorder.markers_gone == [other]  # the delete in the bucket given away unheard


async def test_job_watch_resumes_after_a_broken_connection_without_losing_events(
    etcd, stack
) -> None:
    keys = KeyLayout(stack.prefix)
    await etcd.put(keys.job("a"), _job("a").to_record())
    proxy = TcpProxy(*stack.etcd_endpoint.split(":"))
    await proxy.start()
    watched = EtcdClient([proxy.endpoint], timeout=2)
    recorder = Recorder()
    sync = ClusterWatch(watched, keys, recorder)
    try:
        async with running(sync):
            await wait_until(lambda: _has(recorder, {"a"}), 10, "the initial read")
            proxy.cut()
            # Changes made while the worker cannot see etcd.
            await etcd.put(keys.job("b"), _job("b").to_record())
            await etcd.put(keys.job("a"), _job("a", "echo changed").to_record())
            await etcd.put(keys.killer("a"), b"")
            proxy.heal()
            await wait_until(lambda: _has(recorder, {"a", "b"}), 20, "the missed changes")
            await wait_until(holds(lambda: recorder.kills == ["a"]), 10, "the missed kill")
            assert recorder.jobs["a"].command == "echo changed"
            assert recorder.resets == 1  # resumed from its revision, no full re-read needed
    finally:
        await watched.close()
        await proxy.close()


async def test_job_watch_reads_everything_again_when_its_revision_was_compacted(
    etcd, stack
) -> None:
    keys = KeyLayout(stack.prefix)
    await etcd.put(keys.job("a"), _job("a").to_record())
    proxy = TcpProxy(*stack.etcd_endpoint.split(":"))
    await proxy.start()
    watched = EtcdClient([proxy.endpoint], timeout=2)
    recorder = Recorder()
    sync = ClusterWatch(watched, keys, recorder)
    try:
        async with running(sync):
            await wait_until(lambda: _has(recorder, {"a"}), 10, "the initial read")
            proxy.cut()
            await etcd.put(keys.job("b"), _job("b").to_record())
            await etcd.delete(keys.job("a"))
            reply = await etcd.put(keys.job("c"), _job("c").to_record())
            await etcd.compact(reply.header.revision)
            proxy.heal()
            await wait_until(lambda: _has(recorder, {"b", "c"}), 20, "the state after compaction")
            assert recorder.resets == 2  # the watch could not resume, so it read everything
    finally:
        await watched.close()
        await proxy.close()


async def test_watch_from_a_compacted_revision_raises(etcd, stack) -> None:
    key = f"{stack.prefix}compact/x".encode()
    first = await etcd.put(key, b"1")
    latest = await etcd.put(key, b"2")
    await etcd.compact(latest.header.revision)
    with pytest.raises(WatchCompactedError):
        async for _ in watch_prefixes(etcd, [WatchSpec(key, first.header.revision)]):
            pass


async def _has(recorder: Recorder, names: set[str]) -> bool:
    return set(recorder.jobs) == names


async def test_the_runs_a_dead_worker_left_are_read_as_they_were_before_its_lease_expired(
    etcd, stack
) -> None:
    """What lost-run detection rests on: etcd deletes every key on an expiring lease in the
    revision that deletes the registration, so the markers on that lease one revision earlier
    are the runs that died; one released before, or on another lease, is not among them."""
    keys = KeyLayout(stack.prefix)
    recorder = Recorder()
    sync = ClusterWatch(etcd, keys, recorder)
    lost: list[LostRun] = []
    finder = DeadRunFinder(etcd, keys, lost.append)
    lease, other = await etcd.lease(30), await etcd.lease(30)
    await etcd.put(keys.running("earlier", 0), b'{"worker":"w9","planTime":0}', lease=lease)
    async with running(sync), running(finder):
        await wait_until(holds(lambda: sync.synced.is_set()), 10, "the initial read")
        await etcd.put(keys.worker("w9"), b"{}", lease=lease)
        await wait_until(holds(lambda: recorder.workers.get("w9") == lease.id), 10, "w9 seen")
        await etcd.put(keys.running("released", 0), b'{"worker":"w9","planTime":1}', lease=lease)
        await etcd.delete(keys.running("released", 0))  # what a finished run does
        await etcd.put(keys.running("dying", 0, 5), b'{"worker":"w9","planTime":5}', lease=lease)
        await etcd.put(keys.running("elsewhere", 0), b'{"worker":"w8","planTime":3}', lease=other)
        await lease.revoke()  # what expiry does: every key on the lease in one revision
        await wait_until(holds(lambda: len(recorder.markers_gone) == 3 and recorder.gone), 10,
                         "the deletions")  # fmt: skip
        ((_, gone_lease, gone_revision),) = recorder.gone
        assert gone_lease == lease.id
        finder.worker_died("w9", gone_lease, gone_revision)
        await wait_until(holds(lambda: finder.reads == 1), 10, "the read of the dead runs")
    assert sorted(lost, key=lambda run: run.job_name) == [
        LostRun("dying", 5, "w9", None),
        LostRun("earlier", 0, "w9", None),
    ]
    await other.revoke()


async def test_a_death_whose_revision_was_compacted_is_given_up_and_the_next_is_read(
    etcd, stack
) -> None:
    keys = KeyLayout(stack.prefix)
    lost: list[LostRun] = []
    finder = DeadRunFinder(etcd, keys, lost.append)
    first, second = await etcd.lease(30), await etcd.lease(30)
    await etcd.put(keys.running("old", 0), b'{"worker":"w1","planTime":1}', lease=first)
    revoked = await etcd.put(keys.worker("w1"), b"{}", lease=first)
    await first.revoke()
    await etcd.put(keys.running("new", 0), b'{"worker":"w2","planTime":2}', lease=second)
    await etcd.put(keys.worker("w2"), b"{}", lease=second)
    await second.revoke()
    now = await etcd.put(keys.worker("probe"), b"")
    await etcd.compact(now.header.revision)
    lease = await etcd.lease(30)
    await etcd.put(keys.running("fresh", 0), b'{"worker":"w4","planTime":4}', lease=lease)
    await etcd.put(keys.worker("w4"), b"{}", lease=lease)
    gone_at = (await etcd.get(keys.worker("w4"))).mod_revision + 1
    await lease.revoke()
    async with running(finder):
        # w1 died just after its registration was written: that history is compacted.
        finder.worker_died("w1", first.id, revoked.header.revision + 1)
        finder.worker_died("w3", 0, now.header.revision)  # lease 0: nothing to look for
        finder.worker_died("w4", lease.id, gone_at)
        await wait_until(holds(lambda: bool(lost)), 10, "the last death read")
    assert finder.reads == 1
    assert lost == [LostRun("fresh", 4, "w4", None)]


async def test_client_fails_over_to_the_next_endpoint_and_resolves_names(stack) -> None:
    from gdts.localstack import free_port

    port = stack.etcd_endpoint.rsplit(":", 1)[1]
    dead_first = EtcdClient([f"127.0.0.1:{free_port()}", f"localhost:{port}"], timeout=5)
    try:
        await dead_first.put(f"{stack.prefix}failover".encode(), b"ok")
        got = await dead_first.get(f"{stack.prefix}failover".encode())
        assert got is not None and got.value == b"ok"
    finally:
        await dead_first.close()


async def test_claims_made_together_share_a_transaction_yet_each_gets_its_own_outcome(
    etcd, stack
) -> None:
    keys = KeyLayout(stack.prefix)
    lease_a, lease_b = await etcd.lease(30), await etcd.lease(30)
    worker_a = TickClaimer(etcd, keys, "a", start_window_s=10)
    worker_b = TickClaimer(etcd, keys, "b", start_window_s=10)
    taken = await worker_b.claim("taken", 1000, lease_b.id, worker_b.marker(1000, 1))
    running = await worker_b.claim("running", 500, lease_b.id, worker_b.marker(500, 1))
    assert (taken.outcome, running.outcome) == (ClaimOutcome.WON, ClaimOutcome.WON)

    names = ["free-1", "taken", "free-2", "running", "free-3"]
    sent_before = worker_a.transactions_sent
    claims = await asyncio.gather(
        *(worker_a.claim(n, 1000, lease_a.id, worker_a.marker(1000, 2)) for n in names)
    )
    outcomes = {claim.job_name: claim.outcome for claim in claims}
    assert outcomes == {
        "free-1": ClaimOutcome.WON,
        "taken": ClaimOutcome.TAKEN,
        "free-2": ClaimOutcome.WON,
        "running": ClaimOutcome.BUSY,
        "free-3": ClaimOutcome.WON,
    }
    assert worker_a.transactions_sent == sent_before + 1  # one batch, however it went
    won = [claim for claim in claims if claim.outcome is ClaimOutcome.WON]
    for claim in won:
        stored = await etcd.get(keys.running(claim.job_name, 0))
        assert stored is not None and stored.value == claim.marker
    # What the batch lost is untouched: b's markers are still b's.
    assert (await etcd.get(keys.running("taken", 0))).value == taken.marker
    assert (await etcd.get(keys.running("running", 0))).value == running.marker

    # Releases together, one of them not ours any more: ours go, b's marker stays.
    await etcd.put(keys.running("free-2", 0), b"someone else's run")
    stale = [claim for claim in won if claim.job_name == "free-2"]
    await asyncio.gather(*(worker_a.release(claim) for claim in won + stale))
    assert await etcd.get(keys.running("free-1", 0)) is None
    assert await etcd.get(keys.running("free-3", 0)) is None
    assert (await etcd.get(keys.running("free-2", 0))).value == b"someone else's run"
    await worker_a.close()
    await worker_b.close()


async def test_a_one_shot_claim_marks_the_job_done_for_good(etcd, stack) -> None:
    keys = KeyLayout(stack.prefix)
    lease = await etcd.lease(30)
    worker_a = TickClaimer(etcd, keys, "a", start_window_s=10)
    worker_b = TickClaimer(etcd, keys, "b", start_window_s=10)
    won = await worker_a.claim("once", 9000, lease.id, worker_a.marker(9000, 9001), once=True)
    assert won.outcome is ClaimOutcome.WON
    await worker_a.release(won)
    # Long after: the tick claim's lease has expired (deleted here), yet the done marker,
    # on no lease, still refuses the run, also batched with a claim that wins.
    await etcd.delete(keys.tick_claim("once", 0, 9000))
    done = await etcd.get(keys.done("once", 9000))
    assert done is not None and done.lease == 0
    again, other = await asyncio.gather(
        worker_b.claim("once", 9000, lease.id, worker_b.marker(9000, 99_000), once=True),
        worker_b.claim("other", 9000, lease.id, worker_b.marker(9000, 99_000), once=True),
    )
    assert (again.outcome, other.outcome) == (ClaimOutcome.TAKEN, ClaimOutcome.WON)
    await worker_a.close()
    await worker_b.close()


async def test_run_requests_are_read_then_followed(etcd, stack) -> None:
    keys = KeyLayout(stack.prefix)
    before = keys.run_request("a", 1_000_001)
    await etcd.put(before, b"")
    recorder = Recorder()
    sync = ClusterWatch(etcd, keys, recorder)
    async with running(sync):
        await wait_until(holds(lambda: before in recorder.run_requests), 10, "the pending one")
        assert recorder.run_requests[before] == ("a", 1_000_001)
        after = keys.run_request("b", 2_000_002)
        await etcd.put(after, b"")
        await wait_until(holds(lambda: after in recorder.run_requests), 10, "the new one")
        await etcd.delete(before)
        await wait_until(holds(lambda: before not in recorder.run_requests), 10, "the claim")
        assert recorder.run_requests == {after: ("b", 2_000_002)}


async def test_prefix_changed_since_sees_writes_and_deletes_under_the_prefix_only(
    etcd, stack
) -> None:
    prefix = KeyLayout(stack.prefix).jobs_prefix
    for i in range(5):
        await etcd.put(prefix + b"k%d" % i, b"v")
    kvs, revision = await read_prefix(etcd, prefix)
    assert await prefix_changed_since(etcd, prefix, revision, len(kvs)) == (False, revision)
    await etcd.put(KeyLayout(stack.prefix).killer_prefix + b"other", b"x")  # not under prefix
    changed, now = await prefix_changed_since(etcd, prefix, revision, len(kvs))
    assert not changed and now > revision
    await etcd.put(prefix + b"k1", b"v")  # rewritten with the same value
    assert (await prefix_changed_since(etcd, prefix, revision, len(kvs)))[0]
    kvs, revision = await read_prefix(etcd, prefix)
    await etcd.delete(prefix + b"k3")
    assert (await prefix_changed_since(etcd, prefix, revision, len(kvs)))[0]


async def test_kill_markers_carry_the_planned_time_they_kill_before(etcd, stack) -> None:
    keys = KeyLayout(stack.prefix)
    recorder = Recorder()
    sync = ClusterWatch(etcd, keys, recorder)
    async with running(sync):
        await wait_until(holds(lambda: sync.synced.is_set()), 10, "the initial read")
        await etcd.put(keys.killer("all"), b"")  # /job/kill: every run
        await etcd.put(keys.killer("older"), b"5000")  # policy replace: runs before 5000
        await etcd.put(keys.running("overlapping", 0, 7000), b'{"planTime": 7000}')
        await wait_until(holds(lambda: len(recorder.kills) == 2), 10, "both kills")
        await wait_until(holds(lambda: recorder.other_runs), 10, "the per-run marker")
    assert list(zip(recorder.kills, recorder.kill_bounds, strict=True)) == [
        ("all", None),
        ("older", 5000),
    ]
    assert recorder.other_runs == [("overlapping", b'{"planTime": 7000}')]
    assert recorder.markers == {}  # a per-run marker does not say "the job is running"


async def test_a_claim_made_from_an_older_version_of_the_job_fails(etcd, stack) -> None:
    """Once a save, disable or delete is written, a claim made from the version before it
    cannot win; it answers what the job is now, to claim again from."""
    keys = KeyLayout(stack.prefix)
    lease = await etcd.lease(30)
    claimer = TickClaimer(etcd, keys, "a", start_window_s=10)
    await etcd.put(keys.job("versioned"), _job("versioned").to_record())
    first = await etcd.get(keys.job("versioned"))
    gen = first.create_revision

    async def claim(plan_ms: int, revision: int) -> Any:
        marker = claimer.marker(plan_ms, plan_ms + 1)
        return await claimer.claim(
            "versioned", plan_ms, lease.id, marker, generation=gen, revision=revision
        )

    won = await claim(1000, first.mod_revision)
    assert won.outcome is ClaimOutcome.WON
    await claimer.release(won)
    edited = _job("versioned", "echo edited").to_record()
    await etcd.put(keys.job("versioned"), edited)
    second = await etcd.get(keys.job("versioned"))
    stale = await claim(2000, first.mod_revision)
    assert stale.outcome is ClaimOutcome.STALE
    assert stale.current == StoredJob(edited, second.mod_revision, gen)
    assert await etcd.get(keys.running("versioned", gen)) is None  # nothing written
    assert (await claim(2000, second.mod_revision)).outcome is ClaimOutcome.WON
    await etcd.delete(keys.job("versioned"))
    gone = await claim(3000, second.mod_revision)
    assert (gone.outcome, gone.current) == (ClaimOutcome.STALE, None)
    # A batch where one claim is stale: the others win all the same.
    await etcd.put(keys.job("fresh"), _job("fresh").to_record())
    fresh = await etcd.get(keys.job("fresh"))
    results = await asyncio.gather(
        claim(4000, second.mod_revision),
        claimer.claim(
            "fresh", 4000, lease.id, claimer.marker(4000, 4001),
            generation=fresh.create_revision, revision=fresh.mod_revision,
        ),
    )  # fmt: skip
    assert [r.outcome for r in results] == [ClaimOutcome.STALE, ClaimOutcome.WON]


async def test_a_retry_rewrites_its_running_marker_only_while_it_holds_it(etcd, stack) -> None:
    keys = KeyLayout(stack.prefix)
    lease = await etcd.lease(30)
    claimer = TickClaimer(etcd, keys, "a", start_window_s=10)
    claim = await claimer.claim("retried", 6000, lease.id, claimer.marker(6000, 6001))
    second = claimer.marker(6000, 6500, attempt=2)
    assert await claimer.mark(claim, second, lease.id)
    stored = await etcd.get(keys.running("retried", 0))
    assert json.loads(stored.value)["attempt"] == 2 and stored.lease == lease.id
    assert not await claimer.mark(claim, claimer.marker(6000, 6900, attempt=3), lease.id)
    assert (await etcd.get(keys.running("retried", 0))).value == second


async def test_a_restarted_worker_never_takes_its_earlier_lifes_claim_for_its_own(
    etcd, stack
) -> None:
    """Same worker id, the same tick, claimedAt equal to the millisecond (the earlier life's
    clock was set ahead by just the time between the two claims): still not the same claim."""
    keys = KeyLayout(stack.prefix)
    lease = await etcd.lease(30)
    earlier, later = (TickClaimer(etcd, keys, "w2", start_window_s=10) for _ in range(2))
    first = await earlier.claim("skewed", 4000, lease.id, earlier.marker(4000, 4018))
    again = await later.claim("skewed", 4000, lease.id, later.marker(4000, 4018))
    assert (first.outcome, again.outcome) == (ClaimOutcome.WON, ClaimOutcome.TAKEN)
