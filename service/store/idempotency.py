"""Idempotent retries, as storage keeps them: one stored answer per (tenant, key).

A write that comes with an ``Idempotency-Key`` carries a ``Claim`` (in its ``Author``): the
key, the request's fingerprint, and how to render its outcome as the answer the client
gets. Inside the write's own transaction each backend first looks for an unexpired record
of the key. Found, with the same fingerprint: ``Replay`` (nothing runs); with another:
``IdempotencyKeyReused``. Not found: the write runs in a savepoint; its result, or the
``Rejected`` problem it raised (whose effect the savepoint undoes), is rendered and stored
with the key, in the same transaction as the effect, so an answer is stored exactly when
its change commits. A rejected write's transaction commits too (it holds the record), and
the problem is raised after the commit (``Refused``).

Storage never reads an answer: it keeps the status, headers and body the HTTP layer made,
and gives them back. Records older than the retention time are ignored by the lookup,
replaced by a new use of their key, and deleted in the background (``Purger``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from service.problems import IdempotencyKeyReused, Rejected

log = logging.getLogger("inventory")
DEFAULT_TTL = 24 * 60 * 60
"""Seconds an answer is kept: 24 hours, as Stripe keeps theirs (README)."""
PURGE_CHUNK = 500
"""Expired records deleted per statement: a purge never holds the writer for long."""
COLUMNS = "tenant, key, fingerprint, status, headers, body, created_at"
"""A stored record's columns, in ``record_row`` order."""


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer as the HTTP layer rendered it: what a replay sends again, byte for byte."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class Claim:
    """An ``Idempotency-Key`` a write comes with: the key, what identifies the request
    (method, path, parameters, normalized body), and how to render the write's outcome as
    its answer: ``rejected`` for a ``Rejected`` problem, ``succeeded`` for the write's result
    (given by the handler, which knows how it answers; ``service.http.idempotency``)."""

    key: str
    fingerprint: str
    rejected: Callable[[Rejected], Answer]
    succeeded: Callable[[Any], Answer] | None = None

    def render(self, outcome: Any) -> Answer:
        """The answer to store for ``outcome``: a result, or a ``Refused`` problem."""
        if isinstance(outcome, Refused):
            return self.rejected(outcome.problem)
        if self.succeeded is None:
            raise TypeError("a keyed write ran without saying how it answers (a bug)")
        return self.succeeded(outcome)


class Replay(Exception):
    """The key's request was answered before: send ``answer`` again; nothing ran."""

    def __init__(self, answer: Answer) -> None:
        super().__init__("replayed")
        self.answer = answer


@dataclass(frozen=True, slots=True)
class Refused:
    """A keyed write that was rejected: its record commits, then ``problem`` is raised."""

    problem: Rejected


@dataclass(frozen=True, slots=True)
class Record:
    """A stored answer with its tenant, key and fingerprint: what export and import carry."""

    tenant: str
    key: str
    fingerprint: str
    answer: Answer
    created_at: str


def cutoff(ttl: float, now: datetime | None = None) -> str:
    """The stored time (``records.utc_now`` format) before which a record has expired."""
    moment = (now or datetime.now(UTC)) - timedelta(seconds=ttl)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def find_query(p: Callable[[int], str]) -> str:
    """The unexpired record of (tenant, key): fingerprint, status, headers, body."""
    return (
        "SELECT fingerprint, status, headers, body FROM idempotency"
        f" WHERE tenant = {p(1)} AND key = {p(2)} AND created_at > {p(3)}"
    )


def store_statement(p: Callable[[int], str]) -> str:
    """Insert a record, or replace the expired one of its key (the lookup before it found no
    unexpired one, and none can have come since: SQLite has one writer, and on PostgreSQL
    the request holds the key's lock)."""
    values = ", ".join(p(n) for n in range(1, 8))
    return (
        f"INSERT INTO idempotency ({COLUMNS}) VALUES ({values}) ON CONFLICT (tenant, key)"
        " DO UPDATE SET fingerprint = excluded.fingerprint, status = excluded.status,"
        " headers = excluded.headers, body = excluded.body, created_at = excluded.created_at"
    )


def purge_statement(p: Callable[[int], str]) -> str:
    """Delete up to ``p(2)`` records created before ``p(1)``."""
    return (
        "DELETE FROM idempotency WHERE (tenant, key) IN (SELECT tenant, key FROM idempotency"
        f" WHERE created_at <= {p(1)} LIMIT {p(2)})"
    )


def replay_of(row: Sequence[Any], claim: Claim) -> Replay | IdempotencyKeyReused:
    """What to raise for the stored ``row`` (``find_query``) of ``claim``'s key."""
    fingerprint, status, headers, body = row
    if fingerprint != claim.fingerprint:
        return IdempotencyKeyReused()
    return Replay(Answer(status, tuple(map(tuple, json.loads(headers))), bytes(body)))


def record_row(tenant: str, claim: Claim, answer: Answer, now: str) -> tuple[Any, ...]:
    """The row (``COLUMNS``) that stores ``answer`` for ``claim``'s key."""
    return (tenant, claim.key, claim.fingerprint, answer.status, _headers(answer), answer.body, now)


def record_of(row: Sequence[Any]) -> Record:
    """A stored row (``COLUMNS``) as a ``Record``."""
    tenant, key, fingerprint, status, headers, body, created_at = row
    answer = Answer(status, tuple(map(tuple, json.loads(headers))), bytes(body))
    return Record(tenant, key, fingerprint, answer, created_at)


def rows_of(records: Sequence[Record]) -> list[tuple[Any, ...]]:
    """``records`` as rows (``COLUMNS``), for an import."""
    return [
        (r.tenant, r.key, r.fingerprint, r.answer.status, _headers(r.answer), r.answer.body,
         r.created_at)
        for r in records
    ]  # fmt: skip


def _headers(answer: Answer) -> str:
    return json.dumps([list(pair) for pair in answer.headers])


class Purger:
    """Deletes expired records in the background, a chunk at a time, every ``every``
    seconds; ``purge(cutoff, limit)`` deletes one chunk and says how many it deleted."""

    def __init__(
        self, ttl: float, purge: Callable[[str, int], Awaitable[int]], every: float = 60.0
    ) -> None:
        self._ttl = ttl
        self._purge = purge
        self._every = min(every, ttl)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin purging (on the running event loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop purging; a chunk being deleted is left to finish or roll back."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def purge_now(self) -> int:
        """Delete every record expired now; how many."""
        deleted, limit = 0, PURGE_CHUNK
        while (count := await self._purge(cutoff(self._ttl), limit)) > 0:
            deleted += count
            if count < limit:
                break
        return deleted

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                await self.purge_now()
            except Exception as error:  # a database fault: try again next time
                log.warning("idempotency purge failed", extra={"error": type(error).__name__})
