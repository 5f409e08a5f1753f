"""Schemathesis hooks: the three rules of openapi.yaml that JSON Schema cannot state.

``schemathesis.toml`` loads this module, so ``schemathesis run`` and
``tests/api/test_schemathesis.py`` judge the service by the same rules.

The contract rejects, with a 400, three kinds of input that its JSON Schema cannot tell
apart from valid input (openapi.yaml says so in prose):

- an integer spelled as a float, ``5.0``: JSON Schema calls it an integer, the contract
  does not (schemathesis sends such spellings on purpose for every ``type: integer``);
- a name or reason of at most 200 code points that grows past 200 under NFC
  (``U+0958`` becomes two code points): JSON Schema can only count them as sent;
- a ``cursor`` that matches its pattern but is no cursor the service issues (not
  base64url of UTF-8 text without control characters): no pattern can say that.

``filter_failure`` drops a positive-data rejection (ST202) only when the answer is a 400
problem whose every error names a field that, as sent on the wire, has one of these
properties (in a batch, the same fields of its operations). Any other rejection of
schema-valid data still fails the run, and every
other check is untouched.

``before_call`` sends a valid ``wait`` of listEvents as ``wait=0``: a long poll holds an
empty answer up to 30 s, so fuzzing it as generated would make a run last hours (and hit
the client's timeout). The answers are checked all the same; tests/api/test_ledger.py
covers the waiting itself. Invalid ``wait`` values are sent as generated.
"""

from __future__ import annotations

import base64
import binascii
import json
import unicodedata
from typing import Any
from urllib.parse import parse_qs, urlsplit

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData

_INTEGER_FIELDS = {"/qty", "/delta", "/if_match"}
_TEXT_FIELDS = {"/name", "/reason"}
_TEXT_MAX = 200


@schemathesis.hook
def filter_failure(
    context: schemathesis.HookContext,
    failure: Any,
    case: schemathesis.Case[Any],
    response: schemathesis.Response,
) -> bool:
    """Keep every failure but a 400 for input the contract rejects beyond its schema."""
    if not isinstance(failure, RejectedPositiveData) or response.status_code != 400:
        return True
    return not documented_rejection(response)


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case[Any], **_: Any) -> None:
    """Send a valid long-poll ``wait`` as 0 (see the module docstring)."""
    wait = str((case.query or {}).get("wait", ""))
    if case.operation.label == "GET /events" and wait.isdigit() and 0 < int(wait) <= 30:
        case.query = {**(case.query or {}), "wait": 0}


def documented_rejection(response: schemathesis.Response) -> bool:
    """Whether each field the 400 blames holds, as sent, input the contract's prose rejects."""
    try:
        problem = json.loads(response.content)
        fields = {error["field"] for error in problem["errors"]}
    except (ValueError, KeyError, TypeError):
        return False
    request = response.request
    body = _sent_json(request.body)
    query = parse_qs(urlsplit(request.url or "").query, keep_blank_values=True)
    return bool(fields) and all(_documented(field, body, query) for field in fields)


def _documented(field: str, body: Any, query: dict[str, list[str]]) -> bool:
    if field == "query.cursor":
        return all(not issuable_cursor(cursor) for cursor in query.get("cursor", []))
    if not isinstance(body, dict):
        return False
    value, last = _member(body, field)
    if last in _INTEGER_FIELDS:
        return isinstance(value, float) and value.is_integer()
    if last in _TEXT_FIELDS:
        return (
            isinstance(value, str) and len(unicodedata.normalize("NFC", value).strip()) > _TEXT_MAX
        )
    return False


def _member(body: dict[str, Any], field: str) -> tuple[Any, str]:
    """The member a JSON pointer names (a batch's ``/operations/2/delta`` included), and its
    last step as a top-level pointer (``/delta``)."""
    value: Any = body
    steps = field.split("/")[1:]
    for step in steps:
        if isinstance(value, dict):
            value = value.get(step)
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return None, ""
    return value, f"/{steps[-1]}" if steps else ""


def issuable_cursor(cursor: str) -> bool:
    """Whether the service could have issued ``cursor``.

    It issues unpadded base64url of the UTF-8 of a name key, which, like every name, holds
    no control character.
    """
    try:
        key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    return not any(unicodedata.category(ch) in ("Cc", "Cs") for ch in key)


def _sent_json(raw: bytes | str | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None
