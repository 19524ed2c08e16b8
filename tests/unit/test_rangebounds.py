"""gdts.rangebounds: the ranges of a paged read cover every key once and walk few in etcd."""

import bisect
import random

import pytest

from gdts.rangebounds import RangeBounds, after_all

PREFIX = b"/gdts/jobs/"


def read(
    keys: list[bytes],
    first: bytes = PREFIX,
    want: int = 1000,
    limit: int | None = None,
    hint: bytes | None = None,
) -> tuple[list[bytes], int, int]:
    """A paged read as gdts.etcd makes it, against a sorted key list standing for etcd, which
    walks every key of a request's range: (keys read, keys walked, requests)."""
    bounds = RangeBounds(PREFIX, first, hint)
    got: list[bytes] = []
    walked = requests = 0
    key = first
    while True:
        end = bounds.end(key)
        assert key < end <= bounds.prefix_end
        in_range = keys[bisect.bisect_left(keys, key) : bisect.bisect_left(keys, end)]
        walked += len(in_range)
        requests += 1
        asked = want if limit is None else min(want, limit - len(got))
        page, more = in_range[:asked], len(in_range) > asked
        got += page
        if limit is not None and len(got) >= limit:
            return got, walked, requests
        bounds.heard(page, more, asked)
        if more:
            key = page[-1] + b"\x00"
        elif end >= bounds.prefix_end:
            return got, walked, requests
        else:
            key = end


def numbered(count: int) -> list[bytes]:
    return [PREFIX + b"bench-c1f975-%07d" % i for i in range(count)]


def test_after_all_is_the_first_key_past_a_start() -> None:
    assert after_all(b"/gdts/jobs/") == b"/gdts/jobs0"
    assert after_all(b"ab\xff\xff") == b"ac"
    assert after_all(b"\xff") == b""


def test_a_whole_read_gets_every_key_once_in_order_and_walks_far_fewer_than_one_range() -> None:
    keys = numbered(200_000)
    got, walked, requests = read(keys, want=10_000)
    assert got == keys
    # One range for every page would walk the rest of the keys each time: 2.1 million.
    assert walked < 900_000, walked
    assert requests < 60


@pytest.mark.parametrize("seed", range(5))
def test_any_keys_are_read_whole(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = b"\x00\x01azZ09-_.\xfe\xff"
    keys = sorted(
        {
            PREFIX + bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 12)))
            for _ in range(3000)
        }
    )
    for want in (1, 7, 100, 5000):
        got, _, _ = read(keys, want=want)
        assert got == keys


def test_a_page_after_a_name_reads_only_near_it() -> None:
    keys = numbered(1_000_000)
    after = PREFIX + b"bench-c1f975-0500000"
    got, walked, requests = read(keys, first=after + b"\x00", want=100, limit=100)
    start = keys.index(after) + 1
    assert got == keys[start : start + 100]
    assert walked < 1_000 and requests < 10, (walked, requests)


def test_a_first_page_with_a_hint_reads_only_near_it_and_still_sees_a_key_before_it() -> None:
    keys = numbered(1_000_000)
    hint = keys[0]
    keys.insert(0, PREFIX + b"aaa-new")  # saved after the hint was taken
    got, walked, requests = read(keys, want=100, limit=100, hint=hint)
    assert got == keys[:100]
    assert walked < 1_000 and requests < 10, (walked, requests)


def test_a_hint_past_every_key_still_reads_them_all() -> None:
    keys = numbered(500)
    got, _, _ = read(keys, want=100, hint=PREFIX + b"zzz")
    assert got == keys
