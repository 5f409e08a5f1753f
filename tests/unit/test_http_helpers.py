"""The HTTP layer's pure pieces, in process and without a server: strict JSON, parameter
decoding, cursors, entity tags, the binding of handlers to operations, and the mapping of
every problem kind to its status.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import pytest
from aiohttp import http_exceptions, web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from model.invariants import FieldError, NewItem, check_create
from service import problems
from service.http.conditions import parse_if_match
from service.http.cursors import decode_cursor, encode_cursor
from service.http.handlers import HANDLERS
from service.http.parse_errors import problem_for
from service.http.request_ids import made_request_id
from service.http.responses import MAX_ERRORS, STATUS, problem_response
from service.http.spec import Operation, SpecMismatch, load_document, load_operations
from service.http.validation import (
    MAX_DEPTH,
    Arguments,
    Check,
    as_integer,
    decode_json,
    depth,
    read_arguments,
)
from service.problems import ValidationFailed

OPERATIONS = {op.operation_id: op for op in load_operations(load_document())}
name_keys = st.text(st.characters(exclude_categories=["Cc", "Cs"]), min_size=1, max_size=20)


def operation(operation_id: str) -> Operation:
    return OPERATIONS[operation_id]


# --- strict JSON ---------------------------------------------------------------------


def test_decode_json_reads_plain_json() -> None:
    assert decode_json(b'{"name": "apple", "qty": 5}') == {"name": "apple", "qty": 5}


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'{"qty": NaN}', "NaN is not a JSON number"),
        (b'{"qty": Infinity}', "Infinity is not a JSON number"),
        (b'{"a": 1, "a": 2}', "duplicate key"),
        (b'{"name": "\xff"}', "not valid UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"{", "not valid JSON"),
    ],
)
def test_decode_json_refuses_what_strict_json_forbids(raw: bytes, why: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        decode_json(raw)
    assert why in refused.value.detail
    assert [e.field for e in refused.value.errors] == [""]


@pytest.mark.parametrize(("value", "levels"), [(5, 0), ([], 1), ({"a": [1, {"b": []}]}, 4)])
def test_depth_counts_arrays_and_objects(value: Any, levels: int) -> None:
    assert depth(value) == levels


def test_depth_handles_nesting_far_beyond_the_limit_without_recursion() -> None:
    value: Any = []
    for _ in range(100 * MAX_DEPTH):
        value = [value]
    assert depth(value) == 100 * MAX_DEPTH + 1


@pytest.mark.parametrize(
    ("raw", "value"),
    [("5", 5), ("-12", -12), ("007", 7), ("5.0", "5.0"), ("1e3", "1e3"), ("٣", "٣"), ("", "")],
)
def test_as_integer_reads_only_plain_decimal_integers(raw: str, value: int | str) -> None:
    assert as_integer(raw) == value


# --- cursors and entity tags ------------------------------------------------------------


@given(name_keys)
def test_a_cursor_decodes_to_the_name_key_it_was_issued_for(key: str) -> None:
    assert decode_cursor(encode_cursor(key)) == key


@pytest.mark.parametrize("cursor", ["AQ", "AA", "gA", "_w"])
def test_a_cursor_of_the_contracts_form_that_we_did_not_issue_is_refused(cursor: str) -> None:
    with pytest.raises(ValueError, match="is malformed"):
        decode_cursor(cursor)


@pytest.mark.parametrize(
    ("header", "versions"),
    [
        ("*", None),
        (' "3" ', frozenset({3})),
        ('"1", "2"', frozenset({1, 2})),
        ('W/"3"', frozenset()),
        ('"abc", "٣"', frozenset()),
        ("3", frozenset()),
    ],
)
def test_if_match_accepts_only_strong_tags_of_versions(
    header: str, versions: frozenset[int] | None
) -> None:
    assert parse_if_match(header) == versions


# --- handlers bound to operations ------------------------------------------------------


def test_every_handler_fits_its_operation() -> None:
    assert set(HANDLERS) == set(OPERATIONS)
    for operation_id, handler in HANDLERS.items():
        Arguments.of(OPERATIONS[operation_id], handler)


async def _takes_an_unknown_parameter(item_id: str, colour: str) -> web.Response:
    raise AssertionError


async def _ignores_a_parameter() -> web.Response:
    raise AssertionError


async def _takes_a_body(
    item_id: str, body: Annotated[NewItem, Check(check_create)]
) -> web.Response:
    raise AssertionError


@pytest.mark.parametrize(
    "handler", [_takes_an_unknown_parameter, _ignores_a_parameter, _takes_a_body]
)
def test_a_handler_that_does_not_fit_its_operation_stops_the_startup(handler: Any) -> None:
    with pytest.raises(SpecMismatch, match="getItem"):
        Arguments.of(operation("getItem"), handler)


async def _read(operation_id: str, target: str, **match_info: str) -> dict[str, Any]:
    arguments = Arguments.of(operation(operation_id), HANDLERS[operation_id])
    request = make_mocked_request("GET", target, match_info=match_info)
    return await read_arguments(request, arguments)


async def test_listing_parameters_take_the_contracts_default_and_decode_the_cursor() -> None:
    assert await _read("listItems", "/items") == {"limit": 100, "cursor": None, "name_prefix": None}
    cursor = encode_cursor("apple")
    values = await _read("listItems", f"/items?limit=7&cursor={cursor}&name_prefix=Caf%C3%89")
    assert values == {"limit": 7, "cursor": "apple", "name_prefix": "café"}


async def test_one_answer_names_every_bad_parameter_of_schema_and_decoder_alike() -> None:
    with pytest.raises(ValidationFailed) as refused:
        await _read("listItems", "/items?limit=0&cursor=AQ")
    assert {e.field for e in refused.value.errors} == {"query.limit", "query.cursor"}


async def test_a_malformed_path_parameter_is_named() -> None:
    with pytest.raises(ValidationFailed) as refused:
        await _read("getItem", "/items/nope", item_id="nope")
    assert {e.field for e in refused.value.errors} == {"path.item_id"}


# --- problems ---------------------------------------------------------------------------


def problem_kinds() -> list[type[problems.Problem]]:
    return [
        kind
        for kind in vars(problems).values()
        if isinstance(kind, type) and issubclass(kind, problems.Problem)
    ]


def test_every_kind_of_problem_but_the_two_bases_has_a_status_of_its_own() -> None:
    assert set(problem_kinds()) - set(STATUS) == {problems.Problem, problems.Rejected}
    # Rejected is only the common base of NotFound, NameTaken, QuantityOutOfRange and
    # PreconditionFailed: never raised itself.


@pytest.mark.parametrize(
    ("problem", "status", "headers"),
    [
        (problems.NotFound.item("x"), 404, {}),
        (problems.Unauthorized("no key"), 401, {"WWW-Authenticate": 'Bearer realm="inventory"'}),
        (problems.MethodNotAllowed("no", ["POST", "GET"]), 405, {"Allow": "GET, POST"}),
        (problems.Unavailable("the database is busy", retry_after=2), 503, {"Retry-After": "2"}),
        (problems.Problem("a bug"), 500, {}),
    ],
)
def test_a_problem_is_answered_with_its_status_headers_and_document(
    problem: problems.Problem, status: int, headers: dict[str, str]
) -> None:
    response = problem_response(problem, "req-1")
    assert response.status == status
    assert response.content_type == "application/problem+json"
    assert {k: response.headers[k] for k in headers} == headers
    assert isinstance(response.body, bytes)
    document = json.loads(response.body)
    assert document == {
        "type": f"urn:inventory:problem:{problem.kind}",
        "title": problem.title,
        "status": status,
        "detail": problem.detail,
        "request_id": "req-1",
    }


def test_a_validation_problem_lists_its_errors() -> None:
    response = problem_response(
        ValidationFailed("bad", [FieldError("/qty", "must be an integer")]), "req-1"
    )
    assert isinstance(response.body, bytes)
    assert json.loads(response.body)["errors"] == [
        {"field": "/qty", "message": "must be an integer"}
    ]


def test_a_validation_problem_lists_the_first_20_errors_and_counts_the_rest() -> None:
    errors = [FieldError(f"/f{n}", "is not a known field") for n in range(MAX_ERRORS + 7)]
    response = problem_response(ValidationFailed("bad", errors), "req-1")
    assert isinstance(response.body, bytes)
    document = json.loads(response.body)
    assert [e["field"] for e in document["errors"]] == [f"/f{n}" for n in range(MAX_ERRORS)]
    assert document["more"] == 7


def test_a_validation_problem_with_20_errors_or_fewer_counts_none() -> None:
    errors = [FieldError(f"/f{n}", "is not a known field") for n in range(MAX_ERRORS)]
    response = problem_response(ValidationFailed("bad", errors), "req-1")
    assert isinstance(response.body, bytes)
    assert "more" not in json.loads(response.body)


SECRET = "inv_0123456789abcdef_SECRET"


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (http_exceptions.LineTooLong(SECRET.encode(), 8190), "longer than 8190 bytes"),
        (http_exceptions.InvalidHeader(SECRET.encode()), "a header is malformed"),
        (http_exceptions.BadStatusLine(SECRET), "the request line is malformed"),
        (http_exceptions.BadHttpMethod(SECRET), "the request line is malformed"),
        (http_exceptions.BadHttpMessage("Too many headers received"), "more than 32 header"),
        (http_exceptions.BadHttpMessage(SECRET), "not well-formed HTTP"),
        (http_exceptions.TransferEncodingError(SECRET), "framing or encoding"),
        (None, "not well-formed HTTP"),
    ],
)
def test_a_parser_rejection_is_a_400_that_names_its_kind_and_quotes_nothing(
    error: Exception | None, said: str
) -> None:
    problem = problem_for(error)
    assert said in problem.detail
    assert "SECRET" not in problem.detail
    assert STATUS[type(problem)] == 400


def test_every_operation_that_takes_a_body_documents_the_408_of_a_slow_one() -> None:
    paths = load_document()["paths"]
    operations = [op for item in paths.values() for op in item.values() if "operationId" in op]
    with_body = [op for op in operations if "requestBody" in op]
    assert len(with_body) >= 4
    assert [op["operationId"] for op in with_body if "408" not in op["responses"]] == []


def test_request_ids_made_in_a_forked_worker_differ_from_its_parents() -> None:
    """Made ids come from ``random``, which Python seeds again in a forked child: two
    processes serving one port never make the same sequence of ids."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its next id, then out without running pytest's teardown
        os.write(write, made_request_id().encode())
        os._exit(0)
    os.waitpid(child, 0)
    os.close(write)
    assert os.read(read, 64).decode() != made_request_id()
    os.close(read)
