"""The operations endpoint every long-running component serves: /metrics, /healthz, /readyz.

A stdlib ``ThreadingHTTPServer`` on a daemon thread: three tiny GET routes need no framework, and
the probes stay answerable while the component's own loop is busy (they run on their own threads).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from pushline.config import config_from_env, env_field
from pushline.errors import ConfigError

__all__ = ["OpsConfig", "OpsServer", "Probe", "ProbeResult"]

log = logging.getLogger(__name__)

ProbeResult = bool | tuple[bool, str]
"""A probe answers ``True``/``False``, or ``(ok, reason)`` to say why it is not ready."""
Probe = Callable[[], ProbeResult]

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class OpsConfig:
    """Where the ops endpoint listens, and how much the component logs."""

    host: str = env_field("PUSHLINE_OPS_HOST", "Address of /metrics, /healthz, /readyz.", "0.0.0.0")
    port: int = env_field(
        "PUSHLINE_OPS_PORT", "Port of /metrics, /healthz, /readyz (0: any free port).", 9100
    )
    log_level: str = env_field(
        "PUSHLINE_LOG_LEVEL", "DEBUG, INFO, WARNING, ERROR or CRITICAL.", "INFO"
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> OpsConfig:
        cfg = config_from_env(cls, os.environ if env is None else env, **overrides)
        if not 0 <= cfg.port <= 65535:
            raise ConfigError(f"PUSHLINE_OPS_PORT must be 0-65535, not {cfg.port}")
        level = cfg.log_level.strip().upper()
        if level not in _LOG_LEVELS:
            raise ConfigError(f"PUSHLINE_LOG_LEVEL={cfg.log_level!r}: use one of {_LOG_LEVELS}")
        return dataclasses.replace(cfg, log_level=level)


def _run_probe(probe: Probe) -> tuple[bool, str]:
    try:
        result = probe()
    except Exception as exc:  # noqa: BLE001  (a failing probe is an unhealthy answer, not a crash)
        return False, f"probe raised {type(exc).__name__}: {exc}"
    if isinstance(result, tuple):
        return bool(result[0]), str(result[1])
    return bool(result), ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    ops: OpsServer


class _V6Server(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; with Nagle on, a keep-alive client waits ~40 ms for
    # the delayed ACK on every scrape.
    disable_nagle_algorithm = True

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc: Mapping[str, str]) -> None:
        self._send(status, json.dumps(doc).encode(), "application/json")

    def _probe(self, probe: Probe, ok_status: str, bad_status: str) -> None:
        ok, reason = _run_probe(probe)
        if ok:
            self._json(200, {"status": ok_status})
        else:
            self._json(503, {"status": bad_status, "reason": reason or bad_status})

    def do_GET(self) -> None:
        ops = self.server.ops
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, encoder(ops.registry), content_type)
        elif path == "/healthz":
            self._probe(ops.healthy, "ok", "unhealthy")
        elif path == "/readyz":
            self._probe(ops.ready, "ready", "not ready")
        else:
            self._json(404, {"status": "not found", "reason": f"no route {path}"})

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        # Scrapes and probes arrive every few seconds; they are not worth an INFO line each.
        log.debug("ops request: " + format, *args)


class OpsServer:
    """Serves ``/metrics`` from ``registry`` and the probes on a background thread.

    ``/healthz``: 200 ``{"status": "ok"}`` while ``healthy()`` holds, else 503 (restart me).
    ``/readyz``: 200 ``{"status": "ready"}`` while ``ready()`` holds, else 503 with a ``reason``
    (send me no traffic). A probe that raises counts as failing.
    """

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        ready: Probe,
        healthy: Probe,
    ) -> None:
        self.host = host
        self.registry = registry
        self.ready = ready
        self.healthy = healthy
        self._requested_port = port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(
        cls, cfg: OpsConfig, registry: CollectorRegistry, ready: Probe, healthy: Probe
    ) -> OpsServer:
        return cls(cfg.host, cfg.port, registry, ready, healthy)

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for); only valid after :meth:`start`."""
        if self._httpd is None:
            raise RuntimeError("OpsServer is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL a local client can use (a wildcard host becomes loopback)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> OpsServer:
        if self._httpd is not None:
            raise RuntimeError("OpsServer already started")
        server_cls = _V6Server if ":" in self.host else _Server
        try:
            httpd = server_cls((self.host, self._requested_port), _Handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve ops endpoint on {self.host}:{self._requested_port}: {exc}"
            ) from exc
        httpd.ops = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="ops-http", daemon=True
        )
        self._thread.start()
        log.info("ops endpoint listening", extra={"url": self.url})
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> OpsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
