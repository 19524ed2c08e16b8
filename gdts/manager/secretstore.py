"""The manager's side of the teams' secrets in etcd (``secrets/<team>/<name>``): sealed on
save with the key ring's first key, listed by name, re-sealed with the current key (rekey).
A value goes in and never comes back out of this module."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gdts.errors import ConflictError, NoSecretKeyError, NotFoundError
from gdts.etcd import EtcdClient, etcd_errors, read_prefix, scan_prefix
from gdts.jobfields import DEFAULT_TEAM
from gdts.keys import KeyLayout
from gdts.secretbox import KeyRing, SecretError, SecretRecord

log = logging.getLogger(__name__)

_REFERRERS_SHOWN = 10
# Only records that name a secret are parsed when a delete looks for the jobs using one.
_NAMES_SECRETS = (b'"secretEnv"', b'"secretHeaders"')


@dataclass(frozen=True)
class RekeyResult:
    resealed: list[dict[str, str]]
    current: int  # already sealed with the current key
    failed: list[dict[str, str]]  # team, name, error (a key the ring lacks, say)

    def to_api(self) -> dict[str, Any]:
        return {"resealed": self.resealed, "alreadyCurrent": self.current, "failed": self.failed}


class SecretStore:
    def __init__(self, client: EtcdClient, keys: KeyLayout, ring: KeyRing) -> None:
        self._client = client
        self._keys = keys
        self._ring = ring

    async def list(self, team: str) -> list[dict[str, Any]]:
        """The team's secrets by name: who changed each when, and its key's id; no value."""
        with etcd_errors():
            kvs, _ = await read_prefix(self._client, self._keys.team_secrets(team))
        listed = []
        for kv in kvs:
            try:
                _, name = self._keys.secret_parts(kv.key)
                listed.append(SecretRecord.from_bytes(kv.value).listed(name))
            except (ValueError, SecretError) as exc:
                log.warning("ignoring secret at %r: %s", kv.key, exc)
        return listed

    async def save(self, team: str, name: str, value: str, by: str, now_ms: int) -> bool:
        """Seal and store; returns whether it replaced a secret of that name."""
        if not self._ring:
            raise NoSecretKeyError("store a secret")
        record = SecretRecord(self._ring.seal(team, name, value), now_ms, by)
        with etcd_errors():
            previous = await self._client.put(
                self._keys.secret(team, name), record.to_bytes(), prev_kv=True
            )
        return bool(previous and previous.prev_kv and previous.prev_kv.key)

    async def delete(self, team: str, name: str) -> None:
        """Refused (409, naming them) while a job of the team names it: its runs would fail."""
        users = await self.jobs_using(team, name)
        if users:
            shown = ", ".join(repr(job) for job in users[:_REFERRERS_SHOWN])
            more = len(users) - _REFERRERS_SHOWN
            raise ConflictError("name", f"secret {name!r} of team {team!r} is used by job(s) "
                                f"{shown}{f' and {more} more' if more > 0 else ''}: change "
                                "them first")  # fmt: skip
        with etcd_errors():
            deleted = await self._client.delete(self._keys.secret(team, name))
        if not deleted:
            raise NotFoundError("name", f"no secret {name!r} in team {team!r}")

    async def missing(self, team: str, names: Iterable[str]) -> set[str]:
        """Which of ``names`` the team has no secret of (one read of the team's names)."""
        with etcd_errors():
            kvs, _ = await read_prefix(self._client, self._keys.team_secrets(team), keys_only=True)
        have = set()
        for kv in kvs:
            try:
                have.add(self._keys.secret_parts(kv.key)[1])
            except ValueError:
                continue
        return set(names) - have

    async def jobs_using(self, team: str, name: str) -> list[str]:
        """The jobs of ``team`` whose secretEnv or http.secretHeaders names ``name``: every job
        record is read, but only those that name some secret are parsed."""
        users: list[str] = []

        async def take(page: Sequence[Any], first: bool) -> None:
            if first:
                users.clear()
            for kv in page:
                if not any(marker in kv.value for marker in _NAMES_SECRETS):
                    continue
                try:
                    job = json.loads(kv.value)
                    uses = job.get("team", DEFAULT_TEAM) == team and name in _named_secrets(job)
                except (ValueError, AttributeError, TypeError):
                    continue  # a record no process can read runs nothing
                if uses:
                    users.append(str(job.get("name", "?")))

        with etcd_errors():
            await scan_prefix(self._client, self._keys.jobs_prefix, take)
        return users

    async def rekey(self) -> RekeyResult:
        """Seal every secret not sealed with the ring's first key again with it, each written
        only if unchanged since read (a secret saved meanwhile is sealed with it already)."""
        if not self._ring:
            raise NoSecretKeyError("re-seal the secrets")
        current_id = self._ring.current_id
        with etcd_errors():
            kvs, _ = await read_prefix(self._client, self._keys.secrets_prefix)
        resealed, failed, current = [], [], 0
        txn = self._client.transactions
        for kv in kvs:
            try:
                team, name = self._keys.secret_parts(kv.key)
            except ValueError:
                continue
            try:
                record = SecretRecord.from_bytes(kv.value)
                if record.sealed.key_id == current_id:
                    current += 1
                    continue
                value = self._ring.open(team, name, record.sealed)
            except SecretError as exc:
                failed.append({"team": team, "name": name, "error": str(exc)})
                continue
            again = SecretRecord(self._ring.seal(team, name, value), record.updated_ms,
                                 record.updated_by)  # fmt: skip
            with etcd_errors():
                written, _ = await self._client.transaction(
                    compare=[txn.mod(kv.key) == kv.mod_revision],
                    success=[txn.put(kv.key, again.to_bytes())],
                    failure=[],
                )
            if written:
                resealed.append({"team": team, "name": name, "from": record.sealed.key_id})
            else:
                current += 1  # saved meanwhile, so sealed with the current key
        return RekeyResult(resealed, current, failed)


def _named_secrets(job: dict[str, Any]) -> set[str]:
    named = set((job.get("secretEnv") or {}).values())
    http = job.get("http") or {}
    if isinstance(http, dict):
        named |= set((http.get("secretHeaders") or {}).values())
    return named
