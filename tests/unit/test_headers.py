"""Kafka header helpers: every shape librdkafka gives, values as bytes."""

from __future__ import annotations

from confluent_kafka import Message

from pushline.headers import headers_named, message_headers


def test_message_headers_are_bytes_in_order_with_repeats() -> None:
    msg = Message(headers=[("traceparent", b"00-a"), ("x", "text"), ("traceparent", None)])
    assert message_headers(msg) == [("traceparent", b"00-a"), ("x", b"text"), ("traceparent", None)]


def test_headers_named_keeps_only_that_name_converted_the_same_way() -> None:
    msg = Message(headers=[("traceparent", "00-a"), ("x", b"y"), ("traceparent", b"00-b")])
    assert headers_named(msg, "traceparent") == [("traceparent", b"00-a"), ("traceparent", b"00-b")]
    assert headers_named(msg, "absent") == []


def test_a_message_without_headers_has_none() -> None:
    assert message_headers(Message()) == [] == headers_named(Message(), "traceparent")


def test_headers_given_as_a_mapping_read_the_same() -> None:
    msg = Message(headers={"traceparent": "00-a", "x": b"y"})
    assert message_headers(msg) == [("traceparent", b"00-a"), ("x", b"y")]
    assert headers_named(msg, "x") == [("x", b"y")]
