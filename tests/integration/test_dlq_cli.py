"""`pushline dlq` as an operator runs it: a subprocess against the embedded stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from confluent_kafka.serialization import MessageField, SerializationContext

from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.dlq import HEADER_ERROR_CLASS, HEADER_SOURCE_TOPIC, dead_letter_headers
from pushline.headers import message_headers
from pushline.stack import StackHandle
from pushline.topics import ensure_topics
from schemas import EventSerializer, make_registry_client
from tests.integration.pipeline import raw_producer, request, running_dispatcher

pytestmark = pytest.mark.integration

GARBAGE = b"\x07not avro at all\xff\xfe" + bytes(range(40))


@dataclass(frozen=True)
class Seeded:
    """The dead letters put into a fresh DLQ, by name, as ``PARTITION:OFFSET`` ids."""

    topics: TopicsConfig
    env: dict[str, str]
    ids: dict[str, str]
    values: dict[str, bytes]
    keys: dict[str, bytes]
    notification_id: str


def _produce(
    kafka: KafkaConfig,
    topic: str,
    partition: int,
    key: bytes,
    value: bytes,
    headers: list[tuple[str, str | bytes | None]],
) -> str:
    producer = raw_producer(kafka)
    got: list[Message] = []
    producer.produce(
        topic,
        key=key,
        value=value,
        headers=headers,
        partition=partition,
        on_delivery=lambda err, msg: got.append(msg),
    )
    assert producer.flush(10) == 0
    (msg,) = got
    assert msg.error() is None
    return f"{msg.partition()}:{msg.offset()}"


@pytest.fixture
def seeded(
    stack: StackHandle,
    kafka_config: KafkaConfig,
    registry_config: SchemaRegistryConfig,
    topics_config: TopicsConfig,
) -> Seeded:
    topics = topics_config
    ensure_topics(kafka_config, topics)
    req = request()
    avro = EventSerializer(type(req), make_registry_client(registry_config))(
        req, SerializationContext(topics.requests, MessageField.VALUE)
    )
    trace = ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    letters = {
        # a valid request the dispatcher could not deliver: decodable, replayable
        "valid": (
            0,
            b"device-valid",
            avro,
            dead_letter_headers(
                topics.requests, 3, 17, "provider down", "DeliveryError", original=[trace]
            ),
        ),
        # bytes that are not the wire format at all
        "garbage": (
            0,
            b"\x01\x02\xfe",
            GARBAGE,
            dead_letter_headers(topics.requests, 1, 4, "bad magic byte 0x07", "CodecError"),
        ),
        # a dead letter without its source topic header: nowhere to replay it to
        "orphan": (
            1,
            b"device-orphan",
            b"\x00\x00\x00\x00\x01x",
            [
                (k, v)
                for k, v in dead_letter_headers("x", 0, 0, "lost", "CodecError")
                if k != HEADER_SOURCE_TOPIC
            ],
        ),
        # from another topic, with a long message the list must truncate
        "outcome": (
            2,
            b"device-outcome",
            b"\x00\x00\x0f\x42\x3f" + b"\x00" * 12,
            dead_letter_headers(
                topics.outcomes,
                0,
                9,
                "schema id 999999 unknown " + "y" * 200,
                "UnknownSchemaIdError",
            ),
        ),
    }
    ids, values, keys = {}, {}, {}
    for name, (partition, key, value, headers) in letters.items():
        ids[name] = _produce(kafka_config, topics.dlq, partition, key, value, headers)
        values[name], keys[name] = value, key
    env = {**os.environ, **stack.env, "PUSHLINE_TOPIC_PREFIX": topics.prefix}
    return Seeded(topics, env, ids, values, keys, req.notification_id)


def _dlq(seeded: Seeded, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pushline", "dlq", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=seeded.env,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def _one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pushline: error: ")
    return lines[0]


def _read_all(kafka: KafkaConfig, topic: str) -> list[Message]:
    """Every record of ``topic``, to its end (end-of-partition events, as the CLI reads)."""
    consumer = Consumer(
        kafka.to_librdkafka(
            **{
                "group.id": f"test-{uuid.uuid4().hex}",
                "enable.partition.eof": True,
                "enable.auto.commit": False,
            }
        )
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        open_partitions, out = set(partitions), []
        deadline = time.monotonic() + 30
        while open_partitions:
            assert time.monotonic() < deadline, f"{topic} not read to its end"
            for msg in consumer.consume(100, timeout=0.2):
                err = msg.error()
                if err is None:
                    out.append(msg)
                elif err.code() == KafkaError._PARTITION_EOF:
                    open_partitions.discard(msg.partition())
        return out
    finally:
        consumer.close()


def _list_json(seeded: Seeded, *args: str) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = json.loads(_ok(_dlq(seeded, "list", "--json", *args)))
    return entries


def test_list_prints_every_entry_and_a_summary_by_error_class(seeded: Seeded) -> None:
    out = _ok(_dlq(seeded, "list")).splitlines()
    assert len(out) == 5
    rows, summary = out[:4], out[4]
    by_id = {row.split()[0]: row for row in rows}
    assert set(by_id) == set(seeded.ids.values())
    valid = by_id[seeded.ids["valid"]]
    assert f"{seeded.topics.requests}[3]@17" in valid
    assert "DeliveryError" in valid
    assert "provider down" in valid
    assert "key=device-valid" in valid
    assert f"{len(seeded.values['valid'])}B" in valid
    outcome = by_id[seeded.ids["outcome"]]
    assert "y" * 200 not in outcome, "long messages are truncated"
    assert "…" in outcome
    assert "key=0x0102fe" in by_id[seeded.ids["garbage"]], "binary keys are shown as hex"
    assert "(no source topic)" in by_id[seeded.ids["orphan"]]
    assert summary == (
        "4 entries (0 replayed): CodecError=2, DeliveryError=1, UnknownSchemaIdError=1"
    )


def test_list_json_filters_and_limit(seeded: Seeded) -> None:
    entries = _list_json(seeded)
    assert {e["id"] for e in entries} == set(seeded.ids.values())
    valid = next(e for e in entries if e["id"] == seeded.ids["valid"])
    assert valid["source_topic"] == seeded.topics.requests
    assert valid["source_partition"] == 3
    assert valid["source_offset"] == 17
    assert valid["error_class"] == "DeliveryError"
    assert valid["key"] == "device-valid"
    assert valid["value_size"] == len(seeded.values["valid"])
    assert valid["replays"] == []

    # the logical topic name means this deployment's prefixed topic
    from_requests = _list_json(seeded, "--source-topic", "push.requests")
    assert {e["id"] for e in from_requests} == {seeded.ids["valid"], seeded.ids["garbage"]}
    exact = _list_json(seeded, "--source-topic", seeded.topics.outcomes)
    assert [e["id"] for e in exact] == [seeded.ids["outcome"]]
    codec = _list_json(seeded, "--error-class", "codecerror")
    assert {e["id"] for e in codec} == {seeded.ids["garbage"], seeded.ids["orphan"]}
    both = _list_json(seeded, "--source-topic", "push.requests", "--error-class", "CodecError")
    assert [e["id"] for e in both] == [seeded.ids["garbage"]]

    assert len(_list_json(seeded, "--limit", "2")) == 2
    limited = _ok(_dlq(seeded, "list", "--limit", "1")).splitlines()
    assert len(limited) == 2
    assert limited[-1].startswith("showing 1 of 4 entries")


def test_show_decodes_a_valid_avro_value_with_its_headers(seeded: Seeded) -> None:
    out = _ok(_dlq(seeded, "show", seeded.ids["valid"]))
    assert f"id:            {seeded.ids['valid']}" in out
    assert "traceparent: 00-0af7651916cd43dd8448eb211c80319c" in out
    assert f"{HEADER_ERROR_CLASS}: DeliveryError" in out
    assert "value (hex):" in out
    assert "00000000  00 00 00" in out, "wire format: magic byte and schema id"
    assert "decoded (schema id" in out
    assert seeded.notification_id in out

    shown = json.loads(_ok(_dlq(seeded, "show", seeded.ids["valid"], "--json")))
    assert shown["decode_error"] is None
    assert shown["decoded"]["notification_id"] == seeded.notification_id
    assert isinstance(shown["schema_id"], int)
    assert {
        "name": "traceparent",
        "value": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    } in shown["headers"]
    assert shown["value_hex"] == seeded.values["valid"][:256].hex()


def test_show_dumps_garbage_and_says_why_it_is_not_decoded(seeded: Seeded) -> None:
    out = _ok(_dlq(seeded, "show", seeded.ids["garbage"], "--bytes", "16"))
    assert "00000000  07 6e 6f 74 20 61 76 72 6f 20 61 74 20 61 6c 6c  |.not avro at all|" in out
    assert f"... {len(GARBAGE) - 16} more bytes" in out
    assert "not decoded: bad magic byte 0x07" in out

    unknown = json.loads(_ok(_dlq(seeded, "show", seeded.ids["outcome"], "--json")))
    assert unknown["schema_id"] == 999999
    assert unknown["decoded"] is None
    assert "unknown to the registry" in unknown["decode_error"]


def test_replay_reproduces_the_original_bytes_and_refuses_a_second_replay(
    seeded: Seeded, kafka_config: KafkaConfig
) -> None:
    eid = seeded.ids["valid"]
    out = _ok(_dlq(seeded, "replay", eid))
    assert out.startswith(f"replayed {eid} -> {seeded.topics.requests}[")

    (replayed,) = _read_all(kafka_config, seeded.topics.requests)
    assert replayed.key() == seeded.keys["valid"]
    assert replayed.value() == seeded.values["valid"]
    headers = message_headers(replayed)
    assert headers == [
        ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("pushline.dlq.replayed_from", f"{seeded.topics.dlq}:{eid}".encode()),
    ]

    again = _one_line_error(_dlq(seeded, "replay", eid), 1)
    assert eid in again
    assert "--force" in again
    assert len(_read_all(kafka_config, seeded.topics.requests)) == 1

    # markers are not entries; the entry shows its replay
    entries = {e["id"]: e for e in _list_json(seeded)}
    assert set(entries) == set(seeded.ids.values())
    replays = entries[eid]["replays"]
    assert isinstance(replays, list) and len(replays) == 1
    assert replays[0]["to"].startswith(f"{seeded.topics.requests}:")
    text = _ok(_dlq(seeded, "list")).splitlines()
    assert next(r for r in text if r.startswith(eid)).endswith("replayed")
    assert text[-1].startswith("4 entries (1 replayed)")

    _ok(_dlq(seeded, "replay", eid, "--force"))
    copies = _read_all(kafka_config, seeded.topics.requests)
    assert [m.value() for m in copies] == [seeded.values["valid"]] * 2
    after = next(e for e in _list_json(seeded) if e["id"] == eid)
    assert isinstance(after["replays"], list) and len(after["replays"]) == 2


def test_replay_refuses_an_entry_without_source_topic_and_replays_nothing(
    seeded: Seeded, kafka_config: KafkaConfig
) -> None:
    line = _one_line_error(_dlq(seeded, "replay", seeded.ids["valid"], seeded.ids["orphan"]), 1)
    assert seeded.ids["orphan"] in line
    assert HEADER_SOURCE_TOPIC in line
    assert _read_all(kafka_config, seeded.topics.requests) == [], "all or nothing"


def test_replay_all_with_filters_and_dry_run(seeded: Seeded, kafka_config: KafkaConfig) -> None:
    dry = _ok(_dlq(seeded, "replay", "--all", "--dry-run")).splitlines()
    assert f"skipped {seeded.ids['orphan']}: no {HEADER_SOURCE_TOPIC} header" in dry
    assert sum(1 for line in dry if line.startswith("would replay")) == 3
    assert dry[-1] == "dry run: 3 would be replayed, 1 skipped"
    assert _read_all(kafka_config, seeded.topics.requests) == []
    assert all(not e["replays"] for e in _list_json(seeded))

    out = _ok(_dlq(seeded, "replay", "--all", "--source-topic", "push.requests")).splitlines()
    assert out[-1] == "2 replayed, 0 skipped"
    values = sorted(m.value() or b"" for m in _read_all(kafka_config, seeded.topics.requests))
    assert values == sorted([seeded.values["valid"], seeded.values["garbage"]])
    assert _read_all(kafka_config, seeded.topics.outcomes) == []

    # a second --all skips what was replayed instead of failing
    second = _ok(_dlq(seeded, "replay", "--all", "--source-topic", "push.requests"))
    assert second.splitlines()[-1] == "0 replayed, 2 skipped"


def test_unknown_ids_are_one_line_exit_1(seeded: Seeded) -> None:
    dlq = seeded.topics.dlq
    assert _one_line_error(_dlq(seeded, "show", "0:999"), 1).endswith(f"no entry 0:999 in {dlq}")
    assert "partitions 0-3" in _one_line_error(_dlq(seeded, "show", "99:0"), 1)
    assert "0:999" in _one_line_error(_dlq(seeded, "replay", "0:999"), 1)
    assert "PARTITION:OFFSET" in _one_line_error(_dlq(seeded, "show", "zero"), 2)


def test_a_missing_dlq_topic_is_one_line_exit_1(seeded: Seeded) -> None:
    env = {**seeded.env, "PUSHLINE_TOPIC_PREFIX": f"absent{uuid.uuid4().hex[:6]}."}
    result = subprocess.run(
        [sys.executable, "-m", "pushline", "dlq", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert "does not exist" in _one_line_error(result, 1)


def test_a_dead_letter_written_by_the_dispatcher_is_listed_shown_and_replayed(
    seeded: Seeded,
    stack: StackHandle,
    kafka_config: KafkaConfig,
    registry_config: SchemaRegistryConfig,
) -> None:
    topics = seeded.topics
    poison = b"\x00\x00\x0f\x42\x3f" + b"\x01" * 20  # a schema id the registry does not know
    producer = raw_producer(kafka_config)
    producer.produce(topics.requests, key=b"poisoned-device", value=poison)
    assert producer.flush(10) == 0
    env = {**os.environ, **stack.env}
    with running_dispatcher(kafka_config, registry_config, topics, env):
        deadline = time.monotonic() + 60
        while not any(m.key() == b"poisoned-device" for m in _read_all(kafka_config, topics.dlq)):
            assert time.monotonic() < deadline, "the dispatcher did not dead-letter the poison"
            time.sleep(0.5)
    entry = next(e for e in _list_json(seeded) if e["key"] == "poisoned-device")
    assert entry["source_topic"] == topics.requests
    assert entry["source_offset"] == 0
    assert entry["error_class"]
    shown = json.loads(_ok(_dlq(seeded, "show", str(entry["id"]), "--json")))
    assert shown["value_hex"] == poison.hex()
    assert "unknown to the registry" in shown["decode_error"]
    _ok(_dlq(seeded, "replay", str(entry["id"])))
    copies = [m for m in _read_all(kafka_config, topics.requests) if m.key() == b"poisoned-device"]
    assert [m.value() for m in copies] == [poison, poison], "the original and its replay"
