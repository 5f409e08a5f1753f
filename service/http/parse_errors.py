"""Requests aiohttp's own parser rejects, answered as short problem+json, logged in one line.

aiohttp answers a request it cannot parse (an over-long or malformed header, a broken request
line, bad framing) before the application runs: by default in plain text quoting the
offending bytes, with an ERROR traceback that quotes them too. A header may hold a key's
secret, so ``ProblemRequestHandler`` answers instead with a fixed sentence per kind of error
(never the request's bytes) as problem+json, and logs one line naming the kind.
``ProblemServer`` makes aiohttp use it for every connection (``service.app``).
"""

from __future__ import annotations

import logging

from aiohttp import http_exceptions as parser
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from service.http.request_ids import HEADER, request_id_of
from service.http.responses import problem_response
from service.problems import Problem, ValidationFailed

MAX_HEADER_BYTES = 8190
"""The longest request line, header line or header field accepted: aiohttp's default, so an
unauthenticated client cannot pin much memory with unfinished headers."""
MAX_HEADERS = 32
"""The most header fields a request may have (aiohttp's default is 128). aiohttp keeps each
unfinished header twice (bytes and text): 32 full fields pin about 0.5 MB per connection,
128 pinned 2 MB, so that 150 idle connections held 300 MB. Clients send 10 to 20."""
log = logging.getLogger("inventory")
_WHY: tuple[tuple[type[Exception], str], ...] = (
    (parser.LineTooLong, f"a request or header line is longer than {MAX_HEADER_BYTES} bytes"),
    (parser.InvalidHeader, "a header is malformed"),
    (parser.BadStatusLine, "the request line is malformed"),
    (parser.InvalidURLError, "the request target is malformed"),
    (parser.PayloadEncodingError, "the body's framing or encoding is malformed"),
)


_TOO_MANY_HEADERS = "Too many headers received"
"""aiohttp's own words (no request bytes) for a request over ``max_headers``."""
_NOT_HTTP = "it is not well-formed HTTP (a control character in a header, broken framing)"


def problem_for(error: BaseException | None) -> ValidationFailed:
    """The 400 for a request the parser rejected with ``error``; never quoting its bytes."""
    why = next((why for kind, why in _WHY if isinstance(error, kind)), _NOT_HTTP)
    if isinstance(error, parser.BadHttpMessage) and error.message == _TOO_MANY_HEADERS:
        why = f"it has more than {MAX_HEADERS} header fields"
    return ValidationFailed(f"the request is malformed: {why}", [])


class ProblemRequestHandler(RequestHandler):
    """aiohttp's connection handler, with its error answers as problem+json."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A short problem (400 for what the parser rejected), one log line; the connection
        is closed after it."""
        if request.writer.output_size > 0:
            raise ConnectionError("the response has started; no error answer can follow")
        kind = type(exc).__name__ if exc is not None else f"status {status}"
        problem = problem_for(exc) if status == 400 else Problem("the request could not be served")
        request_id = request_id_of(request)
        log.warning(
            "request rejected: %s", kind,
            extra={"error": kind, "status": status, "request_id": request_id},
        )  # fmt: skip
        response = problem_response(problem, request_id)
        response.headers[HEADER] = request_id
        response.force_close()
        return response


class ProblemServer(web.Server):
    """aiohttp's server, making a ``ProblemRequestHandler`` for each connection."""

    def __call__(self) -> RequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, **self._kwargs)
