"""Database faults as ``Unavailable`` (503), logged once per episode rather than per request.

Each backend names the errors that mean "the database cannot answer now" (busy past the
budget, unreachable, read-only, full, over its connection limit, timed out) with a
classifier: ``error -> (kind, retry_after)``, or ``None`` for anything else, which stays
what it is (a constraint violation, a bug). ``Episodes`` turns a classified error into
``Unavailable``, logs one line when a kind of fault starts and one when the database
answers again, and counts every failed request in the metrics.

``wait_budget`` is how long a request waits for the database (a lock, a pooled connection)
before it is answered 503: a few seconds, or ``INVENTORY_DB_TIMEOUT`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from service import metrics
from service.problems import Unavailable

log = logging.getLogger("inventory")

Classifier = Callable[[BaseException], "tuple[str, int] | None"]
DEFAULT_WAIT_BUDGET = 3.0
BUDGET_VARIABLE = "INVENTORY_DB_TIMEOUT"


class BadWaitBudget(ValueError):
    """``INVENTORY_DB_TIMEOUT`` is not a number of seconds the service can use."""


def wait_budget() -> float:
    """Seconds a request may wait for the database before it is answered 503."""
    text = os.environ.get(BUDGET_VARIABLE, "")
    try:
        budget = float(text) if text else DEFAULT_WAIT_BUDGET
    except ValueError:
        budget = -1.0
    if not 0 < budget <= 600:
        raise BadWaitBudget(
            f"{BUDGET_VARIABLE}={text!r} is not a wait budget; give seconds, more than 0,"
            " at most 600 (default 3)"
        )
    return budget


class Episodes:
    """The faults of one way to the database (``what``: its reads, its writes): one log
    line when a kind of fault starts, one when the database answers again."""

    def __init__(self, what: str, classify: Classifier) -> None:
        self._what = what
        self._classify = classify
        self._kind: str | None = None
        self._since = 0.0

    def translate(self, error: BaseException) -> BaseException:
        """``Unavailable`` for a database fault; any other error unchanged."""
        fault = self._classify(error)
        if fault is None:
            return error
        kind, retry_after = fault
        metrics.record_fault(error)
        if kind != self._kind:
            log.warning(
                "database %s unavailable (%s): %s: %s; answering 503 until it recovers",
                self._what, kind, type(error).__name__, error,
            )  # fmt: skip
            self._kind, self._since = kind, time.monotonic()
        return Unavailable(f"the database cannot answer now ({kind}); try again later", retry_after)

    def recovered(self) -> None:
        """The database answered: ends the fault episode, if one was running."""
        if self._kind is not None:
            log.warning(
                "database %s available again after %.1f s of %s",
                self._what, time.monotonic() - self._since, self._kind,
            )  # fmt: skip
            self._kind = None

    @contextmanager
    def answering(self) -> Iterator[None]:
        """Run the block; a database fault in it is raised as ``Unavailable``."""
        try:
            yield
        except Exception as error:
            translated = self.translate(error)
            if translated is error:
                raise
            raise translated from None
        self.recovered()


class Readiness:
    """A probe of the database's reads and writes, run at most once per ``max_age`` seconds:
    callers in between get the last result (``/healthz`` may be polled hard)."""

    def __init__(self, probe: Callable[[], Awaitable[None]], max_age: float = 1.0) -> None:
        self._probe = probe
        self._max_age = max_age
        self._checked = -max_age
        self._fault: Unavailable | None = None
        self._lock = asyncio.Lock()

    async def check(self) -> None:
        """Return if the database could be read and written just now; else ``Unavailable``."""
        if time.monotonic() - self._checked >= self._max_age:
            async with self._lock:  # one probe at a time; the others wait for its result
                if time.monotonic() - self._checked >= self._max_age:
                    self._fault = await self._run_probe()
                    self._checked = time.monotonic()
        if self._fault is not None:
            raise Unavailable(self._fault.detail, self._fault.retry_after)

    async def _run_probe(self) -> Unavailable | None:
        try:
            await self._probe()
        except Unavailable as fault:
            return fault
        return None
