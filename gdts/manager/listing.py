"""``GET /job/list``: every job's definition from etcd, with its status computed from etcd and
MongoDB: the next planned run, whether a run is going on now, the last run, and for a job of a
host group how many live workers are in it.

Read from etcd on every request, so a list right after a save shows it. Filters (see
gdts.manager.jobfilter) narrow the list before it is paged: a filtered page holds ``limit``
jobs that match, after ``after``, taken from every job (remembered when none changed).

What costs time at 100,000 jobs is remembered between requests, keyed so that it can never be
stale: the JSON of each job's definition by etcd key and revision, its next planned run until
that moment passes, and the last runs as of the last look (only summaries changed since are
read again).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gdts.clock import now_ms
from gdts.cron import CronError, CronSchedule, parse_cron
from gdts.errors import GdtsError, InvalidFieldError, StoreUnavailableError
from gdts.etcd import (
    EtcdClient,
    etcd_errors,
    first_key_and_count,
    prefix_changed_since,
    read_prefix,
)
from gdts.job import api_views
from gdts.jobfields import DEFAULT_TEAM, parse_run_at, team_of
from gdts.jobfields import STATUS_FIELDS as STATUS_FIELD_TABLE
from gdts.keys import KeyLayout
from gdts.manager.jobfilter import JobFacts, JobFilter, matches
from gdts.manager.registry import count_members, membership, read_live_workers
from gdts.markers import marker_worker
from gdts.plans import next_run
from gdts.routing import Labels, stored_labels
from gdts.runlog import LAST_RUN_FIELDS, RunLog

log = logging.getLogger(__name__)

STATUS_FIELDS = tuple(field.name for field in STATUS_FIELD_TABLE)
# Paged listings only ever add to what is remembered; past this many entries it starts over.
_MAX_REMEMBERED = 500_000
# Last-run summaries carry the MongoDB server's time of their last change; re-reading a margin
# before the newest one seen covers writes that were in flight at the previous look.
_LAST_RUN_OVERLAP = timedelta(seconds=5)


@dataclass
class _Entry:
    name: str
    revision: int
    generation: int  # the revision that created the job (see gdts.keys)
    view: bytes  # the definition's JSON object, without its closing brace
    schedule: CronSchedule | None
    run_at_ms: int | None
    enabled: bool
    host_group: Labels = ()
    tags: tuple[str, ...] = ()
    owner: str = ""
    team: str = DEFAULT_TEAM
    command: str = ""  # its command and HTTP URL, casefolded: what the command filter reads
    next_ms: int | None = None
    next_valid_until: float = -math.inf  # next_ms holds while now is before this
    # The job's whole list entry as last built, and the status it was built with: most jobs'
    # status does not change between two listings, and rebuilding 100,000 entries of half a
    # kilobyte each was a third of a listing's time.
    built: bytes = b""
    built_for: tuple[int | None, bool, bytes, int | None] | None = None

    def listed(
        self, now_ms: int, running: bool, last_run: bytes, live_workers: int | None
    ) -> bytes:
        status = (self.next_run(now_ms), running, last_run, live_workers)
        if status != self.built_for:
            next_ms = status[0]
            self.built = b'%s,"nextRunTime":%s,"running":%s,"lastRun":%s,"liveWorkers":%s}' % (
                self.view,
                b"null" if next_ms is None else b"%d" % next_ms,
                b"true" if running else b"false",
                last_run,
                b"null" if live_workers is None else b"%d" % live_workers,
            )
            self.built_for = status
        return self.built

    def next_run(self, now_ms: int) -> int | None:
        if now_ms >= self.next_valid_until:
            self.next_ms, self.next_valid_until = self._compute_next(now_ms)
        return self.next_ms

    def _compute_next(self, now_ms: int) -> tuple[int | None, float]:
        # Valid until that run comes due; a job with no next run has none for good.
        next_ms = next_run(self.enabled, self.run_at_ms, self.schedule, now_ms)
        return next_ms, math.inf if next_ms is None else next_ms


WARM_UP_AT_MOST = 200_000
# Jobs read from etcd at a time when a filtered page is searched for (see JobListing.json).
SEARCH_PAGE = 10_000
NO_FILTER = JobFilter()


class JobListing:
    def __init__(self, client: EtcdClient, keys: KeyLayout, run_log: RunLog) -> None:
        self._client = client
        self._keys = keys
        self._run_log = run_log
        self._entries: dict[bytes, _Entry] = {}
        self._last_runs: dict[str, bytes] = {}  # job -> JSON of its last run
        # job -> its last run's (status, worker): what the filters look at
        self._last_run_facts: dict[str, tuple[str | None, str | None]] = {}
        self._last_runs_at: datetime | None = None
        self._last_runs_version = 0  # bumped whenever a last run changes
        # The last full listing: (etcd revision of the read, keys read, entries), and its
        # answer with what the answer was built from.
        self._full: tuple[int, int, list[_Entry]] | None = None
        self._answer = b""
        self._answer_for: tuple[int, frozenset[str], int] | None = None
        self._answer_entries: list[_Entry] | None = None
        self._answer_valid_until = -math.inf
        # The first job's key, as the last read from the first job found it: a first page
        # then asks etcd for the keys near it, not for a range it walks whole (RangeBounds).
        self._first_key: bytes | None = None

    async def json(
        self, after: str | None, limit: int | None, now_ms: int, wanted: JobFilter = NO_FILTER
    ) -> bytes:
        """The jobs in name order as a JSON array, those ``wanted`` only; ``after`` and
        ``limit`` page through them."""
        full = after is None and limit is None and not wanted
        # A filtered list is cut from the jobs that match: found in the last full listing when
        # no job changed since, else read whole (no limit: as a full listing) or, for a page,
        # searched for a page of jobs at a time, so that a fleet of a million is never read
        # whole for a page.
        entries = await self._unchanged_full_listing() if full or wanted else None
        scan = bool(wanted) and limit is not None and entries is None
        read_all = full or (bool(wanted) and not scan)
        with etcd_errors():
            if entries is None and not scan:
                kvs, revision = await read_prefix(
                    self._client,
                    self._keys.jobs_prefix,
                    start_after=None if after is None or read_all else self._keys.job(after),
                    limit=None if read_all else limit,
                    hint=self._first_key if after is None or read_all else None,
                )
                if (after is None or read_all) and kvs:
                    self._first_key = kvs[0].key
                entries = self._entries_of(kvs, full=read_all)
                if read_all:
                    self._full = (revision, len(kvs), entries)
            running_kvs, _ = await read_prefix(self._client, self._keys.running_prefix)
        # (job, generation): a run kept going after its job was deleted is not the running of a
        # new job saved under the same name.
        running = set()
        # Who runs each job now matters only to a host filter: the markers' values are read
        # for it alone.
        running_on: dict[tuple[str, int], set[str]] = {}
        for kv in running_kvs:
            try:
                marker = self._keys.running_parts(kv.key)
            except ValueError:
                continue
            running.add((marker.name, marker.generation))
            if wanted.host and (worker := marker_worker(kv.value)) is not None:
                running_on.setdefault((marker.name, marker.generation), set()).add(worker)
        await self._refresh_last_runs()
        if entries is None:  # scan: limit is set
            entries = await self._search(wanted, running, running_on, after, limit or 0)
        elif wanted:
            entries = self._matching(entries, wanted, running, running_on, after, limit)
        # The workers matter only to jobs of a host group: a fleet without any reads none.
        grouped = any(entry.host_group for entry in entries)
        live = await read_live_workers(self._client, self._keys) if grouped else []
        # Nothing changed since the last full listing (jobs, running jobs, last runs, the live
        # workers' labels, and no next run has come due): the same answer, without building it
        # again.
        # (Entries by identity: the same list object is the same read of etcd.)
        answer_for = (id(entries), frozenset(running), self._last_runs_version, membership(live))
        if (
            full
            and self._answer_for == answer_for
            and self._answer_entries is entries
            and now_ms < self._answer_valid_until
        ):
            return self._answer
        last_runs = self._last_runs
        # Each host group's members counted once, however many jobs share it.
        members: dict[Labels, int] = {}

        def live_workers(group: Labels) -> int | None:
            if not group:
                return None
            if group not in members:
                members[group] = count_members(group, live)
            return members[group]

        parts = [
            entry.listed(
                now_ms,
                (entry.name, entry.generation) in running,
                last_runs.get(entry.name, b"null"),
                live_workers(entry.host_group),
            )
            for entry in entries
        ]
        answer = b"[" + b",".join(parts) + b"]"
        if full:
            self._answer, self._answer_for, self._answer_entries = answer, answer_for, entries
            self._answer_valid_until = min(
                (entry.next_valid_until for entry in entries), default=math.inf
            )
        return answer

    def _matching(
        self,
        entries: list[_Entry],
        wanted: JobFilter,
        running: set[tuple[str, int]],
        running_on: dict[tuple[str, int], set[str]],
        after: str | None,
        limit: int | None,
    ) -> list[_Entry]:
        """The page of the entries that match: at most ``limit``, named after ``after``."""
        last_run_facts = self._last_run_facts
        no_run: tuple[str | None, str | None] = (None, None)
        page = []
        for entry in entries:
            if after is not None and entry.name <= after:
                continue
            of = (entry.name, entry.generation)
            last_status, last_worker = last_run_facts.get(entry.name, no_run)
            facts = JobFacts(entry.name, entry.tags, entry.owner, entry.enabled, of in running,
                             last_status, last_worker, running_on.get(of, ()),
                             entry.command, entry.team)  # fmt: skip
            if matches(wanted, facts):
                page.append(entry)
                if len(page) == limit:
                    break
        return page

    async def _search(
        self,
        wanted: JobFilter,
        running: set[tuple[str, int]],
        running_on: dict[tuple[str, int], set[str]],
        after: str | None,
        limit: int,
    ) -> list[_Entry]:
        """Up to ``limit`` jobs that match, named after ``after``, read a page at a time."""
        found: list[_Entry] = []
        start = None if after is None else self._keys.job(after)
        while len(found) < limit:
            with etcd_errors():
                kvs, _ = await read_prefix(
                    self._client,
                    self._keys.jobs_prefix,
                    start_after=start,
                    limit=SEARCH_PAGE,
                    hint=self._first_key if start is None else None,
                )
            if start is None and kvs:
                self._first_key = kvs[0].key
            entries = self._entries_of(kvs, full=False)
            found += self._matching(entries, wanted, running, running_on, None, limit - len(found))
            if len(kvs) < SEARCH_PAGE:
                break
            start = kvs[-1].key
        return found

    async def warm_up(self) -> None:
        """A full listing nobody asked for, so that the first one asked for is fast; not for
        more than WARM_UP_AT_MOST jobs (a million would hold gigabytes nobody asked for: with
        that many, pages of /job/list are the way to read them)."""
        try:
            with etcd_errors():
                first_key, count = await first_key_and_count(self._client, self._keys.jobs_prefix)
            if count > WARM_UP_AT_MOST:
                log.info("job list not warmed up: %d jobs (more than %d)", count, WARM_UP_AT_MOST)
                self._first_key = first_key  # where the first page starts
                return
            await self.json(None, None, now_ms())
        except GdtsError as exc:  # the stores are not there yet: the first request will do it
            log.info("job list not warmed up: %s", exc)

    async def teams_of(self) -> dict[str, str]:
        """Every job's team (job -> team), from the last full listing if no job changed since."""
        entries = await self._unchanged_full_listing()
        if entries is None:
            with etcd_errors():
                kvs, revision = await read_prefix(self._client, self._keys.jobs_prefix)
            entries = self._entries_of(kvs, full=True)
            self._full = (revision, len(kvs), entries)
        return {entry.name: entry.team for entry in entries}

    async def _unchanged_full_listing(self) -> list[_Entry] | None:
        """The entries of the previous full listing if no job was written or deleted since."""
        if self._full is None:
            return None
        revision, count, entries = self._full
        with etcd_errors():
            changed, _ = await prefix_changed_since(
                self._client, self._keys.jobs_prefix, revision, count
            )
        return None if changed else entries

    def _entries_of(self, kvs: list[Any], *, full: bool) -> list[_Entry]:
        # Each attribute read of a protobuf KeyValue copies it: read each once.
        keys = [kv.key for kv in kvs]
        revisions = [kv.mod_revision for kv in kvs]
        known = self._entries
        stale = [
            i
            for i, (key, revision) in enumerate(zip(keys, revisions, strict=True))
            if (entry := known.get(key)) is None or entry.revision != revision
        ]
        prefix_length = len(self._keys.jobs_prefix)
        for i, view in zip(stale, api_views([kvs[i].value for i in stale]), strict=True):
            name = keys[i][prefix_length:].decode(errors="replace")
            known[keys[i]] = _entry(name, revisions[i], kvs[i].create_revision, view)
        listed = [known[key] for key in keys]
        if full:
            # A full listing knows every job: forget the deleted ones.
            self._entries = dict(zip(keys, listed, strict=True))
        elif len(known) > _MAX_REMEMBERED:
            self._entries = {}
        return [entry for entry in listed if entry.view]

    async def _refresh_last_runs(self) -> None:
        since = None if self._last_runs_at is None else self._last_runs_at - _LAST_RUN_OVERLAP
        try:
            summaries = await self._run_log.last_runs_since(since)
        except StoreUnavailableError as exc:
            # The list is etcd's; without MongoDB it still answers, with the last runs known.
            log.warning("last runs not refreshed: %s", exc)
            return
        for summary in summaries:
            last = {field: summary.get(field) for field in LAST_RUN_FIELDS}
            encoded = json.dumps(last, separators=(",", ":")).encode()
            name = str(summary["_id"])
            if self._last_runs.get(name) != encoded:
                self._last_runs[name] = encoded
                self._last_run_facts[name] = (_text_or_none(last["status"]),
                                              _text_or_none(last["worker"]))  # fmt: skip
                self._last_runs_version += 1
            at = summary.get("at")
            if isinstance(at, datetime) and (self._last_runs_at is None or at > self._last_runs_at):
                self._last_runs_at = at


def _entry(
    name: str, revision: int, generation: int, view: dict[str, Any] | InvalidFieldError
) -> _Entry:
    if isinstance(view, InvalidFieldError):
        log.error("skipping unreadable job %r: %s", name, view)
        return _Entry(name, revision, generation, b"", None, None, False)
    schedule = None
    run_at_ms = None
    try:
        if view["runAt"] is not None:
            run_at_ms = parse_run_at(view["runAt"], None)
        else:
            schedule = parse_cron(view["cronExpr"], view["timezone"])
    except (CronError, InvalidFieldError, TypeError) as exc:
        log.error("no next run for the job %r: %s", name, exc)
    # Compact: at 100,000 jobs every byte of an entry is 100 kB of every full listing.
    encoded = json.dumps(view, separators=(",", ":")).encode()
    enabled = view["enabled"] is not False
    return _Entry(
        name,
        revision,
        generation,
        encoded[:-1],
        schedule,
        run_at_ms,
        enabled,
        host_group=stored_labels(view["hostGroup"]),
        tags=_stored_tags(view["tags"]),
        owner=view["owner"] if isinstance(view["owner"], str) else "",
        team=team_of(view),
        command=_searchable_command(view),
    )


def _searchable_command(view: dict[str, Any]) -> str:
    http = view.get("http")
    url = http.get("url") if isinstance(http, dict) else None
    parts = (view.get("command"), url)
    return "\n".join(part for part in parts if isinstance(part, str)).casefold()


def _stored_tags(value: Any) -> tuple[str, ...]:
    # Checked when saved; a record edited by hand is listed, its odd tags matching nothing.
    if not isinstance(value, list):
        return ()
    return tuple(tag for tag in value if isinstance(tag, str))


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
