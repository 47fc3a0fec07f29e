"""The reconciler's state: what it knows about each notification of one partition.

Pure logic, no Kafka: :class:`PartitionState` takes outcomes, receipts and the clock, and returns
the events to publish (statuses, invalid tokens, fallbacks) plus the changed records for the
changelog. Keeping it pure makes every rule testable without a broker.
"""

from __future__ import annotations

import heapq
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas import (
    Channel,
    DeliveryReceipt,
    DispatchOutcome,
    Fallback,
    FallbackRequest,
    InvalidToken,
    NotificationStatus,
    OutcomeState,
    Platform,
    StatusState,
    TokenVerdict,
)

__all__ = ["DEAD_TOKEN_REASONS", "DEVICE_OS_LIMIT", "Effects", "PartitionState", "Tracked"]

#: Provider reasons that prove a token dead (an uninstall); any other invalid-token reason
#: (BadDeviceToken, DeviceTokenNotForTopic, a malformed FCM token) only makes it suspect: those
#: usually mean a wrong environment or topic, and a token store must not delete on a suspicion.
DEAD_TOKEN_REASONS = frozenset(
    {"Unregistered", "ExpiredToken", "UNREGISTERED", "SENDER_ID_MISMATCH"}
)

DEVICE_OS_LIMIT = 200_000

_TERMINAL_STATUS = {
    OutcomeState.FAILED: StatusState.FAILED,
    OutcomeState.REJECTED: StatusState.REJECTED,
    OutcomeState.EXPIRED: StatusState.EXPIRED,
    OutcomeState.INVALID_TOKEN: StatusState.INVALID_TOKEN,
}


def _ts(dt: datetime | None) -> float | None:
    return dt.timestamp() if dt is not None else None


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@dataclass
class Tracked:
    """One notification as the reconciler sees it (serialised whole into the changelog)."""

    notification_id: str
    device_key: str
    platform: str | None = None
    app_id: str | None = None
    user_id: str | None = None
    device_token: str | None = None
    outcome: str | None = None  # the terminal dispatch outcome state, once seen
    deadline: float | None = None  # epoch seconds: no receipt by then → SUSPECTED_LOST
    fallback: dict[str, Any] | None = None
    receipts: list[str] = field(default_factory=list)  # receipt kinds seen, in arrival order
    statuses: list[str] = field(default_factory=list)  # status states already published
    fallback_requested: bool = False
    settled_at: float | None = None  # when it reached a final state (for pruning)
    created: float = 0.0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Tracked:
        return cls(**json.loads(raw))


@dataclass
class Effects:
    """What one step produced: events to publish and records to write to the changelog."""

    statuses: list[NotificationStatus] = field(default_factory=list)
    invalid_tokens: list[InvalidToken] = field(default_factory=list)
    fallbacks: list[FallbackRequest] = field(default_factory=list)
    changed: list[Tracked] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.statuses or self.invalid_tokens or self.fallbacks or self.changed or self.removed
        )

    def extend(self, other: Effects) -> None:
        self.statuses += other.statuses
        self.invalid_tokens += other.invalid_tokens
        self.fallbacks += other.fallbacks
        self.changed += [t for t in other.changed if t not in self.changed]
        self.removed += other.removed


class PartitionState:
    """Every tracked notification of one partition, with a deadline heap."""

    def __init__(
        self,
        *,
        default_deadline_s: float,
        retain_s: float,
        held_receipt_ttl_s: float,
    ) -> None:
        self.records: dict[str, Tracked] = {}
        # The OS version each device last reported in a receipt: invalid-token metrics are split by
        # it (a wave of dead tokens after an OS release is worth seeing). Bounded, oldest out.
        self.device_os: dict[str, str] = {}
        self._deadlines: list[tuple[float, str]] = []
        self._default_deadline_s = default_deadline_s
        self._retain_s = retain_s
        self._held_ttl_s = held_receipt_ttl_s

    def __len__(self) -> int:
        return len(self.records)

    # ------------------------------------------------------------- restore

    def restore(self, notification_id: str, raw: bytes | None) -> None:
        """Apply one changelog record (None: a tombstone)."""
        if raw is None:
            self.records.pop(notification_id, None)
            return
        record = Tracked.from_json(raw)
        self.records[notification_id] = record
        if record.deadline is not None and record.settled_at is None:
            heapq.heappush(self._deadlines, (record.deadline, notification_id))

    # -------------------------------------------------------------- inputs

    def on_outcome(self, outcome: DispatchOutcome, now: datetime) -> Effects:
        fx = Effects()
        if outcome.channel is not Channel.PUSH:
            return fx  # the fallback sender's own outcome: it publishes its status itself
        if outcome.state in (OutcomeState.RETRY_SCHEDULED, OutcomeState.DUPLICATE):
            return fx
        record = self.records.get(outcome.notification_id)
        if record is None:
            record = Tracked(outcome.notification_id, outcome.device_key, created=now.timestamp())
            self.records[record.notification_id] = record
        if record.outcome is not None:
            return fx  # a redelivered outcome: already applied
        record.platform = outcome.platform.value
        record.app_id = outcome.app_id
        record.user_id = outcome.user_id
        record.device_token = outcome.device_token
        record.outcome = outcome.state.value
        record.fallback = outcome.fallback.to_dict() if outcome.fallback else None
        fx.changed.append(record)
        if outcome.state is OutcomeState.ACCEPTED:
            self._status(fx, record, StatusState.ACCEPTED, outcome.reason, outcome.decided_at, now)
            if record.receipts:  # receipts that arrived before their outcome were held
                for kind in record.receipts:
                    self._status(fx, record, StatusState(kind), "Receipt", now, now)
                self._settle(record, now)
            else:
                deadline_s = (
                    outcome.receipt_deadline_ms / 1000
                    if outcome.receipt_deadline_ms is not None
                    else self._default_deadline_s
                )
                record.deadline = outcome.decided_at.timestamp() + deadline_s
                heapq.heappush(self._deadlines, (record.deadline, record.notification_id))
            return fx
        state = _TERMINAL_STATUS[outcome.state]
        if outcome.state is OutcomeState.INVALID_TOKEN:
            dead = outcome.token_invalid_since is not None or outcome.reason in DEAD_TOKEN_REASONS
            fx.invalid_tokens.append(
                InvalidToken(
                    device_token=outcome.device_token,
                    device_key=outcome.device_key,
                    app_id=outcome.app_id,
                    platform=outcome.platform,
                    verdict=TokenVerdict.DEAD if dead else TokenVerdict.SUSPECT,
                    reason=outcome.reason or "Unknown",
                    # APNs says since when (410 timestamp); FCM's UNREGISTERED does not, so the
                    # best known bound is when the provider told us.
                    invalid_since=outcome.token_invalid_since
                    or (outcome.decided_at if dead else None),
                    notification_id=outcome.notification_id,
                    detected_at=outcome.decided_at,
                    provider_status=outcome.provider_status,
                )
            )
        self._status(fx, record, state, outcome.reason, outcome.decided_at, now)
        self._request_fallback(fx, record, f"{state.value}:{outcome.reason or ''}".rstrip(":"), now)
        self._settle(record, now)
        return fx

    def on_receipt(self, receipt: DeliveryReceipt, now: datetime) -> Effects:
        fx = Effects()
        if receipt.os_version:
            self._remember_os(receipt.device_key, receipt.os_version)
        record = self.records.get(receipt.notification_id)
        if record is None:
            # The receipt beat its outcome: hold it until the outcome arrives.
            record = Tracked(
                receipt.notification_id,
                receipt.device_key,
                platform=receipt.platform.value if receipt.platform else None,
                created=now.timestamp(),
            )
            self.records[record.notification_id] = record
        kind = receipt.kind.value
        if kind in record.receipts:
            return fx  # a repeated receipt
        record.receipts.append(kind)
        fx.changed.append(record)
        if record.outcome == OutcomeState.ACCEPTED.value:
            self._status(fx, record, StatusState(kind), "Receipt", receipt.received_at, now)
            record.deadline = None
            self._settle(record, now)
        return fx

    def due(self, now: datetime, read_until: datetime | None = None) -> Effects:
        """Deadlines that have passed: SUSPECTED_LOST, plus a fallback if one was asked for.

        ``read_until`` is how far the receipts of this partition have been read (default: now).
        A deadline counts as passed only once receipts were read past it, so a receipt that
        arrived in time but is still waiting in Kafka (after a restart, or under lag) is never
        overtaken by a fallback.
        """
        fx = Effects()
        ts = min(now, read_until or now).timestamp()
        while self._deadlines and self._deadlines[0][0] <= ts:
            deadline, nid = heapq.heappop(self._deadlines)
            record = self.records.get(nid)
            if record is None or record.deadline != deadline or record.settled_at is not None:
                continue  # stale heap entry
            if record.receipts:
                continue
            fx.changed.append(record)
            self._status(fx, record, StatusState.SUSPECTED_LOST, "NoReceipt", _dt(deadline), now)
            self._request_fallback(fx, record, "NoReceipt", now)
            record.deadline = None
            self._settle(record, now)
        return fx

    def prune(self, now: datetime) -> Effects:
        """Forget settled records after the retention window, and receipts held too long."""
        fx = Effects()
        ts = now.timestamp()
        for nid, record in list(self.records.items()):
            settled = record.settled_at is not None and record.settled_at + self._retain_s < ts
            stale_hold = record.outcome is None and record.created + self._held_ttl_s < ts
            if settled or stale_hold:
                del self.records[nid]
                fx.removed.append(nid)
        return fx

    # ------------------------------------------------------------- helpers

    def _remember_os(self, device_key: str, os_version: str) -> None:
        self.device_os.pop(device_key, None)
        self.device_os[device_key] = os_version
        if len(self.device_os) > DEVICE_OS_LIMIT:
            del self.device_os[next(iter(self.device_os))]

    def os_major(self, device_key: str) -> str:
        """The major OS version the device last reported ("17" for "17.2.1"), else "unknown"."""
        version = self.device_os.get(device_key)
        if not version:
            return "unknown"
        major = version.strip().split(".", 1)[0]
        return major if major.isdigit() and len(major) <= 4 else "other"

    def _settle(self, record: Tracked, now: datetime) -> None:
        if record.settled_at is None:
            record.settled_at = now.timestamp()

    def _status(
        self,
        fx: Effects,
        record: Tracked,
        state: StatusState,
        reason: str | None,
        occurred_at: datetime,
        now: datetime,
    ) -> None:
        if state.value in record.statuses or record.platform is None or record.app_id is None:
            return
        record.statuses.append(state.value)
        # Final unless a fallback is still to come for this state.
        fallback_follows = record.fallback is not None and state in (
            StatusState.SUSPECTED_LOST,
            StatusState.FAILED,
            StatusState.REJECTED,
            StatusState.EXPIRED,
            StatusState.INVALID_TOKEN,
        )
        fx.statuses.append(
            NotificationStatus(
                notification_id=record.notification_id,
                device_key=record.device_key,
                state=state,
                reason=reason,
                occurred_at=occurred_at,
                recorded_at=now,
                platform=Platform(record.platform),
                app_id=record.app_id,
                user_id=record.user_id,
                final=state is not StatusState.ACCEPTED and not fallback_follows,
            )
        )

    def _request_fallback(self, fx: Effects, record: Tracked, reason: str, now: datetime) -> None:
        if record.fallback is None or record.fallback_requested:
            return
        record.fallback_requested = True
        assert record.platform is not None and record.app_id is not None
        fx.fallbacks.append(
            FallbackRequest(
                notification_id=record.notification_id,
                device_key=record.device_key,
                app_id=record.app_id,
                user_id=record.user_id,
                fallback=Fallback.from_dict(record.fallback),
                reason=reason,
                requested_at=now,
                platform=Platform(record.platform),
            )
        )
