"""Helpers to run dispatchers on the embedded stack and watch what they produce."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.serialization import MessageField, SerializationContext

from dispatcher import AppRegistry, Dispatcher, DispatcherConfig, ProviderClients
from producers import NotificationProducer, new_notification
from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.emulators._control import EmulatorControl
from pushline.headers import message_headers
from pushline.ops import DispatcherMetrics
from schemas import (
    DispatchOutcome,
    EventDeserializer,
    NotificationRequest,
    OutcomeState,
    Platform,
    make_registry_client,
)
from schemas.receipt_token import ReceiptTokenConfig, ReceiptTokenSigner

APP_ID = "default"


def murmur2(data: bytes) -> int:
    """Kafka's Java murmur2: the reference the `murmur2_random` partitioner must match."""
    length = len(data)
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        k = int.from_bytes(data[i * 4 : i * 4 + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    extra = length % 4
    tail = length - extra
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def signer_for(env: Mapping[str, str]) -> ReceiptTokenSigner:
    """The receipt-token signer of ``env`` (the stack prints its keys), as the services build it."""
    return ReceiptTokenConfig.from_env(env).signer()


def apns_token() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


def fcm_token() -> str:
    return f"{uuid.uuid4().hex[:22]}:APA91b{uuid.uuid4().hex}{uuid.uuid4().hex}"


def request(platform: Platform = Platform.APNS, **fields: Any) -> NotificationRequest:
    token = fields.pop("device_token", None) or (
        apns_token() if platform is Platform.APNS else fcm_token()
    )
    return new_notification(
        app_id=fields.pop("app_id", APP_ID),
        platform=platform,
        device_token=token,
        title=fields.pop("title", "Hello"),
        body=fields.pop("body", "World"),
        **fields,
    )


class RunningDispatcher:
    """A Dispatcher on its own thread and event loop, as a process would run it."""

    def __init__(
        self,
        kafka: KafkaConfig,
        registry: SchemaRegistryConfig,
        topics: TopicsConfig,
        env: Mapping[str, str],
        config: DispatcherConfig,
        metrics: DispatcherMetrics | None = None,
    ) -> None:
        self.dispatcher: Dispatcher | None = None
        self._metrics = metrics
        self.error: BaseException | None = None
        self._started = threading.Event()
        self._args = (kafka, registry, topics, env, config)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._started.wait(30)

    def _run(self) -> None:
        kafka, registry, topics, env, config = self._args

        signer = signer_for(env)

        async def main() -> None:
            clients = ProviderClients(AppRegistry.from_env(env))
            self.dispatcher = Dispatcher(
                kafka=kafka,
                registry=registry,
                topics=topics,
                config=config,
                sender=clients,
                receipt_token=lambda r: signer.sign(r.notification_id, r.key, r.expires_at),
                metrics=self._metrics,
            )
            self._started.set()
            try:
                await self.dispatcher.run()
            finally:
                await clients.aclose()

        try:
            asyncio.run(main())
        except BaseException as exc:
            self.error = exc
            self._started.set()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.dispatcher is not None and self.dispatcher.ready:
                return
            if self.error is not None:
                raise self.error
            time.sleep(0.05)
        raise TimeoutError("dispatcher did not get partitions in time")

    def stop(self, timeout: float = 60) -> None:
        if self.dispatcher is not None:
            self.dispatcher.stop()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "dispatcher did not stop"


@contextmanager
def running_dispatcher(
    kafka: KafkaConfig,
    registry: SchemaRegistryConfig,
    topics: TopicsConfig,
    env: Mapping[str, str],
    metrics: DispatcherMetrics | None = None,
    **config: Any,
) -> Iterator[RunningDispatcher]:
    settings: dict[str, Any] = {
        "group_id": f"{topics.prefix}dispatcher",
        "session_timeout_ms": 6000,
        "backoff_base_s": 0.2,
        "commit_interval_s": 0.2,
    }
    settings.update(config)
    runner = RunningDispatcher(
        kafka, registry, topics, env, DispatcherConfig.from_env({}, **settings), metrics
    )
    try:
        runner.wait_ready()
        yield runner
    finally:
        runner.stop()
    if runner.error is not None:
        raise runner.error


class TopicReader:
    """Collects every event of a topic on a background thread."""

    def __init__(
        self, kafka: KafkaConfig, topic: str, decode: Callable[[bytes, str], Any] | None
    ) -> None:
        self.events: list[Any] = []
        self.messages: list[Any] = []
        self._decode = decode
        self._topic = topic
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._consumer = Consumer(
            kafka.to_librdkafka(
                **{
                    "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": False,
                    "session.timeout.ms": 6000,
                }
            )
        )
        self._consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(500, timeout=0.1):
                if msg.error():
                    continue
                event = self._decode(msg.value(), self._topic) if self._decode else msg.value()
                with self._lock:
                    self.messages.append(msg)
                    self.events.append(event)
        self._consumer.close()

    def snapshot(self) -> list[Any]:
        with self._lock:
            return list(self.events)

    def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float = 60) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.snapshot()
            if predicate(events):
                return events
            time.sleep(0.1)
        raise AssertionError(f"condition not met in {timeout}s; have {len(self.snapshot())} events")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def outcome_reader(
    kafka: KafkaConfig, registry: SchemaRegistryConfig, topics: TopicsConfig
) -> TopicReader:
    decoder = EventDeserializer(DispatchOutcome, make_registry_client(registry))
    return TopicReader(
        kafka,
        topics.outcomes,
        lambda value, topic: decoder(value, SerializationContext(topic, MessageField.VALUE)),
    )


def terminal(outcomes: list[DispatchOutcome]) -> dict[str, list[DispatchOutcome]]:
    """Terminal outcomes (not RETRY_SCHEDULED, not DUPLICATE) by notification id."""
    out: dict[str, list[DispatchOutcome]] = {}
    for o in outcomes:
        if o.state not in (OutcomeState.RETRY_SCHEDULED, OutcomeState.DUPLICATE):
            out.setdefault(o.notification_id, []).append(o)
    return out


def all_final(ids: set[str]) -> Callable[[list[DispatchOutcome]], bool]:
    return lambda outcomes: ids <= set(terminal(outcomes))


def send_all(
    kafka: KafkaConfig,
    registry: SchemaRegistryConfig,
    topics: TopicsConfig,
    requests: list[NotificationRequest],
) -> set[str]:
    with NotificationProducer(kafka, registry, topics) as producer:
        return {producer.send(r) for r in requests}


def raw_producer(kafka: KafkaConfig) -> Producer:
    return Producer(kafka.to_librdkafka(**{"enable.idempotence": True, "acks": "all"}))


def control(env: Mapping[str, str], which: str) -> EmulatorControl:
    return EmulatorControl(env[f"{which}_URL"], env["PUSHLINE_CA_FILE"])


__all__ = [
    "APP_ID",
    "RunningDispatcher",
    "TopicReader",
    "all_final",
    "apns_token",
    "control",
    "fcm_token",
    "message_headers",
    "murmur2",
    "outcome_reader",
    "raw_producer",
    "request",
    "running_dispatcher",
    "send_all",
    "terminal",
]


def event_reader(
    kafka: KafkaConfig, registry: SchemaRegistryConfig, topic: str, cls: type[Any]
) -> TopicReader:
    decoder = EventDeserializer(cls, make_registry_client(registry))
    return TopicReader(
        kafka, topic, lambda value, t: decoder(value, SerializationContext(t, MessageField.VALUE))
    )


class EventWriter:
    """Produces events the way Pushline's producers do (keyed, murmur2, idempotent)."""

    def __init__(self, kafka: KafkaConfig, registry: SchemaRegistryConfig) -> None:
        from producers import PRODUCER_SETTINGS
        from schemas import EventSerializer

        self._client = make_registry_client(registry)
        self._serializers: dict[type, Any] = {}
        self._serializer_cls = EventSerializer
        self._producer = Producer(kafka.to_librdkafka(**PRODUCER_SETTINGS))

    def send(self, topic: str, key: str, event: Any) -> None:
        cls = type(event)
        if cls not in self._serializers:
            self._serializers[cls] = self._serializer_cls(cls, self._client)
        value = self._serializers[cls](event, SerializationContext(topic, MessageField.VALUE))
        self._producer.produce(topic, key=key.encode(), value=value)

    def flush(self) -> None:
        assert self._producer.flush(30) == 0


@dataclass(frozen=True)
class Pipeline:
    """One integration test's pipeline: the stack's Kafka and registry, fresh topics, the
    emulators' environment, and a reader of the outcomes topic (what most dispatcher tests take)."""

    kafka: KafkaConfig
    registry: SchemaRegistryConfig
    topics: TopicsConfig
    env: Mapping[str, str]
    outcomes: TopicReader

    def dispatcher(
        self, metrics: DispatcherMetrics | None = None, **config: Any
    ) -> AbstractContextManager[RunningDispatcher]:
        """A dispatcher on these topics until the block ends (``config``: DispatcherConfig
        fields, over the tests' defaults)."""
        return running_dispatcher(
            self.kafka, self.registry, self.topics, self.env, metrics, **config
        )

    def send(self, requests: list[NotificationRequest]) -> set[str]:
        """Produce ``requests`` to the requests topic; their notification ids."""
        return send_all(self.kafka, self.registry, self.topics, requests)

    def control(self, which: str) -> EmulatorControl:
        """The ``APNS`` or ``FCM`` emulator's control API."""
        return control(self.env, which)

    def with_env(self, **overrides: str) -> Pipeline:
        """The same pipeline, its dispatchers and controls seeing ``overrides`` in the env."""
        return dataclasses.replace(self, env={**self.env, **overrides})
