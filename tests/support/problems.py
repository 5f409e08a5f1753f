"""The problem+json answers the tests expect: every problem type URN, and how to check one.

One home for what a rejection looks like, so every test judges it the same way: the status,
``application/problem+json``, the ``type`` URN, ``status``, a ``title`` and a ``detail``
(openapi.yaml's ``Problem`` schema), and for a 400 the ``errors`` naming each field.
"""

from __future__ import annotations

from typing import Any

import requests

PREFIX = "urn:inventory:problem:"
VALIDATION = PREFIX + "validation-error"
UNAUTHORIZED = PREFIX + "unauthorized"
FORBIDDEN = PREFIX + "forbidden"
NOT_FOUND = PREFIX + "not-found"
METHOD_NOT_ALLOWED = PREFIX + "method-not-allowed"
NAME_TAKEN = PREFIX + "name-taken"
OUT_OF_RANGE = PREFIX + "quantity-out-of-range"
PRECONDITION_FAILED = PREFIX + "precondition-failed"
PAYLOAD_TOO_LARGE = PREFIX + "payload-too-large"
REQUEST_TIMEOUT = PREFIX + "request-timeout"
UNSUPPORTED_MEDIA_TYPE = PREFIX + "unsupported-media-type"
UNAVAILABLE = PREFIX + "unavailable"


def assert_problem(response: requests.Response, status: int, kind: str) -> dict[str, Any]:
    """``status`` as problem+json of type ``kind``, with a title and a detail; the problem."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].split(";")[0] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["type"] == kind
    assert problem["status"] == status
    assert problem["title"]
    assert problem["detail"]
    return problem


def error_fields(problem: dict[str, Any]) -> set[str]:
    """The fields a 400 problem's ``errors`` name (JSON pointers, or ``query.<name>``)."""
    return {error["field"] for error in problem["errors"]}


def assert_unavailable(response: requests.Response) -> dict[str, Any]:
    """A 503 ``unavailable`` problem with a ``Retry-After`` of whole seconds; the problem."""
    problem = assert_problem(response, 503, UNAVAILABLE)
    assert response.headers["Retry-After"].isdigit(), response.headers
    return problem
