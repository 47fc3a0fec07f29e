"""dispatcher._hpack: our encoder checked by the ``hpack`` package's decoder, our decoder by its
encoder (Huffman included), plus the table-size rules of RFC 7541."""

from __future__ import annotations

import random
import string

import hpack
import pytest

from dispatcher._hpack import HpackDecoder, HpackEncoder, HpackError, decode_huffman, encode_integer

JWT = "bearer eyJhbGciOiJFUzI1NiIsImtpZCI6IkFCQzEyMzQ1NjcifQ." + "x" * 120


def request_headers(i: int, jwt: str = JWT) -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "api.push.apple.com"),
        (":path", f"/3/device/{i:064x}"),
        ("authorization", jwt),
        ("apns-topic", "com.example.app"),
        ("apns-push-type", "alert"),
        ("apns-id", f"00000000-0000-0000-0000-{i:012x}"),
        ("apns-priority", "10"),
        ("apns-expiration", str(1_700_000_000 + i)),
        ("content-type", "application/json"),
    ]


def decoded(decoder: hpack.Decoder, block: bytes) -> list[tuple[str, str]]:
    return [(str(k), str(v)) for k, v in decoder.decode(block, raw=False)]


def test_hpack_constant_headers_indexed_once() -> None:
    encoder, decoder = HpackEncoder(), hpack.Decoder()
    first = encoder.encode(request_headers(1))
    second = encoder.encode(request_headers(2))
    assert decoded(decoder, first) == request_headers(1)
    assert decoded(decoder, second) == request_headers(2)
    assert JWT.encode() in first and JWT.encode() not in second
    # eight constant fields cost one byte each; the per-request values are literals with the
    # name by index (two bytes of overhead, three for a dynamic-table name)
    literals = sum(
        len(v) + 2 for n, v in request_headers(2) if n in (":path", "apns-id", "apns-expiration")
    )
    assert len(second) == 8 + literals + 2


def test_hpack_value_change_is_a_new_entry() -> None:
    encoder, decoder = HpackEncoder(), hpack.Decoder()
    for i in range(3):
        assert decoded(decoder, encoder.encode(request_headers(i))) == request_headers(i)
    new_jwt = JWT.replace("x", "y")
    block = encoder.encode(request_headers(3, new_jwt))
    assert new_jwt.encode() in block
    assert decoded(decoder, block) == request_headers(3, new_jwt)
    again = encoder.encode(request_headers(4, new_jwt))
    assert new_jwt.encode() not in again
    assert decoded(decoder, again) == request_headers(4, new_jwt)
    # and the old token, if a request still carries it, decodes too (still in the table)
    assert decoded(decoder, encoder.encode(request_headers(5))) == request_headers(5)


def test_hpack_eviction_under_small_table() -> None:
    # a table smaller than the default is announced with a size update before its first use
    encoder, decoder = HpackEncoder(max_table_size=400), hpack.Decoder()
    rng = random.Random(7)
    for i in range(300):
        jwt = "bearer " + "".join(rng.choices(string.ascii_letters, k=rng.randint(10, 150)))
        headers = request_headers(i, jwt)
        assert decoded(decoder, encoder.encode(headers)) == headers
        assert encoder.table_size <= 400
        assert decoder.header_table._current_size == encoder.table_size


def test_hpack_entry_larger_than_table_is_not_indexed() -> None:
    encoder, decoder = HpackEncoder(max_table_size=100), hpack.Decoder()
    headers = request_headers(1, "bearer " + "z" * 200)
    for _ in range(2):
        assert decoded(decoder, encoder.encode(headers)) == headers
    assert all(entry[1] != "z" * 200 for entry in encoder._entries)


def test_hpack_peer_lowers_table_size() -> None:
    encoder, decoder = HpackEncoder(), hpack.Decoder()
    assert decoded(decoder, encoder.encode(request_headers(1))) == request_headers(1)
    encoder.set_peer_limit(0)
    encoder.set_peer_limit(256)  # two changes between blocks: the smallest is signalled first
    decoder.max_allowed_table_size = 256
    block = encoder.encode(request_headers(2))
    update = b"\x20" + encode_integer(256, 5, 0x20)  # size 0, then the final 256
    assert block.startswith(update)
    assert decoded(decoder, block) == request_headers(2)
    assert encoder.table_size <= 256
    assert decoder.header_table.maxsize == 256
    for i in range(3, 10):
        assert decoded(decoder, encoder.encode(request_headers(i))) == request_headers(i)


def test_hpack_integer_encoding_matches_rfc() -> None:
    assert encode_integer(10, 5) == b"\x0a"  # RFC 7541 C.1.1
    assert encode_integer(1337, 5) == b"\x1f\x9a\x0a"  # C.1.2
    assert encode_integer(42, 8) == b"\x2a"  # C.1.3


@pytest.mark.parametrize("huffman", [False, True])
def test_hpack_decoder_against_hpack_encoder(huffman: bool) -> None:
    encoder, decoder = hpack.Encoder(), HpackDecoder()
    rng = random.Random(3)
    for i in range(200):
        headers = [
            (":status", rng.choice(["200", "410", "429", "503"])),
            ("apns-id", f"{rng.getrandbits(128):032x}"),
            ("content-type", "application/json"),
            (
                f"x-{rng.randint(0, 5)}",
                "".join(rng.choices(string.printable, k=rng.randint(0, 60))),
            ),
        ]
        block = encoder.encode(headers, huffman=huffman)
        assert decoder.decode(block) == headers, i
    encoder.header_table_size = 100  # a size update at the start of the next block
    headers = [(":status", "200"), ("x-after", "resize")]
    assert decoder.decode(encoder.encode(headers, huffman=huffman)) == headers
    assert decoder._limit == 100


def test_hpack_huffman_matches_reference() -> None:
    rng = random.Random(11)
    for _ in range(300):
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 50)))
        encoded = hpack.huffman.HuffmanEncoder(
            hpack.huffman_constants.REQUEST_CODES, hpack.huffman_constants.REQUEST_CODES_LENGTH
        ).encode(raw)
        assert decode_huffman(encoded) == raw


def test_hpack_decoder_errors() -> None:
    with pytest.raises(HpackError):
        HpackDecoder().decode(b"\xff\x80")  # index out of range (truncated integer)
    with pytest.raises(HpackError):
        HpackDecoder().decode(b"\xbe")  # dynamic index 62 with an empty table
    with pytest.raises(HpackError):
        HpackDecoder().decode(b"\x88\x20")  # size update after a field
    with pytest.raises(HpackError):
        HpackDecoder(max_table_size=100).decode(b"\x3f\xe1\x1f")  # size update above our limit
    with pytest.raises(HpackError):
        HpackDecoder().decode(b"\x04\x85\xff\xff\xff\xff\xff")  # EOS in a Huffman string
    with pytest.raises(HpackError):
        HpackDecoder().decode(b"\x04\x0aabc")  # string longer than the block
