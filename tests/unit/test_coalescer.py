"""gdts.worker.coalescer: requests submitted together are sent together; each gets its answer."""

from __future__ import annotations

import asyncio

import pytest

from gdts.worker.coalescer import Coalescer

pytestmark = pytest.mark.asyncio


class Recorder:
    def __init__(self, fail_when: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail_when = fail_when
        self.gate = asyncio.Event()
        self.gate.set()
        self.sent = asyncio.Event()

    async def send(self, requests: list[str]) -> list[str]:
        self.batches.append(list(requests))
        self.sent.set()
        await self.gate.wait()
        if self.fail_when in requests:
            raise RuntimeError(f"etcd said no to {self.fail_when}")
        return [f"ok:{r}" for r in requests]


def by_job(request: str) -> str:
    return request.split("@")[0]


async def test_requests_made_together_share_one_batch_and_get_their_own_results() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.send, max_batch=64, key=by_job)
    results = await asyncio.gather(*(coalescer.submit(f"job{i}@1") for i in range(10)))
    assert results == [f"ok:job{i}@1" for i in range(10)]
    assert len(recorder.batches) == 1


async def test_batches_are_cut_at_max_batch() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.send, max_batch=4, key=by_job)
    await asyncio.gather(*(coalescer.submit(f"job{i}@1") for i in range(10)))
    assert [len(b) for b in recorder.batches] == [4, 4, 2]


async def test_two_requests_with_one_key_never_share_a_batch() -> None:
    # Two ticks of one job both write its running marker: etcd rejects a duplicate key in a txn.
    recorder = Recorder()
    coalescer = Coalescer(recorder.send, max_batch=64, key=by_job)
    results = await asyncio.gather(
        coalescer.submit("a@1"), coalescer.submit("a@2"), coalescer.submit("b@1")
    )
    assert results == ["ok:a@1", "ok:a@2", "ok:b@1"]
    assert recorder.batches == [["a@1", "b@1"], ["a@2"]]


async def test_a_failed_batch_fails_each_of_its_requests_and_not_the_next_ones() -> None:
    recorder = Recorder(fail_when="bad@1")
    coalescer = Coalescer(recorder.send, max_batch=2, key=by_job)
    outcomes = await asyncio.gather(
        coalescer.submit("bad@1"),
        coalescer.submit("x@1"),
        coalescer.submit("y@1"),
        return_exceptions=True,
    )
    assert [type(o) for o in outcomes[:2]] == [RuntimeError, RuntimeError]
    assert outcomes[2] == "ok:y@1"
    assert await coalescer.submit("z@1") == "ok:z@1"  # the coalescer keeps working


async def test_requests_arriving_during_a_round_go_in_the_next_one() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    coalescer = Coalescer(recorder.send, max_batch=64, key=by_job)
    first = asyncio.ensure_future(coalescer.submit("a@1"))
    await asyncio.wait_for(recorder.sent.wait(), 5)
    later = [asyncio.ensure_future(coalescer.submit(f"j{i}@1")) for i in range(3)]
    await asyncio.sleep(0)
    assert len(recorder.batches) == 1  # one round in flight at a time
    recorder.gate.set()
    assert await first == "ok:a@1"
    assert await asyncio.gather(*later) == ["ok:j0@1", "ok:j1@1", "ok:j2@1"]
    assert recorder.batches[1] == ["j0@1", "j1@1", "j2@1"]


async def test_a_caller_that_gave_up_is_left_out_of_the_batch() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.send, max_batch=64, key=by_job)
    gone = asyncio.ensure_future(coalescer.submit("gone@1"))
    kept = asyncio.ensure_future(coalescer.submit("kept@1"))
    gone.cancel()
    assert await kept == "ok:kept@1"
    assert recorder.batches == [["kept@1"]]


async def test_close_cancels_waiting_and_in_flight_requests() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    coalescer = Coalescer(recorder.send, max_batch=1, key=by_job)
    waiting = [asyncio.ensure_future(coalescer.submit(f"j{i}@1")) for i in range(3)]
    await asyncio.wait_for(recorder.sent.wait(), 5)
    await coalescer.close()
    done, _ = await asyncio.wait(waiting, timeout=5)
    assert len(done) == 3 and all(task.cancelled() for task in done)
