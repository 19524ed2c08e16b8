"""The notification endpoints: channels (admins manage them; everyone may see their names, to
pick one in a job's rules), the cluster's rules, a test send, and what the outbox delivered.
No answer, page or audit entry carries a channel's secret (see gdts.notify.channels)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gdts.errors import InvalidFieldError, NotFoundError
from gdts.manager.api import ok, required_name
from gdts.manager.auth import audit, principal_of
from gdts.manager.endpoints import MAX_LOG_LIMIT, role_allows
from gdts.manager.params import int_param, loads_strict, read_params
from gdts.notify.channels import parse_channel, types_view
from gdts.notify.notice import CLUSTER_EVENTS
from gdts.notify.notifier import Notifier
from gdts.notify.rules import MAX_MIN_INTERVAL_S, parse_rules
from gdts.notify.store import NotifyStore
from gdts.validators import validate_seconds

NOTIFY_STORE = web.AppKey("notify_store", NotifyStore)
NOTIFIER = web.AppKey("notifier", Notifier)
OUTBOX_STATES = ("queued", "sent", "failed")


def _json_param(params: Mapping[str, Any], field: str) -> Any:
    if field not in params or params[field] in (None, ""):
        raise InvalidFieldError(field, "is required")
    value = params[field]
    return loads_strict(value, field) if isinstance(value, str) else value


async def list_channels(request: web.Request) -> web.Response:
    """Admins see each channel's settings (never a secret's value); others its name and type."""
    await read_params(request)
    channels = await request.app[NOTIFY_STORE].channels()
    if role_allows(principal_of(request).role, "admin"):
        return ok([c.public_view() for c in channels])
    return ok([{"name": c.name, "type": c.type} for c in channels])


async def channel_types(request: web.Request) -> web.Response:
    await read_params(request)
    return ok(types_view())


async def save_channel(request: web.Request) -> web.Response:
    params = await read_params(request)
    data = _json_param(params, "channel")
    store = request.app[NOTIFY_STORE]
    name = data.get("name") if isinstance(data, dict) else None
    stored = await store.channel(name) if isinstance(name, str) and name else None
    channel = parse_channel(data, stored)
    before = await store.save_channel(channel)
    after = channel.public_view()
    before_view = None if before is None else before.public_view()
    await audit(request, "notify.channel.save", before=before_view, after=after,
                detail={"channel": channel.name})  # fmt: skip
    return ok(after)


async def delete_channel(request: web.Request) -> web.Response:
    name = required_name(await read_params(request))
    before = await request.app[NOTIFY_STORE].delete_channel(name)
    if before is None:
        raise NotFoundError("name", f"no channel named {name!r}")
    await audit(request, "notify.channel.delete", before=before.public_view(),
                detail={"channel": name})  # fmt: skip
    return ok(before.public_view())


async def test_channel(request: web.Request) -> web.Response:
    """Send a test message now, through this manager; the answer says whether it arrived."""
    name = required_name(await read_params(request))
    channel = await request.app[NOTIFY_STORE].channel(name)
    if channel is None:
        raise NotFoundError("name", f"no channel named {name!r}")
    error = await request.app[NOTIFIER].send_test(channel)
    result = {"channel": name, "delivered": not error, "error": error}
    await audit(request, "notify.channel.test", detail=result)
    return ok(result)


async def cluster_rules(request: web.Request) -> web.Response:
    await read_params(request)
    rules, min_interval = await request.app[NOTIFY_STORE].cluster_rules()
    return ok({"rules": [r.to_api() for r in rules], "minInterval": min_interval})


async def save_cluster_rules(request: web.Request) -> web.Response:
    params = await read_params(request)
    rules = parse_rules("rules", _json_param(params, "rules"), CLUSTER_EVENTS)
    store = request.app[NOTIFY_STORE]
    before, before_interval = await store.cluster_rules()
    min_interval = before_interval  # not given: as it was
    if params.get("minInterval") not in (None, ""):
        raw = params["minInterval"]
        try:
            number = float(raw) if isinstance(raw, str) else raw
        except ValueError:
            raise InvalidFieldError("minInterval", f"must be a number, got {raw!r}") from None
        min_interval = validate_seconds("minInterval", number, MAX_MIN_INTERVAL_S, 1.0)
    await check_channels(store, "rules", [r.channel for r in rules])
    await store.save_cluster_rules(rules, min_interval)
    after = {"rules": [r.to_api() for r in rules], "minInterval": min_interval}
    await audit(request, "notify.rules.save", after=after,
                before={"rules": [r.to_api() for r in before],
                        "minInterval": before_interval})  # fmt: skip
    return ok(after)


async def outbox(request: web.Request) -> web.Response:
    """The newest events and what became of them (queued, sent, failed)."""
    params = await read_params(request)
    state = params.get("state") or None
    if state is not None and state not in OUTBOX_STATES:
        raise InvalidFieldError("state", f"must be one of {', '.join(OUTBOX_STATES)}")
    limit = int_param(params, "limit", 50, 1, MAX_LOG_LIMIT)
    store = request.app[NOTIFY_STORE]
    return ok({"events": await store.recent(limit, state), "counts": await store.count_by_state()})


async def check_channels(store: NotifyStore, field: str, names: list[str]) -> None:
    """Refuse rules naming a channel that does not exist (named as ``field[i].channel``)."""
    missing = set(await store.missing_channels(names))
    for i, name in enumerate(names):
        if name in missing:
            raise InvalidFieldError(f"{field}[{i}].channel", f"no channel named {name!r}")


def add_notify_routes(app: web.Application) -> None:
    app.router.add_get("/notify/channels", list_channels)
    app.router.add_get("/notify/types", channel_types)
    app.router.add_post("/notify/channel/save", save_channel)
    app.router.add_post("/notify/channel/delete", delete_channel)
    app.router.add_post("/notify/channel/test", test_channel)
    app.router.add_get("/notify/rules", cluster_rules)
    app.router.add_post("/notify/rules/save", save_cluster_rules)
    app.router.add_get("/notify/outbox", outbox)
