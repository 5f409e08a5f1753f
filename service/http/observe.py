"""What can be seen of each request: its id on the response and its log lines, one access
line and the request metrics once it has been answered.

``request_id_middleware`` (the outermost) decides the request's id (``request_ids``), makes
it the id of every line logged while the request is served (``service.logs.REQUEST_ID``)
and puts it on the response, whatever answered it: a handler, a problem, the router's
404/405 or a 500. ``AccessLog`` replaces aiohttp's access log: aiohttp calls it after the
response is sent, with the time since the request arrived; it writes one line with the
request's id, operationId, caller and size, and records the request in the metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest

from service import logs, metrics
from service.http.request_ids import HEADER, request_id_of
from service.http.routing import caller_of, operation_id_of

ACCESS_LOGGER = logging.getLogger("inventory.access")


@web.middleware
async def request_id_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Tag the request's log lines and its response with its id."""
    request_id = request_id_of(request)
    logs.REQUEST_ID.set(request_id)  # this request's task alone: it runs in its own context
    response = await handler(request)
    response.headers[HEADER] = request_id
    return response


class AccessLog(AbstractAccessLogger):
    """One line per answered request, and its count and latency in the metrics."""

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        operation = operation_id_of(request)
        metrics.record_request(operation or "none", response.status, time)
        if self.logger.isEnabledFor(logging.INFO):
            caller = caller_of(request)
            self.logger.info(
                "%s %s %d",  # never the path: it is the client's text (a secret, pasted by mistake)
                request.method, operation or "(no route)", response.status,
                extra={
                    "request_id": request_id_of(request),
                    "operationId": operation,
                    "method": request.method,
                    "status": response.status,
                    "duration_ms": round(time * 1000, 3),
                    "tenant": caller.tenant if caller else None,
                    "key_id": caller.key_id if caller else None,
                    "response_bytes": response.body_length,
                },
            )  # fmt: skip

    @property
    def enabled(self) -> bool:
        """Always called: the metrics need every request, whatever the log level."""
        return True
