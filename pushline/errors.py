"""The Pushline exception hierarchy.

Every error Pushline raises on purpose derives from :class:`PushlineError`, so callers can catch one
type. Third-party errors (librdkafka, the schema registry client, fastavro) are mapped to these in one
place per layer, always chained with ``raise ... from exc`` so the original stays visible.

    PushlineError
    ├── ConfigError            bad or missing configuration (env vars, files)
    ├── ValidationError        a notification that must not reach Kafka (token, size, expiry, address)
    ├── CodecError             an event that cannot be encoded or decoded
    │   └── SchemaRegistryError   the registry refused or could not be reached
    ├── DeliveryError          the broker did not acknowledge a produced event
    ├── TopicError             topics could not be created or do not match the configuration
    │   └── TopicMismatchError    an existing topic differs from the configuration
    └── StackError             the embedded dev stack could not start
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CodecError",
    "ConfigError",
    "DeliveryError",
    "PushlineError",
    "SchemaRegistryError",
    "StackError",
    "TopicError",
    "TopicMismatch",
    "TopicMismatchError",
    "ValidationError",
]


class PushlineError(Exception):
    """Base class of every error Pushline raises on purpose."""


class ConfigError(PushlineError):
    """Configuration is missing or malformed."""


class ValidationError(PushlineError):
    """A notification was refused before it reached Kafka.

    ``field`` names the offending field so a caller (or the CLI) can point at it.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class CodecError(PushlineError):
    """An event could not be serialized or deserialized."""


class SchemaRegistryError(CodecError):
    """The schema registry refused a request or could not be reached."""

    def __init__(
        self, message: str, *, http_status: int | None = None, error_code: int | None = None
    ):
        super().__init__(message)
        self.http_status = http_status
        self.error_code = error_code


class DeliveryError(PushlineError):
    """The broker did not acknowledge a produced event (raised at flush or from the delivery report)."""

    def __init__(self, message: str, *, topic: str | None = None, retriable: bool = False):
        super().__init__(message)
        self.topic = topic
        self.retriable = retriable


class TopicError(PushlineError):
    """Topics could not be created or described."""


@dataclass(frozen=True)
class TopicMismatch:
    """One setting of one existing topic that differs from the configuration."""

    topic: str
    setting: str
    expected: object
    actual: object

    def __str__(self) -> str:
        return (
            f"topic {self.topic!r} exists with {self.setting}={self.actual}, "
            f"but the configuration asks for {self.setting}={self.expected}"
        )


class TopicMismatchError(TopicError):
    """Existing topics differ from the configuration (partition count, replication, retention)."""

    def __init__(self, mismatches: list[TopicMismatch]) -> None:
        super().__init__("; ".join(str(m) for m in mismatches))
        self.mismatches = mismatches


class StackError(PushlineError):
    """The embedded development stack could not be started."""
