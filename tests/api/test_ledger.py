"""The ledger (README, "The ledger"): one event per change, an item's history, the feed.

Each test states one behaviour of openapi.yaml (``listItemEvents``, ``listEvents``, the
``reason`` fields and the ``Event`` schema) and checks it by the answer (every response is
also checked against the contract by the clients) and by the rows of the ``events`` table,
read behind the service's back (``tests.support.db``). A rejected request, and a delete of
nothing, must leave every row of every table exactly as it was.

The module runs one live server per backend (``module_server``); each test gets a tenant of
its own (``fresh_tenant``), whose feed starts empty, and keys for it.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.support import db
from tests.support.contract import ContractClient
from tests.support.db import Database
from tests.support.problems import (
    FORBIDDEN,
    NAME_TAKEN,
    NOT_FOUND,
    OUT_OF_RANGE,
    PRECONDITION_FAILED,
    VALIDATION,
    assert_problem,
)
from tests.support.server import LiveServer

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
EVENT_FIELDS = {
    "seq", "item_id", "type", "version", "qty", "delta", "name", "reason", "key_id",
    "request_id", "batch_id", "at",
}  # fmt: skip


# --- helpers -------------------------------------------------------------------------


def create(client: ContractClient, name: str, qty: int = 5, **extra: Any) -> dict[str, Any]:
    """Create an item, which must succeed; the created item."""
    response = client.post("/items", json={"name": name, "qty": qty, **extra})
    assert response.status_code == 201, response.text
    item: dict[str, Any] = response.json()
    return item


def adjust(client: ContractClient, item_id: str, delta: int) -> dict[str, Any]:
    response = client.post(f"/items/{item_id}/adjustments", json={"delta": delta})
    assert response.status_code == 200, response.text
    item: dict[str, Any] = response.json()
    return item


def key_id_of(client: ContractClient) -> str:
    """The public id of the key ``client`` sends."""
    return db.key_id(str(client.headers["Authorization"]).removeprefix("Bearer "))


def stored_events(database: Database, tenant: str) -> list[dict[str, Any]]:
    """The tenant's event rows as the API shows them (without the tenant column), by seq."""
    rows = db.events(database, tenant)
    return [{k: v for k, v in row.items() if k != "tenant"} for row in rows]


def history(client: ContractClient, item_id: str, limit: int = 1000) -> list[dict[str, Any]]:
    """Every event of ``GET /items/{id}/events``, following ``next_cursor`` to its end."""
    events: list[dict[str, Any]] = []
    after = "0"
    for _ in range(1000):
        response = client.get(f"/items/{item_id}/events?limit={limit}&after={after}")
        assert response.status_code == 200, response.text
        page = response.json()
        events += page["events"]
        if page["next_cursor"] is None:
            return events
        after = page["next_cursor"]
    raise AssertionError("next_cursor never became null")


def feed(client: ContractClient, query: str = "") -> dict[str, Any]:
    response = client.get(f"/events{query}")
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def missing_id() -> str:
    """A well-formed item id that names no item."""
    return str(uuid.uuid4())


def new_events(before: list[dict[str, Any]], database: Database, tenant: str) -> list[Any]:
    """The event rows of ``tenant`` that were not there ``before``."""
    now = stored_events(database, tenant)
    assert now[: len(before)] == before, "an earlier event changed"
    return now[len(before) :]


# --- one event per change ------------------------------------------------------------


def test_each_change_appends_exactly_one_event_with_its_type_version_qty_delta_and_author(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    key = key_id_of(fresh_writer)
    item_id = ""

    def path(suffix: str = "") -> str:
        return f"/items/{item_id}{suffix}"

    steps: list[tuple[Callable[[], requests.Response], dict[str, Any]]] = [
        (
            lambda: fresh_writer.post(
                "/items",
                json={"name": "Bolt", "qty": 5, "reason": "  cafe\u0301 delivery\n"},
                headers={"X-Request-ID": "req-create.1"},
            ),
            {"type": "created", "version": 1, "qty": 5, "delta": 5, "name": "Bolt",
             "reason": "caf\u00e9 delivery", "request_id": "req-create.1"},
        ),
        (
            lambda: fresh_writer.patch(
                path(), json={"qty": 12}, headers={"X-Request-ID": "req-restock"}
            ),
            {"type": "updated", "version": 2, "qty": 12, "delta": 7, "name": "Bolt",
             "reason": None, "request_id": "req-restock"},
        ),
        (
            lambda: fresh_writer.patch(
                path(), json={"name": " Bolt M6 ", "reason": "renamed"},
                headers={"X-Request-ID": "req-rename"},
            ),
            {"type": "updated", "version": 3, "qty": 12, "delta": 0, "name": "Bolt M6",
             "reason": "renamed", "request_id": "req-rename"},
        ),
        (
            lambda: fresh_writer.patch(
                path(), json={"qty": 3, "reason": "counted"}, headers={"If-Match": '"3"',
                "X-Request-ID": "req-count"},
            ),
            {"type": "updated", "version": 4, "qty": 3, "delta": -9, "name": "Bolt M6",
             "reason": "counted", "request_id": "req-count"},
        ),
        (
            lambda: fresh_writer.post(
                path("/adjustments"), json={"delta": -2, "reason": "sold"},
                headers={"X-Request-ID": "req-sale"},
            ),
            {"type": "adjusted", "version": 5, "qty": 1, "delta": -2, "name": "Bolt M6",
             "reason": "sold", "request_id": "req-sale"},
        ),
        (
            lambda: fresh_writer.post(
                path("/adjustments"), json={"delta": 4}, headers={"X-Request-ID": "req-in"}
            ),
            {"type": "adjusted", "version": 6, "qty": 5, "delta": 4, "name": "Bolt M6",
             "reason": None, "request_id": "req-in"},
        ),
        (
            lambda: fresh_writer.delete(
                path(), params={"reason": " scrapped\u3000"}, headers={"X-Request-ID": "req-del"}
            ),
            {"type": "deleted", "version": 7, "qty": 0, "delta": -5, "name": "Bolt M6",
             "reason": "scrapped", "request_id": "req-del"},
        ),
    ]  # fmt: skip
    previous_at = ""
    for number, (send, expected) in enumerate(steps, start=1):
        before = stored_events(module_database, fresh_tenant)
        response = send()
        assert response.status_code in (200, 201, 204), response.text
        if number == 1:
            item_id = response.json()["id"]
        [event] = new_events(before, module_database, fresh_tenant)
        assert event.keys() == EVENT_FIELDS
        assert TIMESTAMP.fullmatch(event["at"]), event["at"]
        assert event["at"] >= previous_at
        previous_at = event["at"]
        assert event == {
            **expected, "seq": number, "item_id": item_id, "key_id": key,
            "batch_id": None, "at": event["at"],
        }  # fmt: skip
        if response.status_code != 204:
            assert (response.json()["qty"], response.json()["version"]) == (
                expected["qty"],
                expected["version"],
            )
    assert history(fresh_writer, item_id) == stored_events(module_database, fresh_tenant)


def test_a_malformed_request_id_is_not_stored_but_replaced_by_one_of_the_service(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    response = fresh_writer.post(
        "/items", json={"name": "Nut", "qty": 1}, headers={"X-Request-ID": "bad id!"}
    )
    assert response.status_code == 201
    [event] = stored_events(module_database, fresh_tenant)
    assert event["request_id"] != "bad id!"
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,128}", event["request_id"])


def test_feed_numbers_count_1_2_3_per_tenant_independently_of_other_tenants(
    module_server: LiveServer,
    fresh_writer: ContractClient,
    module_database: Database,
    fresh_tenant: str,
) -> None:
    other_tenant = f"globex-{uuid.uuid4().hex[:12]}"
    with ContractClient(module_server.url, module_server.create_key(other_tenant, "writer")) as b:
        mine = create(fresh_writer, "Bolt")
        theirs = create(b, "Bolt")
        adjust(fresh_writer, mine["id"], 1)
        adjust(b, theirs["id"], 2)
        adjust(fresh_writer, mine["id"], 3)
        assert b.delete(f"/items/{theirs['id']}").status_code == 204

        mine_seen = feed(fresh_writer)["events"]
        theirs_seen = feed(b)["events"]
    assert [e["seq"] for e in stored_events(module_database, fresh_tenant)] == [1, 2, 3]
    assert [e["seq"] for e in stored_events(module_database, other_tenant)] == [1, 2, 3]
    assert [(e["seq"], e["item_id"]) for e in mine_seen] == [(n, mine["id"]) for n in (1, 2, 3)]
    assert [(e["seq"], e["item_id"]) for e in theirs_seen] == [(n, theirs["id"]) for n in (1, 2, 3)]
    assert [e["type"] for e in theirs_seen] == ["created", "adjusted", "deleted"]


def test_every_items_events_sum_to_its_qty_and_a_deleted_items_history_sums_to_zero(
    fresh_writer: ContractClient,
    fresh_reader: ContractClient,
    module_database: Database,
    fresh_tenant: str,
) -> None:
    items = [create(fresh_writer, f"Item {n}", qty=n * 3) for n in range(5)]
    for n, item in enumerate(items):
        for delta in (n + 1, -1, 7):
            adjust(fresh_writer, item["id"], delta)
        assert fresh_writer.patch(f"/items/{item['id']}", json={"qty": n * 11}).status_code == 200
        assert fresh_writer.patch(f"/items/{item['id']}", json={"name": f"Thing {n}"}).ok
    for gone in items[3:]:
        assert fresh_writer.delete(f"/items/{gone['id']}").status_code == 204
    assert fresh_writer.delete(f"/items/{items[4]['id']}").status_code == 204  # again: nothing

    rows = stored_events(module_database, fresh_tenant)
    stored_qty = {row["id"]: row["qty"] for row in db.items(module_database, fresh_tenant)}
    assert len(rows) == 5 * 6 + 2
    for item in items:
        events = history(fresh_reader, item["id"])  # readable after delete, by a reader too
        assert events == [row for row in rows if row["item_id"] == item["id"]]
        assert [e["version"] for e in events] == list(range(1, len(events) + 1))
        total = sum(e["delta"] for e in events)
        if item in items[3:]:
            assert item["id"] not in stored_qty
            assert total == 0
            assert events[-1]["type"] == "deleted"
            assert events[-1]["qty"] == 0
            assert fresh_reader.get(f"/items/{item['id']}").status_code == 404
        else:
            assert total == stored_qty[item["id"]] == events[-1]["qty"]


# --- nothing appended on rejection ---------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """The clients and items a rejected request is tried against."""

    writer: ContractClient
    reader: ContractClient
    bolt: str  # qty 5, version 1
    nut: str


REJECTIONS: dict[str, tuple[Callable[[Setting], requests.Response], int, str]] = {
    "create-bad-body": (
        lambda s: s.writer.post("/items", json={"name": "", "qty": 1}), 400, VALIDATION),
    "create-empty-reason": (
        lambda s: s.writer.post("/items", json={"name": "x", "qty": 1, "reason": ""}),
        400, VALIDATION),
    "create-blank-reason": (
        lambda s: s.writer.post("/items", json={"name": "x", "qty": 1, "reason": " \t "}),
        400, VALIDATION),
    "create-control-reason": (
        lambda s: s.writer.post("/items", json={"name": "x", "qty": 1, "reason": "a\x07b"}),
        400, VALIDATION),
    "create-long-reason": (
        lambda s: s.writer.post("/items", json={"name": "x", "qty": 1, "reason": "r" * 201}),
        400, VALIDATION),
    "create-name-taken": (
        lambda s: s.writer.post("/items", json={"name": "BOLT", "qty": 1, "reason": "r"}),
        409, NAME_TAKEN),
    "update-reason-alone": (
        lambda s: s.writer.patch(f"/items/{s.bolt}", json={"reason": "just because"}),
        400, VALIDATION),
    "update-bad-reason": (
        lambda s: s.writer.patch(f"/items/{s.bolt}", json={"qty": 1, "reason": "\x00"}),
        400, VALIDATION),
    "update-missing": (
        lambda s: s.writer.patch(f"/items/{missing_id()}", json={"qty": 1}), 404, NOT_FOUND),
    "update-name-taken": (
        lambda s: s.writer.patch(f"/items/{s.bolt}", json={"name": "nut"}), 409, NAME_TAKEN),
    "update-stale-if-match": (
        lambda s: s.writer.patch(f"/items/{s.bolt}", json={"qty": 1}, headers={"If-Match": '"2"'}),
        412, PRECONDITION_FAILED),
    "adjust-zero": (
        lambda s: s.writer.post(f"/items/{s.bolt}/adjustments", json={"delta": 0}),
        400, VALIDATION),
    "adjust-bad-reason": (
        lambda s: s.writer.post(f"/items/{s.bolt}/adjustments", json={"delta": 1, "reason": ""}),
        400, VALIDATION),
    "adjust-below-zero": (
        lambda s: s.writer.post(f"/items/{s.bolt}/adjustments", json={"delta": -6}),
        409, OUT_OF_RANGE),
    "adjust-missing": (
        lambda s: s.writer.post(f"/items/{missing_id()}/adjustments", json={"delta": 1}),
        404, NOT_FOUND),
    "delete-empty-reason": (
        lambda s: s.writer.delete(f"/items/{s.bolt}?reason="), 400, VALIDATION),
    "delete-control-reason": (
        lambda s: s.writer.delete(f"/items/{s.bolt}", params={"reason": "gone\x07"}),
        400, VALIDATION),
    "delete-blank-reason": (
        lambda s: s.writer.delete(f"/items/{s.bolt}", params={"reason": "   "}),
        400, VALIDATION),
    "delete-long-reason": (
        lambda s: s.writer.delete(f"/items/{s.bolt}", params={"reason": "r" * 201}),
        400, VALIDATION),
    "delete-malformed-id": (
        lambda s: s.writer.delete("/items/not-a-uuid?reason=x"), 400, VALIDATION),
    "reader-creates": (
        lambda s: s.reader.post("/items", json={"name": "x", "qty": 1}), 403, FORBIDDEN),
    "reader-adjusts": (
        lambda s: s.reader.post(f"/items/{s.bolt}/adjustments", json={"delta": 1}),
        403, FORBIDDEN),
    "reader-deletes": (
        lambda s: s.reader.delete(f"/items/{s.bolt}?reason=x"), 403, FORBIDDEN),
}  # fmt: skip


@pytest.mark.parametrize("case", REJECTIONS, ids=list(REJECTIONS))
def test_a_rejected_request_appends_no_event_and_changes_no_row(
    fresh_writer: ContractClient,
    fresh_reader: ContractClient,
    module_database: Database,
    fresh_tenant: str,
    case: str,
) -> None:
    send, status, kind = REJECTIONS[case]
    setting = Setting(
        fresh_writer,
        fresh_reader,
        create(fresh_writer, "Bolt")["id"],
        create(fresh_writer, "Nut")["id"],
    )
    before = db.snapshot(module_database)

    assert_problem(send(setting), status, kind)

    assert db.snapshot(module_database) == before
    assert len(stored_events(module_database, fresh_tenant)) == 2


@pytest.mark.parametrize("whose", ["never-existed", "already-deleted", "other-tenant"])
def test_a_delete_of_nothing_appends_no_event(
    module_server: LiveServer,
    fresh_writer: ContractClient,
    module_database: Database,
    fresh_tenant: str,
    whose: str,
) -> None:
    item_id = missing_id()
    if whose == "already-deleted":
        item_id = create(fresh_writer, "Bolt")["id"]
        assert fresh_writer.delete(f"/items/{item_id}").status_code == 204
    elif whose == "other-tenant":
        other = f"globex-{uuid.uuid4().hex[:12]}"
        with ContractClient(module_server.url, module_server.create_key(other, "writer")) as b:
            item_id = create(b, "Bolt")["id"]
    before = db.snapshot(module_database)

    response = fresh_writer.delete(f"/items/{item_id}", params={"reason": "cleanup"})

    assert response.status_code == 204
    assert db.snapshot(module_database) == before


# --- GET /items/{id}/events ----------------------------------------------------------


def test_an_items_history_pages_oldest_first_by_limit_and_after(
    fresh_writer: ContractClient, fresh_reader: ContractClient
) -> None:
    item = create(fresh_writer, "Bolt", qty=1)
    for delta in range(1, 7):
        adjust(fresh_writer, item["id"], delta)
    other = create(fresh_writer, "Nut")  # interleaved events of another item stay out
    adjust(fresh_writer, other["id"], 1)
    whole = fresh_reader.get(f"/items/{item['id']}/events").json()
    assert whole["next_cursor"] is None
    assert [e["version"] for e in whole["events"]] == [1, 2, 3, 4, 5, 6, 7]
    assert {e["item_id"] for e in whole["events"]} == {item["id"]}

    pages, after = [], "0"
    while after is not None:
        page = fresh_reader.get(f"/items/{item['id']}/events?limit=3&after={after}").json()
        pages.append(page["events"])
        after = page["next_cursor"]
    assert [[e["version"] for e in page] for page in pages] == [[1, 2, 3], [4, 5, 6], [7]]
    assert [e for page in pages for e in page] == whole["events"]
    exact = fresh_reader.get(f"/items/{item['id']}/events?limit=7").json()
    assert exact == whole  # a full last page is the last: next_cursor null, no empty page
    first = fresh_reader.get(f"/items/{item['id']}/events?limit=2").json()
    assert first["next_cursor"] == "2"
    assert fresh_reader.get(f"/items/{item['id']}/events?after=7").json() == {
        "events": [],
        "next_cursor": None,
    }


def test_the_history_of_an_id_the_tenant_never_had_is_404(
    module_server: LiveServer, fresh_reader: ContractClient, fresh_writer: ContractClient
) -> None:
    assert_problem(fresh_reader.get(f"/items/{missing_id()}/events"), 404, NOT_FOUND)
    other = f"globex-{uuid.uuid4().hex[:12]}"
    with ContractClient(module_server.url, module_server.create_key(other, "writer")) as b:
        theirs = create(b, "Bolt")
        assert b.delete(f"/items/{theirs['id']}").status_code == 204
        foreign = create(b, "Nut")
        assert len(history(b, theirs["id"])) == 2
    for item_id in (theirs["id"], foreign["id"]):  # deleted or alive, it is not ours
        assert_problem(fresh_reader.get(f"/items/{item_id}/events"), 404, NOT_FOUND)
        assert_problem(fresh_writer.get(f"/items/{item_id}/events?after=0"), 404, NOT_FOUND)


@pytest.mark.parametrize(
    "query",
    [
        "/items/not-a-uuid/events",
        f"/items/{str(uuid.uuid4()).upper()}/events",
        "/items/{id}/events?after=abc",
        "/items/{id}/events?after=-1",
        "/items/{id}/events?after=01",
        "/items/{id}/events?after=",
        "/items/{id}/events?limit=0",
        "/items/{id}/events?limit=1001",
    ],
)
def test_a_malformed_item_id_after_or_limit_of_a_history_is_400(
    fresh_writer: ContractClient, fresh_reader: ContractClient, query: str
) -> None:
    item = create(fresh_writer, "Bolt")
    assert_problem(fresh_reader.get(query.replace("{id}", item["id"])), 400, VALIDATION)


# --- GET /events ---------------------------------------------------------------------


def test_the_feed_of_a_tenant_without_events_is_empty_with_cursor_0(
    fresh_reader: ContractClient,
) -> None:
    assert feed(fresh_reader) == {"events": [], "next_cursor": "0"}
    assert feed(fresh_reader, "?after=0&limit=5") == {"events": [], "next_cursor": "0"}


def test_the_feed_pages_every_event_of_the_tenant_once_and_its_cursor_is_never_null(
    module_server: LiveServer,
    fresh_writer: ContractClient,
    fresh_reader: ContractClient,
    module_database: Database,
    fresh_tenant: str,
) -> None:
    other = f"globex-{uuid.uuid4().hex[:12]}"
    with ContractClient(module_server.url, module_server.create_key(other, "writer")) as b:
        for n in range(4):
            item = create(fresh_writer, f"Item {n}")
            create(b, f"Item {n}")  # another tenant's, interleaved
            adjust(fresh_writer, item["id"], n + 1)
        assert fresh_writer.delete(f"/items/{item['id']}", params={"reason": "x"}).ok
        foreign_ids = {e["item_id"] for e in feed(b)["events"]}

    stored = stored_events(module_database, fresh_tenant)
    assert len(stored) == 9
    pages, cursor = [], "0"
    for _ in range(10):
        page = feed(fresh_reader, f"?after={cursor}&limit=4")
        assert page["next_cursor"] is not None
        if not page["events"]:
            assert page["next_cursor"] == cursor  # nothing new: resume where we were
            break
        assert page["next_cursor"] == str(page["events"][-1]["seq"])
        pages.append(page["events"])
        cursor = page["next_cursor"]
    assert [len(page) for page in pages] == [4, 4, 1]
    assert [e for page in pages for e in page] == stored
    assert [e["seq"] for e in stored] == list(range(1, 10))
    assert not {e["item_id"] for e in stored} & foreign_ids
    assert feed(fresh_reader) == {"events": stored, "next_cursor": "9"}
    assert feed(fresh_reader, "?after=1000") == {"events": [], "next_cursor": "1000"}


@pytest.mark.parametrize(
    "query", ["after=abc", "after=-1", "after=01", "limit=0", "limit=1001", "wait=31", "wait=-1"]
)
def test_a_malformed_after_limit_or_wait_of_the_feed_is_400(
    fresh_reader: ContractClient, query: str
) -> None:
    assert_problem(fresh_reader.get(f"/events?{query}"), 400, VALIDATION)


def test_a_long_poll_returns_as_soon_as_another_client_commits_a_change(
    fresh_writer: ContractClient, fresh_reader: ContractClient
) -> None:
    item = create(fresh_writer, "Bolt")
    end = feed(fresh_reader)["next_cursor"]
    assert end == "1"
    answer: dict[str, Any] = {}

    def poll() -> None:
        answer["response"] = fresh_reader.get(f"/events?after={end}&wait=5", timeout=30)
        answer["returned"] = time.monotonic()

    poller = threading.Thread(target=poll)
    started = time.monotonic()
    poller.start()
    # The change is meant to come while the poll waits; a poll not yet waiting would answer
    # at once with it, which passes too (no reliance on this pause for correctness).
    time.sleep(1.0)
    written = time.monotonic()
    adjusted = adjust(fresh_writer, item["id"], 3)
    poller.join(timeout=30)
    assert not poller.is_alive()

    response = answer["response"]
    assert response.status_code == 200
    page = response.json()
    assert [(e["seq"], e["type"], e["qty"]) for e in page["events"]] == [
        (2, "adjusted", adjusted["qty"])
    ]
    assert page["next_cursor"] == "2"
    assert answer["returned"] - written < 2.5, "the poll was not woken by the commit"
    assert answer["returned"] - started >= 0.9, "it answered before the change: not a wait"


def test_an_idle_long_poll_returns_an_empty_page_after_the_wait(
    module_server: LiveServer, fresh_writer: ContractClient, fresh_reader: ContractClient
) -> None:
    create(fresh_writer, "Bolt")
    other = f"globex-{uuid.uuid4().hex[:12]}"
    with ContractClient(module_server.url, module_server.create_key(other, "writer")) as b:
        stranger = threading.Thread(target=lambda: create(b, "Nut"))  # not our tenant's event
        started = time.monotonic()
        stranger.start()
        response = fresh_reader.get("/events?after=1&wait=1", timeout=30)
        took = time.monotonic() - started
        stranger.join(timeout=30)
    assert response.status_code == 200
    assert response.json() == {"events": [], "next_cursor": "1"}
    assert 0.9 <= took < 3.0, took


def test_a_long_poll_with_events_waiting_answers_at_once(
    fresh_writer: ContractClient, fresh_reader: ContractClient
) -> None:
    create(fresh_writer, "Bolt")
    started = time.monotonic()
    page = feed(fresh_reader, "?after=0&wait=5")
    assert time.monotonic() - started < 2.0
    assert [e["seq"] for e in page["events"]] == [1]
