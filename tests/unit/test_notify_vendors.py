"""Each vendor's request as its docs show it, the signatures against values computed apart
(openssl), the length limits, the email headers and how each vendor's answer is read.
Pure: no I/O."""

from __future__ import annotations

import json
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from gdts.notify.channels import Channel
from gdts.notify.notice import Notice
from gdts.notify.vendors import (
    TELEGRAM_MAX_CHARS,
    WECOM_MAX_BYTES,
    Request,
    build_request,
    cut_utf8,
    cut_utf16,
    dingtalk_sign,
    email_message,
    refusal,
    slack_escape,
    webhook_signature,
)

NOW_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
NOTICE = Notice(
    id="ev-1",
    event="failed",
    job="backup",
    status="failed",
    plan_ms=NOW_MS - 60_000,
    start_ms=NOW_MS - 59_000,
    end_ms=NOW_MS - 1_000,
    worker="w1",
    exit_code=2,
    error="disk <full> & more",
    output_head=("line 1",),
)


def channel(kind: str, **settings: Any) -> Channel:
    return Channel("ops", kind, settings)


def body_of(request: Request) -> Any:
    return json.loads(request.body)


def header(request: Request, name: str) -> list[str]:
    return [v for k, v in request.headers if k.lower() == name.lower()]


# -- signatures ---------------------------------------------------------------------------


def test_dingtalk_sign_matches_the_documented_algorithm() -> None:
    # printf '1700000000000\nSECtest-secret' | openssl dgst -sha256 -hmac SECtest-secret -binary
    # | base64  ->  LC7hxZ4wslL+P7j7gu1hoQ+wzByekL+yWgiUMekZs0g=, then URL-encoded
    assert dingtalk_sign("SECtest-secret", 1_700_000_000_000) == (
        "LC7hxZ4wslL%2BP7j7gu1hoQ%2BwzByekL%2ByWgiUMekZs0g%3D"
    )


def test_webhook_signature_is_the_hex_hmac_of_the_raw_body() -> None:
    # printf '{"a":1}' | openssl dgst -sha256 -hmac whsec
    assert webhook_signature("whsec", b'{"a":1}') == (
        "sha256=19373ef0e8c66f206e49d251e4402291615bbce6ef00922e94a47a213fb76ee1"
    )


# -- requests -----------------------------------------------------------------------------


def test_webhook_posts_the_notice_json_signed_with_the_operator_headers() -> None:
    request = build_request(
        channel(
            "webhook",
            url="https://h.example/in",
            secret="whsec",
            headers={"Authorization": "Bearer t", "x-gdts-signature": "forged"},
        ),
        NOTICE,
        NOW_MS,
    )
    assert (request.method, request.url) == ("POST", "https://h.example/in")
    assert body_of(request) == NOTICE.to_json()
    compact = json.dumps(NOTICE.to_json(), ensure_ascii=False, separators=(",", ":"))
    assert request.body == compact.encode()
    assert header(request, "Content-Type") == ["application/json"]
    assert header(request, "Authorization") == ["Bearer t"]
    assert header(request, "X-GDTS-Event") == ["failed"]
    assert header(request, "X-GDTS-Signature") == [webhook_signature("whsec", request.body)]


def test_webhook_without_a_secret_is_not_signed_and_keeps_utf8() -> None:
    notice = Notice(id="e", event="test", job="sauvegarde-été")
    request = build_request(channel("webhook", url="http://h/x"), notice, NOW_MS)
    assert header(request, "X-GDTS-Signature") == []
    assert "sauvegarde-été".encode() in request.body  # UTF-8, not \u escapes
    assert body_of(request)["event"] == "test"


def test_slack_posts_bold_title_and_escaped_text() -> None:
    request = build_request(channel("slack", url="https://hooks.slack.com/s/T/B/x"), NOTICE, 0)
    text = body_of(request)["text"]
    assert body_of(request) == {"text": text}
    assert text.startswith("*[GDTS] job backup failed*\nJob: backup\n")
    assert "Error: disk &lt;full&gt; &amp; more" in text
    assert "<" not in text and ">" not in text


def test_slack_escape_only_touches_the_three_control_characters() -> None:
    assert slack_escape("a&b <c> 'd' \"e\"") == "a&amp;b &lt;c&gt; 'd' \"e\""


def test_telegram_posts_plain_text_to_the_bot_method() -> None:
    request = build_request(
        channel("telegram", botToken="123:AbC-d_e", chatId="-1001", apiUrl="http://tg.local/"),
        NOTICE,
        NOW_MS,
    )
    assert request.url == "http://tg.local/bot123:AbC-d_e/sendMessage"
    payload = body_of(request)
    assert payload == {
        "chat_id": "-1001",
        "text": f"{NOTICE.title()}\n\n{NOTICE.text()}",
        "disable_web_page_preview": True,
    }  # no parse_mode: the text goes as typed


def test_telegram_default_api_and_a_token_cannot_change_the_path() -> None:
    request = build_request(channel("telegram", botToken="1:x/../y?z", chatId="5"), NOTICE, 0)
    assert request.url == "https://api.telegram.org/bot1:x%2F..%2Fy%3Fz/sendMessage"


def test_telegram_long_text_is_cut_to_4096_utf16_units() -> None:
    notice = Notice(id="e", event="failed", job="j", error="😀" * 5000)
    request = build_request(channel("telegram", botToken="1:x", chatId="5"), notice, 0)
    text = body_of(request)["text"]
    assert len(text.encode("utf-16-le")) // 2 <= TELEGRAM_MAX_CHARS
    assert len(text.encode("utf-16-le")) // 2 >= TELEGRAM_MAX_CHARS - 1  # full up to one pair
    assert text.endswith("😀…")  # no half of a surrogate pair before the mark


def test_dingtalk_signed_url_and_markdown_body() -> None:
    request = build_request(
        channel(
            "dingtalk",
            url="https://oapi.dingtalk.com/robot/send?access_token=tok",
            secret="SECtest-secret",
        ),
        NOTICE,
        1_700_000_000_000,
    )
    assert request.url == (
        "https://oapi.dingtalk.com/robot/send?access_token=tok&timestamp=1700000000000"
        "&sign=LC7hxZ4wslL%2BP7j7gu1hoQ%2BwzByekL%2ByWgiUMekZs0g%3D"
    )
    payload = body_of(request)
    assert payload["msgtype"] == "markdown"
    assert payload["markdown"]["title"] == "[GDTS] job backup failed"
    assert payload["markdown"]["text"].startswith("### [GDTS] job backup failed\n\nJob: backup  \n")


def test_dingtalk_without_a_secret_posts_to_the_url_as_given() -> None:
    url = "https://oapi.dingtalk.com/robot/send?access_token=tok"
    assert build_request(channel("dingtalk", url=url), NOTICE, NOW_MS).url == url


def test_wecom_posts_markdown_content() -> None:
    request = build_request(channel("wecom", url="https://qyapi/x?key=k"), NOTICE, 0)
    assert body_of(request) == {
        "msgtype": "markdown",
        "markdown": {"content": f"**{NOTICE.title()}**\n{NOTICE.text()}"},
    }


def test_wecom_content_is_cut_to_4096_bytes_on_a_character_boundary() -> None:
    notice = Notice(id="e", event="failed", job="j", error="告警" * 3000)  # 3 bytes each
    request = build_request(channel("wecom", url="https://qyapi/x?key=k"), notice, 0)
    content = body_of(request)["markdown"]["content"]
    size = len(content.encode())
    assert WECOM_MAX_BYTES - 3 < size <= WECOM_MAX_BYTES  # full up to one character
    assert content.endswith("…")


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("abcdefghij", 10, "abcdefghij"),
        ("abcdefghijk", 10, "abcdefg…"),  # "…" is 3 bytes
        ("ééééé", 8, "éé…"),  # 5 bytes left: two é, not half of a third
        ("€€€", 8, "€…"),
    ],
)
def test_cut_utf8(text: str, limit: int, expected: str) -> None:
    assert cut_utf8(text, limit) == expected
    assert len(cut_utf8(text, limit).encode()) <= limit


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("abc", 3, "abc"),
        ("abcd", 3, "ab…"),
        ("a😀b", 4, "a😀b"),  # the emoji is two units
        ("a😀bc", 4, "a😀…"),
        ("a😀bc", 3, "a…"),  # two units left: "a" and not half of the emoji
    ],
)
def test_cut_utf16(text: str, limit: int, expected: str) -> None:
    assert cut_utf16(text, limit) == expected


def test_email_is_not_an_http_channel() -> None:
    with pytest.raises(ValueError, match="email channel is not sent over HTTP"):
        build_request(channel("email", host="mx"), NOTICE, 0)


def test_request_repr_hides_url_headers_and_body() -> None:
    request = build_request(channel("slack", url="https://hooks.slack.com/s3cr3t"), NOTICE, 0)
    assert "s3cr3t" not in repr(request) and repr(request) == "Request(method='POST')"


# -- email --------------------------------------------------------------------------------


def test_email_message_headers_and_body() -> None:
    email = channel(
        "email", host="mx", **{"from": "gdts@example.com"}, to=["a@example.com", "b@example.org"]
    )
    message = email_message(email, NOTICE, NOW_MS)
    assert message["Subject"] == "[GDTS] job backup failed"
    assert message["From"] == "gdts@example.com"
    assert message["To"] == "a@example.com, b@example.org"
    assert parsedate_to_datetime(message["Date"]).timestamp() == NOW_MS / 1000
    assert message["Message-ID"].endswith("@example.com>")
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == NOTICE.text() + "\n"


def test_email_message_id_is_stable_per_event_and_channel() -> None:
    email = channel("email", host="mx", **{"from": "g@example.com"}, to=["a@example.com"])
    first = email_message(email, NOTICE, NOW_MS)["Message-ID"]
    assert email_message(email, NOTICE, NOW_MS + 5000)["Message-ID"] == first  # a retry
    other = Notice(id="ev-2", event="failed", job="backup")
    assert email_message(email, other, NOW_MS)["Message-ID"] != first
    renamed = Channel("ops2", "email", email.settings)
    assert email_message(renamed, NOTICE, NOW_MS)["Message-ID"] != first


def test_email_message_with_non_ascii_subject_and_body() -> None:
    email = channel("email", host="mx", **{"from": "g@example.com"}, to=["a@example.com"])
    notice = Notice(id="e", event="failed", job="sauvegarde-été", error="échec ✗")
    message = email_message(email, notice, NOW_MS)
    assert message["Subject"] == "[GDTS] job sauvegarde-été failed"
    assert "échec ✗" in message.get_content()
    assert "=?utf-8?" in message.as_string()  # the subject is encoded for the wire


# -- answers ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["webhook", "slack", "telegram", "dingtalk", "wecom"])
def test_any_non_2xx_status_is_a_refusal(kind: str) -> None:
    reason = refusal(kind, 503, b"Service Unavailable")
    assert reason == "HTTP 503: Service Unavailable"


@pytest.mark.parametrize(
    ("kind", "status", "body", "expected"),
    [
        ("webhook", 200, b"", None),
        ("webhook", 204, b"whatever", None),
        ("webhook", 302, b"", "HTTP 302"),
        ("slack", 200, b"ok", None),
        ("slack", 200, b"invalid_token", "answered 'invalid_token', not 'ok'"),
        ("slack", 404, b"channel_not_found", "HTTP 404: channel_not_found"),
        ("slack", 403, b"action_prohibited", "HTTP 403: action_prohibited"),
        ("telegram", 200, b'{"ok":true,"result":{"message_id":1}}', None),
        (
            "telegram",
            200,
            b'{"ok":false,"description":"Bad Request: chat not found"}',
            "not ok: 'Bad Request: chat not found'",
        ),
        (
            "telegram",
            400,
            b'{"ok":false,"error_code":400,"description":"Bad Request: x"}',
            "HTTP 400: Bad Request: x",
        ),
        ("telegram", 200, b"<html>", "not ok: '<html>'"),
        ("dingtalk", 200, b'{"errcode":0,"errmsg":"ok"}', None),
        (
            "dingtalk",
            200,
            b'{"errcode":310000,"errmsg":"sign not match"}',
            "errcode 310000: sign not match",
        ),
        ("dingtalk", 200, b'{"errmsg":"?"}', 'answer without an errcode: \'{"errmsg":"?"}\''),
        ("wecom", 200, b'{"errcode":0,"errmsg":"ok"}', None),
        (
            "wecom",
            200,
            b'{"errcode":93000,"errmsg":"invalid webhook url"}',
            "errcode 93000: invalid webhook url",
        ),
        ("wecom", 200, b"\xff\xfe", "answer without an errcode: '\ufffd\ufffd'"),
    ],
)
def test_refusal_reads_each_vendor_answer(
    kind: str, status: int, body: bytes, expected: str | None
) -> None:
    assert refusal(kind, status, body) == expected


def test_a_refusal_quotes_a_long_answer_short() -> None:
    reason = refusal("slack", 500, b"x" * 10_000)
    assert reason is not None and len(reason) < 250 and reason.endswith("…")


def test_email_has_no_http_answer() -> None:
    with pytest.raises(ValueError, match="no HTTP answer"):
        refusal("email", 200, b"")
