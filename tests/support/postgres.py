"""A PostgreSQL database for one test session, made and dropped by the tests themselves.

The server is the machine's PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth), or
``INVENTORY_TEST_POSTGRES`` (a URL of a maintenance database). In CI (``CI=true``) an
unreachable server fails the run; elsewhere PostgreSQL tests are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import os
import secrets

import asyncpg

ADMIN_URL = os.environ.get(
    "INVENTORY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def unavailable_reason() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    try:
        asyncio.run(_execute("SELECT 1"))
    except (OSError, asyncpg.PostgresError) as error:
        return f"PostgreSQL at {ADMIN_URL} is unreachable: {error}"
    return None


def create_database() -> str:
    """A fresh, empty database; its URL."""
    name = f"inventory_test_{os.getpid()}_{secrets.token_hex(4)}"
    asyncio.run(_execute(f'CREATE DATABASE "{name}"'))
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str) -> None:
    """Drop the database at ``url`` (closing its connections)."""
    name = url.rsplit("/", 1)[1]
    asyncio.run(_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def empty_database(url: str) -> None:
    """Remove every row the service wrote, keeping the schema (stored Idempotency-Key
    answers too: a later test's key must not replay an earlier test's answer)."""
    asyncio.run(_execute("TRUNCATE items, api_keys, events, feeds, idempotency", url))


async def _execute(sql: str, url: str = ADMIN_URL) -> None:
    db = await asyncpg.connect(url, timeout=5)
    try:
        await db.execute(sql)
    finally:
        await db.close()
