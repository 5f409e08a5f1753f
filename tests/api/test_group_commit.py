"""Correctness under batching: each request of a burst gets the answer it would get alone.

SQLite applies concurrent writes in one transaction, one SAVEPOINT per request (README,
"Architecture", group commit); PostgreSQL runs them as concurrent transactions. Either way
a burst must behave as if its requests ran one after another in some order: a rejected
request rolls back alone and never poisons its neighbours, and the database holds exactly
the accepted writes.

Bursts are fired from one asyncio loop over one connection per request, so they reach
the server together. On SQLite the ``batches`` fixture records the size of every batch
the store commits, and each test checks that its burst really shared a transaction with
another request; otherwise it would prove nothing about batching.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from service.store import sqlite as sqlite_store
from tests.support import db
from tests.support.contract import check_exchange
from tests.support.db import Database
from tests.support.problems import PREFIX
from tests.support.server import LiveServer

Outcome = tuple[int, Any]  # (status, decoded JSON body or None)


@dataclass(frozen=True)
class Call:
    """One HTTP request of a burst."""

    method: str
    path: str
    body: Any = None
    raw: bytes | None = None  # sent as is (application/json) instead of ``body``
    headers: dict[str, str] = field(default_factory=dict)


def create(name: Any, qty: Any = 1) -> Call:
    return Call("POST", "/items", {"name": name, "qty": qty})


def adjust(item_id: str, delta: int) -> Call:
    return Call("POST", f"/items/{item_id}/adjustments", {"delta": delta})


def patch(item_id: str, changes: dict[str, Any], if_match: str | None = None) -> Call:
    headers = {} if if_match is None else {"If-Match": if_match}
    return Call("PATCH", f"/items/{item_id}", changes, headers=headers)


async def _send(session: aiohttp.ClientSession, call: Call) -> Outcome:
    if call.raw is None:
        request = session.request(call.method, call.path, json=call.body, headers=call.headers)
    else:
        headers = {"Content-Type": "application/json", **call.headers}
        request = session.request(call.method, call.path, data=call.raw, headers=headers)
    async with request as answer:
        content = await answer.read()
        check_exchange(call.method, answer.url.path, answer.status, answer.headers, content)
        return answer.status, json.loads(content) if content else None


async def _burst(url: str, token: str, calls: list[Call]) -> list[Outcome]:
    connector = aiohttp.TCPConnector(limit=0, force_close=True)  # one connection per call
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(url, headers=headers, connector=connector) as session:
        return list(await asyncio.gather(*(_send(session, call) for call in calls)))


def burst(server: LiveServer, token: str, calls: list[Call]) -> list[Outcome]:
    """Send every call at once; the outcomes in the order of ``calls``."""
    return asyncio.run(_burst(server.url, token, calls))


def one(server: LiveServer, token: str, call: Call) -> Any:
    """Send one call that must succeed; its JSON body."""
    [(status, body)] = burst(server, token, [call])
    assert status in (200, 201), body
    return body


def shuffled(calls: list[Call]) -> tuple[list[Call], list[int]]:
    """The calls in a fixed random order, and where each original call went."""
    order = list(range(len(calls)))
    random.Random(7).shuffle(order)
    return [calls[i] for i in order], [order.index(i) for i in range(len(calls))]


def row(item: dict[str, Any]) -> tuple[Any, ...]:
    """An item as the API returned it, in the terms a database row is compared in."""
    return item["id"], item["name"], item["qty"], item["version"], item["created_at"]


def stored(database: Database) -> set[tuple[Any, ...]]:
    return {row(item) for item in db.items(database, "acme")}


def kind(outcome: Outcome) -> str:
    """The problem type of a 4xx answer, without its common prefix."""
    status, body = outcome
    assert isinstance(body, dict), outcome
    assert str(body.get("type", "")).startswith(PREFIX), outcome
    assert body["status"] == status
    return str(body["type"]).removeprefix(PREFIX)


@pytest.fixture
def batches(database: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """On SQLite, the number of writes in each batch the store commits (else stays empty)."""
    sizes: list[int] = []
    if isinstance(database, Path):
        apply_batch: Callable[..., list[tuple[bool, Any]]] = sqlite_store._apply_batch

        def recording(
            conn: sqlite3.Connection, transitions: list[Any], *file: Any
        ) -> list[tuple[bool, Any]]:
            sizes.append(len(transitions))
            return apply_batch(conn, transitions, *file)

        monkeypatch.setattr(sqlite_store, "_apply_batch", recording)
    return sizes


@pytest.fixture
def token(server: LiveServer, batches: list[int]) -> str:
    """A writer key of tenant acme (made before any batch is counted)."""
    secret = server.create_key("acme", "writer")
    batches.clear()
    return secret


def assert_shared_a_transaction(database: Database, batches: list[int]) -> None:
    if isinstance(database, Path):
        assert max(batches, default=0) > 1, f"no batch held two writes: {batches}"


def test_two_creates_of_one_name_in_one_burst_get_one_201_and_one_409(
    server: LiveServer, database: Database, token: str, batches: list[int]
) -> None:
    pairs = 12
    calls = []
    for n in range(pairs):  # the same name key once normalized: NFC, strip, casefold
        calls += [create(f"Widget {n}", n), create(f"  WIDGET {n}\n", 100 + n)]

    outcomes = burst(server, token, calls)

    winners = []
    for n in range(pairs):
        pair = outcomes[2 * n : 2 * n + 2]
        assert sorted(status for status, _ in pair) == [201, 409], pair
        winner = next(body for status, body in pair if status == 201)
        loser = next(outcome for outcome in pair if outcome[0] == 409)
        assert kind(loser) == "name-taken"
        assert winner["name"] in (f"Widget {n}", f"WIDGET {n}")
        assert winner["qty"] == (n if winner["name"] == f"Widget {n}" else 100 + n)
        winners.append(winner)
    assert stored(database) == {row(item) for item in winners}
    assert all(item["version"] == 1 for item in winners)
    assert_shared_a_transaction(database, batches)


INVALID_CREATES = [
    Call("POST", "/items", {"name": "", "qty": 1}),
    Call("POST", "/items", {"name": "ap\u0000ple", "qty": 1}),
    Call("POST", "/items", {"name": "valid 0", "qty": -1}),
    Call("POST", "/items", {"name": "valid 1", "qty": 5.0}),
    Call("POST", "/items", {"name": "valid 2", "qty": "5"}),
    Call("POST", "/items", {"name": "valid 3", "qty": 2**53}),
    Call("POST", "/items", {"name": "x" * 201, "qty": 1}),
    Call("POST", "/items", {"qty": 1}),
    Call("POST", "/items", {"name": "valid 4", "qty": 1, "colour": "red"}),
    Call("POST", "/items", raw=b'{"name": "valid 5", "qty": '),
]


def test_burst_of_creates_with_duplicates_and_invalid_bodies_answers_each_as_if_alone(
    server: LiveServer, database: Database, token: str, batches: list[int]
) -> None:
    valid = [create(f"valid {n}", n) for n in range(30)]
    duplicates = [create(f"VALID {n}", 1000 + n) for n in range(10)]  # of valid 0..9
    calls, position = shuffled(valid + duplicates + INVALID_CREATES)

    outcomes = burst(server, token, calls)

    def outcome(index: int) -> Outcome:
        return outcomes[position[index]]

    invalid = [outcome(40 + n) for n in range(len(INVALID_CREATES))]
    assert [status for status, _ in invalid] == [400] * 10, invalid
    assert {kind(answer) for answer in invalid} == {"validation-error"}
    for n in range(10, 30):  # names sent once: created
        assert outcome(n)[0] == 201, outcome(n)
    for n in range(10):  # names sent twice in the burst: one of the two wins
        pair = [outcome(n), outcome(30 + n)]
        assert sorted(status for status, _ in pair) == [201, 409], pair
        assert kind(next(answer for answer in pair if answer[0] == 409)) == "name-taken"
    statuses = Counter(status for status, _ in outcomes)
    assert statuses == {201: 30, 409: 10, 400: 10}
    created = [body for status, body in outcomes if status == 201]
    assert stored(database) == {row(item) for item in created}
    assert_shared_a_transaction(database, batches)


def test_out_of_range_adjustments_in_a_burst_never_poison_the_others(
    server: LiveServer, database: Database, token: str, batches: list[int]
) -> None:
    hot = one(server, token, create("hot", 0))
    scarce = one(server, token, create("scarce", 5))
    batches.clear()
    missing = str(uuid.uuid4())
    calls, position = shuffled(
        [adjust(hot["id"], 1) for _ in range(30)]  # 0..29
        + [adjust(hot["id"], -1000) for _ in range(20)]  # 30..49: qty never reaches 1000
        + [adjust(scarce["id"], -1) for _ in range(10)]  # 50..59: only 5 fit
        + [adjust(missing, 1) for _ in range(5)]  # 60..64
        + [create(f"bystander {n}", n) for n in range(5)]  # 65..69
    )

    outcomes = burst(server, token, calls)
    answers = [outcomes[position[i]] for i in range(len(calls))]

    assert {status for status, _ in answers[:30]} == {200}
    assert {(body["qty"], body["version"]) for _, body in answers[:30]} == {
        (n, n + 1) for n in range(1, 31)
    }, "each +1 was applied exactly once, in some serial order"
    assert [status for status, _ in answers[30:50]] == [409] * 20
    assert {kind(answer) for answer in answers[30:50]} == {"quantity-out-of-range"}
    scarce_answers = answers[50:60]
    assert Counter(status for status, _ in scarce_answers) == {200: 5, 409: 5}
    assert sorted(body["qty"] for status, body in scarce_answers if status == 200) == [
        0,
        1,
        2,
        3,
        4,
    ]
    assert [status for status, _ in answers[60:65]] == [404] * 5
    assert [status for status, _ in answers[65:70]] == [201] * 5
    items = {item["name"]: item for item in db.items(database, "acme")}
    assert (items["hot"]["qty"], items["hot"]["version"]) == (30, 31)
    assert (items["scarce"]["qty"], items["scarce"]["version"]) == (0, 6)
    assert sorted(items) == sorted(["hot", "scarce", *(f"bystander {n}" for n in range(5))])
    assert_shared_a_transaction(database, batches)


def test_concurrent_patches_with_one_if_match_get_one_200_and_the_rest_412(
    server: LiveServer, database: Database, token: str, batches: list[int]
) -> None:
    item = one(server, token, create("contested", 0))
    bystander = one(server, token, create("bystander", 0))
    batches.clear()
    patches = [patch(item["id"], {"qty": n}, if_match='"1"') for n in range(1, 21)]
    calls, position = shuffled(patches + [adjust(bystander["id"], 1) for _ in range(10)])

    outcomes = burst(server, token, calls)
    answers = [outcomes[position[i]] for i in range(len(calls))]

    assert Counter(status for status, _ in answers[:20]) == {200: 1, 412: 19}
    assert {kind(answer) for answer in answers[:20] if answer[0] == 412} == {"precondition-failed"}
    [winner] = [body for status, body in answers[:20] if status == 200]
    assert winner["version"] == 2
    assert [status for status, _ in answers[20:]] == [200] * 10
    items = {item["name"]: item for item in db.items(database, "acme")}
    assert (items["contested"]["qty"], items["contested"]["version"]) == (winner["qty"], 2)
    assert (items["bystander"]["qty"], items["bystander"]["version"]) == (10, 11)
    assert_shared_a_transaction(database, batches)


def test_concurrent_renames_to_one_name_get_one_200_and_the_rest_409(
    server: LiveServer, database: Database, token: str, batches: list[int]
) -> None:
    items = [one(server, token, create(f"item {n}", n)) for n in range(8)]
    batches.clear()
    renames = [
        patch(item["id"], {"name": "Chosen" if n % 2 else "CHOSEN"}) for n, item in enumerate(items)
    ]
    calls, position = shuffled(renames + [create(f"bystander {n}", n) for n in range(8)])

    outcomes = burst(server, token, calls)
    answers = [outcomes[position[i]] for i in range(len(calls))]

    assert Counter(status for status, _ in answers[:8]) == {200: 1, 409: 7}
    assert {kind(answer) for answer in answers[:8] if answer[0] == 409} == {"name-taken"}
    [winner] = [body for status, body in answers[:8] if status == 200]
    assert [status for status, _ in answers[8:]] == [201] * 8
    after = {item["id"]: item for item in db.items(database, "acme")}
    assert len(after) == 16
    for n, item in enumerate(items):
        expected = (winner["name"], 2) if item["id"] == winner["id"] else (f"item {n}", 1)
        assert (after[item["id"]]["name"], after[item["id"]]["version"]) == expected
    assert {row(body) for _, body in answers[8:]} <= {row(item) for item in after.values()}
    assert_shared_a_transaction(database, batches)
