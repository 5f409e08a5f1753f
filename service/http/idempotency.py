"""The ``Idempotency-Key`` header (IETF httpapi draft), from request to stored answer.

The router reads the key (its form checked by the contract's pattern, a 400 otherwise),
fingerprints the request it came with, and hands the store a ``Claim`` in the write's
``Author``. A handler says how its result answers once, with ``answering``: the store
renders that answer inside the write's transaction and keeps it. A ``Replay`` from the
store is sent as it was stored, plus ``Idempotent-Replayed: true``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from aiohttp import web
from multidict import CIMultiDict

from service import metrics
from service.http.responses import problem_response
from service.store import Author
from service.store.idempotency import Answer, Claim

T = TypeVar("T")
HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
_ESCAPE = re.compile(r'\\(["\\])')
_NOT_KEPT = frozenset({"content-length", "date", "server", "x-request-id"})
"""Headers an answer is stored without: framing, and what belongs to each request."""


def key_of(raw: str) -> str:
    """The key a header value names: a Structured Field string unquoted (``"k\\"1"`` is
    ``k"1``), a bare token as it is. The contract's pattern has checked its form."""
    return _ESCAPE.sub(r"\1", raw[1:-1]) if raw.startswith('"') else raw


def claim(key: str, operation_id: str, arguments: Mapping[str, Any], request_id: str) -> Claim:
    """The claim of ``key`` for a request to ``operation_id`` with these decoded arguments
    (path, query, header parameters and the normalized body)."""
    return Claim(
        key,
        fingerprint(operation_id, arguments),
        rejected=lambda problem: _answer_of(problem_response(problem, request_id)),
    )


def fingerprint(operation_id: str, arguments: Mapping[str, Any]) -> str:
    """What makes two requests the same one: the operation and every argument, after
    normalization (member order and a name's NFC form do not count), hashed."""
    canonical = json.dumps(
        [operation_id, arguments], sort_keys=True, ensure_ascii=False, default=_plain
    )
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def answering(author: Author, present: Callable[[T], web.Response]) -> Author:
    """``author``, whose Idempotency-Key (if any) stores ``present(result)`` as the answer
    to a write that succeeds: the same response the handler then sends."""
    if author.claim is None:
        return author

    def succeeded(result: T) -> Answer:
        return _answer_of(present(result))

    return replace(author, claim=replace(author.claim, succeeded=succeeded))


def replayed(answer: Answer) -> web.Response:
    """The stored ``answer``, sent again as it was, marked as a replay."""
    metrics.record_replay()
    headers = CIMultiDict(answer.headers)
    headers[REPLAYED] = "true"
    return web.Response(status=answer.status, body=answer.body or None, headers=headers)


def _answer_of(response: web.Response) -> Answer:
    headers = tuple((k, v) for k, v in response.headers.items() if k.lower() not in _NOT_KEPT)
    body = response.body
    return Answer(response.status, headers, body if isinstance(body, bytes) else b"")


def _plain(value: object) -> object:
    if isinstance(value, frozenset | set):
        return sorted(value)
    raise TypeError(f"cannot fingerprint a {type(value).__name__}")
