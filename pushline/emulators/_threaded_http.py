"""Run a small ASGI app (an emulator's API or control endpoint) on uvicorn in a background thread.

The SMTP and SMS emulators run inside whichever process starts them (the stack process, or a test);
their HTTP sides live on a thread of that process, each with its own event loop. The socket is bound
before uvicorn starts, so port 0 gives a free port with no probe-then-bind race.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from pushline.errors import StackError

__all__ = ["ThreadedHttpServer"]


class ThreadedHttpServer:
    """``app`` served on ``host:port`` (HTTPS when a certificate is given) from a daemon thread."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        name: str,
        host: str = "127.0.0.1",
        port: int = 0,
        cert_file: Path | None = None,
        key_file: Path | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self._requested_port = port
        self._tls = cert_file is not None
        self._config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_certfile=str(cert_file) if cert_file else None,
            ssl_keyfile=str(key_file) if key_file else None,
            timeout_graceful_shutdown=1,
        )
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._port: int | None = None
        self.error: BaseException | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise StackError(f"{self.name} is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._requested_port))
        except OSError as exc:
            sock.close()
            raise StackError(
                f"{self.name}: cannot bind {self.host}:{self._requested_port}: {exc}"
            ) from exc
        sock.listen(128)
        self._sock = sock
        self._port = int(sock.getsockname()[1])
        server = self._server = uvicorn.Server(self._config)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if self.error is not None or not self._thread.is_alive():
                self.stop()
                raise StackError(f"{self.name} did not start: {self.error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise StackError(f"{self.name} did not start within {timeout}s")
            time.sleep(0.01)
        return self.url

    def _run(self) -> None:
        assert self._server is not None and self._sock is not None
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # noqa: BLE001 - reported to start() / the owner, never lost silently
            self.error = exc

    def stop(self) -> None:
        server, thread, sock = self._server, self._thread, self._sock
        self._server, self._thread, self._sock = None, None, None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=10)
        if sock is not None:
            sock.close()
