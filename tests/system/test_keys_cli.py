"""``inventory keys create|list|revoke``: the real console script, in a subprocess.

Each test works on its own SQLite file and checks three things: what the command prints,
what it leaves in the database, and what a server on that database then does with the
keys (``LiveServer`` over the same file, also while the CLI changes it under its feet).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import requests

from service.auth import new_key
from service.store import open_store
from tests.support import db
from tests.support.contract import ContractClient, check_response
from tests.support.db import assert_no_secret_in_files, key_id, secret_part, url_of
from tests.support.processes import run_inventories
from tests.support.server import LiveServer

KEY_LINE = re.compile(r"^inv_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def run(database: Path, *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Run these ``inventory`` commands on ``database`` at the same time; their outcomes."""
    on_database = ([*command, "--database", url_of(database)] for command in commands)
    return run_inventories(*on_database, cwd=database.parent)


def create_key(database: Path, tenant: str, role: str) -> str:
    """A key made by ``inventory keys create``; the command must succeed."""
    [outcome] = run(database, ["keys", "create", "--tenant", tenant, "--role", role])
    assert outcome.returncode == 0, outcome.stderr
    return outcome.stdout.strip()


def seed(database: Path, *specs: tuple[str, str]) -> list[str]:
    """Migrate ``database`` and add keys in-process (setup only; the CLI is what is tested)."""

    async def add() -> list[str]:
        store = await open_store(f"sqlite:///{database}")
        try:
            made = []
            for tenant, role in specs:
                key, secret = new_key(tenant, role)
                await store.add_key(key)
                made.append(secret)
            return made
        finally:
            await store.close()

    return asyncio.run(add())


def key_rows(database: Path) -> dict[str, tuple[object, ...]]:
    """The stored api_keys rows, by id."""
    return {str(row[0]): row for row in db.snapshot(database)["api_keys"]}


def status_with(server: LiveServer, key: str, method: str = "GET", path: str = "/items") -> int:
    """The status ``server`` answers ``key`` with (the response checked against the contract)."""
    body = {"name": f"made with {key_id(key)}", "qty": 1} if method == "POST" else None
    response = requests.request(
        method,
        server.url + path,
        headers={"Authorization": f"Bearer {key}"},
        json=body,
        timeout=10,
    )
    check_response(response)
    if response.status_code == 401:
        assert response.headers["WWW-Authenticate"].lower().startswith("bearer")
    return response.status_code


def test_keys_create_prints_the_key_alone_on_one_line_and_stores_only_a_hash(
    tmp_path: Path,
) -> None:
    database = tmp_path / "x.db"

    [outcome] = run(database, ["keys", "create", "--tenant", "acme", "--role", "writer"])

    assert outcome.returncode == 0, outcome.stderr
    assert outcome.stdout.endswith("\n")
    assert outcome.stdout.count("\n") == 1
    key = outcome.stdout.rstrip("\n")
    assert KEY_LINE.match(key), outcome.stdout
    assert key not in outcome.stderr
    [row] = db.snapshot(database)["api_keys"]
    stored_id, tenant, role, key_hash, created_at, revoked_at = row
    assert (stored_id, tenant, role, revoked_at) == (key_id(key), "acme", "writer", None)
    assert TIMESTAMP.match(created_at)
    assert isinstance(key_hash, bytes)
    assert secret_part(key).encode() not in key_hash
    assert db.snapshot(database)["items"] == []


def test_keys_create_with_a_bad_role_exits_nonzero_and_creates_nothing(tmp_path: Path) -> None:
    database = tmp_path / "x.db"
    seed(database, ("acme", "admin"))
    before = db.snapshot(database)

    outcomes = run(
        database,
        ["keys", "create", "--tenant", "acme", "--role", "owner"],
        ["keys", "create", "--tenant", "acme", "--role", "ADMIN"],
    )

    for outcome in outcomes:
        assert outcome.returncode != 0, outcome.args
        assert not KEY_LINE.match(outcome.stdout.strip()), outcome.stdout
        assert outcome.stderr
    assert db.snapshot(database) == before


def test_keys_create_with_a_tenant_the_rules_refuse_is_one_line_and_creates_nothing(
    tmp_path: Path,
) -> None:
    database = tmp_path / "x.db"
    seed(database, ("acme", "admin"))
    before = db.snapshot(database)

    outcomes = run(
        database,
        ["keys", "create", "--tenant", "", "--role", "admin"],
        ["keys", "create", "--tenant", "x" * 101, "--role", "admin"],
        ["keys", "create", "--tenant", " acme", "--role", "admin"],
    )

    for outcome in outcomes:
        assert outcome.returncode != 0, outcome.args
        assert outcome.stdout == ""
        assert "Traceback" not in outcome.stderr
        assert outcome.stderr.count("\n") == 1, outcome.stderr
        assert outcome.stderr.startswith("inventory: --tenant must"), outcome.stderr
    assert db.snapshot(database) == before


def test_keys_list_shows_id_tenant_role_created_and_revoked_and_never_a_secret(
    tmp_path: Path,
) -> None:
    database = tmp_path / "x.db"
    admin, reader = seed(database, ("acme", "admin"), ("acme", "reader"))
    created, revoked = run(
        database,
        ["keys", "create", "--tenant", "globex", "--role", "writer"],
        ["keys", "revoke", key_id(reader)],
    )
    assert (created.returncode, revoked.returncode) == (0, 0), (created.stderr, revoked.stderr)
    other = created.stdout.strip()

    [listing] = run(database, ["keys", "list"])

    assert listing.returncode == 0, listing.stderr
    header, *lines = listing.stdout.splitlines()
    assert header.split() == ["id", "tenant", "role", "created", "revoked"]
    rows = {line.split()[0]: line.split() for line in lines}
    stored = key_rows(database)
    assert set(rows) == set(stored) == {key_id(k) for k in (admin, reader, other)}
    assert rows[key_id(admin)][1:3] == ["acme", "admin"]
    assert rows[key_id(reader)][1:3] == ["acme", "reader"]
    assert rows[key_id(other)][1:3] == ["globex", "writer"]
    for shown in rows.values():
        assert len(shown) == 5, shown
        assert shown[3] == stored[shown[0]][4]
        assert TIMESTAMP.match(shown[3])
    assert rows[key_id(reader)][4] == stored[key_id(reader)][5]
    assert TIMESTAMP.match(rows[key_id(reader)][4])
    for live in (admin, other):
        assert stored[key_id(live)][5] is None
        assert not TIMESTAMP.match(rows[key_id(live)][4])
    for key in (admin, reader, other):
        assert secret_part(key) not in listing.stdout + listing.stderr
        assert secret_part(key) not in created.stderr + revoked.stdout + revoked.stderr


def test_keys_revoke_takes_the_whole_key_or_its_id_and_a_server_then_rejects_only_those(
    tmp_path: Path,
) -> None:
    database = tmp_path / "x.db"
    by_key, by_id = seed(database, ("acme", "writer"), ("acme", "admin"))

    outcomes = run(
        database,
        ["keys", "revoke", by_key],
        ["keys", "revoke", key_id(by_id)],
        ["keys", "create", "--tenant", "acme", "--role", "reader"],
        ["keys", "create", "--tenant", "globex", "--role", "admin"],
    )

    assert [o.returncode for o in outcomes] == [0] * 4, [o.stderr for o in outcomes]
    reader, stranger = (o.stdout.strip() for o in outcomes[2:])
    for outcome in outcomes[:2]:
        assert secret_part(by_key) not in outcome.stdout + outcome.stderr
    stored = key_rows(database)
    assert TIMESTAMP.match(str(stored[key_id(by_key)][5]))
    assert TIMESTAMP.match(str(stored[key_id(by_id)][5]))
    assert stored[key_id(reader)][5] is None
    assert stored[key_id(stranger)][5] is None

    server = LiveServer(database).start()
    try:
        assert status_with(server, by_key) == 401
        assert status_with(server, by_key, "POST", "/items") == 401
        assert status_with(server, by_id, "GET", "/keys") == 401
        assert db.items(database) == []
        assert status_with(server, reader) == 200
        assert status_with(server, reader, "POST", "/items") == 403
        assert status_with(server, stranger, "POST", "/items") == 201
        assert [row["tenant"] for row in db.items(database)] == ["globex"]
        with ContractClient(server.url, stranger) as globex:
            assert [k["id"] for k in globex.get("/keys").json()["keys"]] == [key_id(stranger)]
    finally:
        server.stop()


def test_revoking_with_the_cli_takes_effect_on_a_running_servers_next_request(
    tmp_path: Path,
) -> None:
    database = tmp_path / "x.db"
    server = LiveServer(database).start()
    try:
        admin = server.create_key("acme", "admin")
        with ContractClient(server.url, admin) as session:  # one kept-alive connection
            assert session.get("/keys").status_code == 200
            reader = session.post("/keys", json={"role": "reader"}).json()["key"]
            assert status_with(server, reader) == 200

            outcomes = run(database, ["keys", "revoke", reader], ["keys", "revoke", key_id(admin)])
            assert [o.returncode for o in outcomes] == [0, 0], [o.stderr for o in outcomes]

            assert status_with(server, reader) == 401
            before = db.snapshot(database)
            after_revocation = session.post("/keys", json={"role": "admin"})
            assert after_revocation.status_code == 401
            assert db.snapshot(database) == before
    finally:
        server.stop()


def test_no_key_made_by_the_cli_or_over_http_appears_in_plaintext_in_the_database_files(
    tmp_path: Path,
) -> None:
    database = tmp_path / "x.db"
    server = LiveServer(database).start()
    try:
        keys = [create_key(database, "acme", "admin")]  # made while the server runs
        with ContractClient(server.url, keys[0]) as admin:
            for role in ("reader", "writer"):
                keys.append(admin.post("/keys", json={"role": role}).json()["key"])
            assert admin.delete(f"/keys/{key_id(keys[-1])}").status_code == 204
            assert admin.post("/items", json={"name": "apple", "qty": 1}).status_code == 201
        assert_no_secret_in_files(database, keys)  # while the server has the files open
    finally:
        server.stop()
    assert_no_secret_in_files(database, keys)
