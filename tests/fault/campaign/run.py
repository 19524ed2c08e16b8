"""A fault campaign from start to verdict: the rig up, the jobs saved, the nemesis and the API
traffic played from the plan, then every part healed, the results collected and checked.

``python -m tests.fault.campaign --minutes 30 --seed 7`` runs one (bench/campaign.py is the long
form); tests/fault/test_campaign.py runs a short one in the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from pymongo import AsyncMongoClient

from gdts.etcd import EtcdClient, WatchSpec, read_prefix, watch_prefixes
from gdts.keys import KeyLayout
from gdts.runlog import COLLECTION
from tests.fault.campaign.check import (
    Acked,
    FaultWindow,
    Record,
    Verdict,
    check,
    parse_lines,
)
from tests.fault.campaign.plan import ApiCall, Fault, JobSpec, Plan, make_plan
from tests.fault.campaign.rig import WORKER_LEASE_TTL, Rig
from tests.support import ADMIN_TOKEN

log = logging.getLogger(__name__)

EVERY_SECOND = "* * * * * *"
START_WINDOW_S = 10
# After a fault ends, how long its misses are still its own: a worker's lease to expire, a
# restarted one to register, a tick's start window to pass.
RECOVERY_S = WORKER_LEASE_TTL + START_WINDOW_S + 5
_CALL_TIMEOUT_S = 10


@dataclass
class Outcome:
    plan: Plan
    verdict: Verdict
    faults_by_kind: Counter[str] = field(default_factory=Counter)
    calls_by_action: Counter[str] = field(default_factory=Counter)
    unanswered_calls: int = 0
    crashed: list[str] = field(default_factory=list)
    # What a missed tick's reader needs to find its cause: when the campaign began (epoch s),
    # the faults as dealt, and what the run log holds for each missed tick shown.
    began_s: float = 0.0
    windows: list[FaultWindow] = field(default_factory=list)
    missed_logged: dict[tuple[str, int], list[str]] = field(default_factory=dict)

    def report(self) -> str:
        v = self.verdict
        lines = [
            f"fault campaign: seed {self.plan.seed}, {self.plan.duration_s:.0f} s, "
            f"{len(self.plan.jobs)} jobs every second",
            "faults injected: "
            + ", ".join(f"{k} {n}" for k, n in sorted(self.faults_by_kind.items())),
            "API calls: "
            + ", ".join(f"{k} {n}" for k, n in sorted(self.calls_by_action.items()))
            + f" ({self.unanswered_calls} unanswered)",
            f"runs started: {v.runs_started}; ticks checked for a run: {v.ticks_checked}",
        ]
        lines += [f"  {name}: {count}" for name, count in v.counts().items()]
        if v.missed_in_faults:
            lines.append("  missed inside fault windows, by fault: " + ", ".join(
                f"{k} {n}" for k, n in sorted(v.missed_in_faults.items())))  # fmt: skip
        for what, items in (("twice", v.twice), ("overlap", v.overlaps),
                             ("missing", v.missing_records), ("after ack", v.after_ack),
                             ("missed", v.missed)):  # fmt: skip
            for item in items[:5]:
                lines.append(f"  e.g. {what}: {item}")
        for job, plan_ms in v.missed[:5]:
            logged = self.missed_logged.get((job, plan_ms), [])
            lines.append(f"  missed {job} at +{plan_ms / 1000 - self.began_s:.1f} s; "
                         f"its log: {logged or 'nothing'}")  # fmt: skip
        if v.missed:
            lines.append("  faults as dealt (s after the start): " + ", ".join(
                f"{w.kind}{'@' + w.worker if w.worker else ''} "
                f"{w.start_s - self.began_s:.1f}-{w.end_s - self.began_s:.1f}"
                for w in self.windows))  # fmt: skip
        if self.crashed:
            lines.append(f"processes that died on their own: {self.crashed}")
        lines.append(f"replay: python -m tests.fault.campaign --seed {self.plan.seed} "
                     f"--seconds {self.plan.duration_s:.0f}")  # fmt: skip
        return "\n".join(lines)


def command(job: JobSpec, records: Path) -> str:
    """The job's command: number this start, note an overlap (forbid), write the start, run,
    write the end. Each line is one O_APPEND write, so lines never interleave."""
    d = str(records)
    line = '"$J $P $A $GDTS_WORKER_ID $EPOCHREALTIME"'
    parts = [
        "J=$GDTS_JOB_NAME; P=$GDTS_PLAN_TIME; A=1",
        f'until mkdir "{d}/a/$J.$P.$A" 2>/dev/null || [ $A -gt 50 ]; do A=$((A+1)); done',
    ]
    if job.policy == "forbid":
        # The lock lives as long as any process of the run: a start that cannot take it
        # overlaps the run before.
        parts += [f'exec 9>>"{d}/l/$J"', f'flock -n 9 || echo O {line} >> "{d}/runs"']
    parts.append(f'echo S {line} >> "{d}/runs"')
    if job.retries:
        parts.append('[ "$A" = 1 ] && exit 1')
    parts += [f"sleep {job.sleep_s:.2f}", f'echo E {line} >> "{d}/runs"']
    return "; ".join(parts)


def job_fields(job: JobSpec, records: Path, edit: int = 0) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": job.name,
        "command": command(job, records) + (f" # edit {edit}" if edit else ""),
        "cronExpr": EVERY_SECOND,
        "concurrencyPolicy": job.policy,
    }
    if job.retries:
        fields.update(retries=job.retries, retryBackoff=0.1)
    if job.timeout_s is not None:
        fields["timeout"] = job.timeout_s
    return fields


class Api:
    """The campaign's API client: both managers in turn, the other when one is down."""

    def __init__(self, bases: list[str]) -> None:
        self._bases = bases
        self._turn = 0
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Api:
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=aiohttp.ClientTimeout(total=_CALL_TIMEOUT_S),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._session is not None
        await self._session.close()

    async def post(self, path: str, data: dict[str, str]) -> int | None:
        """The answer's status, or None when no manager answered (the call may have taken
        effect or not)."""
        assert self._session is not None
        self._turn += 1
        for i in range(len(self._bases)):
            base = self._bases[(self._turn + i) % len(self._bases)]
            try:
                async with self._session.post(base + path, data=data) as response:
                    await response.read()
                    return response.status
            except aiohttp.ClientConnectorError:
                continue  # refused before anything was sent: the other manager
            except (aiohttp.ClientError, TimeoutError):
                return None
        return None


async def run_campaign(
    seed: int, duration_s: float, base: Path, logs: Path, *, jobs: int = 50,
    progress: Callable[[str], None] = log.info,
) -> Outcome:  # fmt: skip
    plan = make_plan(seed, duration_s, jobs)
    rig = Rig(base, logs)
    await rig.start()
    try:
        return await _play(plan, rig, progress)
    finally:
        await rig.stop()


async def _play(plan: Plan, rig: Rig, progress: Callable[[str], None]) -> Outcome:
    assert rig.stack is not None
    outcome = Outcome(plan, Verdict())
    journal: list[Acked] = []
    windows: list[FaultWindow] = []
    etcd = EtcdClient(rig.etcd.endpoints, timeout=5)
    keys = KeyLayout(rig.stack.prefix)
    claims = ClaimLog(etcd, keys)
    watching = asyncio.create_task(claims.follow())
    try:
        return await _play_with(plan, rig, progress, outcome, journal, windows, etcd, keys, claims)
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await etcd.close()


async def _play_with(
    plan: Plan, rig: Rig, progress: Callable[[str], None], outcome: Outcome,
    journal: list[Acked], windows: list[FaultWindow], etcd: EtcdClient, keys: KeyLayout,
    claims: ClaimLog,
) -> Outcome:  # fmt: skip
    async with Api(rig.apis) as api:
        for job in plan.jobs:
            rig.prepare_job(job)
        statuses = await asyncio.gather(*(
            api.post("/job/save", {"job": json.dumps(job_fields(job, rig.records_dir))})
            for job in plan.jobs
        ))  # fmt: skip
        assert statuses == [200] * len(plan.jobs), statuses
        saved_s = time.time()
        progress(f"{len(plan.jobs)} jobs saved; {len(plan.faults)} faults to come")
        start = time.monotonic()
        outcome.began_s, outcome.windows = time.time(), windows
        nemesis = [_deal(fault, rig, start, windows, outcome) for fault in plan.faults]
        traffic = [
            _call(c, plan, rig, api, start, journal, outcome, etcd, keys) for c in plan.calls
        ]
        await asyncio.gather(*nemesis, *traffic)
        await asyncio.sleep(max(0.0, start + plan.duration_s - time.monotonic()))
        until_s = time.time() - 5
        outcome.crashed = rig.lost_processes()
        await asyncio.gather(*(api.post("/job/delete", {"name": j.name}) for j in plan.jobs))
    lines = parse_lines(rig.runs_file.read_text())
    records = await _records(rig, lines)
    outcome.verdict = check(plan.jobs, lines, records, journal, windows, saved_s=saved_s,
                            until_s=until_s, recovery_s=RECOVERY_S,
                            window_s=START_WINDOW_S, claims=claims.revisions)  # fmt: skip
    outcome.missed_logged = await _logged(rig, outcome.verdict.missed[:5])
    return outcome


async def _deal(
    fault: Fault, rig: Rig, start: float, windows: list[FaultWindow], outcome: Outcome
) -> None:
    await asyncio.sleep(max(0.0, start + fault.at_s - time.monotonic()))
    # One fault at a time on a part: a restart that drains takes longer than planned, and the
    # next fault dealt to that part waits for it.
    async with rig.lock_for(fault):
        await _deal_now(fault, rig, windows, outcome)


async def _deal_now(fault: Fault, rig: Rig, windows: list[FaultWindow], outcome: Outcome) -> None:
    began = time.time()
    i = fault.target
    try:
        if fault.kind == "kill-worker":
            await rig.kill_worker(i)
            await asyncio.sleep(fault.length_s)
            await rig.restart_worker(i)
        elif fault.kind == "stop-worker":
            rig.stop_worker(i)
            try:
                await asyncio.sleep(fault.length_s)
            finally:
                rig.continue_worker(i)
        elif fault.kind in ("cut-worker-etcd", "stall-worker-etcd"):
            rig.cut_worker(i, stall=fault.kind == "stall-worker-etcd")
            try:
                await asyncio.sleep(fault.length_s)
            finally:
                rig.heal_worker(i)
        elif fault.kind == "kill-etcd-leader":
            leader = await rig.etcd.leader_index()
            await rig.etcd.kill_member(leader)
            await asyncio.sleep(fault.length_s)
            await rig.etcd.restart_member(leader)
        elif fault.kind == "kill-mongo-primary":
            primary = await rig.mongo.primary_index()
            await rig.mongo.kill_member(primary)
            await asyncio.sleep(fault.length_s)
            await rig.mongo.restart_member(primary)
        elif fault.kind == "restart-manager":
            await rig.kill_manager(i)
            await asyncio.sleep(fault.length_s)
            await rig.restart_manager(i)
        elif fault.kind == "skew-worker-clock":
            await rig.skew_worker(i, fault.skew_ms)
            await asyncio.sleep(fault.length_s)
            await rig.skew_worker(i, 0)
        else:
            raise ValueError(fault.kind)
    except Exception as exc:  # a fault that could not be dealt is reported, not fatal
        log.warning("fault %s could not be dealt: %r", fault, exc)
        outcome.faults_by_kind[f"{fault.kind} (failed)"] += 1
        return
    finally:
        worker = f"w{i}" if "worker" in fault.kind else None
        windows.append(FaultWindow(fault.kind, began, time.time(), worker))
    outcome.faults_by_kind[fault.kind] += 1


async def _call(
    call: ApiCall, plan: Plan, rig: Rig, api: Api, start: float, journal: list[Acked],
    outcome: Outcome, etcd: EtcdClient, keys: KeyLayout,
) -> None:  # fmt: skip
    await asyncio.sleep(max(0.0, start + call.at_s - time.monotonic()))
    spec = next(j for j in plan.jobs if j.name == call.job)
    if call.action == "save":
        data = {"job": json.dumps(job_fields(spec, rig.records_dir, edit=int(call.at_s * 100)))}
    else:
        data = {"name": call.job}
    sent = time.time()
    status = await api.post(f"/job/{call.action}", data)
    outcome.calls_by_action[call.action] += 1
    if status is None or status >= 500:
        outcome.unanswered_calls += 1
        journal.append(Acked(call.job, call.action, sent, None))
    elif status == 200:
        acked = time.time()
        journal.append(Acked(call.job, call.action, sent, acked, await _revision(etcd, keys, call)))
    # 4xx: refused, nothing changed (a run asked for while one goes on, a job deleted)


async def _revision(etcd: EtcdClient, keys: KeyLayout, call: ApiCall) -> int | None:
    """The etcd revision of an acknowledged write to the job: the job key's, read right after
    the answer (a delete: the revision read at, at or after the delete's)."""
    if call.action not in ("disable", "enable", "save", "delete"):
        return None
    try:
        stored = await etcd.get(keys.job(call.job))
        if stored is not None:
            return int(stored.mod_revision)
        if call.action == "delete":
            _, revision = await read_prefix(etcd, keys.job(call.job), limit=1)
            return revision
    except Exception as exc:  # etcd was being faulted: the check falls back to time
        log.info("no revision for %s: %r", call, exc)
    return None


class ClaimLog:
    """The revision at which each tick of each job was claimed, from a watch on the claims."""

    def __init__(self, etcd: EtcdClient, keys: KeyLayout) -> None:
        self._etcd = etcd
        self._prefix = keys.lock_prefix + b"tick/"
        self.revisions: dict[tuple[str, int], int] = {}

    async def follow(self) -> None:
        start = 0
        while True:
            try:
                if not start:
                    # Only the revision is wanted: one key is enough to get it.
                    _, revision = await read_prefix(self._etcd, self._prefix, limit=1)
                    start = revision + 1
                spec = WatchSpec(self._prefix, start)
                async for event in watch_prefixes(self._etcd, [spec]):
                    start = event.mod_revision + 1
                    if event.deleted:
                        continue
                    name_gen, _, plan = event.key[len(self._prefix) :].decode().rpartition("/")
                    name = name_gen.rpartition("@")[0]
                    self.revisions.setdefault((name, int(plan)), event.mod_revision)
            except Exception as exc:  # etcd faulted: resume from the next revision
                log.info("claim watch interrupted: %r", exc)
            await asyncio.sleep(0.5)


async def _logged(rig: Rig, ticks: list[tuple[str, int]]) -> dict[tuple[str, int], list[str]]:
    """What the run log says of each tick: status, worker and error of every attempt."""
    assert rig.stack is not None
    logged: dict[tuple[str, int], list[str]] = {}
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(rig.mongo.uri)
    try:
        runs = client[rig.stack.database][COLLECTION]
        for job, plan_ms in ticks:
            with contextlib.suppress(Exception):
                logged[(job, plan_ms)] = [
                    f"{d.get('status')} on {d.get('worker', '?')}: {(d.get('err') or '')[:120]}"
                    async for d in runs.find({"jobName": job, "planTime": plan_ms})
                ]
    finally:
        await client.close()
    return logged


async def _records(rig: Rig, lines: list[Any]) -> list[Record]:
    """The run log, once every run that ended by itself has its record (or a minute passed)."""
    assert rig.stack is not None
    ended = {(line.job, line.plan_ms, line.attempt) for line in lines if line.kind == "E"}
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(rig.mongo.uri)
    try:
        runs = client[rig.stack.database][COLLECTION]
        deadline = time.monotonic() + 60
        while True:
            records = []
            with contextlib.suppress(Exception):
                records = [
                    Record(d["jobName"], d["planTime"], d.get("attempt", 1), d.get("status", ""))
                    async for d in runs.find(
                        {}, {"jobName": 1, "planTime": 1, "attempt": 1, "status": 1}
                    )
                ]
            stored = {(r.job, r.plan_ms, r.attempt) for r in records}
            if ended <= stored or time.monotonic() > deadline:
                return records
            await asyncio.sleep(1)
    finally:
        await client.close()
