"""A non-owner's decision to step in for a job's owner (gdts.worker.takeover), pure: the
running-marker events it reacts to are fed to a ClusterView directly, at chosen instants."""

import dataclasses

from gdts.job import Job
from gdts.keys import RunningKey
from gdts.markers import running_marker
from gdts.routing import Candidate
from gdts.worker import takeover
from gdts.worker.clusterview import ClusterView
from gdts.worker.ticktable import DueTick

DELAY = 2000  # takeoverDelay
WINDOW = 10_000  # startWindow
PLAN = 1_800_000_000_000
JOB = dataclasses.replace(Job.create("j", "true", "* * * * * *"), generation=7)
JOB_MARKER = RunningKey("j", 7, None)
TICK = DueTick(JOB, PLAN)


def view() -> ClusterView:
    return ClusterView("w2", claim_memory_ms=2 * WINDOW)


def claim_seen(cluster: ClusterView, plan_ms: int, now_ms: int) -> None:
    """The owner's claim of ``plan_ms`` and, its run done, the marker's removal."""
    marker = running_marker("w1", plan_ms, plan_ms)
    cluster.marker_put(JOB_MARKER, marker, now_ms)
    cluster.marker_gone(JOB_MARKER)


def decide(cluster: ClusterView, now_ms: int, tick: DueTick = TICK) -> takeover.Decision:
    return takeover.decide(
        tick,
        cluster,
        now_ms,
        delay_ms=DELAY,
        window_ends_ms=tick.start_deadline(WINDOW),
        job_deleted=False,
        stopping=False,
    )


def test_no_claim_of_the_job_for_a_takeover_delay_means_step_in() -> None:
    cluster = view()
    claim_seen(cluster, PLAN - 1000, now_ms=PLAN - 1000 + 10)  # the tick before, on time
    assert decide(cluster, PLAN + DELAY).step_in


def test_an_owner_claiming_late_but_claiming_is_left_to_catch_up() -> None:
    cluster = view()
    # The tick before, claimed 2.5 s late: the owner is behind.
    claim_seen(cluster, PLAN - 1000, now_ms=PLAN + 1500)
    decision = decide(cluster, PLAN + DELAY)
    assert not decision.step_in
    # Looked at again one takeover delay later, not dropped.
    assert (decision.outcome, decision.look_again_at) == ("deferred", PLAN + 2 * DELAY)
    # The owner then stops claiming: at that later look, step in.
    assert decide(cluster, PLAN + 2 * DELAY).step_in


def test_a_tick_already_claimed_is_never_taken_over() -> None:
    cluster = view()
    claim_seen(cluster, PLAN, now_ms=PLAN + 100)
    decision = decide(cluster, PLAN + 10 * DELAY)
    assert not decision.step_in
    assert decision.look_again_at is None


def test_a_forbid_job_running_elsewhere_is_left_alone() -> None:
    cluster = view()
    cluster.marker_put(JOB_MARKER, running_marker("w1", PLAN - 1000, PLAN - 1000), PLAN - 5000)
    assert decide(cluster, PLAN + DELAY) == takeover.Decision(False, "busy")


def test_a_run_a_deleted_job_of_the_same_name_left_going_does_not_block() -> None:
    cluster = view()
    old_run = RunningKey("j", JOB.generation - 1, None)
    cluster.marker_put(old_run, running_marker("w1", PLAN - 1000, PLAN - 1000), PLAN - 5000)
    assert decide(cluster, PLAN + DELAY) == takeover.STEP_IN


def test_a_late_owner_is_not_looked_at_again_past_the_start_window() -> None:
    cluster = view()
    claim_seen(cluster, PLAN - 1000, now_ms=PLAN + WINDOW - DELAY)
    decision = decide(cluster, PLAN + WINDOW - DELAY + 10)
    assert decision == takeover.Decision(False, "deferred", None)


def test_a_manual_run_already_claimed_elsewhere_is_dropped() -> None:
    cluster = view()
    tick = DueTick(JOB, PLAN + 1, run_request=b"/run/j/1")
    assert decide(cluster, PLAN + DELAY, tick) == takeover.Decision(False)
    cluster.run_requests.add(b"/run/j/1")
    assert decide(cluster, PLAN + DELAY, tick).step_in


def test_the_queue_gives_back_ticks_in_the_order_they_fall_due() -> None:
    queue = takeover.TakeoverQueue()
    queue.push(DueTick(JOB, 3), 30)
    queue.push(DueTick(JOB, 1), 10)
    queue.push(DueTick(JOB, 2), 10)
    assert queue.next_ms() == 10
    assert [t.plan_ms for t in queue.pop_due(10)] == [1, 2]
    assert queue.pop_due(29) == [] and len(queue) == 1
    assert [t.plan_ms for t in queue.pop_due(30)] == [3] and queue.next_ms() is None


def test_a_worker_at_its_cap_does_not_step_in_but_looks_again_while_the_tick_may_start() -> None:
    cluster = view()
    now = PLAN + DELAY
    decision = takeover.decide(
        TICK, cluster, now, delay_ms=DELAY, window_ends_ms=TICK.start_deadline(WINDOW),
        job_deleted=False, stopping=False, at_capacity=True,
    )  # fmt: skip
    assert not decision.step_in
    assert decision.outcome == "capacity"
    assert decision.look_again_at == now + takeover.CAPACITY_RECHECK_MS
    # At the end of the window there is no later look.
    late = TICK.start_deadline(WINDOW) - 10
    last = takeover.decide(
        TICK, cluster, late, delay_ms=DELAY, window_ends_ms=TICK.start_deadline(WINDOW),
        job_deleted=False, stopping=False, at_capacity=True,
    )  # fmt: skip
    assert (last.step_in, last.look_again_at) == (False, None)


def card(worker_id: str, *, full: bool = False) -> Candidate:
    return Candidate(worker_id, full=full)


def test_the_view_knows_which_workers_said_they_are_full() -> None:
    cluster = view()  # this worker is w2
    cluster.workers_reset(
        {"w1": 1, "w3": 3}, {"w1": card("w1", full=True), "gone": card("gone", full=True)}
    )
    assert cluster.full == {"w1"}
    assert not cluster.others_full()
    cluster.worker_registered("w3", 3, card("w3", full=True))
    assert cluster.others_full()
    cluster.worker_registered("w1", 1, card("w1"))
    assert not cluster.others_full()
    cluster.worker_gone("w1", 1)
    assert cluster.others_full()  # the one other worker left is full
