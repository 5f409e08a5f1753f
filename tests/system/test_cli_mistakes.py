"""A user's mistakes on the command line: one readable line, a non-zero exit, within seconds.

Each mistake is made for real, with the real console script in a subprocess: a missing
folder, a file that is not an inventory database (an export, another application's SQLite
file, an empty or garbage file), a URL of an unknown scheme, a PostgreSQL that is not there
(a closed port, an unknown database or role), a busy port, a second server on a SQLite
file, a bad value in an ``INVENTORY_*`` variable. Each test also checks that nothing was
written where nothing should have been.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from tests.support import db
from tests.support.processes import ServedProcess, free_port, run_inventory

SECONDS = 10.0


Timed = tuple[subprocess.CompletedProcess[str], float]


def made_a_mistake(outcome_and_time: Timed, *words: str) -> str:
    """Assert the outcome of a mistaken command; its one line of stderr."""
    outcome, seconds = outcome_and_time
    output = outcome.stdout + outcome.stderr
    assert outcome.returncode != 0, output
    assert "Traceback" not in output, output
    assert outcome.stderr.count("\n") == 1, outcome.stderr
    assert outcome.stderr.startswith("inventory"), outcome.stderr
    assert seconds < SECONDS
    for word in words:
        assert word in outcome.stderr, (word, outcome.stderr)
    return str(outcome.stderr)


def timed(*arguments: str, cwd: Path, env: dict[str, str] | None = None) -> Timed:
    started = time.monotonic()
    outcome = run_inventory(*arguments, cwd=cwd, env=env, timeout=SECONDS * 3)
    return outcome, time.monotonic() - started


def other_application_file(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE items (sku TEXT PRIMARY KEY, shelf INTEGER)")
        conn.execute("INSERT INTO items VALUES ('a-1', 3)")
        conn.commit()


NOT_INVENTORY: dict[str, Callable[[Path], object]] = {
    "an export file": lambda p: p.write_text('{"type": "inventory-export", "version": 1}\n'),
    "another application's sqlite file with its own items table": other_application_file,
    "an empty file": lambda p: p.write_bytes(b""),
    "a garbage file": lambda p: p.write_bytes(bytes(range(256)) * 20),
}
COMMANDS = [["migrate"], ["serve", "--port", "0"], ["keys", "list"], ["export"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("made", NOT_INVENTORY)
def test_a_file_that_is_not_an_inventory_database_is_refused_and_left_byte_for_byte(
    tmp_path: Path, made: str, command: list[str]
) -> None:
    path = tmp_path / "mistake.db"
    NOT_INVENTORY[made](path)
    before = path.read_bytes()

    made_a_mistake(timed(*command, "--database", str(path), cwd=tmp_path), str(path))

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "mistake.db.lock") == [
        "mistake.db"
    ]


def test_a_database_in_a_missing_folder_is_refused_and_no_folder_is_made(tmp_path: Path) -> None:
    for command in COMMANDS:
        missing = tmp_path / "no" / "such" / "folder" / "x.db"
        made_a_mistake(timed(*command, "--database", str(missing), cwd=tmp_path), "does not exist")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["sqlite:/x.db", "sqlite://x.db", "mysql://u@127.0.0.1/inv", ""])
def test_a_database_url_of_an_unknown_form_is_refused_and_not_taken_for_a_file_name(
    tmp_path: Path, url: str
) -> None:
    for command in COMMANDS:
        made_a_mistake(timed(*command, "--database", url, cwd=tmp_path), "--database")
    assert list(tmp_path.iterdir()) == []


def test_a_database_url_in_the_environment_is_named_as_the_variable(tmp_path: Path) -> None:
    line = made_a_mistake(
        timed("migrate", cwd=tmp_path, env={"INVENTORY_DATABASE_URL": "mysql://x/y"}),
        "INVENTORY_DATABASE_URL",
    )
    assert "mysql://x/y" in line


def closed_port_url() -> str:
    return f"postgresql://postgres@127.0.0.1:{free_port()}/inventory"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        (closed_port_url(), ["cannot reach PostgreSQL", "Connection refused"]),
        ("postgresql://postgres@127.0.0.1:5432/no_such_inventory_db", ["no_such_inventory_db"]),
        ("postgresql://no_such_role@127.0.0.1:5432/postgres", ["no_such_role"]),
    ],
    ids=["closed port", "unknown database", "unknown role"],
)
def test_a_postgresql_that_cannot_be_used_is_one_line_naming_why(
    tmp_path: Path, url: str, words: list[str], postgres_url: str
) -> None:
    for command in COMMANDS:
        made_a_mistake(timed(*command, "--database", url, cwd=tmp_path), *words)


def test_a_busy_port_is_refused_before_any_key_is_made(tmp_path: Path) -> None:
    database = tmp_path / "inventory.db"
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        outcome = timed("serve", "--port", str(port), "--database", str(database), cwd=tmp_path)

    made_a_mistake(outcome, str(port), "--port")
    assert "INVENTORY_TOKEN" not in outcome[0].stdout
    assert not database.exists() or db.snapshot(database)["api_keys"] == []


def test_a_second_server_on_the_same_sqlite_file_is_refused_naming_the_first(
    tmp_path: Path,
) -> None:
    database = tmp_path / "inventory.db"
    with ServedProcess(tmp_path, "--database", str(database)) as first:
        before = db.snapshot(database)

        line = made_a_mistake(
            timed("serve", "--port", str(free_port()), "--database", str(database), cwd=tmp_path),
            str(database),
            f"process {first.pid}",
        )

        assert "PostgreSQL" in line
        assert first.process.poll() is None
        assert db.snapshot(database) == before
        assert first.terminate() == 0
    with ServedProcess(tmp_path, "--database", str(database)) as again:  # the lock went with it
        assert again.terminate() == 0


def test_a_bad_value_in_an_environment_variable_names_it_and_breaks_no_other_command(
    tmp_path: Path,
) -> None:
    env = {"INVENTORY_PORT": "abc", "INVENTORY_WORKERS": "0"}
    database = tmp_path / "x.db"

    helped = run_inventory("--help", cwd=tmp_path, env=env)
    migrated = run_inventory("migrate", "--database", str(database), cwd=tmp_path, env=env)
    line = made_a_mistake(
        timed("serve", "--database", str(database), cwd=tmp_path, env=env),
        "INVENTORY_PORT='abc'",
        "INVENTORY_WORKERS='0'",
    )

    assert helped.returncode == 0, helped.stderr
    assert (migrated.returncode, migrated.stderr) == (0, ""), migrated.stderr
    assert "integer" in line
    assert db.snapshot(database)["api_keys"] == []


def test_a_bad_flag_value_is_one_line_pointing_at_help(tmp_path: Path) -> None:
    for command in (
        ["serve", "--port", "http"],
        ["keys", "create", "--tenant", "a", "--role", "x"],
    ):
        made_a_mistake(timed(*command, "--database", "x.db", cwd=tmp_path), "--help")
    assert list(tmp_path.iterdir()) == []


def test_migrate_names_the_migrations_it_applied_then_says_none_was_pending(
    tmp_path: Path,
) -> None:
    database = tmp_path / "x.db"

    first = run_inventory("migrate", "--database", str(database), cwd=tmp_path)
    second = run_inventory("migrate", "--database", str(database), cwd=tmp_path)

    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    applied = [row[0] for row in db.snapshot(database)["schema_migrations"]]
    assert first.stdout == f"inventory: applied {', '.join(applied)}\n"
    assert "up to date" not in first.stdout
    assert "no migration was pending" in second.stdout


def test_help_shows_defaults_and_variables_and_no_markup(tmp_path: Path) -> None:
    top = run_inventory("--help", cwd=tmp_path)
    serve = run_inventory("serve", "--help", cwd=tmp_path)

    assert (top.returncode, serve.returncode) == (0, 0)
    for text in (top.stdout, serve.stdout):
        assert "``" not in text, text
    for default in ("default 8000", "default 127.0.0.1", "default sqlite:///inventory.db"):
        assert default in " ".join(serve.stdout.split()), serve.stdout
    assert "INVENTORY_PORT" in serve.stdout


def test_a_password_in_a_database_url_is_never_printed(tmp_path: Path) -> None:
    line = made_a_mistake(
        timed("migrate", "--database", "mysql://me:hunter2@127.0.0.1/inv", cwd=tmp_path),
        "mysql://me:***@127.0.0.1/inv",
    )
    assert "hunter2" not in line
