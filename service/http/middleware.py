"""What wraps every request: errors of any layer, and the framework's own, become problems.

``problem_middleware`` answers every ``service.problems`` error as problem+json
(``service.http.responses.problem_response``), translates aiohttp's own 404/405/413 and
malformed-request errors into the same form, and logs and hides anything unexpected as a
500, which is always a bug.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from service import metrics
from service.http.request_ids import request_id_of
from service.http.responses import problem_response
from service.problems import (
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Problem,
    ValidationFailed,
)

log = logging.getLogger("inventory")


@web.middleware
async def problem_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Answer every error as problem+json; log and hide anything unexpected."""
    request_id = request_id_of(request)
    try:
        return await handler(request)
    except Problem as problem:
        return problem_response(problem, request_id)
    except web.HTTPException as error:
        if error.status < 400:  # a redirect or the like, raised on purpose
            raise
        return problem_response(_framework_problem(request, error), request_id)
    except Exception as error:
        log.exception("unexpected error in %s %s", request.method, request.path)
        metrics.record_fault(error)
        return problem_response(
            Problem("an unexpected error occurred; it has been logged"), request_id
        )


def _framework_problem(request: web.Request, error: web.HTTPException) -> Problem:
    """The problem for an error aiohttp raised itself (routing, body size, broken framing)."""
    if isinstance(error, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(f"{request.method} is not allowed here", error.allowed_methods)
    if isinstance(error, web.HTTPNotFound):
        return NotFound(f"no resource at {request.path}")
    if isinstance(error, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge("the body is too large")
    if isinstance(error, web.HTTPClientError):  # e.g. a broken chunked body
        return ValidationFailed(f"the request is malformed: {error.reason}")
    log.error(
        "unexpected framework response %d in %s %s", error.status, request.method, request.path
    )
    return Problem("an unexpected error occurred; it has been logged")
