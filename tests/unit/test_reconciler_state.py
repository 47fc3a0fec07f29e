"""The reconciler's rules, without a broker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from receipts._reconciler_state import PartitionState
from schemas import (
    Channel,
    DeliveryReceipt,
    DispatchOutcome,
    Fallback,
    FallbackChannel,
    OutcomeState,
    Platform,
    ReceiptKind,
    StatusState,
    TokenVerdict,
)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
EMAIL = Fallback(channel=FallbackChannel.EMAIL, address="u@example.com", text="hi", subject="s")


def state() -> PartitionState:
    return PartitionState(default_deadline_s=3600, retain_s=600, held_receipt_ttl_s=300)


def outcome(
    nid: str, outcome_state: OutcomeState = OutcomeState.ACCEPTED, **kw: Any
) -> DispatchOutcome:
    values: dict[str, Any] = {
        "notification_id": nid,
        "device_key": "dev-1",
        "device_token": "a" * 64,
        "platform": Platform.APNS,
        "app_id": "shop",
        "state": outcome_state,
        "requested_at": T0,
        "decided_at": T0,
        "receipt_deadline_ms": 30_000,
    }
    values.update(kw)
    return DispatchOutcome(**values)


def receipt(
    nid: str, kind: ReceiptKind = ReceiptKind.DELIVERED, at: datetime = T0
) -> DeliveryReceipt:
    return DeliveryReceipt(notification_id=nid, device_key="dev-1", kind=kind, received_at=at)


def nid() -> str:
    return str(uuid.uuid4())


def states(fx: Any) -> list[tuple[str, bool]]:
    return [(s.state.value, s.final) for s in fx.statuses]


def test_receipt_after_outcome_is_delivered_and_cancels_the_deadline() -> None:
    s, n = state(), nid()
    assert states(s.on_outcome(outcome(n), T0)) == [("ACCEPTED", False)]
    assert states(
        s.on_receipt(
            receipt(n),
            T0 + timedelta(seconds=2),
        )
    ) == [("DELIVERED", True)]
    assert not s.due(T0 + timedelta(hours=2))
    assert states(s.on_receipt(receipt(n, ReceiptKind.OPENED), T0)) == [("OPENED", True)]


def test_receipt_before_outcome_is_held_until_the_outcome_arrives() -> None:
    s, n = state(), nid()
    held = s.on_receipt(receipt(n), T0)
    assert held.statuses == [] and [r.notification_id for r in held.changed] == [n]
    fx = s.on_outcome(outcome(n, fallback=EMAIL), T0 + timedelta(seconds=1))
    assert states(fx) == [("ACCEPTED", False), ("DELIVERED", True)]
    assert not s.due(T0 + timedelta(days=1)).fallbacks


@pytest.mark.parametrize("with_fallback", [True, False])
def test_deadline_gives_suspected_lost_and_exactly_one_fallback(with_fallback: bool) -> None:
    s, n = state(), nid()
    s.on_outcome(outcome(n, fallback=EMAIL if with_fallback else None), T0)
    assert not s.due(T0 + timedelta(seconds=29))
    fx = s.due(T0 + timedelta(seconds=30))
    assert states(fx) == [("SUSPECTED_LOST", not with_fallback)]
    assert len(fx.fallbacks) == (1 if with_fallback else 0)
    if with_fallback:
        assert fx.fallbacks[0].fallback == EMAIL
        assert fx.fallbacks[0].reason == "NoReceipt"
    assert not s.due(T0 + timedelta(seconds=31))
    # a late receipt still tells the truth, but fires nothing more
    late = s.on_receipt(receipt(n), T0 + timedelta(minutes=5))
    assert states(late) == [("DELIVERED", True)] and not late.fallbacks


def test_default_deadline_applies_when_the_request_set_none() -> None:
    s, n = state(), nid()
    s.on_outcome(outcome(n, receipt_deadline_ms=None), T0)
    assert not s.due(T0 + timedelta(seconds=3599))
    assert states(s.due(T0 + timedelta(seconds=3600))) == [("SUSPECTED_LOST", True)]


@pytest.mark.parametrize(
    ("reason", "since", "verdict"),
    [
        ("Unregistered", T0 - timedelta(days=2), TokenVerdict.DEAD),
        ("UNREGISTERED", None, TokenVerdict.DEAD),
        ("BadDeviceToken", None, TokenVerdict.SUSPECT),
        ("DeviceTokenNotForTopic", None, TokenVerdict.SUSPECT),
    ],
)
def test_invalid_token_outcome_gives_an_invalid_token_event_and_fallback(
    reason: str, since: datetime | None, verdict: TokenVerdict
) -> None:
    s, n = state(), nid()
    fx = s.on_outcome(
        outcome(
            n, OutcomeState.INVALID_TOKEN, reason=reason, token_invalid_since=since, fallback=EMAIL
        ),
        T0,
    )
    [event] = fx.invalid_tokens
    assert event.verdict is verdict
    # the 410's own time when given; else, for a dead token, when the provider said so
    expected_since = since or (T0 if verdict is TokenVerdict.DEAD else None)
    assert event.invalid_since == expected_since
    assert event.device_token == "a" * 64
    assert states(fx) == [("INVALID_TOKEN", False)]
    assert len(fx.fallbacks) == 1


@pytest.mark.parametrize(
    ("outcome_state", "status"),
    [
        (OutcomeState.FAILED, StatusState.FAILED),
        (OutcomeState.REJECTED, StatusState.REJECTED),
        (OutcomeState.EXPIRED, StatusState.EXPIRED),
    ],
)
def test_failed_rejected_expired_give_a_final_status_and_fallback(
    outcome_state: OutcomeState, status: StatusState
) -> None:
    s, n = state(), nid()
    fx = s.on_outcome(outcome(n, outcome_state, reason="X"), T0)
    assert states(fx) == [(status.value, True)] and not fx.fallbacks
    m = nid()
    fx = s.on_outcome(outcome(m, outcome_state, reason="X", fallback=EMAIL), T0)
    assert states(fx) == [(status.value, False)] and len(fx.fallbacks) == 1


def test_redelivered_outcomes_and_receipts_change_nothing() -> None:
    s, n = state(), nid()
    s.on_outcome(outcome(n, fallback=EMAIL), T0)
    assert not s.on_outcome(outcome(n, fallback=EMAIL), T0)
    s.on_receipt(receipt(n), T0)
    assert not s.on_receipt(receipt(n), T0)


@pytest.mark.parametrize(
    "ignored",
    [
        {"state": OutcomeState.RETRY_SCHEDULED},
        {"state": OutcomeState.DUPLICATE},
        {"channel": Channel.EMAIL},
    ],
)
def test_non_final_duplicate_and_fallback_channel_outcomes_are_ignored(
    ignored: dict[str, Any],
) -> None:
    s, n = state(), nid()
    fields = {"outcome_state": ignored.get("state", OutcomeState.ACCEPTED)}
    extra = {k: v for k, v in ignored.items() if k != "state"}
    assert not s.on_outcome(outcome(n, fields["outcome_state"], **extra), T0)


def test_state_restored_from_the_changelog_keeps_deadlines_and_never_refires() -> None:
    s, n, m = state(), nid(), nid()
    log: dict[str, bytes | None] = {}

    def record(fx: Any) -> None:
        for r in fx.changed:
            log[r.notification_id] = r.to_json()
        for gone in fx.removed:
            log[gone] = None

    record(s.on_outcome(outcome(n, fallback=EMAIL), T0))
    record(s.on_outcome(outcome(m, fallback=EMAIL), T0))
    record(s.due(T0 + timedelta(seconds=30)))  # both fire

    restored = state()
    for key, raw in log.items():
        restored.restore(key, raw)
    assert not restored.due(T0 + timedelta(hours=1)).fallbacks

    # a record whose deadline had not passed yet fires after the restore, once
    s2, k = state(), nid()
    log.clear()
    record(s2.on_outcome(outcome(k, fallback=EMAIL), T0))
    again = state()
    for key, raw in log.items():
        again.restore(key, raw)
    assert len(again.due(T0 + timedelta(seconds=30)).fallbacks) == 1
    assert not again.due(T0 + timedelta(seconds=31)).fallbacks


def test_prune_forgets_settled_records_and_stale_held_receipts() -> None:
    s, settled, held = state(), nid(), nid()
    s.on_outcome(outcome(settled, OutcomeState.FAILED), T0)
    s.on_receipt(receipt(held), T0)
    assert not s.prune(T0 + timedelta(seconds=200)).removed
    fx = s.prune(T0 + timedelta(seconds=700))
    assert sorted(fx.removed) == sorted([settled, held])
    assert len(s) == 0


def test_a_deadline_waits_until_receipts_were_read_past_it() -> None:
    s, n = state(), nid()
    s.on_outcome(outcome(n, fallback=EMAIL), T0)
    late_read = T0 + timedelta(seconds=20)  # receipts read only up to before the deadline
    assert not s.due(T0 + timedelta(minutes=5), read_until=late_read)
    # the receipt that was waiting in Kafka wins over the fallback
    assert states(s.on_receipt(receipt(n), T0 + timedelta(minutes=5))) == [("DELIVERED", True)]
    assert not s.due(T0 + timedelta(minutes=6))


def test_the_os_version_a_device_reported_labels_its_invalid_token() -> None:
    s, n, m = state(), nid(), nid()
    s.on_receipt(
        DeliveryReceipt(
            notification_id=n,
            device_key="dev-1",
            kind=ReceiptKind.DELIVERED,
            received_at=T0,
            os_version="17.2.1",
        ),
        T0,
    )
    assert s.os_major("dev-1") == "17"
    assert s.os_major("dev-never-seen") == "unknown"
    s.device_os["dev-2"] = "Android 14"
    assert s.os_major("dev-2") == "other"  # a bounded label set, whatever devices send
    fx = s.on_outcome(outcome(m, OutcomeState.INVALID_TOKEN, reason="Unregistered"), T0)
    assert [t.device_key for t in fx.invalid_tokens] == ["dev-1"]
