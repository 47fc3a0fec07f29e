"""``pushline dlq``: list the dead-letter topic, show one entry, replay entries to their source topic.

An entry is named by where it sits in the DLQ, ``PARTITION:OFFSET``: stable for as long as the
record is retained, and enough to fetch it without reading anything else.

The end of the topic is found by the end-of-partition events of the fetch responses
(``enable.partition.eof``), never by watermark queries, which some Kafka-compatible brokers (Tansu)
answer wrongly.

Replays are recorded in the DLQ itself: after a replay is acknowledged, a *marker* record (no key,
no value) carrying :data:`HEADER_REPLAYED` = the entry id is written to the entry's own partition.
So a marker always comes after its entry, and whether an entry was replayed is known by reading
that one DLQ partition, never by scanning the (much larger) source topic. ``list``
shows entries with their replays and skips markers; ``replay`` refuses an entry that has a marker
unless ``--force`` is given. Two operators replaying the same entry at the same moment can both
succeed (the marker is written after the replay); the consumers' duplicate suppression on
notification_id is the safety net for that race.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TextIO

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from pushline.config import TOPIC_NAMES, KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.dlq import HEADER_REPLAYED_FROM, HEADER_SOURCE_TOPIC, DeadLetter
from pushline.errors import CodecError, ConfigError, PushlineError, ValidationError
from pushline.headers import message_headers

__all__ = [
    "HEADER_REPLAYED",
    "HEADER_REPLAYED_AT",
    "HEADER_REPLAYED_FROM",
    "HEADER_REPLAYED_TO",
    "DlqEntry",
    "DlqError",
    "EntryId",
    "Filters",
    "Record",
    "Replay",
    "format_entry",
    "format_list",
    "format_summary",
    "hex_dump",
    "run_dlq",
]

#: On a marker record: the id (``PARTITION:OFFSET``) of the entry that was replayed.
HEADER_REPLAYED = "pushline.dlq.replayed"
#: On a marker record: where the replay landed, ``topic:partition:offset``.
HEADER_REPLAYED_TO = "pushline.dlq.replayed.to"
#: On a marker record: when the replay was acknowledged (ISO 8601, UTC).
HEADER_REPLAYED_AT = "pushline.dlq.replayed.at"

_DLQ_HEADER_PREFIX = "pushline.dlq."  # the DLQ's own headers; never copied to a replayed event
_MESSAGE_WIDTH = 60
_KEY_WIDTH = 24
_SOURCE_WIDTH = 36
_CLASS_WIDTH = 24

# librdkafka's own log lines would reach stderr through logging's last-resort handler; a command
# line tool reports one line of its own instead.
_QUIET = logging.getLogger("pushline.dlq.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


class DlqError(PushlineError):
    """An entry is missing or refused, or the broker could not be read or written (exit code 1)."""


@dataclass(frozen=True, order=True)
class EntryId:
    """Where an entry sits in the DLQ."""

    partition: int
    offset: int

    @classmethod
    def parse(cls, text: str) -> EntryId:
        part, sep, off = text.strip().partition(":")
        if not sep or not part.isdigit() or not off.isdigit():
            raise ValidationError("ID", f"expected PARTITION:OFFSET such as 0:42, got {text!r}")
        return cls(int(part), int(off))

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"


@dataclass(frozen=True)
class Record:
    """One record of the DLQ topic, as read."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]

    @property
    def id(self) -> EntryId:
        return EntryId(self.partition, self.offset)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return (v or b"").decode("utf-8", "replace")
        return None

    @property
    def is_marker(self) -> bool:
        return self.header(HEADER_REPLAYED) is not None


@dataclass(frozen=True)
class Replay:
    """A recorded replay of an entry (from its marker record)."""

    marker: EntryId
    to: str
    at: str


@dataclass(frozen=True)
class DlqEntry:
    """A dead letter and the replays recorded for it."""

    record: Record
    letter: DeadLetter
    replays: tuple[Replay, ...] = ()

    @property
    def id(self) -> EntryId:
        return self.record.id


@dataclass(frozen=True)
class Filters:
    """Which entries a command is about; empty sets match everything."""

    source_topics: frozenset[str] = frozenset()
    error_classes: frozenset[str] = frozenset()  # lower case

    @classmethod
    def build(
        cls, topics: TopicsConfig, source_topic: str | None, error_class: str | None
    ) -> Filters:
        sources: set[str] = set()
        if source_topic:
            sources.add(source_topic)
            # `--source-topic push.requests` means this deployment's (prefixed) topic as well
            if source_topic in TOPIC_NAMES:
                sources.add(topics.name(source_topic))
        return cls(frozenset(sources), frozenset({error_class.lower()} if error_class else set()))

    def match(self, entry: DlqEntry) -> bool:
        if self.source_topics and entry.letter.source_topic not in self.source_topics:
            return False
        return not self.error_classes or entry.letter.error_class.lower() in self.error_classes


def _letter(headers: Sequence[tuple[str, bytes | None]]) -> DeadLetter:
    """The dead-letter headers; a mangled number or date must not hide the rest of the entry."""
    try:
        return DeadLetter.from_headers(headers)
    except ValueError:
        h = {k: (v or b"").decode("utf-8", "replace") for k, v in headers}

        def number(name: str) -> int:
            text = h.get(name, "")
            return int(text) if text.lstrip("-").isdigit() else -1

        return DeadLetter(
            source_topic=h.get(HEADER_SOURCE_TOPIC, ""),
            source_partition=number("pushline.dlq.source.partition"),
            source_offset=number("pushline.dlq.source.offset"),
            error_class=h.get("pushline.dlq.error.class", ""),
            error_message=h.get("pushline.dlq.error.message", ""),
            failed_at=datetime.fromtimestamp(0, UTC),
        )


def build_entries(records: Iterable[Record]) -> list[DlqEntry]:
    """Entries (markers folded into the entries they name), in DLQ order (partition, offset)."""
    entries: list[Record] = []
    replays: dict[EntryId, list[Replay]] = {}
    for rec in records:
        if rec.is_marker:
            try:
                target = EntryId.parse(rec.header(HEADER_REPLAYED) or "")
            except ValidationError:
                continue  # a foreign or broken marker names nothing we can show
            replays.setdefault(target, []).append(
                Replay(
                    rec.id,
                    rec.header(HEADER_REPLAYED_TO) or "",
                    rec.header(HEADER_REPLAYED_AT) or "",
                )
            )
        else:
            entries.append(rec)
    return [
        DlqEntry(rec, _letter(rec.headers), tuple(replays.get(rec.id, ())))
        for rec in sorted(entries, key=lambda r: (r.partition, r.offset))
    ]


# --- formatting ------------------------------------------------------------------------------


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _printable(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


def show_bytes(data: bytes | None) -> str:
    """A key or header value for people: its text when it is printable UTF-8, else ``0x`` hex."""
    if data is None:
        return "(null)"
    text = _printable(data)
    return text if text is not None else "0x" + data.hex()


def _source(letter: DeadLetter) -> str:
    if not letter.source_topic:
        return "(no source topic)"
    return f"{letter.source_topic}[{letter.source_partition}]@{letter.source_offset}"


def _failed_at(letter: DeadLetter) -> str:
    return letter.failed_at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _state(entry: DlqEntry) -> str:
    n = len(entry.replays)
    return "" if n == 0 else "replayed" if n == 1 else f"replayed x{n}"


def format_list(entries: Sequence[DlqEntry]) -> list[str]:
    """One line per entry, columns separated by two spaces."""
    return [
        "  ".join(
            [
                f"{entry.id!s:<9}",
                f"{_failed_at(entry.letter):<20}",
                f"{_clip(_source(entry.letter), _SOURCE_WIDTH):<{_SOURCE_WIDTH}}",
                f"{_clip(entry.letter.error_class or '?', _CLASS_WIDTH):<{_CLASS_WIDTH}}",
                f"{_clip(entry.letter.error_message, _MESSAGE_WIDTH):<{_MESSAGE_WIDTH}}",
                f"key={_clip(show_bytes(entry.record.key), _KEY_WIDTH):<{_KEY_WIDTH}}",
                f"{len(entry.record.value or b''):>7}B",
                _state(entry),
            ]
        ).rstrip()
        for entry in entries
    ]


def format_summary(matching: Sequence[DlqEntry], shown: int) -> str:
    """``N entries (R replayed): Class=n, ...``, most frequent class first."""
    counts = Counter(e.letter.error_class or "?" for e in matching)
    replayed = sum(1 for e in matching if e.replays)
    by_class = ", ".join(f"{c}={n}" for c, n in sorted(counts.items(), key=lambda i: (-i[1], i[0])))
    head = f"{len(matching)} {'entry' if len(matching) == 1 else 'entries'}"
    if shown < len(matching):
        head = f"showing {shown} of {head}"
    return f"{head} ({replayed} replayed)" + (f": {by_class}" if by_class else "")


def hex_dump(data: bytes, limit: int) -> list[str]:
    """``offset  hex bytes  |ascii|`` lines for the first ``limit`` bytes."""
    lines = []
    shown = data[:limit]
    for start in range(0, len(shown), 16):
        chunk = shown[start : start + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{start:08x}  {hexes:<47}  |{text}|")
    if len(data) > limit:
        lines.append(f"... {len(data) - limit} more bytes (--bytes to show more)")
    return lines


def _json_default(obj: object) -> Any:
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, bytes):
        return "0x" + obj.hex()
    if isinstance(obj, Decimal | uuid.UUID):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def entry_json(entry: DlqEntry) -> dict[str, Any]:
    rec, letter = entry.record, entry.letter
    return {
        "id": str(entry.id),
        "partition": rec.partition,
        "offset": rec.offset,
        "failed_at": letter.failed_at.isoformat(),
        "source_topic": letter.source_topic or None,
        "source_partition": letter.source_partition,
        "source_offset": letter.source_offset,
        "error_class": letter.error_class,
        "error_message": letter.error_message,
        "key": None if rec.key is None else _printable(rec.key),
        "key_hex": None if rec.key is None else rec.key.hex(),
        "value_size": None if rec.value is None else len(rec.value),
        "replays": [{"marker": str(r.marker), "to": r.to, "at": r.at} for r in entry.replays],
    }


@dataclass(frozen=True)
class Decoded:
    """The value decoded with its writer schema, or why it could not be."""

    schema_id: int | None
    record: Any = None
    reason: str | None = None


def format_entry(entry: DlqEntry, decoded: Decoded, dump_bytes: int) -> list[str]:
    rec, letter = entry.record, entry.letter
    value = rec.value
    lines = [
        f"id:            {entry.id}",
        f"failed_at:     {_failed_at(letter)}",
        f"source:        {_source(letter)}",
        f"error_class:   {letter.error_class}",
        f"error_message: {letter.error_message}",
        f"key:           {show_bytes(rec.key)}",
        f"value:         {'(null)' if value is None else f'{len(value)} bytes'}",
    ]
    for replay in entry.replays:
        lines.append(f"replayed:      to {replay.to} at {replay.at} (marker {replay.marker})")
    lines.append("headers:")
    lines.extend(f"  {k}: {show_bytes(v)}" for k, v in rec.headers)
    if value is not None:
        lines.append("value (hex):")
        lines.extend(f"  {line}" for line in hex_dump(value, dump_bytes))
    if decoded.reason is not None:
        lines.append(f"decoded: not decoded: {decoded.reason}")
    else:
        lines.append(f"decoded (schema id {decoded.schema_id}):")
        text = json.dumps(decoded.record, indent=2, default=_json_default, ensure_ascii=False)
        lines.extend(f"  {line}" for line in text.splitlines())
    return lines


def show_json(entry: DlqEntry, decoded: Decoded, dump_bytes: int) -> dict[str, Any]:
    value = entry.record.value or b""
    return {
        **entry_json(entry),
        "headers": [
            {"name": k, "value": None if v is None else show_bytes(v)}
            for k, v in entry.record.headers
        ],
        "value_hex": value[:dump_bytes].hex(),
        "value_truncated": len(value) > dump_bytes,
        "schema_id": decoded.schema_id,
        "decoded": decoded.record if decoded.reason is None else None,
        "decode_error": decoded.reason,
    }


# --- Kafka -----------------------------------------------------------------------------------


def _client_settings(timeout_s: float) -> dict[str, Any]:
    ms = max(1000, int(timeout_s * 1000))
    return {
        "logger": _QUIET,
        # An unreachable broker must fail within the command's timeout, not librdkafka's minutes.
        "socket.timeout.ms": ms,
        "socket.connection.setup.timeout.ms": ms,
    }


def _unreachable(kafka: KafkaConfig, exc: KafkaException) -> DlqError:
    err = exc.args[0] if exc.args else exc
    detail = err.str() if isinstance(err, KafkaError) else str(err)
    return DlqError(f"cannot reach Kafka at {kafka.bootstrap_servers}: {detail}")


def _partitions(consumer: Consumer, kafka: KafkaConfig, topic: str, timeout_s: float) -> list[int]:
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s)
    except KafkaException as exc:
        raise _unreachable(kafka, exc) from exc
    tmeta = meta.topics.get(topic)
    if tmeta is None or tmeta.error is not None or not tmeta.partitions:
        raise DlqError(f"topic {topic} does not exist (run `pushline topics ensure`)")
    return sorted(tmeta.partitions)


def _new_consumer(kafka: KafkaConfig, timeout_s: float) -> Consumer:
    return Consumer(
        kafka.to_librdkafka(
            **{
                "group.id": f"pushline-dlq-{uuid.uuid4().hex}",  # never joins: assign() only
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                **_client_settings(timeout_s),
            }
        )
    )


def read_records(
    kafka: KafkaConfig,
    topic: str,
    timeout_s: float,
    starts: Mapping[int, int] | None = None,
) -> tuple[list[Record], list[int]]:
    """Every record of ``topic`` (or of the partitions in ``starts``, from those offsets on) up to
    the end, and the topic's partition numbers. ``timeout_s`` bounds each wait without progress."""
    consumer = _new_consumer(kafka, timeout_s)
    try:
        partitions = _partitions(consumer, kafka, topic, timeout_s)
        wanted = {p: OFFSET_BEGINNING for p in partitions} if starts is None else dict(starts)
        wanted = {p: o for p, o in wanted.items() if p in partitions}
        records: list[Record] = []
        if not wanted:
            return records, partitions
        # Each partition is read from its beginning even when a later offset is wanted: Tansu
        # answers a fetch past the end with neither records nor an end-of-partition event, so a
        # seek to an offset that does not exist would wait out the timeout.
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in wanted])
        open_partitions = set(wanted)
        last_error = "no response"
        idle_since = time.monotonic()
        while open_partitions:
            if time.monotonic() - idle_since > timeout_s:
                raise DlqError(
                    f"could not read {topic} partitions {sorted(open_partitions)} to their end "
                    f"within {timeout_s:g}s: {last_error}"
                )
            for msg in consumer.consume(1000, timeout=0.2):
                idle_since = time.monotonic()
                err = msg.error()
                partition = msg.partition() or 0
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        open_partitions.discard(partition)
                    else:
                        last_error = err.str()
                    continue
                offset = msg.offset() or 0
                if offset < wanted.get(partition, 0):
                    continue  # before the first entry asked for
                records.append(_record(msg, partition, offset))
        return records, partitions
    finally:
        consumer.close()


def _record(msg: Message, partition: int, offset: int) -> Record:
    _, ts = msg.timestamp()
    return Record(
        partition=partition,
        offset=offset,
        timestamp_ms=ts,
        key=msg.key(),
        value=msg.value(),
        headers=tuple(message_headers(msg)),
    )


def find_entries(
    kafka: KafkaConfig, topic: str, ids: Sequence[EntryId], timeout_s: float
) -> list[DlqEntry]:
    """The entries ``ids`` with their replays, reading only their partitions and keeping records
    from the first wanted id on (markers always follow their entry). DlqError names an id that is
    not there."""
    starts: dict[int, int] = {}
    for i in ids:
        starts[i.partition] = min(starts.get(i.partition, i.offset), i.offset)
    records, partitions = read_records(kafka, topic, timeout_s, starts)
    by_id = {e.id: e for e in build_entries(records)}
    markers = {r.id for r in records if r.is_marker}
    found = []
    for i in ids:
        if i in markers:
            raise DlqError(f"{i} in {topic} is a replay marker, not a dead letter")
        if i not in by_id:
            where = "" if i.partition in partitions else f" (it has partitions 0-{max(partitions)})"
            raise DlqError(f"no entry {i} in {topic}{where}")
        found.append(by_id[i])
    return found


# --- schema registry -----------------------------------------------------------------------


def decode_value(value: bytes | None, registry: SchemaRegistryConfig | None) -> Decoded:
    """Best effort: the value decoded with the writer schema its wire-format header names."""
    from schemas import make_registry_client, schema_id_of  # noqa: PLC0415 - only `show` needs it

    try:
        schema_id = schema_id_of(value)
    except CodecError as exc:
        return Decoded(None, reason=str(exc))
    if registry is None:
        return Decoded(schema_id, reason="no schema registry configured (SCHEMA_REGISTRY_URL)")
    assert value is not None  # schema_id_of refuses None
    try:
        client = make_registry_client(registry)
        return _decode(client, schema_id, value)
    except PushlineError as exc:
        return Decoded(schema_id, reason=str(exc))


def _decode(client: Any, schema_id: int, value: bytes) -> Decoded:
    """The one place the registry client's and fastavro's errors are turned into reasons."""
    import fastavro  # noqa: PLC0415
    import httpx  # noqa: PLC0415
    from confluent_kafka.schema_registry.error import SchemaRegistryError  # noqa: PLC0415

    try:
        schema = client.get_schema(schema_id)
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404:
            return Decoded(schema_id, reason=f"schema id {schema_id} is unknown to the registry")
        return Decoded(
            schema_id, reason=f"schema registry refused schema id {schema_id}: {exc.error_message}"
        )
    except (httpx.HTTPError, OSError) as exc:
        return Decoded(
            schema_id, reason=f"schema registry unreachable: {type(exc).__name__}: {exc}"
        )
    if (schema.schema_type or "AVRO") != "AVRO":
        return Decoded(schema_id, reason=f"schema id {schema_id} is {schema.schema_type}, not Avro")
    body = io.BytesIO(value[5:])
    try:
        parsed = fastavro.parse_schema(json.loads(schema.schema_str))
        record = fastavro.schemaless_reader(body, parsed)
    except Exception as exc:  # noqa: BLE001 - fastavro raises anything, EOFError to ValueError
        return Decoded(
            schema_id,
            reason=f"undecodable Avro body for schema id {schema_id}: {type(exc).__name__}: {exc}",
        )
    left = len(value) - 5 - body.tell()
    if left:
        return Decoded(
            schema_id, reason=f"schema id {schema_id} leaves {left} bytes of the body unread"
        )
    return Decoded(schema_id, record=record)


# --- replay --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Replayed:
    entry: DlqEntry
    topic: str
    partition: int
    offset: int


@dataclass
class _Acks:
    done: dict[EntryId, tuple[str, int, int]] = field(default_factory=dict)
    failed: dict[EntryId, str] = field(default_factory=dict)


def replay_headers(record: Record, dlq_topic: str) -> list[tuple[str, bytes | None]]:
    """The entry's original headers (the DLQ's own removed) plus where the replay came from."""
    kept = [(k, v) for k, v in record.headers if not k.startswith(_DLQ_HEADER_PREFIX)]
    origin = f"{dlq_topic}:{record.partition}:{record.offset}".encode()
    return [*kept, (HEADER_REPLAYED_FROM, origin)]


def _produce_all(
    producer: Producer,
    items: Sequence[tuple[EntryId, dict[str, Any]]],
    timeout_s: float,
) -> _Acks:
    acks = _Acks()

    def on_delivery(eid: EntryId) -> Any:
        def report(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                acks.failed[eid] = err.str()
            else:
                acks.done[eid] = (msg.topic() or "", msg.partition() or 0, msg.offset() or 0)

        return report

    for eid, kwargs in items:
        producer.produce(**kwargs, on_delivery=on_delivery(eid))
    producer.flush(timeout_s)
    for eid, _ in items:
        if eid not in acks.done and eid not in acks.failed:
            acks.failed[eid] = f"no acknowledgement within {timeout_s:g}s"
    return acks


def replay(
    kafka: KafkaConfig, dlq_topic: str, entries: Sequence[DlqEntry], timeout_s: float
) -> list[Replayed]:
    """Re-produce each entry's key and value bytes unchanged to its source topic (idempotent
    producer, acks=all), then record each acknowledged replay with a marker in the DLQ."""
    producer = Producer(
        kafka.to_librdkafka(
            **{
                "enable.idempotence": True,
                "acks": "all",
                # our producers' partitioner: the key lands on the partition it was first sent to
                "partitioner": "murmur2_random",
                "message.timeout.ms": max(1000, int(timeout_s * 1000)),
                **_client_settings(timeout_s),
            }
        )
    )
    sends = [
        (
            e.id,
            {
                "topic": e.letter.source_topic,
                "key": e.record.key,
                "value": e.record.value,
                "headers": replay_headers(e.record, dlq_topic),
            },
        )
        for e in entries
    ]
    acks = _produce_all(producer, sends, timeout_s)
    done = [e for e in entries if e.id in acks.done]
    now = datetime.now(UTC).isoformat()
    markers = []
    for e in done:
        topic, partition, offset = acks.done[e.id]
        marker_headers: list[tuple[str, str | bytes | None]] = [
            (HEADER_REPLAYED, str(e.id)),
            (HEADER_REPLAYED_TO, f"{topic}:{partition}:{offset}"),
            (HEADER_REPLAYED_AT, now),
        ]
        markers.append(
            (
                e.id,
                {
                    "topic": dlq_topic,
                    "partition": e.id.partition,  # after its entry, so a reader of the entry sees it
                    "key": None,
                    "value": None,
                    "headers": marker_headers,
                },
            )
        )
    marked = _produce_all(producer, markers, timeout_s)
    replayed = [Replayed(e, *acks.done[e.id]) for e in done]
    problems = [f"{i}: {why}" for i, why in sorted(acks.failed.items())]
    unmarked = sorted(marked.failed.items())
    if problems or unmarked:
        ok = ", ".join(str(r.entry.id) for r in replayed) or "none"
        parts = []
        if problems:
            parts.append(f"not replayed: {'; '.join(problems)}")
        if unmarked:
            parts.append(
                "replayed but not recorded, so a second replay would not be refused: "
                + "; ".join(f"{i}: {why}" for i, why in unmarked)
            )
        raise DlqError(f"replayed {ok}; " + "; ".join(parts))
    return replayed


def check_topics_exist(kafka: KafkaConfig, topics: Iterable[str], timeout_s: float) -> None:
    consumer = _new_consumer(kafka, timeout_s)  # consumers never auto-create topics on metadata
    try:
        for topic in sorted(set(topics)):
            _partitions(consumer, kafka, topic, timeout_s)
    finally:
        consumer.close()


# --- commands ------------------------------------------------------------------------------


def _cmd_list(
    args: argparse.Namespace, kafka: KafkaConfig, topics: TopicsConfig, out: TextIO
) -> int:
    filters = Filters.build(topics, args.source_topic, args.error_class)
    records, _ = read_records(kafka, topics.dlq, args.timeout)
    matching = [e for e in build_entries(records) if filters.match(e)]
    # oldest failure first; the id breaks ties, so the order is the same on every run
    matching.sort(key=lambda e: (e.letter.failed_at, e.id))
    shown = matching if args.limit is None else matching[: args.limit]
    if args.json:
        out.write(json.dumps([entry_json(e) for e in shown], ensure_ascii=False) + "\n")
        return 0
    for line in format_list(shown):
        out.write(line + "\n")
    out.write(format_summary(matching, len(shown)) + "\n")
    return 0


def _cmd_show(
    args: argparse.Namespace, kafka: KafkaConfig, topics: TopicsConfig, out: TextIO
) -> int:
    eid = EntryId.parse(args.id)
    (entry,) = find_entries(kafka, topics.dlq, [eid], args.timeout)
    try:
        registry: SchemaRegistryConfig | None = SchemaRegistryConfig.from_env()
    except ConfigError:
        registry = None
    decoded = decode_value(entry.record.value, registry)
    if args.json:
        text = json.dumps(
            show_json(entry, decoded, args.bytes), default=_json_default, ensure_ascii=False
        )
        out.write(text + "\n")
    else:
        out.write("\n".join(format_entry(entry, decoded, args.bytes)) + "\n")
    return 0


def _select_for_replay(
    args: argparse.Namespace, kafka: KafkaConfig, topics: TopicsConfig
) -> tuple[list[DlqEntry], list[str]]:
    """The entries to replay and, for ``--all``, a line per entry skipped."""
    if args.ids:
        ids = list(dict.fromkeys(EntryId.parse(i) for i in args.ids))
        chosen = find_entries(kafka, topics.dlq, ids, args.timeout)
        for e in chosen:  # all or nothing: refuse before anything is produced
            if not e.letter.source_topic:
                raise DlqError(
                    f"refusing {e.id}: it has no {HEADER_SOURCE_TOPIC} header, so there is no "
                    "topic to replay it to"
                )
            if e.replays and not args.force:
                last = e.replays[-1]
                raise DlqError(
                    f"refusing {e.id}: already replayed to {last.to} at {last.at}; "
                    "pass --force to replay it again"
                )
        return chosen, []
    filters = Filters.build(topics, args.source_topic, args.error_class)
    records, _ = read_records(kafka, topics.dlq, args.timeout)
    chosen, skipped = [], []
    for e in build_entries(records):
        if not filters.match(e):
            continue
        if not e.letter.source_topic:
            skipped.append(f"skipped {e.id}: no {HEADER_SOURCE_TOPIC} header")
        elif e.replays and not args.force:
            skipped.append(f"skipped {e.id}: already replayed to {e.replays[-1].to} (--force)")
        else:
            chosen.append(e)
    return chosen, skipped


def _cmd_replay(
    args: argparse.Namespace, kafka: KafkaConfig, topics: TopicsConfig, out: TextIO
) -> int:
    chosen, skipped = _select_for_replay(args, kafka, topics)
    for line in skipped:
        out.write(line + "\n")
    if chosen:
        check_topics_exist(kafka, (e.letter.source_topic for e in chosen), args.timeout)
    if args.dry_run:
        for e in chosen:
            out.write(
                f"would replay {e.id} -> {e.letter.source_topic}  "
                f"key={_clip(show_bytes(e.record.key), _KEY_WIDTH)}  "
                f"{len(e.record.value or b'')}B\n"
            )
        out.write(f"dry run: {len(chosen)} would be replayed, {len(skipped)} skipped\n")
        return 0
    done = replay(kafka, topics.dlq, chosen, args.timeout) if chosen else []
    for r in done:
        out.write(f"replayed {r.entry.id} -> {r.topic}[{r.partition}]@{r.offset}\n")
    out.write(f"{len(done)} replayed, {len(skipped)} skipped\n")
    return 0


def _check_args(args: argparse.Namespace) -> None:
    """Mistakes on the command line, found before the environment is looked at (exit code 2)."""
    if args.timeout <= 0:
        raise ValidationError("--timeout", "must be positive")
    if args.what == "list" and args.limit is not None and args.limit < 0:
        raise ValidationError("--limit", "must not be negative")
    if args.what == "show":
        EntryId.parse(args.id)
        if args.bytes < 0:
            raise ValidationError("--bytes", "must not be negative")
    if args.what == "replay":
        if bool(args.ids) == bool(args.all):
            raise ValidationError("replay", "give entry IDs or --all (one of the two)")
        if args.ids and (args.source_topic or args.error_class):
            raise ValidationError("replay", "--source-topic and --error-class go with --all")
        for raw in args.ids:
            EntryId.parse(raw)


def run_dlq(args: argparse.Namespace, out: TextIO) -> int:
    """``pushline dlq list|show|replay``; ``args`` as the command line parser builds them."""
    _check_args(args)
    commands = {"list": _cmd_list, "show": _cmd_show, "replay": _cmd_replay}
    kafka = KafkaConfig.from_env()
    topics = TopicsConfig.from_env()
    return commands[args.what](args, kafka, topics, out)
