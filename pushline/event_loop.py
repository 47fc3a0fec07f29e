"""One way to run a service's event loop: uvloop where it is installed, else asyncio's own loop.

uvloop, not asyncio's pure-Python loop, for the processes that sit on a hot path (the dispatcher and
the provider emulators): their profiles are dominated by event-loop machinery (handles, futures,
selector wake-ups, the SSL transport), which uvloop runs in C.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from typing import Any, Literal, cast

from pushline.errors import ConfigError

__all__ = ["EventLoopName", "event_loop_from_env", "run_event_loop"]

EventLoopName = Literal["uvloop", "asyncio"]
_NAMES = ("uvloop", "asyncio")


def event_loop_from_env(env: Mapping[str, str]) -> EventLoopName:
    """``PUSHLINE_EVENT_LOOP`` (default ``uvloop``): ``asyncio`` opts out of uvloop, to compare
    or where it misbehaves."""
    name = env.get("PUSHLINE_EVENT_LOOP", "uvloop").strip().lower() or "uvloop"
    if name not in _NAMES:
        raise ConfigError(f"PUSHLINE_EVENT_LOOP must be one of {', '.join(_NAMES)}, not {name!r}")
    return cast(EventLoopName, name)


def run_event_loop(coro: Coroutine[Any, Any, None], loop: EventLoopName = "uvloop") -> None:
    """Run ``coro`` to completion on ``loop``; ``"uvloop"`` falls back to asyncio when uvloop is
    not installed (it is an optional dependency: there is no uvloop for Windows)."""
    if loop == "uvloop":
        try:
            import uvloop  # noqa: PLC0415 - optional speed-up
        except ImportError:
            pass
        else:
            uvloop.run(coro)
            return
    asyncio.run(coro)
