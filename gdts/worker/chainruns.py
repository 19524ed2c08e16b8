"""Chain runs in etcd: one starts at its head job's tick, and moves on as its steps end.

A chain run is a key, ``chains/<chainId>``, holding its plan (gdts.chains) and the outcome of
each step started. A step to run is a run request for the step's job (``run/<job>/<ms>``, its
value naming the chain run and the step), claimed as any run request is, on the job's own host
group and routing: a step runs at most once. Whoever ends a step (the worker that ran it, the
one that speaks for it when it could not start, the one that speaks for a dead worker's runs)
writes its outcome and requests the next steps in one transaction that compares the chain
key's revision, so two steps of a parallel group that end together each see the other's. A
step that does not succeed stops the chain run: the steps not started are logged skipped, and
once nothing is under way the key goes.

A worker that dies after a step ended but before telling leaves it to the lost-run record
(its running marker names the step): the chain run is then stopped at that step as lost, never
run on twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from gdts.chains import (
    REQUESTED,
    SUCCEEDED,
    ChainError,
    ChainPlan,
    Links,
    expand,
    finished,
    never_started,
    runnable,
)
from gdts.errors import GdtsError
from gdts.etcd import EtcdClient, etcd_errors
from gdts.job import Job
from gdts.keys import KeyLayout
from gdts.logs import event
from gdts.runrecord import ChainStep, RunRecord, RunStatus
from gdts.worker.logsink import LogSink
from gdts.worker.records import unrun_record
from gdts.worker.ticktable import DueTick

log = logging.getLogger(__name__)

_ATTEMPTS = 20  # compare-and-set rounds before giving up (steps of one group ending together)
_CLOSE_WAIT_S = 5.0
# How long a step's request waits to be claimed: longer than any takeoverDelay plus a start
# window, as /job/run's requests (a step that cannot start is recorded missed before then).
REQUEST_TTL_S = 60


def chain_id_of(tick: DueTick) -> str:
    return f"{tick.job.name}@{tick.job.generation}/{tick.plan_ms}"


def step_request(chain_id: str, step: int, steps: int) -> bytes:
    return json.dumps({"chain": chain_id, "step": step, "steps": steps}).encode()


def read_step_request(value: bytes) -> ChainStep | None:
    """The chain run's step a run request asks for; None for a plain /job/run request."""
    if not value:
        return None
    try:
        data = json.loads(value)
        return ChainStep(str(data["chain"]), int(data["step"]), int(data["steps"]))
    except (ValueError, KeyError, TypeError):
        return None


class ChainRuns:
    def __init__(
        self,
        client: EtcdClient,
        keys: KeyLayout,
        worker_id: str,
        clock: Callable[[], int],
        *,
        jobs: Callable[[str], Job | None],
        sink: LogSink,
    ) -> None:
        self._client = client
        self._keys = keys
        self._worker_id = worker_id
        self._now_ms = clock
        self._jobs = jobs  # the job of a name, as this worker holds it
        self._sink = sink
        self._last_request_ms = 0  # request instants are unique, and never whole seconds
        self._telling: set[asyncio.Task[None]] = set()  # step ends on their way to etcd

    def _links_of(self, name: str) -> Links | None:
        job = self._jobs(name)
        return None if job is None else job.links

    async def start(self, tick: DueTick, window_ms: int) -> bool:
        """Start the chain run of a head job's tick, once whichever worker asks (the tick's
        claim key is the proof); False if another worker did, or the job changed."""
        head = tick.job
        chain_id = chain_id_of(tick)
        try:
            plan = expand(head.name, self._links_of)
        except ChainError as exc:
            # Saved before a change elsewhere made it so (two saves at once): told, never run.
            self._sink.add(_refused(head, tick.plan_ms, self._worker_id, self._now_ms(), exc))
            return False
        outcomes = dict.fromkeys(runnable(plan.tree, {}), REQUESTED)
        txn = self._client.transactions
        tick_key = self._keys.tick_claim(head.name, head.generation, tick.plan_ms)
        chain_key = self._keys.chain(chain_id)
        compare = [txn.create(tick_key) == 0, txn.create(chain_key) == 0]
        if head.revision:
            compare.append(txn.mod(self._keys.job(head.name)) == head.revision)
        with etcd_errors():
            lease = await self._client.lease(max(REQUEST_TTL_S, 2 * window_ms // 1000))
            success = [
                txn.put(tick_key, self._worker_id.encode(), lease=lease),
                txn.put(chain_key, _state(plan, outcomes)),
                *self._requests(chain_id, plan, list(outcomes), lease),
            ]
            if tick.run_request is not None:
                compare.append(txn.version(tick.run_request) > 0)
                success.append(txn.delete(tick.run_request))
            started, _ = await self._client.transaction(compare=compare, success=success,
                                                        failure=[])  # fmt: skip
        if started:
            log.info("chain run started: %d step(s)", len(plan.steps),
                     extra=event(job=head.name, tick=tick.plan_ms))  # fmt: skip
        else:
            with contextlib.suppress(GdtsError), etcd_errors():
                await self._client.revoke_lease(lease.id)
        return bool(started)

    def tell(self, step: ChainStep, status: str, why: str) -> None:
        """A step ended (``status``: its run's, or missed, lost): move its chain run on, in a
        task this object owns (see close)."""
        task = asyncio.get_running_loop().create_task(self.step_ended(step, status, why))
        self._telling.add(task)
        task.add_done_callback(self._telling.discard)

    async def step_ended(self, step: ChainStep, status: str, why: str) -> None:
        tags = event(chain=step.chain_id)
        try:
            for _ in range(_ATTEMPTS):
                if await self._move_on(step, status, why):
                    return
            log.error("chain run not moved on at step %d: its key kept changing", step.step,
                      extra=tags)  # fmt: skip
        except GdtsError as exc:
            # The chain run waits: its step's outcome is in the run log, not in etcd.
            log.error("chain run not moved on at step %d (%s): it stops here", step.step, exc,
                      extra=tags)  # fmt: skip

    async def _move_on(self, step: ChainStep, status: str, why: str) -> bool:
        key = self._keys.chain(step.chain_id)
        with etcd_errors():
            stored = await self._client.get(key)
        if stored is None:
            return True  # over already
        state = json.loads(stored.value)
        plan = ChainPlan.from_json(state["plan"])
        outcomes = {int(k): v for k, v in state["outcomes"].items()}
        if outcomes.get(step.step) != REQUESTED:
            return True  # told already (a lost-run record after the worker told)
        outcomes[step.step] = status
        skipped: list[int] = []
        if status != SUCCEEDED:
            skipped = never_started(plan, outcomes)
            outcomes.update(dict.fromkeys(skipped, str(RunStatus.SKIPPED)))
        for index in runnable(plan.tree, outcomes):
            if self._jobs(plan.steps[index]) is None:
                outcomes[index] = "gone"  # deleted since: the chain run stops there
                skipped = never_started(plan, outcomes)
                outcomes.update(dict.fromkeys(skipped, str(RunStatus.SKIPPED)))
        following = runnable(plan.tree, outcomes)
        outcomes.update(dict.fromkeys(following, REQUESTED))
        txn = self._client.transactions
        with etcd_errors():
            lease = await self._client.lease(REQUEST_TTL_S) if following else None
            if finished(plan, outcomes):
                success = [txn.delete(key)]
            else:
                success = [txn.put(key, _state(plan, outcomes)),
                           *self._requests(step.chain_id, plan, following, lease)]  # fmt: skip
            moved, _ = await self._client.transaction(
                compare=[txn.mod(key) == stored.mod_revision], success=success, failure=[]
            )
        if not moved:
            return False
        stop = f"{plan.steps[step.step]} {status}" + (f": {why}" if why else "")
        for index in skipped:
            self._sink.add(self._skipped(plan, step, index, stop))
        return True

    def _requests(self, chain_id: str, plan: ChainPlan, steps: list[int], lease: Any) -> list[Any]:
        txn = self._client.transactions
        puts = []
        for index in steps:
            key = self._keys.run_request(plan.steps[index], self._unique_ms())
            puts.append(txn.put(key, step_request(chain_id, index, len(plan.steps)), lease=lease))
        return puts

    def _unique_ms(self) -> int:
        """An instant no other request or record of this worker has, and not a whole second
        (ticks are planned at whole seconds: a step's request never meets a tick's claim)."""
        ms = max(self._now_ms(), self._last_request_ms + 1)
        if ms % 1000 == 0:
            ms += 1
        self._last_request_ms = ms
        return ms

    def _skipped(self, plan: ChainPlan, ended: ChainStep, index: int, stop: str) -> RunRecord:
        job = self._jobs(plan.steps[index])
        err = f"not run: the chain run stopped at step {ended.step + 1}/{ended.steps} ({stop})"
        return unrun_record(
            plan.steps[index], "" if job is None else job.command, self._unique_ms(),
            RunStatus.SKIPPED, err, worker=self._worker_id, now_ms=self._now_ms(),
            trigger="chain", chain=ChainStep(ended.chain_id, index, len(plan.steps)),
        )  # fmt: skip

    async def close(self) -> None:
        """Wait a little for step ends on their way, then give them up (their chain runs are
        then stopped by the lost-run records of the steps, or wait)."""
        if self._telling:
            await asyncio.wait(self._telling, timeout=_CLOSE_WAIT_S)
        for task in list(self._telling):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _state(plan: ChainPlan, outcomes: dict[int, str]) -> bytes:
    return json.dumps({"plan": plan.to_json(), "outcomes": outcomes}).encode()


def _refused(head: Job, plan_ms: int, worker: str, now_ms: int, exc: ChainError) -> RunRecord:
    return unrun_record(head.name, head.command, plan_ms, RunStatus.FAILED,
                        f"chain run not started: {exc}", worker=worker, now_ms=now_ms)  # fmt: skip
