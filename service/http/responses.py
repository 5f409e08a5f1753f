"""Building responses: JSON bodies, items with their ETag, and problems with their status.

``problem_response`` is the one place that maps each error kind of ``service.problems`` to
an HTTP status and headers, as an RFC 9457 ``application/problem+json`` document.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from service.http.conditions import etag
from service.problems import (
    Forbidden,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    MethodNotAllowed,
    NameTaken,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    Problem,
    QuantityOutOfRange,
    Rejected,
    RequestTimeout,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    ValidationFailed,
)
from service.store import Item

PROBLEM_TYPE_PREFIX = "urn:inventory:problem:"
STATUS: Mapping[type[Problem], int] = {
    ValidationFailed: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    MethodNotAllowed: 405,
    NameTaken: 409,
    QuantityOutOfRange: 409,
    IdempotencyInFlight: 409,
    RequestTimeout: 408,
    PreconditionFailed: 412,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    IdempotencyKeyReused: 422,
    Unavailable: 503,
}
"""The status of each kind of problem; any other (``Problem`` itself) is a 500."""
_REFUSED_FIELD: Mapping[type[Problem], str] = {
    NotFound: "item_id",
    PreconditionFailed: "if_match",
    NameTaken: "name",
    QuantityOutOfRange: "delta",
}
"""The field of a batch operation that each kind of refusal points at."""
MAX_ERRORS = 20
"""A 400 lists at most this many errors, then counts the rest (``more``): thousands of unknown
fields must not make an answer of hundreds of kilobytes."""


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """``body`` as UTF-8 JSON."""
    return web.Response(
        body=_json_bytes(body),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def item_response(
    item: Item, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The item, with its ETag."""
    return json_response(
        item.as_json(), status=status, headers={**(headers or {}), "ETag": etag(item)}
    )


def problem_response(problem: Problem, request_id: str) -> web.Response:
    """The problem+json response for ``problem``, in the request ``request_id``."""
    status = STATUS.get(type(problem), 500)
    response = web.Response(
        status=status,
        body=_json_bytes(_problem_document(problem, status, request_id)),
        content_type="application/problem+json",
        headers=_problem_headers(problem),
    )
    if isinstance(problem, RequestTimeout):
        response.force_close()  # the rest of the body is not worth waiting for
    return response


def _problem_document(problem: Problem, status: int, request_id: str) -> dict[str, object]:
    document: dict[str, object] = {
        "type": PROBLEM_TYPE_PREFIX + problem.kind,
        "title": problem.title,
        "status": status,
        "detail": problem.detail,
        "request_id": request_id,
    }
    if isinstance(problem, Rejected) and problem.operation is not None:
        document["operation"] = problem.operation
        field = f"/operations/{problem.operation}/{_REFUSED_FIELD[type(problem)]}"
        document["errors"] = [{"field": field, "message": problem.detail}]
    if isinstance(problem, ValidationFailed):
        shown = problem.errors[:MAX_ERRORS]
        document["errors"] = [{"field": e.field, "message": e.message} for e in shown]
        if len(problem.errors) > MAX_ERRORS:
            document["more"] = len(problem.errors) - MAX_ERRORS
    return document


def _problem_headers(problem: Problem) -> dict[str, str]:
    if isinstance(problem, Unauthorized):
        return {"WWW-Authenticate": 'Bearer realm="inventory"'}
    if isinstance(problem, MethodNotAllowed):
        return {"Allow": ", ".join(problem.allowed)}
    if isinstance(problem, Unavailable | IdempotencyInFlight):
        return {"Retry-After": str(problem.retry_after)}
    return {}


def _json_bytes(document: Any) -> bytes:
    """UTF-8 JSON, compact, by orjson (a fifth of the stdlib encoder's cost); the stdlib's
    all-ASCII escapes for what orjson refuses: a lone surrogate a problem quotes back."""
    try:
        return orjson.dumps(document)
    except orjson.JSONEncodeError:
        return json.dumps(document).encode()
