"""The SMTP and SMS emulators, driven by real clients (smtplib, httpx) over loopback TLS."""

from __future__ import annotations

import re
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from pushline.emulators._tls import TlsMaterial
from pushline.emulators.fallback import FallbackEmulators, start_fallback_emulators
from pushline.emulators.sms import SmsEmulator
from pushline.emulators.smtp import SmtpEmulator


@pytest.fixture(autouse=True)
def _reset(smtp: SmtpEmulator, sms: SmsEmulator) -> None:
    with smtp.control() as ctl:
        ctl.reset()
    with sms.control() as ctl:
        ctl.reset()


def _message(to: str = "ann@example.test") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "no-reply@pushline.test"
    msg["To"] = to
    msg["Subject"] = "Your order — shipped"
    msg["Message-ID"] = "<abc@pushline.test>"
    msg.set_content("It is on its way.")
    return msg


def _submit(smtp: SmtpEmulator, tls: TlsMaterial, msg: EmailMessage, password: str = "") -> None:
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    with smtplib.SMTP("127.0.0.1", smtp.port, timeout=10) as client:
        client.ehlo()
        client.starttls(context=context)
        client.ehlo()
        client.login(smtp.user, password or smtp.password)
        client.send_message(msg)


# --- SMTP ------------------------------------------------------------------------------------


def test_smtp_records_a_message_sent_over_starttls_with_auth(
    smtp: SmtpEmulator, tls: TlsMaterial
) -> None:
    _submit(smtp, tls, _message())
    with smtp.control() as ctl:
        (got,) = ctl.messages()
    assert got["rcpt_tos"] == ["ann@example.test"]
    assert got["mail_from"] == "no-reply@pushline.test"
    assert got["subject"] == "Your order — shipped"
    assert got["message_id"] == "<abc@pushline.test>"
    assert got["body"].strip() == "It is on its way."
    assert got["tls"] is True
    assert got["auth_user"] == smtp.user
    assert ["To", "ann@example.test"] in got["headers"]


def test_smtp_refuses_mail_before_starttls(smtp: SmtpEmulator) -> None:
    with smtplib.SMTP("127.0.0.1", smtp.port, timeout=10) as client:
        client.ehlo()
        with pytest.raises(smtplib.SMTPSenderRefused) as info:
            client.send_message(_message())
    assert info.value.smtp_code == 530
    with smtp.control() as ctl:
        assert ctl.messages() == []


def test_smtp_refuses_wrong_credentials(smtp: SmtpEmulator, tls: TlsMaterial) -> None:
    with pytest.raises(smtplib.SMTPAuthenticationError):
        _submit(smtp, tls, _message(), password="wrong")
    with smtp.control() as ctl:
        assert ctl.stats()["auth_failures"] >= 1
        assert ctl.messages() == []


def test_smtp_programmed_failures(smtp: SmtpEmulator, tls: TlsMaterial) -> None:
    with smtp.control() as ctl:
        ctl.fail(451, times=1)
        ctl.fail(550, address="gone@example.test", times=None)
        with pytest.raises(smtplib.SMTPDataError) as temporary:
            _submit(smtp, tls, _message())
        assert temporary.value.smtp_code == 451
        _submit(smtp, tls, _message())  # the temporary failure was for one message only
        for _ in range(2):  # the address failure lasts until reset
            with pytest.raises(smtplib.SMTPRecipientsRefused) as permanent:
                _submit(smtp, tls, _message("gone@example.test"))
            assert permanent.value.recipients["gone@example.test"][0] == 550
        assert len(ctl.messages()) == 1
        assert ctl.stats() == {
            "auth_failures": 0,
            "accepted": 1,
            "refused_rcpt": 2,
            "refused_data": 1,
        }


# --- SMS -------------------------------------------------------------------------------------


def _sms_client(sms: SmsEmulator, tls: TlsMaterial, *, token: str | None = None) -> httpx.Client:
    return httpx.Client(
        base_url=sms.url,
        auth=(sms.account_sid, token or sms.auth_token),
        verify=ssl.create_default_context(cafile=str(tls.ca_file)),
    )


def _messages_path(sms: SmsEmulator, account: str | None = None) -> str:
    return f"/2010-04-01/Accounts/{account or sms.account_sid}/Messages.json"


def test_sms_accepts_a_message_like_twilio(sms: SmsEmulator, tls: TlsMaterial) -> None:
    with _sms_client(sms, tls) as client:
        response = client.post(
            _messages_path(sms), data={"To": "+4915112345678", "From": "+15005550006", "Body": "Hi"}
        )
        assert response.status_code == 201
        body = response.json()
        assert re.fullmatch(r"SM[0-9a-f]{32}", body["sid"])
        assert body["status"] == "queued"
        assert body["to"] == "+4915112345678"
        assert body["account_sid"] == sms.account_sid
        fetched = client.get(f"/2010-04-01/Accounts/{sms.account_sid}/Messages/{body['sid']}.json")
        assert fetched.status_code == 200
        assert fetched.json()["body"] == "Hi"
    with sms.control() as ctl:
        (recorded,) = ctl.messages()
    assert recorded["sid"] == body["sid"]
    assert "authorization" not in recorded["headers"]


@pytest.mark.parametrize(
    ("form", "status", "code"),
    [
        ({"To": "0151 1234", "From": "+15005550006", "Body": "x"}, 400, 21211),
        ({"To": "+4915112345678", "From": "+15005550006", "Body": ""}, 400, 21602),
        ({"To": "+4915112345678", "Body": "x"}, 400, 21603),
        ({"From": "+15005550006", "Body": "x"}, 400, 21604),
        ({"To": "+4915112345678", "From": "+15550001111", "Body": "x"}, 400, 21606),
        ({"To": "+4915112345678", "From": "+15005550006", "Body": "x" * 1601}, 400, 21617),
    ],
)
def test_sms_validation_errors_carry_twilio_codes(
    sms: SmsEmulator, tls: TlsMaterial, form: dict[str, str], status: int, code: int
) -> None:
    with _sms_client(sms, tls) as client:
        response = client.post(_messages_path(sms), data=form)
    assert response.status_code == status
    body = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["more_info"].endswith(str(code))
    with sms.control() as ctl:
        assert ctl.messages() == []


def test_sms_requires_basic_auth_for_the_account(sms: SmsEmulator, tls: TlsMaterial) -> None:
    form = {"To": "+4915112345678", "From": "+15005550006", "Body": "x"}
    with _sms_client(sms, tls, token="wrong") as client:
        response = client.post(_messages_path(sms), data=form)
    assert response.status_code == 401
    assert response.json()["code"] == 20003
    with _sms_client(sms, tls) as client:
        other = client.post(_messages_path(sms, "AC" + "0" * 32), data=form)
    assert other.status_code == 404
    assert other.json()["code"] == 20404


def test_sms_programmed_failures_and_rates(sms: SmsEmulator, tls: TlsMaterial) -> None:
    form = {"To": "+4915112345678", "From": "+15005550006", "Body": "x"}
    with sms.control() as ctl, _sms_client(sms, tls) as client:
        ctl.fail(429, times=2, retry_after=3)
        ctl.fail(400, code=21610, to="+4915100000000", times=None)
        for _ in range(2):
            limited = client.post(_messages_path(sms), data=form)
            assert limited.status_code == 429
            assert limited.json()["code"] == 20429
            assert limited.headers["Retry-After"] == "3"
        assert client.post(_messages_path(sms), data=form).status_code == 201
        blocked = client.post(_messages_path(sms), data={**form, "To": "+4915100000000"})
        assert (blocked.status_code, blocked.json()["code"]) == (400, 21610)

        ctl.set_rates(status_503=1.0, retry_after=2)
        unavailable = client.post(_messages_path(sms), data=form)
        assert unavailable.status_code == 503
        assert unavailable.headers["Retry-After"] == "2"
        ctl.set_rates()
        assert client.post(_messages_path(sms), data=form).status_code == 201
        stats = ctl.stats()
    assert stats["accepted"] == 2
    assert stats["by_status"] == {"429": 2, "201": 2, "400": 1, "503": 1}


# --- together --------------------------------------------------------------------------------


def test_start_fallback_emulators_env(tmp_path: Path) -> None:
    env, stop = start_fallback_emulators(tmp_path)
    try:
        assert set(env) == set(FallbackEmulators.ENV_KEYS)
        assert re.fullmatch(r"smtp://pushline:[^@]+@127\.0\.0\.1:\d+\?starttls=1", env["SMTP_URL"])
        assert re.fullmatch(r"https://AC[0-9a-f]{32}:[0-9a-f]{32}@127\.0\.0\.1:\d+", env["SMS_URL"])
        assert Path(env["PUSHLINE_FALLBACK_CA_FILE"]).exists()
        verify = ssl.create_default_context(cafile=env["PUSHLINE_FALLBACK_CA_FILE"])
        for name in ("SMTP_CONTROL_URL", "SMS_CONTROL_URL"):
            response = httpx.get(env[name] + "/_emulator/stats", verify=verify)
            assert response.status_code == 200
    finally:
        stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(env["SMS_CONTROL_URL"] + "/_emulator/stats", verify=verify)
