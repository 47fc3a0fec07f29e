"""What the dispatcher sends through (``ProviderClients``, or a test's sender). A module of its own:
:mod:`dispatcher._loop` is compiled by mypyc (setup.py), and a protocol class stays plain Python."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, runtime_checkable

from dispatcher._results import SendResult
from schemas import NotificationRequest

__all__ = ["ProviderSender", "StartingSender"]


class ProviderSender(Protocol):
    def send(
        self, request: NotificationRequest, *, extra_custom: Mapping[str, str] = ...
    ) -> Awaitable[SendResult]: ...


@runtime_checkable
class StartingSender(ProviderSender, Protocol):
    """A sender that can also start a send without a coroutine (``ProviderClients``)."""

    def try_send(
        self,
        request: NotificationRequest,
        extra_custom: Mapping[str, str],
        on_result: Callable[[SendResult], None],
    ) -> bool: ...
