"""The metrics port: ``GET /metrics`` in Prometheus' text format, and nothing else.

A separate aiohttp app on its own port, so the API never serves metrics and the metrics
port never serves the API. It runs on a daemon thread with its own event loop: a scrape
does not wait behind the API's requests, and the same server works in a single service
process and in the parent of ``--workers`` (which runs no API at all). The exposition is
prometheus-client's own (``make_aiohttp_handler``).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler


def metrics_app(registry: CollectorRegistry) -> web.Application:
    """An app with one route, ``GET /metrics``, showing ``registry``."""
    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    return app


def start_metrics_server(host: str, port: int, registry: CollectorRegistry) -> None:
    """Serve ``registry`` on ``host:port`` until the process exits; OSError if it cannot bind."""
    started: Future[None] = Future()
    threading.Thread(
        target=_serve_forever, args=(host, port, registry, started), name="metrics", daemon=True
    ).start()
    started.result()


def _serve_forever(
    host: str, port: int, registry: CollectorRegistry, started: Future[None]
) -> None:
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(metrics_app(registry), access_log=None)
    try:
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, host, port).start())
    except BaseException as error:
        loop.run_until_complete(runner.cleanup())
        loop.close()
        started.set_exception(error)
        return
    started.set_result(None)
    loop.run_forever()
