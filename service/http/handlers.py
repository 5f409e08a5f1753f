"""One handler per operationId: parse -> call the store -> serialize.

By the time a handler runs, the request has passed authentication, the contract's schemas
and the invariants of ``model.invariants`` (``service.http.validation``); each argument is
typed and normalized. What remains is exactly one store call, one atomic transition. A
handler's signature says what it takes: ``store``, ``caller``, ``body`` and the
operation's parameters by name. Adding an operation means: the spec, one handler here,
one store method per backend, and the model. A write says how it answers once
(``answering``): with an Idempotency-Key, that answer is stored with its effect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from aiohttp import web

from model.invariants import (
    Adjustment,
    Batch,
    ItemChanges,
    NewItem,
    check_adjustment,
    check_batch,
    check_create,
    check_reason,
    check_update,
    has_forbidden_character,
    prefix_key,
)
from service.auth import Caller, new_key
from service.http import docs
from service.http.conditions import parse_if_match
from service.http.cursors import decode_cursor, encode_cursor
from service.http.idempotency import answering
from service.http.responses import item_response, json_response
from service.http.routing import Handler
from service.http.spec import SPEC_PATH
from service.http.validation import Check, Decode
from service.store import Author, Item, PageRequest, Store
from service.store.records import BatchResult

HANDLERS: dict[str, Handler] = {}
"""Every handler, by the operationId it serves (filled in by ``serves``)."""
_SPEC_BYTES = SPEC_PATH.read_bytes()  # the contract as served, read once

Cursor = Annotated[str | None, Decode(decode_cursor)]
NamePrefix = Annotated[str | None, Decode(prefix_key)]
IfMatch = Annotated[frozenset[int] | None, Decode(parse_if_match)]
Reason = Annotated[str | None, Decode(check_reason)]
After = Annotated[int | None, Decode(int)]


def serves(operation_id: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of ``operation_id``."""

    def register(handler: Handler) -> Handler:
        HANDLERS[operation_id] = handler
        return handler

    return register


@serves("createItem")
async def create_item(
    store: Store, author: Author, body: Annotated[NewItem, Check(check_create)]
) -> web.Response:
    return _created(await store.create_item(answering(author, _created), body))


def _created(item: Item) -> web.Response:
    return item_response(item, status=201, headers={"Location": f"/items/{item.id}"})


@serves("getItem")
async def get_item(store: Store, caller: Caller, item_id: str) -> web.Response:
    return item_response(await store.get_item(caller.tenant, item_id))


@serves("listItems")
async def list_items(
    store: Store, caller: Caller, limit: int, cursor: Cursor, name_prefix: NamePrefix
) -> web.Response:
    if name_prefix is not None and has_forbidden_character(name_prefix):
        # No name holds one, so no name starts with this prefix (and PostgreSQL cannot
        # even compare text with a NUL in it).
        return json_response({"items": [], "next_cursor": None})
    request = PageRequest(limit=limit, after_key=cursor, prefix_key=name_prefix or None)
    page = await store.list_items(caller.tenant, request)
    next_cursor = encode_cursor(page.last_key) if page.last_key is not None else None
    return json_response({"items": [i.as_json() for i in page.items], "next_cursor": next_cursor})


@serves("updateItem")
async def update_item(
    store: Store,
    author: Author,
    item_id: str,
    if_match: IfMatch,
    body: Annotated[ItemChanges, Check(check_update)],
) -> web.Response:
    author = answering(author, item_response)
    return item_response(await store.update_item(author, item_id, body, if_match))


@serves("deleteItem")
async def delete_item(store: Store, author: Author, item_id: str, reason: Reason) -> web.Response:
    await store.delete_item(answering(author, _deleted), item_id, reason)
    return _deleted(None)


def _deleted(_: None) -> web.Response:
    return web.Response(status=204)


@serves("adjustItem")
async def adjust_item(
    store: Store,
    author: Author,
    item_id: str,
    if_match: IfMatch,
    body: Annotated[Adjustment, Check(check_adjustment)],
) -> web.Response:
    author = answering(author, item_response)
    return item_response(await store.adjust_item(author, item_id, body, if_match))


@serves("applyBatch")
async def apply_batch(
    store: Store, author: Author, body: Annotated[Batch, Check(check_batch)]
) -> web.Response:
    return _applied(await store.apply_batch(answering(author, _applied), body))


def _applied(batch: BatchResult) -> web.Response:
    return json_response(batch.as_json())


@serves("listItemEvents")
async def list_item_events(
    store: Store, caller: Caller, item_id: str, limit: int, after: After
) -> web.Response:
    page = await store.item_events(caller.tenant, item_id, after or 0, limit)
    next_cursor = None if page.last is None else str(page.last)
    return json_response({"events": [e.as_json() for e in page.events], "next_cursor": next_cursor})


@serves("listEvents")
async def list_events(
    store: Store, caller: Caller, limit: int, after: After, wait: int
) -> web.Response:
    events = await store.feed(caller.tenant, after or 0, limit, wait)
    next_cursor = str(events[-1].seq if events else after or 0)
    return json_response({"events": [e.as_json() for e in events], "next_cursor": next_cursor})


@serves("createKey")
async def create_key(store: Store, author: Author, body: dict[str, str]) -> web.Response:
    key, secret = new_key(author.tenant, body["role"])

    def created(_: None) -> web.Response:
        shown = {**key.as_json(), "key": secret}
        return json_response(shown, status=201, headers={"Location": f"/keys/{key.id}"})

    await store.add_key(key, answering(author, created))
    return created(None)


@serves("listKeys")
async def list_keys(store: Store, caller: Caller) -> web.Response:
    keys = await store.list_keys(caller.tenant)
    return json_response({"keys": [key.as_json() for key in keys]})


@serves("revokeKey")
async def revoke_key(store: Store, caller: Caller, key_id: str) -> web.Response:
    await store.revoke_key(caller.tenant, key_id)
    return web.Response(status=204)


@serves("health")
async def health(store: Store) -> web.Response:
    await store.ping()
    return json_response({"status": "ok"})


@serves("spec")
async def spec() -> web.Response:
    return web.Response(body=_SPEC_BYTES, content_type="application/yaml")


@serves("home")
async def home() -> web.Response:
    return web.Response(status=302, headers={"Location": "/docs"})


@serves("docs")
async def docs_page() -> web.Response:
    return web.Response(text=docs.PAGE, content_type="text/html")


@serves("docsAsset")
async def docs_asset(asset: str) -> web.Response:
    return web.Response(
        body=docs.asset(asset),
        content_type=docs.ASSETS[asset],
        headers={"Cache-Control": "public, max-age=86400"},
    )
