"""The spec is the router: each operation of openapi.yaml is bound to its handler here.

``bind`` refuses to start when an operation has no handler, a handler no operation, or a
handler's arguments do not fit its operation (``validation.Arguments.of``). Each route runs
the same pipeline: authenticate (401) -> authorize (403) -> read and validate the request
(415/413/400) -> handler, whose write carries the request's Idempotency-Key, if any
(``service.http.idempotency``); a replayed answer is sent as stored.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.web_request import BaseRequest

from service.auth import Caller, authenticate, authorize
from service.http import idempotency
from service.http.request_ids import request_id_of
from service.http.spec import Operation, SpecMismatch
from service.http.validation import IDEMPOTENCY_KEY, Arguments, read_arguments
from service.store import Author, Store
from service.store.idempotency import Replay

Handler = Callable[..., Awaitable[web.StreamResponse]]
Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]
STORE = web.AppKey("store", Store)
_OPERATION_ID = web.RequestKey("operation_id", str)
_CALLER = web.RequestKey("caller", Caller)


def bind(
    app: web.Application, operations: list[Operation], handlers: Mapping[str, Handler]
) -> None:
    """Add a route per operation, each with its handler; fail on any mismatch."""
    declared = {op.operation_id for op in operations}
    if missing := declared - handlers.keys():
        raise SpecMismatch(f"operations without a handler: {sorted(missing)}")
    if extra := handlers.keys() - declared:
        raise SpecMismatch(f"handlers without an operation: {sorted(extra)}")
    for op in operations:
        # OpenAPI's {name} is aiohttp's too, but aiohttp's matches no brace: let a parameter
        # match any segment, so that the contract's schema, not the router, judges it (400).
        path = re.sub(r"\{(\w+)\}", r"{\1:[^/]+}", op.path)
        handler = handlers[op.operation_id]
        endpoint = _endpoint(Arguments.of(op, handler), handler)
        app.router.add_route(op.method, path, endpoint, expect_handler=_continue_later)


async def _continue_later(request: web.Request) -> None:
    """No ``100 Continue`` before the endpoint has authenticated the caller and checked the
    declared size: ``validation`` sends it just before reading the body."""


def _endpoint(arguments: Arguments, handler: Handler) -> Endpoint:
    operation = arguments.operation
    if arguments.context - {"store"} and operation.role is None:
        raise SpecMismatch(f"{operation.operation_id} is public but takes a caller")
    keyed = any(p.key == IDEMPOTENCY_KEY for p in operation.parameters)

    async def endpoint(request: web.Request) -> web.StreamResponse:
        request[_OPERATION_ID] = operation.operation_id
        context: dict[str, Any] = {"store": request.app[STORE]}
        if operation.role is not None:
            caller = await authenticate(
                context["store"], request.headers.getall("Authorization", [])
            )
            request[_CALLER] = caller
            authorize(caller, operation.role)
            context["caller"] = caller
        values = await read_arguments(request, arguments)
        if operation.role is not None:
            context["author"] = _author(request, context["caller"], keyed, values)
        try:
            return await handler(**values, **{name: context[name] for name in arguments.context})
        except Replay as replay:
            return idempotency.replayed(replay.answer)

    endpoint.__name__ = operation.operation_id
    return endpoint


def _author(request: web.Request, caller: Caller, keyed: bool, values: dict[str, Any]) -> Author:
    """Who makes the change, in which request, with which Idempotency-Key (if any)."""
    request_id = request_id_of(request)
    raw = request.headers.get(idempotency.HEADER) if keyed else None
    claim = None
    if raw is not None:
        key = idempotency.key_of(raw)
        claim = idempotency.claim(key, request[_OPERATION_ID], values, request_id)
    return Author(caller.tenant, caller.key_id, request_id, claim)


def operation_id_of(request: BaseRequest) -> str | None:
    """The operationId ``request`` was routed to; None when no route took it (404, 405)."""
    return request.get(_OPERATION_ID)


def caller_of(request: BaseRequest) -> Caller | None:
    """Who sent ``request``, once a valid key has proved it."""
    return request.get(_CALLER)
