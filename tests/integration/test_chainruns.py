"""A chain run in a real etcd (gdts.worker.chainruns): started once, moved on by its steps'
ends, parallel steps that end together each seen, a stop logging what never started."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gdts.etcd import EtcdClient, read_prefix
from gdts.job import Job
from gdts.keys import KeyLayout
from gdts.runrecord import ChainStep, RunRecord
from gdts.worker.chainruns import ChainRuns, chain_id_of, read_step_request
from gdts.worker.ticktable import DueTick

pytestmark = pytest.mark.asyncio

PLAN = 1_800_000_000_000
YEARLY = "0 0 0 1 1 *"


class Records:
    """Where the records a chain run writes (its skipped steps) go, in place of the sink."""

    def __init__(self) -> None:
        self.added: list[RunRecord] = []

    def add(self, record: RunRecord) -> None:
        self.added.append(record)


def jobs_of(**fields: dict[str, Any]) -> dict[str, Job]:
    return {
        name: Job.from_api({"name": name, "command": "true", "cronExpr": YEARLY, **more})
        for name, more in fields.items()
    }


async def requests(etcd: EtcdClient, keys: KeyLayout) -> dict[str, ChainStep]:
    """The run requests in etcd: job name -> the step it asks for."""
    kvs, _ = await read_prefix(etcd, keys.run_prefix)
    found = {}
    for kv in kvs:
        step = read_step_request(kv.value)
        assert step is not None
        found[keys.run_request_parts(kv.key)[0]] = step
    return found


def chain_runs(etcd: EtcdClient, keys: KeyLayout, jobs: dict[str, Job], records: Records,
               worker: str) -> ChainRuns:  # fmt: skip
    clock = iter(range(PLAN + 1, PLAN + 10_000, 7))
    return ChainRuns(etcd, keys, worker, lambda: next(clock), jobs=jobs.get,
                     sink=records)  # type: ignore[arg-type]  # fmt: skip


async def test_a_chain_run_starts_once_and_its_parallel_parents_ending_together_are_both_seen(
    etcd: EtcdClient, stack: Any
) -> None:
    keys = KeyLayout(stack.prefix)
    jobs = jobs_of(h={"parents": ["a", "b"], "parentsMode": "parallel"}, a={}, b={})
    records = Records()
    one, other = (chain_runs(etcd, keys, jobs, records, w) for w in ("w1", "w2"))
    tick = DueTick(jobs["h"], PLAN)
    started = await asyncio.gather(one.start(tick, 10_000), other.start(tick, 10_000))
    assert sorted(started) == [False, True]  # the owner and its backup: one chain run
    asked = await requests(etcd, keys)
    assert set(asked) == {"a", "b"} and asked["a"].chain_id == chain_id_of(tick)
    for name in ("a", "b"):
        await etcd.delete_prefix(keys.run_request(name, 0)[:-1])  # what a claim does

    # Both parents end at once, on two workers: the job is asked for once.
    await asyncio.gather(one.step_ended(asked["a"], "succeeded", ""),
                         other.step_ended(asked["b"], "succeeded", ""))  # fmt: skip
    then = await requests(etcd, keys)
    assert list(then) == ["h"] and then["h"].step == 2
    state = json.loads((await etcd.get(keys.chain(asked["a"].chain_id))).value)
    assert state["outcomes"] == {"0": "succeeded", "1": "succeeded", "2": "requested"}
    # Told twice (a lost-run record after the worker told): nothing changes.
    await one.step_ended(asked["a"], "lost", "worker w1 died")
    assert json.loads((await etcd.get(keys.chain(asked["a"].chain_id))).value) == state
    await one.step_ended(then["h"], "succeeded", "")
    assert await etcd.get(keys.chain(asked["a"].chain_id)) is None  # over: the key goes
    assert records.added == []


async def test_a_failed_step_stops_the_chain_and_logs_what_never_started_once(
    etcd: EtcdClient, stack: Any
) -> None:
    keys = KeyLayout(stack.prefix)
    jobs = jobs_of(h={"parents": ["a", "b"], "parentsMode": "parallel", "children": ["c"]},
                   a={}, b={}, c={})  # fmt: skip
    records = Records()
    runs = chain_runs(etcd, keys, jobs, records, "w1")
    assert await runs.start(DueTick(jobs["h"], PLAN), 10_000)
    asked = await requests(etcd, keys)
    await etcd.delete_prefix(keys.run_prefix)
    await runs.step_ended(asked["a"], "failed", "exit status 1")
    skipped = sorted(record.job_name for record in records.added)
    assert skipped == ["c", "h"]
    assert all(r.status == "skipped" and "a failed: exit status 1" in r.err for r in records.added)
    assert await requests(etcd, keys) == {}
    # b, already under way, ends: the chain run is over, nothing more is logged.
    assert await etcd.get(keys.chain(asked["a"].chain_id)) is not None
    await runs.step_ended(asked["b"], "succeeded", "")
    assert await etcd.get(keys.chain(asked["a"].chain_id)) is None
    assert len(records.added) == 2
