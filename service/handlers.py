"""One handler per operationId: parse -> call the store -> serialize.

By the time a handler runs, the request has passed authentication, the contract's
schemas and the invariants of ``model.invariants`` (``service.requests``); its body is
normalized. What remains is exactly one store call, which is one atomic transition.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from model.invariants import FieldError, has_forbidden_character, prefix_key
from service.auth import Caller, new_key
from service.problems import ValidationFailed
from service.requests import Call
from service.spec import SPEC_PATH
from service.store import Item, PageRequest

log = logging.getLogger("inventory")
_ENTITY_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*')
_SPEC_BYTES = SPEC_PATH.read_bytes()  # the contract as served, read once


async def create_item(call: Call) -> web.Response:
    item = await call.store.create_item(_caller(call).tenant, call.body)
    return _item_response(item, status=201, headers={"Location": f"/items/{item.id}"})


async def get_item(call: Call) -> web.Response:
    item = await call.store.get_item(_caller(call).tenant, call.params["path.item_id"])
    return _item_response(item)


async def list_items(call: Call) -> web.Response:
    prefix = call.params.get("query.name_prefix")
    request = PageRequest(
        limit=call.params.get("query.limit", 100),
        after_key=decode_cursor(call.params.get("query.cursor")),
        prefix_key=prefix_key(prefix) if prefix else None,
    )
    if request.prefix_key is not None and has_forbidden_character(request.prefix_key):
        # No name holds one, so no name starts with this prefix (and PostgreSQL cannot
        # even compare text with a NUL in it).
        return _json({"items": [], "next_cursor": None})
    page = await call.store.list_items(_caller(call).tenant, request)
    cursor = encode_cursor(page.last_key) if page.last_key is not None else None
    return _json({"items": [item.as_json() for item in page.items], "next_cursor": cursor})


async def update_item(call: Call) -> web.Response:
    expected = parse_if_match(call.params.get("header.if-match"))
    item_id = call.params["path.item_id"]
    item = await call.store.update_item(_caller(call).tenant, item_id, call.body, expected)
    return _item_response(item)


async def delete_item(call: Call) -> web.Response:
    await call.store.delete_item(_caller(call).tenant, call.params["path.item_id"])
    return web.Response(status=204)


async def adjust_item(call: Call) -> web.Response:
    caller, item_id, delta = _caller(call), call.params["path.item_id"], call.body["delta"]
    item = await call.store.adjust_item(caller.tenant, item_id, delta)
    log.info(
        "adjusted %s by %d (%s) with key %s", item_id, delta, call.body.get("reason"), caller.key_id
    )
    return _item_response(item)


async def create_key(call: Call) -> web.Response:
    key, secret = new_key(_caller(call).tenant, call.body["role"])
    await call.store.add_key(key)
    return _json(
        {**key.as_json(), "key": secret}, status=201, headers={"Location": f"/keys/{key.id}"}
    )


async def list_keys(call: Call) -> web.Response:
    keys = await call.store.list_keys(_caller(call).tenant)
    return _json({"keys": [key.as_json() for key in keys]})


async def revoke_key(call: Call) -> web.Response:
    await call.store.revoke_key(_caller(call).tenant, call.params["path.key_id"])
    return web.Response(status=204)


async def health(call: Call) -> web.Response:
    await call.store.ping()
    return _json({"status": "ok"})


async def spec(call: Call) -> web.Response:
    return web.Response(body=_SPEC_BYTES, content_type="application/yaml")


HANDLERS = {
    "createItem": create_item,
    "getItem": get_item,
    "listItems": list_items,
    "updateItem": update_item,
    "deleteItem": delete_item,
    "adjustItem": adjust_item,
    "createKey": create_key,
    "listKeys": list_keys,
    "revokeKey": revoke_key,
    "health": health,
    "spec": spec,
}


def encode_cursor(key: str) -> str:
    """An opaque cursor for "after this name key": unpadded base64url of its UTF-8."""
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """The name key inside ``cursor``; a cursor we did not issue is a 400.

    We issue base64url of a name key, and a name key holds no control character.
    """
    if cursor is None:
        return None
    try:
        key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        key = None
    if key is None or has_forbidden_character(key):
        raise ValidationFailed(
            "cursor is not one this service issued", [FieldError("query.cursor", "is malformed")]
        )
    return key


def parse_if_match(header: str | None) -> frozenset[int] | None:
    """The item versions ``If-Match`` accepts; None for no condition (or ``*``).

    Strong comparison (RFC 9110): weak tags and tags that are no version of ours match
    nothing, so a well-formed but stale or foreign header is a 412, never a 400.
    """
    if header is None or header.strip() == "*":
        return None
    versions = set()
    for part in header.split(","):
        tag = _ENTITY_TAG.fullmatch(part)
        if tag and not tag.group(1) and tag.group(2).isascii() and tag.group(2).isdigit():
            versions.add(int(tag.group(2)))
    return frozenset(versions)


def etag(item: Item) -> str:
    """The item's strong entity tag."""
    return f'"{item.version}"'


def _caller(call: Call) -> Caller:
    assert call.caller is not None, "secured operations always have a caller"
    return call.caller


def _item_response(
    item: Item, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return _json(item.as_json(), status=status, headers={**(headers or {}), "ETag": etag(item)})


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body, ensure_ascii=False).encode(),
        status=status,
        headers=headers,
        content_type="application/json",
    )
