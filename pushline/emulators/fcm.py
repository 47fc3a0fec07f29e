"""An FCM HTTP v1 emulator (sans-IO): the OAuth2 token endpoint and ``messages:send``.

It follows /work/shared/PROVIDERS.md and returns Google's error bodies. Choices the documentation
leaves open:

- **Token endpoint** (``POST /token``): the RS256 assertion must be signed by a configured service
  account (looked up by ``iss``; a ``kid`` must be that account's ``private_key_id``), carry the
  firebase.messaging (or cloud-platform) scope, have ``aud`` equal to the token URI, and
  ``iat <= now + 60 s``, ``now < exp <= iat + 3600``. Errors use OAuth2's
  ``{"error", "error_description"}`` with Google's wording.
- **Size:** the limit (4096 bytes, 2048 for topic messages) counts the compact JSON of the message
  without its target (token / topic / condition). Pushline's producer counts the whole message, an
  over-estimate, so anything it accepts fits here.
- **Registration tokens** are 32 to 4096 characters of ``[A-Za-z0-9_:-]``; anything else is
  INVALID_ARGUMENT with a ``google.rpc.BadRequest`` violation on ``message.token``.
- A message name looks like Google's: ``projects/<p>/messages/0:<ms>%<hex>``.
- ``validate_only`` messages are checked like real ones but neither recorded nor subject to
  programmed faults.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import jwt
import orjson

from pushline.emulators._behaviour import (
    Behaviour,
    Request,
    Response,
    TokenReason,
    json_response,
)

__all__ = ["FCM_ERRORS", "FcmConfig", "FcmEmulator", "FcmServiceAccount"]

FCM_ERRORS: dict[str, tuple[int, str, str]] = {
    "INVALID_ARGUMENT": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
    "THIRD_PARTY_AUTH_ERROR": (
        401,
        "UNAUTHENTICATED",
        "Auth error from APNS or Web Push Service",
    ),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED", "SenderId mismatch"),
    "UNREGISTERED": (404, "NOT_FOUND", "Requested entity was not found."),
    "QUOTA_EXCEEDED": (
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute'.",
    ),
    "INTERNAL": (500, "INTERNAL", "Internal error encountered."),
    "UNAVAILABLE": (503, "UNAVAILABLE", "The service is currently unavailable."),
}
"""errorCode -> (http status, canonical status, message), as PROVIDERS.md tabulates them."""

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
_CLOUD_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_SEND = re.compile(r"/v1/projects/([^/]+)/messages:send")
_TOKEN = re.compile(r"[A-Za-z0-9_:-]{32,4096}")
_TOPIC = re.compile(r"(/topics/)?[A-Za-z0-9_.~%-]{1,900}")
_TTL = re.compile(r"([0-9]+)(\.[0-9]{1,9})?s")
_MAX_PAYLOAD = 4096
_MAX_TOPIC_PAYLOAD = 2048
_MAX_TTL_SECONDS = 2_419_200
_MESSAGE_FIELDS = frozenset(
    {
        "name",
        "data",
        "notification",
        "android",
        "webpush",
        "apns",
        "fcm_options",
        "fcmOptions",
        "token",
        "topic",
        "condition",
    }
)
_CLOCK_SKEW = 60
_SHORT_LIVED = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values in the JWT claim."
)
_SEND_METHOD = "google.firebase.fcm.v1.FcmService.SendMessage"


@dataclass(frozen=True)
class FcmServiceAccount:
    client_email: str
    private_key_id: str
    public_key_pem: str
    project_id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "client_email": self.client_email,
            "private_key_id": self.private_key_id,
            "public_key_pem": self.public_key_pem,
            "project_id": self.project_id,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FcmServiceAccount:
        return cls(d["client_email"], d["private_key_id"], d["public_key_pem"], d["project_id"])


@dataclass(frozen=True)
class FcmConfig:
    accounts: tuple[FcmServiceAccount, ...]
    token_uris: tuple[str, ...]
    """Accepted ``aud`` values: the URIs the token endpoint is reachable at."""
    access_token_ttl: int = 3600
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "accounts": [a.to_dict() for a in self.accounts],
            "token_uris": list(self.token_uris),
            "access_token_ttl": self.access_token_ttl,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FcmConfig:
        return cls(
            accounts=tuple(FcmServiceAccount.from_dict(a) for a in d["accounts"]),
            token_uris=tuple(d["token_uris"]),
            access_token_ttl=int(d.get("access_token_ttl", 3600)),
            seed=int(d.get("seed", 0)),
        )


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def _google_error(
    status: int,
    canonical: str,
    message: str,
    details: list[dict[str, Any]],
    headers: tuple[tuple[str, str], ...] = (),
) -> _Refused:
    document = {"error": {"code": status, "message": message, "status": canonical}}
    if details:
        document["error"]["details"] = details
    return _Refused(json_response(status, document, headers))


def _fcm_error(code: str, message: str | None = None, retry_after: int | None = None) -> _Refused:
    status, canonical, default = FCM_ERRORS[code]
    details = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]
    headers = (("retry-after", str(retry_after)),) if retry_after is not None else ()
    return _google_error(status, canonical, message or default, details, headers)


def _invalid(field_name: str, description: str, message: str | None = None) -> _Refused:
    """INVALID_ARGUMENT with the google.rpc.BadRequest field violation Google adds."""
    status, canonical, default = FCM_ERRORS["INVALID_ARGUMENT"]
    details: list[dict[str, Any]] = [
        {
            "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode": "INVALID_ARGUMENT",
        },
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": field_name, "description": description}],
        },
    ]
    return _google_error(status, canonical, message or description or default, details)


def _unauthenticated(reason: str, message: str) -> _Refused:
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason,
            "domain": "googleapis.com",
            "metadata": {"method": _SEND_METHOD, "service": "fcm.googleapis.com"},
        }
    ]
    return _google_error(
        401, "UNAUTHENTICATED", message, details, (("www-authenticate", "Bearer"),)
    )


def _oauth_error(error: str, description: str, status: int = 400) -> _Refused:
    return _Refused(json_response(status, {"error": error, "error_description": description}))


@dataclass
class FcmEmulator:
    config: FcmConfig
    behaviour: Behaviour = field(default_factory=Behaviour)

    def __post_init__(self) -> None:
        self.behaviour.reset(self.config.seed)
        self.access_token_ttl = self.config.access_token_ttl
        self.token_uris = list(self.config.token_uris)
        self._accounts = {a.client_email: a for a in self.config.accounts}
        self._access_tokens: dict[str, tuple[float, str]] = {}  # token -> (expires at, project)
        self._counter = 0
        # The part after '%' in a message name: random per emulator, not per message. Drawn per
        # message (os.urandom, a system call) it was 11% of the emulator's time under h2load.
        self._name_suffix = secrets.token_hex(8)

    # --- control -------------------------------------------------------------------------------

    def reset(self) -> None:
        # Issued access tokens survive a reset: they are credentials a running sender has cached,
        # not programmed behaviour (use expire_access_tokens() to invalidate them).
        self.behaviour.reset(self.config.seed)
        self.access_token_ttl = self.config.access_token_ttl

    def expire_access_tokens(self) -> None:
        """Make every issued access token expired (the next send gets 401 UNAUTHENTICATED)."""
        self._access_tokens = {t: (0.0, p) for t, (_, p) in self._access_tokens.items()}

    def set_token_reason(self, token: str, status: int | None, reason: str) -> None:
        if reason not in FCM_ERRORS:
            raise ValueError(f"unknown FCM errorCode {reason!r}")
        if status is not None and status != FCM_ERRORS[reason][0]:
            raise ValueError(
                f"FCM answers {reason} with HTTP {FCM_ERRORS[reason][0]}, not {status}"
            )
        self.behaviour.token_reasons[token] = TokenReason(status or FCM_ERRORS[reason][0], reason)

    def stats(self) -> dict[str, Any]:
        return {**self.behaviour.stats(), "access_tokens": len(self._access_tokens)}

    # --- requests ------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        if self.behaviour.latency_ms > 0:
            await asyncio.sleep(self.behaviour.latency_ms / 1000)
        try:
            if request.path == "/token":
                response = self._token(request)
                label = "token"
            else:
                response = self._send(request)
                label = "OK"
        except _Refused as refused:
            response = refused.response
            label = _label(response)
        self.behaviour.count(response.status, label)
        return response

    def _token(self, request: Request) -> Response:
        if request.method != "POST":
            raise _oauth_error("invalid_request", "Invalid request method.", 405)
        form = parse_qs(request.body.decode("utf-8", "replace"))
        grant_type = form.get("grant_type", [""])[0]
        if grant_type != _GRANT_TYPE:
            raise _oauth_error("unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        assertion = form.get("assertion", [""])[0]
        if not assertion:
            raise _oauth_error("invalid_request", "Missing required parameter: assertion")
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise _oauth_error("invalid_grant", "Invalid JWT: malformed token.") from exc
        account = self._accounts.get(str(unverified.get("iss")))
        if account is None:
            raise _oauth_error("invalid_grant", "Invalid grant: account not found")
        kid = header.get("kid")
        if header.get("alg") != "RS256" or (kid is not None and kid != account.private_key_id):
            raise _oauth_error("invalid_grant", "Invalid JWT Signature.")
        try:
            claims = jwt.decode(
                assertion,
                account.public_key_pem,
                algorithms=["RS256"],
                options={
                    "verify_aud": False,
                    "verify_iat": False,
                    "verify_exp": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise _oauth_error("invalid_grant", "Invalid JWT Signature.") from exc
        if claims.get("aud") not in self.token_uris:
            raise _oauth_error(
                "invalid_grant",
                f"Invalid JWT: Failed audience check. The right audience is {self.token_uris[0]}",
            )
        iat, exp = claims.get("iat"), claims.get("exp")
        now = time.time()
        if (
            not isinstance(iat, int)
            or not isinstance(exp, int)
            or iat > now + _CLOCK_SKEW
            or exp <= now
            or exp > iat + 3600
        ):
            raise _oauth_error("invalid_grant", _SHORT_LIVED)
        scopes = str(claims.get("scope", "")).split()
        if FCM_SCOPE not in scopes and _CLOUD_SCOPE not in scopes:
            raise _oauth_error(
                "invalid_scope", "Invalid OAuth scope or ID token audience provided."
            )
        access_token = "ya29.c.emulator-" + secrets.token_urlsafe(48)
        self._access_tokens[access_token] = (now + self.access_token_ttl, account.project_id)
        return json_response(
            200,
            {
                "access_token": access_token,
                "expires_in": self.access_token_ttl - 1,
                "token_type": "Bearer",
            },
            (("cache-control", "no-cache, no-store, max-age=0, must-revalidate"),),
        )

    def _send(self, request: Request) -> Response:
        match = _SEND.fullmatch(request.path)
        if match is None:
            raise _google_error(
                404, "NOT_FOUND", f"The requested URL {request.path} was not found.", []
            )
        if request.method != "POST":
            raise _google_error(405, "METHOD_NOT_ALLOWED", "Method not allowed.", [])
        project = match.group(1)
        self._authorize(request, project)

        try:
            # orjson, not json: 0.85 µs against 3.2 for a push (the emulator's ceiling must stay above
            # the dispatcher: h2load measures it). It is strict as Google's parser is: NaN or a lone
            # surrogate escape is INVALID_ARGUMENT.
            document = orjson.loads(request.body)
        except ValueError as exc:
            raise _google_error(
                400,
                "INVALID_ARGUMENT",
                f"Invalid JSON payload received. {exc}",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [
                            {"description": f"Invalid JSON payload received. {exc}"}
                        ],
                    }
                ],
            ) from exc
        if not isinstance(document, dict):
            raise _invalid("", "Invalid JSON payload received. Expected an object.")
        for name in document:
            if name not in ("message", "validate_only", "validateOnly"):
                raise _invalid(
                    "", f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
                )
        validate_only = document.get("validate_only", document.get("validateOnly", False))
        if not isinstance(validate_only, bool):
            raise _invalid("validate_only", "Invalid value at 'validate_only' (TYPE_BOOL)")
        message = document.get("message")
        if not isinstance(message, dict):
            raise _invalid("message", "Message is required.")
        record = self._check_message(message)

        token = message.get("token")
        if not validate_only and isinstance(token, str):
            programmed = self.behaviour.token_reasons.get(token)
            if programmed is not None:
                retry = self.behaviour.retry_after if programmed.status in (429, 503) else None
                raise _fcm_error(programmed.reason, retry_after=retry)
            if token in self.behaviour.unregistered:
                raise _fcm_error("UNREGISTERED")
        if not validate_only:
            fault = self.behaviour.draw_fault()
            if fault == 429:
                raise _fcm_error("QUOTA_EXCEEDED", retry_after=self.behaviour.retry_after)
            if fault == 500:
                raise _fcm_error("INTERNAL")
            if fault == 503:
                raise _fcm_error("UNAVAILABLE", retry_after=self.behaviour.retry_after)

        if validate_only:
            return json_response(200, {"name": f"projects/{project}/messages/fake_message_id"})
        self._counter += 1
        now_ms = int(time.time() * 1000)
        name = (
            f"projects/{project}/messages/0:{now_ms}{self._counter % 1000:03d}%{self._name_suffix}"
        )
        self.behaviour.record(
            {
                **record,
                "provider": "fcm",
                "id": name,
                "project_id": project,
                "connection": request.connection,
                "received_at_ms": now_ms,
            }
        )
        return json_response(200, {"name": name})

    def _authorize(self, request: Request, project: str) -> None:
        authorization = request.header("authorization")
        if authorization is None:
            raise _unauthenticated(
                "CREDENTIALS_MISSING",
                "Request is missing required authentication credential. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential. See "
                "https://developers.google.com/identity/sign-in/web/devconsole-project.",
            )
        scheme, _, token = authorization.partition(" ")
        entry = self._access_tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        invalid = (
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
            "cookie or other valid authentication credential. See "
            "https://developers.google.com/identity/sign-in/web/devconsole-project."
        )
        if entry is None:
            raise _unauthenticated("ACCESS_TOKEN_TYPE_UNSUPPORTED", invalid)
        expires_at, token_project = entry
        if time.time() >= expires_at:
            raise _unauthenticated("ACCESS_TOKEN_EXPIRED", invalid)
        if token_project != project:
            raise _google_error(
                403,
                "PERMISSION_DENIED",
                f"Permission 'cloudmessaging.messages.create' denied on resource "
                f"'//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist).",
                [],
            )

    def _check_message(self, message: dict[str, Any]) -> dict[str, Any]:
        """Validate the message; return what the push record keeps about it."""
        for name in message:
            if name not in _MESSAGE_FIELDS:
                raise _invalid(
                    "message",
                    f"Invalid JSON payload received. Unknown name \"{name}\" at 'message': "
                    "Cannot find field.",
                )
        targets = [t for t in ("token", "topic", "condition") if t in message]
        if len(targets) != 1:
            raise _invalid(
                "message",
                "Exactly one of message.token, message.topic or message.condition must be set.",
            )
        target = targets[0]
        value = message[target]
        if target == "token" and (not isinstance(value, str) or not _TOKEN.fullmatch(value)):
            raise _invalid(
                "message.token",
                "Invalid registration token",
                "The registration token is not a valid FCM registration token",
            )
        if target == "topic" and (not isinstance(value, str) or not _TOPIC.fullmatch(value)):
            raise _invalid("message.topic", "Invalid topic name")
        if target == "condition" and (not isinstance(value, str) or not value.strip()):
            raise _invalid("message.condition", "Invalid condition expression")

        data = message.get("data", {})
        if not isinstance(data, dict):
            raise _invalid(
                "message.data",
                "Invalid value at 'message.data' (type.googleapis.com/google.protobuf.Struct)",
            )
        for i, (key, val) in enumerate(data.items()):
            if not isinstance(val, str):
                raise _invalid(
                    f"message.data[{i}].value",
                    f"Invalid value at 'message.data[{i}].value' (TYPE_STRING)",
                )
            if key in ("from", "notification", "message_type") or key.startswith(("google", "gcm")):
                raise _invalid("message.data", f"Invalid data payload key: {key}")

        android = message.get("android", {})
        if not isinstance(android, dict):
            raise _invalid("message.android", "Invalid value at 'message.android'")
        ttl_seconds: int | None = None
        ttl = android.get("ttl")
        if ttl is not None:
            ttl_match = _TTL.fullmatch(ttl) if isinstance(ttl, str) else None
            if ttl_match is None:
                raise _invalid(
                    "message.android.ttl",
                    "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf."
                    "Duration), Field 'ttl', Illegal duration format; duration must end with 's'",
                )
            ttl_seconds = int(ttl_match.group(1))
            fraction = ttl_match.group(2)
            if ttl_seconds > _MAX_TTL_SECONDS or (
                ttl_seconds == _MAX_TTL_SECONDS and fraction and int(fraction[1:])
            ):
                raise _invalid(
                    "message.android.ttl",
                    "TTL must be between 0 and 2419200 seconds (4 weeks).",
                )
        priority = android.get("priority")
        if priority is not None and priority not in ("NORMAL", "HIGH"):
            raise _invalid(
                "message.android.priority",
                f"Invalid value at 'message.android.priority' "
                f'(type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), "{priority}"',
            )
        notification = android.get("notification", {})
        if not isinstance(notification, dict):
            raise _invalid(
                "message.android.notification", "Invalid value at 'message.android.notification'"
            )

        untargeted = {k: v for k, v in message.items() if k not in ("token", "topic", "condition")}
        size = len(orjson.dumps(untargeted))  # compact UTF-8, as json.dumps would write it
        limit = _MAX_TOPIC_PAYLOAD if target == "topic" else _MAX_PAYLOAD
        if size > limit:
            raise _invalid("message", "Message is too big", "Android message is too big")
        return {
            "token": message.get("token"),
            "topic": message.get("topic"),
            "condition": message.get("condition"),
            "collapse_id": notification.get("tag"),
            "collapse_key": android.get("collapse_key"),
            "priority": priority,
            "ttl_seconds": ttl_seconds,
            "payload": message,
            "payload_bytes": size,
        }


def _label(response: Response) -> str:
    """A short reason for stats: the FcmError errorCode, the canonical status or the OAuth error."""
    try:
        document = json.loads(response.body)
    except ValueError:
        return str(response.status)
    error = document.get("error")
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        for detail in error.get("details", []):
            if "errorCode" in detail:
                return str(detail["errorCode"])
        return str(error.get("status", response.status))
    return str(response.status)
