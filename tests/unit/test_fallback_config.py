"""FallbackConfig: the SMTP and SMS URLs, their overrides, and secrets kept out of repr()."""

from __future__ import annotations

import pytest

from pushline.errors import ConfigError
from receipts._fallback_config import FallbackConfig


def test_smtp_url_with_starttls_and_percent_encoded_credentials() -> None:
    cfg = FallbackConfig.from_env(
        {"SMTP_URL": "smtp://me%40x.test:p%3Ass@mail.test:2525?starttls=1"}
    )
    smtp = cfg.smtp()
    assert smtp is not None
    assert (smtp.host, smtp.port, smtp.user, smtp.password) == (
        "mail.test",
        2525,
        "me@x.test",
        "p:ss",
    )
    assert smtp.starttls and not smtp.implicit_tls


def test_smtp_defaults_by_scheme() -> None:
    plain = FallbackConfig.from_env({"PUSHLINE_SMTP_URL": "smtp://mail.test"}).smtp()
    assert plain is not None and (plain.port, plain.starttls, plain.implicit_tls) == (
        587,
        True,
        False,
    )
    tls = FallbackConfig.from_env({"PUSHLINE_SMTP_URL": "smtps://mail.test"}).smtp()
    assert tls is not None and (tls.port, tls.starttls, tls.implicit_tls) == (465, False, True)
    clear = FallbackConfig.from_env({"PUSHLINE_SMTP_URL": "smtp://mail.test:25?starttls=0"}).smtp()
    assert clear is not None and not clear.starttls


def test_separate_variables_override_the_url() -> None:
    cfg = FallbackConfig.from_env(
        {
            "PUSHLINE_SMTP_URL": "smtp://u:p@mail.test:25",
            "PUSHLINE_SMTP_HOST": "relay.test",
            "PUSHLINE_SMTP_PASSWORD": "from-secret-store",
            "PUSHLINE_SMTP_STARTTLS": "false",
            "PUSHLINE_SMS_URL": "https://ACurl:tok@api.sms.test",
            "PUSHLINE_SMS_AUTH_TOKEN": "tok2",
            "PUSHLINE_SMS_FROM": "+15005550006",
        }
    )
    smtp, sms = cfg.smtp(), cfg.sms()
    assert smtp is not None and sms is not None
    assert (smtp.host, smtp.port, smtp.user, smtp.password, smtp.starttls) == (
        "relay.test",
        25,
        "u",
        "from-secret-store",
        False,
    )
    assert (sms.account_sid, sms.auth_token) == ("ACurl", "tok2")
    assert sms.messages_url == "https://api.sms.test/2010-04-01/Accounts/ACurl/Messages.json"


def test_sms_url_keeps_the_port() -> None:
    cfg = FallbackConfig.from_env(
        {"SMS_URL": "https://ACx:tok@127.0.0.1:8443/", "SMS_FROM": "+15005550006"}
    )
    sms = cfg.sms()
    assert sms is not None
    assert sms.messages_url == "https://127.0.0.1:8443/2010-04-01/Accounts/ACx/Messages.json"


@pytest.mark.parametrize(
    "env",
    [
        {"SMTP_URL": "http://mail.test"},
        {"SMTP_URL": "smtp://mail.test?starttls=maybe"},
        {"SMTP_URL": "smtps://mail.test?starttls=1"},
        {"SMTP_URL": "smtp://mail.test:notaport"},
        {"SMS_URL": "https://api.sms.test", "SMS_FROM": "+1"},  # no credentials
        {"SMS_URL": "https://AC:tok@api.sms.test"},  # no sender
        {"PUSHLINE_FALLBACK_MAX_ATTEMPTS": "0"},
    ],
)
def test_bad_settings_fail_at_start(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        FallbackConfig.from_env(env)


def test_unconfigured_channels_are_none() -> None:
    cfg = FallbackConfig.from_env({})
    assert cfg.smtp() is None and cfg.sms() is None


def test_repr_hides_secrets() -> None:
    cfg = FallbackConfig.from_env(
        {
            "SMTP_URL": "smtp://user:hunter2@mail.test",
            "SMS_URL": "https://ACsid:tok3n@api.sms.test",
            "SMS_FROM": "+15005550006",
        }
    )
    text = repr(cfg)
    assert "hunter2" not in text and "tok3n" not in text
    assert "mail.test" in text and "ACsid" in text
