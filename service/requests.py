"""Turning an HTTP request into validated input, or a precise 4xx.

``read_call`` applies the contract's checks in their documented order: media type (415),
size (413), then parameters and body against the operation's compiled schemas and the
body against ``model.invariants`` (400, every error at once). JSON is decoded strictly:
no NaN or Infinity, no duplicate keys, UTF-8 only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
from aiohttp import web

from model.invariants import (
    FieldError,
    InvariantViolation,
    check_adjustment,
    check_create,
    check_update,
    pointer,
)
from service.auth import Caller
from service.problems import PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from service.spec import Operation, Parameter, Validator
from service.store import Store

MAX_BODY_BYTES = 64 * 1024
MAX_DEPTH = 32
"""A JSON value nested deeper is refused (400) before validation: no valid body nests past 2,
and the schema validator gives up at about 256 levels with an error, not an answer."""
TOO_DEEP = f"is nested more than {MAX_DEPTH} levels deep"
STORE = web.AppKey("store", Store)
BODY_CHECKS = {
    "createItem": check_create,
    "updateItem": check_update,
    "adjustItem": check_adjustment,
}
"""The invariant check that normalizes each operation's body (``model.invariants``)."""


@dataclass(frozen=True, slots=True)
class Call:
    """A request that passed every contract check: what a handler gets.

    ``body`` is normalized by the operation's invariant check where it has one.
    """

    store: Store
    caller: Caller | None
    params: dict[str, Any]
    body: Any


async def read_call(request: web.Request, op: Operation, caller: Caller | None) -> Call:
    """The validated ``Call`` for ``request``, or a ``Problem``."""
    body = await _read_body(request) if op.body_validator is not None else None
    params = _read_parameters(request, op.parameters)
    errors = _schema_errors(op.parameters_validator, params, _parameter_field)
    if op.body_validator is not None:
        body_errors, body = _check_body(op, body)
        errors += body_errors
    if errors:
        raise ValidationFailed("the request does not match the contract", errors)
    return Call(request.app[STORE], caller, params, body)


def _check_body(op: Operation, body: Any) -> tuple[list[FieldError], Any]:
    """Schema errors merged with invariant errors (theirs win per field), and the fields.

    Running both lets one answer name every offending field: the schema knows shapes,
    the invariants know what JSON Schema cannot say (``5.0`` is no integer, NFC length).
    """
    body, too_deep = _without_deep_values(body)
    errors = {e.field: e for e in _schema_errors(op.body_validator, body, _body_field)}
    check = BODY_CHECKS.get(op.operation_id)
    if check is not None and isinstance(body, dict):
        try:
            body = check(body)
        except InvariantViolation as violation:
            errors.update({e.field: e for e in violation.errors})
    errors.update({e.field: e for e in too_deep})
    return list(errors.values()), body


async def _read_body(request: web.Request) -> Any:
    charset = (request.charset or "utf-8").lower()  # matched ignoring case (RFC 9110 §8.3.2)
    if request.content_type != "application/json" or charset != "utf-8":
        raise UnsupportedMediaType("send the body as Content-Type: application/json (UTF-8)")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body may be at most {MAX_BODY_BYTES} bytes")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"the body may be at most {MAX_BODY_BYTES} bytes") from None
    return decode_json(raw)


def decode_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no duplicate keys, nesting within reason."""
    try:
        return json.loads(
            raw.decode("utf-8"),
            parse_constant=_reject_constant,
            object_pairs_hook=_unique_keys,
        )
    except UnicodeDecodeError:
        raise _bad_body("the body is not valid UTF-8") from None
    except RecursionError:
        raise _bad_body("the body is nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, and int parsing limits
        raise _bad_body(f"the body is not valid JSON: {error}") from None


def _without_deep_values(body: Any) -> tuple[Any, list[FieldError]]:
    """``body`` with every member nested deeper than MAX_DEPTH set to null; an error for each."""
    if isinstance(body, dict):
        deep = [name for name, value in body.items() if _depth(value) > MAX_DEPTH]
        errors = [FieldError(pointer(name), TOO_DEEP) for name in deep]
        return {**body, **dict.fromkeys(deep)}, errors
    if _depth(body) > MAX_DEPTH:
        return None, [FieldError("", TOO_DEEP)]
    return body, []


def _depth(value: Any) -> int:
    """How many arrays and objects deep ``value`` nests (0 for a scalar)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in node)
    return deepest


def _bad_body(message: str) -> ValidationFailed:
    return ValidationFailed(message, [FieldError("", message)])


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("an object has a duplicate key")
    return result


def _read_parameters(request: web.Request, parameters: tuple[Parameter, ...]) -> dict[str, Any]:
    sources: dict[str, Mapping[str, str]] = {
        "path": request.match_info,
        "query": request.query,
        "header": request.headers,
    }
    params: dict[str, Any] = {}
    for p in parameters:
        repeated = request.query.getall(p.name, []) if p.location == "query" else []
        raw = sources[p.location].get(p.name)
        if len(repeated) > 1:
            params[p.key] = repeated  # a list: the schema rejects it
        elif raw is not None:
            params[p.key] = _integer(raw) if p.is_integer else raw
    return params


def _integer(raw: str) -> int | str:
    """``raw`` as an int when it is a plain decimal integer; else as is (the schema rejects it)."""
    digits = raw.removeprefix("-")
    return int(raw) if digits.isascii() and digits.isdigit() and len(digits) <= 20 else raw


def _schema_errors(validator: Validator, instance: Any, field: Any) -> list[FieldError]:
    try:
        return [error for e in validator.iter_errors(instance) for error in _field_errors(e, field)]
    except UnicodeEncodeError:
        return [FieldError(field([]), "strings must be valid Unicode (no lone surrogates)")]


def _field_errors(error: Any, field: Any) -> list[FieldError]:
    """One error per field: an unknown or missing property is named as its own field."""
    path = list(error.instance_path)
    kind = error.kind
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties):
        return [
            FieldError(field([*path, name]), "is not a known field") for name in kind.unexpected
        ]
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
        return [FieldError(field([*path, kind.property]), "is required")]
    return [FieldError(field(path), error.message)]


def _parameter_field(path: list[str | int]) -> str:
    return str(path[0]) if path else ""  # already named "query.limit", "path.item_id", ...


def _body_field(path: list[str | int]) -> str:
    return "".join(pointer(str(part)) for part in path)
