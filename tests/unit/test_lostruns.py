"""gdts.worker.lostruns: joining a running marker's deletion with its worker's registration
deletion on (lease, revision), in either order, within the horizon."""

from __future__ import annotations

import json

import pytest

from gdts.worker.lostruns import LostRun, LostRunDetector, running_marker

PLAN = 1715953200000  # 2024-05-17 13:40:00 UTC
CLAIMED = 1715953200042
MARKER = b'{"worker": "w1", "planTime": 1715953200000, "claimedAt": 1715953200042}'
BACKUP_LOST = LostRun(job_name="backup", plan_ms=PLAN, worker="w1", claimed_ms=CLAIMED)

LEASE = 7587862150271631361
REVISION = 4711


def test_marker_then_registration_deletion_yields_the_lost_run() -> None:
    detector = LostRunDetector(horizon_ms=10_000)
    assert detector.marker_deleted("backup", LEASE, REVISION, MARKER, now_ms=1_000) is None
    assert detector.registration_deleted(LEASE, REVISION, now_ms=1_500) == [BACKUP_LOST]


def test_registration_then_marker_deletion_yields_the_lost_run() -> None:
    detector = LostRunDetector(horizon_ms=10_000)
    assert detector.registration_deleted(LEASE, REVISION, now_ms=1_000) == []
    assert detector.marker_deleted("backup", LEASE, REVISION, MARKER, now_ms=1_500) == BACKUP_LOST


def test_a_lost_run_is_reported_once() -> None:
    detector = LostRunDetector(horizon_ms=10_000)
    detector.marker_deleted("backup", LEASE, REVISION, MARKER, now_ms=1_000)
    assert detector.registration_deleted(LEASE, REVISION, now_ms=1_100) == [BACKUP_LOST]
    assert detector.registration_deleted(LEASE, REVISION, now_ms=1_200) == []


def test_marker_released_at_another_revision_is_never_reported() -> None:
    # The worker deleted its own marker (run finished) at 4711; its lease expired later, at 4712.
    detector = LostRunDetector(horizon_ms=10_000)
    assert detector.marker_deleted("backup", LEASE, REVISION, MARKER, now_ms=1_000) is None
    assert detector.registration_deleted(LEASE, REVISION + 1, now_ms=1_100) == []
    assert detector.registration_deleted(LEASE, REVISION - 1, now_ms=1_200) == []


def test_marker_released_at_another_revision_is_not_reported_in_reverse_order_either() -> None:
    detector = LostRunDetector(horizon_ms=10_000)
    assert detector.registration_deleted(LEASE, REVISION + 1, now_ms=1_000) == []
    assert detector.marker_deleted("backup", LEASE, REVISION, MARKER, now_ms=1_100) is None


def test_a_different_lease_never_matches() -> None:
    detector = LostRunDetector(horizon_ms=10_000)
    assert detector.marker_deleted("backup", 101, REVISION, MARKER, now_ms=1_000) is None
    assert detector.registration_deleted(102, REVISION, now_ms=1_100) == []
    assert detector.marker_deleted("report", 103, REVISION, MARKER, now_ms=1_200) is None
    # the first marker still waits for its own lease
    assert detector.registration_deleted(101, REVISION, now_ms=1_300) == [BACKUP_LOST]


def test_several_markers_on_one_lease_all_come_back_in_deletion_order() -> None:
    detector = LostRunDetector(horizon_ms=10_000)
    second = b'{"worker": "w1", "planTime": 1715953260000, "claimedAt": 1715953260007}'
    third = b'{"worker": "w1", "planTime": 1715953300000}'
    assert detector.marker_deleted("backup", LEASE, REVISION, MARKER, now_ms=1_000) is None
    assert detector.marker_deleted("report", LEASE, REVISION, second, now_ms=1_001) is None
    assert detector.marker_deleted("cleanup", LEASE, REVISION, third, now_ms=1_002) is None
    assert detector.registration_deleted(LEASE, REVISION, now_ms=1_003) == [
        BACKUP_LOST,
        LostRun("report", 1715953260000, "w1", 1715953260007),
        LostRun("cleanup", 1715953300000, "w1", None),
    ]


def test_several_markers_after_the_registration_each_come_back() -> None:
    detector = LostRunDetector(horizon_ms=10_000)
    detector.registration_deleted(LEASE, REVISION, now_ms=1_000)
    assert detector.marker_deleted("backup", LEASE, REVISION, MARKER, now_ms=1_001) == BACKUP_LOST
    assert detector.marker_deleted("report", LEASE, REVISION, MARKER, now_ms=1_002) == LostRun(
        "report", PLAN, "w1", CLAIMED
    )


# --- expiry -------------------------------------------------------------------------------------


def test_expire_forgets_markers_older_than_the_horizon() -> None:
    detector = LostRunDetector(horizon_ms=10_000)
    detector.marker_deleted("backup", LEASE, REVISION, MARKER, now_ms=1_000)
    assert len(detector) == 1
    detector.expire(now_ms=11_001)
    assert len(detector) == 0
    assert detector.registration_deleted(LEASE, REVISION, now_ms=11_002) == []


def test_expire_keeps_a_marker_exactly_at_the_horizon() -> None:
    detector = LostRunDetector(horizon_ms=10_000)
    detector.marker_deleted("backup", LEASE, REVISION, MARKER, now_ms=1_000)
    detector.expire(now_ms=11_000)
    assert len(detector) == 1
    assert detector.registration_deleted(LEASE, REVISION, now_ms=11_000) == [BACKUP_LOST]


def test_expire_forgets_registrations_older_than_the_horizon() -> None:
    detector = LostRunDetector(horizon_ms=10_000)
    detector.registration_deleted(LEASE, REVISION, now_ms=1_000)
    assert len(detector) == 1
    detector.expire(now_ms=11_001)
    assert len(detector) == 0
    assert detector.marker_deleted("backup", LEASE, REVISION, MARKER, now_ms=11_002) is None


def test_expire_keeps_young_entries_and_drops_old_ones_on_the_same_join() -> None:
    detector = LostRunDetector(horizon_ms=10_000)
    detector.marker_deleted("old", LEASE, REVISION, MARKER, now_ms=1_000)
    detector.marker_deleted("young", LEASE, REVISION, MARKER, now_ms=5_000)
    detector.expire(now_ms=12_000)
    assert len(detector) == 1
    assert detector.registration_deleted(LEASE, REVISION, now_ms=12_001) == [
        LostRun("young", PLAN, "w1", CLAIMED)
    ]


def test_without_expire_a_late_registration_still_matches() -> None:
    detector = LostRunDetector(horizon_ms=10_000)
    detector.marker_deleted("backup", LEASE, REVISION, MARKER, now_ms=1_000)
    assert detector.registration_deleted(LEASE, REVISION, now_ms=50_000) == [BACKUP_LOST]


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
    detector = LostRunDetector(horizon_ms=10_000)
    assert detector.marker_deleted("backup", LEASE, REVISION, value, now_ms=1_000) is None
    assert len(detector) == 0
    assert detector.registration_deleted(LEASE, REVISION, now_ms=1_001) == []


def test_undecodable_marker_is_ignored_even_after_the_registration() -> None:
    detector = LostRunDetector(horizon_ms=10_000)
    detector.registration_deleted(LEASE, REVISION, now_ms=1_000)
    assert detector.marker_deleted("backup", LEASE, REVISION, b"{", now_ms=1_001) is None


def test_lease_zero_is_ignored() -> None:
    # A key without a lease is not deleted by a lease expiry.
    detector = LostRunDetector(horizon_ms=10_000)
    assert detector.marker_deleted("backup", 0, REVISION, MARKER, now_ms=1_000) is None
    assert len(detector) == 0
    detector.registration_deleted(0, REVISION, now_ms=1_001)
    assert detector.marker_deleted("backup", 0, REVISION, MARKER, now_ms=1_002) is None


def test_marker_without_claimed_at_has_none() -> None:
    detector = LostRunDetector(horizon_ms=10_000)
    detector.registration_deleted(LEASE, REVISION, now_ms=1_000)
    value = b'{"worker": "w9", "planTime": 1715953200000}'
    assert detector.marker_deleted("backup", LEASE, REVISION, value, now_ms=1_001) == LostRun(
        "backup", PLAN, "w9", None
    )


# --- running_marker -----------------------------------------------------------------------------


def test_running_marker_is_json_with_worker_plan_time_and_claimed_at() -> None:
    value = running_marker("host-1:4242", PLAN, CLAIMED)
    assert isinstance(value, bytes)
    assert json.loads(value) == {
        "worker": "host-1:4242",
        "planTime": 1715953200000,
        "claimedAt": 1715953200042,
    }


def test_running_marker_round_trips_through_the_detector() -> None:
    detector = LostRunDetector(horizon_ms=10_000)
    value = running_marker("host-1:4242", PLAN, CLAIMED)
    assert detector.marker_deleted("backup", LEASE, REVISION, value, now_ms=1_000) is None
    assert detector.registration_deleted(LEASE, REVISION, now_ms=1_001) == [
        LostRun(job_name="backup", plan_ms=PLAN, worker="host-1:4242", claimed_ms=CLAIMED)
    ]


def test_lost_run_is_frozen() -> None:
    with pytest.raises(AttributeError):
        BACKUP_LOST.worker = "w2"  # type: ignore[misc]


def test_a_run_lost_during_a_retry_is_that_attempt() -> None:
    detector = LostRunDetector(horizon_ms=10_000)
    retrying = running_marker("w1", PLAN, CLAIMED, attempt=3)
    assert json.loads(running_marker("w1", PLAN, CLAIMED)) == json.loads(MARKER)  # no attempt
    detector.registration_deleted(LEASE, REVISION, now_ms=0)
    lost = detector.marker_deleted("backup", LEASE, REVISION, retrying, now_ms=1)
    assert lost == LostRun("backup", PLAN, "w1", CLAIMED, attempt=3)
