"""Notification channels: what each type needs, which of it is secret, and the checked form.
Pure: validation and views, no I/O.

Secrets (passwords, tokens, signing secrets, webhook URLs that embed keys) are write-only: a
channel's public view names which are set, never their values; saving a channel without a
secret it already has (left out, or "") keeps the stored one, so editing the rest needs no
secret again; null takes an optional secret away."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from gdts.errors import InvalidFieldError
from gdts.httptarget import MAX_URL_CHARS
from gdts.names import type_name, validate_name
from gdts.validators import validate_choice, validate_int, validate_text

CHANNEL_TYPES = ("email", "webhook", "slack", "telegram", "dingtalk", "wecom")
EMAIL_SECURITY = ("starttls", "tls", "none")
MAX_RECIPIENTS = 50
MAX_HEADERS = 20
_TEXT = 512  # characters of a short setting (a host, an address, a chat id)
# It becomes part of a URL's path: nothing that would be quoted there (and so escape the
# scrubbing of errors, which looks for the token as given).
_BOT_TOKEN = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{1,200}")


@dataclass(frozen=True)
class Setting:
    """One setting of a channel type, as the API checks it and the console asks for it."""

    name: str
    label: str
    description: str
    kind: str = "string"  # string, url, integer, choice, addresses, headers
    required: bool = False
    secret: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    placeholder: str = ""  # an example the console shows in an empty field

    def to_api(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "description": self.description,
                "kind": self.kind, "required": self.required, "secret": self.secret,
                "default": self.default, "choices": list(self.choices),
                "placeholder": self.placeholder}  # fmt: skip


TYPE_LABELS = {
    "email": "Email (SMTP)", "webhook": "Webhook (JSON POST)", "slack": "Slack",
    "telegram": "Telegram", "dingtalk": "DingTalk", "wecom": "WeCom",
}  # fmt: skip
SETTINGS: dict[str, tuple[Setting, ...]] = {
    "email": (
        Setting("host", "SMTP server", "The SMTP server.", required=True,
                placeholder="smtp.example.com"),
        Setting("port", "Port", "Its port (default 587; 465 for tls).", "integer",
                placeholder="587 (465 with tls)"),
        Setting("security", "Security", "starttls (default), tls from the first byte, or none.",
                "choice", default="starttls", choices=EMAIL_SECURITY),
        Setting("username", "Username", "Who logs in to the server (none: no login).",
                placeholder="none: no login"),
        Setting("password", "Password", "Their password.", secret=True),
        Setting("from", "From", "The sender address.", required=True,
                placeholder="gdts@example.com"),
        Setting("to", "To", "The recipient addresses, one a line.", "addresses", required=True),
    ),
    "webhook": (
        Setting("url", "URL", "Where the JSON body is POSTed (it may embed a key).", "url",
                required=True, secret=True),
        Setting("headers", "Headers", "Extra request headers, one \u201cName: value\u201d a "
                "line (they may carry tokens).", "headers", secret=True),
        Setting("secret", "Signing secret", "Signs the body: X-GDTS-Signature: "
                "sha256=<HMAC-SHA256 hex>.", secret=True),
    ),
    "slack": (
        Setting("url", "Incoming-webhook URL", "The incoming-webhook URL.", "url",
                required=True, secret=True),
    ),
    "telegram": (
        Setting("botToken", "Bot token", "The bot's token.", required=True, secret=True),
        Setting("chatId", "Chat id", "The chat the bot writes to.", required=True),
        Setting("apiUrl", "Bot API server", "The Bot API server; a local telegram-bot-api "
                "server also works.", "url", default="https://api.telegram.org",
                placeholder="https://api.telegram.org"),
    ),
    "dingtalk": (
        Setting("url", "Robot webhook URL", "The robot's webhook URL, with its access_token.",
                "url", required=True, secret=True),
        Setting("secret", "Signing secret (SEC…)", "The robot's signing secret: adds "
                "timestamp and sign.", secret=True),
    ),
    "wecom": (
        Setting("url", "Group robot webhook URL", "The group robot's webhook URL, with its "
                "key.", "url", required=True, secret=True),
    ),
}  # fmt: skip


def types_view() -> list[dict[str, Any]]:
    """Every channel type and what it takes: the console builds its form from this."""
    return [{"type": kind, "label": TYPE_LABELS[kind],
             "settings": [s.to_api() for s in SETTINGS[kind]]}
            for kind in CHANNEL_TYPES]  # fmt: skip


@dataclass(frozen=True)
class Channel:
    name: str
    type: str
    # Secrets included: never in a repr (a log line, a traceback's locals).
    settings: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def public_view(self) -> dict[str, Any]:
        """What any answer, page or audit entry may show: no secret's value."""
        shown: dict[str, Any] = {}
        secrets_set = []
        for setting in SETTINGS[self.type]:
            value = self.settings.get(setting.name)
            if value is None:
                continue
            if setting.secret:
                secrets_set.append(setting.name)
                if setting.kind == "url":
                    shown[setting.name] = redacted_url(value)
            else:
                shown[setting.name] = value
        return {"name": self.name, "type": self.type, "settings": shown,
                "secretsSet": secrets_set}  # fmt: skip

    def to_document(self) -> dict[str, Any]:
        return {"_id": self.name, "type": self.type, "settings": dict(self.settings)}

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Channel:
        return cls(document["_id"], document["type"], dict(document.get("settings") or {}))


def redacted_url(url: str) -> str:
    """Where a secret URL points, without what may be its key: scheme and host only."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address keeps its brackets, or the result is no URL at all
        host = f"[{host}]"
    return f"{parts.scheme}://{host}/…"


def parse_channel(data: object, stored: Channel | None = None) -> Channel:
    """A channel from untrusted JSON; the first bad field is named (``settings.<name>``).
    ``stored``: the channel saved under that name, whose secrets a save without them keeps."""
    if not isinstance(data, dict):
        raise InvalidFieldError("channel", f"must be a JSON object, got {type_name(data)}")
    unknown = data.keys() - {"name", "type", "settings"}
    if unknown:
        raise InvalidFieldError(min(unknown), "unknown channel field (known: name, type, "
                                "settings)")  # fmt: skip
    name = validate_name(data.get("name"), "name")
    kind = validate_choice("type", data.get("type"), CHANNEL_TYPES)
    given = data.get("settings", {})
    if not isinstance(given, dict):
        raise InvalidFieldError("settings", f"must be an object, got {type_name(given)}")
    known = {s.name: s for s in SETTINGS[kind]}
    unknown = given.keys() - known.keys()
    if unknown:
        raise InvalidFieldError(
            f"settings.{min(unknown)}",
            f"unknown setting of a {kind} channel (known: {', '.join(known)})",
        )
    keep = stored.settings if stored is not None and stored.type == kind else {}
    settings: dict[str, Any] = {}
    for setting in SETTINGS[kind]:
        value = given.get(setting.name)
        if value is None and setting.name in given and setting.secret and not setting.required:
            continue  # null: an optional secret taken away ("" or left out keeps it)
        if value is None or value == "":
            if setting.secret and setting.name in keep:
                settings[setting.name] = keep[setting.name]  # write-only: kept, not re-sent
            elif setting.required:
                raise InvalidFieldError(f"settings.{setting.name}", "is required")
            elif setting.default is not None:
                settings[setting.name] = setting.default
            continue
        settings[setting.name] = _check(f"settings.{setting.name}", setting, value)
    token = settings.get("botToken")
    if kind == "telegram" and isinstance(token, str) and not _BOT_TOKEN.fullmatch(token):
        raise InvalidFieldError("settings.botToken", "must look like 123456:ABC-def_ghi (the "
                                "token BotFather gave)")  # fmt: skip
    return Channel(name, kind, settings)


def _check(where: str, setting: Setting, value: object) -> Any:
    if setting.kind == "integer":
        return validate_int(where, value, 1, 65535)
    if setting.kind == "choice":
        return validate_choice(where, value, setting.choices)
    if setting.kind == "url":
        return _check_url(where, value)
    if setting.kind == "addresses":
        return _check_addresses(where, value)
    if setting.kind == "headers":
        return _check_headers(where, value)
    return _one_line(where, validate_text(where, value, _TEXT))


def _one_line(where: str, text: str) -> str:
    """Settings become mail headers and URLs: nothing that any of them reads as a line break
    (str.splitlines' whole set, U+2028 included) or a NUL."""
    if "\x00" in text or len(f"{text}x".splitlines()) > 1:
        raise InvalidFieldError(where, "must be one line (no line or paragraph separators)")
    return text


def _check_url(where: str, value: object) -> str:
    url = validate_text(where, value, MAX_URL_CHARS)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidFieldError(where, "must be an http:// or https:// URL with a host")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise InvalidFieldError(where, "must not contain spaces or control characters")
    return url


def _check_addresses(where: str, value: object) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise InvalidFieldError(where, "must be a non-empty list of addresses")
    if len(items) > MAX_RECIPIENTS:
        raise InvalidFieldError(where, f"must list at most {MAX_RECIPIENTS} addresses")
    addresses = []
    for i, item in enumerate(items):
        text = _one_line(f"{where}[{i}]", validate_text(f"{where}[{i}]", item, _TEXT)).strip()
        local, at, domain = text.rpartition("@")
        if not at or not local or "." not in domain or any(c in text for c in " <>,;\r\n"):
            raise InvalidFieldError(f"{where}[{i}]", f"is not an address: {text!r}")
        addresses.append(text)
    return addresses


def _check_headers(where: str, value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InvalidFieldError(where, f"must be an object, got {type_name(value)}")
    if len(value) > MAX_HEADERS:
        raise InvalidFieldError(where, f"must have at most {MAX_HEADERS} headers")
    headers = {}
    for key, item in value.items():
        name = validate_text(f"{where}", key, 128)
        if not name or not all(c.isascii() and (c.isalnum() or c in "-_") for c in name):
            raise InvalidFieldError(
                where, f"header name {name!r} must be ASCII letters, digits, -, _"
            )
        headers[name] = _one_line(f"{where}.{name}", validate_text(f"{where}.{name}", item, 4096))
    return headers
