"""Database faults made for real under a running ``inventory serve``: 503, never 500, and
recovery without a restart (README, "Configuration": the paragraph on the 503).

Each test makes one fault the way an operator would meet it — another process holding
SQLite's write lock, a full disk (a small tmpfs filled up), the SQLite folder deleted,
PostgreSQL refusing connections — and checks the answers (503 problem+json with
``Retry-After``, as openapi.yaml says), that the service answers normally again once the
cause is gone, that every acknowledged write is kept, and that the log holds a line per
fault episode, not a traceback per request. Every response is checked against the spec.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import requests

from tests.support import postgres
from tests.support.contract import check_response
from tests.support.db import PostgresDatabase
from tests.support.problems import assert_unavailable
from tests.support.processes import INVENTORY, ServedProcess, run_inventory

BUDGET = 1.0  # INVENTORY_DB_TIMEOUT of the servers here, seconds
ENV = {"INVENTORY_DB_TIMEOUT": str(BUDGET)}


def _contract_hook(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    check_response(response)


@contextlib.contextmanager
def served(database: str, cwd: Path) -> Iterator[tuple[ServedProcess, requests.Session]]:
    """``inventory serve`` on ``database`` and a writer's session (spec-checked) for it."""
    made = run_inventory(
        "keys", "create", "--tenant", "faults", "--role", "writer", "--database", database
    )
    assert made.returncode == 0, made.stderr
    with (
        ServedProcess(cwd, "--database", database, env=ENV) as server,
        requests.Session() as session,
    ):
        session.headers["Authorization"] = f"Bearer {made.stdout.strip()}"
        session.hooks["response"].append(_contract_hook)
        try:
            yield server, session
        except BaseException:
            print(f"--- the server's log ---\n{server.stderr()[-20000:]}")  # shown on failure
            raise


def create(server: ServedProcess, session: requests.Session, name: str) -> requests.Response:
    return session.post(f"{server.url}/items", json={"name": name, "qty": 1}, timeout=30)


def eventually(answer: Any, status: int, seconds: float = 10) -> requests.Response:
    """``answer()`` again until it has ``status`` (at most ``seconds``); the last answer."""
    deadline = time.monotonic() + seconds
    while True:
        response: requests.Response = answer()
        assert response.status_code < 500 or response.status_code == 503, response.text
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def assert_quiet_log(server: ServedProcess, most_fault_lines: int = 4) -> None:
    """No traceback; a few lines about the fault episodes, not one per request."""
    log = server.stderr()
    assert "Traceback" not in log, log[-3000:]
    fault_lines = [line for line in log.splitlines() if "unavailable (" in line]
    assert 1 <= len(fault_lines) <= most_fault_lines, fault_lines


def test_a_write_lock_held_by_another_process_is_a_503_for_writes_only(tmp_path: Path) -> None:
    path = tmp_path / "inventory.db"
    with served(f"sqlite:///{path}", tmp_path) as (server, session):
        assert create(server, session, "before").status_code == 201
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            started = time.monotonic()
            assert_unavailable(create(server, session, "while locked"))
            assert time.monotonic() - started < BUDGET + 2
            started = time.monotonic()
            assert session.get(f"{server.url}/items", timeout=30).status_code == 200
            assert time.monotonic() - started < 0.5  # reads never wait behind the lock
            assert_unavailable(eventually(lambda: requests.get(f"{server.url}/healthz"), 503))
        finally:
            holder.rollback()
            holder.close()
        assert create(server, session, "after").status_code == 201
        assert eventually(lambda: requests.get(f"{server.url}/healthz"), 200).status_code == 200
        names = [i["name"] for i in session.get(f"{server.url}/items", timeout=30).json()["items"]]
        assert sorted(names) == ["after", "before"]
        assert_quiet_log(server)
        assert "available again" in server.stderr()


AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def _get_or_503(url: str) -> requests.Response:
    """GET ``url``; a server not listening yet reads as a 503, to be asked again."""
    try:
        return requests.get(url, timeout=5)
    except requests.ConnectionError:
        refused = requests.Response()
        refused.status_code = 503
        return refused


def test_a_database_file_the_service_may_not_write_is_a_503_for_writes_until_it_may() -> None:
    """As root every file is writable, so the server runs as ``nobody`` on a file of root's:
    SQLite opens it read-only. Writes are 503 (reads answer); once the file is the service's
    own, the writer connects anew and writes succeed, without a restart."""
    folder = Path(tempfile.mkdtemp(prefix="inventory-read-only-"))  # tmp_path is root's alone
    try:
        database = folder / "inventory.db"
        made = run_inventory("keys", "create", "--tenant", "faults", "--role", "writer",
                             "--database", str(database))  # fmt: skip
        assert made.returncode == 0, made.stderr
        shutil.chown(folder, "nobody", "nogroup")
        folder.chmod(0o755)
        probe = subprocess.run([*AS_NOBODY, str(INVENTORY), "--help"], capture_output=True)
        if probe.returncode != 0:
            pytest.skip(f"nobody cannot run {INVENTORY} here: {probe.stderr[-200:]!r}")
        server = ServedProcess(folder, "--database", str(database), env=ENV)
        server.command = [*AS_NOBODY, *server.command]
        server.start()
        try:
            with requests.Session() as session:
                session.headers["Authorization"] = f"Bearer {made.stdout.strip()}"
                session.hooks["response"].append(_contract_hook)
                # not ready (its /healthz is rightly 503), but serving: the public contract answers
                eventually(lambda: _get_or_503(f"{server.url}/openapi.yaml"), 200)
                assert_unavailable(create(server, session, "refused"))
                assert session.get(f"{server.url}/items", timeout=30).status_code == 200
                assert_unavailable(eventually(lambda: requests.get(f"{server.url}/healthz"), 503))
                shutil.chown(database, "nobody", "nogroup")
                assert (
                    eventually(lambda: create(server, session, "accepted"), 201).status_code == 201
                )
        finally:
            server.stop()
        assert "Traceback" not in server.stderr()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_the_sqlite_folder_deleted_is_a_503(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    with served(f"sqlite:///{folder / 'inventory.db'}", tmp_path) as (server, session):
        assert create(server, session, "kept").status_code == 201
        shutil.rmtree(folder)
        assert_unavailable(eventually(lambda: requests.get(f"{server.url}/healthz"), 503))
        assert_unavailable(create(server, session, "lost"))  # never acknowledged, then lost
        assert_quiet_log(server)


@contextlib.contextmanager
def small_tmpfs(folder: Path) -> Iterator[Path]:
    """A 2 MB tmpfs mounted on ``folder``; skip where mounting is not permitted."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(filler: Path) -> None:
    """Write ``filler`` until the file system has no space left."""
    with contextlib.suppress(OSError), filler.open("wb", buffering=0) as out:
        while True:
            out.write(b"\0" * 16384)


def test_a_full_disk_is_a_503_and_every_acknowledged_write_is_kept(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "mnt") as disk:
        path = disk / "inventory.db"
        with served(f"sqlite:///{path}", tmp_path) as (server, session):
            fill(disk / "filler")
            acknowledged, refused = [], 0
            for number in range(3000):
                answer = create(server, session, f"item {number}")
                assert answer.status_code in (201, 503), answer.text
                if answer.status_code == 201:
                    acknowledged.append(answer.json()["id"])
                else:
                    assert_unavailable(answer)
                    refused += 1
                    if refused == 5:
                        break
            assert refused == 5, "the disk never filled up"
            (disk / "filler").unlink()
            assert eventually(lambda: create(server, session, "after"), 201).status_code == 201
            for item_id in acknowledged:
                assert session.get(f"{server.url}/items/{item_id}", timeout=30).status_code == 200
            assert_quiet_log(server)
        with sqlite3.connect(path) as db:  # and after the server has stopped
            stored = {row[0] for row in db.execute("SELECT id FROM items")}
        assert set(acknowledged) <= stored


async def _alter_database(database: str, setting: str, end_sessions: bool) -> None:
    """``ALTER DATABASE database setting``, then (if ``end_sessions``) end its open sessions,
    so that every connection the service makes next meets the new setting."""
    admin = await asyncpg.connect(postgres.ADMIN_URL, timeout=5)
    try:
        await admin.execute(f'ALTER DATABASE "{database}" {setting}')
        if end_sessions:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
    finally:
        await admin.close()


async def _refuse_connections(database: str, refuse: bool) -> None:
    """``ALLOW_CONNECTIONS`` off (and every open session ended) or on again."""
    await _alter_database(database, f"ALLOW_CONNECTIONS {not refuse}", end_sessions=refuse)


async def _read_only(database: str, read_only: bool) -> None:
    """New sessions of ``database`` read-only (and every open one ended), or writable again."""
    await _alter_database(
        database, f"SET default_transaction_read_only = {read_only}", end_sessions=True
    )


def test_postgresql_refusing_connections_is_a_503_until_it_accepts_them_again(
    tmp_path: Path, fresh_postgres: PostgresDatabase
) -> None:
    name = fresh_postgres.url.rsplit("/", 1)[1]
    with served(fresh_postgres.url, tmp_path) as (server, session):
        assert create(server, session, "before").status_code == 201
        try:
            asyncio.run(_refuse_connections(name, refuse=True))
            for _ in range(20):
                assert_unavailable(session.get(f"{server.url}/items", timeout=30))
            assert_unavailable(create(server, session, "refused"))
            assert_unavailable(eventually(lambda: requests.get(f"{server.url}/healthz"), 503))
        finally:
            asyncio.run(_refuse_connections(name, refuse=False))
        assert eventually(lambda: create(server, session, "after"), 201).status_code == 201
        assert session.get(f"{server.url}/items", timeout=30).status_code == 200
        assert_quiet_log(server)


def test_a_postgresql_row_lock_held_elsewhere_is_a_503_after_the_lock_timeout(
    tmp_path: Path, fresh_postgres: PostgresDatabase
) -> None:
    loop = asyncio.new_event_loop()
    with served(fresh_postgres.url, tmp_path) as (server, session):
        item = create(server, session, "contended").json()
        holder = loop.run_until_complete(asyncpg.connect(fresh_postgres.url, timeout=5))
        try:
            loop.run_until_complete(holder.execute("BEGIN"))
            loop.run_until_complete(
                holder.execute("SELECT 1 FROM items WHERE id = $1 FOR UPDATE", item["id"])
            )
            started = time.monotonic()
            adjusted = session.post(
                f"{server.url}/items/{item['id']}/adjustments", json={"delta": 1}, timeout=30
            )
            assert_unavailable(adjusted)
            assert time.monotonic() - started < 2 * BUDGET + 2
            started = time.monotonic()
            assert session.get(f"{server.url}/items/{item['id']}", timeout=30).status_code == 200
            assert requests.get(f"{server.url}/healthz", timeout=30).status_code == 200
            assert time.monotonic() - started < 1  # nothing else waits behind the row lock
        finally:
            loop.run_until_complete(holder.close())  # its transaction rolls back
            loop.close()
        adjusted = session.post(
            f"{server.url}/items/{item['id']}/adjustments", json={"delta": 1}, timeout=30
        )
        assert adjusted.status_code == 200, adjusted.text
        assert adjusted.json()["qty"] == 2
        assert_quiet_log(server)


def test_a_read_only_postgresql_database_is_a_503_for_writes(
    tmp_path: Path, fresh_postgres: PostgresDatabase
) -> None:
    name = fresh_postgres.url.rsplit("/", 1)[1]
    with served(fresh_postgres.url, tmp_path) as (server, session):
        assert create(server, session, "before").status_code == 201
        try:
            asyncio.run(_read_only(name, read_only=True))
            assert_unavailable(eventually(lambda: create(server, session, "refused"), 503))
            assert_unavailable(create(server, session, "refused"))
            assert session.get(f"{server.url}/items", timeout=30).status_code == 200
            assert_unavailable(eventually(lambda: requests.get(f"{server.url}/healthz"), 503))
        finally:
            asyncio.run(_read_only(name, read_only=False))
        assert eventually(lambda: create(server, session, "after"), 201).status_code == 201
        assert eventually(lambda: requests.get(f"{server.url}/healthz"), 200).status_code == 200
        assert_quiet_log(server)


async def _admin(sql: str, url: str = postgres.ADMIN_URL) -> None:
    admin = await asyncpg.connect(url, timeout=5)
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


@contextlib.contextmanager
def limited_role(database: PostgresDatabase, limit: int) -> Iterator[tuple[str, str]]:
    """A role with ``limit`` connections owning ``database``: (its name, its URL there)."""
    role = f"inventory_limited_{secrets.token_hex(4)}"
    name = database.url.rsplit("/", 1)[1]
    asyncio.run(_admin(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT {limit}"))
    try:
        asyncio.run(_admin(f'ALTER DATABASE "{name}" OWNER TO {role}'))
        host = database.url.split("@", 1)[1]
        yield role, f"postgresql://{role}@{host}"
    finally:
        asyncio.run(_admin(f"REASSIGN OWNED BY {role} TO CURRENT_USER", database.url))
        asyncio.run(_admin(f'ALTER DATABASE "{name}" OWNER TO CURRENT_USER'))
        asyncio.run(_admin(f"DROP ROLE {role}"))


def test_the_connection_limit_is_waited_for_then_a_503(
    tmp_path: Path, fresh_postgres: PostgresDatabase
) -> None:
    with limited_role(fresh_postgres, 3) as (role, url), served(url, tmp_path) as served_:
        server, session = served_
        assert create(server, session, "first").status_code == 201
        with ThreadPoolExecutor(16) as pool:  # the listener holds 1 of 3: 2 for 16 requests
            answers = list(
                pool.map(lambda _: session.get(f"{server.url}/items", timeout=30), range(48))
            )
        assert [a.status_code for a in answers] == [200] * 48
        try:
            asyncio.run(_admin(f"ALTER ROLE {role} CONNECTION LIMIT 0"))
            asyncio.run(
                _admin(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    f" WHERE usename = '{role}'"
                )
            )
            for _ in range(3):
                started = time.monotonic()
                assert_unavailable(session.get(f"{server.url}/items", timeout=30))
                assert time.monotonic() - started < BUDGET + 1  # waited its budget, no more
        finally:
            asyncio.run(_admin(f"ALTER ROLE {role} CONNECTION LIMIT 3"))
        assert eventually(lambda: create(server, session, "after"), 201).status_code == 201
        assert_quiet_log(server)


def test_the_feed_listener_connects_again_after_postgresql_ended_it(
    tmp_path: Path, fresh_postgres: PostgresDatabase
) -> None:
    name = fresh_postgres.url.rsplit("/", 1)[1]
    with (
        served(fresh_postgres.url, tmp_path) as (follower, session),
        ServedProcess(tmp_path, "--database", fresh_postgres.url, env=ENV) as writer,
    ):
        assert create(writer, session, "before").status_code == 201
        cursor = session.get(f"{follower.url}/events", timeout=30).json()["next_cursor"]
        asyncio.run(
            _admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                f" WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
        )
        deadline = time.monotonic() + 15
        while "feed listener connected again" not in follower.stderr():
            assert time.monotonic() < deadline, follower.stderr()[-2000:]
            time.sleep(0.1)
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            waiting = pool.submit(
                session.get, f"{follower.url}/events?after={cursor}&wait=20", timeout=30
            )
            time.sleep(0.5)
            assert eventually(lambda: create(writer, session, "after"), 201).status_code == 201
            events = waiting.result().json()["events"]
        assert [event["name"] for event in events] == ["after"]
        assert time.monotonic() - started < 10  # woken by the other process's NOTIFY
        assert "Traceback" not in follower.stderr() + writer.stderr()
