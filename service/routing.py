"""The spec is the router: each operation of openapi.yaml is bound to its handler here.

``bind`` refuses to start when an operation has no handler or a handler no operation.
Each route runs the same pipeline: authenticate (401) -> authorize (403) -> read and
validate the request (415/413/400) -> handler. ``problem_middleware`` turns every error,
the framework's own 404/405/413 included, into problem+json; nothing else escapes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from service.auth import authenticate, authorize
from service.problems import (
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Problem,
    ValidationFailed,
    problem_response,
)
from service.requests import STORE, Call, read_call
from service.spec import Operation

Handler = Callable[[Call], Awaitable[web.StreamResponse]]
log = logging.getLogger("inventory")


class SpecMismatch(RuntimeError):
    """The handlers and the contract's operations do not correspond one to one."""


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
        app.router.add_route(op.method, path, _endpoint(op, handlers[op.operation_id]))


def _endpoint(
    op: Operation, handler: Handler
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        caller = None
        if op.role is not None:
            authorization = request.headers.getall("Authorization", [])
            caller = await authenticate(request.app[STORE], authorization)
            authorize(caller, op.role)
        return await handler(await read_call(request, op, caller))

    endpoint.__name__ = op.operation_id
    return endpoint


@web.middleware
async def problem_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Answer every error as problem+json; log and hide anything unexpected."""
    try:
        return await handler(request)
    except Problem as problem:
        return problem_response(problem)
    except web.HTTPMethodNotAllowed as error:
        return problem_response(
            MethodNotAllowed(f"{request.method} is not allowed here", error.allowed_methods)
        )
    except web.HTTPNotFound:
        return problem_response(NotFound(f"no resource at {request.path}"))
    except web.HTTPRequestEntityTooLarge:
        return problem_response(PayloadTooLarge("the body is too large"))
    except web.HTTPClientError as error:  # e.g. a broken chunked body
        return problem_response(ValidationFailed(f"the request is malformed: {error.reason}"))
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return problem_response(Problem("an unexpected error occurred; it has been logged"))
