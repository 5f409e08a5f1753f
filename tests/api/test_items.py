"""Every success path of every item operation, and the rejections that guard the invariants.

Each test states one behaviour of openapi.yaml (or of README, "The invariants" and
"Decisions the contract makes") and checks it twice: by the answer (status, headers, body,
all also checked against the contract by the clients) and by the rows in the database, read
behind the service's back (``tests.support.db``). A rejected request must leave every row
exactly as it was. Tenant isolation is ``test_tenants.py``'s.

The module runs one live server per backend for all its tests (``module_server``: a server
per test would cost ~0.3 s each); each test gets a tenant of its own (``fresh_tenant``),
which starts without items, and fresh keys for it (``fresh_writer``, ``fresh_reader``).
"""

from __future__ import annotations

import math
import unicodedata
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from model.invariants import QTY_MAX
from service.http.spec import SPEC_PATH
from tests.support import db
from tests.support.contract import ContractClient
from tests.support.db import Database
from tests.support.problems import (
    METHOD_NOT_ALLOWED,
    NAME_TAKEN,
    NOT_FOUND,
    OUT_OF_RANGE,
    PRECONDITION_FAILED,
    VALIDATION,
    assert_problem,
    error_fields,
)

ITEM_COLUMNS = {"id", "tenant", "name", "name_key", "qty", "version", "created_at", "updated_at"}


# --- helpers -------------------------------------------------------------------------


def create(client: ContractClient, name: str, qty: int = 5) -> dict[str, Any]:
    """Create an item, which must succeed; the created item."""
    response = client.post("/items", json={"name": name, "qty": qty})
    assert response.status_code == 201, response.text
    item: dict[str, Any] = response.json()
    return item


def row(module_database: Database, item_id: str) -> dict[str, Any] | None:
    """The stored row of ``item_id`` (of whichever tenant), or None."""
    return next((r for r in db.items(module_database) if r["id"] == item_id), None)


def walk(client: ContractClient, query: str) -> list[list[dict[str, Any]]]:
    """Every page of ``GET /items?<query>``, following ``next_cursor`` to its end."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while len(pages) <= 1000:
        suffix = "" if cursor is None else f"&cursor={cursor}"
        response = client.get(f"/items?{query}{suffix}")
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError("next_cursor never became null")


def names(items: list[dict[str, Any]]) -> list[str]:
    return [item["name"] for item in items]


def missing_id() -> str:
    """A well-formed item id that names no item."""
    return str(uuid.uuid4())


# --- createItem ----------------------------------------------------------------------


def test_create_answers_201_with_location_etag_and_the_stored_item(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    response = fresh_writer.post("/items", json={"name": "apple", "qty": 5})

    assert response.status_code == 201
    item = response.json()
    assert response.headers["Location"] == f"/items/{item['id']}"
    assert response.headers["ETag"] == '"1"'
    assert item["name"] == "apple"
    assert item["qty"] == 5
    assert item["version"] == 1
    assert item["created_at"] == item["updated_at"]
    assert db.items(module_database, fresh_tenant) == [
        {**item, "tenant": fresh_tenant, "name_key": "apple"},
    ]
    assert fresh_writer.get(response.headers["Location"]).json() == item


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("  apple  ", "apple"),
        ("apple\n", "apple"),
        ("\t\u3000apple\u2003", "apple"),
        ("cafe\u0301", "caf\u00e9"),
        ("\u212bngstr\u00f6m", "\u00c5ngstr\u00f6m"),
        ("x" * 200, "x" * 200),
    ],
    ids=["padded", "newline", "unicode-spaces", "nfd", "angstrom-sign", "200-code-points"],
)
def test_create_stores_the_name_nfc_normalized_and_stripped_with_its_case_fold(
    fresh_writer: ContractClient,
    module_database: Database,
    sent: str,
    stored: str,
    fresh_tenant: str,
) -> None:
    item = create(fresh_writer, sent)

    assert item["name"] == stored
    [stored_row] = db.items(module_database, fresh_tenant)
    assert stored_row["name"] == stored
    assert stored_row["name_key"] == stored.casefold()
    assert unicodedata.is_normalized("NFC", stored_row["name"])


@pytest.mark.parametrize("qty", [0, QTY_MAX])
def test_create_accepts_every_quantity_from_zero_to_qty_max(
    fresh_writer: ContractClient, module_database: Database, qty: int, fresh_tenant: str
) -> None:
    item = create(fresh_writer, "apple", qty)

    assert item["qty"] == qty
    assert [r["qty"] for r in db.items(module_database, fresh_tenant)] == [qty]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=utf-8",
        "application/json; charset=UTF-8",
        "Application/JSON",
    ],
)
def test_create_accepts_json_declared_in_any_spelling_of_utf_8(
    fresh_writer: ContractClient, module_database: Database, content_type: str, fresh_tenant: str
) -> None:
    response = fresh_writer.post(
        "/items", data=b'{"name":"apple","qty":5}', headers={"Content-Type": content_type}
    )

    assert response.status_code == 201, response.text
    assert names(db.items(module_database, fresh_tenant)) == ["apple"]


def test_create_accepts_a_body_of_exactly_64_kib(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    body = b'{"name":"apple","qty":5}'
    body = body[:-1] + b" " * (64 * 1024 - len(body)) + b"}"
    assert len(body) == 64 * 1024

    response = fresh_writer.post("/items", data=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 201, response.text
    assert names(db.items(module_database, fresh_tenant)) == ["apple"]


# --- getItem -------------------------------------------------------------------------


def test_get_returns_the_stored_item_with_its_current_etag(
    fresh_writer: ContractClient, fresh_reader: ContractClient, module_database: Database
) -> None:
    item = create(fresh_writer, "apple")
    adjusted = fresh_writer.post(f"/items/{item['id']}/adjustments", json={"delta": 2}).json()

    response = fresh_reader.get(f"/items/{item['id']}")

    assert response.status_code == 200
    assert response.headers["ETag"] == '"2"'
    assert response.json() == adjusted
    stored = row(module_database, item["id"])
    assert stored is not None
    assert response.json() == {k: v for k, v in stored.items() if k not in {"tenant", "name_key"}}


def test_get_of_a_missing_item_is_404(fresh_reader: ContractClient) -> None:
    assert_problem(fresh_reader.get(f"/items/{missing_id()}"), 404, NOT_FOUND)


# --- listItems -----------------------------------------------------------------------

LISTED = [
    "banana",
    "Apple",
    "cherry",
    "apple pie",
    "\u00c9clair",
    "zebra",
    "Zulu",
    "\u00e4pfel",
    "a",
    "Stra\u00dfe",
    "straw",
    "10 nails",
    "9 screws",
]


def test_list_orders_items_by_case_folded_name_in_code_point_order(
    fresh_writer: ContractClient,
    fresh_reader: ContractClient,
    module_database: Database,
    fresh_tenant: str,
) -> None:
    for name in LISTED:
        create(fresh_writer, name)

    page = fresh_reader.get("/items").json()

    # Code-point order of the case fold: "10" < "9", "strasse" < "straw", "zulu" < "äpfel"
    # < "éclair" (no locale collation, and casefold, not lower, for "Straße").
    expected = sorted(LISTED, key=str.casefold)
    assert names(page["items"]) == expected
    assert expected.index("Stra\u00dfe") < expected.index("straw")
    assert page["next_cursor"] is None
    assert names(db.items(module_database, fresh_tenant)) == expected


@pytest.mark.parametrize("limit", [1, 3, 5, 1000])
def test_walking_the_pages_yields_every_item_exactly_once_in_order(
    fresh_writer: ContractClient,
    fresh_reader: ContractClient,
    module_database: Database,
    limit: int,
    fresh_tenant: str,
) -> None:
    for i in range(10):
        create(fresh_writer, f"item {(i * 7) % 10}")

    pages = walk(fresh_reader, f"limit={limit}")

    assert len(pages) == math.ceil(10 / limit)
    assert all(len(page) == limit for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= limit
    walked = [item["id"] for page in pages for item in page]
    assert walked == [r["id"] for r in db.items(module_database, fresh_tenant)]
    assert len(set(walked)) == 10


def test_a_page_without_limit_holds_100_items(
    fresh_writer: ContractClient, fresh_reader: ContractClient
) -> None:
    with ThreadPoolExecutor(8) as pool:  # concurrent writes share commits: quicker
        list(pool.map(lambda i: create(fresh_writer, f"item {i:03d}"), range(101)))

    first = fresh_reader.get("/items").json()
    second = fresh_reader.get(f"/items?cursor={first['next_cursor']}").json()

    assert len(first["items"]) == 100
    assert names(second["items"]) == ["item 100"]
    assert second["next_cursor"] is None


def test_a_cursor_stays_valid_across_writes_and_never_revisits_items(
    fresh_writer: ContractClient, fresh_reader: ContractClient
) -> None:
    for name in ("b", "d", "f"):
        create(fresh_writer, name)
    first = fresh_reader.get("/items?limit=2").json()
    for name in ("a", "c", "e"):
        create(fresh_writer, name)

    rest = walk(fresh_reader, f"limit=2&cursor={first['next_cursor']}")

    assert names(first["items"]) == ["b", "d"]
    assert [names(page) for page in rest] == [["e", "f"]]


PREFIXED = [
    "Apple",
    "apple pie",
    "Applesauce",
    "banana",
    "caf\u00e9 au lait",
    "Cafeteria",
    "Stra\u00dfe",
]


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("app", ["Apple", "apple pie", "Applesauce"]),
        ("APP", ["Apple", "apple pie", "Applesauce"]),
        ("apple ", ["apple pie"]),
        ("caf\u00e9", ["caf\u00e9 au lait"]),
        ("cafe\u0301", ["caf\u00e9 au lait"]),
        ("CAF\u00c9", ["caf\u00e9 au lait"]),
        ("cafe", ["Cafeteria"]),
        ("STRASSE", ["Stra\u00dfe"]),
        ("", sorted(PREFIXED, key=str.casefold)),
    ],
    ids=[
        "lower",
        "upper",
        "not-stripped",
        "nfc",
        "nfd",
        "upper-nfc",
        "no-accent",
        "fold",
        "empty",
    ],
)
def test_name_prefix_matches_the_start_of_the_case_folded_nfc_name(
    fresh_writer: ContractClient, fresh_reader: ContractClient, prefix: str, expected: list[str]
) -> None:
    for name in PREFIXED:
        create(fresh_writer, name)

    response = fresh_reader.get("/items", params={"name_prefix": prefix})

    assert response.status_code == 200
    assert names(response.json()["items"]) == expected


def test_name_prefix_pages_walk_only_the_matching_items(
    fresh_writer: ContractClient, fresh_reader: ContractClient
) -> None:
    for name in PREFIXED:
        create(fresh_writer, name)

    pages = walk(fresh_reader, "limit=1&name_prefix=APP")

    assert [names(page) for page in pages] == [["Apple"], ["apple pie"], ["Applesauce"]]


def test_a_name_prefix_no_name_can_hold_finds_nothing(
    fresh_writer: ContractClient, fresh_reader: ContractClient
) -> None:
    create(fresh_writer, "apple")

    response = fresh_reader.get("/items", params={"name_prefix": "\x00"})

    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("limit", [1, 1000])
def test_limit_accepts_1_to_1000(
    fresh_writer: ContractClient, fresh_reader: ContractClient, limit: int
) -> None:
    for name in ("a", "b", "c"):
        create(fresh_writer, name)

    page = fresh_reader.get(f"/items?limit={limit}").json()

    assert names(page["items"]) == ["a", "b", "c"][:limit]
    assert (page["next_cursor"] is None) == (limit >= 3)


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "abc", "", "99999999999999999999999"])
def test_a_limit_outside_1_to_1000_is_400(fresh_reader: ContractClient, limit: str) -> None:
    problem = assert_problem(fresh_reader.get(f"/items?limit={limit}"), 400, VALIDATION)

    assert "query.limit" in error_fields(problem)


@pytest.mark.parametrize(
    "cursor",
    ["!!!", "A", "_w", "AA", "", "A" * 2000],
    ids=["not-base64url", "bad-length", "not-utf8", "nul-key", "empty", "too-long"],
)
def test_a_garbage_cursor_is_400(
    fresh_writer: ContractClient, fresh_reader: ContractClient, cursor: str
) -> None:
    create(fresh_writer, "apple")

    problem = assert_problem(fresh_reader.get(f"/items?cursor={cursor}"), 400, VALIDATION)

    assert "query.cursor" in error_fields(problem)


def test_one_400_names_a_bad_limit_and_a_cursor_we_never_issued_together(
    fresh_reader: ContractClient,
) -> None:
    problem = assert_problem(fresh_reader.get("/items?limit=0&cursor=AQ"), 400, VALIDATION)

    assert error_fields(problem) == {"query.limit", "query.cursor"}


def test_a_name_prefix_over_200_characters_is_400(fresh_reader: ContractClient) -> None:
    problem = assert_problem(
        fresh_reader.get("/items", params={"name_prefix": "a" * 201}), 400, VALIDATION
    )

    assert "query.name_prefix" in error_fields(problem)


# --- updateItem ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "name", "qty"),
    [
        ({"name": "pear"}, "pear", 5),
        ({"qty": 12}, "apple", 12),
        ({"name": "pear", "qty": 0}, "pear", 0),
        ({"name": " Pe\u0301ar\n"}, "P\u00e9ar", 5),
        ({"qty": QTY_MAX}, "apple", QTY_MAX),
    ],
    ids=["name", "qty", "both", "normalized-name", "qty-max"],
)
def test_update_changes_exactly_the_fields_sent_and_bumps_the_version(
    fresh_writer: ContractClient,
    module_database: Database,
    change: dict[str, Any],
    name: str,
    qty: int,
    fresh_tenant: str,
) -> None:
    item = create(fresh_writer, "apple", 5)

    response = fresh_writer.patch(f"/items/{item['id']}", json=change)

    assert response.status_code == 200, response.text
    assert response.headers["ETag"] == '"2"'
    updated = response.json()
    assert (updated["name"], updated["qty"], updated["version"]) == (name, qty, 2)
    assert updated["created_at"] == item["created_at"]
    assert updated["updated_at"] >= item["updated_at"]
    assert db.items(module_database, fresh_tenant) == [
        {**updated, "tenant": fresh_tenant, "name_key": name.casefold()},
    ]


def test_an_update_that_changes_nothing_still_bumps_the_version(
    fresh_writer: ContractClient, module_database: Database
) -> None:
    item = create(fresh_writer, "apple", 5)

    first = fresh_writer.patch(f"/items/{item['id']}", json={"name": "apple", "qty": 5})
    second = fresh_writer.patch(f"/items/{item['id']}", json={"qty": 5})

    assert [first.json()["version"], second.json()["version"]] == [2, 3]
    assert second.headers["ETag"] == '"3"'
    stored = row(module_database, item["id"])
    assert stored is not None
    assert (stored["name"], stored["qty"], stored["version"]) == ("apple", 5, 3)


def test_renaming_an_item_to_a_case_variant_of_its_own_name_is_allowed(
    fresh_writer: ContractClient, module_database: Database
) -> None:
    item = create(fresh_writer, "apple")

    response = fresh_writer.patch(f"/items/{item['id']}", json={"name": "APPLE"})

    assert response.status_code == 200, response.text
    stored = row(module_database, item["id"])
    assert stored is not None
    assert (stored["name"], stored["name_key"], stored["version"]) == ("APPLE", "apple", 2)


PAST_ANY_VERSION = '"9223372036854775808"'  # 2^63: no item's version, nor a database integer


@pytest.mark.parametrize(
    "if_match",
    ['"2"', '"1", "2"', "*", f'{PAST_ANY_VERSION}, "2"'],
    ids=["current", "list", "star", "list-with-a-tag-past-any-version"],
)
def test_an_update_whose_if_match_matches_applies(
    fresh_writer: ContractClient, module_database: Database, if_match: str
) -> None:
    item = create(fresh_writer, "apple")
    fresh_writer.patch(f"/items/{item['id']}", json={"qty": 6})

    response = fresh_writer.patch(
        f"/items/{item['id']}", json={"qty": 7}, headers={"If-Match": if_match}
    )

    assert response.status_code == 200, response.text
    assert response.headers["ETag"] == '"3"'
    stored = row(module_database, item["id"])
    assert stored is not None
    assert (stored["qty"], stored["version"]) == (7, 3)


@pytest.mark.parametrize(
    "if_match",
    ['"1"', '"3"', 'W/"2"', 'W/"1"', "2", PAST_ANY_VERSION],
    ids=["stale", "future", "weak-current", "weak-stale", "unquoted", "past-any-version"],
)
def test_an_update_whose_if_match_does_not_match_is_412_and_changes_nothing(
    fresh_writer: ContractClient, module_database: Database, if_match: str
) -> None:
    item = create(fresh_writer, "apple")
    fresh_writer.patch(f"/items/{item['id']}", json={"qty": 6})
    before = db.snapshot(module_database)

    response = fresh_writer.patch(
        f"/items/{item['id']}", json={"name": "pear", "qty": 7}, headers={"If-Match": if_match}
    )

    assert_problem(response, 412, PRECONDITION_FAILED)
    assert db.snapshot(module_database) == before


@pytest.mark.parametrize("if_match", [None, '"1"'], ids=["plain", "if-match"])
def test_an_update_of_a_missing_item_is_404_and_changes_nothing(
    fresh_writer: ContractClient, module_database: Database, if_match: str | None
) -> None:
    create(fresh_writer, "apple")
    before = db.snapshot(module_database)
    headers = {} if if_match is None else {"If-Match": if_match}

    response = fresh_writer.patch(f"/items/{missing_id()}", json={"qty": 1}, headers=headers)

    assert_problem(response, 404, NOT_FOUND)
    assert db.snapshot(module_database) == before


# --- deleteItem ----------------------------------------------------------------------


def test_delete_answers_204_and_removes_the_row(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    item = create(fresh_writer, "apple")
    keep = create(fresh_writer, "pear")

    response = fresh_writer.delete(f"/items/{item['id']}")

    assert response.status_code == 204
    assert response.content == b""
    assert [r["id"] for r in db.items(module_database, fresh_tenant)] == [keep["id"]]
    assert_problem(fresh_writer.get(f"/items/{item['id']}"), 404, NOT_FOUND)


def test_deleting_again_is_204_and_changes_nothing(
    fresh_writer: ContractClient, module_database: Database
) -> None:
    item = create(fresh_writer, "apple")
    create(fresh_writer, "pear")
    assert fresh_writer.delete(f"/items/{item['id']}").status_code == 204
    before = db.snapshot(module_database)

    response = fresh_writer.delete(f"/items/{item['id']}")

    assert response.status_code == 204
    assert db.snapshot(module_database) == before


def test_deleting_an_id_that_never_existed_is_204_and_changes_nothing(
    fresh_writer: ContractClient, module_database: Database
) -> None:
    create(fresh_writer, "apple")
    before = db.snapshot(module_database)

    response = fresh_writer.delete(f"/items/{missing_id()}")

    assert response.status_code == 204
    assert db.snapshot(module_database) == before


def test_a_name_is_free_again_once_its_item_is_deleted(
    fresh_writer: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    item = create(fresh_writer, "apple")
    fresh_writer.delete(f"/items/{item['id']}")

    again = create(fresh_writer, "APPLE")

    assert again["id"] != item["id"]
    assert [(r["id"], r["name"]) for r in db.items(module_database, fresh_tenant)] == [
        (again["id"], "APPLE")
    ]


# --- adjustItem ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "delta", "end"),
    [
        (5, 3, 8),
        (5, -2, 3),
        (5, -5, 0),
        (QTY_MAX - 1, 1, QTY_MAX),
        (0, QTY_MAX, QTY_MAX),
        (QTY_MAX, -QTY_MAX, 0),
    ],
    ids=["add", "subtract", "to-zero", "to-max", "zero-to-max", "max-to-zero"],
)
def test_an_adjustment_adds_the_delta_and_bumps_the_version(
    fresh_writer: ContractClient, module_database: Database, start: int, delta: int, end: int
) -> None:
    item = create(fresh_writer, "apple", start)

    response = fresh_writer.post(f"/items/{item['id']}/adjustments", json={"delta": delta})

    assert response.status_code == 200, response.text
    assert response.headers["ETag"] == '"2"'
    assert (response.json()["qty"], response.json()["version"]) == (end, 2)
    stored = row(module_database, item["id"])
    assert stored is not None
    assert (stored["qty"], stored["version"]) == (end, 2)


@pytest.mark.parametrize(
    ("start", "delta"),
    [(5, -6), (0, -1), (QTY_MAX, 1), (1, QTY_MAX)],
    ids=["below-zero", "zero-minus-one", "max-plus-one", "over-max"],
)
def test_an_adjustment_leaving_the_quantity_range_is_409_and_changes_nothing(
    fresh_writer: ContractClient, module_database: Database, start: int, delta: int
) -> None:
    item = create(fresh_writer, "apple", start)
    before = db.snapshot(module_database)

    response = fresh_writer.post(f"/items/{item['id']}/adjustments", json={"delta": delta})

    assert_problem(response, 409, OUT_OF_RANGE)
    assert db.snapshot(module_database) == before


def test_an_adjustment_of_a_missing_item_is_404_and_changes_nothing(
    fresh_writer: ContractClient, module_database: Database
) -> None:
    create(fresh_writer, "apple")
    before = db.snapshot(module_database)

    response = fresh_writer.post(f"/items/{missing_id()}/adjustments", json={"delta": 1})

    assert_problem(response, 404, NOT_FOUND)
    assert db.snapshot(module_database) == before


@pytest.mark.parametrize("reason", ["  sold to Zo\u00eb \n", "r" * 200])
def test_an_adjustment_stores_its_reason_normalized_with_its_event_not_on_the_item(
    fresh_writer: ContractClient, module_database: Database, reason: str, fresh_tenant: str
) -> None:
    item = create(fresh_writer, "apple", 5)

    response = fresh_writer.post(
        f"/items/{item['id']}/adjustments", json={"delta": -2, "reason": reason}
    )

    assert response.status_code == 200, response.text
    assert response.json()["qty"] == 3
    [stored] = db.items(module_database, fresh_tenant)
    assert set(stored) == ITEM_COLUMNS
    assert (stored["qty"], stored["version"]) == (3, 2)
    created, adjusted = db.events(module_database, fresh_tenant)
    assert (created["type"], created["reason"]) == ("created", None)
    assert (adjusted["type"], adjusted["delta"], adjusted["qty"]) == ("adjusted", -2, 3)
    assert adjusted["reason"] == reason.strip()


# --- meta routes and routing errors --------------------------------------------------


def test_healthz_answers_without_a_key(module_anonymous: ContractClient) -> None:
    response = module_anonymous.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_the_contract_is_served_without_a_key(module_anonymous: ContractClient) -> None:
    response = module_anonymous.get("/openapi.yaml")

    assert response.status_code == 200
    assert response.headers["Content-Type"].split(";")[0] == "application/yaml"
    assert response.content == SPEC_PATH.read_bytes()


@pytest.mark.parametrize("path", ["/nowhere", "/item", "/items/", "/items/{id}/nope"])
def test_an_unknown_path_is_a_404_problem(fresh_writer: ContractClient, path: str) -> None:
    response = fresh_writer.get(path.replace("{id}", missing_id()))

    assert_problem(response, 404, NOT_FOUND)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/items", {"GET", "POST"}),
        ("PUT", "/items/{id}", {"GET", "PATCH", "DELETE"}),
        ("GET", "/items/{id}/adjustments", {"POST"}),
        ("POST", "/healthz", {"GET"}),
        ("DELETE", "/openapi.yaml", {"GET"}),
    ],
)
def test_a_wrong_method_is_405_with_allow_and_changes_nothing(
    fresh_writer: ContractClient,
    module_database: Database,
    method: str,
    path: str,
    allowed: set[str],
) -> None:
    item = create(fresh_writer, "apple")
    before = db.snapshot(module_database)

    response = fresh_writer.request(method, path.replace("{id}", item["id"]), json={"qty": 1})

    assert_problem(response, 405, METHOD_NOT_ALLOWED)
    assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed
    assert db.snapshot(module_database) == before


# --- unique names --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("existing", "duplicate"),
    [
        ("Apple", "Apple"),
        ("Apple", "apple"),
        ("apple", "APPLE"),
        ("apple", "  apple \n"),
        ("caf\u00e9", "cafe\u0301"),
        ("cafe\u0301", "CAF\u00c9"),
        ("Stra\u00dfe", "STRASSE"),
        ("\u00c5ngstr\u00f6m", "\u212bngstr\u00f6m"),
    ],
    ids=["exact", "case", "upper", "padded", "nfd", "nfd-stored-upper", "casefold", "compat"],
)
def test_creating_a_duplicate_name_is_409_and_changes_nothing(
    fresh_writer: ContractClient, module_database: Database, existing: str, duplicate: str
) -> None:
    create(fresh_writer, existing)
    before = db.snapshot(module_database)

    response = fresh_writer.post("/items", json={"name": duplicate, "qty": 1})

    assert_problem(response, 409, NAME_TAKEN)
    assert db.snapshot(module_database) == before


@pytest.mark.parametrize("duplicate", ["Apple", "apple", "  APPLE\t"])
def test_renaming_to_another_items_name_is_409_and_changes_nothing(
    fresh_writer: ContractClient, module_database: Database, duplicate: str
) -> None:
    create(fresh_writer, "Apple")
    other = create(fresh_writer, "pear")
    before = db.snapshot(module_database)

    response = fresh_writer.patch(f"/items/{other['id']}", json={"name": duplicate, "qty": 9})

    assert_problem(response, 409, NAME_TAKEN)
    assert db.snapshot(module_database) == before


def test_renaming_onto_an_nfd_spelling_of_another_items_name_is_409(
    fresh_writer: ContractClient, module_database: Database
) -> None:
    create(fresh_writer, "caf\u00e9")
    other = create(fresh_writer, "tea")
    before = db.snapshot(module_database)

    response = fresh_writer.patch(f"/items/{other['id']}", json={"name": "CAFE\u0301"})

    assert_problem(response, 409, NAME_TAKEN)
    assert db.snapshot(module_database) == before
