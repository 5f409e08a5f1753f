"""Every item behaves as one copy changed one request at a time: its history is linearizable.

Eight clients, each on a keep-alive connection of its own, read, adjust and update three
items at random against the real ``inventory serve`` (on PostgreSQL with two workers, the
clients spread over both). Each call is stamped just before its request is sent and just
after its answer arrives (``time.monotonic``), and its answer kept: the status and the
``(qty, version)`` the item had afterwards. The checker (``tests.support.linearizability``)
must then find, for each item, a sequential order that respects those stamps and in which
every answer is the one the specification gives: a read sees the last write, an adjustment
is refused (409) exactly when it would leave ``[0, 2^53 - 1]`` (the quantities start at 3
and the deltas -3..3 but 0, so the bound is met often), an update with ``If-Match`` applies
exactly when the version matches (412 otherwise), and so does an adjustment with it (its
version is judged before its range). A 503 is an answer of unknown outcome.

A read cache of 20 ms in front of ``GET /items/{id}`` fails this test (the mutant
"reads are served from a 20 ms cache" in tests/stateful/test_mutations.py): a read made
after a write returned sees the state before it.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import db
from tests.support.contract import ContractClient
from tests.support.db import Database, url_of
from tests.support.linearizability import (
    UNKNOWN,
    Adjust,
    Answer,
    Call,
    Command,
    Get,
    State,
    Update,
    explain,
    linearize,
)
from tests.support.problems import OUT_OF_RANGE, PRECONDITION_FAILED, UNAVAILABLE, assert_problem
from tests.support.processes import ServedProcess, run_inventory
from tests.system.test_workers import ServedWorkers, clients_on_every_worker

TENANT = "acme"
CLIENTS = 8
CALLS_PER_CLIENT = 80
ITEMS = 3
START = State(qty=3, version=1)
DELTAS = (-3, -2, -1, 1, 2, 3)


@contextmanager
def served(
    backend: str, request: pytest.FixtureRequest, directory: Path
) -> Iterator[tuple[Database, list[ContractClient]]]:
    """``inventory serve`` on a new database of ``backend`` (two workers on PostgreSQL);
    the database and CLIENTS writer clients (on PostgreSQL, some on each worker)."""
    database: Database = (
        request.getfixturevalue("fresh_postgres")
        if backend == "postgres"
        else directory / "inventory.db"
    )
    made = run_inventory(
        "keys", "create", "--tenant", TENANT, "--role", "writer", "--database", url_of(database)
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    serve = (
        ServedWorkers(url_of(database), directory)
        if backend == "postgres"
        else ServedProcess(directory, "--database", url_of(database))
    )
    with serve:
        if isinstance(serve, ServedWorkers):
            clients = clients_on_every_worker(serve, token)
        else:
            clients = [ContractClient(serve.url, token) for _ in range(CLIENTS)]
        try:
            yield database, clients
        finally:
            for client in clients:
                client.close()
        assert "Traceback" not in serve.stderr(), serve.stderr()


# --- one call, stamped ---------------------------------------------------------------


def request_for(item_id: str, command: Command) -> tuple[str, str, Any, dict[str, str]]:
    """Method, path, JSON body and headers of ``command`` on item ``item_id``."""
    if isinstance(command, Get):
        return "GET", f"/items/{item_id}", None, {}
    headers = {} if command.if_match is None else {"If-Match": f'"{command.if_match}"'}
    if isinstance(command, Adjust):
        return "POST", f"/items/{item_id}/adjustments", {"delta": command.delta}, headers
    return "PATCH", f"/items/{item_id}", {"qty": command.qty}, headers


def answer_of(response: requests.Response, item_id: str, command: Command) -> Answer | None:
    """What ``response`` says happened; None for a 503 (the outcome is not known)."""
    if response.status_code == 200:
        item = response.json()
        assert item["id"] == item_id
        assert response.headers["ETag"] == f'"{item["version"]}"'
        return Answer(200, State(item["qty"], item["version"]))
    if response.status_code == 409 and isinstance(command, Adjust):
        assert_problem(response, 409, OUT_OF_RANGE)
        return Answer(409)
    if response.status_code == 412 and not isinstance(command, Get) and command.if_match:
        assert_problem(response, 412, PRECONDITION_FAILED)
        return Answer(412)
    assert_problem(response, 503, UNAVAILABLE)
    return None


def timed_call(client: ContractClient, item_id: str, command: Command, who: int) -> Call:
    """``command`` sent by ``client``, stamped right before sending and right after the
    answer arrived (in a response hook: before the contract check reads the body)."""
    method, path, body, headers = request_for(item_id, command)
    arrived: list[float] = []

    def stamp(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        arrived.append(time.monotonic())

    invoked = time.monotonic()
    response = client.request(
        method, path, json=body, headers=headers, timeout=30, hooks={"response": stamp}
    )
    answer = answer_of(response, item_id, command)
    return Call(command, invoked, arrived[0] if answer is not None else UNKNOWN, answer, who)


# --- the clients ---------------------------------------------------------------------


def step(rng: random.Random, client: ContractClient, item_id: str, who: int) -> list[Call]:
    """A read, an adjustment, an update, or a conditional write: a read and then an update
    or an adjustment with ``If-Match`` of the version read (another client may change the
    item in between)."""
    roll = rng.random()
    if roll < 0.4:
        return [timed_call(client, item_id, Get(), who)]
    if roll < 0.75:
        return [timed_call(client, item_id, Adjust(rng.choice(DELTAS)), who)]
    if roll < 0.875:
        return [timed_call(client, item_id, Update(rng.randint(0, 6)), who)]
    read = timed_call(client, item_id, Get(), who)
    if read.answer is None or read.answer.state is None:
        return [read]
    version = read.answer.state.version
    if rng.random() < 0.5:
        write: Command = Update(rng.randint(0, 6), if_match=version)
    else:
        write = Adjust(rng.choice(DELTAS), if_match=version)
    return [read, timed_call(client, item_id, write, who)]


def drive(
    who: int, client: ContractClient, items: list[str], start: threading.Barrier
) -> list[tuple[str, Call]]:
    """About CALLS_PER_CLIENT random calls on random items, one after another; each with
    its item."""
    rng = random.Random(16_000 + who)
    calls: list[tuple[str, Call]] = []
    start.wait()
    while len(calls) < CALLS_PER_CLIENT:
        item_id = rng.choice(items)
        calls += [(item_id, call) for call in step(rng, client, item_id, who)]
    return calls


def kind(call: Call) -> str:
    command = call.command
    if isinstance(command, Get):
        return "get"
    name = "update" if isinstance(command, Update) else "adjust"
    return name if command.if_match is None else f"{name} if-match"


# --- the test ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_concurrent_reads_and_writes_of_each_item_have_a_legal_sequential_order(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with served(backend, request, tmp_path) as (database, clients):
        items = []
        for n in range(ITEMS):
            created = clients[0].post("/items", json={"name": f"Item {n}", "qty": START.qty})
            assert created.status_code == 201, created.text
            assert created.json()["version"] == START.version
            items.append(created.json()["id"])
        start = threading.Barrier(CLIENTS, timeout=30)
        began = time.monotonic()
        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = [pool.submit(drive, who, c, items, start) for who, c in enumerate(clients)]
            recorded = [pair for future in futures for pair in future.result(timeout=120)]
        ran_for = time.monotonic() - began
        last_reads = [timed_call(clients[0], item_id, Get(), CLIENTS) for item_id in items]
    stored = {row["id"]: State(row["qty"], row["version"]) for row in db.items(database, TENANT)}

    outcomes = Counter(
        (kind(c), c.answer.status if c.answer is not None else 503) for _, c in recorded
    )
    print(f"\n{backend}: {len(recorded)} calls in {ran_for:.2f} s: {sorted(outcomes.items())}")
    for item_id, last_read in zip(items, last_reads, strict=True):
        history = [c for i, c in recorded if i == item_id] + [last_read]
        checked = time.monotonic()
        verdict = linearize(START, history)
        print(
            f"item {item_id}: {len(history)} calls, {verdict.explored} states searched in "
            f"{time.monotonic() - checked:.2f} s"
        )
        assert verdict.linearizable, explain(START, history, verdict)
        assert last_read.answer == Answer(200, stored[item_id])  # and the database agrees
    # The histories met every rule: the range's bound, a current and a stale If-Match.
    met = [
        ("adjust", 200), ("adjust", 409), ("update if-match", 200), ("update if-match", 412),
        ("adjust if-match", 200), ("adjust if-match", 412),
    ]  # fmt: skip
    for outcome in met:
        assert outcomes[outcome], f"no {outcome} in {outcomes}"
