"""The receipts API as an ASGI (Starlette) application.

``POST /v1/receipts`` takes one receipt ``{"token", "kind", ...}`` or a batch ``{"receipts": [...]}``
(see :mod:`receipts._openapi` for every field and error code). A receipt is accepted only when its
token verifies (:meth:`ReceiptTokenSigner.verify`): genuine, unexpired, for the device key given or
embedded, and for the ``notification_id`` given, if one is. It is answered 202 only after the sink
(Kafka) acknowledged it.

Batches are all or nothing: every item is checked before anything is published, and one refused item
makes the whole batch 422 ``invalid_batch`` with a list of the refused items. A client then fixes or
drops those and resends, without having to track which items of a half-accepted batch were stored.

Repeats are idempotent: a (notification_id, kind) this process published recently is answered 202
(counted in ``duplicates``) without publishing again. The memory is a bounded LRU per process, so a
repeat can still reach Kafka (another replica, a restart, an eviction); the reconciler drops those.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pushline.errors import DeliveryError
from pushline.ops import new_registry
from receipts._openapi import openapi_document
from receipts._sink import ReceiptSink
from schemas import DeliveryReceipt, Platform, ReceiptKind
from schemas.receipt_token import (
    DeviceKeyRequired,
    ExpiredReceiptToken,
    ForgedReceiptToken,
    MalformedReceiptToken,
    ReceiptTokenError,
    ReceiptTokenSigner,
)

__all__ = ["ApiLimits", "ReceiptsMetrics", "RecentReceipts", "create_app", "receipts_metrics"]

log = logging.getLogger("pushline.receipts")

_TRACEPARENT_RE = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_MAX_TEXT = 128
_MAX_DEVICE_KEY = 4096
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class ApiLimits:
    max_body_bytes: int = 64 * 1024
    batch_max: int = 100
    retry_after_s: int = 5
    dedupe_size: int = 100_000


@dataclass(frozen=True)
class ReceiptsMetrics:
    registry: CollectorRegistry
    receipts: Counter
    """``pushline_receipts_total{kind,result}``: one per receipt in a request. ``result`` is
    ``accepted``, ``duplicate``, ``batch_rejected`` (valid, in a refused batch), ``unavailable``
    (Kafka did not acknowledge), or the error code that refused it (``forged_token``, ...)."""
    request_seconds: Histogram
    """``pushline_receipt_request_seconds{status}``: one per ``POST /v1/receipts``."""


def receipts_metrics(
    registry: CollectorRegistry | None = None, *, process_metrics: bool = True
) -> ReceiptsMetrics:
    reg = new_registry(process_metrics=process_metrics) if registry is None else registry
    return ReceiptsMetrics(
        registry=reg,
        receipts=Counter(
            "receipts",
            "Receipts received, by kind and result (accepted, duplicate or the refusal code).",
            ["kind", "result"],
            namespace="pushline",
            registry=reg,
        ),
        request_seconds=Histogram(
            "receipt_request_seconds",
            "Time to answer POST /v1/receipts, including the broker acknowledgement.",
            ["status"],
            buckets=_REQUEST_BUCKETS,
            namespace="pushline",
            registry=reg,
        ),
    )


class RecentReceipts:
    """A bounded LRU of (notification_id, kind) pairs already published by this process."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._seen: OrderedDict[tuple[str, ReceiptKind], None] = OrderedDict()

    def __contains__(self, key: tuple[str, ReceiptKind]) -> bool:
        if key in self._seen:
            self._seen.move_to_end(key)
            return True
        return False

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, key: tuple[str, ReceiptKind]) -> None:
        if self._size <= 0:
            return
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > self._size:
            self._seen.popitem(last=False)


class _Refused(Exception):
    """One receipt (or the whole request) refused with an HTTP status and an error code."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            err["field"] = self.field
        return err


def _error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, **extra}}, status_code=status, headers=headers
    )


_TOKEN_ERRORS: tuple[tuple[type[ReceiptTokenError], int, str], ...] = (
    (ForgedReceiptToken, 401, "forged_token"),
    (ExpiredReceiptToken, 401, "expired_token"),
    (DeviceKeyRequired, 422, "device_key_required"),
    (MalformedReceiptToken, 422, "malformed_token"),
)


def _opt_str(item: Mapping[str, Any], name: str, max_len: int) -> str | None:
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise _Refused(422, "invalid_field", f"{name} must be a string of at most {max_len}", name)
    return value


def _device_time(item: Mapping[str, Any]) -> datetime | None:
    value = item.get("device_time")
    if value is None:
        return None
    try:
        if not isinstance(value, str) or len(value) > 64:
            raise ValueError
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Refused(
            422, "invalid_field", "device_time must be an RFC 3339 date-time", "device_time"
        ) from None
    if parsed.tzinfo is None:
        raise _Refused(422, "invalid_field", "device_time needs a UTC offset", "device_time")
    return parsed


class _Verifier:
    def __init__(self, signer: ReceiptTokenSigner) -> None:
        self._signer = signer

    def receipt(self, item: Any, received_at: datetime) -> DeliveryReceipt:
        """The DeliveryReceipt one request item proves, or :class:`_Refused`."""
        if not isinstance(item, dict):
            raise _Refused(422, "invalid_request", "a receipt must be a JSON object")
        kind_raw = cast(str, item.get("kind"))  # may be anything: ReceiptKind() checks it
        try:
            kind = ReceiptKind(kind_raw)
        except (ValueError, TypeError):
            raise _Refused(
                422, "invalid_kind", "kind must be DELIVERED or OPENED", "kind"
            ) from None
        token = item.get("token")
        if not isinstance(token, str) or not token:
            raise _Refused(422, "malformed_token", "token must be a non-empty string", "token")
        device_key = _opt_str(item, "device_key", _MAX_DEVICE_KEY)
        claimed_id = _opt_str(item, "notification_id", 64)
        platform_raw = _opt_str(item, "platform", 16)
        try:
            platform = None if platform_raw is None else Platform(platform_raw)
        except ValueError:
            raise _Refused(
                422, "invalid_field", "platform must be APNS or FCM", "platform"
            ) from None
        device_time = _device_time(item)
        app_version = _opt_str(item, "app_version", _MAX_TEXT)
        os_version = _opt_str(item, "os_version", _MAX_TEXT)
        try:
            claims = self._signer.verify(token, device_key=device_key or None)
        except ReceiptTokenError as exc:
            for cls, status, code in _TOKEN_ERRORS:
                if isinstance(exc, cls):
                    raise _Refused(status, code, str(exc), "token") from None
            raise _Refused(422, "malformed_token", str(exc), "token") from None
        if claimed_id is not None:
            try:
                same = uuid.UUID(claimed_id) == uuid.UUID(claims.notification_id)
            except ValueError:
                same = False
            if not same:
                raise _Refused(
                    422,
                    "notification_mismatch",
                    "the token was issued for another notification",
                    "notification_id",
                )
        return DeliveryReceipt(
            notification_id=claims.notification_id,
            device_key=claims.device_key,
            kind=kind,
            device_time=device_time,
            received_at=received_at,
            app_version=app_version,
            os_version=os_version,
            platform=platform,
        )


def _kind_label(item: Any) -> str:
    kind = item.get("kind") if isinstance(item, dict) else None
    return kind if kind in ("DELIVERED", "OPENED") else "unknown"


class _ReceiptsEndpoint:
    def __init__(
        self,
        sink: ReceiptSink,
        signer: ReceiptTokenSigner,
        limits: ApiLimits,
        metrics: ReceiptsMetrics,
    ) -> None:
        self._sink = sink
        self._verifier = _Verifier(signer)
        self._limits = limits
        self._metrics = metrics
        self._recent = RecentReceipts(limits.dedupe_size)
        self._unavailable_headers = {"Retry-After": str(limits.retry_after_s)}
        # Counter children are looked up once: labels() costs more than inc().
        self._count: dict[tuple[str, str], Any] = {}

    def _counted(self, kind: str, result: str, n: int = 1) -> None:
        child = self._count.get((kind, result))
        if child is None:
            child = self._count[(kind, result)] = self._metrics.receipts.labels(kind, result)
        child.inc(n)

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        response = await self._answer(request)
        self._metrics.request_seconds.labels(str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response

    async def _read_body(self, request: Request) -> bytes:
        limit = self._limits.max_body_bytes
        ctype = request.headers.get("content-type", "")
        if ctype.split(";", 1)[0].strip().lower() != "application/json":
            raise _Refused(415, "unsupported_media_type", "Content-Type must be application/json")
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise _Refused(400, "invalid_content_length", "Content-Length is not a number")
            if int(length) > limit:
                raise _Refused(413, "body_too_large", f"the body is larger than {limit} bytes")
        # Content-Length can be absent (chunked) or wrong: count what actually arrives.
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _Refused(413, "body_too_large", f"the body is larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _items(self, body: bytes) -> tuple[list[Any], bool]:
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            raise _Refused(400, "malformed_json", "the body is not valid JSON") from None
        if not isinstance(doc, dict):
            raise _Refused(422, "invalid_request", "the body must be a JSON object")
        if "receipts" not in doc:
            return [doc], False
        items = doc["receipts"]
        if not isinstance(items, list) or not items:
            raise _Refused(422, "invalid_request", "receipts must be a non-empty array", "receipts")
        if len(items) > self._limits.batch_max:
            raise _Refused(
                422,
                "batch_too_large",
                f"a batch holds at most {self._limits.batch_max} receipts",
                "receipts",
            )
        return items, True

    async def _answer(self, request: Request) -> Response:
        try:
            body = await self._read_body(request)
            items, is_batch = self._items(body)
        except _Refused as refused:
            return JSONResponse({"error": refused.body()}, status_code=refused.status)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is listening; nothing was recorded

        received_at = datetime.now(UTC)
        receipts: list[DeliveryReceipt] = []
        refusals: list[tuple[int, _Refused]] = []
        for index, item in enumerate(items):
            try:
                receipts.append(self._verifier.receipt(item, received_at))
            except _Refused as refused:
                refusals.append((index, refused))
                self._counted(_kind_label(item), refused.code)
        if refusals:
            for receipt in receipts:
                self._counted(receipt.kind.value, "batch_rejected")
            if not is_batch:
                first = refusals[0][1]
                return JSONResponse({"error": first.body()}, status_code=first.status)
            listed = [{"index": i, "status": r.status, **r.body()} for i, r in refusals]
            return _error(
                422,
                "invalid_batch",
                f"{len(refusals)} of {len(items)} receipts were refused; none was recorded",
                items=listed,
            )

        ready, reason = self._sink.ready()
        if not ready:
            for receipt in receipts:
                self._counted(receipt.kind.value, "unavailable")
            return _error(
                503, "not_ready", f"not ready: {reason}", headers=self._unavailable_headers
            )

        fresh: list[DeliveryReceipt] = []
        in_request: set[tuple[str, ReceiptKind]] = set()
        for receipt in receipts:
            key = (receipt.notification_id, receipt.kind)
            if key in self._recent or key in in_request:
                self._counted(receipt.kind.value, "duplicate")
            else:
                in_request.add(key)
                fresh.append(receipt)

        if fresh:
            traceparent = request.headers.get("traceparent")
            if traceparent is not None and not _TRACEPARENT_RE.fullmatch(traceparent):
                traceparent = None  # a malformed trace header is dropped, not forwarded
            try:
                await self._sink.publish(fresh, traceparent)
            except DeliveryError as exc:
                log.warning(
                    "receipts not acknowledged by the broker",
                    extra={"count": len(fresh), "error": str(exc)},
                )
                for receipt in fresh:
                    self._counted(receipt.kind.value, "unavailable")
                return _error(
                    503,
                    "unavailable",
                    "receipts could not be stored; retry later",
                    headers=self._unavailable_headers,
                )
            for receipt in fresh:
                self._recent.add((receipt.notification_id, receipt.kind))
                self._counted(receipt.kind.value, "accepted")
        return JSONResponse(
            {"accepted": len(receipts), "duplicates": len(receipts) - len(fresh)}, status_code=202
        )


def create_app(
    sink: ReceiptSink,
    signer: ReceiptTokenSigner,
    *,
    limits: ApiLimits | None = None,
    metrics: ReceiptsMetrics | None = None,
) -> Starlette:
    """The ASGI app. Its lifespan starts ``sink`` and closes (flushes) it on shutdown."""
    limits = limits or ApiLimits()
    metrics = metrics or receipts_metrics()
    endpoint = _ReceiptsEndpoint(sink, signer, limits, metrics)
    openapi = json.dumps(
        openapi_document(max_body_bytes=limits.max_body_bytes, batch_max=limits.batch_max)
    ).encode()
    state = {"draining": False}

    async def post_receipts(request: Request) -> Response:
        return await endpoint.handle(request)

    async def openapi_json(request: Request) -> Response:
        return Response(openapi, media_type="application/json")

    async def metrics_endpoint(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(metrics.registry), headers={"Content-Type": content_type})

    async def healthz(request: Request) -> Response:
        if sink.healthy():
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "unhealthy", "reason": "producer stopped"}, 503)

    async def readyz(request: Request) -> Response:
        ready, reason = sink.ready()
        if state["draining"]:
            ready, reason = False, "shutting down"
        if ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "reason": reason or "not ready"}, 503)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        codes = {404: "not_found", 405: "method_not_allowed"}
        return _error(
            exc.status_code,
            codes.get(exc.status_code, "http_error"),
            f"{exc.detail}: {request.method} {request.url.path}",
            headers=exc.headers,
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sink.start()
        try:
            yield
        finally:
            state["draining"] = True
            await sink.aclose()

    return Starlette(
        routes=[
            Route("/v1/receipts", post_receipts, methods=["POST"]),
            Route("/openapi.json", openapi_json, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
