"""The composition root: the contract, its handlers and a store, wired into one aiohttp app.

``create_app`` loads openapi.yaml, binds every operation to its handler (failing on any
mismatch) and opens the store on startup; the store is closed, after in-flight requests
have finished, on shutdown. Every response carries its request's id
(``service.http.observe``), every error becomes a problem (``service.http.middleware``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from service.http.handlers import HANDLERS
from service.http.middleware import problem_middleware
from service.http.observe import request_id_middleware
from service.http.parse_errors import MAX_HEADER_BYTES, MAX_HEADERS, ProblemServer
from service.http.routing import STORE, bind
from service.http.spec import load_document, load_operations
from service.http.validation import MAX_BODY_BYTES
from service.store import is_postgres, open_store
from service.store.idempotency import DEFAULT_TTL

log = logging.getLogger("inventory")
LINGER_SECONDS = 1.0


def create_app(database_url: str, idempotency_ttl: float = DEFAULT_TTL) -> web.Application:
    """The service for the database at ``database_url``, keeping the answers of
    Idempotency-Keys ``idempotency_ttl`` seconds."""
    app = _Application(
        middlewares=[request_id_middleware, problem_middleware],
        client_max_size=MAX_BODY_BYTES,
        # aiohttp's defaults, stated: what its parser rejects is answered by ProblemServer.
        # A body left unread after an answer (a 401, a 408) is drained for LINGER_SECONDS at
        # most, not aiohttp's 10 s: a trickling client does not hold its connection open.
        handler_args={
            "max_field_size": MAX_HEADER_BYTES,
            "max_line_size": MAX_HEADER_BYTES,
            "max_headers": MAX_HEADERS,
            "lingering_time": LINGER_SECONDS,
        },
    )
    bind(app, load_operations(load_document()), HANDLERS)

    async def store_context(app: web.Application) -> AsyncIterator[None]:
        backend = "postgresql" if is_postgres(database_url) else "sqlite"
        app[STORE] = await open_store(database_url, idempotency_ttl)
        log.info("database open", extra={"backend": backend})
        yield
        await app[STORE].close()
        log.info("database closed", extra={"backend": backend})

    app.cleanup_ctx.append(store_context)
    return app


with warnings.catch_warnings():  # aiohttp discourages subclassing; this is the one hook there is
    warnings.simplefilter("ignore", DeprecationWarning)

    class _Application(web.Application):
        """An application whose connections answer parser errors as problems (``ProblemServer``)."""

        def _make_handler(self, **kwargs: Any) -> web.Server:
            server = super()._make_handler(**kwargs)
            server.__class__ = ProblemServer  # adds behaviour only: no state of its own
            return server
