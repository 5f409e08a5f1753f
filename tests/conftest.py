"""Shared fixtures: a live server per test over a fresh SQLite file, and clients for it.

Tenants: ``acme`` has an admin, a writer and a reader key; ``globex`` has a writer key.
Every client checks each response against openapi.yaml (``tests.support.contract``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.contract import ContractClient
from tests.support.server import LiveServer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path / "inventory.db").start()
    yield live
    live.stop()


def _client(server: LiveServer, tenant: str, role: str) -> Iterator[ContractClient]:
    with ContractClient(server.url, server.create_key(tenant, role)) as client:
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
    with ContractClient(server.url) as client:
        yield client
