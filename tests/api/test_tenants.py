"""Tenants over HTTP: each tenant sees, changes and lists only its own items.

A key belongs to one tenant (README, "Authentication"): an item belongs to the tenant of
the key that created it, a name is unique within a tenant only, and another tenant's item
is answered exactly like a missing one (404; a DELETE of it is 204) and stays as it was.
Each test runs on a server of its own over an empty database (conftest's ``server``), with
a writer and a reader of ``acme`` and a writer of ``globex`` (``other_tenant``), and checks
the answers and every row of the database (``tests.support.db``).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.support import db
from tests.support.contract import ContractClient
from tests.support.problems import NOT_FOUND, assert_problem
from tests.support.server import LiveServer


def create_item(client: ContractClient, name: str, qty: int = 5) -> dict[str, Any]:
    """Create an item, which must succeed; the created item."""
    response = client.post("/items", json={"name": name, "qty": qty})
    assert response.status_code == 201, response.text
    item: dict[str, Any] = response.json()
    return item


def test_an_item_belongs_to_the_tenant_of_the_key_that_created_it(
    server: LiveServer, writer: ContractClient, other_tenant: ContractClient
) -> None:
    mine = create_item(writer, "apple")
    theirs = create_item(other_tenant, "plum")

    assert [(row["id"], row["tenant"]) for row in db.items(server.database)] == [
        (mine["id"], "acme"),
        (theirs["id"], "globex"),
    ]


def test_a_name_is_unique_within_a_tenant_but_may_repeat_across_tenants(
    server: LiveServer, writer: ContractClient, other_tenant: ContractClient
) -> None:
    mine = create_item(writer, "Apple")
    theirs = create_item(other_tenant, "apple")
    assert [r["id"] for r in db.items(server.database, "acme")] == [mine["id"]]
    assert [r["id"] for r in db.items(server.database, "globex")] == [theirs["id"]]
    pear = create_item(other_tenant, "pear")
    before = db.snapshot(server.database)

    assert writer.post("/items", json={"name": "APPLE", "qty": 1}).status_code == 409
    assert db.snapshot(server.database) == before
    renamed = other_tenant.patch(f"/items/{pear['id']}", json={"name": "Pear"})
    assert renamed.status_code == 200
    taken_in_other_tenant = create_item(writer, "pear")

    assert sorted((row["tenant"], row["name"]) for row in db.items(server.database)) == [
        ("acme", "Apple"),
        ("acme", "pear"),
        ("globex", "Pear"),
        ("globex", "apple"),
    ]
    assert taken_in_other_tenant["name"] == "pear"


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("PATCH", "", {"qty": 0}),
        ("PATCH", "", {"qty": 1}),
        ("PATCH", "", {"name": "mine now"}),
        ("POST", "/adjustments", {"delta": -10}),
        ("POST", "/adjustments", {"delta": 1}),
    ],
    ids=["get", "patch-qty-0", "patch-qty-1", "patch-name", "adjust-down", "adjust-up"],
)
def test_another_tenants_item_is_answered_404_exactly_like_a_missing_one_and_is_untouched(
    server: LiveServer,
    writer: ContractClient,
    other_tenant: ContractClient,
    method: str,
    suffix: str,
    body: dict[str, Any] | None,
) -> None:
    theirs = create_item(other_tenant, "plum", qty=10)
    missing = str(uuid.uuid4())
    before = db.snapshot(server.database)

    foreign = writer.request(method, f"/items/{theirs['id']}{suffix}", json=body)
    absent = writer.request(method, f"/items/{missing}{suffix}", json=body)

    problem = assert_problem(foreign, 404, NOT_FOUND)
    expected = assert_problem(absent, 404, NOT_FOUND)
    assert problem["detail"].replace(theirs["id"], "<id>") == expected["detail"].replace(
        missing, "<id>"
    )
    assert problem["title"] == expected["title"]
    assert {
        **problem,
        "detail": problem["detail"].replace(theirs["id"], "ID"),
        "request_id": "each request's own",
    } == {
        **expected,
        "detail": expected["detail"].replace(missing, "ID"),
        "request_id": "each request's own",
    }
    assert db.snapshot(server.database) == before
    assert other_tenant.get(f"/items/{theirs['id']}").json() == theirs


def test_deleting_another_tenants_item_answers_204_and_leaves_it_alone(
    server: LiveServer, writer: ContractClient, other_tenant: ContractClient
) -> None:
    theirs = create_item(other_tenant, "plum")
    before = db.snapshot(server.database)

    assert writer.delete(f"/items/{theirs['id']}").status_code == 204

    assert db.snapshot(server.database) == before
    still_there = other_tenant.get(f"/items/{theirs['id']}")
    assert still_there.status_code == 200
    assert still_there.json() == theirs


def test_listings_show_only_the_callers_items(
    writer: ContractClient, reader: ContractClient, other_tenant: ContractClient
) -> None:
    mine = [create_item(writer, name) for name in ("apple", "banana", "cherry")]
    theirs = [create_item(other_tenant, name) for name in ("apple", "apricot", "blueberry")]
    theirs.append(create_item(other_tenant, "cherry"))

    assert reader.get("/items").json() == {"items": mine, "next_cursor": None}
    assert [i["name"] for i in reader.get("/items?name_prefix=a").json()["items"]] == ["apple"]
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = reader.get("/items", params={"limit": 1, "cursor": cursor}).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == mine
    assert [i["name"] for i in other_tenant.get("/items").json()["items"]] == [
        "apple",
        "apricot",
        "blueberry",
        "cherry",
    ]
    assert [i["id"] for i in other_tenant.get("/items").json()["items"]] == [
        i["id"] for i in theirs
    ]
    assert [i["id"] for i in other_tenant.get("/items?name_prefix=ap").json()["items"]] == [
        theirs[0]["id"],
        theirs[1]["id"],
    ]
