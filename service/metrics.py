"""Metrics: what the service counts and times, in prometheus-client's default registry.

Recording is off until ``enable`` (``inventory serve --metrics-port``), so a service without
a metrics port pays one flag test per event. The HTTP layer records requests and database
faults, the SQLite backend its group-commit batches, the PostgreSQL backend its waits for a
pooled connection. With ``--workers``, each worker writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` (set by the parent before the workers start) and the parent
serves their sum (``serving_registry``). No aiohttp here: storage imports this module.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
)

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
_DATABASE_ERRORS = (sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError, OSError)

REQUESTS = Counter(
    "inventory_requests", "Requests answered, by operationId and status.", ["operation", "status"]
)
REQUEST_SECONDS = Histogram(
    "inventory_request_duration_seconds",
    "Time from the request's arrival to its response, by operationId.",
    ["operation"],
    buckets=_LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "inventory_group_commit_batch_size",
    "Writes committed together in one SQLite transaction (one fsync).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
COMMIT_SECONDS = Histogram(
    "inventory_group_commit_duration_seconds",
    "Time to apply and commit one SQLite batch, fsync included.",
    buckets=_LATENCY_BUCKETS,
)
POOL_WAIT_SECONDS = Histogram(
    "inventory_pool_wait_seconds",
    "Time spent waiting for a PostgreSQL connection from the pool.",
    buckets=(0.00001, 0.0001, 0.001, *_LATENCY_BUCKETS[2:]),
)
DATABASE_FAULTS = Counter(
    "inventory_database_faults",
    "Requests that failed on a database error, by the error's class.",
    ["kind"],
)

REPLAYS = Counter(
    "inventory_idempotent_replays",
    "Writes answered with the stored answer of their Idempotency-Key (nothing changed).",
)
LONG_POLLS = Gauge(
    "inventory_long_polls_waiting",
    "Feed requests (GET /events with wait) holding an empty answer right now.",
    multiprocess_mode="livesum",
)


class _Switch:
    on = False


_REQUEST_SERIES: dict[tuple[str, int], tuple[Counter, Histogram]] = {}
"""Each (operationId, status)'s two series: few (the contract's operations and statuses)."""


def enable(on: bool = True) -> None:
    """Start recording (a metrics port is being served); ``enable(False)`` stops it."""
    _Switch.on = on


def record_request(operation: str, status: int, seconds: float) -> None:
    """One answered request."""
    if _Switch.on:
        series = _REQUEST_SERIES.get((operation, status))
        if series is None:  # kept: .labels() builds and looks up its key under a lock
            series = REQUESTS.labels(operation, str(status)), REQUEST_SECONDS.labels(operation)
            _REQUEST_SERIES[operation, status] = series
        count, duration = series
        count.inc()
        duration.observe(seconds)


def record_batch(size: int, seconds: float) -> None:
    """One group commit of ``size`` writes that took ``seconds``."""
    if _Switch.on:
        BATCH_SIZE.observe(size)
        COMMIT_SECONDS.observe(seconds)


def record_pool_wait(seconds: float) -> None:
    """One wait for a pooled connection."""
    if _Switch.on:
        POOL_WAIT_SECONDS.observe(seconds)


def record_replay() -> None:
    """One write answered by a replay."""
    if _Switch.on:
        REPLAYS.inc()


def record_fault(error: BaseException) -> None:
    """A request failed on ``error``: counted when it is a database error."""
    if _Switch.on and isinstance(error, _DATABASE_ERRORS):
        DATABASE_FAULTS.labels(type(error).__name__).inc()


@contextmanager
def long_poll_waiting() -> Iterator[None]:
    """Count a long poll as waiting for as long as the block runs."""
    counted = _Switch.on
    if counted:
        LONG_POLLS.inc()
    try:
        yield
    finally:
        if counted:
            LONG_POLLS.dec()


def mark_dead(pid: int | None) -> None:
    """A worker has exited: its live gauges no longer count (its counters still do)."""
    directory = os.environ.get(MULTIPROCESS_DIR)
    if directory and pid is not None:
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def serving_registry() -> CollectorRegistry:
    """What a scrape shows: this process (and its process metrics), or with
    ``PROMETHEUS_MULTIPROC_DIR`` set, the sum over every worker's files."""
    directory = os.environ.get(MULTIPROCESS_DIR)
    if not directory:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry
