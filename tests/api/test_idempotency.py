"""Idempotent retries (openapi.yaml, "Idempotent retries" and the ``IdempotencyKey``,
``IdempotentReplayed``, ``IdempotencyKeyReused`` and ``Conflict`` components).

Each test states one behaviour and checks it twice: by the answers (a replay is the first
answer's status, headers and body bytes, plus ``Idempotent-Replayed: true``, under a request
id of its own; every response is also checked against the contract by the clients) and by
the rows read behind the service's back (``tests.support.db``): items, events, keys and the
stored answers, which a retry must leave exactly as the first request left them. A stored
rejection (404, 409, 412) is replayed even once the request would now succeed; an answer
given before the store (400, 401, 403, 413, 415) is not kept, so the fixed request runs.

The module runs one live server per backend (``module_server``); each test gets a tenant of
its own (``fresh_tenant``) and an admin key for it (``admin``: it may make every keyed
write, ``createKey`` included).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import requests

from service.http.validation import MAX_BODY_BYTES
from tests.support import db
from tests.support.contract import ContractClient
from tests.support.db import Database, PostgresDatabase
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
IN_FLIGHT = PREFIX + "idempotency-in-flight"
HEADER_FIELD = "header.idempotency-key"
PER_REQUEST = frozenset({"date", "x-request-id", "idempotent-replayed"})
"""Headers a replay does not repeat: the time, and what belongs to each request."""
MISSING_ID = "01a21c5e-0000-7000-8000-000000000000"


# --- helpers -------------------------------------------------------------------------


@pytest.fixture
def admin(module_server: LiveServer, fresh_tenant: str) -> Iterator[ContractClient]:
    """An admin of ``fresh_tenant``."""
    with ContractClient(module_server.url, module_server.create_key(fresh_tenant, "admin")) as c:
        yield c


@dataclass(frozen=True)
class Write:
    """One write as a client sends it, to send again under an ``Idempotency-Key``."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    params: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def send(self, client: ContractClient, key: str | bytes, **headers: str) -> requests.Response:
        """This write under ``key`` (bytes: sent as they are), with ``headers`` added."""
        sent: dict[str, str | bytes] = {"Idempotency-Key": key, **self.headers, **headers}
        return client.request(
            self.method, self.path, json=self.json, params=self.params, headers=sent
        )


def create(client: ContractClient, name: str, qty: int = 5) -> dict[str, Any]:
    """Create an item without a key, which must succeed; the created item."""
    response = client.post("/items", json={"name": name, "qty": qty})
    assert response.status_code == 201, response.text
    item: dict[str, Any] = response.json()
    return item


def adjust(client: ContractClient, item_id: str, delta: int) -> dict[str, Any]:
    """Adjust an item without a key, which must succeed; the adjusted item."""
    response = client.post(f"/items/{item_id}/adjustments", json={"delta": delta})
    assert response.status_code == 200, response.text
    item: dict[str, Any] = response.json()
    return item


def state(database: Database) -> dict[str, list[Any]]:
    """Every row of every table, the stored answers included."""
    return {**db.snapshot(database), "idempotency": db.answers(database)}


def kept_headers(response: requests.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items() if k.lower() not in PER_REQUEST}


def assert_replay(first: requests.Response, again: requests.Response) -> None:
    """``again`` is ``first`` sent again as stored: status, headers and body bytes, marked as
    a replay, under a request id of its own."""
    assert "Idempotent-Replayed" not in first.headers, first.headers
    assert again.headers.get("Idempotent-Replayed") == "true", (again.status_code, again.text)
    assert again.status_code == first.status_code
    assert again.content == first.content
    assert kept_headers(again) == kept_headers(first)
    assert again.headers["X-Request-ID"] != first.headers["X-Request-ID"]


def new_events(
    before: list[dict[str, Any]], database: Database, tenant: str
) -> list[dict[str, Any]]:
    return db.events(database, tenant)[len(before) :]


# --- every keyed write: a retry replays, and changes nothing -------------------------


def write_of(operation: str, item_id: str) -> Write:
    """A keyed ``operation`` on the item ``item_id`` (qty 5, version 1), which succeeds."""
    item, at_1 = f"/items/{item_id}", {"If-Match": '"1"'}
    writes = {
        "createItem": Write("POST", "/items", {"name": "Nut", "qty": 3, "reason": "delivery"}),
        "updateItem": Write("PATCH", item, {"name": "Bolt M6", "qty": 9}, headers=at_1),
        "adjustItem": Write(
            "POST", f"{item}/adjustments", {"delta": -2, "reason": "sold"}, headers=at_1
        ),
        "deleteItem": Write("DELETE", item, params={"reason": "scrapped"}),
        "createKey": Write("POST", "/keys", {"role": "reader"}),
    }
    return writes[operation]


ANSWERS = {  # operation: (status, the type of the event it appends, if any)
    "createItem": (201, "created"),
    "updateItem": (200, "updated"),
    "adjustItem": (200, "adjusted"),
    "deleteItem": (204, "deleted"),
    "createKey": (201, None),
}


@pytest.mark.parametrize("operation", ANSWERS)
def test_a_retry_replays_the_first_answer_byte_for_byte_and_changes_nothing(
    admin: ContractClient, module_database: Database, fresh_tenant: str, operation: str
) -> None:
    item = create(admin, "Bolt")
    write = write_of(operation, item["id"])
    status, event_type = ANSWERS[operation]
    keys_before = [r for r in db.snapshot(module_database)["api_keys"] if fresh_tenant in r]
    events_before = db.events(module_database, fresh_tenant)

    first = write.send(admin, "retry-0042", **{"X-Request-ID": "first-try"})
    after_first = state(module_database)
    again = write.send(admin, "retry-0042", **{"X-Request-ID": "second-try"})

    assert first.status_code == status, first.text
    assert_replay(first, again)
    assert again.headers["X-Request-ID"] == "second-try"
    assert state(module_database) == after_first
    [answer] = db.answers(module_database, fresh_tenant)
    assert answer["key"] == "retry-0042"
    assert (answer["status"], answer["body"]) == (status, first.content)
    changes = new_events(events_before, module_database, fresh_tenant)
    if event_type is None:  # createKey: one key more, and no event
        keys_after = [r for r in after_first["api_keys"] if fresh_tenant in r]
        assert (len(keys_before), len(keys_after), changes) == (1, 2, [])
    else:
        assert [(e["type"], e["request_id"]) for e in changes] == [(event_type, "first-try")]


def test_a_replay_is_the_answer_as_first_sent_not_the_items_state_now(
    admin: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    item = create(admin, "Bolt", 5)
    write = Write("POST", f"/items/{item['id']}/adjustments", {"delta": -2})
    first = write.send(admin, "sale-1")
    restocked = adjust(admin, item["id"], 10)

    again = write.send(admin, "sale-1")

    assert_replay(first, again)
    assert (again.json()["qty"], again.json()["version"], again.headers["ETag"]) == (3, 2, '"2"')
    [row] = db.items(module_database, fresh_tenant)
    assert (row["qty"], row["version"]) == (restocked["qty"], restocked["version"]) == (13, 3)
    events = db.events(module_database, fresh_tenant)
    assert [(e["type"], e["delta"]) for e in events] == [
        ("created", 5), ("adjusted", -2), ("adjusted", 10),
    ]  # fmt: skip


def test_a_retried_create_key_gives_back_the_same_secret_and_makes_one_key(
    module_server: LiveServer, admin: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    first = admin.post("/keys", json={"role": "writer"}, headers={"Idempotency-Key": "onboard"})
    again = admin.post("/keys", json={"role": "writer"}, headers={"Idempotency-Key": "onboard"})

    assert first.status_code == 201, first.text
    assert_replay(first, again)
    secret = again.json()["key"]
    assert secret == first.json()["key"]
    keys = db.snapshot(module_database)["api_keys"]
    writers = [r for r in keys if r[1:3] == (fresh_tenant, "writer")]
    assert [r[0] for r in writers] == [db.key_id(secret)]
    with ContractClient(module_server.url, secret) as made:
        assert made.post("/items", json={"name": "apple", "qty": 1}).status_code == 201


def test_a_retried_delete_answers_204_again_and_appends_one_deleted_event(
    admin: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    item = create(admin, "Bolt")
    delete = Write("DELETE", f"/items/{item['id']}")

    first = delete.send(admin, "scrap-bolt")
    again = delete.send(admin, "scrap-bolt")
    once_more = delete.send(admin, "scrap-bolt")

    assert (first.status_code, first.content) == (204, b"")
    assert_replay(first, again)
    assert_replay(first, once_more)
    assert db.items(module_database, fresh_tenant) == []
    events = db.events(module_database, fresh_tenant)
    assert [e["type"] for e in events] == ["created", "deleted"]
    [answer] = db.answers(module_database, fresh_tenant)
    assert (answer["status"], answer["body"]) == (204, b"")


# --- the header: two forms of one key, and what is no key ----------------------------


@pytest.mark.parametrize(
    ("first_form", "second_form", "stored"),
    [
        ('"sale-0042"', "sale-0042", "sale-0042"),
        ("sale-0042", '"sale-0042"', "sale-0042"),
        ('"a\\"b"', 'a"b', 'a"b'),
        ('"a\\\\b"', "a\\b", "a\\b"),
        ('"' + "k" * 255 + '"', "k" * 255, "k" * 255),
    ],
    ids=["quoted-then-bare", "bare-then-quoted", "escaped-quote", "escaped-backslash", "255"],
)
def test_the_quoted_and_the_bare_form_name_the_same_key(
    admin: ContractClient,
    module_database: Database,
    fresh_tenant: str,
    first_form: str,
    second_form: str,
    stored: str,
) -> None:
    write = Write("POST", "/items", {"name": "apple", "qty": 5})

    first = write.send(admin, first_form)
    again = write.send(admin, second_form)

    assert first.status_code == 201, first.text
    assert_replay(first, again)
    assert [a["key"] for a in db.answers(module_database, fresh_tenant)] == [stored]
    assert len(db.items(module_database, fresh_tenant)) == 1


def test_a_quoted_key_may_hold_spaces_and_is_another_key_than_its_bare_words(
    admin: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    write = Write("POST", "/items", {"name": "apple", "qty": 5})

    spaced = write.send(admin, '"sale 42"')
    other = Write("POST", "/items", {"name": "pear", "qty": 5}).send(admin, "sale42")

    assert (spaced.status_code, other.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in other.headers
    assert [a["key"] for a in db.answers(module_database, fresh_tenant)] == ["sale 42", "sale42"]


MALFORMED = [
    pytest.param("", id="empty"),
    pytest.param('""', id="empty-quoted"),
    pytest.param("k" * 256, id="256-bare"),
    pytest.param('"' + "k" * 256 + '"', id="256-quoted"),
    pytest.param("sale 42", id="space-in-bare-token"),
    pytest.param("caf\u00e9".encode(), id="non-ascii-utf-8"),
    pytest.param("caf\u00e9", id="non-ascii-latin-1"),  # the one byte 0xE9
    pytest.param('"sale-42', id="unterminated-quote"),
    pytest.param('"sale"42"', id="unescaped-quote-inside"),
    pytest.param('"sale\\x42"', id="unknown-escape"),
]


@pytest.mark.parametrize("key", MALFORMED)
def test_a_malformed_key_is_400_naming_the_header_and_stores_nothing(
    admin: ContractClient, module_database: Database, key: str | bytes
) -> None:
    before = state(module_database)

    response = Write("POST", "/items", {"name": "apple", "qty": 5}).send(admin, key)

    problem = assert_problem(response, 400, VALIDATION)
    assert error_fields(problem) == {HEADER_FIELD}
    assert "Idempotent-Replayed" not in response.headers
    assert state(module_database) == before


# --- another request under a used key ------------------------------------------------


def reuses(a: str, b: str) -> dict[str, tuple[Write, Write]]:
    """For items ``a`` and ``b`` (qty 5, version 1): a first keyed write, which succeeds, and
    another request that must not pass for it under the same key."""
    adjust_a = f"/items/{a}/adjustments"
    return {
        "another-body": (
            Write("POST", "/items", {"name": "Nut", "qty": 3}),
            Write("POST", "/items", {"name": "Nut", "qty": 4}),
        ),
        "another-name": (
            Write("POST", "/items", {"name": "Nut", "qty": 3}),
            Write("POST", "/items", {"name": "NUT", "qty": 3}),
        ),
        "another-path": (
            Write("POST", adjust_a, {"delta": 1}),
            Write("POST", f"/items/{b}/adjustments", {"delta": 1}),
        ),
        "another-operation": (
            Write("POST", adjust_a, {"delta": 1}),
            Write("PATCH", f"/items/{a}", {"qty": 1}),
        ),
        "another-if-match": (
            Write("POST", adjust_a, {"delta": 1}, headers={"If-Match": '"1"'}),
            Write("POST", adjust_a, {"delta": 1}, headers={"If-Match": '"2"'}),
        ),
        "an-if-match-added": (
            Write("POST", adjust_a, {"delta": 1}),
            Write("POST", adjust_a, {"delta": 1}, headers={"If-Match": '"1"'}),
        ),
        "another-reason-in-the-body": (
            Write("POST", adjust_a, {"delta": 1, "reason": "sold"}),
            Write("POST", adjust_a, {"delta": 1, "reason": "lost"}),
        ),
        "another-reason-in-the-query": (
            Write("DELETE", f"/items/{a}", params={"reason": "scrapped"}),
            Write("DELETE", f"/items/{a}", params={"reason": "sold out"}),
        ),
        "another-role": (
            Write("POST", "/keys", {"role": "reader"}),
            Write("POST", "/keys", {"role": "admin"}),
        ),
    }


REUSES = list(reuses("a", "b"))


@pytest.mark.parametrize("case", REUSES)
def test_another_request_under_a_used_key_is_422_and_changes_nothing(
    admin: ContractClient, module_database: Database, case: str
) -> None:
    a, b = create(admin, "Bolt")["id"], create(admin, "Washer")["id"]
    first_write, other_write = reuses(a, b)[case]
    first = first_write.send(admin, "used")
    assert first.status_code in (200, 201, 204), first.text
    after_first = state(module_database)

    other = other_write.send(admin, "used")
    again = first_write.send(admin, "used")

    assert_problem(other, 422, KEY_REUSED)
    assert "Idempotent-Replayed" not in other.headers
    assert_replay(first, again)  # the record still answers its own request
    assert state(module_database) == after_first


@pytest.mark.parametrize(
    ("first_body", "second_body"),
    [
        ('{"name": "apple", "qty": 5}', '{"qty": 5, "name": "apple"}'),
        ('{"name": "apple", "qty": 5}', '{"name": " apple\\n", "qty": 5}'),
        ('{"name": "caf\\u00e9", "qty": 5}', '{"name": "cafe\\u0301", "qty": 5}'),
        ('{"name":"apple","qty":5}', '{ "name" : "\\u0061pple" ,\n  "qty" : 5 }'),
        (
            '{"name": "apple", "qty": 5, "reason": "delivery"}',
            '{"reason": "  delivery\\t", "qty": 5, "name": "apple"}',
        ),
    ],
    ids=["reordered-members", "padded-name", "nfd-name", "json-spelling", "padded-reason"],
)
def test_a_body_equal_once_normalized_is_the_same_request_and_replays(
    admin: ContractClient,
    module_database: Database,
    fresh_tenant: str,
    first_body: str,
    second_body: str,
) -> None:
    json_header = {"Content-Type": "application/json", "Idempotency-Key": "order-7"}

    first = admin.post("/items", data=first_body.encode(), headers=json_header)
    after_first = state(module_database)
    again = admin.post("/items", data=second_body.encode(), headers=json_header)

    assert first.status_code == 201, first.text
    assert_replay(first, again)
    assert state(module_database) == after_first
    assert len(db.items(module_database, fresh_tenant)) == 1


# --- rejections that reached the store are kept; those that did not are not ------------


def test_a_404_is_stored_and_replayed_and_the_retry_changes_nothing(
    admin: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    write = Write("POST", f"/items/{MISSING_ID}/adjustments", {"delta": 1})

    first = write.send(admin, "ghost")
    after_first = state(module_database)
    again = write.send(admin, "ghost")

    problem = assert_problem(first, 404, NOT_FOUND)
    assert_replay(first, again)
    assert again.json()["request_id"] == problem["request_id"] == first.headers["X-Request-ID"]
    assert state(module_database) == after_first
    [answer] = db.answers(module_database, fresh_tenant)
    assert (answer["status"], answer["body"]) == (404, first.content)
    assert db.events(module_database, fresh_tenant) == []


def test_a_409_name_taken_is_replayed_even_once_the_name_is_free(
    admin: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    apple = create(admin, "apple")
    write = Write("POST", "/items", {"name": "APPLE", "qty": 1})
    first = write.send(admin, "add-apple")
    assert admin.patch(f"/items/{apple['id']}", json={"name": "pear"}).status_code == 200
    before_retry = state(module_database)

    again = write.send(admin, "add-apple")

    assert_problem(first, 409, NAME_TAKEN)
    assert_replay(first, again)
    assert state(module_database) == before_retry
    assert [r["name"] for r in db.items(module_database, fresh_tenant)] == ["pear"]
    assert write.send(admin, "add-apple-again").status_code == 201  # it would run now


def test_a_409_out_of_range_is_replayed_even_after_a_restock(
    admin: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    item = create(admin, "Bolt", 1)
    write = Write("POST", f"/items/{item['id']}/adjustments", {"delta": -5})
    first = write.send(admin, "sell-5")
    adjust(admin, item["id"], 10)
    before_retry = state(module_database)

    again = write.send(admin, "sell-5")

    assert_problem(first, 409, OUT_OF_RANGE)
    assert_replay(first, again)
    assert state(module_database) == before_retry
    [row] = db.items(module_database, fresh_tenant)
    assert (row["qty"], row["version"]) == (11, 2)
    assert [a["status"] for a in db.answers(module_database, fresh_tenant)] == [409]
    sold = write.send(admin, "sell-5-again")  # it would run now
    assert (sold.status_code, sold.json()["qty"]) == (200, 6)


@pytest.mark.parametrize("operation", ["updateItem", "adjustItem"])
def test_a_412_is_replayed_even_once_the_item_reaches_the_version_it_named(
    admin: ContractClient, module_database: Database, fresh_tenant: str, operation: str
) -> None:
    item = create(admin, "Bolt", 5)
    path = f"/items/{item['id']}"
    write = (
        Write("PATCH", path, {"qty": 7}, headers={"If-Match": '"2"'})
        if operation == "updateItem"
        else Write("POST", f"{path}/adjustments", {"delta": 2}, headers={"If-Match": '"2"'})
    )
    first = write.send(admin, "when-at-2")
    adjust(admin, item["id"], 1)  # now at version 2
    before_retry = state(module_database)

    again = write.send(admin, "when-at-2")

    assert_problem(first, 412, PRECONDITION_FAILED)
    assert_replay(first, again)
    assert state(module_database) == before_retry
    [row] = db.items(module_database, fresh_tenant)
    assert (row["qty"], row["version"]) == (6, 2)
    assert write.send(admin, "when-at-2-again").status_code == 200  # it would run now


def _bad_body(server: LiveServer, tenant: str, admin: ContractClient) -> requests.Response:
    return admin.post("/items", json={"name": " ", "qty": -1}, headers={"Idempotency-Key": "k"})


def _no_key(server: LiveServer, tenant: str, admin: ContractClient) -> requests.Response:
    with ContractClient(server.url) as anonymous:
        return anonymous.post(
            "/items", json={"name": "apple", "qty": 5}, headers={"Idempotency-Key": "k"}
        )


def _reader(server: LiveServer, tenant: str, admin: ContractClient) -> requests.Response:
    with ContractClient(server.url, server.create_key(tenant, "reader")) as reader:
        return reader.post(
            "/items", json={"name": "apple", "qty": 5}, headers={"Idempotency-Key": "k"}
        )


def _too_large(server: LiveServer, tenant: str, admin: ContractClient) -> requests.Response:
    body = b'{"name": "apple", "qty": 5, "reason": "' + b"x" * MAX_BODY_BYTES + b'"}'
    headers = {"Content-Type": "application/json", "Idempotency-Key": "k"}
    return admin.post("/items", data=body, headers=headers)


def _not_json(server: LiveServer, tenant: str, admin: ContractClient) -> requests.Response:
    body = b'{"name": "apple", "qty": 5}'
    return admin.post(
        "/items", data=body, headers={"Content-Type": "text/plain", "Idempotency-Key": "k"}
    )


TURNED_AWAY: dict[str, tuple[Callable[..., requests.Response], int, str]] = {
    "400-invalid-body": (_bad_body, 400, VALIDATION),
    "401-no-api-key": (_no_key, 401, UNAUTHORIZED),
    "403-reader": (_reader, 403, FORBIDDEN),
    "413-too-large": (_too_large, 413, PREFIX + "payload-too-large"),
    "415-not-json": (_not_json, 415, PREFIX + "unsupported-media-type"),
}


def without_keys_of(rows: dict[str, list[Any]], tenant: str) -> dict[str, list[Any]]:
    """``rows`` (``state``) without the API keys of ``tenant`` (a test made one for a reader)."""
    return {**rows, "api_keys": [r for r in rows["api_keys"] if tenant not in r]}


@pytest.mark.parametrize("case", TURNED_AWAY)
def test_an_answer_given_before_the_store_is_not_kept_so_the_fixed_request_then_runs(
    module_server: LiveServer,
    admin: ContractClient,
    module_database: Database,
    fresh_tenant: str,
    case: str,
) -> None:
    send, status, kind = TURNED_AWAY[case]
    before = state(module_database)

    turned_away = send(module_server, fresh_tenant, admin)
    after_it = state(module_database)
    fixed = Write("POST", "/items", {"name": "apple", "qty": 5}).send(admin, "k")
    again = Write("POST", "/items", {"name": "apple", "qty": 5}).send(admin, "k")

    assert_problem(turned_away, status, kind)
    assert without_keys_of(after_it, fresh_tenant) == without_keys_of(before, fresh_tenant)
    assert fixed.status_code == 201, fixed.text
    assert "Idempotent-Replayed" not in fixed.headers
    assert_replay(fixed, again)
    assert [r["name"] for r in db.items(module_database, fresh_tenant)] == ["apple"]


# --- scope, expiry, If-Match on adjust, in flight ------------------------------------


def test_two_tenants_using_one_key_string_each_get_their_own_change(
    module_server: LiveServer, admin: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    other_tenant = f"{fresh_tenant}-other"
    write = Write("POST", "/items", {"name": "apple", "qty": 5})
    token = module_server.create_key(other_tenant, "writer")
    with ContractClient(module_server.url, token) as other:
        mine = write.send(admin, "shared-key")
        theirs = write.send(other, "shared-key")
        theirs_again = write.send(other, "shared-key")

    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in theirs.headers
    assert mine.json()["id"] != theirs.json()["id"]
    assert_replay(theirs, theirs_again)
    for tenant, answer in ((fresh_tenant, mine), (other_tenant, theirs)):
        assert [r["id"] for r in db.items(module_database, tenant)] == [answer.json()["id"]]
        assert [e["type"] for e in db.events(module_database, tenant)] == ["created"]
        [stored] = db.answers(module_database, tenant)
        assert (stored["key"], stored["body"]) == ("shared-key", answer.content)


def test_an_expired_answer_is_ignored_and_its_key_is_new_again(
    admin: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    first = Write("POST", "/items", {"name": "apple", "qty": 5}).send(admin, "monthly")
    [old] = db.answers(module_database, fresh_tenant)
    db.execute(
        module_database,
        "UPDATE idempotency SET created_at = '2000-01-01T00:00:00.000000Z'"
        f" WHERE tenant = '{fresh_tenant}'",
    )  # older than any retention time

    pear = Write("POST", "/items", {"name": "pear", "qty": 2})
    reused = pear.send(admin, "monthly")
    again = pear.send(admin, "monthly")

    assert first.status_code == 201
    assert reused.status_code == 201, reused.text
    assert "Idempotent-Replayed" not in reused.headers
    assert_replay(reused, again)
    [new] = db.answers(module_database, fresh_tenant)
    assert new["fingerprint"] != old["fingerprint"]
    assert new["body"] == reused.content
    assert new["created_at"] > old["created_at"]
    assert [r["name"] for r in db.items(module_database, fresh_tenant)] == ["apple", "pear"]


@pytest.mark.parametrize("key", [None, "adjust-{n}"], ids=["without-key", "with-key"])
def test_adjust_applies_under_the_current_etag_and_a_stale_one_is_412_changing_nothing(
    admin: ContractClient, module_database: Database, fresh_tenant: str, key: str | None
) -> None:
    item = create(admin, "Bolt", 5)
    path = f"/items/{item['id']}/adjustments"

    def send(n: int, if_match: str, target: str = path) -> requests.Response:
        headers = {"If-Match": if_match}
        if key is not None:
            headers["Idempotency-Key"] = key.format(n=n)
        return admin.post(target, json={"delta": -2}, headers=headers)

    current = send(1, '"1"')
    after_current = state(module_database)
    stale = send(2, '"1"')
    stale_state = state(module_database)
    missing = send(3, '"1"', f"/items/{MISSING_ID}/adjustments")

    assert current.status_code == 200, current.text
    assert (current.json()["qty"], current.json()["version"]) == (3, 2)
    assert current.headers["ETag"] == '"2"'
    problem = assert_problem(stale, 412, PRECONDITION_FAILED)
    assert '"2"' in problem["detail"]
    assert_problem(missing, 404, NOT_FOUND)  # a missing item is 404, not 412
    changed = {k: v for k, v in stale_state.items() if k != "idempotency"}
    assert changed == {k: v for k, v in after_current.items() if k != "idempotency"}
    [row] = db.items(module_database, fresh_tenant)
    assert (row["qty"], row["version"]) == (3, 2)
    assert [e["type"] for e in db.events(module_database, fresh_tenant)] == ["created", "adjusted"]
    expected = [] if key is None else [("adjust-1", 200), ("adjust-2", 412), ("adjust-3", 404)]
    assert [(a["key"], a["status"]) for a in db.answers(module_database, fresh_tenant)] == expected


# --- PostgreSQL: a key whose first request is still running ---------------------------


class RowLock:
    """A row of ``items`` locked by a transaction of the test's own (PostgreSQL), so that a
    request that changes the item waits, holding its Idempotency-Key, until ``release``."""

    def __init__(self, url: str, item_id: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._db: asyncpg.Connection = self._run(asyncpg.connect(url))
        self._run(self._db.execute("BEGIN"))
        self._run(self._db.execute("SELECT 1 FROM items WHERE id = $1 FOR UPDATE", item_id))

    def _run(self, coroutine: Any) -> Any:
        return self._loop.run_until_complete(coroutine)

    def waiters(self) -> int:
        """How many other sessions of this database wait for a lock right now."""
        query = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return int(self._run(self._db.fetchval(query)))

    def release(self) -> None:
        if not self._db.is_closed():
            self._run(self._db.execute("ROLLBACK"))
            self._run(self._db.close())
            self._loop.close()


@contextmanager
def row_locked(url: str, item_id: str) -> Iterator[RowLock]:
    lock = RowLock(url, item_id)
    try:
        yield lock
    finally:
        lock.release()


@pytest.mark.parametrize("module_server", ["sqlite"], indirect=True)
def test_a_request_while_its_key_is_in_flight_waits_its_turn_on_sqlite_and_replays(
    module_server: LiveServer, admin: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    """SQLite's one writer applies writes one after another: a second request with the key
    of one still waiting to be written is written after it, and replays its answer."""
    assert isinstance(module_database, Path)  # PostgreSQL answers 409: the test below
    item = create(admin, "Bolt", 5)
    write = Write("POST", f"/items/{item['id']}/adjustments", {"delta": -1})
    blocker = sqlite3.connect(module_database, timeout=10)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # the write lock: the service's writer waits
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(write.send, admin, "queued")
            time.sleep(0.3)  # the first is in the writer's batch, waiting for the lock
            second = pool.submit(write.send, admin, "queued")
            time.sleep(0.3)
            blocker.rollback()
            answers = [first.result(timeout=30), second.result(timeout=30)]
    finally:
        blocker.close()

    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert_replay(*answers)
    assert [e["type"] for e in db.events(module_database, fresh_tenant)] == ["created", "adjusted"]


@pytest.mark.parametrize("module_server", ["postgres"], indirect=True)
def test_a_request_while_its_key_is_in_flight_is_409_with_retry_after_then_replays(
    module_server: LiveServer, admin: ContractClient, module_database: Database, fresh_tenant: str
) -> None:
    assert isinstance(module_database, PostgresDatabase)  # SQLite: the test above
    item = create(admin, "Bolt", 5)
    write = Write("POST", f"/items/{item['id']}/adjustments", {"delta": -1})
    token = module_server.create_key(fresh_tenant, "writer")
    with (
        ContractClient(module_server.url, token) as first_client,
        row_locked(module_database.url, item["id"]) as lock,
        ThreadPoolExecutor(1) as pool,
    ):
        pending = pool.submit(write.send, first_client, "slow")
        deadline = time.monotonic() + 10
        while lock.waiters() == 0:  # it holds the key, and waits for the item's row
            assert time.monotonic() < deadline, "the first request never waited"
            time.sleep(0.01)
        during = state(module_database)
        in_flight = write.send(admin, "slow")
        unchanged = state(module_database) == during
        lock.release()
        first = pending.result(timeout=30)
    again = write.send(admin, "slow")

    assert_problem(in_flight, 409, IN_FLIGHT)
    assert unchanged
    assert in_flight.headers["Retry-After"].isdigit()
    assert "Idempotent-Replayed" not in in_flight.headers
    assert first.status_code == 200, first.text
    assert first.json()["qty"] == 4
    assert_replay(first, again)
    [row] = db.items(module_database, fresh_tenant)
    assert (row["qty"], row["version"]) == (4, 2)
    assert [e["type"] for e in db.events(module_database, fresh_tenant)] == ["created", "adjusted"]
    assert [a["status"] for a in db.answers(module_database, fresh_tenant)] == [200]
