"""Logging: one line per event, as JSON or as text, each tagged with its request's id.

``configure`` sets up the root logger for ``inventory serve``: every line, the service's own
and aiohttp's, goes through one handler on stderr, in one format. A request's lines carry
its id: the HTTP layer sets ``REQUEST_ID`` for the request's task (from
``service.http.request_ids``), and a filter copies it onto every record logged there.
Structured fields are passed as ``extra={...}``: JSON lines carry them as keys, text lines
as ``key=value`` after the message. What is never logged: a key's secret, an
``Authorization`` header, a body. A request aiohttp's parser rejects is logged in one line
naming the error's kind (``service.http.parse_errors``); any other aiohttp record with an
exception (which may quote the request's bytes) has it cut down to the class name.

A line is cheap, since every request writes one: JSON is encoded by python-json-logger's
orjson formatter (the stdlib's encoder for what orjson refuses, a lone surrogate), and
``configure`` turns off what the logging HOWTO's "Optimization" section lists as avoidable
per record and no line here shows: the caller's file and line, thread and process names.
Together they halve the access line's cost (bench, GET /items/{id}: README, "Performance").
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from typing import TextIO

import orjson
from pythonjsonlogger.core import RESERVED_ATTRS, LogData
from pythonjsonlogger.json import JsonEncoder
from pythonjsonlogger.orjson import OrjsonFormatter

FORMATS = ("json", "text")
LEVELS = ("debug", "info", "warning", "error")
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
"""The id of the request being served by the current task, if any."""
_STANDARD = frozenset([*RESERVED_ATTRS, "taskName", "request_id"])


def default_format(stream: TextIO) -> str:
    """JSON for machines (a file, a pipe, a journal), text for a person at a terminal."""
    return "text" if stream.isatty() else "json"


def configure(log_format: str, level: str, stream: TextIO = sys.stderr) -> None:
    """Send every log line to ``stream`` in ``log_format``, from ``level`` up."""
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler(log_format, stream))
    root.setLevel(level.upper())
    # What no line shows, not worked out for each record (the logging HOWTO, "Optimization").
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False


def handler(log_format: str, stream: TextIO) -> logging.Handler:
    """The one handler: ``stream``, ``log_format``, request ids in, request bytes out."""
    to_stream = logging.StreamHandler(stream)
    to_stream.addFilter(_RequestContext())
    to_stream.addFilter(_NoRequestBytes())
    to_stream.setFormatter(_json_formatter() if log_format == "json" else _TextFormatter())
    return to_stream


def _json_formatter() -> logging.Formatter:
    return _JsonFormatter(
        ["levelname", "name", "message"],
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )


class _JsonFormatter(OrjsonFormatter):
    """orjson's encoding of an all-ASCII line; the stdlib's (python-json-logger's encoder,
    ``\\u`` escapes) for any other, and where orjson refuses a string (a lone surrogate). A
    line stays ASCII, as it always was: U+2028 raw would split it for a reader using
    ``str.splitlines``, and a stderr that is not UTF-8 could not carry it as JSON."""

    def jsonify_log_record(self, log_data: LogData) -> str:
        try:
            line = super().jsonify_log_record(log_data)
        except orjson.JSONEncodeError:
            line = ""
        if line and line.isascii():
            return line
        return json.dumps(log_data, cls=JsonEncoder, separators=(",", ":"))


class _TextFormatter(logging.Formatter):
    """``time level [request_id] logger message key=value ...``: the same fields as JSON."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s [%(request_id)s] %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        line = super().format(record)
        return " ".join([line, *(f"{key}={value!r}" for key, value in fields.items())])


class _RequestContext(logging.Filter):
    """Give every record the id of the request it was logged for (``-`` outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get() or "-"
        return True


class _NoRequestBytes(logging.Filter):
    """aiohttp's parser errors quote the request's bytes (a header may hold a secret): keep
    only which error it was."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("aiohttp") and record.exc_info and record.exc_info[1]:
            record.error = type(record.exc_info[1]).__name__
            record.exc_info = record.exc_text = None
        return True
