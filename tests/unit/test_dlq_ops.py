"""`pushline dlq` without a broker: ids, formatting, marker folding, and the CLI's mistakes."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from pushline._dlq_ops import (
    HEADER_REPLAYED,
    HEADER_REPLAYED_AT,
    HEADER_REPLAYED_FROM,
    HEADER_REPLAYED_TO,
    EntryId,
    Filters,
    Record,
    build_entries,
    decode_value,
    format_list,
    format_summary,
    hex_dump,
    replay_headers,
    show_bytes,
)
from pushline.config import SchemaRegistryConfig, TopicsConfig
from pushline.dlq import dead_letter_headers
from pushline.errors import ValidationError


def _headers(**kw: object) -> tuple[tuple[str, bytes | None], ...]:
    raw = dead_letter_headers(
        str(kw.get("topic", "p.push.requests")),
        3,
        17,
        str(kw.get("message", "provider down")),
        str(kw.get("cls", "DeliveryError")),
        original=[("traceparent", b"00-abc-01")],
    )
    return tuple((k, v.encode() if isinstance(v, str) else v) for k, v in raw)


def _record(partition: int, offset: int, **kw: object) -> Record:
    return Record(partition, offset, 0, b"device-1", b"\x00\x00\x00\x00\x01abc", _headers(**kw))


def _marker(partition: int, offset: int, target: str) -> Record:
    headers = (
        (HEADER_REPLAYED, target.encode()),
        (HEADER_REPLAYED_TO, b"p.push.requests:2:40"),
        (HEADER_REPLAYED_AT, b"2025-01-01T00:00:00+00:00"),
    )
    return Record(partition, offset, 0, None, None, headers)


@pytest.mark.parametrize(("text", "expected"), [("0:0", (0, 0)), (" 3:1234 ", (3, 1234))])
def test_entry_ids_parse_and_print_as_partition_colon_offset(
    text: str, expected: tuple[int, int]
) -> None:
    eid = EntryId.parse(text)
    assert (eid.partition, eid.offset) == expected
    assert str(eid) == f"{expected[0]}:{expected[1]}"


@pytest.mark.parametrize("text", ["", "3", "3:", ":4", "a:1", "1:b", "-1:2", "1:2:3", "1.0:2"])
def test_malformed_entry_ids_are_validation_errors(text: str) -> None:
    with pytest.raises(ValidationError, match="PARTITION:OFFSET"):
        EntryId.parse(text)


def test_markers_fold_into_their_entries_and_are_not_entries() -> None:
    records = [
        _record(1, 0),
        _record(0, 5, cls="CodecError"),
        _marker(1, 1, "1:0"),
        _marker(1, 2, "1:0"),
        _marker(1, 3, "not an id"),
    ]
    entries = build_entries(records)
    assert [str(e.id) for e in entries] == ["0:5", "1:0"]
    assert entries[0].replays == ()
    assert [str(r.marker) for r in entries[1].replays] == ["1:1", "1:2"]
    assert entries[1].replays[0].to == "p.push.requests:2:40"


def test_a_mangled_dead_letter_header_does_not_hide_the_entry() -> None:
    headers = tuple(
        (k, b"soon" if k == "pushline.dlq.failed.at" else b"x" if k.endswith("offset") else v)
        for k, v in _headers()
    )
    (entry,) = build_entries([Record(0, 0, 0, None, b"", headers)])
    assert entry.letter.source_topic == "p.push.requests"
    assert entry.letter.source_offset == -1
    assert entry.letter.source_partition == 3
    assert entry.letter.error_class == "DeliveryError"
    assert entry.letter.failed_at == datetime.fromtimestamp(0, UTC)


def test_list_lines_carry_id_source_class_clipped_message_key_size_and_state() -> None:
    entries = build_entries(
        [_record(0, 7, message="boom " * 40), _record(1, 0), _marker(1, 1, "1:0")]
    )
    first, second = format_list(entries)
    assert first.startswith("0:7 ")
    assert "p.push.requests[3]@17" in first
    assert "DeliveryError" in first
    assert "boom boom" in first and "…" in first and "boom " * 20 not in first
    assert "key=device-1" in first
    assert first.endswith(" 8B"), "the value size, and no state: never replayed"
    assert second.startswith("1:0 ") and second.endswith("replayed")


def test_summary_counts_by_error_class_and_says_when_limited() -> None:
    entries = build_entries(
        [
            _record(0, 0, cls="CodecError"),
            _record(0, 1, cls="CodecError"),
            _record(0, 2),
            _marker(0, 3, "0:2"),
        ]
    )
    assert format_summary(entries, 3) == "3 entries (1 replayed): CodecError=2, DeliveryError=1"
    assert format_summary(entries, 1).startswith("showing 1 of 3 entries")
    assert format_summary([], 0) == "0 entries (0 replayed)"
    assert format_summary(entries[:1], 1).startswith("1 entry ")


def test_filters_take_exact_or_logical_topic_names_and_any_case_of_error_class() -> None:
    topics = TopicsConfig.from_env({}, prefix="p.")
    entries = build_entries(
        [_record(0, 0), _record(0, 1, topic="p.push.outcomes", cls="CodecError")]
    )
    logical = Filters.build(topics, "push.requests", None)
    assert [str(e.id) for e in entries if logical.match(e)] == ["0:0"]
    exact = Filters.build(topics, "p.push.outcomes", None)
    assert [str(e.id) for e in entries if exact.match(e)] == ["0:1"]
    by_class = Filters.build(topics, None, "codecERROR")
    assert [str(e.id) for e in entries if by_class.match(e)] == ["0:1"]
    nothing = Filters.build(topics, "push.requests", "CodecError")
    assert [e for e in entries if nothing.match(e)] == []


def test_replay_headers_keep_the_originals_drop_ours_and_name_the_origin() -> None:
    record = _record(2, 9)
    assert replay_headers(record, "p.push.dlq") == [
        ("traceparent", b"00-abc-01"),
        (HEADER_REPLAYED_FROM, b"p.push.dlq:2:9"),
    ]


def test_bytes_are_shown_as_text_when_printable_else_hex() -> None:
    assert show_bytes(b"device-1") == "device-1"
    assert show_bytes(b"\x00\x01") == "0x0001"
    assert show_bytes(b"line\nbreak") == "0x" + b"line\nbreak".hex()
    assert show_bytes(None) == "(null)"


def test_hex_dump_lines_and_truncation() -> None:
    lines = hex_dump(b"\x00ABCDEFGHIJKLMNOPQRSTU", 20)
    assert (
        lines[0] == "00000000  00 41 42 43 44 45 46 47 48 49 4a 4b 4c 4d 4e 4f  |.ABCDEFGHIJKLMNO|"
    )
    assert lines[1] == "00000010  50 51 52 53" + " " * 36 + "  |PQRS|"
    assert lines[2] == "... 2 more bytes (--bytes to show more)"
    assert hex_dump(b"", 10) == []


def test_values_that_are_not_the_wire_format_say_why_without_a_registry() -> None:
    assert decode_value(None, None).reason == "no value (a tombstone), nothing to decode"
    bad = decode_value(b"\x07" * 10, None)
    assert bad.schema_id is None
    assert bad.reason is not None and "bad magic byte 0x07" in bad.reason
    no_registry = decode_value(b"\x00\x00\x00\x00\x05abc", None)
    assert no_registry.schema_id == 5
    assert no_registry.reason is not None and "SCHEMA_REGISTRY_URL" in no_registry.reason


def test_an_unreachable_registry_is_a_reason_not_a_failure() -> None:
    decoded = decode_value(
        b"\x00\x00\x00\x00\x05abc", SchemaRegistryConfig(url="http://127.0.0.1:9")
    )
    assert decoded.schema_id == 5
    assert decoded.record is None
    assert decoded.reason is not None and "unreachable" in decoded.reason


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pushline", "dlq", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env or {"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"},
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("show", "zero"), "PARTITION:OFFSET"),
        (("show", "0:1", "--bytes", "-1"), "--bytes"),
        (("replay",), "--all"),
        (("replay", "0:1", "--all"), "--all"),
        (("replay", "0:1", "--error-class", "X"), "--error-class"),
        (("replay", "0:1", "1:x"), "1:x"),
        (("list", "--limit", "-1"), "--limit"),
        (("--timeout", "0", "list"), "--timeout"),
        (("list", "--limit", "many"), "--limit"),
        (("frob",), "frob"),
    ],
)
def test_usage_mistakes_are_one_line_exit_2_before_any_connection(
    args: tuple[str, ...], needle: str
) -> None:
    result = _run(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]


@pytest.mark.parametrize(
    "args", [("list",), ("show", "0:1"), ("replay", "0:1"), ("replay", "--all")]
)
def test_an_unreachable_broker_is_one_line_exit_1_within_the_timeout(args: tuple[str, ...]) -> None:
    started = time.monotonic()
    result = _run("--timeout", "2", *args)
    assert time.monotonic() - started < 20
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pushline: error: cannot reach Kafka at 127.0.0.1:9")
    assert result.stdout == ""
