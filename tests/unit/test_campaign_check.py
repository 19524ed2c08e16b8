"""The fault campaign's plan and checker (tests/fault/campaign), pure: a checker that missed a
double run or a run after a disable would let the campaign pass whatever the cluster did."""

from __future__ import annotations

from tests.fault.campaign.check import Acked, FaultWindow, Record, RunLine, check, parse_lines
from tests.fault.campaign.plan import FAULT_LENGTHS, JobSpec, make_plan

T = 1_800_000_000  # epoch s
FORBID = JobSpec("f", "forbid", 0.2)
RETRY = JobSpec("r", "forbid", 0.1, retries=1)


def run(job: str, plan_s: int, attempt: int = 1, *, at: float | None = None) -> list[RunLine]:
    start = plan_s + 0.05 if at is None else at
    return [
        RunLine("S", job, plan_s * 1000, attempt, "w0", start),
        RunLine("E", job, plan_s * 1000, attempt, "w0", start + 0.2),
    ]


def stored(lines: list[RunLine]) -> list[Record]:
    return [Record(x.job, x.plan_ms, x.attempt, "succeeded") for x in lines if x.kind == "E"]


def verdict_of(jobs, lines, records=None, calls=(), faults=(), until=T + 10, claims=None):
    return check(jobs, lines, stored(lines) if records is None else records, list(calls),
                 list(faults), saved_s=T - 2, until_s=until, recovery_s=5,
                 claims=claims)  # fmt: skip


def every_tick(job: str, first: int = T, last: int = T + 10) -> list[RunLine]:
    return [line for s in range(first, last) for line in run(job, s)]


def test_a_clean_run_is_clean() -> None:
    verdict = verdict_of([FORBID], every_tick("f"))
    assert verdict.clean and verdict.ticks_checked == 10 and verdict.runs_started == 10


def test_a_tick_started_twice_is_found_but_a_retry_is_not() -> None:
    lines = every_tick("f") + run("f", T + 3, attempt=2)
    assert verdict_of([FORBID], lines).twice == [("f", (T + 3) * 1000, 2)]
    retried = every_tick("r") + run("r", T + 3, attempt=2)
    assert verdict_of([RETRY], retried).clean


def test_an_overlap_of_a_forbid_job_is_found() -> None:
    lines = every_tick("f") + [RunLine("O", "f", (T + 4) * 1000, 1, "w1", T + 4.1)]
    assert len(verdict_of([FORBID], lines).overlaps) == 1
    allowed = JobSpec("f", "allow", 2.0)
    assert verdict_of([allowed], lines).clean


def test_a_finished_run_missing_from_mongodb_is_found() -> None:
    lines = every_tick("f")
    records = stored(lines)[1:]
    assert verdict_of([FORBID], lines, records).missing_records == [("f", T * 1000, 1)]


def test_a_start_after_an_acknowledged_disable_is_found() -> None:
    lines = every_tick("f", T, T + 5) + run("f", T + 7)
    disabled = Acked("f", "disable", T + 5.2, T + 5.3)
    verdict = verdict_of([FORBID], lines, calls=[disabled])
    assert [(v[0].plan_ms, v[1].action) for v in verdict.after_ack] == [((T + 7) * 1000, "disable")]
    assert verdict.missed == []  # no tick is owed while disabled


def test_a_call_without_an_answer_promises_nothing() -> None:
    lines = every_tick("f", T, T + 5) + run("f", T + 7)
    unknown = [Acked("f", "disable", T + 5.2, None)]
    assert verdict_of([FORBID], lines, calls=unknown).after_ack == []
    # A run asked for with /job/run may run on a disabled job.
    manual = [RunLine("S", "f", (T + 8) * 1000 + 1, 1, "w0", T + 8.1)]
    disabled = [Acked("f", "disable", T + 5.2, T + 5.3)]
    assert verdict_of([FORBID], lines[:10] + manual, calls=disabled).after_ack == []


def test_a_missed_tick_counts_unless_a_fault_window_covers_it() -> None:
    lines = [x for x in every_tick("f") if x.plan_ms != (T + 6) * 1000]
    assert verdict_of([FORBID], lines).missed == [("f", (T + 6) * 1000)]
    window = FaultWindow("kill-worker", T + 2.0, T + 3.0)  # recovery 5 s: until T + 8
    excused = verdict_of([FORBID], lines, faults=[window])
    assert excused.missed == [] and excused.missed_in_faults == {"kill-worker": 1}


def test_a_tick_killed_at_spawn_by_a_kill_asked_for_then_is_not_owed() -> None:
    lines = [x for x in every_tick("f") if x.plan_ms != (T + 6) * 1000]
    killed = stored(lines) + [Record("f", (T + 6) * 1000, 1, "killed")]
    kill = Acked("f", "kill", T + 6.03, T + 6.05)
    verdict = verdict_of([FORBID], lines, killed, calls=[kill])
    assert verdict.clean and verdict.killed_before_start == 1
    # Not logged killed: nothing took it, it was missed.
    assert verdict_of([FORBID], lines, stored(lines), calls=[kill]).missed == [
        ("f", (T + 6) * 1000)
    ]
    # A kill answered before the tick was due has no business with its run.
    early = Acked("f", "kill", T + 5.5, T + 5.6)
    assert verdict_of([FORBID], lines, killed, calls=[early]).missed == [("f", (T + 6) * 1000)]


def test_parse_skips_a_line_cut_by_a_kill() -> None:
    text = "S f 1000 1 w0 1.5\nS f 2000 1 w0\nE f 1000 1 w0 1.7\n"
    assert [x.kind for x in parse_lines(text)] == ["S", "E"]


def test_the_plan_is_the_same_for_a_seed_and_never_takes_too_much_at_once() -> None:
    plan = make_plan(7, 600)
    assert plan == make_plan(7, 600) and plan != make_plan(8, 600)
    assert {f.kind for f in plan.faults} == set(FAULT_LENGTHS)
    for fault in plan.faults:
        assert 10 <= fault.at_s and fault.ends_s <= 600 - 15
        same = [g for g in plan.faults if g.at_s <= fault.at_s < g.ends_s and g != fault]
        if fault.kind.endswith("worker") or "worker-" in fault.kind:
            assert fault.target not in {g.target for g in same if "worker" in g.kind}
    deleted = [c.job for c in plan.calls if c.action == "delete"]
    assert len(deleted) == len(set(deleted))
    for call in plan.calls:  # nothing is asked of a job after its delete
        assert not any(c.job == call.job and c.at_s < call.at_s for c in plan.calls
                       if c.action == "delete")  # fmt: skip


def test_a_replace_jobs_tick_superseded_by_a_later_one_is_not_owed() -> None:
    replace = JobSpec("p", "replace", 3.0)
    lines = [x for x in every_tick("p") if x.plan_ms != (T + 4) * 1000]
    assert verdict_of([replace], lines).missed == []  # T + 5 started within T + 4's window
    late = [x for x in lines if x.plan_ms < (T + 4) * 1000]
    late += [x for s in range(T + 5, T + 10) for x in run("p", s, at=T + 20.0)]
    assert verdict_of([replace], late).missed == [("p", (T + 4) * 1000)]


def test_a_start_claimed_before_the_disable_was_written_is_not_after_it() -> None:
    lines = every_tick("f", T, T + 5) + run("f", T + 5, at=T + 5.4)  # spawned after the answer
    disabled = Acked("f", "disable", T + 5.1, T + 5.3, revision=900)
    before = {("f", (T + 5) * 1000): 899}
    assert verdict_of([FORBID], lines, calls=[disabled], claims=before).after_ack == []
    after = {("f", (T + 5) * 1000): 901}
    assert len(verdict_of([FORBID], lines, calls=[disabled], claims=after).after_ack) == 1
