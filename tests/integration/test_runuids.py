"""gdts.worker.runuids: the sweeper gathers the runs that end close together into one sweep (a
scan of /proc), and sweeps at once for a run that waits for a uid. Needs root, as the worker."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gdts.worker import runuids
from gdts.worker.runuids import RunUids
from tests.support import wait_until

pytestmark = pytest.mark.asyncio

FIRST_UID, LAST_UID = 61900, 61919  # this test's own


@pytest.fixture
def run_dir() -> Iterator[Path]:
    # Under /tmp, not pytest's tmp_path: the run uids must be able to pass through its parents.
    base = Path(tempfile.mkdtemp(prefix="gdts-runuids-"))
    base.chmod(0o711)
    yield base / "runs"
    shutil.rmtree(base, ignore_errors=True)


async def test_runs_ending_together_share_a_sweep_and_a_run_waiting_for_a_uid_does_not_wait(
    run_dir, monkeypatch
) -> None:
    sweeps: list[int] = []
    real_sweep = runuids._sweep

    def counted(ending):
        sweeps.append(len(ending))
        return real_sweep(ending)

    monkeypatch.setattr(runuids, "_sweep", counted)
    uids = RunUids(FIRST_UID, LAST_UID, run_dir)
    await uids.prepare()
    sweeper = asyncio.create_task(uids.run())

    async def none_held() -> bool:
        return uids.in_use() == 0

    try:
        monkeypatch.setattr(runuids, "_SWEEP_WAIT_S", 3600.0)
        batch = [uids.acquire(f"job-{i}") for i in range(runuids._SWEEP_BATCH)]
        for user in batch[:-1]:
            uids.ended(user.uid)
        # Long enough for the sweep a sweeper that did not gather would have made by now
        # (it swept 0.1 s after a run ended); this one waits for the batch.
        await asyncio.sleep(0.5)
        assert sweeps == [] and uids.in_use() == runuids._SWEEP_BATCH
        monkeypatch.setattr(runuids, "_SWEEP_WAIT_S", 1.0)  # for the gatherings to come
        uids.ended(batch[-1].uid)
        await wait_until(none_held, 10, "one sweep for the batch")
        assert sweeps == [runuids._SWEEP_BATCH]

        alone = uids.acquire("alone")
        uids.ended(alone.uid)
        await wait_until(none_held, 10, "a sweep for a run that ended alone")
        assert [size for size in sweeps[1:] if size] == [1]

        # Every uid held, three by runs that ended: a run that needs one has the sweep at once,
        # not when more runs have ended or the gathering time is over.
        monkeypatch.setattr(runuids, "_SWEEP_WAIT_S", 3600.0)
        held = [uids.acquire(f"busy-{i}") for i in range(LAST_UID - FIRST_UID + 1)]
        assert uids.acquire("one more") is None
        for user in held[:3]:
            uids.ended(user.uid)
        user = await uids.acquire_within("one more", 10)
        assert user is not None and user.uid in {h.uid for h in held[:3]}
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
