"""``inventory export`` and ``inventory import``: the whole state, moved between databases.

Moving a database runs the real console script in subprocesses (also as the README's
pipe); tests that try many inputs call its entry point in this process (``cli``). Every
test checks the databases themselves (``tests.support.db``) and, where keys moved, a live
server on the new database that must accept the old keys and answer as the old one did.

Invalid exports are decided before anything is written, so most of them are tried on
SQLite only; what the database itself could reject (and must then roll back) and a
non-empty target are tried on both backends.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import io
import itertools
import json
import logging
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import pytest

from model.invariants import QTY_MAX
from service.auth import new_key
from service.cli import main
from service.store import open_store
from service.transfer import parse_export
from tests.support import db
from tests.support.contract import ContractClient
from tests.support.db import Database, PostgresDatabase, key_id, secret_part, url_of
from tests.support.processes import CLEAN_ENV, INVENTORY, run_inventory
from tests.support.server import LiveServer

HEADER = {"type": "inventory-export", "version": 1}
"""The header of an export made before the ledger: what the hand-made exports here use."""
EXPORT_HEADER = {"type": "inventory-export", "version": 3}
"""The header export writes: items are followed by their events."""
KEY_FIELDS = {"type", "id", "tenant", "role", "key_hash", "created_at", "revoked_at"}
ITEM_FIELDS = {"type", "tenant", "id", "name", "qty", "version", "created_at", "updated_at"}
KEYS = {
    "acme-admin": ("acme", "admin"),
    "acme-writer": ("acme", "writer"),
    "acme-reader": ("acme", "reader"),
    "globex-writer": ("globex", "writer"),
    "revoked": ("acme", "writer"),
}
CREATED = "2024-01-02T03:04:05.000006Z"
UPDATED = "2024-02-03T04:05:06.000007Z"
Records = list[Any]  # decoded JSON objects, or raw text for a line that is not JSON


# --- helpers -------------------------------------------------------------------------


class Cli(Protocol):
    """Runs one ``inventory`` command on a database; its outcome."""

    def __call__(
        self, *arguments: str, database: Database, stdin: str = ""
    ) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """``inventory ...`` through the console script's own entry point, in this process.

    The script is ``sys.exit(service.cli.main())``; this runs the same and turns its
    ``SystemExit`` into the exit status and stderr the interpreter would make of it. It
    saves starting an interpreter (most of a command's time) in tests that try many inputs;
    the tests that move a database between backends run the real script in subprocesses.
    """
    monkeypatch.setattr(logging, "basicConfig", lambda **_: None)  # leave pytest's logging be

    def run(
        *arguments: str, database: Database, stdin: str = ""
    ) -> subprocess.CompletedProcess[str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        status = 0
        try:
            main([*arguments, "--database", url_of(database)])
        except SystemExit as exit_:
            if isinstance(exit_.code, int):
                status = exit_.code
            elif exit_.code is not None:
                print(exit_.code, file=sys.stderr)
                status = 1
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["inventory", *arguments], status, out, err)

    return run


def migrate(database: Database) -> None:
    """Bring ``database`` to the current schema, with no rows (setup, in-process)."""

    async def run() -> None:
        store = await open_store(url_of(database))
        await store.close()

    asyncio.run(run())


def populate(server: LiveServer) -> dict[str, str]:
    """Keys of two tenants (one revoked) and items with some history; the keys by label."""
    keys = {label: server.create_key(tenant, role) for label, (tenant, role) in KEYS.items()}
    assert server.run(server.store.revoke_key(None, key_id(keys["revoked"])))
    with ContractClient(server.url, keys["acme-writer"]) as acme:
        ids = {}
        for name, qty in [
            ("Apple", 3), ("Straße", 0), ("naïve café", 12), ("Zebra", QTY_MAX), ("ǅemal", 1),
            ("Doomed", 4),
        ]:  # fmt: skip
            created = acme.post("/items", json={"name": name, "qty": qty}, timeout=30)
            assert created.status_code == 201
            ids[name] = created.json()["id"]
        assert acme.patch(f"/items/{ids['Apple']}", json={"qty": 10}, timeout=30).ok
        for delta in (5, -2):
            adjusted = acme.post(
                f"/items/{ids['Straße']}/adjustments", json={"delta": delta}, timeout=30
            )
            assert adjusted.status_code == 200
        assert acme.delete(f"/items/{ids['Doomed']}", timeout=30).status_code == 204
    with ContractClient(server.url, keys["globex-writer"]) as globex:
        for name, qty in [("apple", 1), ("Bolt", 7)]:
            created = globex.post("/items", json={"name": name, "qty": qty}, timeout=30)
            assert created.status_code == 201
    return keys


ITEM_COUNT = 7  # what populate leaves
ITEMS = 1234  # more than one page (1000) of the export


def all_pages(client: ContractClient, limit: int = 2) -> list[list[dict[str, Any]]]:
    """Every page of ``GET /items`` (``limit`` items each), first to last."""
    pages = []
    cursor: str | None = None
    for _ in range(1000):
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = client.get("/items", params=params, timeout=30)
        assert response.status_code == 200
        pages.append(response.json()["items"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError("the listing never ended")


def by_id(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: str(row["id"]))


def key_record(tenant: str, role: str) -> dict[str, Any]:
    key, _ = new_key(tenant, role)
    return {"type": "key", **key.as_json(), "key_hash": key.key_hash.hex()}


def item_record(tenant: str, name: str, qty: int = 1, version: int = 1) -> dict[str, Any]:
    return {
        "type": "item", "tenant": tenant, "id": str(uuid.uuid4()), "name": name, "qty": qty,
        "version": version, "created_at": CREATED, "updated_at": UPDATED,
    }  # fmt: skip


def end_record(records: Records) -> dict[str, Any]:
    """The end record that counts the keys and items of ``records``."""
    kinds = [r.get("type") for r in records if isinstance(r, dict)]
    return {
        "type": "end",
        "keys": kinds.count("key"),
        "items": kinds.count("item"),
        "events": kinds.count("event"),
    }


def jsonl(records: Records, end: bool = True) -> str:
    """The lines of an export: each record as JSON, a ``str`` record as written; then, unless
    ``end`` is false, the end record counting them, as ``inventory export`` writes it."""
    return "".join(
        (record if isinstance(record, str) else json.dumps(record)) + "\n"
        for record in [*records, *([end_record(records)] if end else [])]
    )


def valid_export() -> Records:
    """Header, a key, and three items; ``apple`` in globex does not clash with ``Apple``."""
    return [
        HEADER,
        key_record("acme", "writer"),
        item_record("acme", "Apple", 3),
        item_record("globex", "apple", 4),
        item_record("acme", "Bolt", 5, version=7),
    ]


def names_line(message: str, line: int) -> bool:
    """Whether ``message`` points at line ``line`` ("line 3: ...", "lines 2 and 3", ...)."""
    return re.search(rf"\blines?\b[^\n]*\b{line}\b", message) is not None


@pytest.fixture
def other_backend(database: Database, tmp_path: Path, request: pytest.FixtureRequest) -> Database:
    """An empty database of the backend that ``database`` is not."""
    if isinstance(database, PostgresDatabase):
        return tmp_path / "moved.db"
    # conftest's, dropped after the test; skipped (or failed, in CI) without PostgreSQL.
    fresh: PostgresDatabase = request.getfixturevalue("fresh_postgres")
    return fresh


# --- export --------------------------------------------------------------------------


def test_export_writes_a_header_then_every_key_as_a_hash_then_every_item_then_their_count(
    database: Database,
) -> None:
    server = LiveServer(database).start()
    try:
        keys = populate(server)
    finally:
        server.stop()

    exported = run_inventory("export", "--database", url_of(database))

    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.endswith("\n")
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    events = len(db.events(database))
    assert f"exported {len(KEYS) + ITEM_COUNT + events} records" in exported.stderr
    assert records[0] == EXPORT_HEADER
    assert records[-1] == {
        "type": "end", "keys": len(KEYS), "items": ITEM_COUNT, "events": events, "answers": 0,
    }  # fmt: skip
    records = records[:-1]
    kinds = ["key"] * len(KEYS) + ["item"] * ITEM_COUNT + ["event"] * events
    assert [r["type"] for r in records[1:]] == kinds
    key_records = records[1 : 1 + len(KEYS)]
    item_records = records[1 + len(KEYS) : 1 + len(KEYS) + ITEM_COUNT]
    assert all(set(record) == KEY_FIELDS for record in key_records)
    assert sorted(r["key_hash"] for r in key_records) == sorted(
        hashlib.sha256(secret.encode()).hexdigest() for secret in keys.values()
    )
    for secret in keys.values():
        assert secret_part(secret) not in exported.stdout
    revoked = [r for r in key_records if r["id"] == key_id(keys["revoked"])]
    assert [r["revoked_at"] is not None for r in revoked] == [True]
    assert all(set(record) == ITEM_FIELDS for record in item_records)
    stored = [
        {"type": "item", **{k: v for k, v in row.items() if k != "name_key"}}
        for row in db.items(database)
    ]
    assert by_id(item_records) == by_id(stored)


def test_export_of_an_empty_database_is_the_header_and_an_end_record_counting_nothing(
    database: Database, cli: Cli
) -> None:
    migrate(database)

    exported = cli("export", database=database)

    assert exported.returncode == 0, exported.stderr
    assert [json.loads(line) for line in exported.stdout.splitlines()] == [
        EXPORT_HEADER,
        {"type": "end", "keys": 0, "items": 0, "events": 0, "answers": 0},
    ]


# --- import --------------------------------------------------------------------------


def test_import_into_the_other_backend_reproduces_every_item_and_key_and_old_keys_still_work(
    database: Database, other_backend: Database
) -> None:
    server = LiveServer(database).start()
    try:
        keys = populate(server)
        with ContractClient(server.url, keys["acme-reader"]) as reader:
            acme_pages = all_pages(reader)
        with ContractClient(server.url, keys["globex-writer"]) as globex:
            globex_pages = all_pages(globex)
        with ContractClient(server.url, keys["acme-admin"]) as admin:
            acme_keys = admin.get("/keys", timeout=30).json()
    finally:
        server.stop()
    exported = run_inventory("export", "--database", url_of(database))
    assert exported.returncode == 0, exported.stderr

    imported = run_inventory("import", "--database", url_of(other_backend), stdin=exported.stdout)

    assert imported.returncode == 0, imported.stderr
    events = len(db.events(database))
    assert f"imported {len(KEYS)} keys, {ITEM_COUNT} items, {events} events" in imported.stderr
    assert by_id(db.items(other_backend)) == by_id(db.items(database))
    assert db.snapshot(other_backend)["events"] == db.snapshot(database)["events"]
    assert db.snapshot(other_backend)["api_keys"] == db.snapshot(database)["api_keys"]
    server = LiveServer(other_backend).start()
    try:
        with ContractClient(server.url, keys["acme-reader"]) as reader:
            assert all_pages(reader) == acme_pages
        with ContractClient(server.url, keys["globex-writer"]) as globex:
            assert all_pages(globex) == globex_pages
        with ContractClient(server.url, keys["acme-admin"]) as admin:
            assert admin.get("/keys", timeout=30).json() == acme_keys
        with ContractClient(server.url, keys["revoked"]) as revoked:
            assert revoked.get("/items", timeout=30).status_code == 401
        with ContractClient(server.url, keys["acme-writer"]) as writer:
            [apple] = [i for page in acme_pages for i in page if i["name"] == "Apple"]
            adjusted = writer.post(
                f"/items/{apple['id']}/adjustments", json={"delta": 1}, timeout=30
            )
            assert adjusted.status_code == 200
            assert (adjusted.json()["qty"], adjusted.json()["version"]) == (
                11,
                apple["version"] + 1,
            )
    finally:
        server.stop()


def test_kept_answers_travel_with_an_export_and_a_retry_on_the_new_database_replays(
    database: Database, other_backend: Database
) -> None:
    server = LiveServer(database).start()
    try:
        writer = server.create_key("acme", "writer")
        with ContractClient(server.url, writer) as client:
            created = client.post("/items", json={"name": "Bolt", "qty": 5}, timeout=30)
            sale = {"Idempotency-Key": '"sale-7"'}
            path = f"/items/{created.json()['id']}/adjustments"
            sold = client.post(path, json={"delta": -2}, headers=sale, timeout=30)
            assert sold.status_code == 200
    finally:
        server.stop()
    exported = run_inventory("export", "--database", url_of(database))
    assert exported.returncode == 0, exported.stderr
    [answer] = [r for r in map(json.loads, exported.stdout.splitlines()) if r["type"] == "answer"]
    assert (answer["tenant"], answer["key"], answer["status"]) == ("acme", "sale-7", 200)

    imported = run_inventory("import", "--database", url_of(other_backend), stdin=exported.stdout)

    assert imported.returncode == 0, imported.stderr
    assert "and 1 kept answers" in imported.stderr
    assert db.snapshot(other_backend)["idempotency"] == db.snapshot(database)["idempotency"]
    events = db.events(other_backend)
    server = LiveServer(other_backend).start()
    try:
        with ContractClient(server.url, writer) as client:
            again = client.post(path, json={"delta": -2}, headers=sale, timeout=30)
    finally:
        server.stop()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (again.status_code, again.content) == (200, sold.content)
    assert db.events(other_backend) == events
    assert [i["qty"] for i in db.items(other_backend)] == [3]


@pytest.mark.parametrize("command", ["export", "import"])
def test_help_says_that_an_export_file_carries_credentials(command: str) -> None:
    helped = run_inventory(command, "--help")

    assert helped.returncode == 0, helped.stderr
    text = " ".join(helped.stdout.split())
    assert "An export file carries credentials" in text, text
    assert "as a secret" in text, text


def test_the_readme_pipe_moves_a_sqlite_database_to_postgresql(
    tmp_path: Path, fresh_postgres: PostgresDatabase
) -> None:
    """``inventory export --database sqlite:///a.db | inventory import --database postgresql://...``"""
    server = LiveServer(tmp_path / "a.db").start()
    try:
        keys = populate(server)
        with ContractClient(server.url, keys["acme-writer"]) as writer:
            before = all_pages(writer, limit=100)
    finally:
        server.stop()

    commands = [
        [str(INVENTORY), "export", "--database", "sqlite:///a.db"],
        [str(INVENTORY), "import", "--database", fresh_postgres.url],
    ]
    export = subprocess.Popen(
        commands[0], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CLEAN_ENV, cwd=tmp_path
    )
    try:
        load = subprocess.Popen(
            commands[1], stdin=export.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=CLEAN_ENV, cwd=tmp_path,
        )  # fmt: skip
        try:
            assert export.stdout is not None
            export.stdout.close()  # the import holds the pipe now
            _, load_errors = load.communicate(timeout=60)
            _, export_errors = export.communicate(timeout=60)
        finally:
            load.kill()
            load.wait(timeout=10)
    finally:
        export.kill()
        export.wait(timeout=10)

    assert export.returncode == 0, export_errors.decode()
    assert load.returncode == 0, load_errors.decode()
    assert by_id(db.items(fresh_postgres)) == by_id(db.items(tmp_path / "a.db"))
    server = LiveServer(fresh_postgres).start()
    try:
        with ContractClient(server.url, keys["acme-writer"]) as writer:
            assert all_pages(writer, limit=100) == before
    finally:
        server.stop()


def test_export_and_import_carry_more_than_a_page_of_items_each_exactly_once(
    database: Database, cli: Cli
) -> None:
    tenants = ["acme", "Acme", "b", "ä", "z"]  # export pages go by (tenant, id)
    records = [HEADER] + [
        item_record(tenants[n % len(tenants)], f"part {n:05}", n, 1 + n % 3) for n in range(ITEMS)
    ]
    imported = cli("import", database=database, stdin=jsonl(records))
    assert imported.returncode == 0, imported.stderr

    exported = cli("export", database=database)

    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert lines[0] == EXPORT_HEADER
    assert lines.pop() == {"type": "end", "keys": 0, "items": ITEMS, "events": ITEMS, "answers": 0}
    item_lines = [line for line in lines if line["type"] == "item"]
    assert sorted(line["id"] for line in item_lines) == sorted(r["id"] for r in records[1:])
    assert {json.dumps(line, sort_keys=True) for line in item_lines} == {
        json.dumps(record, sort_keys=True) for record in records[1:]
    }
    opening = [line["event"] for line in lines if line["type"] == "event"]
    assert sorted(e["item_id"] for e in opening) == sorted(r["id"] for r in records[1:])
    assert all(e["reason"] == "ledger opened" and e["key_id"] is None for e in opening)
    assert len(db.items(database)) == ITEMS


@pytest.mark.parametrize("already_there", ["a key", "an item"])
def test_import_into_a_database_that_is_not_empty_is_refused_and_writes_nothing(
    database: Database, already_there: str, cli: Cli
) -> None:
    server = LiveServer(database).start()
    try:
        with ContractClient(server.url, server.create_key("acme", "writer")) as writer:
            if already_there == "an item":
                created = writer.post("/items", json={"name": "Old", "qty": 1}, timeout=30)
                assert created.status_code == 201
    finally:
        server.stop()
    if already_there == "an item":
        db.execute(database, "DELETE FROM api_keys")
    before = db.snapshot(database)
    assert before["api_keys"] or before["items"]

    imported = cli("import", database=database, stdin=jsonl(valid_export()))

    assert imported.returncode != 0
    assert "not empty" in imported.stderr
    assert "Traceback" not in imported.stderr
    assert db.snapshot(database) == before


def test_a_record_the_database_cannot_hold_refuses_the_whole_import(database: Database) -> None:
    """A version of 2**63 (past what the service can ever change) is refused by its line."""
    migrate(database)
    before = db.snapshot(database)
    records = [*valid_export(), item_record("acme", "Huge", version=2**63)]

    imported = run_inventory("import", "--database", url_of(database), stdin=jsonl(records))

    assert imported.returncode != 0
    assert db.snapshot(database) == before
    assert "Traceback" not in imported.stderr, imported.stderr
    assert names_line(imported.stderr, len(records)), imported.stderr


def _set(line: int, field: str, value: Any) -> Callable[[Records], Records]:
    def change(records: Records) -> Records:
        records[line - 1][field] = value
        return records

    return change


def _replace(line: int, text: str) -> Callable[[Records], Records]:
    def change(records: Records) -> Records:
        records[line - 1] = text
        return records

    return change


def _same_id(records: Records) -> Records:
    records[4]["id"] = records[2]["id"]
    return records


def _blank_line_then_bad_qty(records: Records) -> Records:
    records[4]["qty"] = -1
    records.insert(1, "")
    return records  # the bad record is now on line 6


INVALID_EXPORTS: dict[str, tuple[Callable[[Records], Records], int]] = {
    "name-with-leading-space": (_set(3, "name", " apple"), 3),
    "name-not-nfc": (_set(3, "name", "Cafe\u0301"), 3),
    "name-with-nul": (_set(3, "name", "ap\u0000ple"), 3),
    "qty-negative": (_set(3, "qty", -1), 3),
    "qty-float": (_set(3, "qty", 5.0), 3),
    "qty-true": (_set(3, "qty", True), 3),
    "qty-string": (_set(3, "qty", "5"), 3),
    "qty-above-max": (_set(3, "qty", QTY_MAX + 1), 3),
    "duplicate-name-ignoring-case": (_set(5, "name", "APPLE"), 5),
    "duplicate-id": (_same_id, 5),
    "not-json": (_replace(3, '{"type": "item", "tenant": "acme",'), 3),
    "missing-header": (lambda records: records[1:], 1),
    "unknown-record-type": (_set(3, "type", "widget"), 3),
    "extra-field-in-item": (_set(3, "colour", "red"), 3),
    "extra-field-in-key": (_set(2, "secret", "inv_0000000000000000_x"), 2),
    "impossible-timestamp": (_set(3, "updated_at", "2024-13-45T25:61:61.000000Z"), 3),
    "blank-line-before-a-bad-record": (_blank_line_then_bad_qty, 6),
    # every rule the service applies, applied before writing (issue 11)
    "tenant-with-nul": (_set(3, "tenant", "ac\u0000me"), 3),
    "key-tenant-with-nul": (_set(2, "tenant", "ac\u0000me"), 2),
    "version-2-to-the-53": (_set(5, "version", QTY_MAX + 1), 5),
    "version-2-to-the-63-minus-1": (_set(5, "version", 2**63 - 1), 5),
    "version-zero": (_set(5, "version", 0), 5),
    "updated-before-created": (_set(3, "updated_at", "2024-01-02T03:04:05.000005Z"), 3),
    "revoked-before-created": (_set(2, "revoked_at", "2024-01-01T00:00:00.000000Z"), 2),
    "key-id-not-a-string": (_set(2, "id", 1234567890123456), 2),
}


@pytest.mark.parametrize("case", INVALID_EXPORTS)
def test_an_invalid_export_is_refused_naming_its_line_and_writes_nothing(
    tmp_path: Path, case: str, cli: Cli
) -> None:
    database = tmp_path / "target.db"
    migrate(database)
    before = db.snapshot(database)
    mutate, line = INVALID_EXPORTS[case]
    text = jsonl(mutate(copy.deepcopy(valid_export())))

    imported = cli("import", database=database, stdin=text)

    assert imported.returncode != 0
    assert "nothing imported" in imported.stderr
    assert "Traceback" not in imported.stderr
    assert names_line(imported.stderr, line), imported.stderr
    assert db.snapshot(database) == before


@pytest.mark.parametrize(
    "case", ["tenant-with-nul", "version-2-to-the-53", "updated-before-created"]
)
def test_a_record_the_service_would_refuse_is_refused_by_either_backend_before_writing(
    database: Database, case: str
) -> None:
    """On PostgreSQL too (where a NUL in a tenant once reached the driver as a traceback)."""
    migrate(database)
    before = db.snapshot(database)
    mutate, line = INVALID_EXPORTS[case]
    text = jsonl(mutate(copy.deepcopy(valid_export())))

    imported = run_inventory("import", "--database", url_of(database), stdin=text)

    assert imported.returncode != 0
    assert "nothing imported" in imported.stderr, imported.stderr
    assert "Traceback" not in imported.stderr, imported.stderr
    assert names_line(imported.stderr, line), imported.stderr
    assert "end record" not in imported.stderr, "a bad record is not also a miscount"
    assert db.snapshot(database) == before


def test_the_valid_export_used_above_imports_cleanly(tmp_path: Path, cli: Cli) -> None:
    """The control for the invalid cases: only their one change makes them invalid."""
    database = tmp_path / "target.db"
    records = valid_export()

    imported = cli("import", database=database, stdin=jsonl(records))

    assert imported.returncode == 0, imported.stderr
    stored = {row["id"]: row for row in db.items(database)}
    for record in records[2:]:
        row = stored.pop(record["id"])
        assert {k: row[k] for k in ITEM_FIELDS - {"type"}} == {
            k: record[k] for k in ITEM_FIELDS - {"type"}
        }
    assert stored == {}
    [key] = db.snapshot(database)["api_keys"]
    assert key[0] == records[1]["id"]
    assert key[3] == bytes.fromhex(records[1]["key_hash"])


# --- a cut-off export ------------------------------------------------------------------


def test_an_export_cut_at_a_line_boundary_is_refused_naming_the_missing_end_and_writes_nothing(
    tmp_path: Path, cli: Cli
) -> None:
    source, target = tmp_path / "source.db", tmp_path / "target.db"
    imported = cli("import", database=source, stdin=jsonl(valid_export()))
    assert imported.returncode == 0, imported.stderr
    exported = cli("export", database=source)
    assert exported.returncode == 0, exported.stderr
    migrate(target)
    before = db.snapshot(target)

    for kept in range(1, len(exported.stdout.splitlines())):
        cut = "".join(exported.stdout.splitlines(keepends=True)[:kept])
        refused = cli("import", database=target, stdin=cut)

        assert refused.returncode != 0, cut
        assert "nothing imported" in refused.stderr
        assert "end record" in refused.stderr, refused.stderr
        assert "cut off" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        assert db.snapshot(target) == before


@pytest.mark.parametrize(
    ("end", "line"),
    [
        ({"type": "end", "keys": 1, "items": 4}, 6),
        ({"type": "end", "keys": 0, "items": 3}, 6),
        ({"type": "end", "keys": 1}, 6),
    ],
)
def test_an_end_record_that_miscounts_the_records_is_refused_naming_its_line(
    tmp_path: Path, cli: Cli, end: dict[str, Any], line: int
) -> None:
    database = tmp_path / "target.db"
    migrate(database)
    before = db.snapshot(database)

    refused = cli("import", database=database, stdin=jsonl([*valid_export(), end], end=False))

    assert refused.returncode != 0
    assert "end record" in refused.stderr, refused.stderr
    assert names_line(refused.stderr, line), refused.stderr
    assert db.snapshot(database) == before


def test_a_record_after_the_end_record_is_refused_naming_its_line(tmp_path: Path, cli: Cli) -> None:
    database = tmp_path / "target.db"
    migrate(database)
    before = db.snapshot(database)
    records = valid_export()
    text = jsonl(records[:3]) + jsonl(records[3:], end=False)  # the end record on line 4

    refused = cli("import", database=database, stdin=text)

    assert refused.returncode != 0
    assert "nothing may follow the end record" in refused.stderr, refused.stderr
    assert names_line(refused.stderr, 5), refused.stderr
    assert names_line(refused.stderr, 6), refused.stderr
    assert db.snapshot(database) == before


def test_an_export_taken_while_items_change_is_one_consistent_state(database: Database) -> None:
    """Export reads one snapshot: with renames and adjustments committing all the while, every
    export still passes import's whole audit (each item where its events leave it, each name
    once per tenant); read in pieces, items and events would disagree."""
    server = LiveServer(database).start()
    stop = threading.Event()
    try:
        with ContractClient(server.url, server.create_key("acme", "writer")) as writer:
            ids = [
                writer.post("/items", json={"name": f"n{n}", "qty": 50}, timeout=30).json()["id"]
                for n in range(20)
            ]

            def churn() -> None:
                for turn in itertools.count():
                    if stop.is_set():
                        return
                    item = ids[turn % len(ids)]
                    writer.patch(f"/items/{item}", json={"name": f"n{turn % 20}-{turn}"})
                    writer.post(f"/items/{item}/adjustments", json={"delta": 1 - turn % 3})

            with ThreadPoolExecutor(1) as pool:
                churning = pool.submit(churn)
                exports = [
                    run_inventory("export", "--database", url_of(database)) for _ in range(4)
                ]
                stop.set()
                churning.result(timeout=60)
    finally:
        stop.set()
        server.stop()

    for exported in exports:
        assert exported.returncode == 0, exported.stderr
        state = parse_export(io.StringIO(exported.stdout))  # ImportRefused if inconsistent
        assert len(state.items) == 20
        assert len(state.events) > 20
