"""The fallback channels' emulators together: SMTP (aiosmtpd) and the Twilio-shaped SMS API.

    env, stop = start_fallback_emulators(workdir, tls)   # tls: the stack's TlsMaterial, or None
    ...                                                  # env: see FallbackEmulators.ENV_KEYS
    stop()

Both run in the calling process (threads), so whoever starts them owns their lifetime; tests and
the dev stack read what they received over their HTTP control endpoints (``SmtpControl`` /
``SmsControl``), which works across processes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pushline.emulators._tls import TlsMaterial, generate_tls
from pushline.emulators.sms import SmsControl, SmsEmulator
from pushline.emulators.smtp import SmtpControl, SmtpEmulator

__all__ = ["FallbackEmulators", "start_fallback_emulators"]


class FallbackEmulators:
    """SMTP + SMS emulators on loopback. ``start()`` returns exactly :data:`ENV_KEYS`."""

    ENV_KEYS = (
        "SMTP_URL",  # smtp://USER:PASSWORD@127.0.0.1:PORT?starttls=1
        "SMTP_CONTROL_URL",
        "SMS_URL",  # https://ACCOUNT_SID:AUTH_TOKEN@127.0.0.1:PORT
        "SMS_FROM",
        "SMS_CONTROL_URL",
        "PUSHLINE_FALLBACK_CA_FILE",  # the CA both TLS listeners' certificates chain to
    )

    def __init__(self, workdir: Path, tls: TlsMaterial | None = None, *, seed: int = 0) -> None:
        self.workdir = Path(workdir)
        self.tls = tls
        self.seed = seed
        self.smtp: SmtpEmulator | None = None
        self.sms: SmsEmulator | None = None
        self.env: dict[str, str] = {}

    def start(self) -> dict[str, str]:
        try:
            if self.tls is None:
                self.tls = generate_tls(self.workdir / "fallback-tls")
            self.smtp = SmtpEmulator(tls=self.tls)
            self.sms = SmsEmulator(tls=self.tls, seed=self.seed)
            self.env = {
                **self.smtp.start(),
                **self.sms.start(),
                "PUSHLINE_FALLBACK_CA_FILE": str(self.tls.ca_file),
            }
        except BaseException:
            self.stop()
            raise
        return dict(self.env)

    def smtp_control(self) -> SmtpControl:
        assert self.smtp is not None, "start() first"
        return self.smtp.control()

    def sms_control(self) -> SmsControl:
        assert self.sms is not None, "start() first"
        return self.sms.control()

    def stop(self) -> None:
        for emulator in (self.smtp, self.sms):
            if emulator is not None:
                emulator.stop()

    def __enter__(self) -> FallbackEmulators:
        if not self.env:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_fallback_emulators(
    workdir: Path, tls: TlsMaterial | None = None
) -> tuple[dict[str, str], Callable[[], None]]:
    """Start both emulators; returns their environment and a function that stops them."""
    emulators = FallbackEmulators(workdir, tls)
    env = emulators.start()
    return env, emulators.stop
