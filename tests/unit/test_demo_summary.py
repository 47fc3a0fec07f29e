"""The demo summary's throughput: over the push outcomes, whatever fallbacks follow them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pushline.demo import push_throughput
from schemas import Channel, DispatchOutcome, NotificationRequest, OutcomeState, Platform

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _request(i: int) -> NotificationRequest:
    return NotificationRequest(
        f"00000000-0000-4000-8000-{i:012d}", T0, "shop", Platform.APNS, "tok", T0 + timedelta(1)
    )


def _outcome(request: NotificationRequest, after_s: float, channel: Channel) -> DispatchOutcome:
    return DispatchOutcome(
        notification_id=request.notification_id,
        device_key="tok",
        device_token="tok",
        platform=Platform.APNS,
        app_id="shop",
        state=OutcomeState.ACCEPTED,
        requested_at=T0,
        decided_at=T0 + timedelta(seconds=after_s),
        channel=channel,
    )


def test_throughput_ends_at_the_last_push_outcome_not_at_a_later_fallback() -> None:
    requests = [_request(i) for i in range(100)]
    outcomes = [_outcome(r, 2.0 * (i + 1) / 100, Channel.PUSH) for i, r in enumerate(requests)]
    # one of them had no receipt: its email went out after the 30 s receipt deadline
    outcomes.append(_outcome(requests[0], 31.0, Channel.EMAIL))
    assert push_throughput(requests, outcomes) == 100 / 2.0
