"""Fixtures for the unit tests that talk to the APNs and FCM emulators (no broker needed)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pushline.emulators._control import EmulatorControl
from pushline.emulators._runner import ProviderEmulators


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
