"""``serve --workers``: how long a dead worker waits for its replacement (no process runs).

The real processes are in tests/system/test_workers.py; here fake workers die on demand,
so that the backoff can be read off without waiting for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from service import cli


@dataclass
class FakeWorker:
    pid: int
    exitcode: int = 1

    def join(self) -> None:
        pass

    def terminate(self) -> None:
        pass


def supervisor_with(worker: FakeWorker, since: float) -> cli._Supervisor:
    settings = cli.Settings.model_validate({"database": "postgresql://u@h/db", "workers": 2})
    supervisor = cli._Supervisor(settings)
    supervisor.running[worker.pid] = (worker, since)  # type: ignore[assignment]
    return supervisor


def delays(supervisor: cli._Supervisor, deaths: list[float], now: float) -> list[float]:
    """The wait before each replacement, for workers that ran ``deaths`` seconds each."""
    waits = []
    for number, ran in enumerate(deaths, start=100):
        supervisor.running[number] = (FakeWorker(number), now - ran)  # type: ignore[assignment]
        supervisor.due.clear()
        supervisor.reap(number)
        [due] = supervisor.due
        waits.append(round(due - now, 1))
    return waits


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(time, "monotonic", lambda: 1000.0)
    return 1000.0


def test_workers_that_keep_dying_young_wait_twice_as_long_each_time_up_to_ten_seconds(
    now: float,
) -> None:
    supervisor = supervisor_with(FakeWorker(1), now)
    assert delays(supervisor, [0.1] * 7, now) == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_a_worker_that_ran_steadily_before_dying_is_replaced_after_the_first_backoff(
    now: float,
) -> None:
    supervisor = supervisor_with(FakeWorker(1), now)
    young = [0.1] * 4
    assert delays(supervisor, [*young, cli.STEADY_SECONDS, 0.1], now) == [
        0.5, 1.0, 2.0, 4.0, 0.5, 1.0,
    ]  # fmt: skip


def test_nothing_is_replaced_once_a_stop_began(now: float) -> None:
    worker = FakeWorker(1, exitcode=0)
    supervisor = supervisor_with(worker, now)
    supervisor.stop()
    supervisor.reap(worker.pid)
    assert not supervisor.due
    assert not supervisor.running
