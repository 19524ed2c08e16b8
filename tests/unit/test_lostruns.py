"""gdts.worker.lostruns: the runs that died with a worker are the markers on its lease as they
were the revision before the lease expired."""

from __future__ import annotations

import json

import pytest

from gdts.keys import RunningKey
from gdts.markers import running_marker
from gdts.worker.lostruns import LostRun, lost_with

PLAN = 1715953200000  # 2024-05-17 13:40:00 UTC
CLAIMED = 1715953200042
MARKER = b'{"worker": "w1", "planTime": 1715953200000, "claimedAt": 1715953200042}'
BACKUP_LOST = LostRun(job_name="backup", plan_ms=PLAN, worker="w1", claimed_ms=CLAIMED)

LEASE = 7587862150271631361
BACKUP = RunningKey("backup", 12, None)


def test_a_marker_on_the_dead_lease_is_a_lost_run() -> None:
    assert lost_with(LEASE, [(BACKUP, LEASE, MARKER)]) == [BACKUP_LOST]


def test_markers_on_other_leases_are_runs_going_on_elsewhere() -> None:
    markers = [(BACKUP, 101, MARKER), (RunningKey("report", 3, None), LEASE, MARKER)]
    assert lost_with(LEASE, markers) == [LostRun("report", PLAN, "w1", CLAIMED)]


def test_several_markers_on_one_lease_all_come_back_in_key_order() -> None:
    second = b'{"worker": "w1", "planTime": 1715953260000, "claimedAt": 1715953260007}'
    third = b'{"worker": "w1", "planTime": 1715953300000}'
    markers = [
        (BACKUP, LEASE, MARKER),
        (RunningKey("cleanup", 1, 1715953300000), LEASE, third),  # one run of an overlapping job
        (RunningKey("report", 1, None), LEASE, second),
    ]
    assert lost_with(LEASE, markers) == [
        BACKUP_LOST,
        LostRun("cleanup", 1715953300000, "w1", None),
        LostRun("report", 1715953260000, "w1", 1715953260007),
    ]


def test_lease_zero_is_never_a_death() -> None:
    # A key without a lease is not deleted by a lease expiry.
    assert lost_with(0, [(BACKUP, 0, MARKER)]) == []


def test_no_markers_no_lost_runs() -> None:
    assert lost_with(LEASE, []) == []


# --- ignored inputs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"null",
        b"[]",
        b'"w1"',
        b"42",
        b'{"worker": "w1"}',
        b'{"planTime": 1715953200000}',
        b'{"worker": "w1", "planTime": "soon"}',
        b'{"worker": "w1", "planTime": null}',
        b'{"worker": "w1", "planTime": [1]}',
    ],
)
def test_undecodable_marker_values_are_ignored(value: bytes) -> None:
    assert lost_with(LEASE, [(BACKUP, LEASE, value), (BACKUP, LEASE, MARKER)]) == [BACKUP_LOST]


def test_marker_without_claimed_at_has_none() -> None:
    value = b'{"worker": "w9", "planTime": 1715953200000}'
    assert lost_with(LEASE, [(BACKUP, LEASE, value)]) == [LostRun("backup", PLAN, "w9", None)]


# --- running_marker -----------------------------------------------------------------------------


def test_running_marker_is_json_with_worker_plan_time_and_claimed_at() -> None:
    value = running_marker("host-1:4242", PLAN, CLAIMED)
    assert isinstance(value, bytes)
    assert json.loads(value) == {
        "worker": "host-1:4242",
        "planTime": 1715953200000,
        "claimedAt": 1715953200042,
    }


def test_running_marker_round_trips() -> None:
    value = running_marker("host-1:4242", PLAN, CLAIMED)
    assert lost_with(LEASE, [(BACKUP, LEASE, value)]) == [
        LostRun(job_name="backup", plan_ms=PLAN, worker="host-1:4242", claimed_ms=CLAIMED)
    ]


def test_lost_run_is_frozen() -> None:
    with pytest.raises(AttributeError):
        BACKUP_LOST.worker = "w2"  # type: ignore[misc]


def test_a_run_lost_during_a_retry_is_that_attempt() -> None:
    retrying = running_marker("w1", PLAN, CLAIMED, attempt=3)
    assert json.loads(running_marker("w1", PLAN, CLAIMED)) == json.loads(MARKER)  # no attempt
    lost = lost_with(LEASE, [(BACKUP, LEASE, retrying)])
    assert lost == [LostRun("backup", PLAN, "w1", CLAIMED, attempt=3)]
