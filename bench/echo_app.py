"""The baseline the service is measured against: a bare aiohttp app on the same routes.

It does the least any JSON HTTP service must do: parse the JSON body (when there is one)
and answer with JSON. No authentication, no validation, no storage, and no idempotency:
an ``Idempotency-Key`` is read with the other headers and ignored. The service's
requests/s divided by this app's, on the same core under the same load, is the ratio
``bench/run`` reports: the share of a bare aiohttp's speed the service keeps.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from aiohttp import web


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, ensure_ascii=False).encode(),
        status=status,
        content_type="application/json",
    )


async def create_item(request: web.Request) -> web.Response:
    return _json(json.loads(await request.read()), status=201)


async def adjust_item(request: web.Request) -> web.Response:
    return _json({"id": request.match_info["item_id"], **json.loads(await request.read())})


async def get_item(request: web.Request) -> web.Response:
    return _json({"id": request.match_info["item_id"]})


async def list_items(request: web.Request) -> web.Response:
    return _json({"items": [], "query": dict(request.query), "next_cursor": None})


async def apply_batch(request: web.Request) -> web.Response:
    return _json({"results": json.loads(await request.read())["operations"]})


async def list_events(request: web.Request) -> web.Response:
    return _json({"events": [], "next_cursor": request.query.get("after", "0")})


async def health(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


def create_app() -> web.Application:
    """The echo app: the service's routes that ``bench/run`` drives, and /healthz."""
    app = web.Application()
    app.router.add_post("/items", create_item)
    app.router.add_get("/items", list_items)
    app.router.add_get("/items/{item_id}", get_item)
    app.router.add_post("/items/{item_id}/adjustments", adjust_item)
    app.router.add_patch("/items/{item_id}", adjust_item)  # the same echo of id and body
    app.router.add_post("/batch", apply_batch)
    app.router.add_get("/events", list_events)
    app.router.add_get("/healthz", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    web.run_app(create_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
