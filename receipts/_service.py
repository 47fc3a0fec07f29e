"""``pushline receipts-api``: the receipts API served by granian, and a way to start it as a child.

With ``PUSHLINE_RECEIPTS_WORKERS=1`` (the default) granian's embedded server runs in this process's
event loop, so this module owns SIGTERM: stop accepting, let in-flight requests finish, flush the
producer (the app's lifespan), exit 0. With more workers granian's process manager runs N processes,
each building its app (and its producer) from the environment through :func:`app_from_env`.

granian rather than uvicorn: on the same app and machine it answered about twice the requests per
second (``receipts._bench``), because HTTP parsing and the socket loop are Rust.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette

from pushline.errors import StackError
from pushline.ops import configure_json_logging
from pushline.processes import free_port, stop_process
from receipts._api import ApiLimits, create_app, receipts_metrics
from receipts._config import ReceiptsApiConfig
from receipts._sink import KafkaReceiptSink

__all__ = [
    "ReceiptsApiProcess",
    "app_from_config",
    "app_from_env",
    "run_receipts_api",
    "start_receipts_api_process",
]

log = logging.getLogger("pushline.receipts")

# granian's own log lines go through our JSON handler instead of its plain-text stdout handler.
_GRANIAN_LOGGING: dict[str, Any] = {
    "loggers": {
        "_granian": {"handlers": [], "propagate": True},
        "granian.access": {"handlers": [], "propagate": True},
    }
}


def app_from_config(config: ReceiptsApiConfig) -> Starlette:
    sink = KafkaReceiptSink(
        config.kafka,
        config.registry,
        config.topics,
        produce_timeout_ms=config.produce_timeout_ms,
        flush_timeout_s=config.drain_timeout_s,
    )
    limits = ApiLimits(
        max_body_bytes=config.max_body_bytes,
        batch_max=config.batch_max,
        retry_after_s=config.retry_after_s,
        dedupe_size=config.dedupe_size,
    )
    return create_app(sink, config.tokens.signer(), limits=limits, metrics=receipts_metrics())


def app_from_env() -> Starlette:
    """The app from ``os.environ`` (granian's factory target in multi-worker mode)."""
    config = ReceiptsApiConfig.from_env()
    configure_json_logging(config.log_level, "receipts-api")
    return app_from_config(config)


def _granian_kwargs(config: ReceiptsApiConfig) -> dict[str, Any]:
    from granian.constants import HTTPModes, Interfaces  # noqa: PLC0415 - server-only import

    return {
        "address": config.host,
        "port": config.port,
        "interface": Interfaces.ASGI,  # with lifespan: it starts and flushes the producer
        "http": HTTPModes.auto,
        "websockets": False,
        "backlog": 1024,
        "log_level": "warning" if config.log_level in ("DEBUG", "INFO") else "error",
        "log_dictconfig": _GRANIAN_LOGGING,
    }


async def _serve_embedded(config: ReceiptsApiConfig) -> int:
    from granian.server.embed import Server  # noqa: PLC0415

    # Its "embedded server is experimental" warning says nothing an operator can act on.
    logging.getLogger("_granian").addFilter(
        lambda record: "experimental" not in record.getMessage()
    )
    server = Server(app_from_config(config), **_granian_kwargs(config))
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def on_signal() -> None:
        if not stopping.is_set():
            log.info("stopping: finishing in-flight requests, then flushing")
            stopping.set()
            server.stop()  # type: ignore[no-untyped-call]

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    serving = asyncio.ensure_future(server.serve())
    log.info(
        "receipts API listening",
        extra={"host": config.host, "port": config.port, "topic": config.topics.receipts},
    )
    await asyncio.wait(
        [serving, asyncio.ensure_future(stopping.wait())], return_when="FIRST_COMPLETED"
    )
    try:
        # A request the broker never answers ends within produce_timeout_ms; this bounds the rest.
        await asyncio.wait_for(asyncio.shield(serving), config.drain_timeout_s + 5)
    except TimeoutError:
        log.error("shutdown did not finish in time", extra={"seconds": config.drain_timeout_s})
        return 1
    except Exception:
        log.exception("receipts API failed")
        return 1
    log.info("receipts API stopped")
    return 0


def run_receipts_api(env: Mapping[str, str] | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    env = os.environ if env is None else env
    config = ReceiptsApiConfig.from_env(env)
    configure_json_logging(config.log_level, "receipts-api")
    # The registry client logs every HTTP request at INFO; one line per schema lookup is noise.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if config.workers == 1:
        return asyncio.run(_serve_embedded(config))
    from granian.server import Server  # noqa: PLC0415

    if env is not os.environ:  # the workers read os.environ
        os.environ.update(env)
    Server(
        "receipts._service:app_from_env",
        factory=True,
        workers=config.workers,
        **_granian_kwargs(config),
    ).serve()
    return 0


@dataclass
class ReceiptsApiProcess:
    """``pushline receipts-api`` running as a child process; ``url`` is its base URL."""

    process: subprocess.Popen[bytes]
    url: str

    def close(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait for the clean exit (killing it after ``timeout``); returns the exit code."""
        return stop_process(self.process, timeout)

    def __enter__(self) -> ReceiptsApiProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_receipts_api_process(
    env: Mapping[str, str],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    wait_ready: bool = True,
    timeout: float = 60.0,
    stderr: int | None = None,
) -> ReceiptsApiProcess:
    """Start ``pushline receipts-api`` with ``env`` over this process's environment.

    Returns once ``/readyz`` answers 200 (``wait_ready``; needs push.receipts to exist) or, without
    it, once ``/healthz`` answers at all. ``port=0`` picks a free port. Raises :class:`StackError`
    if the process exits or does not get there within ``timeout``.
    """
    port = port or free_port(host)
    child_env = {
        **os.environ,
        **env,
        "PUSHLINE_RECEIPTS_HOST": host,
        "PUSHLINE_RECEIPTS_PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "pushline", "receipts-api"],
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    handle = ReceiptsApiProcess(process=proc, url=url)
    path = "/readyz" if wait_ready else "/healthz"
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(f"pushline receipts-api exited with code {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                response = client.get(url + path)
                if response.status_code == 200 or not wait_ready:
                    return handle
            time.sleep(0.05)
    handle.close()
    raise StackError(f"pushline receipts-api was not {path[1:]} within {timeout}s at {url}")
