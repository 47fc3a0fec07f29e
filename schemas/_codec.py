"""Avro in the Confluent wire format: schema files, the registry client, serializer and deserializer.

The serializer and deserializer wrap confluent_kafka's AvroSerializer / AvroDeserializer. Every
failure of theirs (the registry client, fastavro, struct, framing) is mapped to a
:class:`~pushline.errors.CodecError` in :func:`_map_error`, the one place that knows third-party
exception types; its message is one line, short enough for a DLQ header.

The deserializer reads with the *current* schema as reader schema, so fastavro's schema resolution
turns whatever compatible version a producer wrote into the shape our dataclasses expect.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import struct
import warnings
from collections.abc import Mapping
from typing import Any, Generic, Protocol, Self, TypeVar

import httpx
from confluent_kafka.serialization import SerializationContext, SerializationError
from fastavro.read import SchemaResolutionError

from pushline.config import SchemaRegistryConfig
from pushline.errors import CodecError, ConfigError, PushlineError, SchemaRegistryError
from schemas._events import (
    DeliveryReceipt,
    DispatchOutcome,
    FallbackRequest,
    InvalidToken,
    NotificationRequest,
    NotificationStatus,
)

with warnings.catch_warnings(record=True) as _import_warnings:
    # confluent's registry client imports authlib's httpx integration, which announces its own
    # deprecation at import time (with an "always" filter of its own, so an ignore filter cannot
    # silence it): nothing we can act on, and it would land on the stderr of every command that
    # imports this package. Recorded here; anything else is passed on below.
    from confluent_kafka.schema_registry import (
        SchemaRegistryClient,
        prefix_schema_id_deserializer,
        topic_subject_name_strategy,
    )
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    from confluent_kafka.schema_registry.error import SchemaRegistryError as _RegistryError
for _w in _import_warnings:
    if "httpx module is deprecated" not in str(_w.message):
        warnings.warn_explicit(_w.message, _w.category, _w.filename, _w.lineno)

__all__ = [
    "EVENT_SCHEMAS",
    "SCHEMA_NAMES",
    "Event",
    "EventDeserializer",
    "EventSerializer",
    "is_poison",
    "load_schema",
    "make_registry_client",
    "schema_id_of",
    "schema_str",
]


class Event(Protocol):
    """What the codec needs of an event class."""

    def to_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self: ...


E = TypeVar("E", bound=Event)

#: Event class -> schema name (``schemas/avro/<name>.avsc``).
EVENT_SCHEMAS: dict[type[Any], str] = {
    NotificationRequest: "notification_request",
    DispatchOutcome: "dispatch_outcome",
    DeliveryReceipt: "delivery_receipt",
    NotificationStatus: "notification_status",
    FallbackRequest: "fallback_request",
    InvalidToken: "invalid_token",
}

SCHEMA_NAMES: tuple[str, ...] = tuple(EVENT_SCHEMAS.values())

_MAGIC_BYTE = 0
_HEADER_LEN = 5  # magic byte + 4-byte big-endian schema id
_MAX_REASON = 480  # DLQ header values stay readable and well under any header size limit


@functools.cache
def _schema_text(name: str) -> str:
    if name not in SCHEMA_NAMES:
        raise CodecError(f"no Avro schema named {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    path = importlib.resources.files("schemas") / "avro" / f"{name}.avsc"
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CodecError(f"cannot read schema {name!r}: {exc}") from exc


def load_schema(name: str) -> dict[str, Any]:
    """The parsed JSON of ``schemas/avro/<name>.avsc`` (a fresh dict each call: mutate freely)."""
    try:
        schema: dict[str, Any] = json.loads(_schema_text(name))
    except ValueError as exc:
        raise CodecError(f"schema {name!r} is not valid JSON: {exc}") from exc
    return schema


@functools.cache
def schema_str(name: str) -> str:
    """The schema as compact JSON, the string registered in the schema registry. Compact and
    derived from the parsed file, so reformatting a file does not change what gets registered."""
    return json.dumps(load_schema(name), separators=(",", ":"), ensure_ascii=False)


def make_registry_client(cfg: SchemaRegistryConfig) -> SchemaRegistryClient:
    """A registry client for ``cfg``; a ``mock://`` URL gives confluent's in-memory mock."""
    try:
        client: SchemaRegistryClient = SchemaRegistryClient.new_client(cfg.to_client_conf())
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"schema registry configuration for {cfg.url!r}: {exc}") from exc
    return client


def schema_id_of(data: bytes | None) -> int:
    """The schema id in the Confluent wire-format header of ``data``; CodecError if there is none."""
    if data is None:
        raise CodecError("no value (a tombstone), nothing to decode")
    if len(data) <= _HEADER_LEN:
        raise CodecError(
            f"truncated: {len(data)} bytes, but the Confluent wire format needs a magic byte, "
            "a 4-byte schema id and an Avro body"
        )
    if data[0] != _MAGIC_BYTE:
        raise CodecError(
            f"bad magic byte 0x{data[0]:02x}, expected 0x00: not in the Confluent wire format"
        )
    schema_id: int = struct.unpack_from(">I", data, 1)[0]
    return schema_id


class UnknownSchemaIdError(SchemaRegistryError):
    """The registry does not know the schema id a message names: the message is at fault.
    (Named without an underscore because its class name ends up in DLQ headers and logs.)"""


def is_poison(exc: CodecError) -> bool:
    """True when the message itself is at fault and will never decode (or encode): send it to the
    DLQ. False when the registry is unreachable, failing or refusing us (auth, 5xx, 429, a subject
    that is not registered): the infrastructure is at fault, so retry or stop instead of sending
    every message to the DLQ.

    A schema id the registry does not know counts as poison: the bytes name a schema that does not
    exist.
    """
    return not isinstance(exc, SchemaRegistryError) or isinstance(exc, UnknownSchemaIdError)


def _where(op: str, event_cls: type[Any], ctx: SerializationContext | None) -> str:
    topic = f" on {ctx.topic}" if ctx is not None and ctx.topic else ""
    return f"{op} {event_cls.__name__}{topic}"


def _clip(text: str) -> str:
    text = " ".join(text.split())  # one line: header values and log fields stay single-line
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _map_error(
    where: str, exc: Exception, *, schema_id: int | None = None, reader: str | None = None
) -> CodecError:
    """The one place third-party codec errors become ours. ``reader`` (the reader schema's full
    name) is given when decoding."""
    sid = f" (schema id {schema_id})" if schema_id is not None else ""
    if isinstance(exc, _RegistryError):
        status, code = exc.http_status_code, exc.error_code
        detail = f"{exc.error_message} (HTTP {status}, code {code})"
        if reader is not None and status == 404:  # decoding: the id in the message is unknown
            return UnknownSchemaIdError(
                _clip(f"{where}: schema id {schema_id} unknown to the registry: {detail}"),
                http_status=status,
                error_code=code,
            )
        return SchemaRegistryError(
            _clip(f"{where}: schema registry refused: {detail}"),
            http_status=status,
            error_code=code,
        )
    if isinstance(exc, httpx.HTTPError | OSError):
        return SchemaRegistryError(
            _clip(f"{where}: schema registry unreachable: {type(exc).__name__}: {exc}")
        )
    if isinstance(exc, SchemaResolutionError):
        detail = _resolution_detail(str(exc))
        return CodecError(
            _clip(f"{where}: writer schema{sid} cannot be read as {reader}: {detail}")
        )
    if isinstance(exc, SerializationError):  # confluent's framing checks
        return CodecError(_clip(f"{where}: {exc}{sid}"))
    if reader is None:
        return CodecError(_clip(f"{where}: cannot encode: {_describe(exc)}"))
    if isinstance(exc, EOFError | IndexError | struct.error):
        # the pure-Python reader raises EOFError past the end, the compiled one IndexError
        return CodecError(_clip(f"{where}: truncated or corrupt Avro body{sid}: {_describe(exc)}"))
    return CodecError(_clip(f"{where}: undecodable Avro body{sid}: {_describe(exc)}"))


def _describe(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _resolution_detail(message: str) -> str:
    """fastavro puts whole schemas into some resolution errors ("Schema mismatch: {...} is not
    {...}"); the words before the first schema are what an operator needs."""
    return message.split("{", 1)[0].rstrip(": ") or message


class EventSerializer(Generic[E]):
    """``(event, ctx) -> bytes`` in the Confluent wire format, subject ``<topic>-value``."""

    def __init__(
        self,
        event_cls: type[E],
        registry_client: SchemaRegistryClient,
        *,
        auto_register: bool = True,
    ) -> None:
        if event_cls not in EVENT_SCHEMAS:
            raise CodecError(f"{event_cls.__name__} is not an event with an Avro schema")
        self.event_cls = event_cls
        self.schema_name = EVENT_SCHEMAS[event_cls]
        self._inner = AvroSerializer(
            registry_client,
            schema_str(self.schema_name),
            to_dict=self._to_dict,
            conf={
                "auto.register.schemas": auto_register,
                # explicit, because newer clients default to the ASSOCIATED strategy
                "subject.name.strategy": topic_subject_name_strategy,
            },
        )

    def _to_dict(self, obj: object, ctx: SerializationContext) -> dict[str, Any]:
        if not isinstance(obj, self.event_cls):
            raise CodecError(f"{_where('encode', self.event_cls, ctx)}: got a {type(obj).__name__}")
        return obj.to_dict()

    def __call__(self, obj: E, ctx: SerializationContext) -> bytes:
        where = _where("encode", self.event_cls, ctx)
        try:
            data: bytes | None = self._inner(obj, ctx)
        except CodecError:  # ours already, from the to_dict hook
            raise
        except Exception as exc:  # the mapping point: nothing third-party escapes
            raise _map_error(where, exc) from exc
        if data is None:  # only for a None object, which the type forbids
            raise CodecError(f"{where}: nothing to encode")
        return data


class EventDeserializer(Generic[E]):
    """``(bytes, ctx) -> event``: any registered, compatible writer schema, read as the current one.

    Raises CodecError (SchemaRegistryError for registry trouble) whose message names the topic,
    the schema id and what is wrong; see :func:`is_poison` for whether to DLQ it.
    """

    def __init__(self, event_cls: type[E], registry_client: SchemaRegistryClient) -> None:
        if event_cls not in EVENT_SCHEMAS:
            raise CodecError(f"{event_cls.__name__} is not an event with an Avro schema")
        self.event_cls = event_cls
        self.schema_name = EVENT_SCHEMAS[event_cls]
        schema = load_schema(self.schema_name)
        self._reader_name = f"{schema.get('namespace', '')}.{schema['name']}".lstrip(".")
        self._inner = AvroDeserializer(
            registry_client,
            schema_str(self.schema_name),
            from_dict=self._from_dict,
            conf={
                "subject.name.strategy": topic_subject_name_strategy,
                # the id is in the payload prefix, never in headers (we checked the prefix)
                "schema.id.deserializer": prefix_schema_id_deserializer,
            },
        )

    def _from_dict(self, record: dict[str, Any], ctx: SerializationContext) -> E:
        try:
            return self.event_cls.from_dict(record)
        except (KeyError, ValueError, TypeError, PushlineError) as exc:
            detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise CodecError(
                _clip(f"{_where('decode', self.event_cls, ctx)}: invalid record: {detail}")
            ) from exc

    def __call__(self, data: bytes | None, ctx: SerializationContext) -> E:
        where = _where("decode", self.event_cls, ctx)
        try:
            schema_id = schema_id_of(data)
        except CodecError as exc:
            raise CodecError(f"{where}: {exc}") from exc
        try:
            event = self._inner(data, ctx)
        except CodecError:  # ours already, from the from_dict hook
            raise
        except Exception as exc:  # the mapping point: nothing third-party escapes
            raise _map_error(where, exc, schema_id=schema_id, reader=self._reader_name) from exc
        if not isinstance(event, self.event_cls):  # from_dict always builds one; be explicit
            raise CodecError(f"{where}: decoded a {type(event).__name__}")
        return event
