"""The manager's side of etcd: jobs, kill markers and the worker registry."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aetcd import utils

from gdts.errors import ConflictError, InvalidFieldError, NoLiveWorkerError
from gdts.etcd import EtcdClient, etcd_errors, read_prefix
from gdts.job import Job, api_view
from gdts.jobfields import team_of
from gdts.keys import KILLED_BY_DELETE, KeyLayout, bucket_of, kill_marker
from gdts.manager.chainlinks import ChainLinks, delete_refusal
from gdts.manager.jobguard import JobGuard, no_such_job
from gdts.manager.registry import count_members, read_live_workers
from gdts.markers import marker_worker, read_marker
from gdts.routing import no_live_member, stored_labels

log = logging.getLogger(__name__)


_UPDATE_ATTEMPTS = 5
_RUN_REQUEST_TTL_S = 60  # longer than any worker's takeoverDelay plus its start window


class JobStore:
    def __init__(self, client: EtcdClient, keys: KeyLayout, kill_marker_ttl: int) -> None:
        self._client = client
        self._keys = keys
        self._kill_marker_ttl = kill_marker_ttl
        self._links = ChainLinks(client, keys)

    async def save(
        self,
        job: Job,
        guard: JobGuard,
        team: str | None = None,
        check_team: Callable[[str], Awaitable[None]] | None = None,
    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """Create or replace; returns the previous job (API form) or None, and the job as
        saved. ``team``: the team the request gave (None: a replaced job keeps its team, a new
        one goes to the caller's only team, see JobGuard.team_for_new); ``check_team(team)``:
        what the job needs of the team it goes to (its secrets). A replaced job keeps its
        owner; a new one belongs to the caller. The checks and the write are one transaction:
        the job cannot change hands or teams in between, nor the chains it is in (see
        gdts.manager.chainlinks)."""
        key = self._keys.job(job.name)
        txn = self._client.transactions
        for _ in range(_UPDATE_ATTEMPTS):
            with etcd_errors():
                stored = await self._client.get(key)
            previous = _previous(None if stored is None else stored.value)
            if previous is None:
                in_team = guard.team_for_new(team)
                guard.check_create(in_team)
                owned = dataclasses.replace(
                    job, owner=guard.username, owner_id=guard.account_id, team=in_team
                )
                compare = [txn.create(key) == 0]
            else:
                if not guard.sees(team_of(previous)):
                    # Job names are one namespace for every team: say the name is taken, and
                    # nothing more about the job.
                    raise ConflictError("name", f"the name {job.name!r} is taken (job names "
                                        "are shared by every team)")  # fmt: skip
                guard.check(job.name, previous)
                in_team = team_of(previous) if team is None else team
                if in_team != team_of(previous):
                    guard.check_create(in_team)
                owned = dataclasses.replace(
                    job,
                    owner=previous.get("owner", ""),
                    owner_id=previous.get("ownerId", ""),
                    team=in_team,
                )
                compare = [txn.mod(key) == stored.mod_revision]
            if check_team is not None:
                await check_team(in_team)
            links = await self._links.for_save(job.name, job.links, previous, guard)
            with etcd_errors():
                written, _ = await self._client.transaction(
                    compare=[*compare, *links.compare],
                    success=[txn.put(key, owned.to_record()), *links.success],
                    failure=[],
                )
            if written:
                return previous, owned.to_api()
        raise ConflictError("name", f"job {job.name!r} kept changing; try again")

    async def update(self, name: str, guard: JobGuard, **changes: Any) -> dict[str, Any]:
        """Change some fields of a stored job (read, check, write if unchanged meanwhile);
        returns the job as it is now."""
        key = self._keys.job(name)
        txn = self._client.transactions
        for _ in range(_UPDATE_ATTEMPTS):
            stored = await self._stored(name)
            current = Job.from_record(stored.value)
            guard.check(name, current.to_api())
            job = current.with_changes(**changes)
            with etcd_errors():
                written, _ = await self._client.transaction(
                    compare=[txn.mod(key) == stored.mod_revision],
                    success=[txn.put(key, job.to_record())],
                    failure=[],
                )
            if written:
                return job.to_api()
        raise ConflictError("name", f"job {name!r} kept changing; try again")

    async def clone(self, name: str, new_name: str, guard: JobGuard) -> dict[str, Any]:
        """A copy of a job under a new name, owned by the caller; never overwrites a job. A
        copy of a chain job is a new job in the same chains, checked as a save is."""
        stored = await self._stored(name)
        source = Job.from_record(stored.value)
        guard.check_visible(name, source.to_api())
        guard.check_create(source.team)
        job = source.with_changes(name=new_name, owner=guard.username, ownerId=guard.account_id)
        new_key = self._keys.job(new_name)
        txn = self._client.transactions
        exists = ConflictError("newName", f"a job named {new_name!r} already exists")
        if job.links:  # told before its chains are checked, which reads every job
            with etcd_errors():
                if await self._client.get(new_key) is not None:
                    raise exists
        for _ in range(_UPDATE_ATTEMPTS):
            links = await self._links.for_save(new_name, job.links, None, guard)
            with etcd_errors():
                created, replies = await self._client.transaction(
                    compare=[txn.create(new_key) == 0, *links.compare],
                    success=[txn.put(new_key, job.to_record()), *links.success],
                    failure=[txn.get(new_key)],
                )
            if created:
                return job.to_api()
            if replies and replies[0]:
                raise exists
        raise ConflictError("newName", f"the jobs that {new_name!r} would be chained with kept "
                            "changing; try again")  # fmt: skip

    async def _stored(self, name: str) -> Any:
        """The job's etcd entry (value and revisions); 404 if there is none."""
        with etcd_errors():
            stored = await self._client.get(self._keys.job(name))
        if stored is None:
            raise no_such_job(name)
        return stored

    async def delete(
        self, name: str, guard: JobGuard, keep_running: bool = False
    ) -> dict[str, Any] | None:
        """Delete a job, its one-shot done markers and its runs asked for and not started (a
        job saved again under the same name starts afresh); returns the deleted job (API form)
        or None. Its runs going on are killed in the same transaction (logged killed, "the job
        was deleted"), unless ``keep_running``. A job another job names in its parents or
        children is not deleted (409 naming them): that chain would name nothing."""
        key = self._keys.job(name)
        txn = self._client.transactions
        clear = [
            txn.delete(prefix, range_end=utils.prefix_range_end(prefix))
            for prefix in (self._keys.done_prefix(name), self._keys.run_requests_of(name))
        ]
        lease = None
        if not keep_running:
            with etcd_errors():
                lease = await self._client.lease(self._kill_marker_ttl)
        for _ in range(_UPDATE_ATTEMPTS):
            with etcd_errors():
                stored = await self._client.get(key)
            previous = _previous(None if stored is None else stored.value)
            if previous is None:
                guard.check_missing(name)
                compare = [txn.create(key) == 0]
            else:
                guard.check(name, previous)
                compare = [txn.mod(key) == stored.mod_revision]
            kill = []
            if lease is not None and stored is not None:  # a job not there has no runs to kill
                marker = kill_marker(stored.create_revision, KILLED_BY_DELETE)
                kill.append(txn.put(self._keys.killer(name), marker, lease=lease))
            links = self._links.for_delete(name, previous)
            with etcd_errors():
                success = [txn.delete(key), *clear, *kill, *links.success]
                deleted, replies = await self._client.transaction(
                    compare=[*compare, *links.compare],
                    success=success,
                    failure=[self._links.referrers_read(name)],
                )
            if deleted:
                return previous
            referrers = self._links.referrers(name, replies[0] if replies else [])
            if referrers:
                raise delete_refusal(name, referrers)
        raise ConflictError("name", f"job {name!r} kept changing; try again")

    async def request_run(self, name: str, now_ms: int, guard: JobGuard) -> dict[str, Any]:
        """Ask the workers to run a job once now (POST /job/run). The request lives on a lease,
        so one that no worker can take (every worker down) goes away by itself."""
        # Whole seconds are the ticks' planned times; a manual run must not share one with a
        # tick in the run log's unique (job, planTime, attempt) index.
        requested_ms = now_ms + 1 if now_ms % 1000 == 0 else now_ms
        stored = await self._stored(name)
        view = _previous(stored.value) or {}
        guard.check(name, view)
        # A job of a host group with no live member: no worker would take the run, and the
        # request would go unrun with its lease. Checked before the write, not in it (etcd
        # cannot compare "some key of a prefix with these labels"): a member that leaves
        # right after is the same as one that leaves while the request waits.
        host_group = stored_labels(view.get("hostGroup"))
        if host_group and not count_members(
            host_group, await read_live_workers(self._client, self._keys)
        ):
            raise NoLiveWorkerError(name, no_live_member(host_group))
        key = self._keys.run_request(name, requested_ms)
        txn = self._client.transactions
        running = self._keys.running(name, stored.create_revision)
        # Under "forbid" a run going on would make the worker skip this one: say so now instead
        # of answering 200 for nothing ("replace" kills that run, "allow" runs beside it).
        forbid = view.get("concurrencyPolicy", "forbid") == "forbid"
        compare = [txn.create(self._keys.job(name)) == stored.create_revision]
        if forbid:
            compare.append(txn.version(running) == 0)
        with etcd_errors():
            lease = await self._client.lease(_RUN_REQUEST_TTL_S)
            created, replies = await self._client.transaction(
                compare=compare,
                success=[txn.put(key, b"", lease=lease)],
                failure=[txn.get(self._keys.job(name)), txn.get(running)],
            )
        if not created:
            with etcd_errors():
                await self._client.revoke_lease(lease.id)
            if forbid and len(replies) == 2 and replies[0] and replies[1]:  # a run goes on
                raise ConflictError(
                    "name",
                    f"{name!r} is running now and its concurrencyPolicy is forbid, so a run "
                    "asked for now would be skipped: wait for the run to end, or kill it first",
                )
            raise no_such_job(name)
        return {"name": name, "planTime": requested_ms}

    async def kill(self, name: str, guard: JobGuard) -> None:
        """Every worker watches ``killer/``; the marker's lease removes it after a few seconds.
        It kills the runs of the job as it is now, not those a deleted job of the same name
        left going (keepRunning); with no job of that name, an admin kills those."""
        key = self._keys.job(name)
        with etcd_errors():
            stored = await self._client.get(key)
        if stored is None:
            guard.check_missing(name)
            value = b""  # no generation: every run of the name
        else:
            guard.check(name, _previous(stored.value) or {})
            value = kill_marker(stored.create_revision)
        txn = self._client.transactions
        # The job as read: had it been deleted and saved again in between, the marker would
        # name the old generation and miss the new job's runs.
        same = txn.create(key) == (0 if stored is None else stored.create_revision)
        with etcd_errors():
            lease = await self._client.lease(self._kill_marker_ttl)
            written, _ = await self._client.transaction(
                compare=[same],
                success=[txn.put(self._keys.killer(name), value, lease=lease)],
                failure=[],
            )
        if not written:
            raise ConflictError(
                "name", f"job {name!r} was deleted or replaced meanwhile; try again"
            )

    async def workers(self) -> list[dict[str, Any]]:
        """The live workers' registrations (see registry.LiveWorker.listed), each with
        ``running``: the names of the jobs it runs now (from the running markers, which name
        the worker that holds them)."""
        live = await read_live_workers(self._client, self._keys)
        with etcd_errors():
            running_kvs, _ = await read_prefix(self._client, self._keys.running_prefix)
        running: dict[str, set[str]] = {}
        for kv in running_kvs:
            try:
                name = self._keys.running_name(kv.key)
            except ValueError:
                continue  # not a marker of ours
            holder = marker_worker(kv.value)
            if holder is not None:
                running.setdefault(holder, set()).add(name)
        return [worker.listed(sorted(running.get(worker.id, ()))) for worker in live]

    async def running_runs(self, name: str) -> list[dict[str, Any]]:
        """The job's runs going on now, oldest planned first, from its running markers (one
        bucket's read): each with planTime, attempt, worker and claimedAt."""
        with etcd_errors():
            kvs, _ = await read_prefix(
                self._client, self._keys.running_bucket_prefix(bucket_of(name))
            )
        runs = []
        for kv in kvs:
            try:
                if self._keys.running_name(kv.key) != name:
                    continue
            except ValueError:
                continue  # not a key of ours
            marker = read_marker(kv.value)
            if marker is not None:
                runs.append({"planTime": marker.plan_ms, "attempt": marker.attempt,
                             "worker": marker.worker, "claimedAt": marker.claimed_ms})  # fmt: skip
        return sorted(runs, key=lambda run: (run["planTime"], run["attempt"]))

    async def view(self, name: str) -> dict[str, Any] | None:
        """The stored job's API fields, or None: what a visibility check reads (see
        JobGuard.check_visible)."""
        with etcd_errors():
            stored = await self._client.get(self._keys.job(name))
        return None if stored is None else _previous(stored.value)

    async def owned_by(self, account_id: str) -> list[str]:
        """The names of the jobs the account owns."""
        with etcd_errors():
            kvs, _ = await read_prefix(self._client, self._keys.jobs_prefix)
        # A record holds its owner's id as written: only those that hold it are decoded.
        mentioned = account_id.encode()
        return [
            view["name"]
            for kv in kvs
            if mentioned in kv.value
            and (view := _previous(kv.value)) is not None
            and view.get("ownerId") == account_id
        ]

    async def hand_over(self, account_id: str, owner: str, owner_id: str) -> list[str]:
        """Every job of the account to ``owner`` (""/"": none: its team's maintainers keep
        it); returns their names."""
        return await self._rewrite_owners(
            lambda view: (owner, owner_id) if view.get("ownerId") == account_id else None,
            account_id.encode(),
        )

    async def adopt_owner_ids(self, ids_by_name: dict[str, str]) -> list[str]:
        """Jobs saved before owners were held by account id: each gets its owner's id, or no
        owner when no account has that name any more (a new account of the name must not
        inherit it). Idempotent; returns the names of the jobs changed."""

        def adopted(view: dict[str, Any]) -> tuple[str, str] | None:
            if view.get("ownerId") or not view.get("owner"):
                return None
            owner = view["owner"]
            return (owner, ids_by_name[owner]) if owner in ids_by_name else ("", "")

        # A record leaves out the fields it does not set: one with an ownerId, or without an
        # owner, is not decoded (every manager start looks at every job).
        return await self._rewrite_owners(adopted, b'"owner"', b'"ownerId"')

    async def _rewrite_owners(
        self,
        new_owner: Callable[[dict[str, Any]], tuple[str, str] | None],
        holding: bytes = b"",
        lacking: bytes | None = None,
    ) -> list[str]:
        """``holding``/``lacking``: bytes a record must hold / must not hold to be decoded at
        all (a cheap first look)."""
        with etcd_errors():
            kvs, _ = await read_prefix(self._client, self._keys.jobs_prefix)
        txn = self._client.transactions
        changed = []
        for kv in kvs:
            if holding not in kv.value or (lacking is not None and lacking in kv.value):
                continue
            view = _previous(kv.value)
            if view is None or "raw" in view or (owner := new_owner(view)) is None:
                continue
            job = Job.from_record(kv.value).with_changes(owner=owner[0], ownerId=owner[1])
            with etcd_errors():
                # A job changed meanwhile is left: its next save keeps what it had.
                written, _ = await self._client.transaction(
                    compare=[txn.mod(kv.key) == kv.mod_revision],
                    success=[txn.put(kv.key, job.to_record())],
                    failure=[],
                )
            if written:
                changed.append(job.name)
        return changed

    async def ping(self) -> None:
        with etcd_errors():
            await self._client.get(self._keys.jobs_prefix)


def _previous(raw: bytes | None) -> dict[str, Any] | None:
    """A stored job's API fields, read as /job/list reads them: its cron expression was checked
    when it was saved, and is not parsed again to tell its owner or to answer with it."""
    if raw is None:
        return None
    try:
        return api_view(raw)
    except InvalidFieldError:
        # The old value was not a job we can read; report it raw rather than fail the write.
        return {"raw": raw.decode(errors="replace")}
