"""The embedded development stack: a Kafka-compatible broker, a schema registry and (later) the
provider emulators, all on loopback.

``pushline emulate stack`` runs it in the foreground and prints one ``NAME=value`` line per address,
then ``READY``; the test fixture and ``pushline demo`` start that same command as a child process,
so what developers run is what the tests exercise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING

from pushline._tansu import TansuBroker
from pushline.errors import StackError
from pushline.processes import stop_process

if TYPE_CHECKING:
    from pushline.emulators._runner import ProviderEmulators
    from pushline.emulators.fallback import FallbackEmulators
    from pushline.emulators.registry import RegistryServer
    from receipts import ReceiptsApiProcess

__all__ = ["DevStack", "StackHandle", "run_stack_forever", "spawn_stack", "stack_from_env_or_spawn"]

READY_LINE = "READY"


class DevStack:
    """Starts and stops every embedded service in this process (the broker as a child process)."""

    def __init__(
        self,
        *,
        kafka_port: int = 0,
        registry_port: int = 0,
        kafka: bool = True,
        registry: bool = True,
        providers: bool = True,
        receipts_api: bool = False,
        workdir: Path | None = None,
    ):
        # The work directory holds the generated CA, test credentials and the emulators' logs.
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="pushline-stack-"))
        self._broker = TansuBroker(port=kafka_port, log_file=self.workdir / "tansu.log")
        self._registry_port = registry_port
        self._with_kafka = kafka
        self._with_registry = registry
        self._with_providers = providers
        self._with_receipts_api = receipts_api
        self._receipts_api: ReceiptsApiProcess | None = None
        self._fallbacks: FallbackEmulators | None = None
        self._registry: RegistryServer | None = None
        self._providers: ProviderEmulators | None = None
        self._env: dict[str, str] = {}

    def start(self) -> dict[str, str]:
        from pushline.emulators._runner import ProviderEmulators  # noqa: PLC0415 - loads late
        from pushline.emulators.registry import RegistryServer  # noqa: PLC0415
        from schemas.receipt_token import generate_receipt_token_keys  # noqa: PLC0415

        try:
            self._env = {}
            if self._with_kafka:
                self._broker.start()
                self._env["KAFKA_BOOTSTRAP_SERVERS"] = self._broker.bootstrap_servers
                # A single embedded broker holds one replica of everything.
                self._env["PUSHLINE_TOPIC_REPLICATION_FACTOR"] = "1"
                # Tansu holds a fetch that found nothing for all of fetch.wait.max.ms, even when
                # data arrives meanwhile (Kafka answers at once): 500 ms would add up to 500 ms
                # to every hop of the pipeline.
                self._env["PUSHLINE_KAFKA_FETCH_WAIT_MAX_MS"] = "10"
            if self._with_registry:
                self._registry = RegistryServer(port=self._registry_port)
                self._registry.start()
                self._env["SCHEMA_REGISTRY_URL"] = self._registry.url
            # A fresh key per stack: receipt tokens of one stack mean nothing to another.
            self._env["PUSHLINE_RECEIPT_TOKEN_KEYS"] = generate_receipt_token_keys()
            if self._with_providers:
                self._providers = ProviderEmulators(self.workdir / "providers")
                self._env.update(self._providers.start())
                self._env["APNS_H2_URL"] = self._providers.apns_h2_url
                self._env["FCM_H2_URL"] = self._providers.fcm_h2_url
            from pushline.emulators.fallback import FallbackEmulators  # noqa: PLC0415

            self._fallbacks = FallbackEmulators(
                self.workdir / "fallback", self._providers.tls if self._providers else None
            )
            self._env.update(self._fallbacks.start())
            if self._with_receipts_api:
                from receipts import start_receipts_api_process  # noqa: PLC0415

                # Ready once push.receipts exists (`pushline topics ensure`); up right away.
                self._receipts_api = start_receipts_api_process(self._env, wait_ready=False)
                self._env["RECEIPTS_URL"] = self._receipts_api.url
        except BaseException:
            self.stop()
            raise
        return dict(self._env)

    @property
    def env(self) -> dict[str, str]:
        return dict(self._env)

    def healthy(self) -> bool:
        return self._broker.running() or not self._with_kafka

    def stop(self) -> None:
        receipts_api, self._receipts_api = self._receipts_api, None
        if receipts_api is not None:
            receipts_api.close()
        fallbacks, self._fallbacks = self._fallbacks, None
        if fallbacks is not None:
            fallbacks.stop()
        providers, self._providers = self._providers, None
        if providers is not None:
            providers.stop()
        registry, self._registry = self._registry, None
        if registry is not None:
            registry.stop()
        self._broker.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def run_stack_forever(out: IO[str] = sys.stdout, **kwargs: object) -> int:
    """Start the stack, print its addresses and READY, run until SIGINT/SIGTERM, stop everything."""
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    stack = DevStack(**kwargs)  # type: ignore[arg-type]
    try:
        env = stack.start()
        for name, value in env.items():
            print(f"{name}={value}", file=out)
        print(READY_LINE, file=out, flush=True)
        while not stop.wait(0.5):
            if not stack.healthy():
                print("pushline: error: the embedded broker exited", file=sys.stderr)
                return 1
        return 0
    finally:
        stack.stop()


@dataclass
class StackHandle:
    """A stack running in a child process (``pushline emulate stack``), or an external one."""

    env: dict[str, str]
    process: subprocess.Popen[str] | None = None
    _closed: bool = field(default=False, repr=False)

    @property
    def bootstrap_servers(self) -> str:
        return self.env["KAFKA_BOOTSTRAP_SERVERS"]

    @property
    def registry_url(self) -> str:
        return self.env["SCHEMA_REGISTRY_URL"]

    def close(self, timeout: float = 10.0) -> None:
        if self._closed or self.process is None:
            return
        self._closed = True
        stop_process(self.process, timeout)

    def __enter__(self) -> StackHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def spawn_stack(timeout: float = 60.0, extra_args: tuple[str, ...] = ()) -> StackHandle:
    """Start ``pushline emulate stack`` as a child process and wait for READY."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pushline", "emulate", "stack", *extra_args],
        stdout=subprocess.PIPE,
        stderr=None,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    handle = StackHandle(env={}, process=proc)
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    lines: list[str] = []
    reader = _LineReader(proc.stdout)
    for line in reader.lines(deadline):
        if line == READY_LINE:
            handle.env = dict(_parse_env_lines(lines))
            return handle
        lines.append(line)
    handle.close()
    raise StackError(f"the dev stack did not print {READY_LINE} within {timeout}s: {lines!r}")


def _parse_env_lines(lines: list[str]) -> Iterator[tuple[str, str]]:
    for line in lines:
        name, sep, value = line.partition("=")
        if sep and name.isupper():
            yield name, value


class _LineReader:
    """Reads a child's stdout on a thread so waiting for READY can time out."""

    def __init__(self, stream: IO[str]):
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            with self._cond:
                self._lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def lines(self, deadline: float) -> Iterator[str]:
        index = 0
        while True:
            with self._cond:
                while index >= len(self._lines) and not self._eof:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    self._cond.wait(remaining)
                if index >= len(self._lines):
                    return
                line = self._lines[index]
            index += 1
            yield line


_CALLER_TUNABLE = ("PUSHLINE_KAFKA_FETCH_WAIT_MAX_MS",)


@contextlib.contextmanager
def stack_from_env_or_spawn(env: Mapping[str, str] | None = None) -> Iterator[StackHandle]:
    """Use the cluster named by KAFKA_BOOTSTRAP_SERVERS or start the embedded one.

    With an external cluster the emulators (and, without SCHEMA_REGISTRY_URL, the registry
    emulator) still come from ``pushline emulate stack --no-kafka``, unless the environment already
    names them (APNS_URL): tests and the demo need the providers either way.
    """
    env = os.environ if env is None else env
    if not env.get("KAFKA_BOOTSTRAP_SERVERS"):
        handle = spawn_stack()
        # the stack's tuning for its broker is a default: a value the caller set wins
        handle.env = {**handle.env, **{k: env[k] for k in _CALLER_TUNABLE if k in env}}
        try:
            yield handle
        finally:
            handle.close()
        return
    external = {
        k: v
        for k, v in env.items()
        if k in ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL") or k.startswith("PUSHLINE_")
    }
    if env.get("APNS_URL"):
        yield StackHandle(env={k: v for k, v in env.items() if k.isupper()})
        return
    args = ["--no-kafka"] + (["--no-registry"] if env.get("SCHEMA_REGISTRY_URL") else [])
    emulators = spawn_stack(extra_args=tuple(args))
    try:
        emulators.env = {**emulators.env, **external}
        yield emulators
    finally:
        emulators.close()
