"""Atomic batches (``POST /batch``, applyBatch) and compare-and-swap on an adjustment.

Each test states one behaviour of openapi.yaml's ``applyBatch`` (or of ``adjustItem``'s
``If-Match``) and checks it by the answer (every response is also checked against the
contract by the clients) and by the rows in the database, read behind the service's back
(``tests.support.db``): a batch applies every operation in order, each seeing the effects of
those before, and appends one event per change, all carrying the batch's id and reason; a
batch that is refused, at whichever operation and for whichever reason, leaves every row of
every table exactly as it was.

The module runs one live server per backend (``module_server``); each test gets a tenant of
its own (``fresh_tenant``), which starts without items, and keys for it.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from model.invariants import QTY_MAX
from tests.support import db
from tests.support.contract import ContractClient
from tests.support.db import Database
from tests.support.problems import (
    FORBIDDEN,
    NAME_TAKEN,
    NOT_FOUND,
    OUT_OF_RANGE,
    PRECONDITION_FAILED,
    PREFIX,
    UNAUTHORIZED,
    VALIDATION,
    assert_problem,
    error_fields,
)
from tests.support.server import LiveServer

KEY_REUSED = PREFIX + "idempotency-key-reused"
EVENT_FIELDS = {
    "seq", "item_id", "type", "version", "qty", "delta", "name", "reason", "key_id",
    "request_id", "batch_id", "at",
}  # fmt: skip


# --- helpers -------------------------------------------------------------------------


def create(client: ContractClient, name: str, qty: int = 5) -> dict[str, Any]:
    """Create an item, which must succeed; the created item."""
    response = client.post("/items", json={"name": name, "qty": qty})
    assert response.status_code == 201, response.text
    item: dict[str, Any] = response.json()
    return item


def adjust(client: ContractClient, item_id: str, delta: int) -> dict[str, Any]:
    """Adjust an item, which must succeed; the adjusted item."""
    response = client.post(f"/items/{item_id}/adjustments", json={"delta": delta})
    assert response.status_code == 200, response.text
    item: dict[str, Any] = response.json()
    return item


def send(
    client: ContractClient,
    operations: list[Any],
    reason: str | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """``POST /batch`` with ``operations`` (and ``reason``, if given)."""
    body: dict[str, Any] = {"operations": operations}
    if reason is not None:
        body["reason"] = reason
    return client.post("/batch", json=body, headers=headers)


def applied(response: requests.Response) -> dict[str, Any]:
    """The body of a batch that must have applied."""
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body.keys() == {"batch_id", "results"}
    return body


def stored_items(database: Database, tenant: str) -> dict[str, dict[str, Any]]:
    """The tenant's item rows as the API shows them, by id."""
    return {
        row["id"]: {k: v for k, v in row.items() if k not in {"tenant", "name_key"}}
        for row in db.items(database, tenant)
    }


def stored_events(database: Database, tenant: str) -> list[dict[str, Any]]:
    """The tenant's event rows as the API shows them (without the tenant column), by seq."""
    return [{k: v for k, v in row.items() if k != "tenant"} for row in db.events(database, tenant)]


def new_events(before: list[dict[str, Any]], database: Database, tenant: str) -> list[Any]:
    """The event rows of ``tenant`` that were not there ``before``."""
    now = stored_events(database, tenant)
    assert now[: len(before)] == before, "an earlier event changed"
    return now[len(before) :]


def key_id_of(client: ContractClient) -> str:
    """The public id of the key ``client`` sends."""
    return db.key_id(str(client.headers["Authorization"]).removeprefix("Bearer "))


def missing_id() -> str:
    """A well-formed item id that names no item."""
    return str(uuid.uuid4())


def assert_batch_events(
    events: list[dict[str, Any]], batch_id: str, reason: str | None, client: ContractClient
) -> None:
    """``events`` are one batch's: its id and reason on each, one author, consecutive seqs."""
    assert events, "the batch appended no event"
    assert all(e.keys() == EVENT_FIELDS for e in events)
    assert {e["batch_id"] for e in events} == {batch_id}
    assert {e["reason"] for e in events} == {reason}
    assert {e["key_id"] for e in events} == {key_id_of(client)}
    assert len({e["request_id"] for e in events}) == 1
    first = events[0]["seq"]
    assert [e["seq"] for e in events] == list(range(first, first + len(events)))


def refused(
    response: requests.Response, status: int, kind: str, index: int, field: str
) -> dict[str, Any]:
    """A batch refused at operation ``index`` with ``status`` and ``kind``, naming ``field``."""
    problem = assert_problem(response, status, kind)
    assert problem["operation"] == index, problem
    assert [e["field"] for e in problem["errors"]] == [f"/operations/{index}/{field}"], problem
    assert problem["errors"][0]["message"]
    return problem


# --- a batch applies every operation, in order ---------------------------------------


def test_a_sale_of_three_items_applies_in_order_and_every_event_carries_the_batch_and_reason(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    bolt, nut, washer = (create(fresh_writer, name, 10) for name in ("Bolt", "Nut", "Washer"))
    before = stored_events(module_database, fresh_tenant)

    response = send(
        fresh_writer,
        [
            {"op": "adjust", "item_id": nut["id"], "delta": -3},
            {"op": "adjust", "item_id": bolt["id"], "delta": -1},
            {"op": "adjust", "item_id": washer["id"], "delta": -10},
        ],
        reason="  order 42\u3000",
        headers={"X-Request-ID": "sale-42"},
    )

    body = applied(response)
    assert [(r["id"], r["qty"], r["version"]) for r in body["results"]] == [
        (nut["id"], 7, 2),
        (bolt["id"], 9, 2),
        (washer["id"], 0, 2),
    ]
    stored = stored_items(module_database, fresh_tenant)
    assert [stored[r["id"]] for r in body["results"]] == body["results"]
    events = new_events(before, module_database, fresh_tenant)
    assert_batch_events(events, body["batch_id"], "order 42", fresh_writer)
    assert [(e["type"], e["item_id"], e["delta"], e["qty"], e["version"]) for e in events] == [
        ("adjusted", nut["id"], -3, 7, 2),
        ("adjusted", bolt["id"], -1, 9, 2),
        ("adjusted", washer["id"], -10, 0, 2),
    ]
    assert {e["request_id"] for e in events} == {"sale-42"}
    feed = fresh_writer.get(f"/events?after={before[-1]['seq']}").json()["events"]
    assert feed == events


def test_a_transfer_moves_units_between_two_items_and_keeps_the_total(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    shelf, store = create(fresh_writer, "Shelf", 5), create(fresh_writer, "Store", 50)
    before = stored_events(module_database, fresh_tenant)

    body = applied(
        send(
            fresh_writer,
            [
                {"op": "adjust", "item_id": store["id"], "delta": -20},
                {"op": "adjust", "item_id": shelf["id"], "delta": 20},
            ],
            reason="restock shelf",
        )
    )

    stored = stored_items(module_database, fresh_tenant)
    assert (stored[shelf["id"]]["qty"], stored[store["id"]]["qty"]) == (25, 30)
    assert body["results"] == [stored[store["id"]], stored[shelf["id"]]]
    events = new_events(before, module_database, fresh_tenant)
    assert_batch_events(events, body["batch_id"], "restock shelf", fresh_writer)
    assert [(e["item_id"], e["delta"]) for e in events] == [(store["id"], -20), (shelf["id"], 20)]
    for item in (shelf, store):  # an item's own history shows the batch too
        history = fresh_writer.get(f"/items/{item['id']}/events").json()["events"]
        assert history[-1]["batch_id"] == body["batch_id"]
        assert sum(e["delta"] for e in history) == stored[item["id"]]["qty"]


def test_every_kind_of_operation_applies_in_one_batch_with_its_result_and_event(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    bolt, nut, washer = (create(fresh_writer, name) for name in ("Bolt", "Nut", "Washer"))
    before = stored_events(module_database, fresh_tenant)

    body = applied(
        send(
            fresh_writer,
            [
                {"op": "create", "name": " Gear\n", "qty": 4},
                {"op": "update", "item_id": bolt["id"], "name": "Hex bolt", "qty": 8},
                {"op": "adjust", "item_id": nut["id"], "delta": 2},
                {"op": "delete", "item_id": washer["id"]},
            ],
            reason="stocktake",
        )
    )

    gear, hex_bolt, more_nuts, deleted = body["results"]
    assert deleted is None
    assert (gear["name"], gear["qty"], gear["version"]) == ("Gear", 4, 1)
    assert (hex_bolt["name"], hex_bolt["qty"], hex_bolt["version"]) == ("Hex bolt", 8, 2)
    assert (more_nuts["qty"], more_nuts["version"]) == (7, 2)
    assert stored_items(module_database, fresh_tenant) == {
        item["id"]: item for item in (gear, hex_bolt, more_nuts)
    }
    events = new_events(before, module_database, fresh_tenant)
    assert_batch_events(events, body["batch_id"], "stocktake", fresh_writer)
    assert [(e["type"], e["item_id"], e["delta"], e["qty"], e["version"]) for e in events] == [
        ("created", gear["id"], 4, 4, 1),
        ("updated", bolt["id"], 3, 8, 2),
        ("adjusted", nut["id"], 2, 7, 2),
        ("deleted", washer["id"], -5, 0, 2),
    ]


def test_a_batch_without_a_reason_stores_null_as_the_reason_of_its_events(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    bolt = create(fresh_writer, "Bolt")
    before = stored_events(module_database, fresh_tenant)

    body = applied(send(fresh_writer, [{"op": "adjust", "item_id": bolt["id"], "delta": 1}]))

    assert_batch_events(
        new_events(before, module_database, fresh_tenant), body["batch_id"], None, fresh_writer
    )


def test_each_batch_gets_a_batch_id_of_its_own(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    bolt = create(fresh_writer, "Bolt")
    operations = [{"op": "adjust", "item_id": bolt["id"], "delta": 1}]

    ids = [applied(send(fresh_writer, operations))["batch_id"] for _ in range(3)]

    assert len(set(ids)) == 3
    batch_ids = [e["batch_id"] for e in stored_events(module_database, fresh_tenant)]
    assert batch_ids == [None, *ids]  # the single create carries none


def test_two_adjustments_of_one_item_in_a_batch_add_up(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    bolt = create(fresh_writer, "Bolt", 5)

    body = applied(
        send(
            fresh_writer,
            [
                {"op": "adjust", "item_id": bolt["id"], "delta": 3},
                {"op": "adjust", "item_id": bolt["id"], "delta": -8},
            ],
        )
    )

    assert [(r["qty"], r["version"]) for r in body["results"]] == [(8, 2), (0, 3)]
    assert stored_items(module_database, fresh_tenant)[bolt["id"]] == body["results"][1]
    events = stored_events(module_database, fresh_tenant)
    history = [(e["version"], e["delta"], e["qty"]) for e in events]
    assert history == [(1, 5, 5), (2, 3, 8), (3, -8, 0)]


def test_an_if_match_after_an_earlier_update_of_the_same_item_expects_the_version_it_left(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    bolt = create(fresh_writer, "Bolt", 5)

    body = applied(
        send(
            fresh_writer,
            [
                {"op": "update", "item_id": bolt["id"], "qty": 20, "if_match": 1},
                {"op": "adjust", "item_id": bolt["id"], "delta": -4, "if_match": 2},
                {"op": "update", "item_id": bolt["id"], "name": "Bolt M6", "if_match": 3},
            ],
        )
    )

    assert [(r["qty"], r["version"]) for r in body["results"]] == [(20, 2), (16, 3), (16, 4)]
    stored = stored_items(module_database, fresh_tenant)[bolt["id"]]
    assert (stored["name"], stored["qty"], stored["version"]) == ("Bolt M6", 16, 4)


def test_an_if_match_of_the_version_before_an_earlier_operation_of_the_batch_is_412(
    fresh_writer: ContractClient, module_database: Database
) -> None:
    bolt = create(fresh_writer, "Bolt", 5)
    before = db.snapshot(module_database)

    response = send(
        fresh_writer,
        [
            {"op": "update", "item_id": bolt["id"], "qty": 20},
            {"op": "adjust", "item_id": bolt["id"], "delta": -4, "if_match": 1},
        ],
    )

    refused(response, 412, PRECONDITION_FAILED, 1, "if_match")
    assert db.snapshot(module_database) == before


def test_an_adjustment_that_an_earlier_operation_made_impossible_is_409_at_that_adjustment(
    fresh_writer: ContractClient, module_database: Database
) -> None:
    bolt = create(fresh_writer, "Bolt", 5)
    before = db.snapshot(module_database)

    response = send(
        fresh_writer,
        [
            {"op": "adjust", "item_id": bolt["id"], "delta": -3},
            {"op": "adjust", "item_id": bolt["id"], "delta": -3},
        ],
    )

    refused(response, 409, OUT_OF_RANGE, 1, "delta")
    assert db.snapshot(module_database) == before


def test_a_name_freed_by_an_earlier_operation_can_be_taken_by_a_later_one(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    bolt, nut, washer = (create(fresh_writer, name) for name in ("Bolt", "Nut", "Washer"))

    body = applied(
        send(
            fresh_writer,
            [
                {"op": "update", "item_id": bolt["id"], "name": "Swap"},  # a three-way swap
                {"op": "update", "item_id": nut["id"], "name": "BOLT"},
                {"op": "update", "item_id": bolt["id"], "name": "Nut"},
                {"op": "delete", "item_id": washer["id"]},
                {"op": "create", "name": "washer", "qty": 1},
            ],
        )
    )

    stored = stored_items(module_database, fresh_tenant)
    assert {item["id"]: item["name"] for item in stored.values()} == {
        bolt["id"]: "Nut",
        nut["id"]: "BOLT",
        body["results"][4]["id"]: "washer",
    }


def test_a_delete_of_a_missing_item_is_no_failure_its_result_is_null_and_it_appends_nothing(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    bolt, nut = create(fresh_writer, "Bolt"), create(fresh_writer, "Nut")
    before = stored_events(module_database, fresh_tenant)

    body = applied(
        send(
            fresh_writer,
            [
                {"op": "delete", "item_id": missing_id()},
                {"op": "delete", "item_id": nut["id"]},
                {"op": "delete", "item_id": nut["id"]},  # again: nothing left to delete
                {"op": "adjust", "item_id": bolt["id"], "delta": 1},
            ],
        )
    )

    assert body["results"][:3] == [None, None, None]
    assert list(stored_items(module_database, fresh_tenant)) == [bolt["id"]]
    events = new_events(before, module_database, fresh_tenant)
    assert_batch_events(events, body["batch_id"], None, fresh_writer)
    assert [(e["type"], e["item_id"]) for e in events] == [
        ("deleted", nut["id"]),
        ("adjusted", bolt["id"]),
    ]


def test_a_batch_of_only_deletes_of_nothing_applies_and_changes_no_row(
    fresh_writer: ContractClient, module_database: Database
) -> None:
    create(fresh_writer, "Bolt")
    before = db.snapshot(module_database)

    body = applied(send(fresh_writer, [{"op": "delete", "item_id": missing_id()}] * 2))

    assert body["results"] == [None, None]
    assert db.snapshot(module_database) == before


def test_a_batch_of_100_operations_is_applied_with_100_events_in_consecutive_seqs(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    bolt = create(fresh_writer, "Bolt", 0)
    before = stored_events(module_database, fresh_tenant)

    body = applied(
        send(fresh_writer, [{"op": "adjust", "item_id": bolt["id"], "delta": 1}] * 100, "count")
    )

    assert [(r["qty"], r["version"]) for r in body["results"]] == [
        (n, n + 1) for n in range(1, 101)
    ]
    stored = stored_items(module_database, fresh_tenant)[bolt["id"]]
    assert (stored["qty"], stored["version"]) == (100, 101)
    events = new_events(before, module_database, fresh_tenant)
    assert len(events) == 100
    assert_batch_events(events, body["batch_id"], "count", fresh_writer)
    assert [e["version"] for e in events] == list(range(2, 102))


# --- the first operation that cannot apply refuses the batch; nothing changes --------


@dataclass(frozen=True)
class Stock:
    """The items a refused batch is tried against."""

    bolt: str  # qty 5, version 1
    nut: str  # qty 5, version 1
    washer: str  # qty 5, version 1
    gadget: str  # qty 6, version 2
    full: str  # qty QTY_MAX, version 1


def stock(client: ContractClient) -> Stock:
    bolt, nut, washer, gadget = (create(client, n) for n in ("Bolt", "Nut", "Washer", "Gadget"))
    adjust(client, gadget["id"], 1)
    full = create(client, "Full", QTY_MAX)
    return Stock(bolt["id"], nut["id"], washer["id"], gadget["id"], full["id"])


def valid_operations(s: Stock) -> list[dict[str, Any]]:
    """Four operations that apply (and change rows) whatever else of REFUSALS is in the batch."""
    return [
        {"op": "create", "name": "Fresh", "qty": 1},
        {"op": "adjust", "item_id": s.bolt, "delta": 1},
        {"op": "update", "item_id": s.nut, "qty": 9},
        {"op": "delete", "item_id": s.washer},
    ]


REFUSALS: dict[str, tuple[Any, int, str, str]] = {
    "adjust-missing": (
        lambda s: {"op": "adjust", "item_id": missing_id(), "delta": 1},
        404, NOT_FOUND, "item_id"),
    "adjust-missing-with-if-match": (
        lambda s: {"op": "adjust", "item_id": missing_id(), "delta": 1, "if_match": 1},
        404, NOT_FOUND, "item_id"),
    "update-missing": (
        lambda s: {"op": "update", "item_id": missing_id(), "name": "Ghost"},
        404, NOT_FOUND, "item_id"),
    "create-name-taken": (
        lambda s: {"op": "create", "name": " BOLT ", "qty": 1}, 409, NAME_TAKEN, "name"),
    "update-name-taken": (
        lambda s: {"op": "update", "item_id": s.gadget, "name": "nut"}, 409, NAME_TAKEN, "name"),
    "adjust-below-zero": (
        lambda s: {"op": "adjust", "item_id": s.gadget, "delta": -7}, 409, OUT_OF_RANGE, "delta"),
    "adjust-above-max": (
        lambda s: {"op": "adjust", "item_id": s.full, "delta": 1}, 409, OUT_OF_RANGE, "delta"),
    "adjust-stale-if-match": (
        lambda s: {"op": "adjust", "item_id": s.gadget, "delta": 1, "if_match": 1},
        412, PRECONDITION_FAILED, "if_match"),
    "adjust-stale-if-match-and-out-of-range": (  # 412 comes before 409
        lambda s: {"op": "adjust", "item_id": s.gadget, "delta": -7, "if_match": 1},
        412, PRECONDITION_FAILED, "if_match"),
    "update-stale-if-match": (
        lambda s: {"op": "update", "item_id": s.gadget, "qty": 1, "if_match": 1},
        412, PRECONDITION_FAILED, "if_match"),
    "update-future-if-match": (
        lambda s: {"op": "update", "item_id": s.gadget, "qty": 1, "if_match": 3},
        412, PRECONDITION_FAILED, "if_match"),
}  # fmt: skip


@pytest.mark.parametrize("position", [0, 2, 4], ids=["first", "middle", "last"])
@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_a_refused_operation_anywhere_refuses_the_batch_naming_it_and_changes_no_row(
    fresh_writer: ContractClient, module_database: Database, case: str, position: int
) -> None:
    make, status, kind, field = REFUSALS[case]
    items = stock(fresh_writer)
    operations = valid_operations(items)
    operations.insert(position, make(items))
    before = db.snapshot(module_database)

    response = send(fresh_writer, operations, reason="refused")

    refused(response, status, kind, position, field)
    assert db.snapshot(module_database) == before


def test_a_name_taken_by_an_earlier_operation_of_the_same_batch_is_409_at_the_later_one(
    fresh_writer: ContractClient, module_database: Database
) -> None:
    nut = create(fresh_writer, "Nut")
    before = db.snapshot(module_database)

    by_create = send(
        fresh_writer,
        [{"op": "create", "name": "Gear", "qty": 1}, {"op": "create", "name": "GEAR", "qty": 2}],
    )
    by_update = send(
        fresh_writer,
        [
            {"op": "adjust", "item_id": nut["id"], "delta": 1},
            {"op": "create", "name": "Gear", "qty": 1},
            {"op": "update", "item_id": nut["id"], "name": "gear"},
        ],
    )

    refused(by_create, 409, NAME_TAKEN, 1, "name")
    refused(by_update, 409, NAME_TAKEN, 2, "name")
    assert db.snapshot(module_database) == before


def test_a_delete_then_an_adjustment_of_the_same_item_is_404_at_the_adjustment(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    bolt = create(fresh_writer, "Bolt")
    before = db.snapshot(module_database)

    response = send(
        fresh_writer,
        [
            {"op": "delete", "item_id": bolt["id"]},
            {"op": "adjust", "item_id": bolt["id"], "delta": 1},
        ],
    )

    refused(response, 404, NOT_FOUND, 1, "item_id")
    assert db.snapshot(module_database) == before
    assert list(stored_items(module_database, fresh_tenant)) == [bolt["id"]]


# --- validation: every bad field of every operation, before anything runs -------------


def test_validation_names_every_bad_field_of_every_operation_and_changes_nothing(
    fresh_writer: ContractClient, module_database: Database
) -> None:
    bolt = create(fresh_writer, "Bolt")["id"]
    before = db.snapshot(module_database)

    response = fresh_writer.post(
        "/batch",
        json={
            "operations": [
                {"op": "adjust", "item_id": bolt, "delta": 1},  # valid, and must not apply
                {"op": "sell", "item_id": bolt},
                {"op": "adjust"},
                {"op": "adjust", "item_id": bolt, "delta": 0},
                {"op": "update", "item_id": bolt.upper()},
                "adjust",
                {"op": "create", "name": "x"},
                {"op": "delete", "item_id": bolt, "delta": 1},
                {"op": "adjust", "item_id": bolt, "delta": 1, "if_match": 0},
                {"item_id": bolt, "delta": 1},
                {"op": "create", "name": " ", "qty": 1.0},
            ],
            "reason": "",
            "dry_run": True,
        },
    )

    problem = assert_problem(response, 400, VALIDATION)
    assert "operation" not in problem
    assert error_fields(problem) == {
        "/operations/1/op",
        "/operations/2/item_id",
        "/operations/2/delta",
        "/operations/3/delta",
        "/operations/4/item_id",
        "/operations/4",  # neither name nor qty
        "/operations/5",
        "/operations/6/qty",
        "/operations/7/delta",
        "/operations/8/if_match",
        "/operations/9/op",
        "/operations/10/name",
        "/operations/10/qty",
        "/reason",
        "/dry_run",
    }
    assert db.snapshot(module_database) == before


def one(op: dict[str, Any]) -> dict[str, Any]:
    """A batch body of ``op`` alone."""
    return {"operations": [op]}


ITEM = "01a21c5e-4db9-76b1-b5f8-a7ba423c111c"
INVALID: dict[str, tuple[Any, set[str]]] = {
    "no-operations": ({}, {"/operations"}),
    "zero-operations": ({"operations": []}, {"/operations"}),
    "101-operations": (
        {"operations": [{"op": "delete", "item_id": ITEM}] * 101}, {"/operations"}),
    "operations-not-an-array": ({"operations": {"op": "delete", "item_id": ITEM}}, {"/operations"}),
    "operations-null": ({"operations": None}, {"/operations"}),
    "unknown-top-level-field": (
        {"operations": [{"op": "delete", "item_id": ITEM}], "atomic": True}, {"/atomic"}),
    "reason-blank": (
        {"operations": [{"op": "delete", "item_id": ITEM}], "reason": " \t"}, {"/reason"}),
    "reason-too-long": (
        {"operations": [{"op": "delete", "item_id": ITEM}], "reason": "r" * 201}, {"/reason"}),
    "operation-null": ({"operations": [None]}, {"/operations/0"}),
    "operation-array": ({"operations": [[]]}, {"/operations/0"}),
    "operation-number": ({"operations": [1]}, {"/operations/0"}),
    "op-missing": (one({"item_id": ITEM}), {"/operations/0/op"}),
    "op-unknown": (one({"op": "move", "item_id": ITEM}), {"/operations/0/op"}),
    "op-uppercase": (one({"op": "DELETE", "item_id": ITEM}), {"/operations/0/op"}),
    "create-missing-name-and-qty": (
        one({"op": "create"}), {"/operations/0/name", "/operations/0/qty"}),
    "create-negative-qty": (one({"op": "create", "name": "x", "qty": -1}), {"/operations/0/qty"}),
    "create-with-item-id": (
        one({"op": "create", "name": "x", "qty": 1, "item_id": ITEM}), {"/operations/0/item_id"}),
    "update-missing-item-id": (one({"op": "update", "qty": 1}), {"/operations/0/item_id"}),
    "update-nothing-to-change": (one({"op": "update", "item_id": ITEM}), {"/operations/0"}),
    "update-qty-string": (
        one({"op": "update", "item_id": ITEM, "qty": "5"}), {"/operations/0/qty"}),
    "update-if-match-string": (
        one({"op": "update", "item_id": ITEM, "qty": 1, "if_match": '"1"'}),
        {"/operations/0/if_match"}),
    "adjust-zero-delta": (
        one({"op": "adjust", "item_id": ITEM, "delta": 0}), {"/operations/0/delta"}),
    "adjust-fractional-delta": (
        one({"op": "adjust", "item_id": ITEM, "delta": 1.5}), {"/operations/0/delta"}),
    "adjust-boolean-delta": (
        one({"op": "adjust", "item_id": ITEM, "delta": True}), {"/operations/0/delta"}),
    "adjust-huge-delta": (
        one({"op": "adjust", "item_id": ITEM, "delta": QTY_MAX + 1}), {"/operations/0/delta"}),
    "adjust-missing-delta": (one({"op": "adjust", "item_id": ITEM}), {"/operations/0/delta"}),
    "adjust-if-match-zero": (
        one({"op": "adjust", "item_id": ITEM, "delta": 1, "if_match": 0}),
        {"/operations/0/if_match"}),
    "adjust-with-reason": (
        one({"op": "adjust", "item_id": ITEM, "delta": 1, "reason": "x"}),
        {"/operations/0/reason"}),
    "item-id-uppercase": (
        one({"op": "delete", "item_id": ITEM.upper()}), {"/operations/0/item_id"}),
    "item-id-not-a-uuid": (one({"op": "delete", "item_id": "bolt"}), {"/operations/0/item_id"}),
    "item-id-number": (one({"op": "delete", "item_id": 7}), {"/operations/0/item_id"}),
    "delete-with-if-match": (
        one({"op": "delete", "item_id": ITEM, "if_match": 1}), {"/operations/0/if_match"}),
    "bad-last-of-several": (
        {"operations": [{"op": "delete", "item_id": ITEM}] * 99 + [{"op": "delete"}]},
        {"/operations/99/item_id"}),
}  # fmt: skip


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
def test_an_invalid_batch_is_400_naming_each_bad_field_and_changes_nothing(
    fresh_writer: ContractClient, module_database: Database, case: str
) -> None:
    body, fields = INVALID[case]
    bolt = create(fresh_writer, "Bolt")["id"]
    before = db.snapshot(module_database)
    sent = json.loads(json.dumps(body).replace(ITEM, bolt))  # an item that exists, untouched

    problem = assert_problem(fresh_writer.post("/batch", json=sent), 400, VALIDATION)

    assert error_fields(problem) == fields
    assert db.snapshot(module_database) == before


@pytest.mark.parametrize("op", [{}, [], ["adjust"]], ids=["object", "empty-array", "array"])
def test_an_op_that_is_not_a_string_is_400_naming_it(
    fresh_writer: ContractClient, module_database: Database, op: object
) -> None:
    bolt = create(fresh_writer, "Bolt")["id"]
    before = db.snapshot(module_database)

    response = send(fresh_writer, [{"op": op, "item_id": bolt, "delta": 1}])

    problem = assert_problem(response, 400, VALIDATION)
    assert error_fields(problem) == {"/operations/0/op"}
    assert db.snapshot(module_database) == before


def test_more_than_20_bad_fields_are_answered_as_the_first_20_and_a_count_of_the_rest(
    fresh_writer: ContractClient, module_database: Database
) -> None:
    bolt = create(fresh_writer, "Bolt")["id"]
    before = db.snapshot(module_database)

    response = send(fresh_writer, [{"op": "adjust", "item_id": bolt, "delta": 0}] * 100)

    problem = assert_problem(response, 400, VALIDATION)
    assert len(problem["errors"]) == 20
    assert problem["more"] == 80
    assert error_fields(problem) <= {f"/operations/{i}/delta" for i in range(100)}
    assert db.snapshot(module_database) == before


# --- who may apply a batch, and to which items ---------------------------------------


def test_a_reader_may_not_apply_a_batch(
    fresh_writer: ContractClient, fresh_reader: ContractClient, module_database: Database
) -> None:
    bolt = create(fresh_writer, "Bolt")
    before = db.snapshot(module_database)

    response = send(fresh_reader, [{"op": "adjust", "item_id": bolt["id"], "delta": 1}])

    assert_problem(response, 403, FORBIDDEN)
    assert db.snapshot(module_database) == before


def test_a_batch_without_a_key_is_401(
    fresh_writer: ContractClient, module_anonymous: ContractClient, module_database: Database
) -> None:
    bolt = create(fresh_writer, "Bolt")
    before = db.snapshot(module_database)

    response = send(module_anonymous, [{"op": "adjust", "item_id": bolt["id"], "delta": 1}])

    assert_problem(response, 401, UNAUTHORIZED)
    assert db.snapshot(module_database) == before


@pytest.mark.parametrize(
    ("operation", "field"),
    [
        ({"op": "adjust", "delta": 1}, "item_id"),
        ({"op": "adjust", "delta": 1, "if_match": 1}, "item_id"),
        ({"op": "update", "qty": 1}, "item_id"),
        ({"op": "update", "name": "Stolen", "if_match": 1}, "item_id"),
    ],
    ids=["adjust", "adjust-if-match", "update", "update-if-match"],
)
def test_another_tenants_item_is_404_in_a_batch_and_stays_untouched(
    module_server: LiveServer,
    fresh_writer: ContractClient,
    module_database: Database,
    operation: dict[str, Any],
    field: str,
) -> None:
    mine = create(fresh_writer, "Bolt")
    other = f"globex-{uuid.uuid4().hex[:12]}"
    with ContractClient(module_server.url, module_server.create_key(other, "writer")) as theirs:
        foreign = create(theirs, "Bolt")
    before = db.snapshot(module_database)

    response = send(
        fresh_writer,
        [
            {"op": "adjust", "item_id": mine["id"], "delta": 1},
            {**operation, "item_id": foreign["id"]},
        ],
    )

    refused(response, 404, NOT_FOUND, 1, field)
    assert db.snapshot(module_database) == before


def test_a_delete_of_another_tenants_item_in_a_batch_is_a_delete_of_nothing(
    module_server: LiveServer,
    fresh_writer: ContractClient,
    module_database: Database,
    fresh_tenant: str,
) -> None:
    mine = create(fresh_writer, "Bolt")
    other = f"globex-{uuid.uuid4().hex[:12]}"
    with ContractClient(module_server.url, module_server.create_key(other, "writer")) as theirs:
        foreign = create(theirs, "Bolt")
    their_rows = (db.items(module_database, other), db.events(module_database, other))
    mine_before = stored_events(module_database, fresh_tenant)

    body = applied(
        send(
            fresh_writer,
            [
                {"op": "delete", "item_id": foreign["id"]},
                {"op": "adjust", "item_id": mine["id"], "delta": 1},
            ],
        )
    )

    assert body["results"][0] is None
    assert (db.items(module_database, other), db.events(module_database, other)) == their_rows
    events = new_events(mine_before, module_database, fresh_tenant)
    assert [(e["type"], e["item_id"]) for e in events] == [("adjusted", mine["id"])]


# --- compare-and-swap under concurrency -----------------------------------------------

RACERS = 8


def race(client: ContractClient, send_one: Any) -> list[requests.Response]:
    """``send_one(client)`` from RACERS threads at once (one session each, same key)."""
    start = threading.Barrier(RACERS, timeout=30)
    token = str(client.headers["Authorization"]).removeprefix("Bearer ")

    def go(_: int) -> requests.Response:
        with ContractClient(client.base_url, token) as mine:
            mine.get("/healthz")  # connected before the race starts
            start.wait()
            response: requests.Response = send_one(mine)
            return response

    with ThreadPoolExecutor(RACERS) as pool:
        return list(pool.map(go, range(RACERS)))


def test_concurrent_batches_expecting_the_same_version_apply_exactly_once(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    shelf, store = create(fresh_writer, "Shelf", 0), create(fresh_writer, "Store", 100)
    operations = [
        {"op": "adjust", "item_id": store["id"], "delta": -1, "if_match": 1},
        {"op": "adjust", "item_id": shelf["id"], "delta": 1},
    ]

    answers = race(fresh_writer, lambda client: send(client, operations))

    assert Counter(a.status_code for a in answers) == {200: 1, 412: RACERS - 1}
    for answer in answers:
        if answer.status_code == 412:
            refused(answer, 412, PRECONDITION_FAILED, 0, "if_match")
    stored = stored_items(module_database, fresh_tenant)
    assert (stored[store["id"]]["qty"], stored[store["id"]]["version"]) == (99, 2)
    assert (stored[shelf["id"]]["qty"], stored[shelf["id"]]["version"]) == (1, 2)
    assert len(stored_events(module_database, fresh_tenant)) == 4


def test_concurrent_adjustments_with_the_same_if_match_apply_exactly_once(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    bolt = create(fresh_writer, "Bolt", 100)

    answers = race(
        fresh_writer,
        lambda client: client.post(
            f"/items/{bolt['id']}/adjustments", json={"delta": -1}, headers={"If-Match": '"1"'}
        ),
    )

    assert Counter(a.status_code for a in answers) == {200: 1, 412: RACERS - 1}
    stored = stored_items(module_database, fresh_tenant)[bolt["id"]]
    assert (stored["qty"], stored["version"]) == (99, 2)
    assert [e["delta"] for e in stored_events(module_database, fresh_tenant)] == [100, -1]


# --- Idempotency-Key -----------------------------------------------------------------


@pytest.fixture
def forget_answers(module_database: Database, fresh_tenant: str) -> Iterator[None]:
    """Afterwards, remove the answers kept for ``fresh_tenant``'s Idempotency-Keys: the
    module's PostgreSQL database is the session's, which ``module_server`` empties of every
    other row when done (``tests.support.postgres.empty_database``) but not of these, and
    later modules export it expecting none."""
    yield
    db.execute(module_database, f"DELETE FROM idempotency WHERE tenant = '{fresh_tenant}'")


@pytest.mark.usefixtures("forget_answers")
def test_a_keyed_batch_sent_again_replays_the_same_bytes_and_changes_nothing(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    bolt, nut = create(fresh_writer, "Bolt"), create(fresh_writer, "Nut")
    operations = [
        {"op": "adjust", "item_id": bolt["id"], "delta": -2},
        {"op": "adjust", "item_id": nut["id"], "delta": 2},
        {"op": "create", "name": "Gear", "qty": 3},
    ]
    key = {"Idempotency-Key": '"transfer-1"'}
    first = send(fresh_writer, operations, reason="move", headers=key)
    assert first.status_code == 200, first.text
    assert "Idempotent-Replayed" not in first.headers
    after_first = db.snapshot(module_database)

    again = send(fresh_writer, operations, reason="move", headers=key)
    reformatted = fresh_writer.post(  # the same body, other key order and spacing
        "/batch",
        data=json.dumps({"reason": "move", "operations": operations}, indent=3, sort_keys=True),
        headers={**key, "Content-Type": "application/json"},
    )

    for replay in (again, reformatted):
        assert replay.status_code == 200
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.content == first.content
    assert db.snapshot(module_database) == after_first
    assert len([e for e in stored_events(module_database, fresh_tenant) if e["batch_id"]]) == 3


@pytest.mark.usefixtures("forget_answers")
def test_a_keyed_batch_sent_again_with_another_body_is_422_and_changes_nothing(
    fresh_writer: ContractClient, module_database: Database
) -> None:
    bolt = create(fresh_writer, "Bolt")
    key = {"Idempotency-Key": '"sale-1"'}
    operations = [{"op": "adjust", "item_id": bolt["id"], "delta": -1}]
    assert send(fresh_writer, operations, headers=key).status_code == 200
    before = db.snapshot(module_database)

    changed_delta = send(fresh_writer, [{**operations[0], "delta": -2}], headers=key)
    changed_reason = send(fresh_writer, operations, reason="sold", headers=key)

    assert_problem(changed_delta, 422, KEY_REUSED)
    assert_problem(changed_reason, 422, KEY_REUSED)
    assert db.snapshot(module_database) == before


@pytest.mark.usefixtures("forget_answers")
@pytest.mark.parametrize(
    "case", ["update-missing", "create-name-taken", "adjust-below-zero", "adjust-stale-if-match"]
)
def test_a_keyed_batch_that_was_refused_replays_its_refusal_and_changes_nothing(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str, case: str
) -> None:
    make, status, kind, field = REFUSALS[case]
    items = stock(fresh_writer)
    operations = valid_operations(items)
    operations.insert(2, make(items))  # after a create and an adjustment that applied
    key = {"Idempotency-Key": "refused-1"}  # a bare token is accepted too
    before = db.snapshot(module_database)

    first = send(fresh_writer, operations, headers=key)
    refused(first, status, kind, 2, field)
    after_first = db.snapshot(module_database)
    again = send(fresh_writer, operations, headers=key)

    assert again.status_code == status
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert db.snapshot(module_database) == after_first
    # The refusal itself changed nothing but the stored answer of its key.
    assert {k: v for k, v in after_first.items() if k != "idempotency"} == {
        k: v for k, v in before.items() if k != "idempotency"
    }
    assert [a["key"] for a in db.answers(module_database) if a["tenant"] == fresh_tenant] == [
        "refused-1"
    ]


@pytest.mark.usefixtures("forget_answers")
def test_a_keyed_batch_refused_as_invalid_is_not_kept_so_the_corrected_one_applies(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    bolt = create(fresh_writer, "Bolt")
    key = {"Idempotency-Key": '"fix-me"'}
    before = db.snapshot(module_database)

    invalid = send(fresh_writer, [{"op": "adjust", "item_id": bolt["id"], "delta": 0}], headers=key)
    assert_problem(invalid, 400, VALIDATION)
    assert db.snapshot(module_database) == before
    corrected = send(
        fresh_writer, [{"op": "adjust", "item_id": bolt["id"], "delta": 2}], headers=key
    )

    assert corrected.status_code == 200, corrected.text
    assert "Idempotent-Replayed" not in corrected.headers
    assert stored_items(module_database, fresh_tenant)[bolt["id"]]["qty"] == 7


# --- adjustItem with If-Match --------------------------------------------------------

PAST_ANY_VERSION = '"9223372036854775808"'  # 2^63: no item's version, nor a database integer


@pytest.mark.parametrize(
    "if_match",
    ['"2"', '"1", "2"', "*", f'{PAST_ANY_VERSION}, "2"'],
    ids=["current", "list", "star", "list-with-a-tag-past-any-version"],
)
def test_an_adjustment_whose_if_match_matches_applies(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str, if_match: str
) -> None:
    bolt = create(fresh_writer, "Bolt", 5)
    adjust(fresh_writer, bolt["id"], 1)

    response = fresh_writer.post(
        f"/items/{bolt['id']}/adjustments", json={"delta": -4}, headers={"If-Match": if_match}
    )

    assert response.status_code == 200, response.text
    assert response.headers["ETag"] == '"3"'
    assert (response.json()["qty"], response.json()["version"]) == (2, 3)
    assert stored_items(module_database, fresh_tenant)[bolt["id"]] == response.json()
    assert [e["delta"] for e in stored_events(module_database, fresh_tenant)] == [5, 1, -4]


@pytest.mark.parametrize("delta", [-1, -100], ids=["in-range", "out-of-range"])
@pytest.mark.parametrize(
    "if_match",
    ['"1"', '"3"', 'W/"2"', "2", PAST_ANY_VERSION],
    ids=["stale", "future", "weak-current", "unquoted", "past-any-version"],
)
def test_an_adjustment_whose_if_match_does_not_match_is_412_and_changes_nothing(
    fresh_writer: ContractClient, module_database: Database, if_match: str, delta: int
) -> None:
    bolt = create(fresh_writer, "Bolt", 5)
    adjust(fresh_writer, bolt["id"], 1)
    before = db.snapshot(module_database)

    response = fresh_writer.post(
        f"/items/{bolt['id']}/adjustments", json={"delta": delta}, headers={"If-Match": if_match}
    )

    assert_problem(response, 412, PRECONDITION_FAILED)
    assert db.snapshot(module_database) == before


def test_an_adjustment_with_if_match_of_a_missing_item_is_404_and_changes_nothing(
    fresh_writer: ContractClient, module_database: Database
) -> None:
    create(fresh_writer, "Bolt")
    before = db.snapshot(module_database)

    response = fresh_writer.post(
        f"/items/{missing_id()}/adjustments", json={"delta": 1}, headers={"If-Match": '"1"'}
    )

    assert_problem(response, 404, NOT_FOUND)
    assert db.snapshot(module_database) == before
