"""A non-owner's decision to step in for a job's owner (gdts.worker.worker), in memory: the
running-marker events it reacts to are fed in directly, at chosen instants."""

from gdts.config import WorkerConfig
from gdts.job import Job
from gdts.worker.lostruns import running_marker
from gdts.worker.ticktable import DueTick
from gdts.worker.worker import Worker

DELAY = 2000  # takeoverDelay
PLAN = 1_800_000_000_000


def worker_at(now: list[int]) -> tuple[Worker, DueTick]:
    worker = Worker(WorkerConfig(worker_id="w2", takeover_delay=DELAY, start_window=10_000))
    worker.now_ms = lambda: now[0]  # type: ignore[method-assign]
    job = Job.create("j", "true", "* * * * * *")
    worker.job_saved(job)
    return worker, DueTick(job, PLAN)


def claim_seen(worker: Worker, plan_ms: int) -> None:
    """The owner's claim of ``plan_ms`` and, its run done, the marker's removal."""
    marker = running_marker("w1", plan_ms, plan_ms)
    worker.running_marker_put("j", marker)
    worker.running_marker_gone("j", 1, 1, marker)


def test_no_claim_of_the_job_for_a_takeover_delay_means_step_in() -> None:
    now = [PLAN - 1000 + 10]
    worker, tick = worker_at(now)
    claim_seen(worker, PLAN - 1000)  # the tick before, on time; then nothing
    now[0] = PLAN + DELAY
    assert worker._should_take_over(tick, now[0])


def test_an_owner_claiming_late_but_claiming_is_left_to_catch_up() -> None:
    now = [PLAN + 1500]
    worker, tick = worker_at(now)
    claim_seen(worker, PLAN - 1000)  # the tick before, claimed 2.5 s late: the owner is behind
    now[0] = PLAN + DELAY
    assert not worker._should_take_over(tick, now[0])
    # Looked at again one takeover delay later, not dropped.
    assert [(at, t.plan_ms) for at, _, t in worker._takeovers] == [(PLAN + 2 * DELAY, PLAN)]
    # The owner then stops claiming: at that later look, step in.
    now[0] = PLAN + 2 * DELAY
    assert worker._should_take_over(tick, now[0])


def test_a_tick_already_claimed_is_never_taken_over() -> None:
    now = [PLAN + 100]
    worker, tick = worker_at(now)
    claim_seen(worker, PLAN)
    now[0] = PLAN + 10 * DELAY
    assert not worker._should_take_over(tick, now[0])
    assert worker._takeovers == []
