"""A live service on a free port, run in a background thread, for tests that speak HTTP.

The server is the real application (``service.app.create_app``) on a real socket; the
thread only lets synchronous tests (and Hypothesis state machines) drive it. Its access log
is the service's own (``service.http.observe.AccessLog``), on the ``inventory.access`` logger.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from aiohttp import web

from service.app import create_app
from service.auth import new_key
from service.http.observe import ACCESS_LOGGER, AccessLog
from service.http.routing import STORE
from service.store import Store
from tests.support.db import Database, url_of

T = TypeVar("T")


class LiveServer:
    """The service on ``127.0.0.1:<free port>`` over ``database`` (SQLite or PostgreSQL)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def store(self) -> Store:
        assert self._runner is not None
        return self._runner.app[STORE]

    def start(self) -> LiveServer:
        self._thread.start()
        self.run(self._start())
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self.run(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    def create_key(self, tenant: str, role: str) -> str:
        """A new API key for ``tenant`` with ``role``, as a client would send it."""
        key, secret = new_key(tenant, role)
        self.run(self.store.add_key(key))
        return secret

    async def _start(self) -> None:
        self._runner = web.AppRunner(
            create_app(url_of(self.database)), access_log_class=AccessLog, access_log=ACCESS_LOGGER
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
