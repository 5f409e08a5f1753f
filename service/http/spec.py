"""The contract, loaded: openapi.yaml turned into operations with compiled validators.

``load_operations`` reads the document once at startup, inlines its ``$ref``s and compiles,
per operation, one JSON Schema validator for the parameters and one for the body. The
router (``service.http.routing``) binds each operation to its handler by ``operationId``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import jsonschema_rs
import yaml

SPEC_PATH = resources.files("service") / "openapi.yaml"
"""The contract as package data: in a checkout, service/openapi.yaml is a symlink to the
top-level openapi.yaml (the one source); a wheel carries a copy of its content."""
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

Validator = Any  # jsonschema_rs validators have no type stubs


class SpecMismatch(RuntimeError):
    """The handlers and the contract's operations do not correspond one to one."""


@dataclass(frozen=True)
class Parameter:
    """One path, query or header parameter of an operation."""

    name: str
    location: str
    required: bool
    schema: Mapping[str, Any]

    @property
    def key(self) -> str:
        """Its name among the validated parameters: ``path.item_id``, ``header.if-match``."""
        return f"{self.location}.{self.name.lower()}"

    @property
    def argument(self) -> str:
        """The name a handler takes it by: ``item_id``, ``if_match``."""
        return self.name.lower().replace("-", "_")

    @property
    def is_integer(self) -> bool:
        """Whether the raw string value is to be read as an integer before validation."""
        return self.schema.get("type") == "integer"


@dataclass(frozen=True)
class Operation:
    """One operation of the contract, ready to validate requests."""

    operation_id: str
    method: str
    path: str
    parameters: tuple[Parameter, ...]
    parameters_validator: Validator
    body_validator: Validator | None
    role: str | None  # None: public (security: [])


def load_document(path: Traversable = SPEC_PATH) -> dict[str, Any]:
    """The OpenAPI document as a dict, exactly as written."""
    with path.open(encoding="utf-8") as f:
        document: dict[str, Any] = yaml.safe_load(f)
    return document


def load_operations(document: Mapping[str, Any]) -> list[Operation]:
    """Every operation of ``document`` with its validators compiled."""
    resolved = inline_refs(document, document)
    default_security = resolved.get("security", [])
    operations = []
    for path, item in resolved["paths"].items():
        shared = item.get("parameters", [])
        for method in HTTP_METHODS:
            if method in item:
                operations.append(_operation(path, method, item[method], shared, default_security))
    return operations


def _operation(
    path: str, method: str, op: Mapping[str, Any], shared: list[Any], default_security: Any
) -> Operation:
    parameters = tuple(
        Parameter(p["name"], p["in"], p.get("required", False), p["schema"])
        for p in [*shared, *op.get("parameters", [])]
    )
    body = op.get("requestBody", {}).get("content", {}).get("application/json")
    secured = bool(op.get("security", default_security))
    return Operation(
        operation_id=op["operationId"],
        method=method.upper(),
        path=path,
        parameters=parameters,
        parameters_validator=_compile(_parameters_schema(parameters)),
        body_validator=_compile(body["schema"]) if body else None,
        role=op.get("x-role") if secured else None,
    )


def _parameters_schema(parameters: tuple[Parameter, ...]) -> dict[str, Any]:
    """One object schema over all parameters, keyed ``path.item_id``, ``query.limit``, ..."""
    return {
        "type": "object",
        "properties": {p.key: p.schema for p in parameters},
        "required": [p.key for p in parameters if p.required],
    }


def _compile(schema: Mapping[str, Any]) -> Validator:
    return jsonschema_rs.Draft202012Validator(dict(schema), validate_formats=True)


def inline_refs(node: Any, root: Mapping[str, Any] | None = None) -> Any:
    """``node`` with every local ``$ref`` replaced by its target (the spec is not recursive)."""
    root = node if root is None else root
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = root
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return inline_refs(target, root)
        return {key: inline_refs(value, root) for key, value in node.items()}
    if isinstance(node, list):
        return [inline_refs(value, root) for value in node]
    return node
