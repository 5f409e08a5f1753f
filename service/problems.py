"""Every error the service answers with, as one small exception class each.

Anything below the transport raises one of these; ``problem_response`` is the single
place that turns them into RFC 9457 ``application/problem+json`` responses. The ``kind``
of each class is its stable ``type`` (listed in openapi.yaml).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from aiohttp import web

from model.invariants import FieldError

PROBLEM_TYPE_PREFIX = "urn:inventory:problem:"


class Problem(Exception):
    """Base of every answerable error: an HTTP status, a stable kind and a title."""

    status = 500
    kind = "internal-error"
    title = "Internal server error"

    def __init__(self, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})

    def body(self) -> dict[str, object]:
        """The problem document."""
        return {
            "type": PROBLEM_TYPE_PREFIX + self.kind,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }


class ValidationFailed(Problem):
    """The request breaks the contract; ``errors`` names every offending field."""

    status = 400
    kind = "validation-error"
    title = "Invalid request"

    def __init__(self, detail: str, errors: Iterable[FieldError] = ()) -> None:
        super().__init__(detail)
        self.errors = list(errors)

    def body(self) -> dict[str, object]:
        return {
            **super().body(),
            "errors": [{"field": e.field, "message": e.message} for e in self.errors],
        }


class Unauthorized(Problem):
    """No valid API key: missing, malformed, unknown or revoked."""

    status = 401
    kind = "unauthorized"
    title = "Unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, {"WWW-Authenticate": 'Bearer realm="inventory"'})


class Forbidden(Problem):
    """The key is valid, but its role may not perform this operation."""

    status = 403
    kind = "forbidden"
    title = "Forbidden"


class NotFound(Problem):
    """No such resource (for the caller's tenant), or no such path."""

    status = 404
    kind = "not-found"
    title = "Not found"


class MethodNotAllowed(Problem):
    """The path exists, the method does not; ``Allow`` lists the ones that do."""

    status = 405
    kind = "method-not-allowed"
    title = "Method not allowed"

    def __init__(self, detail: str, allowed: Iterable[str]) -> None:
        super().__init__(detail, {"Allow": ", ".join(sorted(allowed))})


class NameTaken(Problem):
    """Another item of the tenant already has this name (ignoring case)."""

    status = 409
    kind = "name-taken"
    title = "Name already taken"


class QuantityOutOfRange(Problem):
    """The adjustment would take the quantity below 0 or above QTY_MAX."""

    status = 409
    kind = "quantity-out-of-range"
    title = "Quantity out of range"


class PreconditionFailed(Problem):
    """``If-Match`` does not match the item's current ETag."""

    status = 412
    kind = "precondition-failed"
    title = "Precondition failed"


class PayloadTooLarge(Problem):
    """The request body is over the size limit."""

    status = 413
    kind = "payload-too-large"
    title = "Payload too large"


class UnsupportedMediaType(Problem):
    """The request body is not declared as UTF-8 ``application/json``."""

    status = 415
    kind = "unsupported-media-type"
    title = "Unsupported media type"


def problem_response(problem: Problem) -> web.Response:
    """The problem+json response for ``problem``."""
    return web.Response(
        status=problem.status,
        body=_json_bytes(problem.body()),
        content_type="application/problem+json",
        headers=problem.headers,
    )


def _json_bytes(document: dict[str, object]) -> bytes:
    """UTF-8 JSON; all-ASCII escapes when the document quotes a lone surrogate it was sent."""
    try:
        return json.dumps(document, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return json.dumps(document).encode()
