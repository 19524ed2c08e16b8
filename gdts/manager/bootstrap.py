"""What a manager makes sure of at start: the security collections' and the run log's indexes
(the run log's are made by the workers too, but a manager must not page an unindexed log
before the first worker wrote), a first admin when there are no accounts at all, the admin
token from config, and what teams need of an older deployment: an id for every account, the
default team, and jobs owned by account id."""

from __future__ import annotations

import asyncio
import logging
import secrets

from gdts.cancellation import end_if_cancelling
from gdts.config import ManagerConfig
from gdts.errors import ConflictError, GdtsError
from gdts.manager.auth import Security
from gdts.manager.jobstore import JobStore
from gdts.mongo import mongo_errors
from gdts.runlog import RunLog

log = logging.getLogger(__name__)

_RETRY_S = 2.0


async def prepare(security: Security, config: ManagerConfig, run_log: RunLog) -> None:
    with mongo_errors():
        await run_log.ensure_indexes(config.log_retention_days)
    await security.credentials.ensure_indexes()
    await security.throttle.ensure_indexes()
    await security.audit.ensure_indexes(config.audit_retention_days)
    await security.teams.ensure_indexes()
    if await security.accounts.count() == 0:
        await _create_first_admin(security, config)
    await security.accounts.ensure_account_ids()
    accounts = await security.accounts.all()
    await security.teams.ensure_default(accounts)
    if config.admin_token:
        await security.credentials.install_token(
            config.admin_token, config.admin_username, "adminToken in the manager's config"
        )
        if await security.accounts.get(config.admin_username) is None:
            log.warning(
                "adminToken names account %r, which does not exist: the token is refused",
                config.admin_username,
            )


async def _create_first_admin(security: Security, config: ManagerConfig) -> None:
    password = config.admin_password or secrets.token_urlsafe(15)
    try:
        await security.accounts.create(config.admin_username, "admin", password)
    except ConflictError:
        return  # another manager starting beside us created it first
    if config.admin_password:
        log.warning("created the first account, admin %r, with adminPassword from config",
                    config.admin_username)  # fmt: skip
    else:
        # The only time this password exists anywhere in clear: the hash is all that is kept.
        log.warning(
            "created the first account: username %r password %r (shown once; change it with "
            "POST /auth/password)",
            config.admin_username,
            password,
        )


async def prepare_until_done(security: Security, config: ManagerConfig, run_log: RunLog) -> None:
    """``prepare`` again and again while MongoDB cannot be reached: a manager starts (and
    answers 503) without it, and is ready as soon as MongoDB is."""
    while True:
        try:
            await prepare(security, config, run_log)
            return
        except GdtsError as exc:
            end_if_cancelling(exc)
            log.warning("cannot prepare accounts yet (%s); retrying", exc)
        await asyncio.sleep(_RETRY_S)


async def adopt_owner_ids_until_done(security: Security, jobs: JobStore) -> None:
    """Jobs saved before owners were held by account id get their owner's id (etcd and MongoDB
    both needed: tried again until they answer; idempotent, so every manager may do it)."""
    while True:
        try:
            accounts = await security.accounts.all()
            if all(a.get("accountId") for a in accounts):
                by_name = {a["username"]: a["accountId"] for a in accounts}
                adopted = await jobs.adopt_owner_ids(by_name)
                if adopted:
                    log.info("%d job(s) now owned by account id", len(adopted))
                return
        except GdtsError as exc:
            end_if_cancelling(exc)
            log.warning("cannot give jobs their owners' account ids yet (%s); retrying", exc)
        await asyncio.sleep(_RETRY_S)
