"""Start the APNs and FCM emulators (one child process each) with fresh TLS material and credentials."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pushline.emulators._control import EmulatorControl
from pushline.emulators._tls import (
    ApnsCredentials,
    FcmCredentials,
    TlsMaterial,
    generate_apns_credentials,
    generate_fcm_credentials,
    generate_tls,
)
from pushline.emulators.apns import ApnsConfig, ApnsKey
from pushline.emulators.fcm import FcmConfig, FcmServiceAccount
from pushline.errors import StackError
from pushline.processes import die_with_parent, free_port, stop_process

__all__ = ["EmulatorProcess", "ProviderEmulators"]


@dataclass(frozen=True)
class EmulatorUrls:
    url: str
    h2_url: str


class EmulatorProcess:
    """One emulator child process (``python -m pushline.emulators._server``)."""

    def __init__(self, name: str, workdir: Path, config: dict[str, Any]) -> None:
        self.name = name
        self._workdir = workdir
        self._config = config
        self._proc: subprocess.Popen[bytes] | None = None
        self.urls: EmulatorUrls | None = None

    def start(self, port: int, timeout: float) -> EmulatorUrls:
        ready = self._workdir / f"{self.name}.ready"
        ready.unlink(missing_ok=True)
        config_file = self._workdir / f"{self.name}.json"
        config_file.write_text(json.dumps({**self._config, "port": port, "ready_file": str(ready)}))
        log_file = self._workdir / f"{self.name}.log"
        with open(log_file, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "pushline.emulators._server", str(config_file)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - only sets the parent-death signal
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready.exists():
                info = json.loads(ready.read_text())
                self.urls = EmulatorUrls(info["url"], info["h2_url"])
                return self.urls
            if self._proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        tail = log_file.read_text(errors="replace")[-2000:]
        raise StackError(f"the {self.name} emulator did not start within {timeout}s: {tail}")

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, timeout)


class ProviderEmulators:
    """APNs + FCM emulators on loopback, with a test CA and test credentials in ``workdir``.

    ``start()`` returns the stack's environment (exactly the keys in :data:`ENV_KEYS`);
    ``stop()`` ends both child processes. Use as a context manager in tests.
    """

    ENV_KEYS = (
        "APNS_URL",
        "FCM_URL",
        "FCM_TOKEN_URI",
        "PUSHLINE_CA_FILE",
        "APNS_KEY_FILE",
        "APNS_KEY_ID",
        "APNS_TEAM_ID",
        "APNS_TOPIC",
        "FCM_SERVICE_ACCOUNT_FILE",
        "FCM_PROJECT_ID",
    )

    def __init__(
        self,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        seed: int = 0,
        apns_topic: str = "com.example.pushline",
        fcm_project_id: str = "pushline-test",
        token_update_window: float = 1200.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.host = host
        self.seed = seed
        self.apns_topic = apns_topic
        self.fcm_project_id = fcm_project_id
        self.token_update_window = token_update_window
        self.tls: TlsMaterial | None = None
        self.apns_credentials: ApnsCredentials | None = None
        self.fcm_credentials: FcmCredentials | None = None
        self.apns: EmulatorProcess | None = None
        self.fcm: EmulatorProcess | None = None
        self.env: dict[str, str] = {}

    def start(self, timeout: float = 20.0) -> dict[str, str]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> dict[str, str]:
        tls = self.tls = generate_tls(self.workdir / "tls")
        apns_creds = self.apns_credentials = generate_apns_credentials(
            self.workdir / "credentials", topic=self.apns_topic
        )
        tls_conf = {
            "host": self.host,
            "cert_file": str(tls.cert_file),
            "key_file": str(tls.key_file),
        }
        apns_config = ApnsConfig(
            keys=(
                ApnsKey(
                    apns_creds.key_id,
                    apns_creds.team_id,
                    apns_creds.public_key_pem,
                    (apns_creds.topic,),
                ),
            ),
            token_update_window=self.token_update_window,
            seed=self.seed,
        )
        self.apns = EmulatorProcess(
            "apns", self.workdir, {**tls_conf, "provider": "apns", "apns": apns_config.to_dict()}
        )
        apns_urls = self._start_with_retry(self.apns, lambda _port: None, timeout)

        def prepare_fcm(port: int) -> None:
            # The service-account file names the token URI, so it is written once the port is
            # chosen; the emulator accepts the assertion audience for that port.
            base = f"https://{self.host}:{port}"
            fcm_creds = self.fcm_credentials = generate_fcm_credentials(
                self.workdir / "credentials",
                token_uri=f"{base}/token",
                project_id=self.fcm_project_id,
            )
            fcm_config = FcmConfig(
                accounts=(
                    FcmServiceAccount(
                        fcm_creds.client_email,
                        fcm_creds.private_key_id,
                        fcm_creds.public_key_pem,
                        fcm_creds.project_id,
                    ),
                ),
                token_uris=(f"{base}/token", f"https://localhost:{port}/token"),
                seed=self.seed,
            )
            self.fcm = EmulatorProcess(
                "fcm", self.workdir, {**tls_conf, "provider": "fcm", "fcm": fcm_config.to_dict()}
            )

        fcm_urls = self._start_with_retry(None, prepare_fcm, timeout)
        fcm_creds = self.fcm_credentials
        assert fcm_creds is not None
        self.env = {
            "APNS_URL": apns_urls.url,
            "FCM_URL": fcm_urls.url,
            "FCM_TOKEN_URI": fcm_creds.token_uri,
            "PUSHLINE_CA_FILE": str(tls.ca_file),
            "APNS_KEY_FILE": str(apns_creds.key_file),
            "APNS_KEY_ID": apns_creds.key_id,
            "APNS_TEAM_ID": apns_creds.team_id,
            "APNS_TOPIC": apns_creds.topic,
            "FCM_SERVICE_ACCOUNT_FILE": str(fcm_creds.service_account_file),
            "FCM_PROJECT_ID": fcm_creds.project_id,
        }
        return dict(self.env)

    def _start_with_retry(
        self, process: EmulatorProcess | None, prepare: Callable[[int], None], timeout: float
    ) -> EmulatorUrls:
        # A free port can be taken between the probe and granian's bind: try a few.
        error: StackError | None = None
        for _ in range(5):
            port = free_port(self.host)
            prepare(port)
            proc = process or self.fcm
            assert proc is not None
            try:
                return proc.start(port, timeout)
            except StackError as exc:
                error = exc
        assert error is not None
        raise error

    # --- access for tests, demo and bench -----------------------------------------------------

    @property
    def apns_h2_url(self) -> str:
        """The APNs emulator's pure-h2 listener (supports GOAWAY after N streams)."""
        assert self.apns is not None and self.apns.urls is not None, "start() first"
        return self.apns.urls.h2_url

    @property
    def fcm_h2_url(self) -> str:
        assert self.fcm is not None and self.fcm.urls is not None, "start() first"
        return self.fcm.urls.h2_url

    def apns_control(self) -> EmulatorControl:
        return EmulatorControl(self.env["APNS_URL"], self.env["PUSHLINE_CA_FILE"])

    def fcm_control(self) -> EmulatorControl:
        return EmulatorControl(self.env["FCM_URL"], self.env["PUSHLINE_CA_FILE"])

    def running(self) -> bool:
        return all(p is not None and p.running() for p in (self.apns, self.fcm))

    def stop(self) -> None:
        for process in (self.apns, self.fcm):
            if process is not None:
                process.stop()

    def __enter__(self) -> ProviderEmulators:
        if not self.env:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
