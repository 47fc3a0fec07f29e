"""The signed receipt token: the part of the contract shared by the dispatcher and the receipts API.

The dispatcher puts a token in the custom data of every push (key ``schemas.payloads.RECEIPT_TOKEN_KEY``);
the device sends it back to ``POST /v1/receipts`` with a receipt kind. The receipts API accepts a receipt
only when the token's MAC is valid and it has not expired, so a receipt cannot be forged, nor replayed for
another notification or another device (DESIGN.md, delivery semantics).

Design
------
The MAC always binds (version, kid, notification_id, device key, expiry). The device key itself is
*embedded* in the token only when the whole token still fits in ``RECEIPT_TOKEN_MAX_CHARS`` (200): a
custom device id or a 64-hex-digit APNs token fits, an FCM registration token (160+ characters) does
not. A token without the key is a compact 55-74 characters, and the device must then send the device
key with the receipt (it is its own push token, or the device id the app registered), which the
verifier checks against the MAC. Either way the receipts API learns the device key it needs to key the
receipt on push.receipts, and never trusts an unsigned one. So a device sends the token, the kind and,
when it knows it, its device key; :meth:`ReceiptTokenSigner.verify` raises :class:`DeviceKeyRequired` when
the token does not carry the key and none was given.

Wire format (version 1), URL-safe base64 without padding, canonical (one string per token)::

    offset  size  field
    0       1     version (1)
    1       1     kid length k (1..16)
    2       k     kid, ASCII [A-Za-z0-9._-]
    2+k     16    notification_id, the 16 UUID bytes
    18+k    4     expiry, unsigned big-endian seconds since the Unix epoch
    22+k    1     length n of the embedded device key (0: not embedded)
    23+k    n     device key, UTF-8
    23+k+n  16    MAC

    MAC = HMAC-SHA256(keys[kid], DOMAIN || token[0 : 23+k+n] || u32be(len(dk)) || dk)[:16]

Every field is fixed-size or length-prefixed, so the MAC input is unambiguous; the device key is always
MAC'ed in full, embedded or not. 128 bits of tag are far beyond online guessing. The kid names the key,
which allows rotation: verifiers know every current key, the signer uses the active one. To rotate, add
the new key to the receipts API, then make it active in the dispatchers, and drop the old key after the
token TTL has passed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from pushline.config import config_from_env, env_field
from pushline.errors import ConfigError, PushlineError
from schemas._ids import is_canonical_uuid
from schemas.payloads import RECEIPT_TOKEN_MAX_CHARS

__all__ = [
    "MIN_KEY_BYTES",
    "DeviceKeyRequired",
    "ExpiredReceiptToken",
    "ForgedReceiptToken",
    "MalformedReceiptToken",
    "ReceiptClaims",
    "ReceiptTokenConfig",
    "ReceiptTokenError",
    "ReceiptTokenSigner",
    "generate_receipt_token_keys",
    "parse_receipt_token_keys",
]

VERSION = 1
MIN_KEY_BYTES = 32
"""Shortest accepted HMAC key: SHA-256's output size, as RFC 2104 recommends."""
MAC_BYTES = 16
MAX_KID_CHARS = 16
MAX_DEVICE_KEY_BYTES = 65_535
# Separates this MAC from any other use of the same key material.
_DOMAIN = b"pushline/receipt-token\x00"
_KID_RE = re.compile(r"[A-Za-z0-9._-]{1,16}")
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+")
_EXPIRY = struct.Struct(">I")
_U32 = struct.Struct(">I")
# version, kid length, kid (≥1), id, expiry, key length, MAC
_MIN_TOKEN_BYTES = 1 + 1 + 1 + 16 + 4 + 1 + MAC_BYTES


class ReceiptTokenError(PushlineError):
    """A receipt token was refused. The receipts API answers every subclass with a 4xx."""


class MalformedReceiptToken(ReceiptTokenError):
    """Not a receipt token at all: wrong alphabet, length, version or layout."""


class ForgedReceiptToken(ReceiptTokenError):
    """Well-formed, but not signed by us for this device: bad MAC, unknown kid, other device key."""


class ExpiredReceiptToken(ReceiptTokenError):
    """Genuine, but past its expiry."""

    def __init__(self, message: str, *, expires_at: datetime) -> None:
        super().__init__(message)
        self.expires_at = expires_at


class DeviceKeyRequired(ReceiptTokenError):
    """The token does not carry the device key (it was too long to embed) and none was given."""


@dataclass(frozen=True)
class ReceiptClaims:
    """What a verified token proves."""

    notification_id: str
    """Canonical lower-case UUID string."""
    device_key: str
    """The device key the token was issued for (embedded, or the one given to verify())."""
    expires_at: datetime
    """Tz-aware UTC, whole seconds."""
    kid: str
    """The key that signed it."""


_URLSAFE = bytes.maketrans(b"+/", b"-_")
_SHA256_BLOCK = 64
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


class _KeyedSha256:
    """HMAC-SHA256 under one key, with the key's two pads hashed once (RFC 2104, section 4 suggests
    it): a MAC is then two hash-state copies and two updates. ``hmac.HMAC.copy`` + ``update`` +
    ``digest`` took 1.1 µs a token, this 0.64 µs (a token is made for every push). Every MAC is
    tested equal to ``hmac.new``'s."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes, prefix: bytes) -> None:
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\x00")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._inner.update(prefix)
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def digest(self, message: bytes) -> bytes:
        """HMAC-SHA256(key, prefix || message)."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def _b64encode(raw: bytes) -> str:
    # base64.urlsafe_b64encode, without its Python layers (a token is made per push)
    return binascii.b2a_base64(raw, newline=False).rstrip(b"=").translate(_URLSAFE).decode("ascii")


def _check_keys(keys: Mapping[str, bytes], active_kid: str) -> None:
    if not keys:
        raise ConfigError("no receipt token key configured")
    for kid, key in keys.items():
        if not _KID_RE.fullmatch(kid):
            raise ConfigError(
                f"receipt token kid {kid!r} must be 1-{MAX_KID_CHARS} characters of [A-Za-z0-9._-]"
            )
        if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
            # the message names the kid only: a key must never reach a log line
            raise ConfigError(
                f"receipt token key {kid!r} must be at least {MIN_KEY_BYTES} random bytes"
            )
    if active_kid not in keys:
        raise ConfigError(f"active receipt token kid {active_kid!r} is not among the keys")


class ReceiptTokenSigner:
    """Signs and verifies receipt tokens. ``keys`` maps kid → key; new tokens use ``active_kid``.

    Thread-safe: it holds no mutable state.
    """

    def __init__(self, keys: Mapping[str, bytes], active_kid: str) -> None:
        _check_keys(keys, active_kid)
        self._active_kid = active_kid
        kid = active_kid.encode("ascii")
        self._head = bytes((VERSION, len(kid))) + kid
        self._macs: Mapping[str, _KeyedSha256] = MappingProxyType(
            {kid: _KeyedSha256(key, _DOMAIN) for kid, key in keys.items()}
        )

    @property
    def active_kid(self) -> str:
        return self._active_kid

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._macs)

    def __repr__(self) -> str:  # the keys never reach a log line
        return f"ReceiptTokenSigner(kids={sorted(self._macs)!r}, active_kid={self._active_kid!r})"

    def _mac(self, kid: str, body: bytes, device_key: bytes) -> bytes:
        # one message: one update is cheaper than three
        return self._macs[kid].digest(body + _U32.pack(len(device_key)) + device_key)[:MAC_BYTES]

    def sign(self, notification_id: str, device_key: str, expires_at: datetime) -> str:
        """A token for one push. ``expires_at`` (tz-aware) is truncated to whole seconds.

        Raises ``ValueError`` for arguments no valid push has (a caller's bug, not bad input).
        """
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        expiry = int(expires_at.timestamp())
        if not 0 <= expiry <= 0xFFFFFFFF:
            raise ValueError(f"expires_at {expires_at.isoformat()} is outside 1970-2106")
        return self.sign_until(notification_id, device_key, expiry)

    def sign_until(self, notification_id: str, device_key: str, expiry: int) -> str:
        """:meth:`sign` with the expiry in whole seconds since the Unix epoch (the dispatcher's
        hot path: no datetime arithmetic per push)."""
        if is_canonical_uuid(notification_id):  # the usual case, without a UUID object
            nid = bytes.fromhex(notification_id.replace("-", ""))
        else:
            try:
                nid = uuid.UUID(notification_id).bytes
            except (ValueError, AttributeError, TypeError):
                raise ValueError(f"notification_id {notification_id!r} is not a UUID") from None
        if not 0 <= expiry <= 0xFFFFFFFF:
            raise ValueError(f"expiry {expiry} is outside 1970-2106")
        dk = device_key.encode("utf-8")
        if not dk:
            raise ValueError("device_key must not be empty")
        if len(dk) > MAX_DEVICE_KEY_BYTES:
            raise ValueError(f"device_key is longer than {MAX_DEVICE_KEY_BYTES} bytes")
        head = self._head + nid + _EXPIRY.pack(expiry)
        if len(dk) <= 255:
            body = head + bytes((len(dk),)) + dk
            token = _b64encode(body + self._mac(self._active_kid, body, dk))
            if len(token) <= RECEIPT_TOKEN_MAX_CHARS:
                return token
        body = head + b"\x00"
        return _b64encode(body + self._mac(self._active_kid, body, dk))

    def verify(
        self, token: str, *, device_key: str | None = None, now: datetime | None = None
    ) -> ReceiptClaims:
        """The claims of a genuine, unexpired token, else a :class:`ReceiptTokenError` subclass.

        ``device_key`` is the key the device claims; required when the token does not embed it,
        and checked against the embedded one when it does.
        """
        raw = _decode(token)
        kid_len = raw[1]
        if not 1 <= kid_len <= MAX_KID_CHARS:
            raise MalformedReceiptToken("receipt token has an invalid kid length")
        pos = 2 + kid_len
        kid = raw[2:pos].decode("ascii", errors="replace")
        if not _KID_RE.fullmatch(kid):
            raise MalformedReceiptToken("receipt token has an invalid kid")
        nid = raw[pos : pos + 16]
        (expiry,) = _EXPIRY.unpack_from(raw, pos + 16)
        pos += 20
        if pos >= len(raw):
            raise MalformedReceiptToken("receipt token is truncated")
        key_len = raw[pos]
        body_end = pos + 1 + key_len
        if body_end + MAC_BYTES != len(raw):
            raise MalformedReceiptToken("receipt token has the wrong length for its layout")
        embedded = raw[pos + 1 : body_end]
        if kid not in self._macs:
            raise ForgedReceiptToken(f"receipt token signed with unknown key {kid!r}")
        if key_len:
            try:
                dk_str = embedded.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedReceiptToken("receipt token device key is not UTF-8") from None
            if device_key is not None and device_key != dk_str:
                raise ForgedReceiptToken("receipt token was issued for another device")
        elif device_key is None or device_key == "":
            raise DeviceKeyRequired("this receipt token needs the device key sent with it")
        else:
            dk_str = device_key
        expected = self._mac(kid, raw[:body_end], dk_str.encode("utf-8"))
        if not hmac.compare_digest(expected, raw[body_end:]):
            raise ForgedReceiptToken("receipt token signature does not match")
        expires_at = datetime.fromtimestamp(expiry, UTC)
        if now is None:
            now = datetime.now(UTC)
        elif now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        # Checked only after the MAC, so an attacker learns nothing from a forged token's expiry.
        if now >= expires_at:
            raise ExpiredReceiptToken(
                f"receipt token expired at {expires_at.isoformat()}", expires_at=expires_at
            )
        return ReceiptClaims(
            notification_id=str(uuid.UUID(bytes=nid)),
            device_key=dk_str,
            expires_at=expires_at,
            kid=kid,
        )


def _decode(token: str) -> bytes:
    """The token's bytes; only the canonical encoding is accepted, so one token has one spelling."""
    if not isinstance(token, str) or not token:
        raise MalformedReceiptToken("receipt token is empty")
    if len(token) > RECEIPT_TOKEN_MAX_CHARS:
        raise MalformedReceiptToken(f"receipt token is longer than {RECEIPT_TOKEN_MAX_CHARS}")
    if not _TOKEN_RE.fullmatch(token):
        raise MalformedReceiptToken("receipt token is not unpadded URL-safe base64")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise MalformedReceiptToken("receipt token is not valid base64") from None
    # base64 ignores the unused low bits of the last character; re-encoding catches tampering there.
    if _b64encode(raw) != token:
        raise MalformedReceiptToken("receipt token is not canonically encoded")
    if len(raw) < _MIN_TOKEN_BYTES:
        raise MalformedReceiptToken("receipt token is too short")
    if raw[0] != VERSION:
        raise MalformedReceiptToken(f"unknown receipt token version {raw[0]}")
    return raw


def parse_receipt_token_keys(
    value: str, *, name: str = "PUSHLINE_RECEIPT_TOKEN_KEYS"
) -> dict[str, bytes]:
    """``kid:base64key,kid2:base64key`` → ``{kid: key}``. Standard or URL-safe base64, padding optional.

    Errors name the kid, never the key.
    """
    keys: dict[str, bytes] = {}
    for entry in value.split(","):
        item = entry.strip()
        if not item:
            continue
        kid, sep, encoded = item.partition(":")
        kid = kid.strip()
        if not sep or not kid:
            raise ConfigError(f"{name}: each entry must be kid:base64key")
        if kid in keys:
            raise ConfigError(f"{name}: kid {kid!r} appears twice")
        encoded = encoded.strip().replace("-", "+").replace("_", "/").rstrip("=")
        try:
            keys[kid] = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{name}: the key of kid {kid!r} is not valid base64") from None
    if not keys:
        raise ConfigError(f"{name} holds no key")
    return keys


def generate_receipt_token_keys(kid: str = "k1") -> str:
    """A fresh ``PUSHLINE_RECEIPT_TOKEN_KEYS`` value with one random 32-byte key (the dev stack prints it)."""
    return f"{kid}:{base64.b64encode(secrets.token_bytes(MIN_KEY_BYTES)).decode('ascii')}"


@dataclass(frozen=True)
class ReceiptTokenConfig:
    """Receipt-token keys and lifetime, shared by the dispatcher (signs) and the receipts API (verifies).

    There is no built-in default key, in development either: a default would end up in production.
    ``pushline emulate stack`` generates one and prints it as ``PUSHLINE_RECEIPT_TOKEN_KEYS=``.
    """

    keys: Mapping[str, bytes] = env_field(
        "PUSHLINE_RECEIPT_TOKEN_KEYS",
        "Receipt-token HMAC keys as kid:base64key,kid2:base64key (each at least 32 random bytes; "
        "e.g. `openssl rand -base64 32`). Verifiers accept every listed key.",
        secret=True,
    )
    active_kid: str = env_field(
        "PUSHLINE_RECEIPT_TOKEN_ACTIVE_KID",
        "The kid that signs new tokens. May be left unset when there is a single key.",
        "",
    )
    ttl_seconds: int = env_field(
        "PUSHLINE_RECEIPT_TOKEN_TTL_SECONDS",
        "How long after a send its receipts are accepted (OPENED can come days later).",
        7 * 86_400,
    )

    def __post_init__(self) -> None:
        keys = MappingProxyType(dict(self.keys))
        object.__setattr__(self, "keys", keys)
        if not self.active_kid:
            if len(keys) != 1:
                raise ConfigError(
                    "PUSHLINE_RECEIPT_TOKEN_ACTIVE_KID must be set when there are several keys"
                )
            object.__setattr__(self, "active_kid", next(iter(keys)))
        _check_keys(keys, self.active_kid)
        if self.ttl_seconds <= 0:
            raise ConfigError("PUSHLINE_RECEIPT_TOKEN_TTL_SECONDS must be positive")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ReceiptTokenConfig:
        env = os.environ if env is None else env
        if "keys" not in overrides:
            raw = env.get("PUSHLINE_RECEIPT_TOKEN_KEYS")
            if not raw:
                raise ConfigError(
                    "PUSHLINE_RECEIPT_TOKEN_KEYS is not set (kid:base64key; "
                    "`pushline emulate stack` prints a generated one)"
                )
            overrides["keys"] = parse_receipt_token_keys(raw)
        return config_from_env(cls, env, **overrides)

    @property
    def ttl(self) -> timedelta:
        return timedelta(seconds=self.ttl_seconds)

    def signer(self) -> ReceiptTokenSigner:
        return ReceiptTokenSigner(self.keys, self.active_kid)

    def __repr__(self) -> str:  # the keys never reach a log line through repr()
        return (
            f"ReceiptTokenConfig(kids={sorted(self.keys)!r}, active_kid={self.active_kid!r}, "
            f"ttl_seconds={self.ttl_seconds})"
        )
