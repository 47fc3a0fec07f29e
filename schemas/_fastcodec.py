"""A fast drop-in for :class:`EventSerializer` / :class:`EventDeserializer` (the dispatcher's hot path).

Same call signatures, wire format (magic 0, 4-byte big-endian schema id, Avro body), subject names
(``<topic>-value``), registration and lookup, and the same errors. Why it is faster:

- Registry calls happen once per subject (writer id) and once per (schema id, topic) (reader side);
  the per-message work of confluent's serde (rule handling, schema-cache lookups, parsing checks)
  is skipped, which is only equivalent when the writer schema carries no rules and no references:
  for any other writer schema the message goes through the reference deserializer.
- For the common case (the writer schema *is* our schema) a decoder and an encoder are generated
  per event class from the Avro schema and the dataclass: straight-line code that reads the
  bytes straight into the dataclasses (through their slots where ``__init__`` would provably store
  the same values: see :func:`_trusted_construction`) and writes the dataclass's attributes,
  without the intermediate dict and without fastavro's per-field schema dispatch (which costs
  ~10-20 µs a record here). A writer schema that differs from ours is resolved by fastavro.
- That code is kept in ``schemas/_avro_generated.py`` (``make codegen``), which setup.py compiles
  with mypyc: a NotificationRequest decodes in ~3 µs instead of ~7 interpreted. When the installed
  module is not what the generator makes now, the same code runs interpreted (``exec``).

Equivalence is by construction on every edge: the compiled code accepts only exact, well-formed
input (exact types, canonical union/boolean encodings, in-range numbers) and declines anything
else (``Decline``); the message then goes through the reference codec, which either produces
the identical result or raises the identical error. So the fast path may be stricter than the
reference, never laxer; tests/unit/test_fastcodec.py checks byte-for-byte and event-for-event
agreement, random bytes included.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import io
import struct
import time
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic

# (schemas/__init__ imports schemas._codec first, which silences confluent's import-time warning)
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.common.avro import _schema_loads, parse_schema_with_repo
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro import schemaless_reader

from pushline.errors import CodecError
from schemas import _avro_prims as prims
from schemas._codec import (
    EVENT_SCHEMAS,
    E,
    EventDeserializer,
    EventSerializer,
    _map_error,
    _where,
    load_schema,
    schema_id_of,
    schema_str,
)
from schemas._convert import normalise

__all__ = ["FastEventDeserializer", "FastEventSerializer", "bench_codec"]

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_TIMESTAMP_MILLIS = "timestamp-millis"
_PRIMITIVES = frozenset(("null", "boolean", "int", "long", "float", "double", "bytes", "string"))


class _Unsupported(Exception):
    """The schema or dataclass uses something the code generator does not compile."""


# --- Code generation ---------------------------------------------------------------------------


def _fullname(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _strip_optional(hint: Any) -> Any:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1:
            raise _Unsupported(f"union hint {hint!r}")
        return args[0]
    return hint


class _Gen:
    """Generates the straight-line decoder or encoder of one record schema + dataclass."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        # the primitives, and Any for the annotations of the generated functions
        self.env: dict[str, Any] = {name: getattr(prims, name) for name in prims.__all__}
        self.env["Any"] = Any
        self.named: dict[str, Any] = {}
        self.decls: dict[str, str] = {}  # the current function's local variables and types
        self._n = 0

    def var(self, prefix: str = "v", type_: str = "Any") -> str:
        self._n += 1
        name = f"{prefix}{self._n}"
        if not prefix.startswith("_"):  # a local, not a constant of the environment
            self.decls[name] = type_
        return name

    def function(
        self, signature: str, local_types: dict[str, str], body: Callable[[], None]
    ) -> None:
        """One function: ``signature``, its local variables declared with their types (what lets
        mypyc compile it to native int and bytes operations), then what ``body`` emits. Nothing
        is left behind when ``body`` raises _Unsupported."""
        mark = len(self.lines)
        self.decls = dict(local_types)
        try:
            self.emit(0, signature)
            body()
        except _Unsupported:
            del self.lines[mark:]
            raise
        self.lines[mark + 1 : mark + 1] = [f"    {name}: {t}" for name, t in self.decls.items()]

    def local_type(self, t: Any, ns: str | None) -> str:
        """The declared type of a decoded value of schema ``t``."""
        kind = self.kind(self.resolve(t, ns)[0])
        return {"string": "str", "int": "int", "long": "int", "boolean": "bool"}.get(kind, "Any")

    def const(self, value: Any, prefix: str = "K") -> str:
        name = self.var(f"_{prefix}")
        self.env[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def resolve(self, t: Any, ns: str | None) -> tuple[Any, str | None]:
        """The schema behind a name reference, and the namespace names inside it resolve in."""
        if isinstance(t, str) and t not in _PRIMITIVES:
            for key in (_fullname(t, ns), t):
                if key in self.named:
                    found = self.named[key]
                    return found, found.get("namespace") or key.rpartition(".")[0] or None
            raise _Unsupported(f"unknown named type {t!r}")
        if isinstance(t, dict) and t.get("type") in ("record", "enum", "fixed"):
            full = _fullname(t["name"], t.get("namespace") or ns)
            self.named[full] = t
            return t, full.rpartition(".")[0] or None
        return t, ns

    @staticmethod
    def kind(t: Any) -> str:
        if isinstance(t, list):
            return "union"
        if isinstance(t, str):
            return t
        logical = t.get("logicalType")
        if logical is not None:
            if logical == _TIMESTAMP_MILLIS and t["type"] == "long":
                return _TIMESTAMP_MILLIS
            raise _Unsupported(f"logical type {logical!r}")
        kind = t["type"]
        if isinstance(kind, str) and kind in _PRIMITIVES:
            return kind
        if kind in ("record", "enum", "map"):
            return str(kind)
        raise _Unsupported(f"type {kind!r}")

    @staticmethod
    def record_fields(t: dict[str, Any], cls: Any) -> list[tuple[dict[str, Any], Any]]:
        """The Avro fields of record ``t`` paired with ``cls``'s type hints; the names must match
        one to one, which is what makes ``cls(**record)`` and ``cls.to_dict()`` the identity."""
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise _Unsupported(f"{cls!r} is not a dataclass")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        avro = [f["name"] for f in t["fields"]]
        if sorted(names) != sorted(avro):
            raise _Unsupported(f"{cls.__name__} fields differ from record {t['name']}")
        return [(f, hints[f["name"]]) for f in t["fields"]]

    # -- decoder: reads ``buf`` from ``pos`` into variable ``dst`` ------------------------------

    def dec(self, t: Any, hint: Any, dst: str, ns: str | None, ind: int) -> None:
        t, ns = self.resolve(t, ns)
        kind = self.kind(t)
        e = self.emit
        if kind == "string":
            # lengths below 64 (one byte, even: non-negative) inline; the rest through the loop
            e(ind, "n = buf[pos]")
            e(ind, "if n < 0x80 and not n & 1:")
            e(ind + 1, "n >>= 1")
            e(ind + 1, "pos += 1")
            e(ind, "else:")
            e(ind + 1, "n, pos = read_long(buf, pos)")
            e(ind + 1, "if n < 0:")
            e(ind + 2, "raise Decline")
            e(ind, "end = pos + n")
            e(ind, "if end > size:")
            e(ind + 1, "raise Decline")
            e(ind, f"{dst} = buf[pos:end].decode()")  # strict UTF-8, as fastavro
            e(ind, "pos = end")
        elif kind in ("int", "long", _TIMESTAMP_MILLIS):
            # one-byte values inline; longer ones (timestamps) in an inline loop: a call costs more
            e(ind, "b = buf[pos]")
            e(ind, "pos += 1")
            e(ind, "if b < 0x80:")
            e(ind + 1, "i = (b >> 1) ^ -(b & 1)")
            e(ind, "else:")
            e(ind + 1, "i = b & 0x7F")
            e(ind + 1, "shift = 7")
            e(ind + 1, "while True:")
            e(ind + 2, "b = buf[pos]")
            e(ind + 2, "pos += 1")
            e(ind + 2, "i |= (b & 0x7F) << shift")
            e(ind + 2, "if b < 0x80:")
            e(ind + 3, "break")
            e(ind + 2, "shift += 7")
            e(ind + 2, "if shift > 63:")  # more than 10 bytes
            e(ind + 3, "raise Decline")
            e(ind + 1, "if i >= 0x10000000000000000:")
            e(ind + 2, "raise Decline")
            e(ind + 1, "i = (i >> 1) ^ -(i & 1)")
            if kind == "int":
                e(ind, f"if not {_INT32[0]} <= i <= {_INT32[1]}:")
                e(ind + 1, "raise Decline")
            if kind == _TIMESTAMP_MILLIS:
                e(ind, f"{dst} = TIMESTAMP_VALUES.get(i) or timestamp_value(i)")
            else:
                e(ind, f"{dst} = i")
        elif kind == "boolean":
            e(ind, "b = buf[pos]")
            e(ind, "pos += 1")
            e(ind, "if b > 1:")  # only 0 and 1 are canonical
            e(ind + 1, "raise Decline")
            e(ind, f"{dst} = b == 1")
        elif kind == "double":
            e(ind, f"({dst},) = unpack_d(buf, pos)")
            e(ind, "pos += 8")
        elif kind == "float":
            e(ind, f"({dst},) = unpack_f(buf, pos)")
            e(ind, "pos += 4")
        elif kind == "enum":
            enum_cls = _strip_optional(hint)
            if not (isinstance(enum_cls, type) and issubclass(enum_cls, enum.Enum)):
                raise _Unsupported(f"enum {t['name']} is not read into an Enum")
            if len(t["symbols"]) > 64:  # indexes above 63 take two bytes
                raise _Unsupported("enum with more than 64 symbols")
            table: dict[int, Any] = {}
            for i, sym in enumerate(t["symbols"]):
                try:
                    table[i * 2] = enum_cls(sym)  # keyed by the one-byte zig-zag encoding
                except ValueError:
                    continue  # from_dict refuses it: the reference path raises the error
            name = self.const(table, "ENUM")
            e(ind, f"{dst} = {name}.get(buf[pos])")
            e(ind, f"if {dst} is None:")
            e(ind + 1, "raise Decline")
            e(ind, "pos += 1")
        elif kind == "map":
            if self.kind(self.resolve(t["values"], ns)[0]) != "string":
                raise _Unsupported("map of non-strings")
            e(ind, "if buf[pos] == 0:")
            e(ind + 1, f"{dst} = {{}}")
            e(ind + 1, "pos += 1")
            e(ind, "else:")
            e(ind + 1, f"{dst}, pos = read_str_map(buf, pos)")
        elif kind == "record":
            cls = _strip_optional(hint)
            fields = self.record_fields(t, cls)
            values = []
            for field, field_hint in fields:
                v = self.var("v", self.local_type(field["type"], ns))
                self.dec(field["type"], field_hint, v, ns, ind)
                values.append((field["name"], v))
            if _trusted_construction(cls, fields, self):
                # __init__ + __post_init__ would store these values unchanged (see
                # _trusted_construction): store them directly, at a third of the cost
                e(ind, f"{dst} = new_object({self.const(cls, 'CLS')})")
                for name, v in values:
                    e(ind, f"{self.const(getattr(cls, name).__set__, 'SET')}({dst}, {v})")
            else:
                args = ", ".join(f"{name}={v}" for name, v in values)
                e(ind, f"{dst} = {self.const(cls, 'CLS')}({args})")
        elif kind == "union":
            branches = [self.resolve(b, ns)[0] for b in t]
            kinds = [self.kind(b) for b in branches]
            if len(t) != 2 or kinds.count("null") != 1:
                raise _Unsupported("union other than [null, T]")
            e(ind, "b = buf[pos]")
            e(ind, "pos += 1")
            for index, (branch, k) in enumerate(zip(t, kinds, strict=True)):
                e(ind, f"{'if' if index == 0 else 'elif'} b == {index * 2}:")
                if k == "null":
                    e(ind + 1, f"{dst} = None")
                else:
                    self.dec(branch, hint, dst, ns, ind + 1)
            e(ind, "else:")
            e(ind + 1, "raise Decline")
        else:
            raise _Unsupported(f"type {kind!r}")

    # -- encoder: appends the encoding of expression ``src`` to ``out`` -------------------------

    def enc(self, t: Any, hint: Any, src: str, ns: str | None, ind: int) -> None:
        t, ns = self.resolve(t, ns)
        kind = self.kind(t)
        e = self.emit
        if kind == "string":
            e(ind, f"if type({src}) is not str:")
            e(ind + 1, "raise Decline")
            e(ind, f"b = {src}.encode()")  # strict: lone surrogates raise, as in fastavro
            e(ind, "n = len(b)")
            e(ind, "out += LONGS[n] if n < SMALL else encode_long(n)")
            e(ind, "out += b")
        elif kind in ("int", "long"):
            lo, hi = _INT32 if kind == "int" else _INT64
            e(ind, f"if type({src}) is not int or not {lo} <= {src} <= {hi}:")
            e(ind + 1, "raise Decline")
            e(ind, f"out += LONGS[{src}] if 0 <= {src} < SMALL else encode_long({src})")
        elif kind == _TIMESTAMP_MILLIS:
            # events hold UTC datetimes; anything else (naive, another zone) is declined
            e(ind, f"if type({src}) is not datetime or {src}.tzinfo is not UTC:")
            e(ind + 1, "raise Decline")
            e(ind, f"out += TIMESTAMP_BYTES.get({src}) or timestamp_bytes({src})")
        elif kind == "boolean":
            e(ind, f"if {src} is True:")
            e(ind + 1, "out += b'\\x01'")
            e(ind, f"elif {src} is False:")
            e(ind + 1, "out += b'\\x00'")
            e(ind, "else:")
            e(ind + 1, "raise Decline")
        elif kind == "double":
            e(ind, f"if type({src}) is not float:")
            e(ind + 1, "raise Decline")
            e(ind, f"out += pack_d({src})")
        elif kind == "float":
            raise _Unsupported("float")  # rounding to single precision: leave it to fastavro
        elif kind == "enum":
            enum_cls = _strip_optional(hint)
            if not (isinstance(enum_cls, type) and issubclass(enum_cls, enum.Enum)):
                raise _Unsupported(f"enum {t['name']} is not written from an Enum")
            symbols = t["symbols"]
            table = {m: prims.LONGS[symbols.index(m.value)] for m in enum_cls if m.value in symbols}
            name = self.const(table, "ENUM")
            e(ind, f"if type({src}) is not {self.const(enum_cls, 'CLS')}:")
            e(ind + 1, "raise Decline")
            e(ind, f"out += {name}[{src}]")  # KeyError (not in the schema) declines too
        elif kind == "map":
            if self.kind(self.resolve(t["values"], ns)[0]) != "string":
                raise _Unsupported("map of non-strings")
            m, k, v = self.var("m"), self.var("k"), self.var("x")
            e(ind, f"{m} = {src} if type({src}) is dict else dict({src})")  # as to_dict copies
            e(ind, f"if {m}:")
            e(ind + 1, f"out += encode_long(len({m}))")
            e(ind + 1, f"for {k}, {v} in {m}.items():")
            self.enc("string", str, k, ns, ind + 2)
            self.enc("string", str, v, ns, ind + 2)
            e(ind, "out += b'\\x00'")
        elif kind == "record":
            cls = _strip_optional(hint)
            fields = self.record_fields(t, cls)
            r = self.var("r")
            e(ind, f"{r} = {src}")
            e(ind, f"if type({r}) is not {self.const(cls, 'CLS')}:")
            e(ind + 1, "raise Decline")
            for field, field_hint in fields:
                v = self.var()
                e(ind, f"{v} = {r}.{field['name']}")
                self.enc(field["type"], field_hint, v, ns, ind)
        elif kind == "union":
            branches = [self.resolve(b, ns)[0] for b in t]
            kinds = [self.kind(b) for b in branches]
            if len(t) != 2 or kinds.count("null") != 1:
                raise _Unsupported("union other than [null, T]")
            null_index = kinds.index("null")
            e(ind, f"if {src} is None:")
            e(ind + 1, f"out += {prims.LONGS[null_index]!r}")
            e(ind, "else:")
            e(ind + 1, f"out += {prims.LONGS[1 - null_index]!r}")
            self.enc(t[1 - null_index], hint, src, ns, ind + 1)
        else:
            raise _Unsupported(f"type {kind!r}")

    def compile(self, name: str) -> Callable[..., Any]:
        source = "\n".join(self.lines)
        # The source is generated from our own schema files and dataclasses only (never from
        # message or registry data), like the __init__ methods the dataclasses module generates.
        exec(compile(source, f"<pushline fastcodec {name}>", "exec"), self.env)  # noqa: S102
        fn: Callable[..., Any] = self.env[name]
        fn.__source__ = source  # type: ignore[attr-defined]  # for debugging and the tests
        return fn


def _trusted_construction(
    cls: type[Any], fields: list[tuple[dict[str, Any], Any]], gen: _Gen
) -> bool:
    """Whether the decoder may fill a new ``cls`` through its slots, skipping ``__init__``: only
    when that is provably what ``cls(**values)`` would do with the values the decoder produces.

    That holds when ``__init__`` is the one dataclasses generates (it stores each argument) and
    ``__post_init__`` is absent or only calls :func:`schemas._convert.normalise`, whose fixes are
    no-ops here: every enum it fixes is decoded as an exact member of that enum (from the field's
    type hint), every time it fixes is decoded from timestamp-millis (``EPOCH`` + whole
    milliseconds: UTC, millisecond precision). Anything else is built by calling ``cls``.
    """
    init = cls.__dict__.get("__init__")
    if init is None or init.__code__.co_filename != "<string>":  # not dataclass-generated
        return False
    if not all(
        type(cls.__dict__.get(f["name"])).__name__ == "member_descriptor" for f, _ in fields
    ):
        return False
    post = getattr(cls, "__post_init__", None)
    if post is None:
        return True
    names = post.__code__.co_names
    if len(names) != 3 or names[0] != "normalise" or post.__globals__[names[0]] is not normalise:
        return False
    enums, times = post.__globals__[names[1]], post.__globals__[names[2]]
    by_name = {f["name"]: (f, hint) for f, hint in fields}
    for name, enum_cls in enums:
        if name not in by_name or _strip_optional(by_name[name][1]) is not enum_cls:
            return False
    for name in times:
        if name not in by_name:
            return False
        branches = by_name[name][0]["type"]
        branches = branches if isinstance(branches, list) else [branches]
        kinds = {gen.kind(gen.resolve(b, None)[0]) for b in branches}
        if kinds - {"null"} != {_TIMESTAMP_MILLIS}:
            return False
    return True


_DECODE_LOCALS = {n: "int" for n in ("pos", "size", "n", "b", "end", "shift", "i")}
_ENCODE_LOCALS = {"out": "bytearray", "b": "bytes", "n": "int"}


def _emit_decoder(gen: _Gen, name: str, schema: dict[str, Any], cls: type[Any]) -> None:
    def body() -> None:
        gen.emit(1, "pos = 5")
        gen.emit(1, "size = len(buf)")
        gen.dec(schema, cls, "event", None, 1)
        gen.emit(1, "return event")

    # a plan: (data, ctx) -> event
    gen.function(f"def {name}(buf: bytes, ctx: object = None) -> Any:", _DECODE_LOCALS, body)


def _emit_encoder(gen: _Gen, name: str, schema: dict[str, Any], cls: type[Any]) -> None:
    def body() -> None:
        gen.emit(1, "out = bytearray(header)")
        gen.enc(schema, cls, "event", None, 1)
        gen.emit(1, "return bytes(out)")

    gen.function(f"def {name}(event: Any, header: bytes) -> bytes:", _ENCODE_LOCALS, body)


def compile_decoder(schema: dict[str, Any], cls: type[Any]) -> Callable[..., Any]:
    """``decode(buf, ctx=None) -> event`` for Confluent-framed bytes written with ``schema`` (Avro body at
    offset 5). Raises Decline (or IndexError, struct.error, UnicodeDecodeError, ...) for input it
    does not take; _Unsupported at generation time for a schema it cannot compile."""
    gen = _Gen()
    _emit_decoder(gen, "decode", schema, cls)
    return gen.compile("decode")


def compile_encoder(schema: dict[str, Any], cls: type[Any]) -> Callable[[Any, bytes], bytes]:
    """``encode(event, header) -> header + Avro body``. Raises Decline (or anything else) for an
    event it does not write exactly as ``to_dict`` + fastavro would."""
    gen = _Gen()
    _emit_encoder(gen, "encode", schema, cls)
    return gen.compile("encode")


# --- The generated module ------------------------------------------------------------------------

GENERATED_MODULE = Path(__file__).with_name("_avro_generated.py")
_GENERATED_DOC = '''"""The codec of every event class, generated by schemas/_fastcodec.py: do not edit.

``make codegen`` writes it anew from the Avro schemas and the event dataclasses; a unit test
fails while it is not current. setup.py compiles it with mypyc, with schemas/_avro_prims.py
(the declared local types make the byte and int work native code). schemas._fastcodec fills in
the constants below and uses these functions only when SOURCE_SHA256 is the hash of the code it
generates now; otherwise it runs that code itself, interpreted.
"""'''


# imported by the generated module, not filled in
_NOT_FILLED = frozenset(["Any", *prims.__all__])


@dataclasses.dataclass(frozen=True)
class GeneratedCodec:
    body: str
    """The functions' source."""
    env: dict[str, Any]
    """The constants they use."""
    names: tuple[str, ...]
    """``decode_<Class>`` and ``encode_<Class>`` of each event class the generator compiles."""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body.encode()).hexdigest()

    def module_text(self) -> str:
        constants = [f"{name}: Any = None" for name in sorted(self.env) if name not in _NOT_FILLED]
        return "\n".join(
            [
                _GENERATED_DOC,
                "",
                "from __future__ import annotations",
                "",
                "from typing import Any",
                "",
                "from schemas._avro_prims import (",
                *(f"    {name}," for name in prims.__all__),
                ")",
                "",
                f'SOURCE_SHA256 = "{self.sha256}"',
                "",
                *constants,
                "",
                "",
                self.body,
            ]
        )


def generate_codec() -> GeneratedCodec:
    """The decoder and encoder of every event class (one that cannot be compiled is left out:
    its messages take the reference path, slower and never wrong)."""
    gen = _Gen()
    names: list[str] = []
    for cls, schema_name in sorted(EVENT_SCHEMAS.items(), key=lambda item: item[1]):
        schema = load_schema(schema_name)
        for prefix, emit in (("decode", _emit_decoder), ("encode", _emit_encoder)):
            name = f"{prefix}_{cls.__name__}"
            try:
                emit(gen, name, schema, cls)
            except _Unsupported:
                continue
            gen.lines += ["", ""]
            names.append(name)
    body = "\n".join(gen.lines).rstrip() + "\n"
    return GeneratedCodec(body=body, env=gen.env, names=tuple(names))


@functools.cache
def _codec_functions() -> dict[str, Callable[..., Any]]:
    """The generated functions: compiled (the installed module, when it is what the generator
    makes now) or run by the interpreter."""
    codec = generate_codec()
    from schemas import _avro_generated as module  # noqa: PLC0415 - imports this module

    if getattr(module, "SOURCE_SHA256", None) == codec.sha256:
        for name, value in codec.env.items():
            if name not in _NOT_FILLED:
                setattr(module, name, value)
        return {name: getattr(module, name) for name in codec.names}
    env = dict(codec.env)
    # The source is generated from our own schema files and dataclasses only, as in _Gen.compile.
    exec(compile(codec.body, "<pushline fastcodec>", "exec"), env)  # noqa: S102
    return {name: env[name] for name in codec.names}


def _generated(prefix: str, cls: type[Any]) -> Any:
    return _codec_functions().get(f"{prefix}_{cls.__name__}")


def _check_event_cls(event_cls: type[Any]) -> str:
    if event_cls not in EVENT_SCHEMAS:
        raise CodecError(f"{event_cls.__name__} is not an event with an Avro schema")
    return EVENT_SCHEMAS[event_cls]


# --- The serializer and deserializer -----------------------------------------------------------


class FastEventSerializer(Generic[E]):
    """``(event, ctx) -> bytes``, exactly as :class:`EventSerializer` but several times faster.

    The schema is registered (or, with ``auto_register=False``, looked up) once per subject; a
    failure is raised like EventSerializer's and retried on the next call. Unlike confluent's
    serializer, which reuses the last id it got for every subject, the id is kept per subject
    (the same thing whenever the registry gives one schema one id, as Confluent's does).
    """

    def __init__(
        self,
        event_cls: type[E],
        registry_client: SchemaRegistryClient,
        *,
        auto_register: bool = True,
    ) -> None:
        self.schema_name = _check_event_cls(event_cls)
        self.event_cls = event_cls
        self._registry = registry_client
        self._auto_register = auto_register
        self._schema: Schema = _schema_loads(schema_str(self.schema_name))
        self._headers: dict[tuple[str, str], bytes] = {}  # (topic, field) -> wire-format header
        self._encode: Callable[[Any, bytes], bytes] | None = _generated("encode", event_cls)
        self._reference = EventSerializer(event_cls, registry_client, auto_register=auto_register)

    def _header(self, ctx: SerializationContext) -> bytes:
        subject = f"{ctx.topic}-{ctx.field}"  # topic_subject_name_strategy
        try:
            if self._auto_register:
                registered = self._registry.register_schema_full_response(
                    subject, self._schema, normalize_schemas=False
                )
            else:
                registered = self._registry.lookup_schema(
                    subject, self._schema, normalize_schemas=False
                )
        except Exception as exc:  # the mapping point, as in EventSerializer
            raise _map_error(_where("encode", self.event_cls, ctx), exc) from exc
        header = struct.pack(">bI", 0, registered.schema_id)
        self._headers[(ctx.topic, ctx.field)] = header
        return header

    def __call__(self, obj: E, ctx: SerializationContext) -> bytes:
        if ctx is None or self._encode is None:
            return self._reference(obj, ctx)  # confluent's own handling of the unusual
        header = self._headers.get((ctx.topic, ctx.field))
        if header is None:
            header = self._header(ctx)
        try:
            return self._encode(obj, header)
        except Exception:  # noqa: BLE001 - declined: the reference encodes it or raises its error
            return self._reference(obj, ctx)


#: How to read the messages of one writer schema id on one topic: ``plan(data, ctx) -> event``.
_Plan = Callable[[bytes, SerializationContext], Any]


class FastEventDeserializer(Generic[E]):
    """``(bytes, ctx) -> event``, exactly as :class:`EventDeserializer` but several times faster.

    The writer schema of each id is fetched once (per topic, as the registry lookup names the
    subject) and its reading plan cached; a registry failure is raised like EventDeserializer's
    (an unknown id is poison) and not cached, so the next message asks again.
    """

    def __init__(self, event_cls: type[E], registry_client: SchemaRegistryClient) -> None:
        self.schema_name = _check_event_cls(event_cls)
        self.event_cls = event_cls
        self._registry = registry_client
        self._reference = EventDeserializer(event_cls, registry_client)
        self._reader_name = self._reference._reader_name
        self._reader = parse_schema_with_repo(schema_str(self.schema_name), named_schemas={})
        self._decode: _Plan | None = _generated("decode", event_cls)
        # (the 4 schema-id bytes, topic, field) -> plan
        self._plans: dict[tuple[bytes, str, str], _Plan] = {}

    def _plan(self, data: bytes, ctx: SerializationContext) -> _Plan:
        schema_id = schema_id_of(data)
        subject = f"{ctx.topic}-{ctx.field}"  # topic_subject_name_strategy
        try:
            writer: Schema = self._registry.get_schema(schema_id, subject, None)
        except Exception as exc:  # the mapping point, as in EventDeserializer
            where = _where("decode", self.event_cls, ctx)
            raise _map_error(where, exc, schema_id=schema_id, reader=self._reader_name) from exc
        plan: _Plan = self._reference  # rules, references, another type: confluent handles it
        if (
            writer.schema_type in (None, "AVRO")
            and not writer.references
            and writer.rule_set is None
            and writer.schema_str is not None
        ):
            try:
                parsed = parse_schema_with_repo(
                    _schema_loads(writer.schema_str).schema_str or "", named_schemas={}
                )
            except Exception:  # noqa: BLE001 - the reference path raises the mapped error
                parsed = None
            if parsed is not None and parsed == self._reader and self._decode is not None:
                plan = self._decode
            elif parsed is not None:
                plan = self._resolving_plan(parsed)
        self._plans[(data[1:5], ctx.topic, ctx.field)] = plan
        return plan

    def _resolving_plan(self, writer: Any) -> _Plan:
        """fastavro resolves the writer schema to ours (skipped when both are equal, as fastavro
        itself does), then from_dict: what confluent's deserializer does without rules."""
        reader = None if writer == self._reader else self._reader
        from_dict = self.event_cls.from_dict

        def plan(data: bytes, _ctx: SerializationContext) -> Any:
            fo = io.BytesIO(data)  # shares data's buffer, no copy
            fo.seek(5)
            record: Any = schemaless_reader(fo, writer, reader, False)
            return from_dict(record)

        return plan

    def __call__(self, data: bytes | None, ctx: SerializationContext) -> E:
        # Anything but a well-framed message with a context goes to the reference, which raises
        # the framing error (or handles the missing context) exactly as EventDeserializer does.
        if ctx is not None and data is not None and len(data) > 5 and data[0] == 0:
            plan = self._plans.get((data[1:5], ctx.topic, ctx.field))
            if plan is None:
                plan = self._plan(data, ctx)
            if plan is not self._reference:
                try:
                    event: E = plan(data, ctx)
                    return event
                except Exception:  # noqa: BLE001, S110 - declined: the reference reads it or raises
                    pass
        return self._reference(data, ctx)


# --- Micro-benchmark -----------------------------------------------------------------------------


def _per_op_us(fn: Callable[[], object], n: int, rounds: int = 5) -> float:
    """µs per call of ``fn``: ``n`` calls in ``rounds`` rounds, the fastest round (as timeit does:
    the slower rounds measure the other processes on the machine, not ``fn``)."""
    fn()
    per_round = max(1, n // rounds)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / per_round * 1e6


def bench_codec(n: int = 100_000) -> dict[str, float]:
    """µs per operation on one core (in-memory ``mock://`` registry), reference vs fast: decode a
    NotificationRequest, encode a DispatchOutcome; and, shared by both, build the request's APNs
    payload and build a DispatchOutcome (the rest of a dispatcher's non-HTTP work per send).
    ``python -c 'from schemas._fastcodec import bench_codec; print(bench_codec())'``."""
    from pushline.config import SchemaRegistryConfig  # noqa: PLC0415 - benchmark only
    from schemas._codec import make_registry_client  # noqa: PLC0415
    from schemas._enums import Channel, OutcomeState, Platform, Priority, PushType  # noqa: PLC0415
    from schemas._events import (  # noqa: PLC0415
        DispatchOutcome,
        NotificationContent,
        NotificationRequest,
    )
    from schemas.payloads import apns_payload  # noqa: PLC0415 - payloads imports schemas

    t0 = datetime(2025, 3, 4, 5, 6, 7, 123000, tzinfo=UTC)
    req = NotificationRequest(
        notification_id="0b8f6a52-7c0e-4c55-9a39-3f1e1f7c2d11",
        created_at=t0,
        app_id="shop",
        platform=Platform.APNS,
        device_token="a" * 64,
        expires_at=t0 + timedelta(hours=1),
        content=NotificationContent(
            title="Your order shipped",
            body="Order 1234 is on its way",
            badge=1,
            sound="default",
            custom_data={"order": "1234"},
        ),
        device_key="device-1",
        push_type=PushType.ALERT,
        priority=Priority.HIGH,
        receipt_deadline_ms=60_000,
    )
    outcome = DispatchOutcome(
        notification_id=req.notification_id,
        device_key=req.key,
        device_token=req.device_token,
        platform=req.platform,
        app_id=req.app_id,
        state=OutcomeState.ACCEPTED,
        provider_status=200,
        provider_message_id="5e1f8a0c-0000-4000-8000-000000000001",
        latency_ms=3.25,
        requested_at=t0,
        sent_at=t0 + timedelta(milliseconds=5),
        decided_at=t0 + timedelta(milliseconds=7),
        receipt_deadline_ms=60_000,
        channel=Channel.PUSH,
        collapse_id=req.collapse_id,
    )
    registry = make_registry_client(SchemaRegistryConfig(url="mock://bench-codec"))
    req_ctx = SerializationContext("push.requests", MessageField.VALUE)
    out_ctx = SerializationContext("push.outcomes", MessageField.VALUE)
    data = EventSerializer(NotificationRequest, registry)(req, req_ctx)
    old_dec = EventDeserializer(NotificationRequest, registry)
    new_dec = FastEventDeserializer(NotificationRequest, registry)
    old_enc = EventSerializer(DispatchOutcome, registry)
    new_enc = FastEventSerializer(DispatchOutcome, registry)
    assert new_dec(data, req_ctx) == old_dec(data, req_ctx) == req
    assert new_enc(outcome, out_ctx) == old_enc(outcome, out_ctx)
    return {
        "decode_request_old_us": _per_op_us(lambda: old_dec(data, req_ctx), n),
        "decode_request_new_us": _per_op_us(lambda: new_dec(data, req_ctx), n),
        "encode_outcome_old_us": _per_op_us(lambda: old_enc(outcome, out_ctx), n),
        "encode_outcome_new_us": _per_op_us(lambda: new_enc(outcome, out_ctx), n),
        "apns_payload_us": _per_op_us(lambda: apns_payload(req), n),
        "build_outcome_us": _per_op_us(lambda: dataclasses.replace(outcome), n),
    }


def write_generated_module() -> Path:
    """Write :data:`GENERATED_MODULE` anew (``make codegen``)."""
    GENERATED_MODULE.write_text(generate_codec().module_text())
    return GENERATED_MODULE
