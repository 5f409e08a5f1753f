"""Idempotent retries against the real ``inventory serve`` (openapi.yaml, "Idempotent retries").

What a client that retries meets in production, made for real with the console script in
subprocesses (``tests.support.processes``), on a SQLite file and on a PostgreSQL database of
the test's own: twenty copies of one keyed write sent at the same moment (on PostgreSQL to
two workers); a retry after the server was stopped and started again; a retry after the
server was killed with SIGKILL once it had committed a write but before the client read the
answer; a key kept ``--idempotency-ttl`` seconds, then new again and purged; and the
mistakes of that flag. Each test reads the rows behind the service's back
(``tests.support.db``): whatever the answers, the write happened exactly once.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import db
from tests.support.contract import ContractClient
from tests.support.db import Database, url_of
from tests.support.problems import OUT_OF_RANGE, PREFIX, assert_problem
from tests.support.processes import ServedProcess, run_inventory
from tests.system.test_workers import ServedWorkers, wait_until, workers_of_my_connections

TENANT = "retries"
STORM = 20
IN_FLIGHT = PREFIX + "idempotency-in-flight"
REPLAYED = "Idempotent-Replayed"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database of each backend, of this test's own: in place of conftest's shared
    PostgreSQL database, one that servers killed mid-write leave to no other test (dropped)."""
    if request.param == "sqlite":
        yield tmp_path / "inventory.db"
        return
    yield request.getfixturevalue("fresh_postgres")


def writer_key(database: Database) -> str:
    """A writer key of ``TENANT``, made with the CLI before any server starts."""
    outcome = run_inventory(
        "keys", "create", "--tenant", TENANT, "--role", "writer", "--database", url_of(database)
    )
    assert outcome.returncode == 0, outcome.stderr
    return outcome.stdout.strip()


def serve(database: Database, cwd: Path, *flags: str) -> ServedProcess:
    """``inventory serve`` (one process) on ``database``."""
    return ServedProcess(cwd, "--database", url_of(database), *flags)


def state(database: Database) -> dict[str, list[Any]]:
    """Every row of every table, the stored answers included."""
    return {**db.snapshot(database), "idempotency": db.answers(database)}


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def assert_replay(first: requests.Response, again: requests.Response) -> None:
    """``again`` is ``first`` sent again as stored, marked as a replay."""
    assert REPLAYED not in first.headers
    assert again.headers.get(REPLAYED) == "true", (again.status_code, again.text)
    assert (again.status_code, again.content) == (first.status_code, first.content)
    for name in ("Location", "ETag", "Content-Type"):
        assert again.headers.get(name) == first.headers.get(name), name


# --- (a) a storm of retries -----------------------------------------------------------


def connected(url: str, token: str, count: int) -> list[ContractClient]:
    """``count`` clients, each with a connection of its own already open."""
    clients = [ContractClient(url, token) for _ in range(count)]
    for client in clients:
        assert client.get("/healthz", timeout=10).status_code == 200
    return clients


def storm(
    clients: list[ContractClient], send: Callable[[ContractClient], requests.Response]
) -> list[requests.Response]:
    """``send`` by every client on a thread of its own, released at the same moment."""
    start = threading.Barrier(len(clients), timeout=30)

    def one(client: ContractClient) -> requests.Response:
        start.wait()
        return send(client)

    with ThreadPoolExecutor(len(clients)) as pool:
        return list(pool.map(one, clients))


def the_one_answer(answers: list[requests.Response], status: int) -> requests.Response:
    """Assert that every answer is the first request's (sent once as it ran, else replayed)
    or a 409 ``idempotency-in-flight``; the first request's answer."""
    assert set(Counter(a.status_code for a in answers)) <= {status, 409}, [
        (a.status_code, a.text) for a in answers
    ]
    for busy in (a for a in answers if a.status_code == 409):
        assert_problem(busy, 409, IN_FLIGHT)
        assert busy.headers["Retry-After"].isdigit()
    done = [a for a in answers if a.status_code == status]
    [first] = [a for a in done if REPLAYED not in a.headers]
    for again in done:
        if again is not first:
            assert_replay(first, again)
    return first


def test_a_storm_of_one_keyed_write_changes_the_state_once(
    database: Database, tmp_path: Path
) -> None:
    token = writer_key(database)
    postgres = not isinstance(database, Path)
    server = ServedWorkers(url_of(database), tmp_path) if postgres else serve(database, tmp_path)
    with server:
        clients = connected(server.url, token, STORM)
        try:
            if isinstance(server, ServedWorkers):  # the storm reaches both workers
                spread = workers_of_my_connections(server.port, server.workers)
                assert all(spread[w] >= 1 for w in server.workers), spread
            created = storm(
                clients,
                lambda c: c.post(
                    "/items", json={"name": "Bolt", "qty": 100}, headers=keyed("c"), timeout=30
                ),
            )
            first_create = the_one_answer(created, 201)
            item_id = first_create.json()["id"]
            adjusted = storm(
                clients,
                lambda c: c.post(
                    f"/items/{item_id}/adjustments",
                    json={"delta": -1},
                    headers=keyed("a"),
                    timeout=30,
                ),
            )
            first_adjust = the_one_answer(adjusted, 200)
            create_again = clients[0].post(
                "/items", json={"name": "Bolt", "qty": 100}, headers=keyed("c")
            )
            adjust_again = clients[1].post(
                f"/items/{item_id}/adjustments", json={"delta": -1}, headers=keyed("a")
            )
        finally:
            for client in clients:
                client.close()

    assert_replay(first_create, create_again)
    assert_replay(first_adjust, adjust_again)
    if not postgres:  # one writer: each request runs after the one before, so each replays
        assert [a.status_code for a in created + adjusted] == [201] * STORM + [200] * STORM
    [row] = db.items(database, TENANT)
    assert (row["id"], row["qty"], row["version"]) == (item_id, 99, 2)
    assert first_adjust.json() == {k: row[k] for k in first_adjust.json()}
    assert [e["type"] for e in db.events(database, TENANT)] == ["created", "adjusted"]
    assert [(a["key"], a["status"]) for a in db.answers(database, TENANT)] == [
        ("a", 200), ("c", 201),
    ]  # fmt: skip


# --- (b) a restart, (c) SIGKILL after the commit ---------------------------------------


def test_a_retry_after_a_restart_replays_what_the_first_server_answered(
    database: Database, tmp_path: Path
) -> None:
    token = writer_key(database)
    with serve(database, tmp_path) as first, ContractClient(first.url, token) as client:
        created = client.post("/items", json={"name": "Bolt", "qty": 5}, headers=keyed("c"))
        path = f"/items/{created.json()['id']}"
        sold = client.post(f"{path}/adjustments", json={"delta": -2}, headers=keyed("s"))
        oversold = client.post(f"{path}/adjustments", json={"delta": -9}, headers=keyed("o"))
        assert first.terminate() == 0, first.stderr()
    before = state(database)

    with serve(database, tmp_path) as again, ContractClient(again.url, token) as client:
        created_again = client.post("/items", json={"name": "Bolt", "qty": 5}, headers=keyed("c"))
        sold_again = client.post(f"{path}/adjustments", json={"delta": -2}, headers=keyed("s"))
        oversold_again = client.post(f"{path}/adjustments", json={"delta": -9}, headers=keyed("o"))

    assert (created.status_code, sold.status_code) == (201, 200)
    assert_problem(oversold, 409, OUT_OF_RANGE)
    assert_replay(created, created_again)
    assert_replay(sold, sold_again)
    assert_replay(oversold, oversold_again)
    assert state(database) == before
    [row] = db.items(database, TENANT)
    assert (row["qty"], row["version"]) == (3, 2)
    assert "Traceback" not in again.stderr()


def send_unread(port: int, token: str, path: str, body: dict[str, Any], key: str) -> socket.socket:
    """``POST path`` with ``body`` under ``key`` on a raw socket; the socket, whose answer is
    never read (a client that lost it)."""
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nIdempotency-Key: {key}\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection.sendall(head.encode() + payload)
    return connection


def test_a_retry_after_sigkill_between_commit_and_answer_replays_and_adjusts_once(
    database: Database, tmp_path: Path
) -> None:
    token = writer_key(database)
    with serve(database, tmp_path) as first, ContractClient(first.url, token) as client:
        item = client.post("/items", json={"name": "Bolt", "qty": 10}).json()
        path = f"/items/{item['id']}/adjustments"
        with closing(send_unread(first.port, token, path, {"delta": -3}, '"lost-answer"')):
            wait_until(lambda: db.answers(database, TENANT), 10, "the answer is stored")
            first.kill()  # SIGKILL to the whole process group
    assert first.process.returncode < 0, "the server was killed, it did not exit"

    with serve(database, tmp_path) as again, ContractClient(again.url, token) as client:
        retried = client.post(path, json={"delta": -3}, headers=keyed("lost-answer"))
        current = client.get(f"/items/{item['id']}")

    assert retried.status_code == 200, retried.text
    assert retried.headers[REPLAYED] == "true"
    assert retried.content == current.content
    assert retried.headers["ETag"] == current.headers["ETag"] == '"2"'
    [row] = db.items(database, TENANT)
    assert (row["qty"], row["version"]) == (7, 2)
    events = db.events(database, TENANT)
    assert [(e["type"], e["delta"]) for e in events] == [("created", 10), ("adjusted", -3)]
    [answer] = db.answers(database, TENANT)
    assert (answer["key"], answer["status"]) == ("lost-answer", 200)
    assert answer["body"] == retried.content


# --- (d) retention, (e) its mistakes ----------------------------------------------------


def test_a_key_older_than_the_ttl_is_new_again_and_its_record_is_purged(
    database: Database, tmp_path: Path
) -> None:
    token = writer_key(database)
    with (
        serve(database, tmp_path, "--idempotency-ttl", "1") as server,
        ContractClient(server.url, token) as client,
    ):
        apple = client.post("/items", json={"name": "apple", "qty": 1}, headers=keyed("daily"))
        sent = time.monotonic()
        [kept] = db.answers(database, TENANT)
        time.sleep(max(0.0, sent + 1.5 - time.monotonic()))  # past the 1 s it is kept
        pear = client.post("/items", json={"name": "pear", "qty": 2}, headers=keyed("daily"))
        wait_until(lambda: not db.answers(database, TENANT), 10, "the expired record is purged")

    assert (apple.status_code, kept["key"], kept["body"]) == (201, "daily", apple.content)
    assert pear.status_code == 201, pear.text  # neither 422 nor apple's answer replayed
    assert REPLAYED not in pear.headers
    assert [r["name"] for r in db.items(database, TENANT)] == ["apple", "pear"]
    assert [e["type"] for e in db.events(database, TENANT)] == ["created", "created"]
    assert "Traceback" not in server.stderr()


@pytest.mark.parametrize(
    ("arguments", "environment", "named"),
    [
        (["--idempotency-ttl", "0"], {}, "--idempotency-ttl='0'"),
        (["--idempotency-ttl", "abc"], {}, "--idempotency-ttl='abc'"),
        (["--idempotency-ttl", "2592001"], {}, "--idempotency-ttl='2592001'"),
        ([], {"INVENTORY_IDEMPOTENCY_TTL": "abc"}, "INVENTORY_IDEMPOTENCY_TTL='abc'"),
    ],
    ids=["zero", "not-a-number", "over-30-days", "environment"],
)
def test_a_bad_idempotency_ttl_is_one_line_naming_it_and_nothing_is_written(
    tmp_path: Path, arguments: list[str], environment: dict[str, str], named: str
) -> None:
    started = time.monotonic()
    outcome: subprocess.CompletedProcess[str] = run_inventory(
        "serve", "--port", "0", "--database", "sqlite:///inventory.db", *arguments,
        cwd=tmp_path, env=environment, timeout=30,
    )  # fmt: skip

    assert outcome.returncode != 0
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert outcome.stderr.count("\n") == 1, outcome.stderr
    assert outcome.stderr.startswith(f"inventory: {named}"), outcome.stderr
    assert time.monotonic() - started < 10
    assert list(tmp_path.iterdir()) == []
