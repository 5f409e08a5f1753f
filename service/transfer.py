"""Moving the whole state between databases as JSON Lines (``inventory export|import``).

The first line is a header; then one API key per line, one item per line, one event per
line, one kept Idempotency-Key answer per line, and last a trailer that counts the records
of each kind, so that a cut-off export is refused:

    {"type": "inventory-export", "version": 3}
    {"type": "key", "id": ..., "tenant": ..., "role": ..., "key_hash": "<hex>", ...}
    {"type": "item", "tenant": ..., "id": ..., "name": ..., "qty": ..., "version": ..., ...}
    {"type": "event", "tenant": ..., "event": {"seq": ..., ...}}
    {"type": "answer", "tenant": ..., "key": ..., "fingerprint": ..., "status": 201, ...}
    {"type": "end", "keys": 1, "items": 1, "events": 1, "answers": 1}

Version 2 exports (before idempotent retries) have no answers and no answers count;
version 1 exports (before the ledger) no events either. Keys travel as their hashes, but
an answer is the response a retry would get: the answer to a ``POST /keys`` sent with an
Idempotency-Key holds that new key's secret until it expires (``--help`` says so).
``parse_export`` checks every record against the invariants (and uniqueness across
records) before the database is even opened; ``Store.import_state`` then writes all of it
in one transaction, into an empty database only.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, TextIO

from model.invariants import (
    QTY_MAX,
    ROLES,
    name_key,
    normalize_text,
    qty_problem,
    tenant_problem,
    text_problem,
    version_problem,
)
from service.audit import audit, every_record
from service.store import ApiKey, Event, Item, State, StateReader, Store
from service.store.idempotency import Answer, Record

HEADER = {"type": "inventory-export", "version": 3}
ANSWERLESS_HEADER = {"type": "inventory-export", "version": 2}
"""An export made before idempotent retries: no kept answers."""
LEDGERLESS_HEADER = {"type": "inventory-export", "version": 1}
"""An export made before the ledger: no events; each item gets an opening event on import."""
OPENING_REASON = "ledger opened"
_PAGE = 1000
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


class ImportRefused(ValueError):
    """The export is invalid (every problem is listed) or the target is not empty."""


def trailer(keys: int, items: int, events: int, answers: int | None = None) -> dict[str, Any]:
    """The last record of an export: how many records of each kind come before it (no
    ``answers`` before version 3)."""
    counts = {"keys": keys, "items": items, "events": events}
    return {"type": "end", **counts, **({} if answers is None else {"answers": answers})}


async def export_jsonl(store: Store, out: TextIO) -> int:
    """Write the whole state to ``out``, as of one moment; the number of records written."""
    async with store.snapshot() as state:
        return await _export(state, out)


async def _export(state: StateReader, out: TextIO) -> int:
    keys = await state.list_keys(None)
    for line in [HEADER, *(_key_record(k) for k in keys)]:
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
    items = events = 0
    async for tenant, item in every_record(state.export_items, lambda p: p[1].id):
        out.write(json.dumps({"type": "item", "tenant": tenant, **item.as_json()}) + "\n")
        items += 1
    async for tenant, event in every_record(state.export_events, lambda p: (p[0], p[1].seq)):
        out.write(json.dumps(_event_record(tenant, event), ensure_ascii=False) + "\n")
        events += 1
    answers = 0
    async for record in every_record(state.export_answers, lambda r: (r.tenant, r.key)):
        out.write(json.dumps(_answer_record(record), ensure_ascii=False) + "\n")
        answers += 1
    out.write(json.dumps(trailer(len(keys), items, events, answers)) + "\n")
    return len(keys) + items + events + answers


def parse_export(lines: Iterable[str]) -> State:
    """The records of an export, or ImportRefused listing every problem found, by line.

    Beyond each record, the whole is audited as ``inventory check`` would (names unique per
    tenant, every item's ledger adding up, feeds numbered 1..n).
    """
    export, problems = State(), list[str]()
    records = list(_json_lines(lines, problems))
    first = records[0] if records else None
    if first is None or first[1] not in (HEADER, ANSWERLESS_HEADER, LEDGERLESS_HEADER):
        problems.append(
            f"line {first[0] if first else 1}: expected the header {json.dumps(HEADER)}"
        )
    body, end = _split_end(records[1:], problems)
    _read_records(body, export, problems)
    version = first[1].get("version") if first is not None and isinstance(first[1], dict) else 3
    problems += _trailer_problems(end, body, with_answers=version == 3)
    if version != 3 and export.answers:
        problems.append(f"a version {version} export holds no answers; this one does")
    if first is not None and first[1] == LEDGERLESS_HEADER:
        _open_ledgers(export, problems)
    if not problems:
        problems = audit(export.items, export.events)
    if problems:
        raise ImportRefused("the export is invalid:\n" + "\n".join(problems[:100]))
    return export


def _open_ledgers(export: State, problems: list[str]) -> None:
    """Give each item of a version 1 export (made before the ledger) its opening event."""
    if export.events:
        problems.append("a version 1 export holds no events; this one does")
    seqs: dict[str, int] = {}
    for tenant, item in sorted(export.items, key=lambda p: (p[0], p[1].created_at, p[1].id)):
        seqs[tenant] = seqs.get(tenant, 0) + 1
        export.events.append((tenant, opening_event(seqs[tenant], item)))


def opening_event(seq: int, item: Item) -> Event:
    """The event a ledger opens with for an item older than it: created where it stands."""
    return Event(
        seq, item.id, "created", item.version, item.qty, item.qty, item.name, OPENING_REASON,
        None, None, None, item.updated_at,
    )  # fmt: skip


def _read_records(records: Iterable[tuple[int, Any]], export: State, problems: list[str]) -> None:
    """Add each record to ``export``; a problem for each bad record and each repeated claim."""
    seen: dict[object, int] = {}  # ids, (tenant, name key), ... -> the line that had them first
    for number, record in records:
        try:
            claims = _add(record, export)
        except (KeyError, TypeError, ValueError, binascii.Error) as error:
            problems.append(f"line {number}: {error}")
            continue
        for claim, what in claims.items():
            if claim in seen:
                problems.append(f"line {number}: this {what} is already on line {seen[claim]}")
            seen.setdefault(claim, number)


def _split_end(
    records: list[tuple[int, Any]], problems: list[str]
) -> tuple[list[tuple[int, Any]], tuple[int, Any] | None]:
    """The records before the end record, and the end record (None if there is none)."""
    ends = [i for i, (_, record) in enumerate(records) if _is_end(record)]
    if not ends:
        return records, None
    end = ends[0]
    problems.extend(
        f"line {number}: nothing may follow the end record (line {records[end][0]})"
        for number, _ in records[end + 1 :]
    )
    return records[:end], records[end]


def _is_end(record: Any) -> bool:
    return isinstance(record, dict) and record.get("type") == "end"


def _trailer_problems(
    end: tuple[int, Any] | None, body: list[tuple[int, Any]], with_answers: bool
) -> list[str]:
    """What is wrong with the end record ``end`` (line, record), if anything.

    It counts the records of ``body`` by their type, valid or not: a bad record is reported
    on its own line, not once more as a miscount."""
    kinds = Counter(r.get("type") for _, r in body if isinstance(r, dict))
    answers = kinds["answer"] if with_answers else None
    expected = trailer(kinds["key"], kinds["item"], kinds["event"], answers)
    if end is None:
        return [
            f"the end record {json.dumps(expected)} is missing: the export is cut off (or was"
            " not written by inventory export); export it again"
        ]
    if end[1] != expected:
        return [
            f"line {end[0]}: the end record {json.dumps(end[1])} does not match the records"
            f" before it ({json.dumps(expected)}): the export is cut off or was edited"
        ]
    return []


def _json_lines(lines: Iterable[str], problems: list[str]) -> Iterator[tuple[int, Any]]:
    """(physical line number, decoded record) for each non-blank line."""
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                yield number, json.loads(line)
            except ValueError as error:
                problems.append(f"line {number}: not JSON: {error}")
                yield number, None


def _add(record: Any, export: State) -> dict[object, str]:
    """Add the record to ``export``; what it claims must be unique."""
    kind = record["type"] if isinstance(record, dict) else None
    if kind == "event":
        tenant, event = _event(record)
        export.events.append((tenant, event))
        return {
            ("seq", tenant, event.seq): "feed number",
            ("version", tenant, event.item_id, event.version): "item version",
        }
    if kind == "answer":
        export.answers.append(_answer(record))
        return {("answer", export.answers[-1].tenant, export.answers[-1].key): "idempotency key"}
    if kind == "key":
        export.keys.append(_key(record))
        return {("key", export.keys[-1].id): "key id"}
    if kind == "item":
        tenant, item = _tenant(record["tenant"]), _item(record)
        export.items.append((tenant, item))
        return {("item", item.id): "item id", ("name", tenant, name_key(item.name)): "name"}
    raise ValueError("a record must be an object of type 'key', 'item', 'event' or 'answer'")


def _key(record: dict[str, Any]) -> ApiKey:
    _exact_fields(record, {"type", "id", "tenant", "role", "key_hash", "created_at", "revoked_at"})
    if not isinstance(record["id"], str) or not re.fullmatch(r"[0-9a-f]{16}", record["id"]):
        raise ValueError("key id must be 16 hex digits")
    if record["role"] not in ROLES or not isinstance(record["key_hash"], str):
        raise ValueError("key role or key_hash is malformed")
    if not re.fullmatch(r"[0-9a-f]{64}", record["key_hash"]):
        raise ValueError("key role or key_hash is malformed")
    created, revoked = _timestamp(record["created_at"]), record["revoked_at"]
    if revoked is not None and _timestamp(revoked) < created:
        raise ValueError(f"revoked_at {revoked} is before created_at {created}")
    return ApiKey(
        record["id"], _tenant(record["tenant"]), record["role"],
        bytes.fromhex(record["key_hash"]), created, revoked,
    )  # fmt: skip


def _item(record: dict[str, Any]) -> Item:
    _exact_fields(
        record, {"type", "tenant", "id", "name", "qty", "version", "created_at", "updated_at"}
    )
    name, qty, version = record["name"], record["qty"], record["version"]
    _text(name, "name")
    if problem := qty_problem(qty):
        raise ValueError(f"qty {problem}")
    if problem := version_problem(version):
        raise ValueError(f"version {problem}")
    _uuid(record["id"])
    created, updated = _timestamp(record["created_at"]), _timestamp(record["updated_at"])
    if updated < created:  # one fixed format: text order is time order
        raise ValueError(f"updated_at {updated} is before created_at {created}")
    return Item(record["id"], name, qty, version, created, updated)


_EVENT_FIELDS = set(Event._fields)


def _event(record: dict[str, Any]) -> tuple[str, Event]:
    _exact_fields(record, {"type", "tenant", "event"})
    fields = record["event"]
    if not isinstance(fields, dict):
        raise ValueError("event must be an object")
    _exact_fields(fields, _EVENT_FIELDS)
    for name, least in (("seq", 1), ("version", 1), ("qty", 0), ("delta", -QTY_MAX)):
        if type(fields[name]) is not int or not least <= fields[name] <= QTY_MAX:
            raise ValueError(f"event {name} must be an integer from {least} to {QTY_MAX}")
    if fields["type"] not in ("created", "updated", "adjusted", "deleted"):
        raise ValueError("event type must be created, updated, adjusted or deleted")
    _text(fields["name"], "event name")
    if fields["reason"] is not None:
        _text(fields["reason"], "event reason")
    for name, form in (
        ("key_id", r"[0-9a-f]{16}"),
        ("request_id", r"[A-Za-z0-9._-]{1,128}"),
        ("batch_id", r"[A-Za-z0-9._-]{1,128}"),
    ):
        value = fields[name]
        if value is not None and not (isinstance(value, str) and re.fullmatch(form, value)):
            raise ValueError(f"event {name} must be null or match {form}")
    _uuid(fields["item_id"])
    return _tenant(record["tenant"]), Event(**{**fields, "at": _timestamp(fields["at"])})


_ANSWER_FIELDS = {"type", "tenant", "key", "fingerprint", "status", "headers", "body", "created_at"}


def _answer(record: dict[str, Any]) -> Record:
    """A kept answer: the key as the service keeps it (1 to 255 characters, space to ~)."""
    _exact_fields(record, _ANSWER_FIELDS)
    key, fingerprint, status = record["key"], record["fingerprint"], record["status"]
    if not isinstance(key, str) or not re.fullmatch(r"[ -~]{1,255}", key):
        raise ValueError("answer key must be 1 to 255 characters from space to ~")
    if not isinstance(fingerprint, str) or not re.fullmatch(r"[0-9a-f]{64}", fingerprint):
        raise ValueError("answer fingerprint must be 64 hex digits")
    if type(status) is not int or not 200 <= status <= 599:
        raise ValueError("answer status must be an integer from 200 to 599")
    headers = record["headers"]
    if not isinstance(headers, list) or not all(
        isinstance(h, list) and len(h) == 2 and all(isinstance(p, str) for p in h) for h in headers
    ):
        raise ValueError("answer headers must be a list of [name, value] strings")
    body = base64.b64decode(record["body"], validate=True)
    answer = Answer(status, tuple((name, value) for name, value in headers), body)
    tenant = _tenant(record["tenant"])
    return Record(tenant, key, fingerprint, answer, _timestamp(record["created_at"]))


def _answer_record(record: Record) -> dict[str, Any]:
    return {
        "type": "answer", "tenant": record.tenant, "key": record.key,
        "fingerprint": record.fingerprint, "status": record.answer.status,
        "headers": [list(pair) for pair in record.answer.headers],
        "body": base64.b64encode(record.answer.body).decode(), "created_at": record.created_at,
    }  # fmt: skip


def _text(value: Any, what: str) -> None:
    if not isinstance(value, str) or normalize_text(value) != value or text_problem(value):
        raise ValueError(f"{what} {value!r} is not a valid normalized text")


def _uuid(value: Any) -> None:
    if not isinstance(value, str) or str(uuid.UUID(value)) != value:
        raise ValueError("id must be a lowercase hyphenated UUID")


def _event_record(tenant: str, event: Event) -> dict[str, Any]:
    return {"type": "event", "tenant": tenant, "event": event.as_json()}


def _exact_fields(record: dict[str, Any], fields: set[str]) -> None:
    if record.keys() != fields:
        raise ValueError(f"fields must be exactly {sorted(fields)}")


def _tenant(value: Any) -> str:
    if problem := tenant_problem(value):
        raise ValueError(f"tenant {problem}")
    return str(value)


def _timestamp(value: Any) -> str:
    try:
        datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")  # a real date and time
        if _TIMESTAMP.fullmatch(value):
            return str(value)
    except (TypeError, ValueError):
        pass
    raise ValueError(f"timestamp {value!r} is not RFC 3339 UTC with microseconds")


def _key_record(key: ApiKey) -> dict[str, Any]:
    return {"type": "key", **key.as_json(), "key_hash": key.key_hash.hex()}
