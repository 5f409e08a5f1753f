"""The proof has teeth: each realistic bug planted in a copy of the service is caught.

Every mutant is a few textual replacements in a fresh copy of the project. The state
machine (tests/stateful/test_service_matches_model.py, SQLite backend, the same examples
as in CI but without shrinking) then runs against the copy in a subprocess and must fail.
Bugs that only concurrency can show (PostgreSQL commits landing out of feed order, a read
cache serving a state older than the last write) are caught by the tests made for them
instead, named by their mutants. A replacement that no longer matches the source fails
this test too, so the mutants cannot silently rot as the code changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Mutant:
    """A bug: (file, original text, replacement) edits applied to a copy of the project."""

    bug: str
    edits: tuple[tuple[str, str, str], ...]
    catcher: tuple[str, ...] = ("tests/stateful/test_service_matches_model.py", "-k", "sqlite")
    """The pytest selection that must fail on the bug."""


SQLITE = "service/store/sqlite.py"
POSTGRES = "service/store/postgres.py"
SHARED = "service/store/shared.py"
IDEMPOTENCY = "service/store/idempotency.py"
MUTANTS = (
    Mutant(
        "adjust lets qty go below 0",
        (
            (SQLITE, "qty + ? BETWEEN 0 AND ?", "qty + ? BETWEEN -? AND ?"),
            (
                SQLITE,
                "(delta, utc_now(), item_id, author.tenant, delta, QTY_MAX)",
                "(delta, utc_now(), item_id, author.tenant, delta, QTY_MAX, QTY_MAX)",
            ),
            (
                "service/store/migrations/sqlite/0001_items_and_keys.sql",
                "CHECK (qty BETWEEN 0 AND 9007199254740991)",
                "",
            ),
        ),
    ),
    Mutant(
        "the duplicate check is case-sensitive",
        (
            (
                SQLITE,
                "(item_id, author.tenant, name, name_key(name), qty, now, now)",
                "(item_id, author.tenant, name, name, qty, now, now)",
            ),
        ),
    ),
    Mutant(
        "names are stored as sent, not normalized",
        (("service/http/validation.py", "body = check.check(body)", "check.check(body)"),),
    ),
    Mutant(
        "deleting a missing item answers 404",
        (
            (
                "service/http/handlers.py",
                "    await store.delete_item(",
                "    await store.get_item(caller.tenant, item_id)\n    await store.delete_item(",
            ),
        ),
    ),
    Mutant(
        "a rejected PATCH still bumps the version",
        (
            (
                SQLITE,
                "    name, key, qty = shared.updated_values(current, changes)\n",
                '    db.execute("UPDATE items SET version = version + 1"'
                '               " WHERE id = ?", (item_id,))\n'
                "    name, key, qty = shared.updated_values(current, changes)\n",
            ),
            (SQLITE, 'db.execute("ROLLBACK TO request")', "pass"),
            (
                SQLITE,
                "WHERE id = ? AND version = ? RETURNING",
                "WHERE id = ? AND version = ? + 1 RETURNING",
            ),
        ),
    ),
    Mutant(
        "the list skips an item at each page boundary",
        ((SHARED, "rows[limit - 1][-1] if len(rows)", "rows[limit][-1] if len(rows)"),),
    ),
    Mutant(
        "If-Match is ignored",
        (
            (
                SHARED,
                "if expected is not None and current.version",
                "if False and current.version",
            ),
        ),
    ),
    Mutant(
        "another tenant's item can be read and changed",
        (
            (
                SQLITE,
                "ITEM_COLUMNS} FROM items WHERE id = ? AND tenant = ?",
                "ITEM_COLUMNS} FROM items WHERE id = ? AND ? != ''",
            ),
        ),
    ),
    Mutant(
        "a reader may write",
        (("service/auth.py", "    if not caller.may(role):", "    if False:"),),
    ),
    Mutant(
        "an adjustment appends no event",
        (
            (
                SQLITE,
                '    _append(db, author, item, "adjusted", delta, adjustment.get("reason"))\n',
                "",
            ),
        ),
    ),
    Mutant(
        "an update's event has the wrong delta",
        ((SQLITE, '"updated", item.qty - current.qty,', '"updated", item.qty,'),),
    ),
    Mutant(
        "deleting an item deletes its history",
        (
            (
                SQLITE,
                '        _append(db, author, last, "deleted", -gone.qty, reason)\n',
                '        _append(db, author, last, "deleted", -gone.qty, reason)\n'
                '        db.execute("DELETE FROM events WHERE item_id = ?", (item_id,))\n',
            ),
        ),
    ),
    Mutant(
        "feed numbers come from a sequence taken before commit (PostgreSQL)",
        (
            (
                "service/store/migrations/postgres/0002_events.sql",
                "CREATE TABLE feeds (",
                "CREATE SEQUENCE event_numbers;\nCREATE TABLE feeds (",
            ),
            (
                POSTGRES,
                'seq AS (INSERT INTO feeds (tenant, last_seq) SELECT $1, 1 FROM changed"\n'
                '        " ON CONFLICT (tenant) DO UPDATE SET last_seq = feeds.last_seq + 1'
                ' RETURNING last_seq),"',
                "seq AS (SELECT nextval('event_numbers') AS last_seq FROM changed),\"",
            ),
        ),
        ("tests/system/test_feed.py", "-k", "follower_resuming and postgres"),
    ),
    Mutant(
        "a replay applies the change again",
        (
            (
                SQLITE,
                "    if row is not None:\n        raise idempotency.replay_of(row, claim)",
                "    if row is not None and not isinstance(\n"
                "        idempotency.replay_of(row, claim), idempotency.Replay\n    ):\n"
                "        raise idempotency.replay_of(row, claim)",
            ),
        ),
    ),
    Mutant(
        "a key reused for another request replays the first",
        ((IDEMPOTENCY, "if fingerprint != claim.fingerprint:", "if fingerprint is None:"),),
    ),
    Mutant(
        "a rejected outcome is not kept under its key",
        ((SQLITE, "        result = Refused(problem)\n", "        raise\n"),),
    ),
    Mutant(
        "a refused batch keeps the operations before the refused one",
        (
            (
                SQLITE,
                "            raise problem.in_operation(index) from None",
                "            return Refused(problem.in_operation(index))",
            ),
        ),
    ),
    Mutant(
        "a batch checks if_match against the versions before the batch",
        (
            (
                SQLITE,
                "    results: list[Item | None] = []\n"
                "    for index, (kind, args) in enumerate(steps):\n",
                "    results: list[Item | None] = []\n"
                '    before = dict(db.execute("SELECT id, version FROM items").fetchall())\n'
                "    for index, (kind, args) in enumerate(steps):\n"
                "        if kind in ('update', 'adjust') and args[2] is not None:\n"
                "            stale = before.get(args[0]) not in args[2]\n"
                "            args = (args[0], args[1], frozenset({0}) if stale else None)\n",
            ),
        ),
    ),
    Mutant(
        "an idempotency key is shared across tenants",
        ((IDEMPOTENCY, "WHERE tenant = {p(1)} AND key", "WHERE {p(1)} = {p(1)} AND key"),),
    ),
    Mutant(
        "reads are served from a 20 ms cache (a read after a write may miss it)",
        (
            (
                SQLITE,
                "    async def get_item(self, tenant: str, item_id: str) -> Item:\n"
                "        rows = await self._fetch(_SELECT_ITEM, item_id, tenant)\n",
                "    _read_cache: dict[tuple[str, str], tuple[float, Item]] = {}\n\n"
                "    async def get_item(self, tenant: str, item_id: str) -> Item:\n"
                "        from time import monotonic\n\n"
                "        cached = self._read_cache.get((tenant, item_id))\n"
                "        if cached is not None and monotonic() - cached[0] < 0.020:\n"
                "            return cached[1]\n"
                "        item = await self._read_item(tenant, item_id)\n"
                "        self._read_cache[(tenant, item_id)] = (monotonic(), item)\n"
                "        return item\n\n"
                "    async def _read_item(self, tenant: str, item_id: str) -> Item:\n"
                "        rows = await self._fetch(_SELECT_ITEM, item_id, tenant)\n",
            ),
        ),
        ("tests/system/test_linearizability.py", "-k", "sqlite"),
    ),
)


def _environment(copy: Path) -> dict[str, str]:
    """Run from the copy, importing the copy's packages (checked, not assumed)."""
    env = {**os.environ, "HYPOTHESIS_PROFILE": "mutants", "PYTHONPATH": str(copy)}
    where = subprocess.run(
        [sys.executable, "-c", "import service, model; print(service.__file__, model.__file__)"],
        cwd=copy, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert where.split() == [str(copy / "service/__init__.py"), str(copy / "model/__init__.py")]
    return env


def _mutated_copy(mutant: Mutant, target: Path) -> Path:
    for part in ("model", "service", "tests", "openapi.yaml", "pyproject.toml"):
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, target / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target / part)
    for file, old, new in mutant.edits:
        path = target / file
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"mutant {mutant.bug!r}: {old!r} is not once in {file}"
        path.write_text(text.replace(old, new), encoding="utf-8")
    return target


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.bug for m in MUTANTS])
def test_state_machine_catches_planted_bug(mutant: Mutant, tmp_path: Path) -> None:
    copy = _mutated_copy(mutant, tmp_path / "project")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
         *mutant.catcher,
         "-o", "addopts=", "-W", "ignore::pytest.PytestUnraisableExceptionWarning"],
        cwd=copy,
        env=_environment(copy),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1, f"the bug {mutant.bug!r} went unnoticed:\n{output[-3000:]}"
    assert "1 failed" in output, output[-3000:]
