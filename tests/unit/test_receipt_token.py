"""The receipt token: round trip, tampering, expiry, key rotation, size bound and configuration."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from pushline.errors import ConfigError
from schemas import (
    DeviceKeyRequired,
    ExpiredReceiptToken,
    ForgedReceiptToken,
    MalformedReceiptToken,
    ReceiptTokenConfig,
    ReceiptTokenError,
    ReceiptTokenSigner,
)
from schemas.payloads import RECEIPT_TOKEN_MAX_CHARS
from schemas.receipt_token import generate_receipt_token_keys, parse_receipt_token_keys

KEY1 = bytes(range(32))
KEY2 = bytes(range(100, 132))
NID = "6f1c2a4e-8b3d-4f5a-9c7e-1d2b3a4c5e6f"
APNS_TOKEN = "a1b2c3d4" * 8  # 64 hex digits
FCM_TOKEN = "cXyZ0123456789abcdefgh:APA91b" + "H" * 134  # the usual ~163 characters
EXPIRES = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
BEFORE = EXPIRES - timedelta(hours=1)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.fixture
def signer() -> ReceiptTokenSigner:
    return ReceiptTokenSigner({"k1": KEY1}, "k1")


def b64decode(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize("device_key", ["dev-42", APNS_TOKEN, "ключ-устройства-😀"])
def test_round_trip_with_embedded_device_key(signer: ReceiptTokenSigner, device_key: str) -> None:
    token = signer.sign(NID, device_key, EXPIRES)
    claims = signer.verify(token, now=BEFORE)
    assert (claims.notification_id, claims.device_key, claims.expires_at, claims.kid) == (
        NID,
        device_key,
        EXPIRES,
        "k1",
    )
    # the device may also send its key; the same key is accepted
    assert signer.verify(token, device_key=device_key, now=BEFORE) == claims


def test_long_device_key_is_bound_but_not_embedded(signer: ReceiptTokenSigner) -> None:
    token = signer.sign(NID, FCM_TOKEN, EXPIRES)
    assert FCM_TOKEN not in b64decode(token).decode("latin-1")
    assert len(token) < 80
    with pytest.raises(DeviceKeyRequired):
        signer.verify(token, now=BEFORE)
    claims = signer.verify(token, device_key=FCM_TOKEN, now=BEFORE)
    assert claims.device_key == FCM_TOKEN
    assert claims.notification_id == NID


def test_notification_id_is_canonicalised(signer: ReceiptTokenSigner) -> None:
    token = signer.sign(NID.upper(), "dev", EXPIRES)
    assert signer.verify(token, now=BEFORE).notification_id == NID


def test_mac_matches_the_documented_wire_format(signer: ReceiptTokenSigner) -> None:
    """A verifier written from the module docstring alone must agree with the signer."""
    for device_key, embedded in [("dev-42", True), (FCM_TOKEN, False)]:
        dk = device_key.encode()
        body = (
            bytes([1, 2])
            + b"k1"
            + uuid.UUID(NID).bytes
            + struct.pack(">I", int(EXPIRES.timestamp()))
            + (bytes([len(dk)]) + dk if embedded else b"\x00")
        )
        msg = b"pushline/receipt-token\x00" + body + struct.pack(">I", len(dk)) + dk
        mac = hmac.new(KEY1, msg, hashlib.sha256).digest()[:16]
        assert signer.sign(NID, device_key, EXPIRES) == b64encode(body + mac)


@pytest.mark.parametrize("key_bytes", [32, 63, 64, 65, 200])
def test_mac_is_hmac_sha256_for_keys_shorter_and_longer_than_a_block(key_bytes: int) -> None:
    """The signer absorbs the key's pads once; SHA-256's block is 64 bytes, and a longer key is
    hashed first (RFC 2104): every length must give hmac.new's MAC."""
    key = bytes((7 * i + key_bytes) % 256 for i in range(key_bytes))
    token = ReceiptTokenSigner({"k1": key}, "k1").sign(NID, "dev-42", EXPIRES)
    raw = b64decode(token)
    dk = b"dev-42"
    msg = b"pushline/receipt-token\x00" + raw[:-16] + struct.pack(">I", len(dk)) + dk
    assert raw[-16:] == hmac.new(key, msg, hashlib.sha256).digest()[:16]


@pytest.mark.parametrize("device_key", ["dev-42", FCM_TOKEN])
def test_every_tampered_byte_is_refused(signer: ReceiptTokenSigner, device_key: str) -> None:
    raw = b64decode(signer.sign(NID, device_key, EXPIRES))
    for i in range(len(raw)):
        for flip in (0x01, 0x80, 0xFF):
            tampered = bytearray(raw)
            tampered[i] ^= flip
            with pytest.raises((ForgedReceiptToken, MalformedReceiptToken)):
                signer.verify(b64encode(bytes(tampered)), device_key=device_key, now=BEFORE)


@pytest.mark.parametrize("device_key", ["dev-42", FCM_TOKEN])
def test_every_tampered_character_is_refused(signer: ReceiptTokenSigner, device_key: str) -> None:
    """Also catches the unused low bits of the last base64 character (non-canonical spellings)."""
    token = signer.sign(NID, device_key, EXPIRES)
    for i, original in enumerate(token):
        for ch in ALPHABET:
            if ch == original:
                continue
            tampered = token[:i] + ch + token[i + 1 :]
            with pytest.raises((ForgedReceiptToken, MalformedReceiptToken)):
                signer.verify(tampered, device_key=device_key, now=BEFORE)


def test_truncated_and_extended_tokens_are_refused(signer: ReceiptTokenSigner) -> None:
    token = signer.sign(NID, "dev-42", EXPIRES)
    for cut in range(len(token)):
        with pytest.raises((ForgedReceiptToken, MalformedReceiptToken)):
            signer.verify(token[:cut], now=BEFORE)
    for suffix in ("A", "AA", "AAAA", "=", "==", ".x"):
        with pytest.raises(MalformedReceiptToken):
            signer.verify(token + suffix, now=BEFORE)
    with pytest.raises(MalformedReceiptToken):
        signer.verify("A" * (RECEIPT_TOKEN_MAX_CHARS + 1), now=BEFORE)


def test_token_for_another_device_is_forged(signer: ReceiptTokenSigner) -> None:
    embedded = signer.sign(NID, "dev-42", EXPIRES)
    with pytest.raises(ForgedReceiptToken, match="another device"):
        signer.verify(embedded, device_key="dev-43", now=BEFORE)
    bound = signer.sign(NID, FCM_TOKEN, EXPIRES)
    with pytest.raises(ForgedReceiptToken):
        signer.verify(bound, device_key=FCM_TOKEN[:-1] + "I", now=BEFORE)


def test_expiry_is_checked_after_the_mac(signer: ReceiptTokenSigner) -> None:
    token = signer.sign(NID, "dev-42", EXPIRES)
    assert signer.verify(token, now=EXPIRES - timedelta(seconds=1)).expires_at == EXPIRES
    with pytest.raises(ExpiredReceiptToken) as info:
        signer.verify(token, now=EXPIRES)
    assert info.value.expires_at == EXPIRES
    # a forged token is reported as forged even when it is also expired
    raw = bytearray(b64decode(token))
    raw[-1] ^= 1
    with pytest.raises(ForgedReceiptToken):
        signer.verify(b64encode(bytes(raw)), now=EXPIRES + timedelta(days=1))


def test_expiry_is_truncated_to_whole_seconds(signer: ReceiptTokenSigner) -> None:
    token = signer.sign(NID, "dev", EXPIRES + timedelta(milliseconds=999))
    assert signer.verify(token, now=BEFORE).expires_at == EXPIRES


def test_default_now_is_the_wall_clock(signer: ReceiptTokenSigner) -> None:
    past = datetime.now(UTC) - timedelta(seconds=5)
    with pytest.raises(ExpiredReceiptToken):
        signer.verify(signer.sign(NID, "dev", past))
    assert signer.verify(signer.sign(NID, "dev", datetime.now(UTC) + timedelta(minutes=1)))


def test_key_rotation() -> None:
    old = ReceiptTokenSigner({"k1": KEY1}, "k1")
    rotated = ReceiptTokenSigner({"k1": KEY1, "k2": KEY2}, "k2")
    old_token = old.sign(NID, "dev", EXPIRES)
    new_token = rotated.sign(NID, "dev", EXPIRES)
    assert rotated.verify(old_token, now=BEFORE).kid == "k1"
    assert rotated.verify(new_token, now=BEFORE).kid == "k2"
    # a verifier that has not learnt k2 yet refuses it as forged (unknown kid)
    with pytest.raises(ForgedReceiptToken, match="unknown key"):
        old.verify(new_token, now=BEFORE)
    # once k1 is dropped, its tokens are refused
    with pytest.raises(ForgedReceiptToken):
        ReceiptTokenSigner({"k2": KEY2}, "k2").verify(old_token, now=BEFORE)


def test_same_kid_with_another_key_is_forged() -> None:
    token = ReceiptTokenSigner({"k1": KEY1}, "k1").sign(NID, "dev", EXPIRES)
    with pytest.raises(ForgedReceiptToken):
        ReceiptTokenSigner({"k1": KEY2}, "k1").verify(token, now=BEFORE)


@pytest.mark.parametrize("kid", ["k", "k1", "kid-2031.01_abcd"])
def test_length_bound_for_every_device_key_length(kid: str) -> None:
    signer = ReceiptTokenSigner({kid: KEY1}, kid)
    for n in [*range(1, 300), 4096]:
        for unit in ("x", "é", "😀"):
            device_key = unit * n
            token = signer.sign(NID, device_key, EXPIRES)
            assert len(token) <= RECEIPT_TOKEN_MAX_CHARS
            assert token.isascii()
            assert signer.verify(token, device_key=device_key, now=BEFORE).device_key == device_key


def test_4096_char_device_key(signer: ReceiptTokenSigner) -> None:
    device_key = "k" * 4096
    token = signer.sign(NID, device_key, EXPIRES)
    assert len(token) <= RECEIPT_TOKEN_MAX_CHARS
    assert signer.verify(token, device_key=device_key, now=BEFORE).device_key == device_key
    with pytest.raises(ForgedReceiptToken):
        signer.verify(token, device_key=device_key[:-1], now=BEFORE)


@pytest.mark.parametrize(
    ("nid", "device_key", "expires_at"),
    [
        ("not-a-uuid", "dev", EXPIRES),
        (NID, "", EXPIRES),
        (NID, "dev", datetime(2030, 1, 1)),  # naive
        (NID, "dev", datetime(2107, 1, 1, tzinfo=UTC)),
    ],
)
def test_sign_refuses_impossible_arguments(
    signer: ReceiptTokenSigner, nid: str, device_key: str, expires_at: datetime
) -> None:
    with pytest.raises(ValueError):
        signer.sign(nid, device_key, expires_at)


def test_errors_share_a_base_class() -> None:
    for cls in (MalformedReceiptToken, ForgedReceiptToken, ExpiredReceiptToken, DeviceKeyRequired):
        assert issubclass(cls, ReceiptTokenError)


@pytest.mark.parametrize(
    ("keys", "active"),
    [({}, "k1"), ({"k1": b"short"}, "k1"), ({"k1": KEY1}, "k2"), ({"bad kid!": KEY1}, "bad kid!")],
)
def test_signer_refuses_bad_keys(keys: dict[str, bytes], active: str) -> None:
    with pytest.raises(ConfigError):
        ReceiptTokenSigner(keys, active)


def test_signer_repr_hides_keys() -> None:
    text = repr(ReceiptTokenSigner({"k1": KEY1}, "k1"))
    assert "k1" in text
    assert KEY1.hex() not in text and repr(KEY1) not in text


def env_keys(**keys: bytes) -> str:
    return ",".join(f"{kid}:{base64.b64encode(key).decode()}" for kid, key in keys.items())


def test_config_from_env_with_one_key() -> None:
    cfg = ReceiptTokenConfig.from_env({"PUSHLINE_RECEIPT_TOKEN_KEYS": env_keys(k1=KEY1)})
    assert cfg.active_kid == "k1"
    assert dict(cfg.keys) == {"k1": KEY1}
    assert cfg.ttl == timedelta(days=7)
    signer = cfg.signer()
    assert signer.verify(signer.sign(NID, "dev", EXPIRES), now=BEFORE).kid == "k1"


def test_config_from_env_with_rotation_and_ttl() -> None:
    env = {
        "PUSHLINE_RECEIPT_TOKEN_KEYS": f" {env_keys(k1=KEY1)} , k2:{b64encode(KEY2)} ",
        "PUSHLINE_RECEIPT_TOKEN_ACTIVE_KID": "k2",
        "PUSHLINE_RECEIPT_TOKEN_TTL_SECONDS": "3600",
    }
    cfg = ReceiptTokenConfig.from_env(env)
    assert dict(cfg.keys) == {"k1": KEY1, "k2": KEY2}  # standard and URL-safe base64 both accepted
    assert (cfg.active_kid, cfg.ttl_seconds) == ("k2", 3600)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "PUSHLINE_RECEIPT_TOKEN_KEYS is not set"),
        ({"PUSHLINE_RECEIPT_TOKEN_KEYS": "k1"}, "kid:base64key"),
        ({"PUSHLINE_RECEIPT_TOKEN_KEYS": "k1:not*base64"}, "'k1' is not valid base64"),
        ({"PUSHLINE_RECEIPT_TOKEN_KEYS": "k1:c2hvcnQ="}, "at least 32"),
        ({"PUSHLINE_RECEIPT_TOKEN_KEYS": env_keys(k1=KEY1, k2=KEY2)}, "ACTIVE_KID must be set"),
        (
            {
                "PUSHLINE_RECEIPT_TOKEN_KEYS": env_keys(k1=KEY1),
                "PUSHLINE_RECEIPT_TOKEN_ACTIVE_KID": "k9",
            },
            "not among the keys",
        ),
        (
            {"PUSHLINE_RECEIPT_TOKEN_KEYS": env_keys(k1=KEY1) + "," + env_keys(k1=KEY2)},
            "appears twice",
        ),
        (
            {
                "PUSHLINE_RECEIPT_TOKEN_KEYS": env_keys(k1=KEY1),
                "PUSHLINE_RECEIPT_TOKEN_TTL_SECONDS": "0",
            },
            "must be positive",
        ),
    ],
)
def test_config_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        ReceiptTokenConfig.from_env(env)
    assert base64.b64encode(KEY1).decode() not in str(info.value)


def test_config_repr_hides_keys_and_field_is_marked_secret() -> None:
    import dataclasses

    cfg = ReceiptTokenConfig.from_env({"PUSHLINE_RECEIPT_TOKEN_KEYS": env_keys(k1=KEY1)})
    text = repr(cfg)
    assert "k1" in text
    assert base64.b64encode(KEY1).decode() not in text and repr(KEY1) not in text
    keys_field = next(f for f in dataclasses.fields(cfg) if f.name == "keys")
    assert keys_field.metadata["secret"] is True


def test_generated_keys_parse_and_differ() -> None:
    a, b = generate_receipt_token_keys(), generate_receipt_token_keys("dev")
    assert len(parse_receipt_token_keys(a)["k1"]) == 32
    assert parse_receipt_token_keys(a)["k1"] != parse_receipt_token_keys(b)["dev"]
    assert ReceiptTokenConfig.from_env({"PUSHLINE_RECEIPT_TOKEN_KEYS": b}).active_kid == "dev"


def test_sign_until_matches_sign_and_takes_any_uuid_spelling() -> None:
    signer = ReceiptTokenSigner({"k1": b"k" * 32}, "k1")
    nid = "0b8f6a52-7c0e-4c55-9a39-3f1e1f7c2d11"
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    token = signer.sign_until(nid, "device-1", int(expires.timestamp()))
    assert token == signer.sign(nid, "device-1", expires)
    assert signer.sign_until(nid.upper(), "device-1", int(expires.timestamp())) == token
    claims = signer.verify(token, now=expires - timedelta(seconds=1))
    assert (claims.notification_id, claims.device_key, claims.expires_at) == (
        nid,
        "device-1",
        expires,
    )
    with pytest.raises(ValueError, match="not a UUID"):
        signer.sign_until("order-1", "device-1", int(expires.timestamp()))
    with pytest.raises(ValueError, match="outside"):
        signer.sign_until(nid, "device-1", -1)
