"""Avro reader/writer compatibility, validation and canonical text of the registry emulator.

Verdicts are cross-checked against fastavro: where we say "compatible", fastavro must read data
written with the writer schema using the reader schema; where we say "incompatible", the case comes
with a datum fastavro actually fails on.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError

from pushline.emulators import InvalidSchemaError, compatibility_errors
from pushline.emulators._avro_compat import check_compatibility, parse_avro
from pushline.errors import CodecError


def record(name: str, *fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields), **extra}


def fld(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def fastavro_read(writer: Any, reader: Any, datum: Any) -> Any:
    """Write ``datum`` with ``writer`` and read it back with ``reader`` (raises if it cannot)."""
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(writer), datum)
    buf.seek(0)
    return schemaless_reader(buf, parse_schema(writer), parse_schema(reader))


def kinds(reader: Any, writer: Any) -> list[tuple[str, str]]:
    return [(i.kind, i.path) for i in check_compatibility(parse_avro(reader), parse_avro(writer))]


# ------------------------------------------------------------------------------------ primitives

PRIMITIVES = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]
PROMOTIONS = [
    ("int", "long", 7),
    ("int", "float", 7),
    ("int", "double", 7),
    ("long", "float", 2**40),
    ("long", "double", 2**40),
    ("float", "double", 1.5),
    ("string", "bytes", "hé"),
    ("bytes", "string", b"abc"),
]


@pytest.mark.parametrize("type_", PRIMITIVES)
def test_a_primitive_reads_itself(type_: str) -> None:
    assert compatibility_errors(type_, type_) == []


@pytest.mark.parametrize(("writer", "reader", "datum"), PROMOTIONS)
def test_specified_promotions_are_compatible_and_fastavro_reads_them(
    writer: str, reader: str, datum: Any
) -> None:
    assert compatibility_errors(reader, writer) == []
    fastavro_read(writer, reader, datum)


@pytest.mark.parametrize(
    ("writer", "reader", "datum"),
    [
        ("long", "int", 2**40),
        ("double", "float", 1.5),
        ("float", "long", 1.5),
        ("double", "int", 2.0),
        ("int", "boolean", 1),
        ("string", "int", "7"),
        ("null", "string", None),
        ("boolean", "null", True),
    ],
)
def test_demotions_and_unrelated_primitives_are_type_mismatches(
    writer: str, reader: str, datum: Any
) -> None:
    assert kinds(reader, writer) == [("TYPE_MISMATCH", "/")]
    with pytest.raises(SchemaResolutionError):
        fastavro_read(writer, reader, datum)


def test_logical_types_are_ignored_and_the_underlying_type_decides() -> None:
    millis = {"type": "long", "logicalType": "timestamp-millis"}
    date = {"type": "int", "logicalType": "date"}
    assert compatibility_errors("long", millis) == []
    assert compatibility_errors(millis, "long") == []
    # int (date) -> long (timestamp-millis) is the int->long promotion.
    assert compatibility_errors(millis, date) == []
    assert kinds(date, millis) == [("TYPE_MISMATCH", "/")]


def test_schemas_can_be_given_as_json_text_bare_names_or_objects() -> None:
    assert compatibility_errors('"long"', "int") == []
    assert compatibility_errors(["null", "long"], '["null", "int"]') == []
    assert compatibility_errors({"type": "long"}, {"type": "int"}) == []
    assert compatibility_errors("int", "long") == [
        "TYPE_MISMATCH at /: reader type int cannot read writer type long"
    ]


# --------------------------------------------------------------------------------------- records

V1 = record("Event", fld("id", "string"), fld("count", "int"))


def test_a_new_reader_field_with_a_default_is_compatible_and_filled_in() -> None:
    reader = record(
        "Event", fld("id", "string"), fld("count", "int"), fld("tag", "string", default="x")
    )
    assert compatibility_errors(reader, V1) == []
    assert fastavro_read(V1, reader, {"id": "a", "count": 1}) == {"id": "a", "count": 1, "tag": "x"}


def test_a_null_default_counts_as_a_default() -> None:
    reader = record(
        "Event",
        fld("id", "string"),
        fld("count", "int"),
        fld("tag", ["null", "string"], default=None),
    )
    assert compatibility_errors(reader, V1) == []
    assert fastavro_read(V1, reader, {"id": "a", "count": 1})["tag"] is None


def test_a_new_reader_field_without_default_is_incompatible() -> None:
    reader = record("Event", fld("id", "string"), fld("count", "int"), fld("tag", "string"))
    errors = compatibility_errors(reader, V1)
    assert errors == [
        "READER_FIELD_MISSING_DEFAULT_VALUE at /fields/2: reader field 'tag' has no default "
        "value and is missing from the writer schema"
    ]
    with pytest.raises(SchemaResolutionError):
        fastavro_read(V1, reader, {"id": "a", "count": 1})


def test_dropping_a_field_is_compatible_for_the_reader() -> None:
    reader = record("Event", fld("id", "string"))
    assert compatibility_errors(reader, V1) == []
    assert fastavro_read(V1, reader, {"id": "a", "count": 1}) == {"id": "a"}


def test_a_renamed_field_resolves_through_a_reader_alias_only() -> None:
    renamed = record("Event", fld("id", "string"), fld("total", "int"))
    aliased = record("Event", fld("id", "string"), fld("total", "int", aliases=["count"]))
    assert kinds(renamed, V1) == [("READER_FIELD_MISSING_DEFAULT_VALUE", "/fields/1")]
    assert compatibility_errors(aliased, V1) == []
    assert fastavro_read(V1, aliased, {"id": "a", "count": 3}) == {"id": "a", "total": 3}


def test_field_type_changes_are_reported_at_the_field_path() -> None:
    reader = record("Event", fld("id", "string"), fld("count", "boolean"))
    assert kinds(reader, V1) == [("TYPE_MISMATCH", "/fields/1/type")]
    with pytest.raises(SchemaResolutionError):
        fastavro_read(V1, reader, {"id": "a", "count": 1})


def test_every_problem_is_reported_not_only_the_first() -> None:
    reader = record("Event", fld("id", "int"), fld("count", "int"), fld("new", "int"))
    assert kinds(reader, V1) == [
        ("TYPE_MISMATCH", "/fields/0/type"),
        ("READER_FIELD_MISSING_DEFAULT_VALUE", "/fields/2"),
    ]


def test_nested_records_are_resolved_recursively() -> None:
    inner_w = record("Inner", fld("n", "int"))
    inner_r = record("Inner", fld("n", "string"))
    writer = record("Outer", fld("inner", inner_w))
    reader = record("Outer", fld("inner", inner_r))
    assert kinds(reader, writer) == [("TYPE_MISMATCH", "/fields/0/type/fields/0/type")]
    with pytest.raises(SchemaResolutionError):
        fastavro_read(writer, reader, {"inner": {"n": 1}})


def test_record_names_must_match_but_namespaces_do_not_matter() -> None:
    # The specification (and Java's SchemaCompatibility and fastavro) compare unqualified names.
    writer = record("Event", fld("id", "string"), namespace="com.old")
    moved = record("Event", fld("id", "string"), namespace="com.new")
    renamed = record("Happening", fld("id", "string"), namespace="com.old")
    assert compatibility_errors(moved, writer) == []
    assert fastavro_read(writer, moved, {"id": "a"}) == {"id": "a"}
    assert kinds(renamed, writer) == [("NAME_MISMATCH", "/name")]
    with pytest.raises(SchemaResolutionError):
        fastavro_read(writer, renamed, {"id": "a"})


def test_a_renamed_record_resolves_through_a_reader_alias() -> None:
    writer = record("Event", fld("id", "string"), namespace="com.x")
    aliased = record("Happening", fld("id", "string"), namespace="com.x", aliases=["Event"])
    assert compatibility_errors(aliased, writer) == []
    assert fastavro_read(writer, aliased, {"id": "a"}) == {"id": "a"}


def test_a_record_never_reads_a_different_kind_of_type() -> None:
    assert kinds(V1, {"type": "map", "values": "string"}) == [("TYPE_MISMATCH", "/")]
    assert kinds(V1, "string") == [("TYPE_MISMATCH", "/")]


# ----------------------------------------------------------------------------------------- enums

COLOR = {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN", "BLUE"]}


def test_an_enum_reader_must_know_every_writer_symbol() -> None:
    reader = {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}
    inc = check_compatibility(parse_avro(reader), parse_avro(COLOR))
    assert [(i.kind, i.path, i.detail) for i in inc] == [
        ("MISSING_ENUM_SYMBOLS", "/symbols", "[BLUE]")
    ]
    assert fastavro_read(COLOR, reader, "RED") == "RED"
    with pytest.raises(SchemaResolutionError):
        fastavro_read(COLOR, reader, "BLUE")


def test_an_enum_reader_with_a_default_absorbs_unknown_symbols() -> None:
    reader = {"type": "enum", "name": "Color", "symbols": ["UNKNOWN", "RED"], "default": "UNKNOWN"}
    assert compatibility_errors(reader, COLOR) == []
    assert fastavro_read(COLOR, reader, "BLUE") == "UNKNOWN"


def test_adding_enum_symbols_is_compatible_for_the_reader() -> None:
    reader = {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN", "BLUE", "BLACK"]}
    assert compatibility_errors(reader, COLOR) == []
    assert fastavro_read(COLOR, reader, "BLUE") == "BLUE"


def test_enum_names_must_match() -> None:
    reader = {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN", "BLUE"]}
    assert kinds(reader, COLOR) == [("NAME_MISMATCH", "/name")]


# ---------------------------------------------------------------------------------------- unions


def test_a_reader_union_with_more_branches_reads_a_smaller_writer_union() -> None:
    writer = ["null", "string"]
    reader = ["null", "string", "int"]
    assert compatibility_errors(reader, writer) == []
    assert fastavro_read(writer, reader, "x") == "x"


def test_a_writer_union_branch_the_reader_lacks_is_incompatible() -> None:
    writer = ["null", "string", "int"]
    reader = ["null", "string"]
    assert kinds(reader, writer) == [("MISSING_UNION_BRANCH", "/2")]
    assert fastavro_read(writer, reader, "x") == "x"
    with pytest.raises(SchemaResolutionError):
        fastavro_read(writer, reader, 5)


def test_a_non_union_writer_needs_some_reader_branch() -> None:
    assert compatibility_errors(["null", "string"], "string") == []
    assert compatibility_errors(["null", "long"], "int") == []  # via promotion
    assert fastavro_read("int", ["null", "long"], 3) == 3
    assert kinds(["null", "string"], "boolean") == [("MISSING_UNION_BRANCH", "/")]
    with pytest.raises(SchemaResolutionError):
        fastavro_read("boolean", ["null", "string"], True)


def test_a_union_writer_against_a_non_union_reader_needs_every_branch() -> None:
    assert compatibility_errors("double", ["int", "long", "float"]) == []
    assert fastavro_read(["int", "long"], "double", 3) == 3.0
    assert kinds("string", ["null", "string"]) == [("TYPE_MISMATCH", "/")]
    assert fastavro_read(["null", "string"], "string", "x") == "x"
    with pytest.raises(SchemaResolutionError):
        fastavro_read(["null", "string"], "string", None)


def test_making_a_field_optional_is_backward_but_not_forward_compatible() -> None:
    required = record("R", fld("f", "string"))
    optional = record("R", fld("f", ["null", "string"], default=None))
    assert compatibility_errors(optional, required) == []  # new (optional) reads old
    assert kinds(required, optional) == [("TYPE_MISMATCH", "/fields/0/type")]


def test_records_inside_unions_are_matched_and_resolved() -> None:
    writer = ["null", record("A", fld("x", "int"))]
    reader = ["null", record("A", fld("x", "long"), fld("y", "int", default=0))]
    assert compatibility_errors(reader, writer) == []
    assert fastavro_read(writer, reader, {"x": 1}) == {"x": 1, "y": 0}
    bad_reader = ["null", record("A", fld("x", "long"), fld("y", "int"))]
    assert kinds(bad_reader, writer) == [("MISSING_UNION_BRANCH", "/1")]


# --------------------------------------------------------------------------- arrays, maps, fixed


def test_arrays_and_maps_resolve_their_items_and_values() -> None:
    assert (
        compatibility_errors({"type": "array", "items": "long"}, {"type": "array", "items": "int"})
        == []
    )
    assert kinds({"type": "array", "items": "int"}, {"type": "array", "items": "long"}) == [
        ("TYPE_MISMATCH", "/items")
    ]
    assert (
        compatibility_errors(
            {"type": "map", "values": "double"}, {"type": "map", "values": "float"}
        )
        == []
    )
    assert kinds({"type": "map", "values": "int"}, {"type": "map", "values": "string"}) == [
        ("TYPE_MISMATCH", "/values")
    ]
    assert kinds({"type": "map", "values": "int"}, {"type": "array", "items": "int"}) == [
        ("TYPE_MISMATCH", "/")
    ]
    with pytest.raises(SchemaResolutionError):
        fastavro_read({"type": "array", "items": "long"}, {"type": "array", "items": "int"}, [1])


def test_fixed_needs_the_same_name_and_size() -> None:
    md5 = {"type": "fixed", "name": "Hash", "size": 16}
    assert compatibility_errors(md5, md5) == []
    assert kinds({"type": "fixed", "name": "Hash", "size": 20}, md5) == [
        ("FIXED_SIZE_MISMATCH", "/size")
    ]
    assert kinds({"type": "fixed", "name": "Digest", "size": 16}, md5) == [
        ("NAME_MISMATCH", "/name")
    ]
    with pytest.raises(SchemaResolutionError):
        fastavro_read(md5, {"type": "fixed", "name": "Hash", "size": 20}, b"0" * 16)


# -------------------------------------------------------------------- named references, recursion


def test_named_type_references_resolve_in_their_namespace() -> None:
    status = {"type": "enum", "name": "Status", "symbols": ["OK", "FAIL"]}
    writer = record("R", fld("a", status), fld("b", "Status"), namespace="com.x")
    narrower = {"type": "enum", "name": "Status", "symbols": ["OK"]}
    reader = record("R", fld("a", narrower), fld("b", "com.x.Status"), namespace="com.x")
    assert set(parse_avro(writer).named) == {"com.x.R", "com.x.Status"}
    # Both fields use the narrowed enum, so both report the missing symbol.
    assert kinds(reader, writer) == [
        ("MISSING_ENUM_SYMBOLS", "/fields/0/type/symbols"),
        ("MISSING_ENUM_SYMBOLS", "/fields/1/type/symbols"),
    ]


NODE_INT = record("Node", fld("value", "int"), fld("next", ["null", "Node"]))
NODE_LONG = record("Node", fld("value", "long"), fld("next", ["null", "Node"]))


def test_recursive_types_are_checked_without_looping() -> None:
    chain = {"value": 1, "next": {"value": 2, "next": None}}
    assert compatibility_errors(NODE_INT, NODE_INT) == []
    assert compatibility_errors(NODE_LONG, NODE_INT) == []
    assert fastavro_read(NODE_INT, NODE_LONG, chain) == chain
    assert kinds(NODE_INT, NODE_LONG) == [("TYPE_MISMATCH", "/fields/0/type")]
    with pytest.raises(SchemaResolutionError):
        fastavro_read(NODE_LONG, NODE_INT, chain)


def test_mutually_recursive_types_are_checked() -> None:
    tree_w = record(
        "Tree",
        fld("label", "string"),
        fld("children", {"type": "array", "items": record("Branch", fld("tree", "Tree"))}),
    )
    tree_r = record(
        "Tree",
        fld("label", "string"),
        fld(
            "children",
            {"type": "array", "items": record("Branch", fld("tree", "Tree"), fld("w", "int"))},
        ),
    )
    assert compatibility_errors(tree_w, tree_w) == []
    assert kinds(tree_r, tree_w) == [
        ("READER_FIELD_MISSING_DEFAULT_VALUE", "/fields/1/type/items/fields/1")
    ]


# ------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("Nope", "unknown type 'Nope'"),
        ({"type": "record", "name": "R"}, "needs a 'fields' list"),
        ({"type": "record", "fields": []}, "needs a non-empty string name"),
        (record("1R"), "invalid name '1R'"),
        (record("R", fld("a", "int"), fld("a", "long")), "field 'a' twice"),
        (record("R", fld("a", "Unknown")), "unknown type 'Unknown'"),
        (record("R", {"name": "a"}), "has no type"),
        (["int", "int"], "union contains 'int' twice"),
        (["null", ["int", "long"]], "cannot directly contain a union"),
        ({"type": "enum", "name": "E", "symbols": ["A", "A"]}, "repeats a symbol"),
        ({"type": "enum", "name": "E", "symbols": ["A-1"]}, "invalid enum symbol"),
        ({"type": "enum", "name": "E", "symbols": ["A"], "default": "B"}, "Default value for enum"),
        ({"type": "fixed", "name": "F"}, "needs a size"),
        ({"type": "array"}, "array needs 'items'"),
        ({"type": "map"}, "map needs 'values'"),
        (record("R", fld("a", "int", default="x")), "Default value <x> must match schema type"),
        (
            record(
                "R",
                fld("a", {"type": "enum", "name": "E", "symbols": ["A"]}),
                fld("b", {"type": "enum", "name": "E", "symbols": ["B"]}),
            ),
            "'E' is defined twice",
        ),
        (42, "is not a schema"),
        ({"type": {"type": "string"}}, "'type' must be a type name string"),
    ],
)
def test_invalid_schemas_are_refused_with_a_reason(schema: Any, reason: str) -> None:
    with pytest.raises(InvalidSchemaError, match=None) as info:
        parse_avro(schema)
    assert reason in str(info.value)
    assert isinstance(info.value, CodecError)


def test_compatibility_errors_refuses_invalid_input() -> None:
    with pytest.raises(InvalidSchemaError):
        compatibility_errors("int", {"type": "record", "name": "R"})


# -------------------------------------------------------------------------------- canonical text


def test_canonical_text_ignores_whitespace_and_key_order() -> None:
    a = json.dumps(
        {"type": "record", "name": "R", "fields": [{"name": "x", "type": "int"}]}, indent=4
    )
    b = '{"fields": [{"type": {"type": "int"}, "name": "x"}], "name": "R", "type": "record"}'
    assert parse_avro(a).canonical == parse_avro(b).canonical
    assert (
        parse_avro(a).canonical
        == '{"type":"record","name":"R","fields":[{"name":"x","type":"int"}]}'
    )


def test_canonical_text_keeps_what_changes_meaning_or_docs() -> None:
    plain = record("R", fld("x", "int"))
    documented = record("R", fld("x", "int", doc="the x"))
    assert parse_avro(plain).canonical != parse_avro(documented).canonical
    # Logical types and custom properties survive.
    millis = parse_avro({"type": "long", "logicalType": "timestamp-millis"})
    assert json.loads(millis.canonical) == {"type": "long", "logicalType": "timestamp-millis"}


def test_normalized_text_qualifies_names_and_means_the_same_schema() -> None:
    schema = record(
        "Outer",
        fld("inner", record("Inner", fld("n", "int"), namespace="")),
        fld("e", {"type": "enum", "name": "E", "symbols": ["A"]}),
        fld("e2", "E"),
        namespace="com.x",
    )
    parsed = parse_avro(schema)
    normalized = json.loads(parsed.normalized)
    assert normalized["name"] == "com.x.Outer"
    assert "namespace" not in normalized
    # The null-namespace type nested in a namespaced one keeps its meaning when read back.
    assert normalized["fields"][0]["type"]["namespace"] == ""
    assert normalized["fields"][2]["type"] == "com.x.E"
    reparsed = parse_avro(parsed.normalized)
    assert set(reparsed.named) == {"com.x.Outer", "Inner", "com.x.E"}
    assert reparsed.normalized == parsed.normalized
    assert compatibility_errors(parsed.normalized, schema) == []


def test_parsing_does_not_modify_the_callers_schema() -> None:
    schema = record("R", fld("x", "int"), namespace="n")
    before = json.dumps(schema)
    parse_avro(schema)
    assert json.dumps(schema) == before
