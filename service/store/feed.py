"""Waking long-polling followers of a tenant's feed when one of its events commits.

A follower takes ``signal.watch(tenant)`` *before* it reads the feed, so an event that
commits between its read and its wait still wakes it. Writers call ``wake(tenant)`` after
their commit: directly in a single process, and through PostgreSQL's LISTEN/NOTIFY across
processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from service import metrics
from service.store.records import Event


class FeedSignal:
    """One flag per tenant with waiting followers, set and dropped when an event commits."""

    def __init__(self) -> None:
        self._flags: dict[str, asyncio.Event] = {}

    def watch(self, tenant: str) -> asyncio.Event:
        """The flag the tenant's next ``wake`` sets."""
        return self._flags.setdefault(tenant, asyncio.Event())

    def wake_all(self) -> None:
        """Wake every follower of every tenant (events may have been missed)."""
        flags, self._flags = self._flags, {}
        for flag in flags.values():
            flag.set()

    def wake(self, tenant: str) -> None:
        """Wake every follower of ``tenant``."""
        flag = self._flags.pop(tenant, None)
        if flag is not None:
            flag.set()


async def follow(
    signal: FeedSignal, tenant: str, wait: float, read: Callable[[], Awaitable[list[Event]]]
) -> list[Event]:
    """``read()``'s events; when there are none, read again on each wake for up to ``wait`` s."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        flag = signal.watch(tenant)
        events = await read()
        remaining = deadline - asyncio.get_running_loop().time()
        if events or remaining <= 0:
            return events
        try:
            with metrics.long_poll_waiting():
                await asyncio.wait_for(flag.wait(), remaining)
        except TimeoutError:
            return await read()
