"""Concurrent batches (``POST /batch``) against the real server: no unit lost, no 5xx.

Every test runs the real console script (``inventory serve``; on PostgreSQL with two
workers, ``tests.system.test_workers.ServedWorkers``) over a database made for it alone,
drives it with concurrent clients, and then reads the database behind the service's back
(``tests.support.db``) and runs ``inventory check`` on it: the units moved around add up,
no quantity went negative, every applied batch left exactly its events (one per operation,
its batch id, consecutive seqs) and every refused one none, and every item's ledger sums
to its quantity. Each run is bounded (DEADLINE, and 30 s per answer) and prints how it went.

The served processes import the code the tests import: ``tests.support.processes`` passes
the test run's environment (``PYTHONPATH`` included) to ``inventory serve``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import db
from tests.support.contract import ContractClient
from tests.support.db import Database, PostgresDatabase, url_of
from tests.support.problems import NAME_TAKEN, OUT_OF_RANGE
from tests.support.processes import ServedProcess, run_inventory
from tests.system.test_workers import (
    CLIENTS,
    ServedWorkers,
    add_key,
    clients_on_every_worker,
    close_all,
    in_parallel,
)

TENANT = "acme"
BINS = 4
# Few units per bin, so that sources do run empty under 800 random moves: refused batches
# (whose +1 may already have applied when the -1 is refused) then race applied ones.
UNITS = 10
BATCHES_PER_CLIENT = 100
DEADLINE = 60.0  # seconds for a run (a few pass): one this slow fails instead of hanging
ANSWER_SECONDS = 10.0  # the most one batch may take: the 3 s wait budget, and then some
NO_ANSWER = 0  # the status recorded for a batch not answered within 30 s


@dataclass(frozen=True)
class Sent:
    """One batch a client sent (its ``number``-th), and what it was answered."""

    number: int
    operations: list[dict[str, Any]]
    reason: str
    status: int
    body: dict[str, Any]
    seconds: float


# --- helpers -------------------------------------------------------------------------


@contextmanager
def served(
    backend: str, request: pytest.FixtureRequest, directory: Path
) -> Iterator[tuple[Database, ServedProcess, list[ContractClient]]]:
    """``inventory serve`` on a new database of ``backend`` (two workers on PostgreSQL):
    the database, the process and CLIENTS writer clients (spread over both workers)."""
    database: Database
    serve: ServedProcess
    if backend == "postgres":
        database = request.getfixturevalue("fresh_postgres")
        serve = ServedWorkers(url_of(database), directory)
    else:
        database = directory / "inventory.db"
        serve = ServedProcess(directory, "--database", url_of(database))
    writer = add_key(url_of(database), TENANT, "writer")
    with serve:
        if isinstance(serve, ServedWorkers):
            clients = clients_on_every_worker(serve, writer)
        else:
            clients = [ContractClient(serve.url, writer) for _ in range(CLIENTS)]
        try:
            yield database, serve, clients
        finally:
            close_all(clients)
        assert "Traceback" not in serve.stderr(), serve.stderr()


def make_items(client: ContractClient, count: int, qty: int) -> list[str]:
    ids = []
    for n in range(count):
        response = client.post("/items", json={"name": f"Bin {n}", "qty": qty}, timeout=30)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def run_clients(
    clients: list[ContractClient],
    batches: Callable[[int], list[list[dict[str, Any]]]],
    in_step: bool = False,
) -> tuple[list[Sent], float]:
    """Each client sends its ``batches(index)`` one after another, all clients at once
    (``in_step``: each batch at the same moment as the others' of the same number), until
    DEADLINE; every batch sent with its answer, and the seconds it took."""
    step = threading.Barrier(len(clients), timeout=30)
    deadline = time.monotonic() + DEADLINE

    def work(index: int, client: ContractClient) -> list[Sent]:
        mine = batches(index)
        sent: list[Sent] = []
        for number, operations in enumerate(mine):
            if time.monotonic() > deadline:
                step.abort()  # the others stop at their next step too
                break
            if number == 0 or in_step:
                try:
                    step.wait()
                except threading.BrokenBarrierError:
                    break
            reason = f"by client {index}"
            body = {"operations": operations, "reason": reason}
            began = time.monotonic()
            try:
                response = client.post("/batch", json=body, timeout=30)
                status, answer = response.status_code, response.json()
            except requests.Timeout:
                status, answer = NO_ANSWER, {}
            took = time.monotonic() - began
            sent.append(Sent(number, operations, reason, status, answer, took))
        return sent

    began = time.monotonic()
    outcomes = [sent for mine in in_parallel(clients, work) for sent in mine]
    return outcomes, time.monotonic() - began


def summary(what: str, sent: list[Sent], elapsed: float) -> str:
    """A line on how a run went: how many, how fast, which statuses, the slowest answer."""
    statuses = dict(Counter(s.status for s in sent))
    slowest = max((s.seconds for s in sent), default=0.0)
    return (
        f"\n{what}: {len(sent)} batches in {elapsed:.2f} s ({len(sent) / elapsed:.0f}/s),"
        f" statuses {statuses}, slowest answer {slowest:.2f} s"
    )


def transfer(source: str, target: str, rng: random.Random) -> list[dict[str, Any]]:
    """A batch moving one unit from ``source`` to ``target``, its two operations in a
    random order (so that concurrent batches meet their items in either order)."""
    operations = [
        {"op": "adjust", "item_id": source, "delta": -1},
        {"op": "adjust", "item_id": target, "delta": 1},
    ]
    rng.shuffle(operations)
    return operations


def assert_ledger_matches(database: Database, sent: list[Sent], items: list[str]) -> None:
    """Every applied batch left exactly its own events (one per operation, in order, with
    consecutive seqs and its results' quantities); refused ones left none; and every item's
    events, in version order, step from one quantity to the next and sum to its qty."""
    stored = {row["id"]: row for row in db.items(database, TENANT)}
    assert set(stored) == set(items)
    events = db.events(database, TENANT)
    by_batch: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event["batch_id"] is not None:
            by_batch[event["batch_id"]].append(event)
    applied = [s for s in sent if s.status == 200]
    assert set(by_batch) == {s.body["batch_id"] for s in applied}
    assert len(by_batch) == len(applied), "two batches answered the same batch_id"
    for s in applied:
        mine = by_batch[s.body["batch_id"]]
        assert [(e["item_id"], e["delta"]) for e in mine] == [
            (result["id"], op["qty"] if op["op"] == "create" else op["delta"])
            for op, result in zip(s.operations, s.body["results"], strict=True)
        ]
        first = mine[0]["seq"]
        assert [e["seq"] for e in mine] == list(range(first, first + len(mine)))
        assert [(e["qty"], e["version"]) for e in mine] == [
            (r["qty"], r["version"]) for r in s.body["results"]
        ]
        assert {e["reason"] for e in mine} == {s.reason}
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    for item_id, row in stored.items():
        history = sorted((e for e in events if e["item_id"] == item_id), key=lambda e: e["version"])
        assert [e["version"] for e in history] == list(range(1, row["version"] + 1)), item_id
        qty = 0
        for event in history:
            qty += event["delta"]
            assert event["qty"] == qty, (item_id, event)
        assert qty == row["qty"], item_id
    check = run_inventory("check", "--database", url_of(database))
    assert (check.returncode, check.stdout) == (0, ""), check.stdout + check.stderr


# --- tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_concurrent_transfers_between_four_items_keep_the_total_and_lose_no_event(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """8 clients each send 100 batches moving one unit between a random pair of four
    items: the total never changes, no quantity goes negative, and the only refusal is a
    409 for an empty source (named at its -1 operation); never a 5xx."""
    with served(backend, request, tmp_path) as (database, serve, clients):
        bins = make_items(clients[0], BINS, UNITS)

        def batches(index: int) -> list[list[dict[str, Any]]]:
            rng = random.Random(7000 + index)
            pairs = [rng.sample(bins, 2) for _ in range(BATCHES_PER_CLIENT)]
            return [transfer(source, target, rng) for source, target in pairs]

        sent, elapsed = run_clients(clients, batches)
        broken = serve.stderr().count("deadlock broken by the database")

    statuses = Counter(s.status for s in sent)
    print(summary(f"{backend}, transfers", sent, elapsed) + f", deadlocks broken {broken}")
    assert len(sent) == CLIENTS * BATCHES_PER_CLIENT, f"{dict(statuses)} by the deadline"
    assert set(statuses) <= {200, 409}, statuses  # in particular: no 5xx
    assert max(s.seconds for s in sent) < ANSWER_SECONDS
    for s in sent:
        if s.status == 409:
            source = next(i for i, op in enumerate(s.operations) if op["delta"] == -1)
            assert s.body["type"] == OUT_OF_RANGE, s.body
            assert s.body["operation"] == source, s.body
            assert [e["field"] for e in s.body["errors"]] == [f"/operations/{source}/delta"]
    quantities = [row["qty"] for row in db.items(database, TENANT)]
    assert sum(quantities) == BINS * UNITS
    assert min(quantities) >= 0
    assert broken == 0, "transfers deadlocked (and were written again)"
    assert_ledger_matches(database, sent, bins)


def test_batches_over_the_same_items_in_opposite_orders_never_deadlock_into_an_error(
    fresh_postgres: PostgresDatabase, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """On PostgreSQL with two workers, half the clients adjust A then B and the other half
    B then A, all at once: every batch applies (the items are locked in id order, so the
    database never even has a deadlock to break), and no unit is lost."""
    rounds = 40
    with served("postgres", request, tmp_path) as (database, serve, clients):
        a, b = make_items(clients[0], 2, 1000)

        def batches(index: int) -> list[list[dict[str, Any]]]:
            rng = random.Random(9000 + index)
            first, second = (a, b) if index % 2 == 0 else (b, a)
            batches = []
            for _ in range(rounds):
                delta = rng.choice((-1, 1))
                batches.append(
                    [
                        {"op": "adjust", "item_id": first, "delta": delta},
                        {"op": "adjust", "item_id": second, "delta": -delta},
                    ]
                )
            return batches

        sent, elapsed = run_clients(clients, batches)
        log = serve.stderr()

    statuses = Counter(s.status for s in sent)
    broken = log.count("deadlock broken by the database")
    print(summary("postgres, opposite orders", sent, elapsed) + f", deadlocks broken {broken}")
    assert len(sent) == CLIENTS * rounds, f"{dict(statuses)} by the deadline"
    assert statuses == {200: CLIENTS * rounds}, statuses
    assert max(s.seconds for s in sent) < ANSWER_SECONDS
    assert broken == 0, "batches over the same items deadlocked (and were written again)"
    assert sum(row["qty"] for row in db.items(database, TENANT)) == 2000
    assert_ledger_matches(database, sent, [a, b])


NAMES_PER_BATCH = 3
NAME_ROUNDS = 8


class AnsweredUnavailable(AssertionError):
    """A batch was answered 503, not answered, or answered after ANSWER_SECONDS, where
    a 200 or a 409 was due."""


def race_for_names(clients: list[ContractClient]) -> tuple[list[Sent], float]:
    """In each of NAME_ROUNDS rounds, every client at the same moment sends a batch creating
    the round's NAMES_PER_BATCH names, in an order and a letter case of its own."""

    def batches(index: int) -> list[list[dict[str, Any]]]:
        rng = random.Random(5000 + index)
        rounds = []
        for number in range(NAME_ROUNDS):
            names = [f"Part {number}-{k}" for k in range(NAMES_PER_BATCH)]
            rng.shuffle(names)
            spelled = [name.upper() if index % 2 else name.lower() for name in names]
            rounds.append([{"op": "create", "name": name, "qty": index} for name in spelled])
        return rounds

    return run_clients(clients, batches, in_step=True)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_concurrent_batches_creating_the_same_names_make_each_name_once_and_refuse_the_rest(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Batches that create the same names in different orders and letter cases, sent at
    the same moment: in each round one applies whole, the others are 409 at a name, and the
    names exist once, as the winner made them. The state is checked first; a 503 or a slow
    answer fails the test after that (``AnsweredUnavailable``, expected on PostgreSQL)."""
    with served(backend, request, tmp_path) as (database, _serve, clients):
        sent, elapsed = race_for_names(clients)

    statuses = Counter(s.status for s in sent)
    print(summary(f"{backend}, racing names", sent, elapsed))
    # A batch unanswered, or a round unsent: what applied is unknown; only slowness is sure.
    if NO_ANSWER in statuses or len(sent) < CLIENTS * NAME_ROUNDS:
        raise AnsweredUnavailable(f"{dict(statuses)} by the deadline")
    assert set(statuses) <= {200, 409, 503}, statuses
    winners = []
    for number in range(NAME_ROUNDS):
        this_round = [s for s in sent if s.number == number]
        applied = [s for s in this_round if s.status == 200]
        assert len(applied) <= 1, (number, applied)
        for s in this_round:
            if s.status == 409:
                assert s.body["type"] == NAME_TAKEN, s.body
                assert s.body["errors"][0]["field"].endswith("/name"), s.body
                assert len(applied) == 1, "refused for a name that no batch took"
        winners += applied
    created = {item["id"]: item for s in winners for item in s.body["results"]}
    stored = {row["id"]: row for row in db.items(database, TENANT)}
    assert set(stored) == set(created)
    for item_id, item in created.items():
        assert (stored[item_id]["name"], stored[item_id]["qty"]) == (item["name"], item["qty"])
    assert_ledger_matches(database, sent, list(created))
    late = [s for s in sent if s.status == 503 or s.seconds >= ANSWER_SECONDS]
    if late:
        raise AnsweredUnavailable(f"{len(late)} answered 503 or late: {dict(statuses)}")
    assert len(winners) == NAME_ROUNDS
