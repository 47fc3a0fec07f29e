"""JSON-lines logging for long-running components, with secrets masked.

One line per record on stderr: ``ts`` (ISO 8601 UTC, milliseconds), ``level``, ``logger``,
``component``, ``msg``, then every ``extra={...}`` field, then ``exc`` (type, message, traceback)
when the record carries an exception. Log shippers parse it as is; nothing else writes to stderr.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import sys
import traceback
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import IO, Any

from pushline.errors import ConfigError

__all__ = ["REDACTED", "JsonFormatter", "RedactingFilter", "configure_json_logging"]

REDACTED = "[REDACTED]"
# Field-name words whose values are masked. Matched per word of the name (split on _, -, . and
# camelCase), so ``device_token`` and ``Authorization`` are masked but ``tokenizer_stats`` is not.
DEFAULT_REDACT_WORDS: frozenset[str] = frozenset(
    {"secret", "password", "passwd", "token", "authorization", "apikey", "cookie", "credentials"}
)
# Two-word names (e.g. private_key, api_key) are matched on the joined adjacent words.
DEFAULT_REDACT_PAIRS: frozenset[str] = frozenset({"privatekey", "apikey", "accesskey", "secretkey"})

_WORD_RE = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_HANDLER_MARK = "_pushline_json_handler"


def _is_secret_name(name: str, words: frozenset[str], pairs: frozenset[str]) -> bool:
    parts = [w.lower() for w in _WORD_RE.findall(name)]
    if any(p in words for p in parts):
        return True
    return any(a + b in pairs for a, b in itertools.pairwise(parts))


class RedactingFilter(logging.Filter):
    """Masks the values of ``extra`` fields (and keys of nested mappings) named like a secret.

    It rewrites the record, so no handler downstream can see the value either.
    """

    def __init__(self, extra_words: Iterable[str] = ()) -> None:
        super().__init__()
        self._words = DEFAULT_REDACT_WORDS | {w.lower() for w in extra_words}
        self._pairs = DEFAULT_REDACT_PAIRS

    def is_secret(self, name: str) -> bool:
        return _is_secret_name(name, self._words, self._pairs)

    def _clean(self, value: Any, depth: int = 0) -> Any:
        if depth > 8:  # a self-referencing structure must not hang the logger
            return value
        if isinstance(value, Mapping):
            return {
                k: REDACTED
                if isinstance(k, str) and self.is_secret(k)
                else self._clean(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._clean(v, depth + 1) for v in value]
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        for name in list(record.__dict__):
            if name in _RECORD_ATTRS or name.startswith("_"):
                continue
            value = record.__dict__[name]
            record.__dict__[name] = REDACTED if self.is_secret(name) else self._clean(value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record. Values that JSON cannot hold are written with ``str()``."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "component": self.component,
            "msg": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _RECORD_ATTRS and not name.startswith("_") and name not in out:
                out[name] = value
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            out["exc"] = {
                "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                "message": str(exc),
                "traceback": "".join(traceback.format_exception(exc)),
            }
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, default=str, ensure_ascii=False)


def _level(level: int | str) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.strip().upper())
    if not isinstance(value, int):
        raise ConfigError(f"unknown log level {level!r} (use DEBUG, INFO, WARNING or ERROR)")
    return value


def configure_json_logging(
    level: int | str,
    component: str,
    *,
    stream: IO[str] | None = None,
    redact: Iterable[str] = (),
) -> logging.Handler:
    """Route every log record through one JSON-lines handler on ``stream`` (default stderr).

    Replaces the handler a previous call installed, so calling it twice does not double lines.
    ``redact`` adds field-name words to mask. Returns the handler.
    """
    numeric_level = _level(level)  # before touching anything: a bad level changes nothing
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
            old.close()
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(RedactingFilter(redact))
    handler.setFormatter(JsonFormatter(component))
    root.addHandler(handler)
    root.setLevel(numeric_level)
    # warnings.warn() output becomes a JSON line too, instead of free text on stderr
    logging.captureWarnings(True)
    return handler
