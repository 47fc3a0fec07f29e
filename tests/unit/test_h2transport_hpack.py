"""dispatcher._hpack: our encoder checked by the ``hpack`` package's decoder, our decoder by its
encoder (Huffman included), plus the table-size rules of RFC 7541. Every test runs twice: on the
module as installed (compiled by mypyc, see setup.py) and on its source as plain Python (what an
install with ``PUSHLINE_PURE_PYTHON=1`` runs)."""

from __future__ import annotations

import importlib.util
import random
import string
from pathlib import Path
from types import ModuleType

import hpack
import pytest

import dispatcher._hpack


def _plain_python() -> ModuleType:
    source = Path(dispatcher.__file__ or "").with_name("_hpack.py")
    spec = importlib.util.spec_from_file_location("pushline_test_hpack_source", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=["installed", "plain-python"], scope="module")
def hp(request: pytest.FixtureRequest) -> ModuleType:
    return dispatcher._hpack if request.param == "installed" else _plain_python()


def test_the_plain_python_variant_is_the_source() -> None:
    assert _plain_python().__file__.endswith("_hpack.py")  # not the extension module


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


def test_hpack_constant_headers_indexed_once(hp: ModuleType) -> None:
    encoder, decoder = hp.HpackEncoder(), hpack.Decoder()
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


def test_hpack_value_change_is_a_new_entry(hp: ModuleType) -> None:
    encoder, decoder = hp.HpackEncoder(), hpack.Decoder()
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


def test_hpack_eviction_under_small_table(hp: ModuleType) -> None:
    # a table smaller than the default is announced with a size update before its first use
    encoder, decoder = hp.HpackEncoder(max_table_size=400), hpack.Decoder()
    rng = random.Random(7)
    for i in range(300):
        jwt = "bearer " + "".join(rng.choices(string.ascii_letters, k=rng.randint(10, 150)))
        headers = request_headers(i, jwt)
        assert decoded(decoder, encoder.encode(headers)) == headers
        assert encoder.table_size <= 400
        assert decoder.header_table._current_size == encoder.table_size


def test_hpack_entry_larger_than_table_is_not_indexed(hp: ModuleType) -> None:
    encoder, decoder = hp.HpackEncoder(max_table_size=100), hpack.Decoder()
    headers = request_headers(1, "bearer " + "z" * 200)
    for _ in range(2):
        assert decoded(decoder, encoder.encode(headers)) == headers
    assert all(entry[1] != "z" * 200 for entry in encoder._entries)


def test_hpack_peer_lowers_table_size(hp: ModuleType) -> None:
    encoder, decoder = hp.HpackEncoder(), hpack.Decoder()
    assert decoded(decoder, encoder.encode(request_headers(1))) == request_headers(1)
    encoder.set_peer_limit(0)
    encoder.set_peer_limit(256)  # two changes between blocks: the smallest is signalled first
    decoder.max_allowed_table_size = 256
    block = encoder.encode(request_headers(2))
    update = b"\x20" + hp.encode_integer(256, 5, 0x20)  # size 0, then the final 256
    assert block.startswith(update)
    assert decoded(decoder, block) == request_headers(2)
    assert encoder.table_size <= 256
    assert decoder.header_table.maxsize == 256
    for i in range(3, 10):
        assert decoded(decoder, encoder.encode(request_headers(i))) == request_headers(i)


def test_hpack_integer_encoding_matches_rfc(hp: ModuleType) -> None:
    assert hp.encode_integer(10, 5) == b"\x0a"  # RFC 7541 C.1.1
    assert hp.encode_integer(1337, 5) == b"\x1f\x9a\x0a"  # C.1.2
    assert hp.encode_integer(42, 8) == b"\x2a"  # C.1.3


@pytest.mark.parametrize("huffman", [False, True])
def test_hpack_decoder_against_hpack_encoder(hp: ModuleType, huffman: bool) -> None:
    encoder, decoder = hpack.Encoder(), hp.HpackDecoder()
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


def test_hpack_huffman_matches_reference(hp: ModuleType) -> None:
    rng = random.Random(11)
    for _ in range(300):
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 50)))
        encoded = hpack.huffman.HuffmanEncoder(
            hpack.huffman_constants.REQUEST_CODES, hpack.huffman_constants.REQUEST_CODES_LENGTH
        ).encode(raw)
        assert hp.decode_huffman(encoded) == raw


def test_hpack_decoder_errors(hp: ModuleType) -> None:
    with pytest.raises(hp.HpackError):
        hp.HpackDecoder().decode(b"\xff\x80")  # index out of range (truncated integer)
    with pytest.raises(hp.HpackError):
        hp.HpackDecoder().decode(b"\xbe")  # dynamic index 62 with an empty table
    with pytest.raises(hp.HpackError):
        hp.HpackDecoder().decode(b"\x88\x20")  # size update after a field
    with pytest.raises(hp.HpackError):
        hp.HpackDecoder(max_table_size=100).decode(b"\x3f\xe1\x1f")  # size update above our limit
    with pytest.raises(hp.HpackError):
        hp.HpackDecoder().decode(b"\x04\x85\xff\xff\xff\xff\xff")  # EOS in a Huffman string
    with pytest.raises(hp.HpackError):
        hp.decode_huffman(b"\xff")  # padding longer than 7 bits
    with pytest.raises(hp.HpackError):
        hp.decode_huffman(b"\x00\x00\x00")  # four '0' symbols, then padding that is not all ones
    assert hp.decode_huffman(b"") == b""
    with pytest.raises(hp.HpackError):
        hp.HpackDecoder().decode(b"\x04\x0aabc")  # string longer than the block
