"""Shared fixtures: live servers over fresh databases, clients for them, and PostgreSQL.

A server per test: every test that uses ``server`` (or ``database``) runs twice, on a
SQLite file and on a PostgreSQL database (one per session, emptied after each test).
Tenants there: ``acme`` has an ``admin``, a ``writer`` and a ``reader`` key; ``globex``
has a writer key (``other_tenant``); ``anonymous`` sends none.

A server per module: ``module_server`` (both backends too) serves a whole module, for
tests that keep to tenants of their own. Each such test gets a new, empty tenant
(``fresh_tenant``) and keys for it (``fresh_writer``, ``fresh_reader``);
``module_database`` is that server's database and ``module_anonymous`` a client without
a key.

``fresh_postgres`` is a PostgreSQL database of one test's own, for tests that run the
command line on it. Every client checks each response against openapi.yaml
(``tests.support.contract``). The Hypothesis profiles (``ci``, ``deep``, ``mutants``) are
registered here and chosen by ``HYPOTHESIS_PROFILE`` before any test module is imported.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import Phase, settings

from tests.support import postgres
from tests.support.contract import ContractClient
from tests.support.db import Database, PostgresDatabase
from tests.support.server import LiveServer

# Hypothesis profiles, chosen by HYPOTHESIS_PROFILE: "ci" (the default) keeps the whole
# suite quick; "deep" runs 20 times the examples for a long hunt.
settings.register_profile("ci", max_examples=50, deadline=None, print_blob=True)
settings.register_profile("deep", max_examples=1000, deadline=None, print_blob=True)
# For tests/stateful/test_mutations.py: twice the ci examples, and no shrinking (only
# whether a planted bug is caught matters there, not its smallest example).
settings.register_profile(
    "mutants", max_examples=100, deadline=None, phases=[Phase.explicit, Phase.generate]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this session's own on the PostgreSQL server; dropped at the end."""
    reason = postgres.unavailable_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database of each backend."""
    if request.param == "sqlite":
        yield tmp_path / "inventory.db"
        return
    url: str = request.getfixturevalue("postgres_url")
    yield PostgresDatabase(url)
    postgres.empty_database(url)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One live server per backend for a whole module, for tests that keep to tenants of
    their own (and so need no empty database each)."""
    database: Database
    if request.param == "sqlite":
        database = tmp_path_factory.mktemp("module") / "inventory.db"
    else:
        database = PostgresDatabase(request.getfixturevalue("postgres_url"))
    live = LiveServer(database).start()
    yield live
    live.stop()
    if isinstance(database, PostgresDatabase):
        postgres.empty_database(database.url)


@pytest.fixture
def fresh_postgres(postgres_url: str) -> Iterator[PostgresDatabase]:
    """A PostgreSQL database of this test's own, dropped afterwards."""
    url = postgres.create_database()
    try:
        yield PostgresDatabase(url)
    finally:
        postgres.drop_database(url)


# --- a server per test ---------------------------------------------------------------


@pytest.fixture
def server(database: Database) -> Iterator[LiveServer]:
    live = LiveServer(database).start()
    yield live
    live.stop()


def _client(server: LiveServer, tenant: str | None, role: str = "") -> Iterator[ContractClient]:
    """A client of ``server`` with a new key of ``tenant`` and ``role`` (None: no key)."""
    token = None if tenant is None else server.create_key(tenant, role)
    with ContractClient(server.url, token) as client:
        yield client


@pytest.fixture
def writer(server: LiveServer) -> Iterator[ContractClient]:
    """A writer of tenant acme."""
    yield from _client(server, "acme", "writer")


@pytest.fixture
def reader(server: LiveServer) -> Iterator[ContractClient]:
    """A reader of tenant acme."""
    yield from _client(server, "acme", "reader")


@pytest.fixture
def admin(server: LiveServer) -> Iterator[ContractClient]:
    """An admin of tenant acme."""
    yield from _client(server, "acme", "admin")


@pytest.fixture
def other_tenant(server: LiveServer) -> Iterator[ContractClient]:
    """A writer of tenant globex."""
    yield from _client(server, "globex", "writer")


@pytest.fixture
def anonymous(server: LiveServer) -> Iterator[ContractClient]:
    """A client without a key."""
    yield from _client(server, None)


# --- a server per module, a tenant per test ------------------------------------------


@pytest.fixture(scope="module")
def module_database(module_server: LiveServer) -> Database:
    """The database of ``module_server``."""
    return module_server.database


@pytest.fixture
def fresh_tenant() -> str:
    """A tenant of this test alone: it starts without items."""
    return f"acme-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def fresh_writer(module_server: LiveServer, fresh_tenant: str) -> Iterator[ContractClient]:
    """A writer of ``fresh_tenant`` on ``module_server``."""
    yield from _client(module_server, fresh_tenant, "writer")


@pytest.fixture
def fresh_reader(module_server: LiveServer, fresh_tenant: str) -> Iterator[ContractClient]:
    """A reader of ``fresh_tenant`` on ``module_server``."""
    yield from _client(module_server, fresh_tenant, "reader")


@pytest.fixture(scope="module")
def module_anonymous(module_server: LiveServer) -> Iterator[ContractClient]:
    """A client of ``module_server`` without a key."""
    yield from _client(module_server, None)
