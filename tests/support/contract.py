"""Every response a test receives is checked against openapi.yaml.

``ContractClient`` is a ``requests.Session`` whose every response must be documented by
the contract: a status the operation lists, its media type, a body valid against its
schema and documented headers valid against theirs. Any drift fails the test at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import requests

from service.spec import HTTP_METHODS, inline_refs, load_document

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
_GENERIC = {  # answers the framework gives any request, whatever its route
    "404": _DOCUMENT["components"]["responses"]["NotFound"],
    "405": _DOCUMENT["components"]["responses"]["NotFound"]
    | {"headers": {"Allow": {"schema": {"type": "string"}}}},
}


def check_response(response: requests.Response) -> None:
    """Raise ContractViolation unless the contract documents ``response``."""
    request = response.request
    path = requests.utils.urlparse(request.url).path  # type: ignore[attr-defined]
    routes = [r for r in _ROUTES if r.pattern.match(path)]
    route = next((r for r in routes if r.method == request.method), None)
    status = str(response.status_code)
    if route is None:
        expected = "405" if routes else "404"
        if status != expected:
            raise ContractViolation(f"{request.method} {path}: expected {expected}, got {status}")
        spec = _GENERIC[status]
    else:
        spec = route.responses.get(status)
        if spec is None:
            raise ContractViolation(f"{request.method} {path}: undocumented status {status}")
    _check_headers(response, spec)
    _check_body(response, spec)


def _check_headers(response: requests.Response, spec: dict[str, Any]) -> None:
    for name, header in spec.get("headers", {}).items():
        value = response.headers.get(name)
        if value is None:
            raise ContractViolation(f"missing header {name} on {response.status_code}")
        errors = [
            e.message for e in jsonschema_rs.validator_for(header["schema"]).iter_errors(value)
        ]
        if errors:
            raise ContractViolation(f"header {name}: {errors}")


def _check_body(response: requests.Response, spec: dict[str, Any]) -> None:
    content = spec.get("content")
    if not content:
        if response.content:
            raise ContractViolation(f"{response.status_code} must have no body")
        return
    media_type = response.headers.get("Content-Type", "").split(";")[0]
    if media_type not in content:
        raise ContractViolation(f"media type {media_type!r} not in {sorted(content)}")
    if media_type.endswith("json"):
        schema = content[media_type]["schema"]
        validator = jsonschema_rs.validator_for(schema, validate_formats=True)
        errors = [e.message for e in validator.iter_errors(response.json())]
        if errors:
            raise ContractViolation(f"{response.status_code} body breaks the contract: {errors}")


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
