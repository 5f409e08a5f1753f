"""Reading the database straight from its file, behind the service's back.

Tests compare these snapshots before and after a request: a rejected request must leave
every row of every table exactly as it was.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

Snapshot = dict[str, list[tuple[Any, ...]]]


def snapshot(database: Path) -> Snapshot:
    """Every row of every table, in a stable order."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        tables = [
            row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        return {table: sorted(db.execute(f"SELECT * FROM {table}").fetchall()) for table in tables}


def items(database: Path, tenant: str | None = None) -> list[dict[str, Any]]:
    """The stored items (of ``tenant``, if given), as dicts, ordered by name key."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute(
            "SELECT * FROM items WHERE ? IS NULL OR tenant = ? ORDER BY tenant, name_key",
            (tenant, tenant),
        ).fetchall()
        return [dict(row) for row in rows]
