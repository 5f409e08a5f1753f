"""The JSON log line format (``service.logs``): orjson's encoding, with a fallback; every
line one line of ASCII, whatever text its fields hold."""

from __future__ import annotations

import io
import json
import logging

from service import logs


def _line(**extra: object) -> dict[str, object]:
    stream = io.StringIO()
    handler = logs.handler("json", stream)
    record = logging.LogRecord(
        "inventory.access", logging.INFO, "x", 1, "GET %s", ("getItem",), None
    )
    record.__dict__.update(extra)
    handler.handle(record)
    lines = stream.getvalue().splitlines()  # as a reader splitting on U+2028 too would
    assert len(lines) == 1
    assert lines[0].isascii()
    parsed: dict[str, object] = json.loads(lines[0])
    return parsed


def test_a_json_line_holds_level_logger_message_time_and_the_extra_fields() -> None:
    line = _line(status=200, tenant="acme", duration_ms=1.5, name_seen="é")
    assert line["level"] == "INFO"
    assert line["logger"] == "inventory.access"
    assert line["message"] == "GET getItem"
    assert line["status"] == 200
    assert line["tenant"] == "acme"
    assert line["duration_ms"] == 1.5
    assert line["name_seen"] == "é"
    assert isinstance(line["time"], str)
    assert line["time"].endswith("+00:00")
    assert line["request_id"] == "-"  # logged outside any request


def test_a_field_orjson_refuses_still_makes_one_json_line() -> None:
    line = _line(detail="half a pair: \udc80", status=400)  # a lone surrogate
    assert line["detail"] == "half a pair: \udc80"
    assert line["status"] == 400
    assert line["message"] == "GET getItem"


def test_a_field_with_line_separators_stays_on_one_ascii_line() -> None:
    line = _line(path="/items/a\u2028b\u2029c\x85d\ne")
    assert line["path"] == "/items/a\u2028b\u2029c\x85d\ne"
