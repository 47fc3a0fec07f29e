"""The skeleton the dispatcher and the fallback sender share: a consumer group polled on a thread
of its own, its work done on an asyncio event loop.

- The **consumer thread** owns the librdkafka consumer: it fetches (never waiting for a full
  batch), holds back above ``max_in_flight``, commits every ``commit_interval_s``, and serves the
  rebalance callbacks (librdkafka calls them from ``consume``). A busy event loop therefore never
  delays a fetch or a rebalance, and heartbeats run on librdkafka's own thread.
- The **event loop** gets the admitted messages in batches (``call_soon_threadsafe``) and serves
  the producer's delivery callbacks (:class:`pushline.acked_producer.AckedProducer`), so the offset
  bookkeeping of acknowledged work happens on one thread.
- **Stop** (:meth:`ConsumerService.stop`, SIGTERM in the services): the consumer thread drains
  what is in flight (bounded by ``drain_timeout_s``), commits, and closes the consumer, which
  leaves the group; then the producer is flushed. The first fatal error is raised by ``run``.

A subclass builds ``_consumer`` and ``_producer`` in its ``__init__`` (after calling
``super().__init__``) and implements the abstract methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Coroutine, Sequence
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from confluent_kafka import Consumer, Message, TopicPartition
from mypy_extensions import mypyc_attr
from prometheus_client import CollectorRegistry

from pushline.acked_producer import AckedProducer
from pushline.consuming import consume_available
from pushline.ops import OpsConfig, OpsServer

__all__ = ["ConsumerService", "ConsumerServiceConfig", "ServiceLifecycle"]

W = TypeVar("W")


class ConsumerServiceConfig(Protocol):
    @property
    def max_in_flight(self) -> int: ...
    @property
    def commit_interval_s(self) -> float: ...
    @property
    def drain_timeout_s(self) -> float: ...


# Compiled by mypyc (setup.py); the reconciler and fallback sender subclass these in plain Python.
@mypyc_attr(allow_interpreted_subclasses=True)
class ServiceLifecycle:
    """Readiness, health and stop of a consuming service, shared by every Pushline consumer:
    ``ready`` once it has a partition assignment, ``healthy`` until a fatal error, ``stop`` asks
    it to drain, commit and leave the group."""

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._fatal: BaseException | None = None
        self._ready = threading.Event()

    @property
    def ready(self) -> bool:
        """Has a partition assignment and no fatal error (the readiness probe)."""
        return self._ready.is_set() and self._fatal is None

    @property
    def healthy(self) -> bool:
        """False once the service hit an error it cannot recover from in process."""
        return self._fatal is None

    def stop(self) -> None:
        """Ask the service to drain, commit and leave the group (thread-safe, idempotent)."""
        self._stopping.set()

    def _fail(self, error: BaseException) -> None:
        """Stop before committing anything more; the first error is the one ``run`` raises."""
        self._fatal = self._fatal or error
        self._stopping.set()


@mypyc_attr(allow_interpreted_subclasses=True)
class ConsumerService(ServiceLifecycle, ABC, Generic[W]):
    consume_batch: ClassVar[int] = 500
    """At most this many messages handed to the loop at once."""
    backpressure_sleep_s: ClassVar[float] = 0.005
    """How long the consumer thread waits while ``max_in_flight`` messages are being worked on."""
    busy_poll_s: ClassVar[float] = 0.002
    """How often the loop serves delivery callbacks while work is in flight (idle: 20 ms)."""
    thread_name: ClassVar[str] = "pushline-consumer"

    _consumer: Consumer
    _producer: AckedProducer
    stats: dict[str, int]
    """What the service did (logged when it stops)."""

    def __init__(self, config: ConsumerServiceConfig, log: logging.Logger) -> None:
        super().__init__()
        self._service_config = config
        self._log = log
        self._in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # ----------------------------------------------------------------- public

    async def serve(
        self, ops: OpsConfig, registry: CollectorRegistry, name: str, **extra: Any
    ) -> None:
        """:meth:`run` as a process does it: SIGTERM and SIGINT stop it, ``/metrics``,
        ``/healthz`` and ``/readyz`` are served meanwhile, start (with ``extra``) and stop (with
        ``stats``) are logged."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        server = OpsServer.from_config(
            ops,
            registry,
            ready=lambda: (self.ready, "waiting for a partition assignment"),
            healthy=lambda: self.healthy,
        )
        server.start()
        self._log.info("%s starting", name, extra={**extra, "ops": server.url})
        try:
            await self.run()
        finally:
            server.stop()
            self._log.info("%s stopped", name, extra=dict(self.stats))

    async def run(self) -> None:
        """Run until :meth:`stop`; raises the first fatal error (e.g. a refused acknowledgement)."""
        self._loop = asyncio.get_running_loop()
        self._consumer.subscribe(
            list(self._subscribed_topics()),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        consumer_thread = threading.Thread(
            target=self._consume_forever, name=self.thread_name, daemon=True
        )
        consumer_thread.start()
        try:
            while consumer_thread.is_alive():
                self._producer.poll(0)
                self._on_poll()
                await asyncio.sleep(self.busy_poll_s if self._in_flight else 0.02)
        finally:
            self._stopping.set()
            consumer_thread.join(timeout=self._service_config.drain_timeout_s + 30)
            self._producer.flush(10)
            self._on_poll()
            await self._on_stopped()
        if self._fatal is not None:
            raise self._fatal

    # ------------------------------------------------------- consumer thread

    def _consume_forever(self) -> None:
        config = self._service_config
        last_commit = time.monotonic()
        try:
            while not self._stopping.is_set() and self._fatal is None:
                self._before_consume()
                if self._in_flight >= config.max_in_flight:
                    time.sleep(self.backpressure_sleep_s)  # librdkafka heartbeats on its own
                    msgs: list[Message] = []
                else:
                    msgs = consume_available(self._consumer, self.consume_batch, timeout=0.05)
                batch = self._admit(msgs)
                if batch:
                    assert self._loop is not None
                    self._loop.call_soon_threadsafe(self._accept, batch)
                now = time.monotonic()
                if now - last_commit >= config.commit_interval_s:
                    self._commit(asynchronous=True)
                    last_commit = now
            self._drain(None)
            self._commit(asynchronous=False)
        except BaseException as exc:  # noqa: BLE001 - recorded, then raised by run()
            self._log.exception("consumer thread failed")
            self._fatal = self._fatal or exc
        finally:
            with contextlib.suppress(Exception):
                self._consumer.close()  # leaves the group (revocation drains and commits first)
            self._ready.clear()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """(Event loop.) Run ``coro`` as a task, referenced until it is done."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ hooks

    @abstractmethod
    def _subscribed_topics(self) -> Sequence[str]: ...

    @abstractmethod
    def _admit(self, msgs: list[Message]) -> list[W]:
        """(Consumer thread.) The messages to work on, counted in ``_in_flight``."""

    @abstractmethod
    def _accept(self, batch: list[W]) -> None:
        """(Event loop.) Start working on admitted messages."""

    @abstractmethod
    def _commit(self, *, asynchronous: bool) -> None:
        """(Consumer thread.) Commit what is acknowledged."""

    @abstractmethod
    def _drain(self, which: Any) -> None:
        """(Consumer thread.) Wait, bounded, until ``which`` (None: everything) is not in flight."""

    @abstractmethod
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None: ...

    @abstractmethod
    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None: ...

    def _before_consume(self) -> None:
        """(Consumer thread.) Called before each fetch."""

    def _on_poll(self) -> None:
        """(Event loop.) Called after each round of delivery callbacks."""

    async def _on_stopped(self) -> None:
        """(Event loop.) Called once the consumer left the group and the producer is flushed."""
