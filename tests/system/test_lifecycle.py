"""The real ``inventory`` command in a subprocess: serve, stop, restart, migrate.

``inventory serve`` is started as a user would start it, on a free port and a database
file of the test's own; readiness is ``GET /healthz`` answering (within ``READY_SECONDS``),
and every process is killed when its ``with`` block ends, whatever happens
(``tests.support.processes``). Each test checks what the command prints, its exit code,
and what it leaves in the database (``tests.support.db``).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import requests

from service.store.shared import pending_migrations
from tests.support import db, postgres
from tests.support.contract import ContractClient
from tests.support.processes import ServedProcess, free_port, run_inventory

READY_SECONDS = 10
STOP_SECONDS = 5
TOKEN_LINE = re.compile(r"^\s*export INVENTORY_TOKEN=(\S+)\s*$", re.MULTILINE)
KEY_FORMAT = re.compile(r"^inv_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$")
TABLES = {"items", "api_keys", "events", "feeds", "idempotency", "schema_migrations"}


# --- running and reading -------------------------------------------------------------


def serving(cwd: Path, port: int, *flags: str, env: dict[str, str] | None = None) -> ServedProcess:
    """``inventory serve *flags`` in ``cwd``, listening on ``port``, with this module's limits."""
    return ServedProcess(
        cwd, *flags, port=port, env=env, ready_seconds=READY_SECONDS, stop_seconds=STOP_SECONDS
    )


def tokens_in(stdout: str) -> list[str]:
    return TOKEN_LINE.findall(stdout)


def sqlite_tables(path: Path) -> dict[str, str]:
    """Every table of the SQLite file, with the SQL that made it."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))


# --- the first start -----------------------------------------------------------------


@dataclass
class FirstStart:
    """What one first ``inventory serve`` on a new file did, from start to SIGTERM."""

    database: Path
    port: int
    stdout: str
    token: str | None
    created: requests.Response
    exit_code: int
    stop_seconds: float


@pytest.fixture(scope="module")
def first_start(tmp_path_factory: pytest.TempPathFactory) -> FirstStart:
    """``inventory serve --port P --database F`` on a new F: the README example, then SIGTERM."""
    cwd = tmp_path_factory.mktemp("first-start")
    database, port = cwd / "inventory.db", free_port()
    with serving(cwd, port, "--port", str(port), "--database", str(database)) as served:
        tokens = tokens_in(served.stdout())
        token = tokens[0] if tokens else None
        with ContractClient(served.url, token) as client:
            created = client.post("/items", json={"name": "apple", "qty": 5})
        started = time.monotonic()
        exit_code = served.terminate()
        stopped_after = time.monotonic() - started
        stdout = served.stdout()
    return FirstStart(database, port, stdout, token, created, exit_code, stopped_after)


def test_the_first_start_prints_one_admin_key(first_start: FirstStart) -> None:
    assert len(tokens_in(first_start.stdout)) == 1, first_start.stdout
    assert first_start.token is not None
    assert KEY_FORMAT.match(first_start.token)
    [key] = db.snapshot(first_start.database)["api_keys"]
    key_id, tenant, role, key_hash, _, revoked_at = key
    assert first_start.token.split("_")[1] == key_id
    assert (tenant, role, revoked_at) == ("default", "admin", None)
    assert key_hash == hashlib.sha256(first_start.token.encode()).digest()


def test_the_printed_curl_example_uses_the_port_being_served(first_start: FirstStart) -> None:
    [curl] = [line for line in first_start.stdout.splitlines() if "curl " in line]

    assert f"http://127.0.0.1:{first_start.port}/" in curl


def test_the_readme_example_creates_an_item_with_the_printed_key(first_start: FirstStart) -> None:
    assert first_start.created.status_code == 201, first_start.created.text
    item = first_start.created.json()
    assert (item["name"], item["qty"], item["version"]) == ("apple", 5, 1)
    assert db.items(first_start.database) == [
        {**item, "tenant": "default", "name_key": "apple"},
    ]


def test_sigterm_stops_the_server_cleanly(first_start: FirstStart) -> None:
    assert first_start.exit_code == 0
    assert first_start.stop_seconds < STOP_SECONDS
    assert db.items(first_start.database) != []


def test_a_restart_on_the_same_file_keeps_every_item_and_prints_no_new_key(
    first_start: FirstStart,
) -> None:
    database = first_start.database
    before = db.snapshot(database)
    port = free_port()

    with serving(database.parent, port, "--port", str(port), "--database", str(database)) as served:
        with ContractClient(served.url, first_start.token) as client:
            listed = client.get("/items")
        after_start = db.snapshot(database)
        assert served.terminate() == 0
        stdout = served.stdout()

    assert "INVENTORY_TOKEN" not in stdout
    assert tokens_in(stdout) == []
    [hint] = [line for line in stdout.splitlines() if "keys create" in line]
    assert f"inventory keys create --tenant default --role admin --database {database}" in hint
    assert after_start == before
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [row[0] for row in before["items"]]
    assert db.snapshot(database) == before


# --- configuration -------------------------------------------------------------------


def test_environment_variables_configure_serve_instead_of_flags(tmp_path: Path) -> None:
    database, port = tmp_path / "from-env.db", free_port()
    env = {"INVENTORY_DATABASE_URL": f"sqlite:///{database}", "INVENTORY_PORT": str(port)}

    with serving(tmp_path, port, env=env) as served:
        [token] = tokens_in(served.stdout())
        with ContractClient(served.url, token) as client:
            created = client.post("/items", json={"name": "apple", "qty": 5})
        assert served.terminate() == 0

    assert created.status_code == 201
    assert [row["name"] for row in db.items(database)] == ["apple"]
    assert not (tmp_path / "inventory.db").exists()


def test_serve_with_two_workers_on_sqlite_refuses_to_start(tmp_path: Path) -> None:
    database = tmp_path / "inventory.db"

    outcome = run_inventory(
        "serve", "--workers", "2", "--port", str(free_port()), "--database", str(database),
        cwd=tmp_path,
    )  # fmt: skip

    assert outcome.returncode != 0
    assert "PostgreSQL" in outcome.stderr, outcome.stderr
    assert "Traceback" not in outcome.stderr
    assert not database.exists()


# --- migrate -------------------------------------------------------------------------


def every_migration(backend: str) -> list[str]:
    """The names of every migration the service has for ``backend``, in order."""
    names = [name for name, _ in pending_migrations(backend, set())]
    assert names[:2] == ["0001_items_and_keys.sql", "0002_events.sql"]
    return names


def test_migrate_creates_the_schema_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "inventory.db"

    first = run_inventory("migrate", "--database", f"sqlite:///{path}", cwd=tmp_path)
    schema, state = sqlite_tables(path), db.snapshot(path)
    # The same file again, spelled as a URL relative to the working directory.
    second = run_inventory("migrate", "--database", "sqlite:///inventory.db", cwd=tmp_path)

    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert set(schema) == TABLES
    assert [row[0] for row in state["schema_migrations"]] == every_migration("sqlite")
    assert state["items"] == state["api_keys"] == []
    assert "INVENTORY_TOKEN" not in first.stdout
    assert sqlite_tables(path) == schema
    assert db.snapshot(path) == state


def postgres_tables(url: str) -> set[str]:
    async def fetch() -> set[str]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
            return {row["table_name"] for row in rows}
        finally:
            await conn.close()

    return asyncio.run(fetch())


def test_migrate_on_postgresql_creates_the_schema_and_is_idempotent(
    tmp_path: Path, postgres_url: str
) -> None:
    url = postgres.create_database()  # a new one: the session's database is migrated already
    try:
        first = run_inventory("migrate", "--database", url, cwd=tmp_path)
        tables, state = postgres_tables(url), db.snapshot(db.PostgresDatabase(url))
        second = run_inventory("migrate", "--database", url, cwd=tmp_path)

        assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
        assert tables == TABLES
        assert postgres_tables(url) == tables
        assert [row[0] for row in state["schema_migrations"]] == every_migration("postgres")
        assert state["items"] == state["api_keys"] == []
        assert db.snapshot(db.PostgresDatabase(url)) == state
    finally:
        postgres.drop_database(url)
