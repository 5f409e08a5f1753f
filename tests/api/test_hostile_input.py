"""Hostile input: every malformed request gets a precise 4xx and changes nothing.

Each test sends one kind of bad input to every operation it applies to (createItem,
updateItem and adjustItem on an existing item; the four item-id operations for bad ids) and
checks each answer: a 4xx (never a 5xx), ``application/problem+json`` with ``type``,
``title``, ``status`` and ``detail``, for a 400 an ``errors`` list naming the offending
field, and the contract (``tests.support.contract.check_response``). Then it checks the
database: every row of every table exactly as before (``tests.support.db.snapshot``).

Requests are sent as raw bytes, so the bytes on the wire are exactly the ones written here
(``NaN``, lone-surrogate escapes, invalid UTF-8, duplicate keys).

The module runs one live server per backend (``module_server``) with one existing item
for all its tests, sent by one writer (``module_writer``); as every request here must
change nothing, the state after one test is the state before the next, and ``Ledger``
needs one snapshot per test.
"""

from __future__ import annotations

import gzip
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from model.invariants import QTY_MAX
from service.http import validation
from tests.support import db
from tests.support.contract import ContractClient, check_response
from tests.support.db import Database
from tests.support.problems import (
    NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    REQUEST_TIMEOUT,
    UNSUPPORTED_MEDIA_TYPE,
    VALIDATION,
    error_fields,
)
from tests.support.server import LiveServer

MAX_BODY = 64 * 1024
PROBLEM_TYPES = {
    400: VALIDATION,
    404: NOT_FOUND,
    413: PAYLOAD_TOO_LARGE,
    415: UNSUPPORTED_MEDIA_TYPE,
}
WHOLE_BODY = ""
"""The ``errors`` field of a body that is no JSON object at all (a JSON pointer to the root)."""


# --- what is sent where --------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """An operation with a body, and where each kind of value goes in that body."""

    name: str
    method: str
    path: str
    text: bytes  # ``@`` is where a name-like string goes
    text_field: str
    number: bytes  # ``@`` is where a quantity-like number goes
    number_field: str
    duplicate_key: bytes

    def url(self, item_id: str) -> str:
        return self.path.replace("{id}", item_id)


CREATE = Target(
    "createItem",
    "POST",
    "/items",
    b'{"name":@,"qty":1}',
    "/name",
    b'{"name":"hostile","qty":@}',
    "/qty",
    b'{"name":"a","name":"b","qty":1}',
)
UPDATE = Target(
    "updateItem",
    "PATCH",
    "/items/{id}",
    b'{"name":@}',
    "/name",
    b'{"qty":@}',
    "/qty",
    b'{"qty":1,"qty":2}',
)
ADJUST = Target(
    "adjustItem",
    "POST",
    "/items/{id}/adjustments",
    b'{"delta":1,"reason":@}',
    "/reason",
    b'{"delta":@}',
    "/delta",
    b'{"delta":1,"d\\u0065lta":1}',
)
TARGETS = (CREATE, UPDATE, ADJUST)
QUANTITY_TARGETS = (CREATE, UPDATE)


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_writer(module_server: LiveServer) -> Iterator[ContractClient]:
    """A writer of tenant acme on ``module_server``, for the whole module."""
    with ContractClient(module_server.url, module_server.create_key("acme", "writer")) as client:
        yield client


@pytest.fixture(scope="module")
def existing(module_writer: ContractClient) -> str:
    """The id of the item every PATCH and adjustment here is aimed at."""
    response = module_writer.post("/items", json={"name": "existing", "qty": 5})
    assert response.status_code == 201, response.text
    item_id: str = response.json()["id"]
    return item_id


class Ledger:
    """The database state no request of this module may change, checked after each test."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.state = db.snapshot(database)

    def assert_unchanged(self) -> None:
        """Every row of every table as it was before the test (then: as it is now)."""
        before, self.state = self.state, db.snapshot(self.database)
        assert self.state == before, "a rejected request changed the database"


@pytest.fixture(scope="module")
def ledger(module_server: LiveServer, module_writer: ContractClient, existing: str) -> Ledger:
    """Made after every write of the module's setup: the state all tests must keep."""
    return Ledger(module_server.database)


# --- sending and checking ------------------------------------------------------------


def send(
    client: ContractClient,
    method: str,
    path: str,
    body: Any = None,
    content_type: str | None = "application/json",
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """One request, exactly as given; never a 5xx, and always within the contract."""
    sent = {"Authorization": str(client.headers["Authorization"]), **(headers or {})}
    if content_type is not None:
        sent["Content-Type"] = content_type
    response = requests.request(method, client.base_url + path, data=body, headers=sent, timeout=30)
    assert response.status_code < 500, (
        f"{method} {path}: {response.status_code} {response.headers.get('Content-Type')}: "
        f"{response.text[:300]!r}"
    )
    check_response(response)
    return response


def problem_of(response: requests.Response, status: int) -> dict[str, Any]:
    """The problem document of ``response``; AssertionError unless it is a ``status`` one."""
    request = response.request
    where = f"{request.method} {request.url}"
    assert response.status_code == status, (
        f"{where}: expected {status}, got {response.status_code}: {response.text[:300]!r}"
    )
    assert response.headers["Content-Type"].split(";")[0] == "application/problem+json", where
    problem: dict[str, Any] = response.json()
    assert problem["type"] == PROBLEM_TYPES[status], (where, problem)
    assert problem["status"] == status, (where, problem)
    assert isinstance(problem["title"], str), (where, problem)
    assert problem["title"], (where, problem)
    assert isinstance(problem["detail"], str), (where, problem)
    assert problem["detail"], (where, problem)
    if status == 400:
        assert problem["errors"], (where, problem)
    return problem


def assert_rejected(response: requests.Response, status: int, *named: str | None) -> dict[str, Any]:
    """``status`` problem+json; for a 400, ``errors`` names each of ``named`` (None: any)."""
    problem = problem_of(response, status)
    for field in named:
        if field is not None:
            assert field in error_fields(problem), (response.request.url, field, problem["errors"])
    return problem


def with_value(template: bytes, value: bytes) -> bytes:
    return template.replace(b"@", value)


def each_target(
    targets: tuple[Target, ...],
    check: Callable[[Target, str], None],
    existing: str,
    ledger: Ledger,
) -> None:
    """Run ``check(target, path)`` for every target and check the database; then report
    every failure at once."""
    failures = []
    for target in targets:
        try:
            check(target, target.url(existing))
        except AssertionError as failure:
            failures.append(f"{target.name}: {failure}")
    try:
        ledger.assert_unchanged()
    except AssertionError as failure:
        failures.append(f"database: {failure}")
    assert not failures, "\n".join(failures)


# --- quantities ----------------------------------------------------------------------

NOT_A_QUANTITY = {
    "true": b"true",
    "false": b"false",
    "5.0": b"5.0",
    "5e0": b"5e0",
    "string": b'"5"',
    "null": b"null",
    "array": b"[5]",
    "negative": b"-1",
    "2**53": str(QTY_MAX + 1).encode(),
    "10**30": str(10**30).encode(),
}
NOT_JSON_NUMBERS = {
    "5000-digits": b"9" * 5000,
    "NaN": b"NaN",
    "Infinity": b"Infinity",
    "-Infinity": b"-Infinity",
}


@pytest.mark.parametrize("value", NOT_A_QUANTITY.values(), ids=NOT_A_QUANTITY.keys())
def test_a_quantity_that_is_no_integer_in_range_is_400_naming_it(
    module_writer: ContractClient, existing: str, ledger: Ledger, value: bytes
) -> None:
    def check(target: Target, path: str) -> None:
        response = send(module_writer, target.method, path, with_value(target.number, value))
        assert_rejected(response, 400, target.number_field)

    each_target(QUANTITY_TARGETS, check, existing, ledger)


@pytest.mark.parametrize("value", NOT_JSON_NUMBERS.values(), ids=NOT_JSON_NUMBERS.keys())
def test_a_number_json_does_not_allow_is_400(
    module_writer: ContractClient, existing: str, ledger: Ledger, value: bytes
) -> None:
    def check(target: Target, path: str) -> None:
        assert_rejected(
            send(module_writer, target.method, path, with_value(target.number, value)), 400
        )

    each_target(TARGETS, check, existing, ledger)


# --- names (and adjustment reasons, which are validated like names) ------------------

NOT_A_NAME = {
    "lone-high-surrogate": rb'"\ud800"',
    "lone-low-surrogate": rb'"ap\udfffple"',
    "nul": rb'"ap\u0000ple"',
    "bell": rb'"ap\u0007ple"',
    "inner-newline": rb'"ap\nple"',
    "delete": rb'"ap\u007fple"',
    "c1-next-line": rb'"ap\u0085ple"',
    "c1-csi": rb'"ap\u009bple"',
    "empty": b'""',
    "spaces": b'"   "',
    "ascii-whitespace": rb'"\t\n\r\u000b\u000c "',
    "unicode-spaces": rb'"\u3000\u2003 "',
    "201-code-points": b'"' + b"a" * 201 + b'"',
    "201-astral": b'"' + "\U0001f34e".encode() * 201 + b'"',
    "number": b"5",
    "null": b"null",
    "array": b'["apple"]',
}


@pytest.mark.parametrize("value", NOT_A_NAME.values(), ids=NOT_A_NAME.keys())
def test_a_name_that_breaks_the_invariants_is_400_naming_it(
    module_writer: ContractClient, existing: str, ledger: Ledger, value: bytes
) -> None:
    def check(target: Target, path: str) -> None:
        response = send(module_writer, target.method, path, with_value(target.text, value))
        assert_rejected(response, 400, target.text_field)

    each_target(TARGETS, check, existing, ledger)


# --- bodies that are no JSON object --------------------------------------------------

NOT_AN_OBJECT = {"array": b"[]", "string": b'"x"', "number": b"5", "null": b"null"}
NOT_UTF_8 = {
    "lone-byte": b"\xff",
    "truncated": b'"\xc3\x28"',
    "overlong": b'"\xc0\xaf"',
    "encoded-surrogate": b'"\xed\xa0\x80"',
    "latin-1": b'"caf\xe9"',
}
NOT_JSON = {
    "empty": b"",
    "open": b"{",
    "single-quotes": b"{'name':'a','qty':1}",
    "trailing-comma": b'{"name":"a","qty":1,}',
    "trailing-data": b'{"name":"a","qty":1} x',
    "bare-keys": b'{name:"a",qty:1}',
    "byte-order-mark": b'\xef\xbb\xbf{"name":"a","qty":1}',
}


@pytest.mark.parametrize("body", NOT_AN_OBJECT.values(), ids=NOT_AN_OBJECT.keys())
def test_a_json_body_that_is_no_object_is_400(
    module_writer: ContractClient, existing: str, ledger: Ledger, body: bytes
) -> None:
    def check(target: Target, path: str) -> None:
        assert_rejected(send(module_writer, target.method, path, body), 400, WHOLE_BODY)

    each_target(TARGETS, check, existing, ledger)


@pytest.mark.parametrize("value", NOT_UTF_8.values(), ids=NOT_UTF_8.keys())
def test_a_body_that_is_no_utf_8_is_400(
    module_writer: ContractClient, existing: str, ledger: Ledger, value: bytes
) -> None:
    def check(target: Target, path: str) -> None:
        assert_rejected(
            send(module_writer, target.method, path, with_value(target.text, value)), 400
        )

    each_target(TARGETS, check, existing, ledger)


@pytest.mark.parametrize("body", NOT_JSON.values(), ids=NOT_JSON.keys())
def test_a_body_that_is_no_json_is_400(
    module_writer: ContractClient, existing: str, ledger: Ledger, body: bytes
) -> None:
    def check(target: Target, path: str) -> None:
        assert_rejected(send(module_writer, target.method, path, body), 400)

    each_target(TARGETS, check, existing, ledger)


def test_a_duplicate_key_is_400_even_when_spelled_with_an_escape(
    module_writer: ContractClient, existing: str, ledger: Ledger
) -> None:
    def check(target: Target, path: str) -> None:
        assert_rejected(send(module_writer, target.method, path, target.duplicate_key), 400)

    each_target(TARGETS, check, existing, ledger)


# --- nesting and size ----------------------------------------------------------------

NESTED_BODIES = {
    "64-KiB-of-open-brackets": b"[" * MAX_BODY,
    "32768-deep-array": b"[" * (MAX_BODY // 2) + b"]" * (MAX_BODY // 2),
}
NESTED_VALUES = {
    "5000-deep-array": b"[" * 5000 + b"]" * 5000,
    "5000-deep-object": b'{"a":' * 5000 + b"1" + b"}" * 5000,
    "300-deep-array": b"[" * 300 + b"]" * 300,
    "300-deep-object": b'{"a":' * 300 + b"1" + b"}" * 300,
}


@pytest.mark.parametrize("body", NESTED_BODIES.values(), ids=NESTED_BODIES.keys())
def test_a_deeply_nested_body_within_64_kib_is_400(
    module_writer: ContractClient, existing: str, ledger: Ledger, body: bytes
) -> None:
    assert len(body) <= MAX_BODY

    def check(target: Target, path: str) -> None:
        assert_rejected(send(module_writer, target.method, path, body), 400)

    each_target(TARGETS, check, existing, ledger)


@pytest.mark.parametrize("value", NESTED_VALUES.values(), ids=NESTED_VALUES.keys())
def test_a_deeply_nested_field_value_is_400(
    module_writer: ContractClient, existing: str, ledger: Ledger, value: bytes
) -> None:
    def check(target: Target, path: str) -> None:
        assert_rejected(
            send(module_writer, target.method, path, with_value(target.number, value)), 400
        )

    each_target(TARGETS, check, existing, ledger)


def _chunks(size: int) -> Iterator[bytes]:
    """A body sent chunked, without Content-Length."""
    yield b'{"name":"'
    for _ in range(size // 1024):
        yield b"a" * 1024
    yield b'","qty":1}'


OVERSIZED: dict[str, tuple[Any, dict[str, str]]] = {
    "64-KiB-plus-1": (b'{"name":"a","qty":1}' + b" " * (MAX_BODY + 1 - 20), {}),
    "long-name": (b'{"name":"' + b"a" * 70_000 + b'","qty":1}', {}),
    "100000-open-brackets": (b"[" * 100_000, {}),
    "gzip-bomb": (
        gzip.compress(b'{"name":"' + b"a" * (10 << 20) + b'","qty":1}'),
        {"Content-Encoding": "gzip"},
    ),
}


@pytest.mark.parametrize(("body", "headers"), OVERSIZED.values(), ids=OVERSIZED.keys())
def test_a_body_over_64_kib_is_413(
    module_writer: ContractClient,
    existing: str,
    ledger: Ledger,
    body: bytes,
    headers: dict[str, str],
) -> None:
    def check(target: Target, path: str) -> None:
        assert_rejected(send(module_writer, target.method, path, body, headers=headers), 413)

    each_target(TARGETS, check, existing, ledger)


def test_a_chunked_body_over_64_kib_is_413(
    module_writer: ContractClient, existing: str, ledger: Ledger
) -> None:
    def check(target: Target, path: str) -> None:
        assert_rejected(send(module_writer, target.method, path, _chunks(100 * 1024)), 413)

    each_target(TARGETS, check, existing, ledger)


# --- media type ----------------------------------------------------------------------

NOT_JSON_MEDIA_TYPES = {
    "missing": None,
    "text/plain": "text/plain",
    "form": "application/x-www-form-urlencoded",
    "multipart": "multipart/form-data; boundary=x",
    "latin-1": "application/json; charset=latin-1",
    "utf-16": "application/json; charset=utf-16",
}


@pytest.mark.parametrize(
    "content_type", NOT_JSON_MEDIA_TYPES.values(), ids=NOT_JSON_MEDIA_TYPES.keys()
)
def test_a_body_not_declared_as_utf_8_json_is_415(
    module_writer: ContractClient, existing: str, ledger: Ledger, content_type: str | None
) -> None:
    def check(target: Target, path: str) -> None:
        body = with_value(target.number, b"1")
        assert_rejected(send(module_writer, target.method, path, body, content_type), 415)

    each_target(TARGETS, check, existing, ledger)


def test_the_media_type_is_checked_before_the_size_and_the_size_before_the_content(
    module_writer: ContractClient, existing: str, ledger: Ledger
) -> None:
    oversized_garbage = b"\xff" * (MAX_BODY + 1)

    def check(target: Target, path: str) -> None:
        assert_rejected(
            send(module_writer, target.method, path, oversized_garbage, "text/plain"), 415
        )
        assert_rejected(send(module_writer, target.method, path, oversized_garbage), 413)

    each_target(TARGETS, check, existing, ledger)


BROKEN_ENCODINGS = {
    "gzip-header-then-garbage": (gzip.compress(b'{"name":"a","qty":1}')[:10] + b"garbage!", "gzip"),
    "deflate-garbage": (b"\x78\x9c" + b"not deflate at all", "deflate"),
    "gzip-plain-json": (b'{"name":"a","qty":1}', "gzip"),
}


@pytest.mark.parametrize(
    ("body", "encoding"), BROKEN_ENCODINGS.values(), ids=BROKEN_ENCODINGS.keys()
)
def test_a_body_that_does_not_decode_as_its_content_encoding_is_400(
    module_writer: ContractClient, existing: str, ledger: Ledger, body: bytes, encoding: str
) -> None:
    def check(target: Target, path: str) -> None:
        headers = {"Content-Encoding": encoding}
        sent = send(module_writer, target.method, path, body, headers=headers)
        problem = assert_rejected(sent, 400, WHOLE_BODY)
        assert "Content-Encoding" in problem["detail"], problem

    each_target(TARGETS, check, existing, ledger)


# --- fields that do not belong -------------------------------------------------------

UNKNOWN_FIELDS = {
    "colour": (b'"colour":"red"', "/colour"),
    "id": (b'"id":"01a21b03-dd69-7ec7-b0d3-2f39855ab3d4"', "/id"),
    "case-variant": (b'"Name":"x"', "/Name"),
    "pointer-escapes": (b'"a/b~c":1', "/a~1b~0c"),
    "empty-key": (b'"":1', "/"),
    "nested-deep": (b'"x":' + b"[" * 300 + b"]" * 300, "/x"),
    "lone-surrogate-key": (rb'"\ud800":1', None),
}


@pytest.mark.parametrize(("member", "field"), UNKNOWN_FIELDS.values(), ids=UNKNOWN_FIELDS.keys())
def test_an_unknown_field_is_400_naming_it(
    module_writer: ContractClient, existing: str, ledger: Ledger, member: bytes, field: str | None
) -> None:
    def check(target: Target, path: str) -> None:
        body = with_value(target.number, b"1")[:-1] + b"," + member + b"}"
        assert_rejected(send(module_writer, target.method, path, body), 400, field)

    each_target(TARGETS, check, existing, ledger)


def test_an_empty_patch_is_400(
    module_writer: ContractClient, existing: str, ledger: Ledger
) -> None:
    assert_rejected(send(module_writer, "PATCH", f"/items/{existing}", b"{}"), 400)
    ledger.assert_unchanged()


@pytest.mark.parametrize(
    ("target", "body", "named"),
    [
        (CREATE, b"{}", {"/name", "/qty"}),
        (CREATE, b'{"name":"","qty":-1}', {"/name", "/qty"}),
        (CREATE, b'{"name":5,"qty":true,"extra":1}', {"/name", "/qty", "/extra"}),
        (UPDATE, b'{"name":"   ","qty":1.5}', {"/name", "/qty"}),
        (UPDATE, b'{"nmae":"x","qyt":1}', {"/nmae", "/qyt"}),
        (ADJUST, b'{"delta":0,"reason":""}', {"/delta", "/reason"}),
        (ADJUST, b'{"reason":"\\u0007","qty":1}', {"/delta", "/reason", "/qty"}),
    ],
    ids=[
        "create-empty",
        "create-both-invalid",
        "create-wrong-types-and-unknown",
        "update-blank-float",
        "update-misspelt",
        "adjust-zero-empty",
        "adjust-missing-control-unknown",
    ],
)
def test_a_request_with_several_bad_fields_names_every_one(
    module_writer: ContractClient,
    existing: str,
    ledger: Ledger,
    target: Target,
    body: bytes,
    named: set[str],
) -> None:
    problem = assert_rejected(send(module_writer, target.method, target.url(existing), body), 400)

    assert named <= error_fields(problem), problem["errors"]
    ledger.assert_unchanged()


def test_thousands_of_unknown_fields_get_the_first_20_and_a_count(
    module_writer: ContractClient, existing: str, ledger: Ledger
) -> None:
    members = b",".join(b'"f%d":1' % n for n in range(5400))
    body = b'{"name":"x","qty":1,' + members + b"}"
    assert len(body) < MAX_BODY

    response = send(module_writer, "POST", "/items", body)

    problem = assert_rejected(response, 400)
    assert len(problem["errors"]) == 20
    assert problem["more"] == 5400 - 20
    assert len(response.content) < 4096
    ledger.assert_unchanged()


def test_bad_query_parameters_are_all_named(module_writer: ContractClient, ledger: Ledger) -> None:
    response = send(module_writer, "GET", "/items?limit=0&cursor=!!!", content_type=None)

    assert {"query.limit", "query.cursor"} <= error_fields(assert_rejected(response, 400))
    ledger.assert_unchanged()


# --- adjustment deltas ---------------------------------------------------------------

NOT_A_DELTA = {
    "zero": b"0",
    "minus-zero": b"-0",
    "true": b"true",
    "1.5": b"1.5",
    "1.0": b"1.0",
    "string": b'"1"',
    "null": b"null",
    "qty-max-plus-1": str(QTY_MAX + 1).encode(),
    "minus-qty-max-minus-1": str(-QTY_MAX - 1).encode(),
    "10**30": str(10**30).encode(),
}


@pytest.mark.parametrize("value", NOT_A_DELTA.values(), ids=NOT_A_DELTA.keys())
def test_a_delta_that_is_no_nonzero_integer_within_qty_max_is_400_naming_it(
    module_writer: ContractClient, existing: str, ledger: Ledger, value: bytes
) -> None:
    response = send(
        module_writer, "POST", f"/items/{existing}/adjustments", with_value(b'{"delta":@}', value)
    )

    assert_rejected(response, 400, "/delta")
    ledger.assert_unchanged()


@pytest.mark.parametrize("body", [b"{}", b'{"reason":"sold"}'], ids=["empty", "reason-only"])
def test_an_adjustment_without_delta_is_400_naming_it(
    module_writer: ContractClient, existing: str, ledger: Ledger, body: bytes
) -> None:
    response = send(module_writer, "POST", f"/items/{existing}/adjustments", body)

    assert_rejected(response, 400, "/delta")
    ledger.assert_unchanged()


# --- item ids ------------------------------------------------------------------------

MALFORMED_IDS: dict[str, Callable[[str], str]] = {
    "word": lambda _: "nope",
    "uppercase": str.upper,
    "braces": lambda item_id: "{" + item_id + "}",
    "no-hyphens": lambda item_id: item_id.replace("-", ""),
    "trailing-newline": lambda item_id: item_id + "%0A",
    "nul": lambda _: "%00",
}
ITEM_ID_OPERATIONS = [
    ("GET", "/items/{id}", None),
    ("PATCH", "/items/{id}", b'{"qty":1}'),
    ("DELETE", "/items/{id}", None),
    ("POST", "/items/{id}/adjustments", b'{"delta":1}'),
]


@pytest.mark.parametrize("spell", MALFORMED_IDS.values(), ids=MALFORMED_IDS.keys())
def test_a_malformed_item_id_is_400_on_every_item_operation(
    module_writer: ContractClient, existing: str, ledger: Ledger, spell: Callable[[str], str]
) -> None:
    bad_id = spell(existing)
    failures = []
    for method, path, body in ITEM_ID_OPERATIONS:
        try:
            response = send(module_writer, method, path.replace("{id}", bad_id), body)
            assert_rejected(response, 400, "path.item_id")
        except AssertionError as failure:
            failures.append(f"{method} {path}: {failure}")
    try:
        ledger.assert_unchanged()
    except AssertionError as failure:
        failures.append(f"database: {failure}")
    assert not failures, "\n".join(failures)


# --- slow bodies and Expect: 100-continue -------------------------------------------------


def open_request(server: LiveServer, head: str) -> socket.socket:
    """A connection on which the request head ``head`` (its lines, CRLF-ended) has been sent."""
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    connection.sendall(head.encode() + b"\r\n")
    return connection


def read_until_closed(connection: socket.socket) -> bytes:
    answer = b""
    while chunk := connection.recv(65536):
        answer += chunk
    return answer


def post_head(authorization: str | None, length: int, *extra: str) -> str:
    lines = ["POST /items HTTP/1.1", "Host: x", "Content-Type: application/json"]
    lines += [f"Content-Length: {length}", *extra]
    lines += [f"Authorization: {authorization}"] if authorization else []
    return "".join(f"{line}\r\n" for line in lines)


def test_a_body_that_trickles_in_gets_408_and_the_connection_is_closed(
    module_server: LiveServer,
    module_writer: ContractClient,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(validation, "BODY_SECONDS", 0.5)
    body = b'{"name":"trickled","qty":1}'
    authorization = str(module_writer.headers["Authorization"])
    with open_request(module_server, post_head(authorization, len(body))) as connection:
        started = time.monotonic()
        for byte in body[:5]:
            connection.sendall(bytes([byte]))
            time.sleep(0.2)
        answer = connection.recv(65536)
        waited = time.monotonic() - started
        assert read_until_closed(connection) == b""

    head, _, document = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert b"application/problem+json" in head
    assert json.loads(document)["type"] == REQUEST_TIMEOUT
    assert waited < 15
    ledger.assert_unchanged()


def test_expect_100_continue_is_answered_401_without_a_key_and_never_continued(
    module_server: LiveServer, ledger: Ledger
) -> None:
    with open_request(module_server, post_head(None, 20, "Expect: 100-continue")) as connection:
        answer = connection.recv(65536)

    assert answer.startswith(b"HTTP/1.1 401 "), answer
    assert b"100 Continue" not in answer
    ledger.assert_unchanged()


def test_expect_100_continue_is_answered_413_for_a_body_declared_too_large(
    module_server: LiveServer, module_writer: ContractClient, ledger: Ledger
) -> None:
    authorization = str(module_writer.headers["Authorization"])
    head = post_head(authorization, MAX_BODY + 1, "Expect: 100-continue")
    with open_request(module_server, head) as connection:
        answer = connection.recv(65536)

    assert answer.startswith(b"HTTP/1.1 413 "), answer
    ledger.assert_unchanged()


def test_expect_100_continue_is_continued_for_a_valid_key_and_the_body_then_read(
    server: LiveServer, writer: ContractClient
) -> None:
    body = b'{"name":"continued","qty":1}'
    authorization = str(writer.headers["Authorization"])
    head = post_head(authorization, len(body), "Expect: 100-continue", "Connection: close")
    with open_request(server, head) as connection:
        interim = connection.recv(65536)
        connection.sendall(body)
        answer = read_until_closed(connection)

    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert answer.startswith(b"HTTP/1.1 201 "), answer
    assert writer.get("/items").json()["items"][0]["name"] == "continued"
