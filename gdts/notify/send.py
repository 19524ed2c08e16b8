"""Sending one message through one channel: HTTP with aiohttp, email with smtplib in a thread.
The I/O edge of notifications; what is sent comes from ``gdts.notify.vendors``.

Every failure is one DeliveryError whose message says what failed and never holds a secret:
secret URLs appear as scheme and host only, and any secret value an error or a vendor's answer
happens to echo is blanked out."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from gdts.clock import now_ms as wall_now_ms
from gdts.errors import GdtsError
from gdts.notify.channels import SETTINGS, Channel, redacted_url
from gdts.notify.notice import Notice
from gdts.notify.vendors import Request, build_request, email_message, refusal

MAX_ANSWER_BYTES = 64 * 1024  # enough for any vendor's answer; the rest is not read
SMTP_PORTS = {"starttls": 587, "none": 587, "tls": 465}


class DeliveryError(GdtsError):
    """A channel could not be told: network, timeout, TLS, login, or the vendor refused."""

    http_status = 502  # the vendor or the mail server failed, not the caller

    def __init__(self, channel: Channel, problem: str) -> None:
        self.channel = channel.name
        self.problem = _scrub(problem, channel)
        super().__init__(f"{channel.type} channel {channel.name!r}: {self.problem}")


async def deliver(
    channel: Channel,
    notice: Notice,
    *,
    session: aiohttp.ClientSession,
    timeout_s: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
    now_ms: Callable[[], int] = wall_now_ms,
) -> None:
    """Send ``notice`` through ``channel`` once; return when the vendor took it, else raise
    DeliveryError. ``ssl_context``: whom to trust (default: the system's CAs). Retrying is the
    caller's choice."""
    if channel.type == "email":
        await _send_email(channel, notice, timeout_s, ssl_context, now_ms())
        return
    try:
        request = build_request(channel, notice, now_ms())
    except Exception as exc:  # a message this channel cannot carry: this one fails, not the caller
        raise DeliveryError(channel, f"cannot build the request: {_describe(exc)}") from None
    await _send_http(channel, request, session, timeout_s, ssl_context)


async def _send_http(
    channel: Channel,
    request: Request,
    session: aiohttp.ClientSession,
    timeout_s: float,
    ssl_context: ssl.SSLContext | None,
) -> None:
    where = redacted_url(request.url)
    try:
        async with session.request(
            request.method,
            request.url,
            data=request.body,
            headers=list(request.headers),
            # A redirect would carry the body (and its signature) somewhere not configured.
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            ssl=ssl_context if ssl_context is not None else True,
        ) as response:
            status = response.status
            answer = await _read_capped(response.content, MAX_ANSWER_BYTES)
    except TimeoutError:
        raise DeliveryError(channel, f"no answer from {where} within {timeout_s:g} s") from None
    except aiohttp.ClientConnectorError as exc:
        reason = exc.os_error.strerror or _describe(exc.os_error)  # TLS errors have none
        raise DeliveryError(
            channel, f"cannot connect to {exc.host}:{exc.port} ({where}): {reason}"
        ) from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        # Their text may quote the whole URL; _scrub blanks the secret parts out.
        raise DeliveryError(channel, f"request to {where} failed: {_describe(exc)}") from None
    reason = refusal(channel.type, status, answer)
    if reason is not None:
        raise DeliveryError(channel, f"{where} refused the message: {reason}")


async def _read_capped(stream: aiohttp.StreamReader, limit: int) -> bytes:
    chunks = []
    size = 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


async def _send_email(
    channel: Channel,
    notice: Notice,
    timeout_s: float,
    ssl_context: ssl.SSLContext | None,
    now_ms: int,
) -> None:
    s = channel.settings
    security = s.get("security") or "starttls"
    host, port = str(s["host"]), int(s.get("port") or SMTP_PORTS[security])
    try:
        message = email_message(channel, notice, now_ms)
    except Exception as exc:  # e.g. a header no mail can carry: this message fails, not the caller
        raise DeliveryError(channel, f"cannot build the mail: {_describe(exc)}") from None
    context = ssl_context if ssl_context is not None else ssl.create_default_context()
    deadline = time.monotonic() + timeout_s

    def left_s() -> float:
        return max(0.1, deadline - time.monotonic())

    def send() -> None:
        # One deadline for the whole conversation, applied inside the thread, and the caller
        # waits for the thread: a mail given up on is never sent behind the caller's back
        # (then sent again by the retry).
        smtp: smtplib.SMTP
        if security == "tls":
            smtp = smtplib.SMTP_SSL(host, port, timeout=left_s(), context=context)
        else:
            smtp = smtplib.SMTP(host, port, timeout=left_s())
        with smtp:
            if security == "starttls":
                smtp.sock.settimeout(left_s())
                smtp.starttls(context=context)  # fails, never falls back, without STARTTLS
            if s.get("username"):
                smtp.sock.settimeout(left_s())
                smtp.login(s["username"], s.get("password") or "")
            if time.monotonic() >= deadline:
                raise TimeoutError("out of time before sending")
            smtp.sock.settimeout(left_s())
            smtp.send_message(message, from_addr=s["from"], to_addrs=list(s["to"]))

    try:
        await asyncio.to_thread(send)
    except TimeoutError:
        raise DeliveryError(
            channel, f"SMTP server {host}:{port} did not answer in time ({timeout_s:g} s)"
        ) from None
    except (smtplib.SMTPException, OSError, ValueError) as exc:
        if "timed out" in str(exc):  # smtplib reports a silent server as a disconnection
            raise DeliveryError(
                channel, f"SMTP server {host}:{port} did not answer in time ({timeout_s:g} s)"
            ) from None
        raise DeliveryError(
            channel, f"email through {host}:{port} ({security}) failed: {_describe(exc)}"
        ) from None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _secrets(channel: Channel) -> Iterator[str]:
    for setting in SETTINGS.get(channel.type, ()):
        value: Any = channel.settings.get(setting.name)
        if not setting.secret or not value:
            continue
        if isinstance(value, dict):
            yield from (str(v) for v in value.values() if v)
            continue
        yield str(value)
        if setting.kind == "url":  # an error may quote the key-bearing parts alone
            parts = urlsplit(str(value))
            yield from (parts.path, parts.query)


def _scrub(text: str, channel: Channel) -> str:
    # Longest first, so a secret URL goes whole before a token inside it is looked for.
    for secret in sorted(set(_secrets(channel)), key=len, reverse=True):
        if len(secret) >= 4:  # a 1-3 character "secret" would blank out ordinary words
            text = text.replace(secret, "[secret]")
    return text
