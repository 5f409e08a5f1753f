"""The ledger across processes: the feed never skips, ``inventory check``, export and import.

The feed test runs the real console script (``inventory serve``; on PostgreSQL with two
workers) and drives it with concurrent writers while a follower resumes only from
``next_cursor``: what it receives must be exactly what a full walk of every item's history
yields, numbered 1..N. ``inventory check``, ``export`` and ``import`` run as subprocesses
on databases filled through a live server (``tests.support.server``) and altered behind
its back (``tests.support.db``).
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support import db
from tests.support.contract import ContractClient
from tests.support.db import Database, PostgresDatabase, url_of
from tests.support.processes import ServedProcess, run_inventory
from tests.support.server import LiveServer
from tests.system.test_workers import ServedWorkers, add_key, clients_on_every_worker

WRITERS = 8
WRITES_PER_WRITER = 60
SHARED_ITEMS = 4
TENANT = "acme"
LINE = re.compile(r"tenant '[^']+'(?:, item ([0-9a-f-]{36}))?: .+")


# --- helpers -------------------------------------------------------------------------


def ok(response: Any, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    body: dict[str, Any] = response.json() if response.content else {}
    return body


def history(client: ContractClient, item_id: str) -> list[dict[str, Any]]:
    """Every event of one item's history, following ``next_cursor`` (pages of 7)."""
    events: list[dict[str, Any]] = []
    after = "0"
    for _ in range(10_000):
        page = ok(client.get(f"/items/{item_id}/events?limit=7&after={after}", timeout=30), 200)
        events += page["events"]
        if page["next_cursor"] is None:
            return events
        after = page["next_cursor"]
    raise AssertionError("next_cursor never became null")


def without_tenant(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "tenant"} for row in rows]


@contextmanager
def served(backend: str, request: pytest.FixtureRequest, directory: Path) -> Iterator[
    tuple[Database, ServedProcess, list[ContractClient], str]
]:  # fmt: skip
    """``inventory serve`` on a new database of ``backend``: the database, the process,
    WRITERS writer clients (spread over both workers on PostgreSQL) and a reader key."""
    database: Database
    serve: ServedProcess
    if backend == "postgres":
        database = request.getfixturevalue("fresh_postgres")
        writer, reader = (
            add_key(url_of(database), TENANT, "writer"),
            add_key(url_of(database), TENANT, "reader"),
        )
        serve = ServedWorkers(url_of(database), directory)
    else:
        database = directory / "inventory.db"
        writer, reader = (
            add_key(url_of(database), TENANT, "writer"),
            add_key(url_of(database), TENANT, "reader"),
        )
        serve = ServedProcess(directory, "--database", url_of(database))
    with serve:
        if isinstance(serve, ServedWorkers):
            clients = clients_on_every_worker(serve, writer)
        else:
            clients = [ContractClient(serve.url, writer) for _ in range(WRITERS)]
        try:
            yield database, serve, clients, reader
        finally:
            for client in clients:
                client.close()
        assert "Traceback" not in serve.stderr(), serve.stderr()


def follow(
    client: ContractClient, writers_done: threading.Event, seconds: float
) -> tuple[list[dict[str, Any]], int]:
    """Follow the feed from the start, resuming only from ``next_cursor``, until an empty
    page asked for after the writers finished; what it received and how many requests."""
    received: list[dict[str, Any]] = []
    cursor, requests_made = "0", 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        finished = writers_done.is_set()
        page = ok(client.get(f"/events?after={cursor}&limit=50&wait=1", timeout=30), 200)
        requests_made += 1
        assert page["next_cursor"] is not None
        received += page["events"]
        cursor = page["next_cursor"]
        if finished and not page["events"]:
            return received, requests_made
    raise AssertionError(f"the follower did not catch up within {seconds} s")


# --- the feed never skips ------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_follower_resuming_from_next_cursor_receives_every_event_exactly_once(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """8 concurrent writers (on both workers, with PostgreSQL) and one follower: the feed
    it reads is exactly the union of every item's history, seq 1..N, none twice."""
    with served(backend, request, tmp_path) as (database, _serve, clients, reader_key):
        shared = [
            ok(clients[0].post("/items", json={"name": f"Shared {n}", "qty": 50}), 201)["id"]
            for n in range(SHARED_ITEMS)
        ]
        created: list[str] = list(shared)
        lock = threading.Lock()
        start = threading.Barrier(WRITERS + 1, timeout=30)
        writers_done = threading.Event()

        def write(index: int, client: ContractClient) -> Counter[int]:
            rng = random.Random(1000 + index)
            mine: list[str] = []
            statuses: Counter[int] = Counter()
            start.wait()
            for n in range(WRITES_PER_WRITER):
                choice = rng.random()
                if not mine or choice < 0.2:
                    body = {"name": f"w{index}-{n}", "qty": rng.randint(0, 30), "reason": "new"}
                    item = ok(client.post("/items", json=body, timeout=30), 201)
                    mine.append(item["id"])
                    with lock:
                        created.append(item["id"])
                    statuses[201] += 1
                    continue
                target = rng.choice(mine + shared)
                if choice < 0.55:
                    delta = rng.choice([-4, -3, -2, -1, 1, 2, 3, 5])
                    response = client.post(
                        f"/items/{target}/adjustments", json={"delta": delta}, timeout=30
                    )
                    ok(response, 200, 409)  # 409: it would go below zero
                elif choice < 0.8:
                    if target in mine and rng.random() < 0.5:
                        patch: dict[str, Any] = {"name": f"w{index}-{n}-renamed"}
                    else:
                        patch = {"qty": rng.randint(0, 60), "reason": "counted"}
                    # Half of them keyed: on PostgreSQL a keyed write is a transaction of
                    # several round trips, which takes its seq well before it commits; an
                    # unkeyed one is a single statement, out of order more rarely.
                    keyed = {"Idempotency-Key": f"w{index}-{n}"} if rng.random() < 0.5 else {}
                    response = client.patch(
                        f"/items/{target}", json=patch, headers=keyed, timeout=30
                    )
                    ok(response, 200)
                else:
                    victim = mine.pop(rng.randrange(len(mine)))
                    response = client.delete(
                        f"/items/{victim}", params={"reason": "gone"}, timeout=30
                    )
                    ok(response, 204)
                statuses[response.status_code] += 1
            return statuses

        with ContractClient(_serve.url, reader_key) as reader:
            with ThreadPoolExecutor(WRITERS + 1) as pool:
                follower = pool.submit(follow, reader, writers_done, 90)
                writers = [pool.submit(write, i, c) for i, c in enumerate(clients)]
                began = time.monotonic()
                start.wait()
                try:
                    statuses = sum((w.result(timeout=120) for w in writers), Counter[int]())
                finally:
                    writers_done.set()
                wrote_in = time.monotonic() - began
                received, polls = follower.result(timeout=120)

            walked = [event for item_id in created for event in history(reader, item_id)]
            current = {}
            for item_id in created:
                response = reader.get(f"/items/{item_id}", timeout=30)
                current[item_id] = ok(response, 200, 404).get("qty", 0)

    changes = statuses[200] + statuses[201] + statuses[204]
    print(
        f"\n{backend}: {WRITERS * WRITES_PER_WRITER} writes by {WRITERS} writers in "
        f"{wrote_in:.2f} s ({dict(statuses)}); the follower got {len(received)} events "
        f"in {polls} polls"
    )
    assert set(statuses) <= {200, 201, 204, 409}, statuses
    assert changes == WRITERS * WRITES_PER_WRITER - statuses[409]
    seqs = [e["seq"] for e in received]
    assert len(set(seqs)) == len(seqs), "an event was received twice"
    assert seqs == list(range(1, SHARED_ITEMS + changes + 1)), "the feed skipped or reordered"
    assert sorted(walked, key=lambda e: e["seq"]) == received, "history and feed disagree"
    assert received == without_tenant(db.events(database, TENANT))
    for item_id in created:
        versions = [e["version"] for e in received if e["item_id"] == item_id]
        assert versions == list(range(1, len(versions) + 1)), item_id
        deltas = [e["delta"] for e in received if e["item_id"] == item_id]
        assert sum(deltas) == current[item_id], item_id
    deleted = {e["item_id"] for e in received if e["type"] == "deleted"}
    assert deleted
    assert all(current[item_id] == 0 for item_id in deleted)
    assert deleted == set(created) - {row["id"] for row in db.items(database, TENANT)}
    check = run_inventory("check", "--database", url_of(database))
    assert (check.returncode, check.stdout) == (0, ""), check.stdout + check.stderr


# --- inventory check -----------------------------------------------------------------


def some_history(writer: ContractClient, other_tenant: ContractClient) -> dict[str, str]:
    """Creates, updates, adjustments and deletes in two tenants; ids by role."""
    bolt = ok(writer.post("/items", json={"name": "Bolt", "qty": 5, "reason": "in"}), 201)
    ok(writer.post(f"/items/{bolt['id']}/adjustments", json={"delta": 3}), 200)
    ok(writer.patch(f"/items/{bolt['id']}", json={"qty": 2, "reason": "counted"}), 200)
    nut = ok(writer.post("/items", json={"name": "Nut", "qty": 1}), 201)
    ok(writer.patch(f"/items/{nut['id']}", json={"name": "Hex nut"}), 200)
    gone = ok(writer.post("/items", json={"name": "Washer", "qty": 9}), 201)
    ok(writer.post(f"/items/{gone['id']}/adjustments", json={"delta": -4}), 200)
    ok(writer.delete(f"/items/{gone['id']}", params={"reason": "scrapped"}), 204)
    theirs = ok(other_tenant.post("/items", json={"name": "Bolt", "qty": 7}), 201)
    ok(other_tenant.post(f"/items/{theirs['id']}/adjustments", json={"delta": -7}), 200)
    return {"bolt": bolt["id"], "nut": nut["id"], "gone": gone["id"], "theirs": theirs["id"]}


def test_check_passes_silently_on_a_healthy_database(
    server: LiveServer, writer: ContractClient, other_tenant: ContractClient
) -> None:
    some_history(writer, other_tenant)

    outcome = run_inventory("check", "--database", url_of(server.database))

    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    assert outcome.stdout == ""
    assert "Traceback" not in outcome.stderr


ALTERATIONS = {
    # name: (SQL with {id}, which item it breaks, how many lines at most)
    "item-qty": ("UPDATE items SET qty = qty + 1 WHERE id = '{bolt}'", "bolt", 1),
    "item-version": ("UPDATE items SET version = version + 1 WHERE id = '{bolt}'", "bolt", 1),
    "item-name-nfd": ("UPDATE items SET name = 'Nute\u0301' WHERE id = '{nut}'", "nut", 1),
    "item-name-clash": ("UPDATE items SET name = 'BOLT' WHERE id = '{nut}'", "nut", 1),
    "item-row-deleted": ("DELETE FROM items WHERE id = '{nut}'", "nut", 1),
    "event-delta": (
        "UPDATE events SET delta = delta + 1 WHERE item_id = '{bolt}' AND version = 2", "bolt", 1),
    "event-qty": (
        "UPDATE events SET qty = qty + 1 WHERE item_id = '{nut}' AND version = 2", "nut", 1),
    "event-deleted": (
        "DELETE FROM events WHERE item_id = '{bolt}' AND version = 2", "bolt", 2),
    "delete-event-deleted": (
        "DELETE FROM events WHERE item_id = '{gone}' AND type = 'deleted'", "gone", 2),
    "deleted-delta": (
        "UPDATE events SET delta = delta - 1 WHERE item_id = '{gone}' AND type = 'deleted'",
        "gone", 1),
}  # fmt: skip


@pytest.mark.parametrize("alteration", ALTERATIONS, ids=list(ALTERATIONS))
def test_check_exits_1_naming_the_item_whose_row_was_altered_behind_the_services_back(
    server: LiveServer,
    writer: ContractClient,
    other_tenant: ContractClient,
    database: Database,
    alteration: str,
) -> None:
    ids = some_history(writer, other_tenant)
    sql, broken, most = ALTERATIONS[alteration]
    db.execute(database, sql.format(**ids))

    outcome = run_inventory("check", "--database", url_of(database))

    assert outcome.returncode == 1, outcome.stdout + outcome.stderr
    assert "Traceback" not in outcome.stdout + outcome.stderr
    lines = outcome.stdout.splitlines()
    assert 1 <= len(lines) <= most, lines
    assert all(LINE.fullmatch(line) for line in lines), lines
    named = {match.group(1) for line in lines if (match := LINE.fullmatch(line))} - {None}
    assert named == {ids[broken]}, lines
    assert any(ids[broken] in line and "'acme'" in line for line in lines)


# --- export and import carry the ledger ----------------------------------------------


def other_backend(source: Database, request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """An empty database of the backend ``source`` is not."""
    if isinstance(source, PostgresDatabase):
        return tmp_path / "imported.db"
    target: PostgresDatabase = request.getfixturevalue("fresh_postgres")
    return target


def without_migrations(snapshot: db.Snapshot) -> db.Snapshot:
    return {table: rows for table, rows in snapshot.items() if table != "schema_migrations"}


def test_export_then_import_into_the_other_backend_carries_every_event_and_the_feed_continues(
    server: LiveServer,
    writer: ContractClient,
    other_tenant: ContractClient,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    ids = some_history(writer, other_tenant)
    source = server.database
    target = other_backend(source, request, tmp_path)
    exported = run_inventory("export", "--database", url_of(source))
    assert exported.returncode == 0, exported.stderr
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    events = [r for r in records if r["type"] == "event"]
    assert len(events) == len(db.events(source)) == 10

    imported = run_inventory("import", "--database", url_of(target), stdin=exported.stdout)

    assert imported.returncode == 0, imported.stderr
    assert "10 events" in imported.stderr
    assert db.events(target) == db.events(source)
    assert without_migrations(db.snapshot(target)) == without_migrations(db.snapshot(source))
    check = run_inventory("check", "--database", url_of(target))
    assert (check.returncode, check.stdout) == (0, ""), check.stdout + check.stderr

    moved = LiveServer(target).start()
    try:
        with ContractClient(moved.url, moved.create_key("acme", "writer")) as client:
            assert history(client, ids["gone"])[-1]["type"] == "deleted"
            last = db.events(target, "acme")[-1]["seq"]
            ok(client.post(f"/items/{ids['bolt']}/adjustments", json={"delta": 1}), 200)
            page = ok(client.get(f"/events?after={last}"), 200)
    finally:
        moved.stop()
    [event] = page["events"]
    assert (event["seq"], event["item_id"], event["version"]) == (last + 1, ids["bolt"], 4)
    assert db.events(target, "acme")[-1]["seq"] == last + 1
    assert [e["seq"] for e in db.events(target, "globex")] == [1, 2]
    check = run_inventory("check", "--database", url_of(target))
    assert (check.returncode, check.stdout) == (0, ""), check.stdout + check.stderr


@pytest.mark.parametrize("alteration", ["delta-changed", "qty-changed", "event-dropped"])
def test_import_refuses_an_export_whose_event_was_altered_naming_the_item_and_writing_nothing(
    server: LiveServer,
    writer: ContractClient,
    other_tenant: ContractClient,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    alteration: str,
) -> None:
    ids = some_history(writer, other_tenant)
    target = other_backend(server.database, request, tmp_path)
    exported = run_inventory("export", "--database", url_of(server.database))
    assert exported.returncode == 0, exported.stderr
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    [place] = [
        n
        for n, r in enumerate(records)
        if r["type"] == "event"
        and r["event"]["item_id"] == ids["bolt"]
        and r["event"]["version"] == 2
    ]
    if alteration == "delta-changed":
        records[place]["event"]["delta"] += 1
    elif alteration == "qty-changed":
        records[place]["event"]["qty"] += 1
    else:  # dropped, and the end record's count made to fit, so that only the ledger tells
        del records[place]
        records[-1]["events"] -= 1
    migrated = run_inventory("migrate", "--database", url_of(target))
    assert migrated.returncode == 0, migrated.stderr
    before = db.snapshot(target)

    outcome = run_inventory(
        "import",
        "--database",
        url_of(target),
        stdin="".join(json.dumps(r) + "\n" for r in records),
    )

    assert outcome.returncode != 0
    assert ids["bolt"] in outcome.stderr, outcome.stderr
    assert "Traceback" not in outcome.stderr
    assert db.snapshot(target) == before
