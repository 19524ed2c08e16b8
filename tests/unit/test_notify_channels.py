"""Notification channels: each type's checked form, a 4xx naming the bad field, secrets kept
on a save without them, and a public view that never shows a secret. Pure: no I/O."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gdts.errors import InvalidFieldError
from gdts.notify.channels import Channel, parse_channel, redacted_url

GOOD: dict[str, dict[str, Any]] = {
    "email": {
        "host": "smtp.example.com",
        "port": 2525,
        "security": "tls",
        "username": "gdts",
        "password": "s3cr3t-password",
        "from": "gdts@example.com",
        "to": ["ops@example.com", "oncall@example.org"],
    },
    "webhook": {
        "url": "https://hooks.example.com/in/s3cr3t-path",
        "headers": {"Authorization": "Bearer s3cr3t-token"},
        "secret": "s3cr3t-signing",
    },
    "slack": {"url": "https://hooks.slack.com/services/T0/B0/s3cr3t-slack"},
    "telegram": {"botToken": "123456:s3cr3t-token", "chatId": "-100200300"},
    "dingtalk": {
        "url": "https://oapi.dingtalk.com/robot/send?access_token=s3cr3t-access",
        "secret": "SECs3cr3t-ding",
    },
    "wecom": {"url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=s3cr3t-key"},
}
SECRET_VALUES = (
    "s3cr3t-password",
    "s3cr3t-path",
    "s3cr3t-token",
    "s3cr3t-signing",
    "s3cr3t-slack",
    "s3cr3t-access",
    "s3cr3t-ding",
    "s3cr3t-key",
)


def parse(kind: str, **settings: Any) -> Channel:
    return parse_channel({"name": "ops", "type": kind, "settings": settings})


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_good_settings_of_each_type_are_kept_as_given(kind: str) -> None:
    channel = parse(kind, **GOOD[kind])
    assert (channel.name, channel.type) == ("ops", kind)
    for name, value in GOOD[kind].items():
        assert channel.settings[name] == value


def test_defaults_fill_what_was_left_out() -> None:
    email = parse("email", host="mx", **{"from": "a@example.com", "to": "b@example.com"})
    assert email.settings["security"] == "starttls"
    assert email.settings["to"] == ["b@example.com"]  # one address: a list of one
    assert "port" not in email.settings  # the sender picks it by security
    telegram = parse("telegram", botToken="1:x", chatId="42")
    assert telegram.settings["apiUrl"] == "https://api.telegram.org"


@pytest.mark.parametrize(
    ("data", "field", "match"),
    [
        ([], "channel", "must be a JSON object"),
        ({"name": "a", "type": "slack", "colour": 1}, "colour", "unknown channel field"),
        ({"name": "", "type": "slack"}, "name", "must not be empty"),
        ({"name": "a/b", "type": "slack"}, "name", "must not contain '/'"),
        ({"name": "a", "type": "pager"}, "type", "must be one of email, webhook"),
        ({"name": "a", "type": "slack", "settings": []}, "settings", "must be an object"),
        (
            {"name": "a", "type": "slack", "settings": {"token": "x"}},
            "settings.token",
            "unknown setting of a slack channel",
        ),
    ],
)
def test_a_bad_channel_names_its_field(data: Any, field: str, match: str) -> None:
    with pytest.raises(InvalidFieldError, match=f"^{field}: {match}") as exc:
        parse_channel(data)
    assert exc.value.field == field


@pytest.mark.parametrize(
    ("kind", "change", "field", "match"),
    [
        ("email", {"host": None}, "settings.host", "is required"),
        ("email", {"host": "mx\r\nRCPT TO:<x@y>"}, "settings.host", "must be one line"),
        ("email", {"port": 0}, "settings.port", "must be between 1 and 65535"),
        ("email", {"port": "25"}, "settings.port", "must be an integer"),
        ("email", {"security": "ssl"}, "settings.security", "must be one of starttls, tls, none"),
        ("email", {"from": None}, "settings.from", "is required"),
        ("email", {"to": []}, "settings.to", "must be a non-empty list"),
        ("email", {"to": ["ok@example.com", "nobody"]}, r"settings.to\[1\]", "is not an address"),
        ("email", {"to": ["a@b.c"] * 51}, "settings.to", "must list at most 50"),
        ("email", {"username": 7}, "settings.username", "must be a string"),
        ("webhook", {"url": "ftp://example.com/x"}, "settings.url", "must be an http:// or"),
        ("webhook", {"url": None}, "settings.url", "is required"),
        ("webhook", {"headers": ["X-A"]}, "settings.headers", "must be an object"),
        ("webhook", {"headers": {"X A": "1"}}, "settings.headers", "header name 'X A'"),
        ("webhook", {"headers": {"X-A": "1\n2"}}, "settings.headers.X-A", "must be one line"),
        ("slack", {"url": "https://hooks.slack.com/a b"}, "settings.url", "must not contain"),
        ("telegram", {"botToken": None}, "settings.botToken", "is required"),
        ("telegram", {"chatId": None}, "settings.chatId", "is required"),
        ("telegram", {"apiUrl": "api.telegram.org"}, "settings.apiUrl", "must be an http"),
        ("dingtalk", {"url": "oapi.dingtalk.com"}, "settings.url", "must be an http"),
        ("dingtalk", {"secret": 12}, "settings.secret", "must be a string"),
        ("wecom", {"url": None}, "settings.url", "is required"),
    ],
)
def test_a_bad_setting_is_named_with_its_problem(
    kind: str, change: dict[str, Any], field: str, match: str
) -> None:
    settings = {**GOOD[kind], **change}
    with pytest.raises(InvalidFieldError, match=f"^{field}: {match}"):
        parse(kind, **settings)


def test_a_save_without_a_secret_keeps_the_stored_one() -> None:
    stored = parse("dingtalk", **GOOD["dingtalk"])
    edited = parse_channel({"name": "ops", "type": "dingtalk", "settings": {"url": ""}}, stored)
    assert edited.settings["url"] == GOOD["dingtalk"]["url"]
    assert edited.settings["secret"] == "SECs3cr3t-ding"


def test_null_takes_an_optional_secret_away_but_not_a_required_one() -> None:
    stored = parse("dingtalk", **GOOD["dingtalk"])
    cleared = parse_channel(
        {"name": "ops", "type": "dingtalk", "settings": {"secret": None}}, stored
    )
    assert "secret" not in cleared.settings and cleared.public_view()["secretsSet"] == ["url"]
    kept = parse_channel({"name": "ops", "type": "dingtalk", "settings": {"url": None}}, stored)
    assert kept.settings["url"] == GOOD["dingtalk"]["url"]  # required: null keeps it too


def test_a_save_with_a_new_secret_replaces_the_stored_one() -> None:
    stored = parse("email", **GOOD["email"])
    changes = {**GOOD["email"], "password": "new-password", "host": "mx2.example.com"}
    edited = parse_channel({"name": "ops", "type": "email", "settings": changes}, stored)
    assert (edited.settings["password"], edited.settings["host"]) == (
        "new-password",
        "mx2.example.com",
    )


def test_a_stored_secret_is_not_carried_to_a_channel_of_another_type() -> None:
    stored = parse("slack", **GOOD["slack"])
    with pytest.raises(InvalidFieldError, match="^settings.url: is required"):
        parse_channel({"name": "ops", "type": "wecom", "settings": {}}, stored)


def test_a_plain_setting_left_out_is_not_kept_from_the_stored_channel() -> None:
    stored = parse("email", **GOOD["email"])
    edited = parse_channel(
        {
            "name": "ops",
            "type": "email",
            "settings": {"host": "mx", "from": "a@example.com", "to": ["b@example.com"]},
        },
        stored,
    )
    assert "username" not in edited.settings and "port" not in edited.settings
    assert edited.settings["password"] == "s3cr3t-password"  # a secret is kept


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_the_public_view_names_the_secrets_set_and_shows_none_of_them(kind: str) -> None:
    view = parse(kind, **GOOD[kind]).public_view()
    dumped = json.dumps(view, ensure_ascii=False)
    for secret in SECRET_VALUES:
        assert secret not in dumped
    secret_names = {
        "email": ["password"],
        "webhook": ["url", "headers", "secret"],
        "slack": ["url"],
        "telegram": ["botToken"],
        "dingtalk": ["url", "secret"],
        "wecom": ["url"],
    }[kind]
    assert view["secretsSet"] == secret_names
    assert view["name"] == "ops" and view["type"] == kind


def test_the_public_view_shows_the_plain_settings_and_where_a_secret_url_points() -> None:
    email = parse("email", **GOOD["email"]).public_view()["settings"]
    assert email == {
        "host": "smtp.example.com",
        "port": 2525,
        "security": "tls",
        "username": "gdts",
        "from": "gdts@example.com",
        "to": ["ops@example.com", "oncall@example.org"],
    }
    wecom = parse("wecom", **GOOD["wecom"]).public_view()["settings"]
    assert wecom == {"url": "https://qyapi.weixin.qq.com/…"}


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://oapi.dingtalk.com/robot/send?access_token=abc", "https://oapi.dingtalk.com/…"),
        ("https://user:pw@example.com:8443/hook/key#frag", "https://example.com/…"),
        ("http://127.0.0.1:9000/x", "http://127.0.0.1/…"),
        ("http://[::1]:9000/x?key=k", "http://[::1]/…"),
    ],
)
def test_a_redacted_url_keeps_scheme_and_host_only(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


def test_a_channel_survives_its_stored_document() -> None:
    channel = parse("telegram", **GOOD["telegram"])
    document = channel.to_document()
    assert document["_id"] == "ops"
    assert Channel.from_document(document) == channel


@pytest.mark.parametrize(
    ("kind", "changes", "field"),
    [
        ("email", {"from": "gdts@example.com\u2028Bcc: x@example.com"}, "settings.from"),
        ("email", {"to": ["ops@example.com\x0bBcc: x@example.com"]}, r"settings.to\[0\]"),
        ("email", {"username": "ops\x1c"}, "settings.username"),
        ("webhook", {"headers": {"X-Token": "a\u2029b"}}, "settings.headers.X-Token"),
        ("webhook", {"headers": {"Ä": "x"}}, "settings.headers"),
        ("telegram", {"botToken": "123:abc/../x"}, "settings.botToken"),
    ],
)
def test_what_a_mail_header_or_url_cannot_carry_is_refused_at_save(
    kind: str, changes: dict[str, Any], field: str
) -> None:
    """Refused here, it can never stop a delivery later (a header no mail can carry)."""
    with pytest.raises(InvalidFieldError, match=f"^{field}: "):
        parse_channel({"name": "ops", "type": kind, "settings": {**GOOD[kind], **changes}})


def test_a_channels_repr_holds_no_secret() -> None:
    channel = parse("telegram", **GOOD["telegram"])
    assert GOOD["telegram"]["botToken"] not in repr(channel)
