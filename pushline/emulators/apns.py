"""An APNs provider-API emulator (sans-IO): ``POST /3/device/<token>`` with token (JWT) auth.

It follows /work/shared/PROVIDERS.md. Where Apple's documentation leaves a choice open, the choice
is written down here:

- **Order of checks:** path and method, duplicate headers, provider token, device token, topic,
  push type, apns-id, priority, expiration, collapse id, payload; then programmed per-token reasons,
  unregistered tokens and random faults. A request is refused for the first rule it breaks.
- **TooManyProviderTokenUpdates:** APNs keys the rule on a connection and a team. The emulator
  remembers, per (connection, team), the ``iat`` of the token in use and when it was first accepted.
  A token with a different ``iat`` for that team on that connection is refused with 429 until
  ``token_update_window`` seconds (20 minutes by default) have passed since the previous one was
  first accepted. Re-sending the same token, or the same token on many connections, is fine.
- **Topics:** each key's team owns bundle ids. A push type needs its suffix (``.voip``,
  ``.complication``, ``.pushkit.fileprovider``, ``.push-type.liveactivity``, ``.voip-ptt``,
  ``.location-query``; mdm topics are ``com.apple.mgmt.External.*``). A malformed topic or a suffix
  that does not fit the push type is BadTopic; a bundle the team does not own is TopicDisallowed; a
  device token that was first accepted for one bundle and is now sent to another is
  DeviceTokenNotForTopic (a device token belongs to one app).
- **Background pushes** must carry ``apns-priority: 5``; an absent priority means 10, so it is BadPriority.
- A JWT whose ``iat`` is more than a minute in the future is InvalidProviderToken.
- Payloads that are not JSON are accepted (Apple documents no reason for them); the push record
  then has ``payload`` = None (and ``payload_text``), so tests can still notice.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import jwt

from pushline.emulators._behaviour import (
    Behaviour,
    ConnectionTable,
    Request,
    Response,
    TokenReason,
    json_response,
)

__all__ = ["APNS_REASONS", "ApnsConfig", "ApnsEmulator", "ApnsKey"]

APNS_REASONS: dict[str, int] = {
    "BadCollapseId": 400,
    "BadDeviceToken": 400,
    "BadExpirationDate": 400,
    "BadMessageId": 400,
    "BadPriority": 400,
    "BadTopic": 400,
    "DeviceTokenNotForTopic": 400,
    "DuplicateHeaders": 400,
    "IdleTimeout": 400,
    "InvalidPushType": 400,
    "MissingDeviceToken": 400,
    "MissingTopic": 400,
    "PayloadEmpty": 400,
    "TopicDisallowed": 400,
    "BadCertificate": 403,
    "BadCertificateEnvironment": 403,
    "ExpiredProviderToken": 403,
    "Forbidden": 403,
    "InvalidProviderToken": 403,
    "MissingProviderToken": 403,
    "BadPath": 404,
    "MethodNotAllowed": 405,
    "ExpiredToken": 410,
    "Unregistered": 410,
    "PayloadTooLarge": 413,
    "TooManyProviderTokenUpdates": 429,
    "TooManyRequests": 429,
    "InternalServerError": 500,
    "ServiceUnavailable": 503,
    "Shutdown": 503,
}
"""Every reason PROVIDERS.md lists, with its HTTP status."""

PUSH_TYPE_SUFFIX: dict[str, str] = {
    "alert": "",
    "background": "",
    "voip": ".voip",
    "complication": ".complication",
    "fileprovider": ".pushkit.fileprovider",
    "liveactivity": ".push-type.liveactivity",
    "pushtotalk": ".voip-ptt",
    "location": ".location-query",
    "mdm": "",
}
_MDM_PREFIX = "com.apple.mgmt.External."
_DEVICE_PREFIX = "/3/device/"
_TOKEN = re.compile(r"[0-9a-fA-F]{64}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TOPIC = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_EXPIRATION = re.compile(r"[0-9]{1,12}")
_CHECKED_HEADERS = frozenset(
    {
        "authorization",
        "apns-topic",
        "apns-push-type",
        "apns-id",
        "apns-priority",
        "apns-expiration",
        "apns-collapse-id",
    }
)
_MAX_PAYLOAD = 4096
_MAX_VOIP_PAYLOAD = 5120
_MAX_COLLAPSE_ID_BYTES = 64
_FUTURE_IAT_LEEWAY = 60
_JWT_CACHE_SIZE = 4096
_rng = random.Random()


def _random_uuid() -> str:
    """A random (version 4) UUID in canonical lower-case form; not for secrets, just fast."""
    value = (_rng.getrandbits(128) & ~(0xF000 << 64) | (0x4000 << 64)) & ~(0xC << 60) | (0x8 << 60)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True)
class ApnsKey:
    """A token-auth signing key the emulator trusts: its id, its team and the team's bundle ids."""

    key_id: str
    team_id: str
    public_key_pem: str
    topics: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "team_id": self.team_id,
            "public_key_pem": self.public_key_pem,
            "topics": list(self.topics),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ApnsKey:
        return cls(d["key_id"], d["team_id"], d["public_key_pem"], tuple(d["topics"]))


@dataclass(frozen=True)
class ApnsConfig:
    keys: tuple[ApnsKey, ...]
    token_max_age: int = 3600
    """Seconds after ``iat`` when a provider token is ExpiredProviderToken (Apple: one hour)."""
    token_update_window: float = 1200.0
    """Seconds a (connection, team) must keep one provider token before a new one is accepted."""
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "keys": [k.to_dict() for k in self.keys],
            "token_max_age": self.token_max_age,
            "token_update_window": self.token_update_window,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ApnsConfig:
        return cls(
            keys=tuple(ApnsKey.from_dict(k) for k in d["keys"]),
            token_max_age=int(d.get("token_max_age", 3600)),
            token_update_window=float(d.get("token_update_window", 1200.0)),
            seed=int(d.get("seed", 0)),
        )


@dataclass(frozen=True)
class _Verified:
    team_id: str
    iat: int
    topics: tuple[str, ...]


class _Refused(Exception):
    def __init__(self, reason: str, timestamp_ms: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timestamp_ms = timestamp_ms


@dataclass
class ApnsEmulator:
    config: ApnsConfig
    behaviour: Behaviour = field(default_factory=Behaviour)

    def __post_init__(self) -> None:
        self.behaviour.reset(self.config.seed)
        self.token_update_window = self.config.token_update_window
        self._keys = {k.key_id: k for k in self.config.keys}
        # Signature checks dominate the cost of a request, so a verified JWT is remembered (APNs
        # itself validates a token once per connection, not per request).
        self._jwt_cache: OrderedDict[str, _Verified] = OrderedDict()
        self._connections = ConnectionTable()
        self._token_topics: dict[str, str] = {}

    # --- control -------------------------------------------------------------------------------

    def reset(self) -> None:
        self.behaviour.reset(self.config.seed)
        self.token_update_window = self.config.token_update_window
        self._connections.clear()
        self._token_topics.clear()

    def set_token_reason(self, token: str, status: int | None, reason: str) -> None:
        if reason not in APNS_REASONS:
            raise ValueError(f"unknown APNs reason {reason!r}")
        self.behaviour.token_reasons[token.lower()] = TokenReason(
            status or APNS_REASONS[reason], reason
        )

    def stats(self) -> dict[str, Any]:
        return {**self.behaviour.stats(), "connections": len(self._connections)}

    # --- requests ------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        if self.behaviour.latency_ms > 0:
            await asyncio.sleep(self.behaviour.latency_ms / 1000)
        try:
            response = self._handle(request)
        except _Refused as refused:
            apns_id = request.header("apns-id")
            status = APNS_REASONS[refused.reason]
            self.behaviour.count(status, refused.reason)
            document: dict[str, Any] = {"reason": refused.reason}
            if refused.timestamp_ms is not None:
                document["timestamp"] = refused.timestamp_ms
            headers: tuple[tuple[str, str], ...] = ()
            if apns_id is not None and _UUID.fullmatch(apns_id):
                headers = (("apns-id", apns_id),)
            if status in (429, 503) and refused.reason != "TooManyProviderTokenUpdates":
                headers = (*headers, ("retry-after", str(self.behaviour.retry_after)))
            return json_response(status, document, headers)
        self.behaviour.count(200, "Success")
        return response

    def _handle(self, request: Request) -> Response:
        if not request.path.startswith(_DEVICE_PREFIX):
            raise _Refused("BadPath")
        if request.method != "POST":
            raise _Refused("MethodNotAllowed")
        # One pass over the headers (this is the hot path): the checked ones, refusing duplicates.
        headers: dict[str, str] = {}
        for name, value in request.headers:
            if name in _CHECKED_HEADERS:
                if name in headers:
                    raise _Refused("DuplicateHeaders")
                headers[name] = value

        verified = self._authenticate(headers.get("authorization"), request.connection)

        token = request.path[len(_DEVICE_PREFIX) :]
        if not token:
            raise _Refused("MissingDeviceToken")
        if not _TOKEN.fullmatch(token):
            raise _Refused("BadDeviceToken")
        token = token.lower()

        push_type = headers.get("apns-push-type", "alert")
        topic = headers.get("apns-topic")
        if topic is None:
            raise _Refused("MissingTopic")
        if push_type not in PUSH_TYPE_SUFFIX:
            raise _Refused("InvalidPushType")
        bundle = self._check_topic(topic, push_type, verified)
        bound = self._token_topics.get(token)
        if bound is not None and bound != bundle:
            raise _Refused("DeviceTokenNotForTopic")

        apns_id = headers.get("apns-id")
        if apns_id is not None and not _UUID.fullmatch(apns_id):
            raise _Refused("BadMessageId")
        priority = headers.get("apns-priority", "10")
        if priority not in ("10", "5", "1"):
            raise _Refused("BadPriority")
        if push_type == "background" and priority != "5":
            raise _Refused("BadPriority")
        expiration = headers.get("apns-expiration")
        if expiration is not None and not _EXPIRATION.fullmatch(expiration):
            raise _Refused("BadExpirationDate")
        collapse_id = headers.get("apns-collapse-id")
        if collapse_id is not None and len(collapse_id.encode("utf-8")) > _MAX_COLLAPSE_ID_BYTES:
            raise _Refused("BadCollapseId")

        if not request.body:
            raise _Refused("PayloadEmpty")
        limit = _MAX_VOIP_PAYLOAD if push_type == "voip" else _MAX_PAYLOAD
        if len(request.body) > limit:
            raise _Refused("PayloadTooLarge")

        behaviour = self.behaviour
        if behaviour.token_reasons:
            programmed = behaviour.token_reasons.get(token)
            if programmed is not None:
                stamp = behaviour.unregistered.get(token, int(time.time() * 1000))
                raise _Refused(programmed.reason, stamp if programmed.status == 410 else None)
        if behaviour.unregistered:
            dead_since = behaviour.unregistered.get(token)
            if dead_since is not None:
                raise _Refused("Unregistered", dead_since)
        fault = behaviour.draw_fault()
        if fault == 429:
            raise _Refused("TooManyRequests")
        if fault == 500:
            raise _Refused("InternalServerError")
        if fault == 503:
            raise _Refused("ServiceUnavailable")

        if apns_id is None:
            apns_id = _random_uuid()
        self._token_topics.setdefault(token, bundle)
        # The payload is kept as bytes and parsed when pushes are read: JSON parsing would be the
        # biggest cost of an accepted request.
        behaviour.record(
            {
                "provider": "apns",
                "token": token,
                "id": apns_id,
                "collapse_id": collapse_id,
                "push_type": push_type,
                "priority": int(priority),
                "expiration": int(expiration) if expiration is not None else None,
                "topic": topic,
                "team_id": verified.team_id,
                "payload": request.body,
                "payload_bytes": len(request.body),
                "connection": request.connection,
                "received_at_ms": int(time.time() * 1000),
            }
        )
        return Response(200, (("apns-id", apns_id),))

    def _authenticate(self, authorization: str | None, connection: str) -> _Verified:
        if authorization is None:
            raise _Refused("MissingProviderToken")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _Refused("InvalidProviderToken")
        token = token.strip()
        verified = self._jwt_cache.get(token)
        if verified is None:
            verified = self._verify(token)
            self._jwt_cache[token] = verified
            if len(self._jwt_cache) > _JWT_CACHE_SIZE:
                self._jwt_cache.popitem(last=False)
        now = time.time()
        if now - verified.iat > self.config.token_max_age:
            raise _Refused("ExpiredProviderToken")
        if verified.iat > now + _FUTURE_IAT_LEEWAY:
            raise _Refused("InvalidProviderToken")

        state = self._connections.get(connection)
        current = state.get(verified.team_id)
        monotonic = time.monotonic()
        if current is None:
            state[verified.team_id] = (verified.iat, monotonic)
        elif current[0] != verified.iat:
            if monotonic - current[1] < self.token_update_window:
                raise _Refused("TooManyProviderTokenUpdates")
            state[verified.team_id] = (verified.iat, monotonic)
        return verified

    def _verify(self, token: str) -> _Verified:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _Refused("InvalidProviderToken") from exc
        key = self._keys.get(str(header.get("kid")))
        if header.get("alg") != "ES256" or key is None:
            raise _Refused("InvalidProviderToken")
        try:
            claims = jwt.decode(
                token,
                key.public_key_pem,
                algorithms=["ES256"],
                # iat is checked by hand: an old token must be ExpiredProviderToken, not a decode error.
                options={"verify_iat": False, "verify_exp": False, "verify_nbf": False},
            )
        except jwt.PyJWTError as exc:
            raise _Refused("InvalidProviderToken") from exc
        iat = claims.get("iat")
        if claims.get("iss") != key.team_id or not isinstance(iat, int) or isinstance(iat, bool):
            raise _Refused("InvalidProviderToken")
        return _Verified(key.team_id, iat, key.topics)

    def _check_topic(self, topic: str, push_type: str, verified: _Verified) -> str:
        """The bundle id ``topic`` addresses, or a refusal."""
        if not _TOPIC.fullmatch(topic):
            raise _Refused("BadTopic")
        if push_type == "mdm":
            if not topic.startswith(_MDM_PREFIX):
                raise _Refused("BadTopic")
            return topic
        suffix = PUSH_TYPE_SUFFIX[push_type]
        owned = verified.topics
        if suffix:
            if not topic.endswith(suffix):
                # A bare bundle id the team owns, with the wrong push type, is a topic error.
                raise _Refused("BadTopic" if topic in owned else "TopicDisallowed")
            bundle = topic[: -len(suffix)]
        else:
            bundle = topic
            if bundle not in owned and any(
                s and bundle.endswith(s) and bundle[: -len(s)] in owned
                for s in PUSH_TYPE_SUFFIX.values()
            ):
                raise _Refused("BadTopic")
        if bundle not in owned:
            raise _Refused("TopicDisallowed")
        return bundle
