"""Produce notification requests to Kafka, validated before they leave the process.

with NotificationProducer() as producer:          # settings from the environment
    nid = producer.send(new_notification(app_id="shop", platform="APNS",
                                         device_token=token, title="Hi", body="..."))
"""

from producers._producer import (
    PRODUCER_SETTINGS,
    AsyncNotificationProducer,
    NotificationProducer,
    ProducerOptions,
    new_notification,
)
from producers._validation import validate_request

__all__ = [
    "PRODUCER_SETTINGS",
    "AsyncNotificationProducer",
    "NotificationProducer",
    "ProducerOptions",
    "new_notification",
    "validate_request",
]
