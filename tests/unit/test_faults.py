"""Which errors are database faults (503) and which stay what they are, one log line per
fault episode, and the readiness probe's cache (service.store.faults and the backends'
classifiers). The faults themselves are made for real in tests/system/test_database_faults.py.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3

import asyncpg
import pytest

from service.problems import NameTaken, Unavailable
from service.store import faults, postgres, sqlite


def sqlite_error(kind: type[sqlite3.Error], code: int) -> sqlite3.Error:
    error = kind("from SQLite")
    error.sqlite_errorcode = code
    return error


@pytest.mark.parametrize(
    "error",
    [
        sqlite_error(sqlite3.OperationalError, sqlite3.SQLITE_BUSY),
        sqlite_error(sqlite3.OperationalError, sqlite3.SQLITE_FULL),
        sqlite_error(sqlite3.OperationalError, sqlite3.SQLITE_READONLY),
        sqlite_error(sqlite3.OperationalError, sqlite3.SQLITE_IOERR_WRITE),
        sqlite_error(sqlite3.OperationalError, sqlite3.SQLITE_CANTOPEN),
        FileNotFoundError("inventory.db was deleted"),
    ],
)
def test_sqlite_faults_are_unavailable(error: BaseException) -> None:
    assert sqlite._fault_of(error) is not None


@pytest.mark.parametrize(
    "error",
    [
        sqlite_error(sqlite3.IntegrityError, sqlite3.SQLITE_CONSTRAINT_UNIQUE),
        sqlite_error(sqlite3.OperationalError, sqlite3.SQLITE_ERROR),  # e.g. a syntax error
        NameTaken("taken"),
        ValueError("a bug"),
    ],
)
def test_sqlite_constraint_violations_and_bugs_stay_what_they_are(error: BaseException) -> None:
    assert sqlite._fault_of(error) is None


@pytest.mark.parametrize(
    "error",
    [
        TimeoutError(),
        ConnectionRefusedError(),
        asyncpg.TooManyConnectionsError("too many"),
        asyncpg.QueryCanceledError("statement timeout"),
        asyncpg.LockNotAvailableError("lock timeout"),
        asyncpg.CannotConnectNowError("starting up"),
        asyncpg.AdminShutdownError("terminated"),
        asyncpg.ConnectionDoesNotExistError("lost"),
        asyncpg.ReadOnlySQLTransactionError("read-only"),
        asyncpg.InterfaceError("connection is closed"),
    ],
)
def test_postgresql_faults_are_unavailable(error: BaseException) -> None:
    assert postgres._fault_of(error) is not None


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.UniqueViolationError("duplicate"),
        asyncpg.UndefinedColumnError("a bug"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        KeyError("a bug"),
    ],
)
def test_postgresql_constraint_violations_and_bugs_stay_what_they_are(
    error: BaseException,
) -> None:
    assert postgres._fault_of(error) is None


def test_one_log_line_when_a_fault_starts_and_one_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    episodes = faults.Episodes("writes", sqlite._fault_of)
    busy = sqlite_error(sqlite3.OperationalError, sqlite3.SQLITE_BUSY)
    with caplog.at_level(logging.WARNING, "inventory"):
        for _ in range(100):
            unavailable = episodes.translate(busy)
            assert isinstance(unavailable, Unavailable)
            assert unavailable.retry_after >= 1
        episodes.recovered()
        episodes.recovered()
    started, ended = (record.getMessage() for record in caplog.records)
    assert started.startswith("database writes unavailable (busy)")
    assert ended.startswith("database writes available again")


def test_the_readiness_probe_runs_at_most_once_per_max_age() -> None:
    probes: list[int] = []

    async def probe() -> None:
        probes.append(1)
        raise Unavailable("down", retry_after=5)

    async def check_many() -> None:
        readiness = faults.Readiness(probe, max_age=60)
        for _ in range(20):
            with pytest.raises(Unavailable) as refused:
                await readiness.check()
            assert refused.value.retry_after == 5

    asyncio.run(check_many())
    assert len(probes) == 1


@pytest.mark.parametrize("value", ["abc", "0", "-1", "601", "nan"])
def test_a_wait_budget_that_is_no_number_of_seconds_is_refused(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(faults.BUDGET_VARIABLE, value)
    with pytest.raises(faults.BadWaitBudget):
        faults.wait_budget()
