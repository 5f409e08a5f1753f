"""Crash safety on SQLite: whatever the server acknowledged survives a SIGKILL mid-load.

The real ``inventory serve`` runs as a subprocess on a temporary file. Threads create
items (unique names) and adjust a few hot items, each keeping a ledger of what it sent
and what was acknowledged; the server is killed with SIGKILL in the middle of that load,
then started again on the same file. The restarted database must hold every acknowledged
write, may hold writes whose answer was lost in the kill (but only whole, valid ones),
must pass ``PRAGMA integrity_check``, and every row must keep the invariants
(README, "The invariants").

A SIGKILL loses the process, not the operating system's page cache, so this checks
atomicity and recovery (WAL replay, no half-applied batch), not the fsync itself.
"""

from __future__ import annotations

import itertools
import random
import re
import sqlite3
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from model.invariants import name_key, normalize_text, qty_problem, text_problem
from tests.support import db
from tests.support.contract import check_response
from tests.support.processes import ServedProcess, run_inventory

TENANT = "crash"
THREADS = 12
HOT_ITEMS = 3
LOAD_SECONDS = 1.5
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


@dataclass
class Ledger:
    """What one load thread sent, and which of it the server acknowledged."""

    attempted_creates: dict[str, int] = field(default_factory=dict)  # name -> qty
    acknowledged_creates: list[dict[str, Any]] = field(default_factory=list)
    acknowledged_deltas: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    unacknowledged_deltas: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    unexpected: list[str] = field(default_factory=list)
    interrupted: bool = False


def create_key(database: Path) -> str:
    """A writer key, made with the CLI before the server starts."""
    outcome = run_inventory(
        "keys", "create", "--tenant", TENANT, "--role", "writer",
        "--database", f"sqlite:///{database}",
    )  # fmt: skip
    assert outcome.returncode == 0, outcome.stderr
    return outcome.stdout.strip()


def serve(database: Path) -> ServedProcess:
    """``inventory serve`` on the SQLite file ``database``, as a separate process."""
    return ServedProcess(database.parent, "--database", f"sqlite:///{database}")


def _checked(response: requests.Response) -> requests.Response:
    """``response``, once checked against openapi.yaml."""
    check_response(response)
    return response


def _contract_hook(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    check_response(response)


def drive(url: str, token: str, hot: list[str], stop: threading.Event, number: int) -> Ledger:
    """Creates and adjustments, one at a time, until ``stop`` or the server is gone."""
    ledger, rng = Ledger(), random.Random(number)
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {token}"
        session.hooks["response"].append(_contract_hook)
        for sequence in itertools.count():
            if stop.is_set():
                break
            if rng.random() < 0.5:
                name, qty = f"crash {number}-{sequence}", rng.randrange(1000)
                ledger.attempted_creates[name] = qty
                try:
                    answer = session.post(
                        f"{url}/items", json={"name": name, "qty": qty}, timeout=10
                    )
                except requests.RequestException:
                    ledger.interrupted = True
                    break
                if answer.status_code == 201:
                    ledger.acknowledged_creates.append(answer.json())
                    continue
            else:
                item_id, delta = rng.choice(hot), rng.randint(1, 9)
                try:
                    answer = session.post(
                        f"{url}/items/{item_id}/adjustments", json={"delta": delta}, timeout=10
                    )
                except requests.RequestException:
                    ledger.unacknowledged_deltas[item_id].append(delta)
                    ledger.interrupted = True
                    break
                if answer.status_code == 200:
                    ledger.acknowledged_deltas[item_id].append(delta)
                    continue
            ledger.unexpected.append(f"{answer.status_code} {answer.text}")
    return ledger


def assert_invariants(rows: list[dict[str, Any]]) -> None:
    """README's invariants on every row, and name keys unique per tenant."""
    for item in rows:
        name = item["name"]
        assert isinstance(name, str), item
        assert normalize_text(name) == name, item
        assert text_problem(name) is None, item
        assert item["name_key"] == name_key(name), item
        assert qty_problem(item["qty"]) is None, item
        assert type(item["version"]) is int, item
        assert item["version"] >= 1, item
        assert str(uuid.UUID(item["id"])) == item["id"], item
        assert TIMESTAMP.fullmatch(item["created_at"]), item
        assert TIMESTAMP.fullmatch(item["updated_at"]), item
        assert item["created_at"] <= item["updated_at"], item
    keys = Counter((item["tenant"], item["name_key"]) for item in rows)
    assert max(keys.values(), default=1) == 1, keys.most_common(3)


def integrity(database: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        return conn.execute("PRAGMA integrity_check").fetchall()


def some_subset_fits(deltas: list[int], count: int, total: int) -> bool:
    """Whether ``count`` of the unacknowledged ``deltas`` add up to ``total``."""
    return any(sum(chosen) == total for chosen in itertools.combinations(deltas, count))


@pytest.fixture
def services() -> Iterator[ExitStack]:
    """Every server the test starts (``enter_context``); each is stopped at the end."""
    with ExitStack() as stack:
        yield stack


def test_sigkill_mid_load_loses_no_acknowledged_write_and_leaves_no_half_write(
    tmp_path: Path, services: ExitStack
) -> None:
    database = tmp_path / "crash.db"
    token = create_key(database)
    first = services.enter_context(serve(database))
    url = first.url
    headers = {"Authorization": f"Bearer {token}"}
    hot = [
        _checked(
            requests.post(f"{url}/items", json={"name": f"hot {n}", "qty": 0}, headers=headers)
        ).json()
        for n in range(HOT_ITEMS)
    ]
    hot_ids = [item["id"] for item in hot]

    stop = threading.Event()
    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(drive, url, token, hot_ids, stop, n) for n in range(THREADS)]
        time.sleep(LOAD_SECONDS)
        first.kill()
        stop.set()
        ledgers = [future.result() for future in futures]

    restarted = services.enter_context(serve(database)).url
    assert [entry for ledger in ledgers for entry in ledger.unexpected] == []
    assert any(ledger.interrupted for ledger in ledgers), "the kill interrupted no request"
    acknowledged = [item for ledger in ledgers for item in ledger.acknowledged_creates]
    assert len(acknowledged) > 10, "too little load reached the server before the kill"

    assert integrity(database) == [("ok",)]
    rows = db.items(database)
    assert_invariants(rows)
    by_id = {item["id"]: item for item in rows}
    for item in acknowledged:  # created and never touched again: exactly as acknowledged
        stored = by_id.get(item["id"])
        assert stored is not None, f"acknowledged create lost: {item}"
        assert {k: stored[k] for k in item} == item
        assert stored["tenant"] == TENANT

    attempted = {name: qty for ledger in ledgers for name, qty in ledger.attempted_creates.items()}
    known = {item["id"] for item in acknowledged} | set(hot_ids)
    for extra in (item for item in rows if item["id"] not in known):  # answered lost in the kill
        assert extra["name"] in attempted, f"a row nobody sent: {extra}"
        assert (extra["qty"], extra["version"], extra["tenant"]) == (
            attempted[extra["name"]], 1, TENANT,
        )  # fmt: skip

    for item_id in hot_ids:
        acked = [d for ledger in ledgers for d in ledger.acknowledged_deltas[item_id]]
        lost = [d for ledger in ledgers for d in ledger.unacknowledged_deltas[item_id]]
        stored = by_id[item_id]
        assert sum(acked) <= stored["qty"] <= sum(acked) + sum(lost)
        applied_unacked = stored["version"] - 1 - len(acked)
        assert 0 <= applied_unacked <= len(lost), (stored, acked, lost)
        assert some_subset_fits(lost, applied_unacked, stored["qty"] - sum(acked)), (
            f"qty {stored['qty']} and version {stored['version']} are no set of whole"
            f" adjustments: acknowledged {acked}, unacknowledged {lost}"
        )

    for item in acknowledged[:20]:  # the restarted service serves what it recovered
        answer = _checked(
            requests.get(f"{restarted}/items/{item['id']}", headers=headers, timeout=10)
        )
        assert (answer.status_code, answer.json()) == (200, item)
    after = _checked(
        requests.post(
            f"{restarted}/items/{hot_ids[0]}/adjustments", json={"delta": 1}, headers=headers
        )
    )
    assert after.status_code == 200
    assert after.json()["version"] == by_id[hot_ids[0]]["version"] + 1
