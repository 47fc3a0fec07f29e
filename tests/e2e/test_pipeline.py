"""The whole pipeline, as a user sees it: request → push → receipt or not → final status.

Every component runs: dispatcher, receipts API (a real process), reconciler and fallback sender,
against the embedded broker and the APNs/FCM/SMTP/SMS emulators. Devices are simulated by reading
the pushes the emulators accepted and posting their receipt tokens to the receipts API.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.emulators.sms import SmsControl
from pushline.emulators.smtp import SmtpControl
from pushline.stack import StackHandle
from pushline.topics import ensure_topics
from receipts import (
    FallbackConfig,
    FallbackSender,
    Reconciler,
    ReconcilerConfig,
    start_receipts_api_process,
)
from schemas import (
    Fallback,
    FallbackChannel,
    InvalidToken,
    NotificationStatus,
    Platform,
    TokenVerdict,
)
from schemas.payloads import RECEIPT_TOKEN_KEY
from tests.integration.pipeline import (
    control,
    event_reader,
    request,
    running_dispatcher,
    send_all,
)

pytestmark = pytest.mark.e2e


class Background:
    """Runs a component's blocking or async ``run`` on a thread."""

    def __init__(self, component: Any) -> None:
        self.component = component
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not component.ready:
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"{type(component).__name__} not ready"
            time.sleep(0.05)

    def _run(self) -> None:
        try:
            result = self.component.run()
            if asyncio.iscoroutine(result):
                asyncio.run(result)
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.component.stop()
        self._thread.join(60)
        assert not self._thread.is_alive()
        if self.error is not None:
            raise self.error


@pytest.fixture
def topics(kafka_config: KafkaConfig, topics_config: TopicsConfig) -> TopicsConfig:
    ensure_topics(kafka_config, topics_config)
    return topics_config


@pytest.fixture
def env(stack: StackHandle, topics: TopicsConfig) -> Iterator[dict[str, str]]:
    for which in ("APNS", "FCM"):
        with control(stack.env, which) as ctl:
            ctl.reset()
    yield {
        **os.environ,
        **stack.env,
        "PUSHLINE_TOPIC_PREFIX": topics.prefix,
        "PUSHLINE_TOPIC_PARTITIONS": str(topics.partitions),
    }
    for which in ("APNS", "FCM"):
        with control(stack.env, which) as ctl:
            ctl.reset()


def _receipt_token(push: dict[str, Any]) -> str:
    payload = push["payload"]
    if RECEIPT_TOKEN_KEY in payload:
        return str(payload[RECEIPT_TOKEN_KEY])
    return str(payload["data"][RECEIPT_TOKEN_KEY])


def test_every_notification_reaches_the_final_state_a_status_consumer_expects(
    kafka_config: KafkaConfig,
    registry_config: SchemaRegistryConfig,
    topics: TopicsConfig,
    env: dict[str, str],
) -> None:
    since = datetime.now(UTC) - timedelta(days=2)
    email = Fallback(
        channel=FallbackChannel.EMAIL, address="ana@example.com", text="Shipped", subject="Order"
    )
    sms = Fallback(channel=FallbackChannel.SMS, address="+4915112345678", text="Shipped")
    cases = {
        "ios-read": (request(Platform.APNS, receipt_deadline_ms=20_000), "DELIVERED"),
        "android-read": (request(Platform.FCM, receipt_deadline_ms=20_000), "DELIVERED"),
        "ios-silent-email": (
            request(Platform.APNS, receipt_deadline_ms=2000, fallback=email),
            "FALLBACK_SENT",
        ),
        "android-silent-sms": (
            request(Platform.FCM, receipt_deadline_ms=2000, fallback=sms),
            "FALLBACK_SENT",
        ),
        "ios-silent": (request(Platform.APNS, receipt_deadline_ms=2000), "SUSPECTED_LOST"),
        "ios-uninstalled": (request(Platform.APNS), "INVALID_TOKEN"),
        "android-uninstalled": (request(Platform.FCM), "INVALID_TOKEN"),
    }
    reqs = {name: r for name, (r, _) in cases.items()}
    with control(env, "APNS") as apns, control(env, "FCM") as fcm:
        apns.set_unregistered(
            [reqs["ios-uninstalled"].device_token], timestamp_ms=int(since.timestamp() * 1000)
        )
        fcm.set_token_reason(reqs["android-uninstalled"].device_token, "UNREGISTERED")

    statuses = event_reader(kafka_config, registry_config, topics.status, NotificationStatus)
    invalid = event_reader(kafka_config, registry_config, topics.invalid_tokens, InvalidToken)
    group = {"group_id": f"{topics.prefix}reconciler", "session_timeout_ms": 6000}
    reconciler = Background(
        Reconciler(
            kafka=kafka_config,
            registry=registry_config,
            topics=topics,
            config=ReconcilerConfig.from_env({}, **group),
        )
    )
    sender = Background(
        FallbackSender(
            kafka=kafka_config,
            registry=registry_config,
            topics=topics,
            config=FallbackConfig.from_env(
                env,
                group_id=f"{topics.prefix}fallback",
                session_timeout_ms=6000,
            ),
        )
    )
    api = start_receipts_api_process(env)
    try:
        with running_dispatcher(kafka_config, registry_config, topics, env):
            send_all(kafka_config, registry_config, topics, list(reqs.values()))
            # the devices that read their push send a receipt with its token
            read = {reqs["ios-read"].device_token, reqs["android-read"].device_token}
            deadline = time.monotonic() + 60
            pending = set(read)
            while pending and time.monotonic() < deadline:
                with control(env, "APNS") as apns, control(env, "FCM") as fcm:
                    pushes = apns.pushes() + fcm.pushes()
                for push in pushes:
                    if push["token"] in pending:
                        answer = httpx.post(
                            f"{api.url}/v1/receipts",
                            json={
                                "token": _receipt_token(push),
                                "kind": "DELIVERED",
                                "device_key": push["token"],
                            },
                            timeout=10,
                        )
                        assert answer.status_code == 202, answer.text
                        pending.discard(push["token"])
                time.sleep(0.2)
            assert not pending, "the emulators never saw the pushes to read"

            def final_states(evs: list[NotificationStatus]) -> dict[str, str]:
                last: dict[str, str] = {}
                for st in evs:
                    if st.final:
                        last[st.notification_id] = st.state.value
                return last

            got = statuses.wait_for(
                lambda evs: {r.notification_id for r in reqs.values()} <= set(final_states(evs)),
                timeout=90,
            )
    finally:
        api.close()
        sender.stop()
        reconciler.stop()
        statuses.close()
    final = final_states(got)
    assert {name: final[r.notification_id] for name, r in reqs.items()} == {
        name: expected for name, (_, expected) in cases.items()
    }

    tokens = {e.device_token: e for e in invalid.wait_for(lambda evs: len(evs) >= 2)}
    invalid.close()
    ios = tokens[reqs["ios-uninstalled"].device_token]
    android = tokens[reqs["android-uninstalled"].device_token]
    assert ios.verdict is android.verdict is TokenVerdict.DEAD
    assert ios.invalid_since is not None
    assert int(ios.invalid_since.timestamp()) == int(since.timestamp())
    assert android.invalid_since is not None

    smtp = SmtpControl(env["SMTP_CONTROL_URL"], env["PUSHLINE_FALLBACK_CA_FILE"])
    sms_ctl = SmsControl(env["SMS_CONTROL_URL"], env["PUSHLINE_FALLBACK_CA_FILE"])
    mails = [m for m in smtp.messages() if "ana@example.com" in m["to"]]
    texts = [m for m in sms_ctl.messages() if m["to"] == "+4915112345678"]
    assert len(mails) == 1 and mails[0]["subject"] == "Order"
    assert len(texts) == 1 and texts[0]["body"] == "Shipped"
