"""Avro schema validation, canonical text and reader/writer compatibility.

The schema registry emulator needs three things from an Avro schema: is it valid (fastavro plus the
structural rules fastavro lets through), what is its canonical text (so the same schema written with
other whitespace or key order gets the same id), and can data written with one schema be read with
another. The last follows the resolution rules of the Avro specification the way Avro's Java
``SchemaCompatibility`` (which Confluent's registry uses) and fastavro's reader apply them:

- primitives match themselves, and the promotions int->long/float/double, long->float/double,
  float->double and string<->bytes;
- records, enums and fixed match by *unqualified* name, or when a reader alias names the writer
  (the specification, Java and fastavro all ignore the namespace here);
- every reader field missing from the writer (by name or reader field alias) needs a default;
- every writer enum symbol must be a reader symbol, unless the reader enum has a default;
- fixed sizes must be equal; arrays and maps resolve their items and values;
- a writer union resolves when each of its branches does; a non-union writer resolves against a
  reader union when some reader branch accepts it;
- logical types are ignored: the underlying type decides.

Recursive types are handled like Java does: a reader/writer record pair already being checked is
assumed compatible until proven otherwise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import fastavro
from fastavro.schema import SchemaParseException, UnknownType

from pushline.errors import CodecError

__all__ = [
    "AvroSchema",
    "Incompatibility",
    "InvalidSchemaError",
    "check_compatibility",
    "compatibility_errors",
    "parse_avro",
]

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# (writer type, reader type) pairs the specification lets a reader promote.
_PROMOTIONS = frozenset(
    {
        ("int", "long"),
        ("int", "float"),
        ("int", "double"),
        ("long", "float"),
        ("long", "double"),
        ("float", "double"),
        ("string", "bytes"),
        ("bytes", "string"),
    }
)

# Key order of the canonical text: the order Avro's Java Schema.toString() writes, so a schema and
# the registry's answer for it look alike. Keys not listed follow, sorted.
_SCHEMA_KEYS = (
    "type",
    "name",
    "namespace",
    "doc",
    "fields",
    "symbols",
    "default",
    "items",
    "values",
    "size",
    "aliases",
    "logicalType",
    "precision",
    "scale",
)
_FIELD_KEYS = ("name", "type", "doc", "default", "order", "aliases")

SchemaInput = str | Mapping[str, Any] | list[Any]


class InvalidSchemaError(CodecError):
    """A text or object is not a valid Avro schema."""


@dataclass(frozen=True)
class Incompatibility:
    """One reason data written with the writer schema cannot be read with the reader schema.

    ``kind`` uses the names of Avro's ``SchemaIncompatibilityType`` (TYPE_MISMATCH, NAME_MISMATCH,
    FIXED_SIZE_MISMATCH, MISSING_ENUM_SYMBOLS, READER_FIELD_MISSING_DEFAULT_VALUE,
    MISSING_UNION_BRANCH), ``path`` is a JSON-pointer-like location in the reader schema and
    ``detail`` the short datum Confluent reports as ``additionalInfo``.
    """

    kind: str
    path: str
    message: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} at {self.path}: {self.message}"


@dataclass(frozen=True)
class AvroSchema:
    """A validated Avro schema.

    ``root`` is the schema tree with every name fully qualified (named types appear once as a
    definition, then as full-name strings), ``named`` maps full names to their definitions,
    ``canonical`` is the compact JSON text of the schema as given (whitespace and key order
    removed), ``normalized`` the compact text of ``root`` (names fully qualified as well).
    """

    root: Any
    named: Mapping[str, Mapping[str, Any]]
    canonical: str
    normalized: str


def parse_avro(schema: SchemaInput) -> AvroSchema:
    """Validate ``schema`` (JSON text, a bare type name, or the decoded JSON) and index its names.

    Raises :class:`InvalidSchemaError` with a one-line reason.
    """
    obj = _load(schema)
    named: dict[str, dict[str, Any]] = {}
    root = _Resolver(named).resolve(obj, None, "")
    _fastavro_check(obj)
    return AvroSchema(
        root=root,
        named=named,
        canonical=_dumps(_canonical(obj)),
        normalized=_dumps(_canonical(root)),
    )


def compatibility_errors(
    reader: SchemaInput | AvroSchema, writer: SchemaInput | AvroSchema
) -> list[str]:
    """Why data written with ``writer`` cannot be read with ``reader``; empty when it can."""
    return [str(i) for i in check_compatibility(_as_schema(reader), _as_schema(writer))]


def check_compatibility(reader: AvroSchema, writer: AvroSchema) -> list[Incompatibility]:
    """The structured form of :func:`compatibility_errors` for two parsed schemas."""
    return _Checker(reader, writer).check(reader.root, writer.root, [""])


# --------------------------------------------------------------------------------------- parsing


def _as_schema(schema: SchemaInput | AvroSchema) -> AvroSchema:
    return schema if isinstance(schema, AvroSchema) else parse_avro(schema)


def _load(schema: SchemaInput) -> Any:
    if not isinstance(schema, str):
        return schema
    stripped = schema.strip()
    # A bare name ("string", "com.example.Thing") is how people write primitive schemas by hand.
    # Checked before JSON, which would read the bare word null as None.
    if stripped and all(_NAME_RE.match(part) for part in stripped.split(".")):
        return stripped
    try:
        return json.loads(schema)
    except json.JSONDecodeError as exc:
        raise InvalidSchemaError(f"schema is not valid JSON: {exc}") from exc


def _fastavro_check(obj: Any) -> None:
    """Let fastavro judge what the structural pass does not (defaults, logical types)."""
    try:
        fastavro.parse_schema(obj)
    except (SchemaParseException, UnknownType) as exc:
        raise InvalidSchemaError(str(exc)) from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # fastavro reports some malformed schemas as plain Python errors.
        raise InvalidSchemaError(f"{type(exc).__name__}: {exc}") from exc


def _split_name(name: str, namespace: str | None) -> tuple[str, str | None]:
    """Full name and namespace of ``name`` declared in ``namespace``."""
    if "." in name:
        return name, name.rpartition(".")[0]
    if namespace:
        return f"{namespace}.{name}", namespace
    return name, None


def _check_name(name: object, what: str, path: str) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidSchemaError(f"{what} at {path or '/'} needs a non-empty string name")
    if not all(_NAME_RE.match(part) for part in name.split(".")):
        raise InvalidSchemaError(f"{what} at {path or '/'} has an invalid name {name!r}")
    return name


class _Resolver:
    """Walks a decoded schema, checks its structure and qualifies every name."""

    def __init__(self, named: dict[str, dict[str, Any]]) -> None:
        self._named = named

    def resolve(self, node: Any, namespace: str | None, path: str) -> Any:
        if isinstance(node, str):
            return self._reference(node, namespace, path)
        if isinstance(node, list):
            return self._union(node, namespace, path)
        if isinstance(node, dict):
            return self._complex(node, namespace, path)
        raise InvalidSchemaError(f"{path or '/'}: {node!r} is not a schema")

    def _reference(self, name: str, namespace: str | None, path: str) -> str:
        if name in PRIMITIVES:
            return name
        # The specification resolves a bare name in the enclosing namespace; Java and fastavro then
        # fall back to the null namespace.
        candidates = [_split_name(name, namespace)[0], name]
        for full in candidates:
            if full in self._named:
                return full
        raise InvalidSchemaError(f"{path or '/'}: unknown type {name!r}")

    def _union(self, branches: list[Any], namespace: str | None, path: str) -> list[Any]:
        resolved: list[Any] = []
        seen: set[str] = set()
        for index, branch in enumerate(branches):
            sub = f"{path}/{index}"
            if isinstance(branch, list):
                raise InvalidSchemaError(f"{sub}: a union cannot directly contain a union")
            value = self.resolve(branch, namespace, sub)
            key = _branch_key(value, self._named)
            if key in seen:
                raise InvalidSchemaError(f"{sub}: union contains {key!r} twice")
            seen.add(key)
            resolved.append(value)
        return resolved

    def _complex(self, node: dict[str, Any], namespace: str | None, path: str) -> Any:
        kind = node.get("type")
        if not isinstance(kind, str):
            raise InvalidSchemaError(f"{path or '/'}: 'type' must be a type name string")
        out = dict(node)
        if kind in PRIMITIVES:
            return out
        if kind in _NAMED:
            return self._named_type(out, kind, namespace, path)
        if kind == "array":
            if "items" not in node:
                raise InvalidSchemaError(f"{path or '/'}: array needs 'items'")
            out["items"] = self.resolve(node["items"], namespace, f"{path}/items")
            return out
        if kind == "map":
            if "values" not in node:
                raise InvalidSchemaError(f"{path or '/'}: map needs 'values'")
            out["values"] = self.resolve(node["values"], namespace, f"{path}/values")
            return out
        # {"type": "com.example.Named"} is a reference written as an object.
        return self._reference(kind, namespace, path)

    def _named_type(
        self, out: dict[str, Any], kind: str, namespace: str | None, path: str
    ) -> dict[str, Any]:
        name = _check_name(out.get("name"), kind, path)
        declared = out.pop("namespace", None)
        if declared is not None and not isinstance(declared, str):
            raise InvalidSchemaError(f"{path or '/'}: namespace must be a string")
        if isinstance(declared, str):
            if declared and not all(_NAME_RE.match(p) for p in declared.split(".")):
                raise InvalidSchemaError(f"{path or '/'}: invalid namespace {declared!r}")
            own_ns: str | None = declared or None
        else:
            own_ns = namespace
        full, own_ns = _split_name(name, own_ns)
        if full in PRIMITIVES:
            raise InvalidSchemaError(f"{path or '/'}: {full!r} is a primitive type name")
        if full in self._named:
            raise InvalidSchemaError(f"{path or '/'}: named type {full!r} is defined twice")
        out["name"] = full
        if own_ns is None and namespace:
            # Keep the normalized text meaning the same: without this a null-namespace type nested
            # in a namespaced one would inherit the enclosing namespace when read back.
            out["namespace"] = ""
        if "aliases" in out:
            out["aliases"] = self._aliases(out["aliases"], own_ns, path)
        # Registered before the body so that recursive references resolve.
        self._named[full] = out
        if kind in ("record", "error"):
            out["fields"] = self._fields(out.get("fields"), own_ns, full, path)
        elif kind == "enum":
            self._symbols(out, path)
        else:
            size = out.get("size")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidSchemaError(f"{path or '/'}: fixed {full!r} needs a size >= 0")
        return out

    def _aliases(self, aliases: object, namespace: str | None, path: str) -> list[str]:
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise InvalidSchemaError(f"{path or '/'}: aliases must be a list of names")
        return [_split_name(_check_name(a, "alias", path), namespace)[0] for a in aliases]

    def _fields(
        self, fields: object, namespace: str | None, record: str, path: str
    ) -> list[dict[str, Any]]:
        if not isinstance(fields, list):
            raise InvalidSchemaError(f"{path or '/'}: record {record!r} needs a 'fields' list")
        resolved: list[dict[str, Any]] = []
        names: set[str] = set()
        for index, field in enumerate(fields):
            sub = f"{path}/fields/{index}"
            if not isinstance(field, dict):
                raise InvalidSchemaError(f"{sub}: a field must be an object")
            name = _check_name(field.get("name"), "field", sub)
            if "." in name:
                raise InvalidSchemaError(f"{sub}: invalid field name {name!r}")
            if name in names:
                raise InvalidSchemaError(f"{sub}: record {record!r} has field {name!r} twice")
            names.add(name)
            if "type" not in field:
                raise InvalidSchemaError(f"{sub}: field {name!r} has no type")
            out = dict(field)
            out["type"] = self.resolve(field["type"], namespace, f"{sub}/type")
            aliases = field.get("aliases")
            if aliases is not None and (
                not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases)
            ):
                raise InvalidSchemaError(f"{sub}: field aliases must be a list of names")
            resolved.append(out)
        return resolved

    @staticmethod
    def _symbols(out: dict[str, Any], path: str) -> None:
        symbols = out.get("symbols")
        if not isinstance(symbols, list):
            raise InvalidSchemaError(f"{path or '/'}: enum {out['name']!r} needs a 'symbols' list")
        for symbol in symbols:
            if not isinstance(symbol, str) or not _NAME_RE.match(symbol):
                raise InvalidSchemaError(f"{path or '/'}: invalid enum symbol {symbol!r}")
        if len(set(symbols)) != len(symbols):
            raise InvalidSchemaError(f"{path or '/'}: enum {out['name']!r} repeats a symbol")


def _branch_key(node: Any, named: Mapping[str, Mapping[str, Any]]) -> str:
    """What makes two union branches the same branch: the type, or the full name if named."""
    if isinstance(node, str):
        return node
    kind = str(node["type"])
    if kind in _NAMED:
        return str(node["name"])
    return kind


# -------------------------------------------------------------------------------- canonical text


def _canonical(node: Any) -> Any:
    """The schema with keys in Avro's order and ``{"type": "int"}`` written as ``"int"``."""
    if isinstance(node, list):
        return [_canonical(branch) for branch in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"type"} and node["type"] in PRIMITIVES:
        return node["type"]
    return _ordered(node, _SCHEMA_KEYS, schema=True)


def _ordered(node: Mapping[str, Any], order: Iterable[str], *, schema: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    keys = list(order)
    for key in [*(k for k in keys if k in node), *sorted(k for k in node if k not in keys)]:
        value = node[key]
        if schema and key in ("items", "values"):
            value = _canonical(value)
        elif schema and key == "fields" and isinstance(value, list):
            value = [
                _ordered(f, _FIELD_KEYS, schema=False) if isinstance(f, dict) else f for f in value
            ]
        elif not schema and key == "type":
            value = _canonical(value)
        out[key] = value
    return out


def _dumps(node: Any) -> str:
    return json.dumps(node, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------------- compatibility


def _kind(node: Any) -> str:
    if isinstance(node, list):
        return "union"
    if isinstance(node, str):
        return node
    kind = str(node["type"])
    return "record" if kind == "error" else kind


class _Checker:
    def __init__(self, reader: AvroSchema, writer: AvroSchema) -> None:
        self._reader = reader
        self._writer = writer
        # Results per (reader record, writer record) pair; None while the pair is being checked,
        # which breaks the recursion of recursive types (assumed compatible unless proven not).
        self._memo: dict[tuple[str, str], list[Incompatibility] | None] = {}

    def check(self, reader: Any, writer: Any, path: list[str]) -> list[Incompatibility]:
        reader = self._reader.named[reader] if _is_ref(reader) else reader
        writer = self._writer.named[writer] if _is_ref(writer) else writer
        r_kind, w_kind = _kind(reader), _kind(writer)
        if w_kind == "union":
            return self._writer_union(reader, writer, r_kind, path)
        if r_kind == "union":
            for branch in reader:
                if not self.check(branch, writer, path):
                    return []
            return [
                _incompatible(
                    "MISSING_UNION_BRANCH",
                    path,
                    f"reader union has no branch that can read writer type {_describe(writer)}",
                    _describe(writer),
                )
            ]
        if r_kind != w_kind:
            if (w_kind, r_kind) in _PROMOTIONS:
                return []
            return [
                _incompatible(
                    "TYPE_MISMATCH",
                    path,
                    f"reader type {_describe(reader)} cannot read writer type {_describe(writer)}",
                    f"reader type: {r_kind}, writer type: {w_kind}",
                )
            ]
        if r_kind == "array":
            return self.check(reader["items"], writer["items"], [*path, "items"])
        if r_kind == "map":
            return self.check(reader["values"], writer["values"], [*path, "values"])
        if r_kind == "fixed":
            return _names(reader, writer, path) + _sizes(reader, writer, path)
        if r_kind == "enum":
            return _names(reader, writer, path) + _symbols(reader, writer, path)
        if r_kind == "record":
            return self._record(reader, writer, path)
        return []  # the same primitive type

    def _writer_union(
        self, reader: Any, writer: list[Any], r_kind: str, path: list[str]
    ) -> list[Incompatibility]:
        found: list[Incompatibility] = []
        for index, branch in enumerate(writer):
            if r_kind != "union":
                # Every writer branch must be readable by the one reader schema; Java reports the
                # branches' own reasons here.
                found += self.check(reader, branch, path)
            elif self.check(reader, branch, [*path, str(index)]):
                branch_schema = self._writer.named[branch] if _is_ref(branch) else branch
                found.append(
                    _incompatible(
                        "MISSING_UNION_BRANCH",
                        [*path, str(index)],
                        "reader union has no branch that can read writer union branch "
                        f"{_describe(branch_schema)}",
                        _describe(branch_schema),
                    )
                )
        return found

    def _record(
        self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: list[str]
    ) -> list[Incompatibility]:
        key = (str(reader["name"]), str(writer["name"]))
        if key in self._memo:
            return self._memo[key] or []
        self._memo[key] = None
        found = _names(reader, writer, path)
        writer_fields = {str(f["name"]): f for f in writer["fields"]}
        for index, field in enumerate(reader["fields"]):
            field_path = [*path, "fields", str(index)]
            match = _writer_field(field, writer_fields)
            if match is None:
                if "default" not in field:
                    found.append(
                        _incompatible(
                            "READER_FIELD_MISSING_DEFAULT_VALUE",
                            field_path,
                            f"reader field {field['name']!r} has no default value and is "
                            "missing from the writer schema",
                            str(field["name"]),
                        )
                    )
                continue
            found += self.check(field["type"], match["type"], [*field_path, "type"])
        self._memo[key] = found
        return found


def _is_ref(node: Any) -> bool:
    return isinstance(node, str) and node not in PRIMITIVES


def _writer_field(
    field: Mapping[str, Any], writer_fields: Mapping[str, Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    direct = writer_fields.get(str(field["name"]))
    if direct is not None:
        return direct
    for alias in field.get("aliases") or []:
        if alias in writer_fields:
            return writer_fields[alias]
    return None


def _names(
    reader: Mapping[str, Any], writer: Mapping[str, Any], path: list[str]
) -> list[Incompatibility]:
    r_full, w_full = str(reader["name"]), str(writer["name"])
    if r_full.rpartition(".")[2] == w_full.rpartition(".")[2]:
        return []
    if w_full in (reader.get("aliases") or []):
        return []
    return [
        _incompatible(
            "NAME_MISMATCH",
            [*path, "name"],
            f"reader name {r_full!r} does not match writer name {w_full!r}",
            f"expected: {w_full}",
        )
    ]


def _sizes(
    reader: Mapping[str, Any], writer: Mapping[str, Any], path: list[str]
) -> list[Incompatibility]:
    if reader["size"] == writer["size"]:
        return []
    return [
        _incompatible(
            "FIXED_SIZE_MISMATCH",
            [*path, "size"],
            f"reader size {reader['size']} does not match writer size {writer['size']}",
            f"expected: {writer['size']}, found: {reader['size']}",
        )
    ]


def _symbols(
    reader: Mapping[str, Any], writer: Mapping[str, Any], path: list[str]
) -> list[Incompatibility]:
    missing = sorted(set(writer["symbols"]) - set(reader["symbols"]))
    # Since Avro 1.9 a reader enum default absorbs symbols it does not know.
    if not missing or reader.get("default") in reader["symbols"]:
        return []
    return [
        _incompatible(
            "MISSING_ENUM_SYMBOLS",
            [*path, "symbols"],
            f"writer symbols {missing} are missing from the reader enum, which has no default",
            "[" + ", ".join(missing) + "]",
        )
    ]


def _describe(node: Any) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return "union"
    kind = _kind(node)
    return f"{kind} {node['name']}" if kind in _NAMED else kind


def _incompatible(kind: str, path: list[str], message: str, detail: str) -> Incompatibility:
    return Incompatibility(kind=kind, path="/".join(path) or "/", message=message, detail=detail)
