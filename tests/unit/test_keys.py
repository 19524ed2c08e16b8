"""gdts.keys: the exact etcd key bytes, prefix validation, and parsing keys back to names."""

import pytest

from gdts.errors import ConfigError
from gdts.keys import (
    BUCKETS,
    KILLED_BY_DELETE,
    KeyLayout,
    KillOrder,
    RunningKey,
    bucket_of,
    kill_marker,
    read_kill_marker,
)

# --- default layout -----------------------------------------------------------------------------


def test_default_prefix_is_gdts() -> None:
    assert KeyLayout().prefix == "/gdts/"


def test_job_key() -> None:
    assert KeyLayout().job("backup") == b"/gdts/jobs/backup"


def test_killer_key() -> None:
    assert KeyLayout().killer("backup") == b"/gdts/killer/backup"


def test_worker_key() -> None:
    assert KeyLayout().worker("host-1:4242") == b"/gdts/workers/host-1:4242"


def test_tick_claim_key() -> None:
    assert KeyLayout().tick_claim("backup", 41, 1715953200000) == (
        b"/gdts/lock/tick/backup@41/1715953200000"
    )


def test_running_key() -> None:
    assert KeyLayout().running("backup", 41) == b"/gdts/lock/running/0d/backup@41"
    assert KeyLayout().running("backup", 41, 5000) == b"/gdts/lock/running/0d/backup@41/5000"


@pytest.mark.parametrize("name", ["a", "a@b", "a@7", "@", "日 x"])
def test_running_key_round_trip_with_generation(name: str) -> None:
    keys = KeyLayout()
    assert keys.running_parts(keys.running(name, 12)) == RunningKey(name, 12, None)
    assert keys.running_parts(keys.running(name, 12, 3000)) == RunningKey(name, 12, 3000)


@pytest.mark.parametrize(
    "key",
    [b"/gdts/lock/running/1b/a", b"/gdts/lock/running/1b/a@", b"/gdts/lock/running/1b/a@1/x"],
)
def test_running_key_without_a_generation_is_not_a_marker(key: bytes) -> None:
    with pytest.raises(ValueError, match="not a running marker"):
        KeyLayout().running_parts(key)


def test_kill_marker_names_its_generation() -> None:
    assert kill_marker(9) == b"9:"
    assert read_kill_marker(kill_marker(9)) == KillOrder(9)
    assert read_kill_marker(kill_marker(9, b"5000")) == KillOrder(9, 5000)
    assert read_kill_marker(kill_marker(9, KILLED_BY_DELETE)) == KillOrder(9, None, True)


def test_kill_marker_without_a_generation_kills_every_run_of_the_name() -> None:
    assert read_kill_marker(b"") == KillOrder(None)
    assert read_kill_marker(b"5000") == KillOrder(None, 5000)
    assert read_kill_marker(b"deleted") == KillOrder(None, None, True)


def test_prefixes_end_with_a_slash() -> None:
    keys = KeyLayout()
    assert keys.jobs_prefix == b"/gdts/jobs/"
    assert keys.killer_prefix == b"/gdts/killer/"
    assert keys.workers_prefix == b"/gdts/workers/"
    assert keys.lock_prefix == b"/gdts/lock/"


def test_keys_are_utf8_encoded() -> None:
    keys = KeyLayout()
    assert keys.job("café") == b"/gdts/jobs/caf\xc3\xa9"
    assert keys.running("日", 3) == b"/gdts/lock/running/79/\xe6\x97\xa5@3"


def test_each_kind_lives_under_its_own_prefix() -> None:
    keys = KeyLayout()
    assert keys.job("x").startswith(keys.jobs_prefix)
    assert keys.killer("x").startswith(keys.killer_prefix)
    assert keys.worker("x").startswith(keys.workers_prefix)
    assert keys.tick_claim("x", 2, 1).startswith(keys.lock_prefix)
    assert keys.running("x", 2).startswith(keys.lock_prefix)
    assert not keys.killer("x").startswith(keys.jobs_prefix)
    assert not keys.job("x").startswith(keys.killer_prefix)


# --- custom prefix ------------------------------------------------------------------------------


def test_custom_prefix_is_used_for_every_key() -> None:
    keys = KeyLayout("/prod/cron/")
    assert keys.job("backup") == b"/prod/cron/jobs/backup"
    assert keys.killer("backup") == b"/prod/cron/killer/backup"
    assert keys.worker("w1") == b"/prod/cron/workers/w1"
    assert keys.tick_claim("backup", 5, 0) == b"/prod/cron/lock/tick/backup@5/0"
    assert keys.running("backup", 5) == b"/prod/cron/lock/running/0d/backup@5"
    assert keys.jobs_prefix == b"/prod/cron/jobs/"
    assert keys.lock_prefix == b"/prod/cron/lock/"


def test_root_prefix_is_accepted() -> None:
    assert KeyLayout("/").job("a") == b"/jobs/a"


@pytest.mark.parametrize(
    "prefix",
    ["", "gdts", "gdts/", "/gdts", "//", "//gdts/", "/gdts//", "/a//b/"],
)
def test_bad_prefix_is_rejected(prefix: str) -> None:
    with pytest.raises(
        ConfigError, match=r"^config etcdPrefix: must start and end with '/'"
    ) as exc:
        KeyLayout(prefix)
    assert exc.value.key == "etcdPrefix"


# --- parsing keys back --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "backup-db", "my job", "café", "日本語", "n" * 128])
def test_job_name_round_trip(name: str) -> None:
    keys = KeyLayout()
    assert keys.job_name(keys.job(name)) == name


@pytest.mark.parametrize("name", ["a", "backup-db", "café"])
def test_killer_name_round_trip(name: str) -> None:
    keys = KeyLayout("/prod/")
    assert keys.killer_name(keys.killer(name)) == name


def test_job_name_from_literal_key() -> None:
    assert KeyLayout().job_name(b"/gdts/jobs/backup") == "backup"
    assert KeyLayout().killer_name(b"/gdts/killer/backup") == "backup"


@pytest.mark.parametrize(
    "key",
    [b"/other/jobs/a", b"/gdts2/jobs/a", b"/gdt/jobs/a", b"gdts/jobs/a", b"/GDTS/jobs/a"],
)
def test_job_name_rejects_a_key_from_another_prefix(key: bytes) -> None:
    with pytest.raises(ValueError, match=r"is not under b'/gdts/jobs/'"):
        KeyLayout().job_name(key)


def test_killer_name_rejects_a_key_from_another_prefix() -> None:
    other = KeyLayout("/other/").killer("a")
    with pytest.raises(ValueError, match=r"is not under b'/gdts/killer/'"):
        KeyLayout().killer_name(other)


def test_job_name_and_killer_name_reject_each_others_keys() -> None:
    keys = KeyLayout()
    with pytest.raises(ValueError, match="is not under"):
        keys.job_name(keys.killer("a"))
    with pytest.raises(ValueError, match="is not under"):
        keys.killer_name(keys.job("a"))
    with pytest.raises(ValueError, match="is not under"):
        keys.job_name(keys.running("a", 1))


# --- lock ranges of names that prefix each other ------------------------------------------------


def test_tick_claims_of_a_and_ab_do_not_share_a_range() -> None:
    keys = KeyLayout()
    range_a = keys.lock_prefix + b"tick/a@1/"
    range_ab = keys.lock_prefix + b"tick/ab@1/"
    assert keys.tick_claim("a", 1, 1715953200000).startswith(range_a)
    assert not keys.tick_claim("a", 1, 1715953200000).startswith(range_ab)
    assert keys.tick_claim("ab", 1, 1715953200000).startswith(range_ab)
    assert not keys.tick_claim("ab", 1, 1715953200000).startswith(range_a)
    # nor do two generations of one name
    assert not keys.tick_claim("a", 11, 5).startswith(keys.lock_prefix + b"tick/a@1/")


def test_running_markers_have_a_prefix_of_their_own() -> None:
    keys = KeyLayout("/p/")
    assert keys.running_prefix == b"/p/lock/running/"
    assert keys.running("a", 1).startswith(keys.running_prefix)
    assert not keys.tick_claim("a", 1, 1).startswith(keys.running_prefix)
    assert keys.running_name(keys.running("a b", 1)) == "a b"
    assert keys.worker_id(keys.worker("host:12")) == "host:12"
    with pytest.raises(ValueError):
        keys.running_name(keys.tick_claim("a", 1, 1))


def test_running_markers_of_a_job_and_of_one_run() -> None:
    keys = KeyLayout("/g/")
    assert keys.running("a", 3) == b"/g/lock/running/1b/a@3"
    assert keys.running("a", 3, 5000) == b"/g/lock/running/1b/a@3/5000"
    assert keys.running_parts(keys.running("a", 3)) == RunningKey("a", 3, None)
    assert keys.running_parts(keys.running("a b", 3, 5000)) == RunningKey("a b", 3, 5000)
    assert keys.running_name(keys.running("x", 3, 7)) == "x"
    bad_keys = (
        b"/g/lock/running/1b/a@1/b",
        b"/g/lock/running/1b/a@1/1/2",
        b"/g/lock/running/",
        b"/h/x",
        b"/g/lock/running/a@1",  # no bucket
        b"/g/lock/running/123/a@1",  # not a bucket
    )
    for bad in bad_keys:
        with pytest.raises(ValueError):
            keys.running_parts(bad)


def test_a_job_s_bucket_is_fixed_by_its_name_and_names_spread_over_all_buckets() -> None:
    assert bucket_of("a") == 0x1B and bucket_of("backup") == 0x0D  # the same in every process
    counts = [0] * BUCKETS
    for n in range(25_600):
        counts[bucket_of(f"job-{n}")] += 1
    assert min(counts) > 50 and max(counts) < 160  # 100 each on average


def test_a_bucket_s_prefix_holds_its_jobs_markers_alone() -> None:
    keys = KeyLayout("/g/")
    assert keys.running_bucket_prefix(0x1B) == b"/g/lock/running/1b/"
    assert keys.running("a", 3, 9).startswith(keys.running_bucket_prefix(0x1B))
    assert not keys.running("a", 3).startswith(keys.running_bucket_prefix(0x1C))


def test_runs_of_buckets_are_key_ranges_up_to_the_end_of_the_markers() -> None:
    keys = KeyLayout("/g/")
    assert keys.running_buckets_range(3, 5) == (b"/g/lock/running/03/", b"/g/lock/running/05/")
    key, end = keys.running_buckets_range(250, BUCKETS)
    assert key == b"/g/lock/running/fa/" and end == b"/g/lock/running0"
    assert key <= keys.running("a", 1) < end or bucket_of("a") < 250
    last = next(f"j{n}" for n in range(10_000) if bucket_of(f"j{n}") == BUCKETS - 1)
    assert key <= keys.running(last, 7, 9) < end
    assert not keys.running_prefix.startswith(end)


def test_a_link_key_names_the_job_named_then_the_job_that_names_it() -> None:
    keys = KeyLayout("/prod/cron/")
    assert keys.link("db", "report") == b"/prod/cron/linked/db/report"
    assert keys.link("db", "report").startswith(keys.links_to("db"))
    assert not keys.link("db2", "report").startswith(keys.links_to("db"))
    assert keys.link_by("db", keys.link("db", "report")) == "report"
    with pytest.raises(ValueError, match="is not under"):
        keys.link_by("db", keys.link("db2", "report"))


def test_secret_keys_and_their_parts() -> None:
    keys = KeyLayout("/x/")
    assert keys.secrets_prefix == b"/x/secrets/"
    assert keys.secret("ops", "db-password") == b"/x/secrets/ops/db-password"
    assert keys.team_secrets("ops") == b"/x/secrets/ops/"
    assert keys.secret_parts(b"/x/secrets/ops/db-password") == ("ops", "db-password")
    for bad in (b"/x/secrets/ops", b"/x/secrets/ops/", b"/x/secrets//a", b"/y/secrets/a/b",
                b"/x/secrets/a/b/c"):  # fmt: skip
        with pytest.raises(ValueError, match="is not a secret"):
            keys.secret_parts(bad)
