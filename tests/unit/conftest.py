"""Fixtures for the unit tests that talk to the emulators (APNs, FCM, SMTP, SMS; no broker)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pushline.emulators._control import EmulatorControl
from pushline.emulators._runner import ProviderEmulators
from pushline.emulators._tls import TlsMaterial, generate_tls
from pushline.emulators.sms import SmsEmulator
from pushline.emulators.smtp import SmtpEmulator


@pytest.fixture(scope="module")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderEmulators]:
    """The APNs and FCM emulators, started once per test module."""
    with ProviderEmulators(tmp_path_factory.mktemp("provider-emulators")) as running:
        yield running


@pytest.fixture
def apns(emulators: ProviderEmulators) -> Iterator[EmulatorControl]:
    with emulators.apns_control() as control:
        control.reset()
        yield control


@pytest.fixture
def fcm(emulators: ProviderEmulators) -> Iterator[EmulatorControl]:
    with emulators.fcm_control() as control:
        control.reset()
        yield control


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    """A test CA and server certificate for the SMTP and SMS emulators."""
    return generate_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def smtp(tls: TlsMaterial) -> Iterator[SmtpEmulator]:
    with SmtpEmulator(tls=tls) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def sms(tls: TlsMaterial) -> Iterator[SmsEmulator]:
    with SmsEmulator(tls=tls) as emulator:
        yield emulator
