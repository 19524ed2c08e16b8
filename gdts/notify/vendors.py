"""Each channel type's message as its vendor documents it, and how to read the vendor's answer.
Pure: no I/O, no clock ("now" is an argument); ``gdts.notify.send`` does the sending.

Vendor references (for the next engineer checking a change):
- DingTalk custom robot: open.dingtalk.com/document/robots/custom-robot-access (signing) and
  .../robots/message-types-and-data-format (markdown); answers {"errcode": 0, "errmsg": "ok"}.
- WeCom group robot: developer.work.weixin.qq.com/document/path/91770 (markdown content at most
  4096 bytes, UTF-8); answers {"errcode": 0, "errmsg": "ok"}.
- Telegram: core.telegram.org/bots/api#sendmessage (text 1-4096 characters); answers
  {"ok": true, ...} or {"ok": false, "description": ...}.
- Slack incoming webhooks: api.slack.com/messaging/webhooks (answers 200 "ok"),
  api.slack.com/reference/surfaces/formatting#escaping (&, <, > as HTML entities)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from urllib.parse import quote, quote_plus

from gdts.notify.channels import Channel
from gdts.notify.notice import Notice

TELEGRAM_MAX_CHARS = 4096  # counted in UTF-16 code units, as Telegram counts text
WECOM_MAX_BYTES = 4096  # of the markdown content, UTF-8
ANSWER_SNIPPET_CHARS = 200  # of a vendor's answer quoted in a refusal
ELLIPSIS = "…"
SIGNATURE_HEADER = "X-GDTS-Signature"
EVENT_HEADER = "X-GDTS-Event"
_JSON = ("Content-Type", "application/json")


@dataclass(frozen=True)
class Request:
    """One HTTP request to send. URL, headers and body may hold secrets: kept out of repr."""

    method: str
    url: str = field(repr=False)
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    body: bytes = field(repr=False)


def build_request(channel: Channel, notice: Notice, now_ms: int) -> Request:
    """The request that tells ``channel`` of ``notice``; ``now_ms`` signs DingTalk requests."""
    s = channel.settings
    if channel.type == "webhook":
        return _webhook(s, notice)
    if channel.type == "slack":
        text = f"*{slack_escape(notice.title())}*\n{slack_escape(notice.text())}"
        return _post_json(s["url"], {"text": text})
    if channel.type == "telegram":
        api = str(s.get("apiUrl") or "https://api.telegram.org").rstrip("/")
        # A token is "<digits>:<letters>"; quoting the rest keeps a stray "/" or "?" in a bad
        # one from pointing the request at another path.
        url = f"{api}/bot{quote(str(s['botToken']), safe=':')}/sendMessage"
        text = cut_utf16(f"{notice.title()}\n\n{notice.text()}", TELEGRAM_MAX_CHARS)
        payload = {"chat_id": s["chatId"], "text": text, "disable_web_page_preview": True}
        return _post_json(url, payload)
    if channel.type == "dingtalk":
        url = s["url"]
        if s.get("secret"):
            sign = dingtalk_sign(s["secret"], now_ms)
            url += f"{_query_joint(url)}timestamp={now_ms}&sign={sign}"
        # A bare "\n" may not break a line in DingTalk's markdown; its message-type docs ask for
        # two spaces on each side of it.
        text = f"### {notice.title()}\n\n" + "  \n  ".join(notice.lines())
        return _post_json(
            url, {"msgtype": "markdown", "markdown": {"title": notice.title(), "text": text}}
        )
    if channel.type == "wecom":
        content = cut_utf8(f"**{notice.title()}**\n{notice.text()}", WECOM_MAX_BYTES)
        return _post_json(s["url"], {"msgtype": "markdown", "markdown": {"content": content}})
    raise ValueError(f"a {channel.type} channel is not sent over HTTP")


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's ``sign`` query value, URL-encoded: HMAC-SHA256 keyed with the secret over
    "<timestamp>\\n<secret>", in base64 (the server refuses a timestamp an hour off)."""
    message = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode())


def webhook_signature(secret: str, body: bytes) -> str:
    """The X-GDTS-Signature value: a receiver recomputes it over the raw body it got."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def slack_escape(text: str) -> str:
    # Only these three: Slack decodes no other entity, so "&#39;" would show as typed.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut_utf8(text: str, max_bytes: int) -> str:
    """``text`` in at most ``max_bytes`` UTF-8 bytes; a cut one ends in "…", never in half
    a character."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    room = max_bytes - len(ELLIPSIS.encode())
    # Decoding a prefix with "ignore" drops only the character the cut went through.
    return data[:room].decode("utf-8", "ignore") + ELLIPSIS


def cut_utf16(text: str, max_units: int) -> str:
    """``text`` in at most ``max_units`` UTF-16 code units (a character outside the BMP, an
    emoji, counts two); a cut one ends in "…", never in half a surrogate pair."""
    data = text.encode("utf-16-le")
    if len(data) <= 2 * max_units:
        return text
    room = 2 * (max_units - 1)  # "…" is one unit
    return data[:room].decode("utf-16-le", "ignore") + ELLIPSIS


def email_message(channel: Channel, notice: Notice, now_ms: int) -> EmailMessage:
    """The mail an email channel sends. Its Message-ID comes from the event and the channel,
    so a message sent again after a lost answer is one a mail client can drop as a copy."""
    if channel.type != "email":
        raise ValueError(f"a {channel.type} channel does not send email")
    s = channel.settings
    sender = str(s["from"])
    domain = sender.rpartition("@")[2]
    if not domain.isascii():
        domain = "gdts.invalid"  # a msg-id must be ASCII; it only needs to be unique
    unique = hashlib.sha256(f"{notice.id}\0{channel.name}".encode()).hexdigest()[:32]
    message = EmailMessage()
    message["Subject"] = notice.title()
    message["From"] = sender
    message["To"] = ", ".join(s["to"])
    message["Date"] = formatdate(now_ms / 1000, usegmt=True)
    message["Message-ID"] = f"<{unique}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to it
    message.set_content(notice.text())
    return message


def refusal(channel_type: str, status: int, body: bytes) -> str | None:
    """None when the vendor took the message; else why not, short, in the vendor's words."""
    answer = _json_object(body)
    if not 200 <= status < 300:
        reason = _vendor_reason(answer) or snippet(body)
        return f"HTTP {status}" + (f": {reason}" if reason else "")
    if channel_type in ("dingtalk", "wecom"):
        if answer is None or "errcode" not in answer:
            return f"answer without an errcode: {snippet(body)!r}"
        if answer["errcode"] == 0:
            return None
        return f"errcode {answer['errcode']}: {snippet(str(answer.get('errmsg', '')).encode())}"
    if channel_type == "telegram":
        if answer is not None and answer.get("ok") is True:
            return None
        return f"not ok: {_vendor_reason(answer) or snippet(body)!r}"
    if channel_type == "slack":
        return None if body.strip() == b"ok" else f"answered {snippet(body)!r}, not 'ok'"
    if channel_type == "webhook":
        return None
    raise ValueError(f"a {channel_type} channel has no HTTP answer")


def snippet(body: bytes) -> str:
    """The start of an answer on one line: enough to say what went wrong, bounded."""
    text = " ".join(body.decode("utf-8", "replace").split())
    return text if len(text) <= ANSWER_SNIPPET_CHARS else text[: ANSWER_SNIPPET_CHARS - 1] + "…"


def _webhook(settings: Any, notice: Notice) -> Request:
    body = _dumps(notice.to_json())
    ours = [_JSON, (EVENT_HEADER, notice.event)]
    if settings.get("secret"):
        ours.append((SIGNATURE_HEADER, webhook_signature(settings["secret"], body)))
    taken = {name.lower() for name, _ in ours}
    # The operator's headers go along, except one that would replace ours (a forged signature).
    extra = [(k, v) for k, v in (settings.get("headers") or {}).items() if k.lower() not in taken]
    return Request("POST", settings["url"], tuple(extra + ours), body)


def _post_json(url: str, payload: dict[str, Any]) -> Request:
    return Request("POST", url, (_JSON,), _dumps(payload))


def _dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _query_joint(url: str) -> str:
    if "?" not in url:
        return "?"
    return "" if url.endswith(("?", "&")) else "&"


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        answer = json.loads(body)
    except ValueError:  # includes a body that is not UTF-8
        return None
    return answer if isinstance(answer, dict) else None


def _vendor_reason(answer: dict[str, Any] | None) -> str:
    if answer is None:
        return ""
    for key in ("description", "errmsg", "error", "message"):
        if isinstance(answer.get(key), str) and answer[key]:
            return snippet(answer[key].encode())
    return ""
