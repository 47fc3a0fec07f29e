"""The services' event loop: uvloop by default, asyncio on request, a bad name refused by name."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from pushline.errors import ConfigError
from pushline.event_loop import event_loop_from_env, run_event_loop


def _loop_type_under(name: str) -> type:
    seen: list[type] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()))

    run_event_loop(main(), name)  # type: ignore[arg-type]
    return seen[0]


def test_uvloop_runs_the_coroutine_on_a_uvloop_loop() -> None:
    assert issubclass(_loop_type_under("uvloop"), uvloop.Loop)


def test_asyncio_runs_the_coroutine_on_asyncios_own_loop() -> None:
    assert not issubclass(_loop_type_under("asyncio"), uvloop.Loop)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "uvloop"),
        ({"PUSHLINE_EVENT_LOOP": ""}, "uvloop"),
        ({"PUSHLINE_EVENT_LOOP": " AsyncIO "}, "asyncio"),
    ],
)
def test_the_setting_defaults_to_uvloop(env: dict[str, str], expected: str) -> None:
    assert event_loop_from_env(env) == expected


def test_an_unknown_loop_is_refused_by_name() -> None:
    with pytest.raises(
        ConfigError, match="PUSHLINE_EVENT_LOOP must be one of uvloop, asyncio, not 'trio'"
    ):
        event_loop_from_env({"PUSHLINE_EVENT_LOOP": "trio"})
