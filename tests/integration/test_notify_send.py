"""Delivery against real receivers on 127.0.0.1: an aiohttp server that plays each vendor
(checking paths, bodies and signatures the way the vendor would, answering as it does) and
aiosmtpd mail servers: plain, STARTTLS and implicit TLS, with a login. No mocks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from gdts.notify.channels import Channel
from gdts.notify.notice import Notice
from gdts.notify.send import DeliveryError, deliver
from tests.certs import CertFiles, make_certs

WEBHOOK_SECRET = "whsec-s3cr3t-signing"
SLACK_KEY = "s3cr3tSlackKey"
TG_TOKEN = "123456:s3cr3t-tg-token"
DING_TOKEN = "s3cr3t-ding-token"
DING_SECRET = "SECs3cr3t-ding-signing"
WECOM_KEY = "s3cr3t-wecom-key"
SMTP_USER, SMTP_PASSWORD = "gdts", "s3cr3t-smtp-password"
SECRETS = (
    WEBHOOK_SECRET,
    SLACK_KEY,
    TG_TOKEN,
    "s3cr3t-tg-token",
    DING_TOKEN,
    DING_SECRET,
    WECOM_KEY,
    SMTP_PASSWORD,
)

NOTICE = Notice(
    id="ev-42",
    event="failed",
    job="backup",
    status="failed",
    plan_ms=1_700_000_000_000,
    start_ms=1_700_000_000_100,
    end_ms=1_700_000_003_000,
    worker="w1",
    exit_code=1,
    error="disk <full> & été",
    output_head=("copying…",),
)


def assert_secret_free(error: DeliveryError) -> None:
    for secret in SECRETS:
        assert secret not in str(error)


# -- a server that plays the vendors ------------------------------------------------------


@dataclass
class Seen:
    vendor: str
    query: dict[str, str]
    headers: dict[str, str]
    payload: Any


@dataclass
class Vendors:
    seen: list[Seen] = field(default_factory=list)
    never: asyncio.Event = field(default_factory=asyncio.Event)  # what /slow waits for


def ding_sign(timestamp: str, secret: str) -> str:
    # Computed here the way DingTalk's docs show it, not with the code under test.
    mac = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def vendor_app(vendors: Vendors) -> web.Application:
    def record(vendor: str, request: web.Request, payload: Any) -> None:
        vendors.seen.append(Seen(vendor, dict(request.query), dict(request.headers), payload))

    async def webhook(request: web.Request) -> web.Response:
        raw = await request.read()
        expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        if request.headers.get("X-GDTS-Signature") != expected:
            return web.Response(status=401, text="bad signature")
        payload = json.loads(raw)
        record("webhook", request, payload)
        if payload["job"] == "refuse-me":
            return web.Response(status=500, text="receiver broke")
        return web.Response(status=204)

    async def slack(request: web.Request) -> web.Response:
        if request.match_info["key"] != SLACK_KEY:
            return web.Response(status=404, text="no_service")
        payload = await request.json()
        if set(payload) != {"text"} or not isinstance(payload["text"], str):
            return web.Response(status=400, text="invalid_payload")
        record("slack", request, payload)
        return web.Response(text="ok")

    async def telegram(request: web.Request) -> web.Response:
        if request.match_info["token"] != TG_TOKEN:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        payload = await request.json()
        if payload["chat_id"] == "missing":
            return web.json_response(
                {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
                status=400,
            )
        record("telegram", request, payload)
        return web.json_response({"ok": True, "result": {"message_id": 7}})

    async def dingtalk(request: web.Request) -> web.Response:
        if request.query.get("access_token") != DING_TOKEN:
            return web.json_response({"errcode": 300001, "errmsg": "token is not exist"})
        timestamp = request.query.get("timestamp", "")
        if abs(int(timestamp or 0) - time.time() * 1000) > 3_600_000:
            return web.json_response({"errcode": 310000, "errmsg": "timestamp out of range"})
        if request.query.get("sign") != ding_sign(timestamp, DING_SECRET):
            return web.json_response({"errcode": 310000, "errmsg": "sign not match"})
        payload = await request.json()
        record("dingtalk", request, payload)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def wecom(request: web.Request) -> web.Response:
        if request.query.get("key") != WECOM_KEY:
            return web.json_response({"errcode": 93000, "errmsg": "invalid webhook url"})
        payload = await request.json()
        if len(payload["markdown"]["content"].encode()) > 4096:
            return web.json_response({"errcode": 40058, "errmsg": "markdown.content exceed"})
        record("wecom", request, payload)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect("/hook")

    async def slow(request: web.Request) -> web.Response:
        await vendors.never.wait()  # cancelled when the server closes
        return web.Response(text="too late")

    app = web.Application()
    app.router.add_post("/hook", webhook)
    app.router.add_post("/services/T000/B000/{key}", slack)
    app.router.add_post("/bot{token}/sendMessage", telegram)
    app.router.add_post("/robot/send", dingtalk)
    app.router.add_post("/cgi-bin/webhook/send", wecom)
    app.router.add_post("/moved", moved)
    app.router.add_post("/slow", slow)
    return app


@dataclass
class Env:
    server: TestServer
    session: aiohttp.ClientSession
    vendors: Vendors

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def send(self, kind: str, notice: Notice = NOTICE, **settings: Any) -> None:
        await deliver(Channel("ops", kind, settings), notice, session=self.session, timeout_s=5)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_certs(tmp_path_factory.mktemp("certs"))


def server_context(certs: CertFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.server_cert, certs.server_key)
    return context


def trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


@pytest_asyncio.fixture
async def env() -> AsyncIterator[Env]:
    vendors = Vendors()
    async with TestServer(vendor_app(vendors), host="127.0.0.1") as server:
        async with aiohttp.ClientSession() as session:
            yield Env(server, session, vendors)


# -- HTTP vendors -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_webhook_is_signed_and_carries_the_notice(env: Env) -> None:
    await env.send(
        "webhook",
        url=env.url("/hook"),
        secret=WEBHOOK_SECRET,
        headers={"Authorization": "Bearer abc"},
    )
    [seen] = env.vendors.seen
    assert seen.payload == NOTICE.to_json()
    assert seen.headers["X-GDTS-Event"] == "failed"
    assert seen.headers["Authorization"] == "Bearer abc"
    assert seen.headers["Content-Type"] == "application/json"


@pytest.mark.asyncio
async def test_webhook_error_status_is_a_delivery_error(env: Env) -> None:
    refused = Notice(id="e", event="failed", job="refuse-me")
    with pytest.raises(DeliveryError, match=r"refused the message: HTTP 500: receiver broke"):
        await env.send("webhook", refused, url=env.url("/hook"), secret=WEBHOOK_SECRET)
    assert [s.vendor for s in env.vendors.seen] == ["webhook"]  # it did arrive


@pytest.mark.asyncio
async def test_webhook_with_the_wrong_secret_is_refused_by_the_receiver(env: Env) -> None:
    with pytest.raises(DeliveryError, match="HTTP 401: bad signature") as exc:
        await env.send("webhook", url=env.url("/hook"), secret="not-the-secret")
    assert env.vendors.seen == [] and "not-the-secret" not in str(exc.value)


@pytest.mark.asyncio
async def test_slack_gets_escaped_mrkdwn_and_answers_ok(env: Env) -> None:
    await env.send("slack", url=env.url(f"/services/T000/B000/{SLACK_KEY}"))
    [seen] = env.vendors.seen
    assert seen.payload["text"].startswith("*[GDTS] job backup failed*\n")
    assert "Error: disk &lt;full&gt; &amp; été" in seen.payload["text"]


@pytest.mark.asyncio
async def test_slack_error_answer_is_a_delivery_error_without_the_key(env: Env) -> None:
    with pytest.raises(DeliveryError, match="HTTP 404: no_service") as exc:
        await env.send("slack", url=env.url(f"/services/T000/B000/{SLACK_KEY}x"))
    assert_secret_free(exc.value)
    assert "http://127.0.0.1/…" in str(exc.value)


@pytest.mark.asyncio
async def test_telegram_send_message(env: Env) -> None:
    await env.send("telegram", botToken=TG_TOKEN, chatId="-100123", apiUrl=env.url("/"))
    [seen] = env.vendors.seen
    assert seen.payload == {
        "chat_id": "-100123",
        "text": f"{NOTICE.title()}\n\n{NOTICE.text()}",
        "disable_web_page_preview": True,
    }


@pytest.mark.asyncio
async def test_telegram_not_ok_is_a_delivery_error_without_the_token(env: Env) -> None:
    with pytest.raises(DeliveryError, match="HTTP 400: Bad Request: chat not found") as exc:
        await env.send("telegram", botToken=TG_TOKEN, chatId="missing", apiUrl=env.url("/"))
    assert_secret_free(exc.value)


@pytest.mark.asyncio
async def test_dingtalk_signed_request_is_accepted(env: Env) -> None:
    await env.send(
        "dingtalk", url=env.url(f"/robot/send?access_token={DING_TOKEN}"), secret=DING_SECRET
    )
    [seen] = env.vendors.seen
    assert seen.payload["msgtype"] == "markdown"
    assert seen.payload["markdown"]["title"] == NOTICE.title()
    assert "Error: disk <full> & été" in seen.payload["markdown"]["text"]


@pytest.mark.asyncio
async def test_dingtalk_errcode_is_a_delivery_error_without_secrets(env: Env) -> None:
    with pytest.raises(DeliveryError, match="errcode 310000: sign not match") as exc:
        await env.send(
            "dingtalk",
            url=env.url(f"/robot/send?access_token={DING_TOKEN}"),
            secret="SECs3cr3t-wrong",
        )
    assert_secret_free(exc.value)
    assert "SECs3cr3t-wrong" not in str(exc.value)


@pytest.mark.asyncio
async def test_wecom_long_message_is_cut_and_accepted(env: Env) -> None:
    long = Notice(id="e", event="failed", job="j", error="告警" * 3000)
    await env.send("wecom", long, url=env.url(f"/cgi-bin/webhook/send?key={WECOM_KEY}"))
    [seen] = env.vendors.seen
    content = seen.payload["markdown"]["content"]
    assert content.startswith("**[GDTS] job j failed**\n") and content.endswith("…")
    assert 4090 < len(content.encode()) <= 4096


@pytest.mark.asyncio
async def test_wecom_errcode_is_a_delivery_error_without_the_key(env: Env) -> None:
    with pytest.raises(DeliveryError, match="errcode 93000: invalid webhook url") as exc:
        await env.send("wecom", url=env.url(f"/cgi-bin/webhook/send?key={WECOM_KEY}-old"))
    assert_secret_free(exc.value)


@pytest.mark.asyncio
async def test_a_redirect_is_not_followed(env: Env) -> None:
    with pytest.raises(DeliveryError, match="HTTP 307"):
        await env.send("webhook", url=env.url("/moved"), secret=WEBHOOK_SECRET)
    assert env.vendors.seen == []


@pytest.mark.asyncio
async def test_a_receiver_that_never_answers_times_out(env: Env) -> None:
    channel = Channel("ops", "webhook", {"url": env.url("/slow")})
    started = time.monotonic()
    with pytest.raises(DeliveryError, match=r"no answer from http://127\.0\.0\.1/… within 0\.3 s"):
        await deliver(channel, NOTICE, session=env.session, timeout_s=0.3)
    assert time.monotonic() - started < 3


def closed_port() -> int:
    with socket.socket() as sock:  # bound, then closed: nothing listens there now
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.asyncio
async def test_an_unreachable_receiver_fails_fast(env: Env) -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}/services/T000/B000/{SLACK_KEY}"
    started = time.monotonic()
    with pytest.raises(DeliveryError, match=f"cannot connect to 127.0.0.1:{port}") as exc:
        await deliver(Channel("ops", "slack", {"url": url}), NOTICE, session=env.session)
    assert time.monotonic() - started < 2  # refused at once, not the 10 s timeout
    assert_secret_free(exc.value)


@pytest.mark.asyncio
async def test_https_receiver_is_checked_against_the_given_ca(certs: CertFiles) -> None:
    vendors = Vendors()
    server = TestServer(vendor_app(vendors), host="127.0.0.1")
    await server.start_server(ssl=server_context(certs))
    try:
        async with aiohttp.ClientSession() as session:
            channel = Channel(
                "ops", "webhook", {"url": str(server.make_url("/hook")), "secret": WEBHOOK_SECRET}
            )
            await deliver(channel, NOTICE, session=session, ssl_context=trusting(certs.ca))
            assert len(vendors.seen) == 1
            with pytest.raises(DeliveryError, match="(?i)certificate verify failed"):
                await deliver(
                    channel, NOTICE, session=session, ssl_context=trusting(certs.other_ca)
                )
            assert len(vendors.seen) == 1
    finally:
        await server.close()


# -- email --------------------------------------------------------------------------------


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool
    authenticated: bool


@dataclass
class Mailbox:
    """The aiosmtpd handler: what arrived and who logged in."""

    mails: list[Mail] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:  # noqa: N802
        assert server.transport is not None
        raw = envelope.original_content.replace(b"\r\n", b"\n")  # as stored, not as sent
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.mails.append(
            Mail(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                message,
                server.transport.get_extra_info("ssl_object") is not None,
                bool(session.authenticated),
            )
        )
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append(auth_data.login.decode())
        good = (auth_data.login, auth_data.password) == (SMTP_USER.encode(), SMTP_PASSWORD.encode())
        return AuthResult(success=good, handled=False)  # aiosmtpd answers 235 or 535


@asynccontextmanager
async def smtp_server(
    mailbox: Mailbox, security: str, certs: CertFiles | None = None
) -> AsyncIterator[int]:
    """aiosmtpd's protocol served from this test's loop on a free port (its threaded
    Controller wants a fixed one); smtplib runs in a thread, so the loop is free to answer.
    ``security``: none (AUTH in the clear), starttls (STARTTLS and AUTH required), tls (TLS
    from the first byte, AUTH offered), bare (neither STARTTLS nor AUTH)."""
    kwargs: dict[str, Any] = {"authenticator": mailbox.authenticate, "auth_require_tls": False}
    implicit_tls = None
    if security == "starttls":
        assert certs is not None
        kwargs.update(tls_context=server_context(certs), require_starttls=True)
        kwargs.update(auth_require_tls=True, auth_required=True)
    elif security == "tls":
        assert certs is not None
        implicit_tls = server_context(certs)  # aiosmtpd sees no STARTTLS, so no "TLS" either
    elif security == "bare":
        kwargs = {}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(mailbox, hostname="smtp.test", loop=loop, **kwargs),
        "127.0.0.1",
        0,
        ssl=implicit_tls,
    )
    port = int(server.sockets[0].getsockname()[1])
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()
    with pytest.raises(ConnectionRefusedError):  # nothing is left listening
        await asyncio.open_connection("127.0.0.1", port)


def email_channel(port: int, security: str, **extra: Any) -> Channel:
    settings = {
        "host": "127.0.0.1",
        "port": port,
        "security": security,
        "from": "gdts@example.com",
        "to": ["ops@example.com", "oncall@example.org"],
        **extra,
    }
    return Channel("mail", "email", settings)


def assert_the_notice_arrived(mail: Mail) -> None:
    assert mail.mail_from == "gdts@example.com"
    assert mail.rcpt_tos == ["ops@example.com", "oncall@example.org"]
    assert mail.message["Subject"] == NOTICE.title()
    assert mail.message["From"] == "gdts@example.com"
    assert mail.message["To"] == "ops@example.com, oncall@example.org"
    assert mail.message.get_content().rstrip("\n") == NOTICE.text()


async def send_mail(channel: Channel, context: ssl.SSLContext | None = None) -> None:
    async with aiohttp.ClientSession() as session:
        await deliver(channel, NOTICE, session=session, timeout_s=5, ssl_context=context)


LOGIN = {"username": SMTP_USER, "password": SMTP_PASSWORD}


@pytest.mark.asyncio
@pytest.mark.parametrize("security", ["none", "starttls", "tls"])
async def test_email_arrives_with_login(security: str, certs: CertFiles) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox, security, certs) as port:
        await send_mail(email_channel(port, security, **LOGIN), trusting(certs.ca))
    [mail] = mailbox.mails
    assert_the_notice_arrived(mail)
    assert mail.authenticated and set(mailbox.logins) == {SMTP_USER}
    assert mail.tls is (security != "none")


@pytest.mark.asyncio
async def test_email_without_username_does_not_log_in() -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox, "none") as port:
        await send_mail(email_channel(port, "none"))
    [mail] = mailbox.mails
    assert_the_notice_arrived(mail)
    assert mailbox.logins == [] and not mail.authenticated


@pytest.mark.asyncio
async def test_email_wrong_password_is_a_delivery_error_without_it(certs: CertFiles) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox, "starttls", certs) as port:
        channel = email_channel(port, "starttls", username=SMTP_USER, password="s3cr3t-wrong")
        with pytest.raises(DeliveryError, match="SMTPAuthenticationError") as exc:
            await send_mail(channel, trusting(certs.ca))
    assert mailbox.mails == [] and set(mailbox.logins) == {SMTP_USER}  # PLAIN, then LOGIN
    assert "535" in str(exc.value) and "s3cr3t-wrong" not in str(exc.value)


@pytest.mark.asyncio
@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_email_tls_checks_the_server_certificate(security: str, certs: CertFiles) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox, security, certs) as port:
        with pytest.raises(DeliveryError, match="(?i)certificate verify failed"):
            await send_mail(email_channel(port, security, **LOGIN), trusting(certs.other_ca))
    assert mailbox.mails == [] and mailbox.logins == []


@pytest.mark.asyncio
async def test_email_starttls_never_falls_back_to_plain_text() -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox, "bare") as port:  # no STARTTLS offered
        with pytest.raises(DeliveryError, match="STARTTLS extension not supported"):
            await send_mail(email_channel(port, "starttls", **LOGIN))
    assert mailbox.mails == [] and mailbox.logins == []


@pytest.mark.asyncio
async def test_email_unreachable_server_fails_fast() -> None:
    port = closed_port()
    started = time.monotonic()
    with pytest.raises(DeliveryError, match=f"email through 127.0.0.1:{port} \\(none\\) failed"):
        await send_mail(email_channel(port, "none"))
    assert time.monotonic() - started < 2


@pytest.mark.asyncio
async def test_email_server_that_never_greets_times_out() -> None:
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()  # accepts the connection, then says nothing
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    try:
        channel = email_channel(port, "none")
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            with pytest.raises(DeliveryError, match=r"did not answer in time \(0\.3 s\)"):
                await deliver(channel, NOTICE, session=session, timeout_s=0.3)
            assert time.monotonic() - started < 2
    finally:
        release.set()
        server.close()
        await server.wait_closed()


def test_a_delivery_error_blanks_out_any_secret_it_is_given() -> None:
    url = f"https://oapi.dingtalk.com/robot/send?access_token={DING_TOKEN}"
    channel = Channel("ops", "dingtalk", {"url": url, "secret": DING_SECRET})
    error = DeliveryError(channel, f"echoed {url}&sign=x, /robot/send?access_token={DING_TOKEN}")
    assert_secret_free(error)
    assert str(error).startswith("dingtalk channel 'ops': echoed [secret]&sign=x")
    telegram = Channel("ops", "telegram", {"botToken": TG_TOKEN, "chatId": "1"})
    assert_secret_free(DeliveryError(telegram, f"bad path /bot{TG_TOKEN}/sendMessage"))
