"""Turning an HTTP request into a handler's typed arguments, or one precise 4xx.

This is the one source of 400s. ``read_arguments`` applies the contract's checks in their
documented order: media type (415), size (413), then, all at once so that one answer names
every offending field (400): the parameters against the operation's compiled schema and
their decoders (a cursor we issued, an entity-tag list), the body against its schema and
its ``model.invariants`` check. JSON is decoded strictly: no NaN or Infinity, no duplicate
keys, UTF-8 only.

What a handler receives is declared by its signature (``Arguments.of``): ``store``,
``caller`` (who asks), ``author`` (who changes: the caller's tenant and key, and the request
id), ``body`` (``Annotated[NewItem, Check(check_create)]`` names the invariant check
that normalizes it) and one argument per parameter of its operation, named like the
parameter (``item_id``, ``if_match``), ``Annotated`` with a ``Decode`` where the raw value
needs one. A handler and its operation that do not correspond stop the service at startup.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin, get_type_hints

import jsonschema_rs
from aiohttp import HttpVersion11, web
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.web_protocol import RequestPayloadError

from model.invariants import FieldError, InvariantViolation, pointer
from service.http.request_ids import HEADER
from service.http.spec import Operation, Parameter, SpecMismatch, Validator
from service.problems import (
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    ValidationFailed,
)

MAX_BODY_BYTES = 64 * 1024
BODY_SECONDS = 5.0
"""How long a body may take to arrive once its headers have been accepted: a client that
trickles it is answered 408 rather than holding a connection (and shutdown) for minutes."""
MAX_DEPTH = 32
"""A JSON value nested deeper is refused (400) before validation: no valid body nests past 2,
and the schema validator gives up at about 256 levels with an error, not an answer."""
TOO_DEEP = f"is nested more than {MAX_DEPTH} levels deep"
CONTEXT_ARGUMENTS = frozenset({"store", "caller", "author"})
"""Arguments the router supplies, not the request."""
IDEMPOTENCY_KEY = "header.idempotency-key"
OWN_PARAMETERS = frozenset({f"header.{HEADER.lower()}", IDEMPOTENCY_KEY})
"""Parameters the HTTP layer reads itself (the request id, ``request_ids``; the
Idempotency-Key, ``routing``): no handler's. The contract still checks their form."""


@dataclass(frozen=True)
class Decode:
    """How a schema-valid parameter becomes the handler's value; ValueError(why) rejects it."""

    decode: Callable[[Any], Any]


@dataclass(frozen=True)
class Check:
    """The ``model.invariants`` check that validates and normalizes a body."""

    check: Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Arguments:
    """What one handler takes, resolved against its operation once, at startup."""

    operation: Operation
    parameters: tuple[tuple[Parameter, Decode | None], ...]
    body: Check | None
    context: frozenset[str]

    @classmethod
    def of(cls, operation: Operation, handler: Callable[..., Any]) -> Arguments:
        """The arguments of ``handler``; SpecMismatch unless they fit ``operation``."""
        hints = get_type_hints(handler, include_extras=True)
        hints.pop("return", None)
        by_name = {p.argument: p for p in operation.parameters if p.key not in OWN_PARAMETERS}
        _require_same(operation, set(hints) - CONTEXT_ARGUMENTS - {"body"}, set(by_name))
        if ("body" in hints) != (operation.body_validator is not None):
            raise SpecMismatch(f"{operation.operation_id}: handler and contract disagree on a body")
        parameters = tuple((by_name[n], _metadata(hints[n], Decode)) for n in by_name)
        body = _metadata(hints["body"], Check) if "body" in hints else None
        return cls(operation, parameters, body, frozenset(hints) & CONTEXT_ARGUMENTS)


def _require_same(operation: Operation, taken: set[str], declared: set[str]) -> None:
    if taken != declared:
        raise SpecMismatch(
            f"{operation.operation_id}: handler takes {sorted(taken)}, contract has"
            f" {sorted(declared)}"
        )


def _metadata(hint: Any, kind: type[Any]) -> Any:
    """The ``kind`` annotation inside ``Annotated[...]``, if any."""
    if get_origin(hint) is not Annotated:
        return None
    return next((extra for extra in get_args(hint)[1:] if isinstance(extra, kind)), None)


async def read_arguments(request: web.Request, arguments: Arguments) -> dict[str, Any]:
    """The handler's request-borne arguments, validated and decoded, or a ``Problem``."""
    op = arguments.operation
    body = await _read_body(request) if op.body_validator is not None else None
    raw = _read_parameters(request, op.parameters)
    errors = _schema_errors(op.parameters_validator, raw, _parameter_field)
    values = _decode_parameters(arguments, raw, {e.field for e in errors}, errors)
    if op.body_validator is not None:
        body_errors, values["body"] = _check_body(op, arguments.body, body)
        errors += body_errors
    if errors:
        raise ValidationFailed("the request does not match the contract", errors)
    return values


def _decode_parameters(
    arguments: Arguments, raw: dict[str, Any], invalid: set[str], errors: list[FieldError]
) -> dict[str, Any]:
    """Each parameter's value (its schema default when absent), decoded where it has a decoder."""
    values = {}
    for parameter, decoder in arguments.parameters:
        value = raw.get(parameter.key, parameter.schema.get("default"))
        if decoder is not None and value is not None and parameter.key not in invalid:
            try:
                value = decoder.decode(value)
            except ValueError as why:
                errors.append(FieldError(parameter.key, str(why)))
        values[parameter.argument] = value
    return values


def _check_body(op: Operation, check: Check | None, body: Any) -> tuple[list[FieldError], Any]:
    """Schema errors merged with invariant errors (theirs win per field), and the fields.

    Running both lets one answer name every offending field: the schema knows shapes,
    the invariants know what JSON Schema cannot say (``5.0`` is no integer, NFC length).
    """
    body, too_deep = _without_deep_values(body)
    errors = {e.field: e for e in _schema_errors(op.body_validator, body, _body_field)}
    if check is not None and isinstance(body, dict):
        try:
            body = check.check(body)
        except InvariantViolation as violation:
            precise = {e.field: e for e in violation.errors}
            errors = {f: e for f, e in errors.items() if not _inside(precise, f)} | precise
    errors.update({e.field: e for e in too_deep})
    return list(errors.values()), body


def _inside(fields: Mapping[str, object], container: str) -> bool:
    """Whether a field of ``fields`` lies inside ``container`` (a schema error there, like
    "matches none of the operations", says less than the invariants' errors inside it)."""
    return container != "" and any(field.startswith(container + "/") for field in fields)


async def _read_body(request: web.Request) -> Any:
    charset = (request.charset or "utf-8").lower()  # matched ignoring case (RFC 9110 §8.3.2)
    if request.content_type != "application/json" or charset != "utf-8":
        raise UnsupportedMediaType("send the body as Content-Type: application/json (UTF-8)")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body may be at most {MAX_BODY_BYTES} bytes")
    await _send_continue(request)
    return decode_json(await _read_raw(request))


async def _send_continue(request: web.Request) -> None:
    """``100 Continue`` for a client that waits for it: only now that the caller is
    authenticated and the declared size is allowed (routing's expect handler sends none)."""
    expect = request.headers.get("Expect", "").lower()
    if request.version == HttpVersion11 and expect == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the response proper has not started


async def _read_raw(request: web.Request) -> bytes:
    """The body's bytes, decoded as its Content-Encoding says, within BODY_SECONDS."""
    try:
        if request.content.is_eof():  # all of it has arrived (the usual small body): no wait
            return await request.read()
        async with asyncio.timeout(BODY_SECONDS):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"the body may be at most {MAX_BODY_BYTES} bytes") from None
    except TimeoutError:
        raise RequestTimeout(f"the body did not arrive within {BODY_SECONDS:g} seconds") from None
    except (RequestPayloadError, ContentEncodingError) as error:
        raise _bad_body(_unreadable(error)) from None


def _unreadable(error: Exception) -> str:
    """Why a body could not be read, never quoting it."""
    if isinstance(error, ContentEncodingError) or isinstance(error.__cause__, ContentEncodingError):
        return "the body does not decode as its Content-Encoding says"
    return "the body's framing is broken"


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
        deep = [name for name, value in body.items() if depth(value) > MAX_DEPTH]
        errors = [FieldError(pointer(name), TOO_DEEP) for name in deep]
        return {**body, **dict.fromkeys(deep)}, errors
    if depth(body) > MAX_DEPTH:
        return None, [FieldError("", TOO_DEEP)]
    return body, []


def depth(value: Any) -> int:
    """How many arrays and objects deep ``value`` nests (0 for a scalar)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in node)
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
            params[p.key] = as_integer(raw) if p.is_integer else raw
    return params


def as_integer(raw: str) -> int | str:
    """``raw`` as an int when it is a plain decimal integer; else as is (the schema rejects it)."""
    digits = raw.removeprefix("-")
    return int(raw) if digits.isascii() and digits.isdigit() and len(digits) <= 20 else raw


def _schema_errors(validator: Validator, instance: Any, field: Any) -> list[FieldError]:
    try:
        return [error for e in validator.iter_errors(instance) for error in _field_errors(e, field)]
    except UnicodeEncodeError:
        unencodable = [
            name
            for name, value in (instance.items() if isinstance(instance, dict) else ())
            if not _is_unicode(value)
        ] or [None]
        return [
            FieldError(field([] if name is None else [name]), _NOT_UNICODE) for name in unencodable
        ]


_NOT_UNICODE = "strings must be valid Unicode (no lone surrogates, no bytes that are not UTF-8)"


def _is_unicode(value: Any) -> bool:
    """Whether ``value`` (a parameter or a body member) holds no lone surrogate anywhere."""
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


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
