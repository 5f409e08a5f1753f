"""Authentication and roles over HTTP (README, "Authentication"; openapi.yaml ``bearerAuth``).

Every rejected request is checked twice: by its answer (401 with a ``Bearer`` challenge,
or 403, as problem+json) and by the database, which must hold exactly the rows it held
before (``tests.support.db.snapshot``). Hostile requests are always ones that *would*
change state if they were let through: creates, updates, deletes, key management.
Which tenant's items a key reaches is ``test_tenants.py``'s.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import re
import secrets
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from service.http.spec import load_document, load_operations
from tests.support import db
from tests.support.contract import ContractClient, check_response
from tests.support.db import assert_no_secret_in_files, key_id, secret_part
from tests.support.problems import FORBIDDEN, UNAUTHORIZED, VALIDATION, assert_problem
from tests.support.server import LiveServer

KEY_FORMAT = re.compile(r"^inv_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")

Header = str | bytes


# --- helpers -------------------------------------------------------------------------


def token_of(client: ContractClient) -> str:
    """The key a fixture client sends."""
    header = client.headers["Authorization"]
    assert isinstance(header, str)
    return header.removeprefix("Bearer ")


def revoke(server: LiveServer, key: str) -> None:
    """Revoke ``key`` behind the HTTP API's back (as ``inventory keys revoke`` would)."""
    assert server.run(server.store.revoke_key(None, key_id(key)))


def send(
    server: LiveServer,
    method: str,
    path: str,
    authorization: Header | None,
    body: Any = None,
) -> requests.Response:
    """One request with exactly this ``Authorization`` (or none); checked against the contract
    only after the caller has looked at its status, so a wrong status fails readably."""
    headers: dict[str, Header] = {} if authorization is None else {"Authorization": authorization}
    return requests.request(method, server.url + path, headers=headers, json=body, timeout=10)


def assert_unauthorized(response: requests.Response) -> None:
    """401, problem+json of type unauthorized, with a Bearer challenge; per the contract."""
    assert response.status_code == 401, (
        f"{response.request.method} {response.request.url}: expected 401, got "
        f"{response.status_code} {response.headers.get('Content-Type')}: {response.text[:300]!r}"
    )
    check_response(response)
    assert response.headers["Content-Type"].split(";")[0] == "application/problem+json"
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.split(" ", 1)[0].lower() == "bearer", challenge
    problem = response.json()
    assert problem["type"] == UNAUTHORIZED
    assert problem["status"] == 401


def create_item(client: ContractClient, name: str, qty: int = 5) -> dict[str, Any]:
    response = client.post("/items", json={"name": name, "qty": qty})
    assert response.status_code == 201, response.text
    item: dict[str, Any] = response.json()
    return item


def unknown_key() -> str:
    """A well-formed key that was never issued."""
    return f"inv_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"


def with_changed_char(text: str, index: int) -> str:
    """``text`` with the character at ``index`` replaced by another of the key alphabet."""
    old = text[index]
    new = "B" if old == "A" else "A"
    return text[:index] + new + text[index + 1 :]


# (operationId, method, path template, body): every secured operation, each written so
# that it would change the database if it were let through (listings aside).
SECURED_OPERATIONS: list[tuple[str, str, str, Any]] = [
    ("createItem", "POST", "/items", {"name": "intruder", "qty": 1}),
    ("listItems", "GET", "/items", None),
    ("getItem", "GET", "/items/{item}", None),
    ("updateItem", "PATCH", "/items/{item}", {"name": "renamed", "qty": 99}),
    ("deleteItem", "DELETE", "/items/{item}", None),
    ("adjustItem", "POST", "/items/{item}/adjustments", {"delta": 7}),
    ("createKey", "POST", "/keys", {"role": "admin"}),
    ("listKeys", "GET", "/keys", None),
    ("revokeKey", "DELETE", "/keys/{key}", None),
]
WRITE_OPERATIONS = [op for op in SECURED_OPERATIONS if op[0] not in ("listItems", "getItem")]
KEY_OPERATIONS = [
    op for op in SECURED_OPERATIONS if op[0] in ("createKey", "listKeys", "revokeKey")
]


# --- the contract ------------------------------------------------------------------------


def test_the_contract_requires_the_issues_role_for_every_operation_and_none_for_meta() -> None:
    roles = {op.operation_id: op.role for op in load_operations(load_document())}
    assert roles == {
        "createItem": "writer",
        "listItems": "reader",
        "getItem": "reader",
        "updateItem": "writer",
        "deleteItem": "writer",
        "adjustItem": "writer",
        "applyBatch": "writer",
        "listItemEvents": "reader",
        "listEvents": "reader",
        "createKey": "admin",
        "listKeys": "admin",
        "revokeKey": "admin",
        "health": None,
        "spec": None,
        "home": None,
        "docs": None,
        "docsAsset": None,
    }
    scheme = load_document()["components"]["securitySchemes"]["bearerAuth"]
    assert scheme["type"] == "http"
    assert scheme["scheme"] == "bearer"


# --- authentication --------------------------------------------------------------------


def test_a_missing_unknown_malformed_or_revoked_key_gets_401_on_every_secured_operation(
    server: LiveServer, writer: ContractClient
) -> None:
    item = create_item(writer, "apple")
    victim_key = server.create_key("acme", "reader")
    revoked_admin = server.create_key("acme", "admin")
    revoke(server, revoked_admin)
    before = db.snapshot(server.database)
    bad_keys: dict[str, str | None] = {
        "missing": None,
        "empty": "",
        "unknown": f"Bearer {unknown_key()}",
        "malformed": "Bearer not-an-api-key",
        "revoked": f"Bearer {revoked_admin}",
    }

    failures = []
    for operation, method, template, body in SECURED_OPERATIONS:
        path = template.format(item=item["id"], key=key_id(victim_key))
        for name, authorization in bad_keys.items():
            try:
                assert_unauthorized(send(server, method, path, authorization, body))
            except AssertionError as error:
                failures.append(f"{operation} with a {name} key: {error}")
        if db.snapshot(server.database) != before:
            failures.append(f"{operation}: the database changed")

    assert not failures, "\n".join(failures)


def test_the_bearer_scheme_is_matched_case_insensitively(server: LiveServer) -> None:
    key = server.create_key("acme", "writer")

    schemes = ("Bearer", "bearer", "BEARER", "bEaReR")
    for number, scheme in enumerate(schemes):
        body = {"name": f"item {number}", "qty": 2}
        created = send(server, "POST", "/items", f"{scheme} {key}", body)
        assert created.status_code == 201, (scheme, created.text)
        check_response(created)
        listed = send(server, "GET", "/items", f"{scheme} {key}")
        assert listed.status_code == 200, (scheme, listed.text)
        check_response(listed)

    names = sorted(row["name"] for row in db.items(server.database, "acme"))
    assert names == [f"item {number}" for number in range(len(schemes))]


def _writer(server: LiveServer) -> str:
    """A fresh writer key of acme whose id holds a letter (so that its case can change)."""
    while True:
        key = server.create_key("acme", "writer")
        if not key_id(key).isdigit():
            return key


def _writer_key_as(change: Callable[[str], Header]) -> Callable[[LiveServer], Header]:
    """A header made by ``change`` from a fresh, valid writer key."""
    return lambda server: change(_writer(server))


def _revoked_writer(server: LiveServer) -> str:
    key = _writer(server)
    revoke(server, key)
    return f"Bearer {key}"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


HOSTILE_HEADERS: dict[str, Callable[[LiveServer], Header]] = {
    "empty bearer": lambda s: "Bearer ",
    "bearer alone": lambda s: "Bearer",
    "empty header": lambda s: "",
    "basic auth with the key as user": _writer_key_as(lambda k: _basic(k, "")),
    "basic auth with the key as password": _writer_key_as(lambda k: _basic("acme", k)),
    "the key without a scheme": _writer_key_as(lambda k: k),
    "the key under another scheme": _writer_key_as(lambda k: f"Token {k}"),
    "a colon after the scheme": _writer_key_as(lambda k: f"Bearer: {k}"),
    "one extra character": _writer_key_as(lambda k: f"Bearer {k}A"),
    "one extra character in front": _writer_key_as(lambda k: f"Bearer A{k}"),
    "one character missing at the end": _writer_key_as(lambda k: f"Bearer {k[:-1]}"),
    "one character missing in the secret": _writer_key_as(lambda k: f"Bearer {k[:30]}{k[31:]}"),
    "first secret character changed": _writer_key_as(
        lambda k: f"Bearer {with_changed_char(k, len(k) - 43)}"
    ),
    "last secret character changed": _writer_key_as(
        lambda k: f"Bearer {with_changed_char(k, len(k) - 1)}"
    ),
    "secret with its letters' case swapped": _writer_key_as(
        lambda k: f"Bearer inv_{key_id(k)}_{secret_part(k).swapcase()}"
    ),
    "one id character changed": _writer_key_as(
        lambda k: f"Bearer {k[:4]}{'1' if k[4] == '0' else '0'}{k[5:]}"
    ),
    "id in upper case": _writer_key_as(
        lambda k: f"Bearer inv_{key_id(k).upper()}_{secret_part(k)}"
    ),
    "prefix in upper case": _writer_key_as(lambda k: f"Bearer INV_{k[4:]}"),
    "the key id alone": _writer_key_as(lambda k: f"Bearer inv_{key_id(k)}"),
    "the stored hash of the key": _writer_key_as(
        lambda k: f"Bearer {hashlib.sha256(k.encode()).hexdigest()}"
    ),
    "a key of another format (uuid)": lambda s: f"Bearer {uuid.uuid4()}",
    "a key of another format (jwt)": lambda s: "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhY21lIn0.",
    "two keys separated by a space": lambda s: f"Bearer {_writer(s)} {_writer(s)}",
    "two keys separated by a comma": lambda s: f"Bearer {_writer(s)}, Bearer {_writer(s)}",
    "a revoked key": _revoked_writer,
    "latin-1 bytes": lambda s: "Bearer caf\u00e9".encode("latin-1"),
    "utf-8 bytes": lambda s: "Bearer caf\u00e9".encode(),
    "a valid key followed by a latin-1 byte": _writer_key_as(
        lambda k: f"Bearer {k}".encode() + b"\xe9"
    ),
    "a cyrillic look-alike in the secret": _writer_key_as(
        lambda k: f"Bearer {k[:-1]}\u0430".encode()
    ),
    "every byte from 0x80 to 0xff": lambda s: b"Bearer " + bytes(range(0x80, 0x100)),
}
OVERSIZED_HEADERS: dict[str, Callable[[LiveServer], Header]] = {
    "a 10 KB header value": lambda s: "Bearer " + "a" * 10 * 1024,
    "a valid key padded to 10 KB": _writer_key_as(lambda k: f"Bearer {k}{' ' * 10 * 1024}x"),
    "a valid key followed by 10 KB": _writer_key_as(lambda k: f"Bearer {k}{'A' * 10 * 1024}"),
}


def assert_header_too_long(response: requests.Response) -> None:
    """400 problem+json, per the contract, saying the line is too long and quoting none of it."""
    assert response.status_code == 400, (response.status_code, response.text[:300])
    check_response(response)
    problem = response.json()
    assert (problem["type"], problem["status"]) == (VALIDATION, 400)
    assert "longer than 8190 bytes" in problem["detail"]
    assert len(response.content) < 1000


def _hostile_failures(
    server: LiveServer,
    writer: ContractClient,
    headers: dict[str, Callable[[LiveServer], Header]],
    expected: Callable[[requests.Response], None] = assert_unauthorized,
) -> list[str]:
    """Send each header with requests that would write; what went wrong, per header."""
    item = create_item(writer, "apple")
    requests_that_would_write = (
        ("POST", "/items", {"name": "intruder", "qty": 1}),
        ("PATCH", f"/items/{item['id']}", {"qty": 0}),
        ("DELETE", f"/items/{item['id']}", None),
        ("POST", "/keys", {"role": "admin"}),
    )
    authorizations = {hostile: make(server) for hostile, make in headers.items()}
    before = db.snapshot(server.database)
    failures = []
    for hostile, authorization in authorizations.items():
        try:
            for method, path, body in requests_that_would_write:
                expected(send(server, method, path, authorization, body))
        except AssertionError as error:
            failures.append(f"{hostile}: {error}")
    if db.snapshot(server.database) != before:
        failures.append("the database changed")
    return failures


def test_a_hostile_authorization_header_gets_401_and_changes_nothing(
    server: LiveServer, writer: ContractClient
) -> None:
    failures = _hostile_failures(server, writer, HOSTILE_HEADERS)

    assert not failures, "\n".join(failures)


def test_a_10_kb_authorization_header_gets_a_short_400_and_changes_nothing(
    server: LiveServer, writer: ContractClient
) -> None:
    failures = _hostile_failures(server, writer, OVERSIZED_HEADERS, assert_header_too_long)

    assert not failures, "\n".join(failures)


def _send_raw(
    server: LiveServer, method: str, path: str, fields: list[tuple[str, str]], body: bytes
) -> requests.Response:
    """A request with exactly these header lines (repeats included), as a checked Response."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.putrequest(method, path)
        for name, value in [
            *fields,
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
        ]:
            connection.putheader(name, value)
        connection.endheaders(body)
        raw = connection.getresponse()
        response = requests.Response()
        response.status_code = raw.status
        response.headers = CaseInsensitiveDict(raw.getheaders())
        response._content = raw.read()
        response.request = requests.Request(method, server.url + path).prepare()
        response.url = server.url + path
        return response
    finally:
        connection.close()


def test_two_authorization_header_lines_get_401_and_change_nothing(server: LiveServer) -> None:
    writer_key = f"Bearer {server.create_key('acme', 'writer')}"
    reader_key = f"Bearer {server.create_key('acme', 'reader')}"
    before = db.snapshot(server.database)

    failures = []
    for order, (first, second) in {
        "writer then reader": (writer_key, reader_key),
        "reader then writer": (reader_key, writer_key),
        "writer then garbage": (writer_key, "Bearer garbage"),
    }.items():
        fields = [("Authorization", first), ("Authorization", second)]
        body = f'{{"name": "smuggled {order}", "qty": 1}}'.encode()
        try:
            assert_unauthorized(_send_raw(server, "POST", "/items", fields, body))
        except AssertionError as error:
            failures.append(f"{order}: {error}")

    assert not failures, "\n".join(failures)
    assert db.snapshot(server.database) == before


def test_health_and_the_contract_are_public_even_with_a_bad_key(
    server: LiveServer, anonymous: ContractClient
) -> None:
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    spec = anonymous.get("/openapi.yaml")
    assert spec.status_code == 200
    assert spec.text.startswith("openapi:")
    for path in ("/healthz", "/openapi.yaml"):
        response = anonymous.get(path, headers={"Authorization": "Bearer garbage"})
        assert response.status_code == 200


def test_authentication_comes_after_the_route_and_before_validation_and_existence(
    server: LiveServer, anonymous: ContractClient
) -> None:
    before = db.snapshot(server.database)

    assert anonymous.get("/no-such-route").status_code == 404
    assert anonymous.put("/items").status_code == 405
    assert_unauthorized(send(server, "GET", f"/items/{uuid.uuid4()}", None))
    assert_unauthorized(send(server, "GET", "/items/not-a-uuid", None))
    assert_unauthorized(send(server, "GET", "/items?limit=0", None))
    assert_unauthorized(send(server, "POST", "/items", None, {"qty": "many"}))
    assert_unauthorized(send(server, "DELETE", "/keys/not-a-key-id", None))
    assert db.snapshot(server.database) == before


# --- roles -------------------------------------------------------------------------------


def test_a_reader_may_list_and_read_items(writer: ContractClient, reader: ContractClient) -> None:
    item = create_item(writer, "apple")

    assert reader.get(f"/items/{item['id']}").json() == item
    assert reader.get("/items").json() == {"items": [item], "next_cursor": None}


def test_a_reader_gets_403_for_every_write_and_key_operation_and_nothing_changes(
    server: LiveServer, writer: ContractClient, reader: ContractClient
) -> None:
    item = create_item(writer, "apple")
    before = db.snapshot(server.database)

    for operation, method, template, body in WRITE_OPERATIONS:
        path = template.format(item=item["id"], key=key_id(token_of(writer)))
        response = reader.request(method, path, json=body)
        assert response.status_code == 403, (operation, response.status_code, response.text)
        assert_problem(response, 403, FORBIDDEN)
        assert db.snapshot(server.database) == before, operation


def test_the_role_is_checked_before_the_media_type_and_the_body(
    server: LiveServer, writer: ContractClient, reader: ContractClient
) -> None:
    item = create_item(writer, "apple")
    before = db.snapshot(server.database)

    for response in (
        reader.post("/items", data=b"not json", headers={"Content-Type": "text/plain"}),
        reader.post("/items", json={"qty": "lots", "extra": True}),
        reader.patch(f"/items/{item['id']}", json={}),
        reader.post(f"/items/{item['id']}/adjustments", json={"delta": 0}),
        writer.post("/keys", json={"role": "emperor"}),
        writer.delete("/keys/not-a-key-id"),
    ):
        assert_problem(response, 403, FORBIDDEN)
    assert db.snapshot(server.database) == before


def test_a_writer_gets_403_on_key_management_and_nothing_changes(
    server: LiveServer, writer: ContractClient, reader: ContractClient
) -> None:
    before = db.snapshot(server.database)

    for operation, method, template, body in KEY_OPERATIONS:
        response = writer.request(method, template.format(key=key_id(token_of(reader))), json=body)
        assert response.status_code == 403, (operation, response.status_code, response.text)
        assert_problem(response, 403, FORBIDDEN)
        assert db.snapshot(server.database) == before, operation

    assert reader.get("/items").status_code == 200


def test_writers_and_admins_may_do_every_item_operation(server: LiveServer) -> None:
    for role in ("writer", "admin"):
        with ContractClient(server.url, server.create_key("acme", role)) as client:
            item = create_item(client, "apple", qty=5)
            assert client.get(f"/items/{item['id']}").status_code == 200
            assert client.get("/items").json()["items"] == [item]
            assert client.patch(f"/items/{item['id']}", json={"name": "pear"}).status_code == 200
            adjusted = client.post(f"/items/{item['id']}/adjustments", json={"delta": -2})
            assert adjusted.json()["qty"] == 3
            [row] = db.items(server.database, "acme")
            assert (row["name"], row["qty"], row["version"]) == ("pear", 3, 3)

            assert client.delete(f"/items/{item['id']}").status_code == 204
            assert db.items(server.database) == [], role


# --- key management over HTTP -------------------------------------------------------------


def test_an_admin_creates_a_key_that_is_shown_once_and_works_with_its_role_at_once(
    server: LiveServer, admin: ContractClient
) -> None:
    for role, may_write, may_manage_keys in (
        ("reader", False, False),
        ("writer", True, False),
        ("admin", True, True),
    ):
        response = admin.post("/keys", json={"role": role})

        assert response.status_code == 201, response.text
        created = response.json()
        match = KEY_FORMAT.match(created["key"])
        assert match is not None, created["key"]
        assert match.group(1) == created["id"]
        assert response.headers["Location"] == f"/keys/{created['id']}"
        assert (created["tenant"], created["role"], created["revoked_at"]) == ("acme", role, None)
        stored = db.snapshot(server.database)["api_keys"]
        [row] = [row for row in stored if row[0] == created["id"]]
        assert row[1:3] == ("acme", role)
        assert row[5] is None

        with ContractClient(server.url, created["key"]) as new:
            assert new.get("/items").status_code == 200
            wrote = new.post("/items", json={"name": f"by {role}", "qty": 1})
            assert wrote.status_code == (201 if may_write else 403), role
            assert new.get("/keys").status_code == (200 if may_manage_keys else 403), role

    assert sorted(row["name"] for row in db.items(server.database, "acme")) == [
        "by admin",
        "by writer",
    ]
    assert db.items(server.database, "globex") == []


def test_created_keys_are_distinct_and_carry_at_least_128_random_bits(
    admin: ContractClient,
) -> None:
    keys = [admin.post("/keys", json={"role": "reader"}).json()["key"] for _ in range(20)]

    for key in keys:
        match = KEY_FORMAT.match(key)
        assert match is not None, key
        assert len(match.group(2)) * 6 >= 128
    assert len({secret_part(k) for k in keys}) == len(keys)
    assert len({key_id(k) for k in keys}) == len(keys)


def test_the_key_listing_shows_the_tenants_keys_oldest_first_and_never_a_secret(
    server: LiveServer,
    admin: ContractClient,
    writer: ContractClient,
    reader: ContractClient,
    other_tenant: ContractClient,
) -> None:
    globex_admin = server.create_key("globex", "admin")
    with ContractClient(server.url, globex_admin) as foreign_admin:
        foreign_key = foreign_admin.post("/keys", json={"role": "reader"}).json()["key"]
    created = admin.post("/keys", json={"role": "writer"}).json()["key"]
    revoked = admin.post("/keys", json={"role": "reader"}).json()["key"]
    assert admin.delete(f"/keys/{key_id(revoked)}").status_code == 204
    secrets_known = [
        token_of(admin),
        token_of(writer),
        token_of(reader),
        token_of(other_tenant),
        globex_admin,
        foreign_key,
        created,
        revoked,
    ]

    response = admin.get("/keys")

    assert response.status_code == 200
    listed = response.json()["keys"]
    stored = [row for row in db.snapshot(server.database)["api_keys"] if row[1] == "acme"]
    assert sorted(k["id"] for k in listed) == sorted(row[0] for row in stored)
    assert [k["created_at"] for k in listed] == sorted(k["created_at"] for k in listed)
    assert {k["tenant"] for k in listed} == {"acme"}
    assert {k["id"]: k["revoked_at"] is not None for k in listed}[key_id(revoked)]
    assert sum(k["revoked_at"] is not None for k in listed) == 1
    for key in listed:
        assert set(key) == {"id", "tenant", "role", "created_at", "revoked_at"}
    for secret in secrets_known:
        assert secret not in response.text
        assert secret_part(secret) not in response.text
    for row in db.snapshot(server.database)["api_keys"]:
        assert row[3].hex() not in response.text
    for foreign in (globex_admin, foreign_key, token_of(other_tenant)):
        assert key_id(foreign) not in response.text


def test_revoking_a_key_takes_effect_on_its_next_request_and_is_idempotent(
    server: LiveServer, admin: ContractClient, reader: ContractClient
) -> None:
    assert reader.get("/items").status_code == 200
    target = key_id(token_of(reader))

    assert admin.delete(f"/keys/{target}").status_code == 204

    assert_unauthorized(send(server, "GET", "/items", f"Bearer {token_of(reader)}"))
    [row] = [row for row in db.snapshot(server.database)["api_keys"] if row[0] == target]
    assert row[5] is not None
    after_first = db.snapshot(server.database)
    assert admin.delete(f"/keys/{target}").status_code == 204
    assert db.snapshot(server.database) == after_first
    assert_unauthorized(send(server, "GET", "/items", f"Bearer {token_of(reader)}"))


def test_revoking_another_tenants_key_answers_204_and_leaves_it_working(
    server: LiveServer, admin: ContractClient, other_tenant: ContractClient
) -> None:
    before = db.snapshot(server.database)

    assert admin.delete(f"/keys/{key_id(token_of(other_tenant))}").status_code == 204

    assert db.snapshot(server.database) == before
    assert other_tenant.post("/items", json={"name": "still here", "qty": 1}).status_code == 201


def test_revoking_an_unknown_key_id_answers_204_and_a_malformed_one_400_changing_nothing(
    server: LiveServer, admin: ContractClient
) -> None:
    before = db.snapshot(server.database)

    assert admin.delete(f"/keys/{secrets.token_hex(8)}").status_code == 204
    for malformed in ("XYZ", "0123456789ABCDEF", "0123456789abcdef0", token_of(admin)):
        assert_problem(admin.delete(f"/keys/{malformed}"), 400, VALIDATION)

    assert db.snapshot(server.database) == before
    assert admin.get("/keys").status_code == 200


def test_an_admin_can_revoke_its_own_key(server: LiveServer, admin: ContractClient) -> None:
    own = token_of(admin)

    assert admin.delete(f"/keys/{key_id(own)}").status_code == 204

    assert_unauthorized(send(server, "GET", "/keys", f"Bearer {own}"))
    assert_unauthorized(send(server, "DELETE", f"/keys/{key_id(own)}", f"Bearer {own}"))


INVALID_KEY_REQUESTS: dict[str, tuple[Any, str]] = {
    "unknown role": ({"role": "owner"}, "/role"),
    "role in another case": ({"role": "Admin"}, "/role"),
    "empty role": ({"role": ""}, "/role"),
    "null role": ({"role": None}, "/role"),
    "role as a list": ({"role": ["admin"]}, "/role"),
    "no role": ({}, "/role"),
    "a tenant field": ({"role": "reader", "tenant": "globex"}, "/tenant"),
    "a chosen secret": ({"role": "reader", "key": "inv_0123456789abcdef_" + "A" * 43}, "/key"),
    "a chosen id": ({"role": "reader", "id": "0123456789abcdef"}, "/id"),
    "not an object": (["reader"], ""),
}


def test_creating_a_key_with_an_invalid_role_or_an_unknown_field_is_400_and_changes_nothing(
    server: LiveServer, admin: ContractClient
) -> None:
    before = db.snapshot(server.database)

    for case, (body, field) in INVALID_KEY_REQUESTS.items():
        problem = assert_problem(admin.post("/keys", json=body), 400, VALIDATION)
        assert field in [error["field"] for error in problem["errors"]], (case, problem)

    assert db.snapshot(server.database) == before


# --- storage -----------------------------------------------------------------------------


def test_no_table_holds_a_key_or_its_secret_part(
    server: LiveServer,
    admin: ContractClient,
    writer: ContractClient,
    reader: ContractClient,
    other_tenant: ContractClient,
) -> None:
    keys = [token_of(c) for c in (admin, writer, reader, other_tenant)]
    keys += [admin.post("/keys", json={"role": r}).json()["key"] for r in ("reader", "admin")]

    rows = db.snapshot(server.database)["api_keys"]

    assert len(rows) == len(keys)
    for row in rows:
        stored = repr(row)
        assert isinstance(row[3], bytes)
        assert len(row[3]) >= 32
        for key in keys:
            assert key not in stored
            assert secret_part(key) not in stored
            assert secret_part(key).encode() not in row[3]


def test_no_key_appears_in_plaintext_in_the_sqlite_files(tmp_path: Path) -> None:
    path = tmp_path / "inventory.db"
    live = LiveServer(path).start()
    stopped = False
    try:
        keys = [live.create_key("acme", "admin"), live.create_key("globex", "writer")]
        with ContractClient(live.url, keys[0]) as admin:
            for role in ("reader", "writer", "admin", "reader"):
                keys.append(admin.post("/keys", json={"role": role}).json()["key"])
            assert admin.delete(f"/keys/{key_id(keys[-1])}").status_code == 204
            assert admin.post("/items", json={"name": "apple", "qty": 1}).status_code == 201

        assert_no_secret_in_files(path, keys)  # while the server runs: the WAL holds them
        live.stop()
        stopped = True
        assert_no_secret_in_files(path, keys)  # and once it has checkpointed and closed
    finally:
        if not stopped:
            live.stop()


@pytest.mark.parametrize(
    ("authorization", "says"),
    [
        (None, "send an API key"),
        ("Bearer nope", "the API key is malformed"),
        ("Bearer inv_0123456789abcdef_" + "A" * 43, "unknown API key"),
    ],
    ids=["missing", "malformed", "unknown"],
)
def test_a_401_tells_how_to_get_a_key(
    module_anonymous: ContractClient, authorization: str | None, says: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}

    response = module_anonymous.get("/items", headers=headers)

    assert response.status_code == 401
    detail = response.json()["detail"]
    assert detail.startswith(says), detail
    assert "inventory keys create --tenant TENANT --role reader|writer|admin" in detail
    assert "not 'Bearer" not in detail
