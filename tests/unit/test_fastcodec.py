"""FastEventSerializer / FastEventDeserializer against the reference codec (EventSerializer /
EventDeserializer over confluent's AvroSerializer / AvroDeserializer), on confluent's in-memory
registry: the same bytes, the same events, the same errors, and the registry asked once."""

from __future__ import annotations

import dataclasses
import json
import random
import re
import struct
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from schema_samples import full_events, minimal_events

import schemas._fastcodec as fc
from pushline.config import SchemaRegistryConfig
from pushline.errors import CodecError, SchemaRegistryError, ValidationError
from schemas import (
    EVENT_SCHEMAS,
    Channel,
    DeliveryReceipt,
    DispatchOutcome,
    EventDeserializer,
    EventSerializer,
    Fallback,
    FallbackChannel,
    FallbackRequest,
    FastEventDeserializer,
    FastEventSerializer,
    InvalidToken,
    NotificationContent,
    NotificationRequest,
    NotificationStatus,
    OutcomeState,
    Platform,
    Priority,
    PushType,
    ReceiptKind,
    StatusState,
    TokenVerdict,
    _avro_generated,
    is_poison,
    load_schema,
    make_registry_client,
    schema_id_of,
    schema_str,
)
from schemas import _avro_prims as prims
from schemas._fastcodec import (
    GENERATED_MODULE,
    bench_codec,
    compile_decoder,
    compile_encoder,
    generate_codec,
)

VERSIONS_DIR = Path(__file__).parent / "schema_versions"
CTX = SerializationContext("push.requests", MessageField.VALUE)


@pytest.fixture
def registry() -> SchemaRegistryClient:
    return make_registry_client(SchemaRegistryConfig(url="mock://fastcodec-unit"))


def _ctx(cls: type[Any]) -> SerializationContext:
    return SerializationContext(f"push.{EVENT_SCHEMAS[cls]}", MessageField.VALUE)


# -- random events: every optional field set or not, odd strings, long strings and maps ----------

_ALPHABET = 'aZ09-_.:/ ✓üß€𝄞😀\u200d"\\\n\t\x00'


def _text(rnd: random.Random) -> str:
    size = rnd.choice((0, 1, 5, 63, 64, 65, 200, 5000))  # one- and multi-byte length varints
    return "".join(rnd.choice(_ALPHABET) for _ in range(size))


def _opt_text(rnd: random.Random) -> str | None:
    return rnd.choice((None, _text(rnd)))


def _time(rnd: random.Random) -> datetime:
    ms = rnd.choice((0, 1, -1, 63, 64, -65, rnd.randint(-(10**12), 10**13)))
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def _opt_time(rnd: random.Random) -> datetime | None:
    return rnd.choice((None, _time(rnd)))


def _int(rnd: random.Random, bits: int = 32) -> int:
    top = 2 ** (bits - 1)
    return rnd.choice((0, 1, -1, 63, 64, -64, -65, top - 1, -top, rnd.randint(-top, top - 1)))


def _opt_int(rnd: random.Random, bits: int = 32) -> int | None:
    return rnd.choice((None, _int(rnd, bits)))


def _fallback(rnd: random.Random) -> Fallback:
    channel = rnd.choice(list(FallbackChannel))
    return Fallback(channel, _text(rnd), _text(rnd), _opt_text(rnd))


def _opt_fallback(rnd: random.Random) -> Fallback | None:
    return rnd.choice((None, _fallback(rnd)))


def random_event(rnd: random.Random, cls: type[Any]) -> Any:
    common = {"notification_id": _text(rnd), "device_key": _text(rnd)}
    if cls is NotificationRequest:
        content = NotificationContent(
            title=_opt_text(rnd),
            subtitle=_opt_text(rnd),
            body=_opt_text(rnd),
            badge=_opt_int(rnd),
            sound=_opt_text(rnd),
            category=_opt_text(rnd),
            thread_id=_opt_text(rnd),
            content_available=rnd.random() < 0.5,
            mutable_content=rnd.random() < 0.5,
            custom_data={_text(rnd): _text(rnd) for _ in range(rnd.choice((0, 1, 3, 70)))},
        )
        return NotificationRequest(
            notification_id=common["notification_id"],
            created_at=_time(rnd),
            app_id=_text(rnd),
            platform=rnd.choice(list(Platform)),
            device_token=_text(rnd),
            expires_at=_time(rnd),
            content=content,
            device_key=_opt_text(rnd),
            user_id=_opt_text(rnd),
            push_type=rnd.choice(list(PushType)),
            priority=rnd.choice(list(Priority)),
            collapse_key=_opt_text(rnd),
            receipt_deadline_ms=_opt_int(rnd, 64),
            fallback=_opt_fallback(rnd),
            send_at=_opt_time(rnd),
            attempt=_int(rnd),
            not_before=_opt_time(rnd),
        )
    if cls is DispatchOutcome:
        return DispatchOutcome(
            **common,
            device_token=_text(rnd),
            platform=rnd.choice(list(Platform)),
            app_id=_text(rnd),
            user_id=_opt_text(rnd),
            state=rnd.choice(list(OutcomeState)),
            provider_status=_opt_int(rnd),
            reason=_opt_text(rnd),
            provider_message_id=_opt_text(rnd),
            attempt=_int(rnd),
            latency_ms=rnd.choice((None, 0.0, -0.0, 1e-300, rnd.uniform(-1e9, 1e9), float("inf"))),
            requested_at=_time(rnd),
            sent_at=_opt_time(rnd),
            decided_at=_time(rnd),
            token_invalid_since=_opt_time(rnd),
            receipt_deadline_ms=_opt_int(rnd, 64),
            fallback=_opt_fallback(rnd),
            channel=rnd.choice(list(Channel)),
            collapse_id=_opt_text(rnd),
        )
    if cls is DeliveryReceipt:
        return DeliveryReceipt(
            **common,
            kind=rnd.choice(list(ReceiptKind)),
            device_time=_opt_time(rnd),
            received_at=_time(rnd),
            app_version=_opt_text(rnd),
            os_version=_opt_text(rnd),
            platform=rnd.choice((None, *Platform)),
        )
    if cls is NotificationStatus:
        return NotificationStatus(
            **common,
            state=rnd.choice(list(StatusState)),
            reason=_opt_text(rnd),
            occurred_at=_time(rnd),
            recorded_at=_time(rnd),
            platform=rnd.choice(list(Platform)),
            app_id=_text(rnd),
            user_id=_opt_text(rnd),
            final=rnd.random() < 0.5,
        )
    if cls is FallbackRequest:
        return FallbackRequest(
            **common,
            app_id=_text(rnd),
            user_id=_opt_text(rnd),
            fallback=_fallback(rnd),
            reason=_text(rnd),
            requested_at=_time(rnd),
            platform=rnd.choice(list(Platform)),
        )
    assert cls is InvalidToken
    return InvalidToken(
        **common,
        device_token=_text(rnd),
        app_id=_text(rnd),
        platform=rnd.choice(list(Platform)),
        verdict=rnd.choice(list(TokenVerdict)),
        reason=_text(rnd),
        invalid_since=_opt_time(rnd),
        detected_at=_time(rnd),
        provider_status=_opt_int(rnd),
    )


def _samples() -> list[Any]:
    rnd = random.Random(20250304)
    randomised = [random_event(rnd, cls) for _ in range(40) for cls in EVENT_SCHEMAS]
    return full_events() + minimal_events() + randomised


SAMPLES = _samples()


# -- equivalence ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", list(EVENT_SCHEMAS), ids=lambda c: c.__name__)
def test_every_event_class_compiles(cls: type[Any]) -> None:
    """Otherwise the class silently takes the (slow) reference path."""
    assert FastEventSerializer(cls, make_registry_client(SchemaRegistryConfig("mock://x")))._encode
    assert FastEventDeserializer(
        cls, make_registry_client(SchemaRegistryConfig("mock://x"))
    )._decode


def test_the_generated_module_is_current() -> None:
    assert GENERATED_MODULE.read_text() == generate_codec().module_text(), (
        "schemas/_avro_generated.py is not what the generator makes now: run `make codegen`"
    )


def test_the_installed_generated_module_does_the_work() -> None:
    functions = fc._codec_functions()
    assert set(functions) == {
        f"{p}_{cls.__name__}" for cls in EVENT_SCHEMAS for p in ("decode", "encode")
    }
    for name, function in functions.items():
        assert function is getattr(_avro_generated, name)
    serializer = FastEventSerializer(
        NotificationRequest, make_registry_client(SchemaRegistryConfig("mock://x"))
    )
    assert serializer._encode is _avro_generated.encode_NotificationRequest


def test_a_generated_module_of_other_code_is_not_used(
    registry: SchemaRegistryClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build of an older generator (or schema) must not run: the same code runs interpreted."""
    monkeypatch.setattr(_avro_generated, "SOURCE_SHA256", "0" * 64)
    fc._codec_functions.cache_clear()
    try:
        functions = fc._codec_functions()
        decode = functions["decode_NotificationRequest"]
        assert decode is not _avro_generated.decode_NotificationRequest
        for event in SAMPLES:
            cls, ctx = type(event), _ctx(type(event))
            reference = EventSerializer(cls, registry)(event, ctx)
            assert functions[f"encode_{cls.__name__}"](event, reference[:5]) == reference
            assert functions[f"decode_{cls.__name__}"](reference) == event
    finally:
        fc._codec_functions.cache_clear()


def test_same_bytes_and_events_as_the_reference(registry: SchemaRegistryClient) -> None:
    """For every sample: the same bytes out, the same event back, each way round; and the compiled
    code itself (not the reference it falls back to) produced them."""
    for event in SAMPLES:
        cls, ctx = type(event), _ctx(type(event))
        fast_ser, fast_de = FastEventSerializer(cls, registry), FastEventDeserializer(cls, registry)
        reference = EventSerializer(cls, registry)(event, ctx)
        assert fast_ser(event, ctx) == reference
        assert fast_de(reference, ctx) == EventDeserializer(cls, registry)(reference, ctx) == event
        schema = load_schema(EVENT_SCHEMAS[cls])
        assert compile_encoder(schema, cls)(event, reference[:5]) == reference
        assert compile_decoder(schema, cls)(reference) == event


def test_fast_bytes_decode_with_confluents_plain_deserializer(
    registry: SchemaRegistryClient,
) -> None:
    for event in SAMPLES:
        cls, ctx = type(event), _ctx(type(event))
        data = FastEventSerializer(cls, registry)(event, ctx)
        plain = AvroDeserializer(registry, schema_str(EVENT_SCHEMAS[cls]))
        assert plain(data, ctx) == event.to_dict()


def test_registry_is_asked_once_per_subject_and_schema_id(registry: SchemaRegistryClient) -> None:
    calls: list[str] = []

    class Counting:
        """Counts the registry calls the codec makes, passing each on to the real client."""

        def __getattr__(self, name: str) -> Any:
            attr = getattr(registry, name)
            if not callable(attr):
                return attr

            def call(*args: Any, **kwargs: Any) -> Any:
                calls.append(name)
                return attr(*args, **kwargs)

            return call

    client: Any = Counting()
    req = full_events()[0]
    ser, de = (
        FastEventSerializer(NotificationRequest, client),
        FastEventDeserializer(NotificationRequest, client),
    )
    other = SerializationContext("push.retries", MessageField.VALUE)
    for _ in range(50):
        assert de(ser(req, CTX), CTX) == req
        assert de(ser(req, other), other) == req
    assert calls.count("register_schema_full_response") == 2  # one per subject
    assert calls.count("get_schema") == 2  # one per (schema id, topic)
    assert sorted(registry.get_subjects()) == ["push.requests-value", "push.retries-value"]


def test_confluent_wire_format(registry: SchemaRegistryClient) -> None:
    data = FastEventSerializer(NotificationRequest, registry)(full_events()[0], CTX)
    registered = registry.get_latest_version("push.requests-value")
    assert data[0] == 0
    assert struct.unpack(">I", data[1:5])[0] == registered.schema_id == schema_id_of(data)


def test_without_auto_register_looks_the_schema_up(registry: SchemaRegistryClient) -> None:
    ser = FastEventSerializer(NotificationRequest, registry, auto_register=False)
    req = full_events()[0]
    with pytest.raises(SchemaRegistryError) as info:
        ser(req, CTX)
    assert info.value.http_status == 404
    assert not is_poison(info.value)
    with pytest.raises(SchemaRegistryError) as ref_info:
        EventSerializer(NotificationRequest, registry, auto_register=False)(req, CTX)
    assert str(info.value) == str(ref_info.value)
    # the failure is not cached: once registered out of band, the same serializer works
    registry.register_schema("push.requests-value", Schema(schema_str("notification_request")))
    assert FastEventDeserializer(NotificationRequest, registry)(ser(req, CTX), CTX) == req


# -- schema evolution through the registry -------------------------------------------------------


def _written_with(registry: SchemaRegistryClient, version: str, record: dict[str, Any]) -> bytes:
    text = (VERSIONS_DIR / f"notification_request.{version}.avsc").read_text()
    producer = AvroSerializer(registry, text, conf={"auto.register.schemas": True})
    return producer(record, CTX)


def test_reads_an_older_writer_schema(registry: SchemaRegistryClient) -> None:
    current = FastEventSerializer(NotificationRequest, registry)(full_events()[0], CTX)
    previous = json.loads((VERSIONS_DIR / "notification_request.previous.avsc").read_text())
    push_type = next(f for f in previous["fields"] if f["name"] == "push_type")["type"]
    for event in [e for e in SAMPLES if isinstance(e, NotificationRequest)]:
        if event.push_type not in push_type["symbols"]:
            event = dataclasses.replace(event, push_type=PushType.ALERT)
        record = event.to_dict()
        for name in ("send_at", "attempt", "not_before"):
            del record[name]
        del record["content"]["subtitle"]
        data = _written_with(registry, "previous", record)
        assert schema_id_of(data) != schema_id_of(current)
        got = FastEventDeserializer(NotificationRequest, registry)(data, CTX)
        assert got == EventDeserializer(NotificationRequest, registry)(data, CTX)
        assert (got.send_at, got.attempt, got.not_before, got.content.subtitle) == (
            None,
            0,
            None,
            None,
        )
        assert got.fallback == event.fallback


def test_reads_a_newer_writer_schema(registry: SchemaRegistryClient) -> None:
    for event in [e for e in SAMPLES if isinstance(e, NotificationRequest)][:20]:
        record = event.to_dict()
        record["push_type"] = "WIDGETS"
        record["interruption_level"] = "passive"
        data = _written_with(registry, "next", record)
        got = FastEventDeserializer(NotificationRequest, registry)(data, CTX)
        assert got == EventDeserializer(NotificationRequest, registry)(data, CTX)
        assert got.push_type is PushType.ALERT
        assert got.content == event.content


# -- errors: the reference's, word for word ------------------------------------------------------


def _stable(reason: str) -> str:
    """The reason without object addresses (fastavro names the BytesIO it read from)."""
    return re.sub(r" at 0x[0-9a-f]+", "", reason)


def _same_outcome(
    fast: FastEventDeserializer[Any], ref: EventDeserializer[Any], data: bytes | None
) -> Exception | None:
    """Decode with both; both must succeed alike or fail alike (type and message)."""
    try:
        expected: Any = ref(data, CTX)
    except CodecError as exc:
        with pytest.raises(type(exc)) as info:
            fast(data, CTX)
        assert _stable(str(info.value)) == _stable(str(exc))
        assert is_poison(info.value) == is_poison(exc)
        return info.value
    assert fast(data, CTX) == expected
    return None


@pytest.fixture
def pair(
    registry: SchemaRegistryClient,
) -> tuple[FastEventDeserializer[Any], EventDeserializer[Any]]:
    return (
        FastEventDeserializer(NotificationRequest, registry),
        EventDeserializer(NotificationRequest, registry),
    )


@pytest.fixture
def good(registry: SchemaRegistryClient) -> bytes:
    return EventSerializer(NotificationRequest, registry)(full_events()[0], CTX)


def test_unknown_schema_id_is_poison(pair: Any, good: bytes) -> None:
    err = _same_outcome(*pair, b"\x00" + struct.pack(">I", 4242) + good[5:])
    assert isinstance(err, SchemaRegistryError)
    assert err.http_status == 404
    assert is_poison(err)
    assert "schema id 4242 unknown to the registry" in str(err)


def test_framing_errors(pair: Any, good: bytes) -> None:
    for data in (None, b"", good[:1], good[:5], b"\x01" + good[1:], b"\xff" + good[1:]):
        err = _same_outcome(*pair, data)
        assert err is not None
        assert is_poison(err)


def test_truncated_bodies(pair: Any, good: bytes) -> None:
    for cut in range(1, len(good) - 5):
        err = _same_outcome(*pair, good[:-cut])
        assert err is not None
        assert "schema id 1" in str(err)


def test_random_and_mutated_bytes(pair: Any, good: bytes) -> None:
    """Random bodies behind a valid header, and valid messages with bytes changed: whatever the
    reference makes of them (an event or an error), the fast deserializer makes the same."""
    rnd = random.Random(7)
    for _ in range(400):
        _same_outcome(*pair, rnd.randbytes(rnd.randint(0, 60)))
        _same_outcome(*pair, good[:5] + rnd.randbytes(rnd.randint(0, 300)))
        mutated = bytearray(good)
        for _ in range(rnd.randint(1, 4)):
            mutated[rnd.randrange(5, len(good))] = rnd.randrange(256)
        _same_outcome(*pair, bytes(mutated))


def test_non_canonical_encodings_decline_to_the_reference(pair: Any, registry: Any) -> None:
    """Legal-but-odd Avro the compiled decoder does not take (an over-long varint, a negative map
    block count, a boolean byte of 2) still decodes exactly as the reference decodes it."""
    req = minimal_events()[0]
    data = EventSerializer(NotificationRequest, registry)(req, CTX)
    body = bytearray(data)
    # notification_id's length (36 -> zig-zag 72 = 0x48) as a two-byte varint
    assert body[5] == 72
    _same_outcome(*pair, bytes(body[:5] + b"\xc8\x00" + body[6:]))
    # content_available is the 8th content field: find a boolean by re-encoding with it set
    flagged = dataclasses.replace(req, content=NotificationContent(content_available=True))
    flagged_data = EventSerializer(NotificationRequest, registry)(flagged, CTX)
    index = next(i for i, (a, b) in enumerate(zip(data, flagged_data, strict=True)) if a != b)
    _same_outcome(*pair, flagged_data[:index] + b"\x02" + flagged_data[index + 1 :])


def test_record_of_another_event_type(pair: Any, registry: SchemaRegistryClient) -> None:
    data = EventSerializer(DispatchOutcome, registry)(full_events()[1], CTX)
    err = _same_outcome(*pair, data)
    assert "cannot be read as pushline.events.NotificationRequest" in str(err)


def test_platform_unknown_to_this_reader(pair: Any, registry: SchemaRegistryClient) -> None:
    foreign = json.loads(schema_str("notification_request"))
    next(f for f in foreign["fields"] if f["name"] == "platform")["type"]["symbols"].append("HMS")
    producer = AvroSerializer(registry, json.dumps(foreign))
    record = full_events()[0].to_dict()
    record["platform"] = "HMS"
    err = _same_outcome(*pair, producer(record, SerializationContext("other", MessageField.VALUE)))
    assert "HMS not found in reader symbol list" in str(err)


def test_unreachable_registry_is_not_poison(good: bytes) -> None:
    client = SchemaRegistryClient({"url": "http://127.0.0.1:9", "max.retries": 0, "timeout": 2})
    with pytest.raises(SchemaRegistryError) as info:
        FastEventDeserializer(NotificationRequest, client)(good, CTX)
    assert "schema registry unreachable" in str(info.value)
    assert not is_poison(info.value)
    with pytest.raises(SchemaRegistryError) as info:
        FastEventSerializer(NotificationRequest, client)(full_events()[0], CTX)
    assert "schema registry unreachable" in str(info.value)


def test_wrong_class_and_unencodable_events(registry: SchemaRegistryClient) -> None:
    fast, ref = (
        FastEventSerializer(DispatchOutcome, registry),
        EventSerializer(DispatchOutcome, registry),
    )
    with pytest.raises(CodecError, match="got a NotificationRequest") as info:
        fast(full_events()[0], CTX)  # type: ignore[arg-type]
    with pytest.raises(CodecError) as ref_info:
        ref(full_events()[0], CTX)  # type: ignore[arg-type]
    assert str(info.value) == str(ref_info.value)
    bad = dataclasses.replace(full_events()[1])
    object.__setattr__(bad, "attempt", "three")  # past the type checker, as buggy code might
    with pytest.raises(CodecError, match="attempt") as info:
        fast(bad, CTX)
    assert is_poison(info.value)
    with pytest.raises(CodecError) as ref_info:
        ref(bad, CTX)
    assert str(info.value) == str(ref_info.value)


def test_values_the_fast_encoder_declines_are_encoded_by_the_reference(
    registry: SchemaRegistryClient,
) -> None:
    """Values no constructor produces (set past __post_init__), which the compiled encoder does not
    take: the bytes are still exactly the reference's."""
    fast, ref = (
        FastEventSerializer(DispatchOutcome, registry),
        EventSerializer(DispatchOutcome, registry),
    )
    odd_values = {
        "attempt": True,
        "latency_ms": 3,
        "sent_at": datetime(2025, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
    }
    for name, value in odd_values.items():
        event = dataclasses.replace(full_events()[1])
        object.__setattr__(event, name, value)
        assert fast(event, CTX) == ref(event, CTX)


def test_missing_context_is_handled_as_the_reference_does(registry: SchemaRegistryClient) -> None:
    req = full_events()[0]
    data = EventSerializer(NotificationRequest, registry)(req, CTX)
    fast_de, ref_de = (
        FastEventDeserializer(NotificationRequest, registry),
        EventDeserializer(NotificationRequest, registry),
    )
    with pytest.raises(CodecError) as ref_info:
        ref_de(data, None)  # type: ignore[arg-type]
    with pytest.raises(CodecError) as info:
        fast_de(data, None)  # type: ignore[arg-type]
    assert str(info.value) == str(ref_info.value)


def test_class_without_schema_is_refused(registry: SchemaRegistryClient) -> None:
    with pytest.raises(CodecError, match="not an event"):
        FastEventSerializer(dict, registry)  # type: ignore[type-var]
    with pytest.raises(CodecError, match="not an event"):
        FastEventDeserializer(dict, registry)  # type: ignore[type-var]


# -- the compiled decoder keeps __init__ whenever skipping it could change anything --------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Strict:
    name: str

    def __post_init__(self) -> None:
        if not self.name:
            raise ValidationError("name", "must not be empty")


def test_a_validating_post_init_still_runs() -> None:
    schema = {"type": "record", "name": "Strict", "fields": [{"name": "name", "type": "string"}]}
    decode = compile_decoder(schema, _Strict)
    assert decode(b"\x00\x00\x00\x00\x01\x02x") == _Strict("x")
    with pytest.raises(ValidationError):
        decode(b"\x00\x00\x00\x00\x01\x00")


def test_bench_codec_runs() -> None:
    result = bench_codec(50)
    assert set(result) >= {"decode_request_new_us", "encode_outcome_new_us", "apns_payload_us"}
    assert all(value > 0 for value in result.values())


def test_timestamp_memo_is_exact_and_bounded() -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(prims.TIMESTAMP_MEMO_MAX + 10):
        value = base + timedelta(milliseconds=7 * i)
        millis = (value - prims.EPOCH) // prims.ONE_MS
        for _ in range(2):  # computed, then from the memo
            assert (
                prims.TIMESTAMP_BYTES.get(value) or prims.timestamp_bytes(value)
            ) == prims.encode_long(millis)
            assert (prims.TIMESTAMP_VALUES.get(millis) or prims.timestamp_value(millis)) == value
        assert len(prims.TIMESTAMP_BYTES) <= prims.TIMESTAMP_MEMO_MAX
        assert len(prims.TIMESTAMP_VALUES) <= prims.TIMESTAMP_MEMO_MAX
    # sub-millisecond values floor, as the reference writer does
    assert prims.timestamp_bytes(base + timedelta(microseconds=1999)) == prims.encode_long(
        (base - prims.EPOCH) // prims.ONE_MS + 1
    )
