"""Every response a test receives is checked against openapi.yaml.

``ContractClient`` is a ``requests.Session`` whose every response must be documented by
the contract: a status the operation lists, its media type, a body valid against its
schema and documented headers valid against theirs. Any drift fails the test at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import requests

from service.http.spec import HTTP_METHODS, inline_refs, load_document

_DOCUMENT = inline_refs(load_document())


class ContractViolation(AssertionError):
    """A response the contract does not allow."""


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    responses: dict[str, Any]


def _routes() -> list[_Route]:
    routes = []
    for path, item in _DOCUMENT["paths"].items():
        pattern = re.compile(
            "^"
            + re.sub(r"\{[^}]+\}", "[^/]+", re.escape(path).replace(r"\{", "{").replace(r"\}", "}"))
            + "$"
        )
        for method in HTTP_METHODS:
            if method in item:
                routes.append(_Route(method.upper(), pattern, item[method]["responses"]))
    return routes


_ROUTES = _routes()
_SOMETIMES = frozenset({"Idempotent-Replayed", "Retry-After"})
"""Headers the contract documents on a status that only some of its answers carry (a
replay; a 409 of a request still in flight): checked when present, not required. Any
header marked ``required`` in the contract is judged by that mark instead."""
_GENERIC = {  # answers the framework gives any request, whatever its route
    "404": _DOCUMENT["components"]["responses"]["NotFound"],
    "405": _DOCUMENT["components"]["responses"]["NotFound"]
    | {"headers": {"Allow": {"schema": {"type": "string"}}}},
}


def check_response(response: requests.Response) -> None:
    """Raise ContractViolation unless the contract documents ``response``."""
    request = response.request
    path = requests.utils.urlparse(request.url).path  # type: ignore[attr-defined]
    check_exchange(
        str(request.method), path, response.status_code, response.headers, response.content
    )


def check_exchange(
    method: str, path: str, status: int, headers: Mapping[str, str], content: bytes
) -> None:
    """Raise ContractViolation unless the contract documents this answer to ``method path``.

    For clients other than ``ContractClient`` (aiohttp, raw sockets): pass what came back.
    """
    routes = [r for r in _ROUTES if r.pattern.match(path)]
    route = next((r for r in routes if r.method == method), None)
    code = str(status)
    if route is None:
        expected = "405" if routes else "404"
        if code != expected:
            raise ContractViolation(f"{method} {path}: expected {expected}, got {code}")
        spec = _GENERIC[code]
    else:
        spec = route.responses.get(code)
        if spec is None:
            raise ContractViolation(f"{method} {path}: undocumented status {code}")
    _check_headers(code, headers, spec)
    _check_body(code, headers, content, spec)


def _check_headers(status: str, headers: Mapping[str, str], spec: dict[str, Any]) -> None:
    for name, header in spec.get("headers", {}).items():
        value = headers.get(name)
        if value is None:
            if header.get("required", name not in _SOMETIMES):
                raise ContractViolation(f"missing header {name} on {status}")
            continue
        errors = [
            e.message for e in jsonschema_rs.validator_for(header["schema"]).iter_errors(value)
        ]
        if errors:
            raise ContractViolation(f"header {name}: {errors}")


def _check_body(
    status: str, headers: Mapping[str, str], content: bytes, spec: dict[str, Any]
) -> None:
    documented = spec.get("content")
    if not documented:
        if content:
            raise ContractViolation(f"{status} must have no body")
        return
    media_type = headers.get("Content-Type", "").split(";")[0]
    if media_type not in documented:
        raise ContractViolation(f"media type {media_type!r} not in {sorted(documented)}")
    if media_type.endswith("json"):
        schema = documented[media_type]["schema"]
        validator = jsonschema_rs.validator_for(schema, validate_formats=True)
        errors = [e.message for e in validator.iter_errors(json.loads(content))]
        if errors:
            raise ContractViolation(f"{status} body breaks the contract: {errors}")


class ContractClient(requests.Session):
    """A session on one base URL whose every response is checked against the contract."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        super().__init__()
        self.base_url = base_url
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        target = url.decode() if isinstance(url, bytes) else url
        response = super().request(method, self.base_url + target, *args, **kwargs)
        check_response(response)
        return response
