"""The fallback sender's SMTP and SMS clients against the emulators (real SMTP, real HTTP)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest

from pushline.emulators._tls import TlsMaterial
from pushline.emulators.sms import SmsEmulator
from pushline.emulators.smtp import SmtpEmulator
from receipts._channels import ChannelResult, parse_retry_after
from receipts._fallback_config import FallbackConfig
from receipts._sms import SmsClient
from receipts._smtp import SmtpMailer, message_id_for
from schemas import Fallback, FallbackChannel, FallbackRequest, Platform

NID = "2f1c1c4e-8a41-4b53-9d7a-6c3f1bd6a001"


@pytest.fixture(autouse=True)
def _reset(smtp: SmtpEmulator, sms: SmsEmulator) -> None:
    with smtp.control() as ctl:
        ctl.reset()
    with sms.control() as ctl:
        ctl.reset()


def _request(channel: FallbackChannel, address: str, **fallback: str) -> FallbackRequest:
    return FallbackRequest(
        notification_id=NID,
        device_key="device-1",
        app_id="shop",
        fallback=Fallback(
            channel=channel,
            address=address,
            text=fallback.get("text", "Your parcel is on its way"),
            subject=fallback.get("subject"),
        ),
        reason="NoReceipt",
        requested_at=datetime.now(UTC),
        platform=Platform.APNS,
    )


def _config(env: dict[str, str], tls: TlsMaterial) -> FallbackConfig:
    return FallbackConfig.from_env(
        {
            **env,
            "PUSHLINE_FALLBACK_CA_FILE": str(tls.ca_file),
            "SMTP_FROM": "Shop <no-reply@shop.test>",
        }
    )


def _mailer(smtp: SmtpEmulator, tls: TlsMaterial) -> SmtpMailer:
    cfg = _config(smtp.env, tls)
    settings = cfg.smtp()
    assert settings is not None
    return SmtpMailer(
        settings, cfg.ssl_context(), email_from=cfg.email_from, default_subject=cfg.email_subject
    )


def _send_sms(sms: SmsEmulator, tls: TlsMaterial, request: FallbackRequest) -> ChannelResult:
    cfg = _config(sms.env, tls)
    settings = cfg.sms()
    assert settings is not None

    async def go() -> ChannelResult:
        client = SmsClient(settings, cfg.ssl_context())
        try:
            return await client.send(request)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_email_goes_out_over_starttls_with_a_deterministic_message_id(
    smtp: SmtpEmulator, tls: TlsMaterial
) -> None:
    request = _request(
        FallbackChannel.EMAIL, "ann@example.test", subject="Parcel\r\nBcc: x@evil.test"
    )
    result = asyncio.run(_mailer(smtp, tls).send(request))
    assert result.ok, result
    assert result.provider_id == message_id_for(NID, "shop.test") == f"<{NID}.fallback@shop.test>"
    with smtp.control() as ctl:
        (got,) = ctl.messages()
    assert got["rcpt_tos"] == ["ann@example.test"]
    assert got["tls"] and got["auth_user"] == smtp.user
    assert got["message_id"] == result.provider_id
    assert got["subject"] == "Parcel Bcc: x@evil.test"  # folded to one line: no injected header
    assert not any(name.lower() == "bcc" for name, _ in got["headers"])
    assert got["body"].strip() == "Your parcel is on its way"


def test_email_without_a_subject_gets_the_default(smtp: SmtpEmulator, tls: TlsMaterial) -> None:
    assert asyncio.run(_mailer(smtp, tls).send(_request(FallbackChannel.EMAIL, "a@b.test"))).ok
    with smtp.control() as ctl:
        assert ctl.messages()[0]["subject"] == "You have a new notification"


def test_email_failures_are_classified(smtp: SmtpEmulator, tls: TlsMaterial) -> None:
    mailer = _mailer(smtp, tls)
    with smtp.control() as ctl:
        ctl.fail(451)
        ctl.fail(550, address="gone@example.test")
    temporary = asyncio.run(mailer.send(_request(FallbackChannel.EMAIL, "a@b.test")))
    assert (temporary.ok, temporary.transient, temporary.status) == (False, True, 451)
    permanent = asyncio.run(mailer.send(_request(FallbackChannel.EMAIL, "gone@example.test")))
    assert (permanent.ok, permanent.transient, permanent.status) == (False, False, 550)
    assert permanent.reason is not None and "550" in permanent.reason
    invalid = asyncio.run(mailer.send(_request(FallbackChannel.EMAIL, "not an address")))
    assert (invalid.ok, invalid.transient, invalid.reason) == (False, False, "InvalidAddress")


def test_email_with_wrong_credentials_or_no_server_is_transient(
    smtp: SmtpEmulator, tls: TlsMaterial
) -> None:
    env = {"SMTP_URL": smtp.env["SMTP_URL"].replace(f":{smtp.password}@", ":wrong@")}
    cfg = _config(env, tls)
    settings = cfg.smtp()
    assert settings is not None
    mailer = SmtpMailer(settings, cfg.ssl_context(), email_from="a@b.test", default_subject="s")
    refused = asyncio.run(mailer.send(_request(FallbackChannel.EMAIL, "a@b.test")))
    assert (refused.ok, refused.transient, refused.status) == (False, True, 535)

    closed = SmtpMailer(
        type(settings)(
            host="127.0.0.1", port=1, user=None, password=None, starttls=True, implicit_tls=False
        ),
        cfg.ssl_context(),
        email_from="a@b.test",
        default_subject="s",
    )
    down = asyncio.run(closed.send(_request(FallbackChannel.EMAIL, "a@b.test")))
    assert (down.ok, down.transient) == (False, True)


def test_sms_is_sent_with_basic_auth_and_returns_the_sid(
    sms: SmsEmulator, tls: TlsMaterial
) -> None:
    result = _send_sms(sms, tls, _request(FallbackChannel.SMS, "+4915112345678"))
    assert result.ok and result.status == 201
    assert result.provider_id is not None and re.fullmatch(r"SM[0-9a-f]{32}", result.provider_id)
    with sms.control() as ctl:
        (got,) = ctl.messages()
    assert (got["sid"], got["to"], got["from"], got["body"]) == (
        result.provider_id,
        "+4915112345678",
        "+15005550006",
        "Your parcel is on its way",
    )


def test_sms_failures_are_classified(sms: SmsEmulator, tls: TlsMaterial) -> None:
    with sms.control() as ctl:
        ctl.fail(429, retry_after=7)
    limited = _send_sms(sms, tls, _request(FallbackChannel.SMS, "+4915112345678"))
    assert (limited.ok, limited.transient, limited.status, limited.retry_after) == (
        False,
        True,
        429,
        7.0,
    )
    invalid = _send_sms(sms, tls, _request(FallbackChannel.SMS, "12345"))
    assert (invalid.ok, invalid.transient, invalid.status) == (False, False, 400)
    assert invalid.reason is not None and "21211" in invalid.reason
    with sms.control() as ctl:
        ctl.fail(503)
    unavailable = _send_sms(sms, tls, _request(FallbackChannel.SMS, "+4915112345678"))
    assert (unavailable.transient, unavailable.status) == (True, 503)


def test_sms_with_a_wrong_token_is_transient(sms: SmsEmulator, tls: TlsMaterial) -> None:
    env = {**sms.env, "PUSHLINE_SMS_AUTH_TOKEN": "wrong"}
    cfg = _config(env, tls)
    settings = cfg.sms()
    assert settings is not None

    async def go() -> ChannelResult:
        client = SmsClient(settings, cfg.ssl_context())
        try:
            return await client.send(_request(FallbackChannel.SMS, "+4915112345678"))
        finally:
            await client.aclose()

    result = asyncio.run(go())
    assert (result.ok, result.transient, result.status) == (False, True, 401)
    assert result.reason is not None and "20003" in result.reason


def test_parse_retry_after() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("Tue, 01 Jan 2030 00:00:30 GMT", now) == 30.0
    assert (
        parse_retry_after((now - timedelta(seconds=5)).strftime("%a, %d %b %Y %H:%M:%S GMT"), now)
        == 0.0
    )
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
