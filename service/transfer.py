"""Moving the whole state between databases as JSON Lines (``inventory export|import``).

The first line is a header; then one API key per line, then one item per line, and last
a trailer that counts the records of each kind, so that a cut-off export is refused:

    {"type": "inventory-export", "version": 1}
    {"type": "key", "id": ..., "tenant": ..., "role": ..., "key_hash": "<hex>", ...}
    {"type": "item", "tenant": ..., "id": ..., "name": ..., "qty": ..., "version": ..., ...}
    {"type": "end", "keys": 1, "items": 1}

Keys travel as their hashes, so no secret is ever written out. ``parse_export`` checks
every record against the invariants (and uniqueness across records) before the database
is even opened; ``Store.import_state`` then writes all of it in one transaction, into an
empty database only.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, TextIO

from model.invariants import (
    ROLES,
    name_key,
    normalize_text,
    qty_problem,
    tenant_problem,
    text_problem,
)
from service.store import ApiKey, Item, Store

HEADER = {"type": "inventory-export", "version": 1}
_PAGE = 1000
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


class ImportRefused(ValueError):
    """The export is invalid (every problem is listed) or the target is not empty."""


def trailer(keys: int, items: int) -> dict[str, Any]:
    """The last record of an export: how many records of each kind come before it."""
    return {"type": "end", "keys": keys, "items": items}


async def export_jsonl(store: Store, out: TextIO) -> int:
    """Write the whole state to ``out``; the number of keys and items written."""
    keys = await store.list_keys(None)
    for line in [HEADER, *(_key_record(k) for k in keys)]:
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
    items = 0
    after: tuple[str, str] | None = None
    while page := await store.export_items(after, _PAGE):
        for tenant, item in page:
            out.write(json.dumps({"type": "item", "tenant": tenant, **item.as_json()}) + "\n")
        items += len(page)
        after = (page[-1][0], page[-1][1].id)
    out.write(json.dumps(trailer(len(keys), items)) + "\n")
    return len(keys) + items


def parse_export(lines: Iterable[str]) -> tuple[list[ApiKey], list[tuple[str, Item]]]:
    """The records of an export, or ImportRefused listing every problem found, by line."""
    keys: list[ApiKey] = []
    items: list[tuple[str, Item]] = []
    problems: list[str] = []
    seen: dict[object, int] = {}  # ids and (tenant, name key) -> the line that had them first
    records = list(_json_lines(lines, problems))
    first = records[0] if records else None
    if first is None or first[1] != HEADER:
        problems.append(
            f"line {first[0] if first else 1}: expected the header {json.dumps(HEADER)}"
        )
    body, end = _split_end(records[1:], problems)
    for number, record in body:
        try:
            claims = _add(record, keys, items)
        except (KeyError, TypeError, ValueError) as error:
            problems.append(f"line {number}: {error}")
            continue
        for claim, what in claims.items():
            if claim in seen:
                problems.append(f"line {number}: this {what} is already on line {seen[claim]}")
            seen.setdefault(claim, number)
    problems += _trailer_problems(end, keys, items)
    if problems:
        raise ImportRefused("the export is invalid:\n" + "\n".join(problems[:100]))
    return keys, items


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
    end: tuple[int, Any] | None, keys: list[ApiKey], items: list[tuple[str, Item]]
) -> list[str]:
    """What is wrong with the end record ``end`` (line, record), if anything."""
    expected = trailer(len(keys), len(items))
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


def _add(record: Any, keys: list[ApiKey], items: list[tuple[str, Item]]) -> dict[object, str]:
    """Append the record to ``keys`` or ``items``; what it claims must be unique."""
    kind = record["type"] if isinstance(record, dict) else None
    if kind == "key":
        keys.append(_key(record))
        return {("key", keys[-1].id): "key id"}
    if kind == "item":
        tenant, item = _tenant(record["tenant"]), _item(record)
        items.append((tenant, item))
        return {("item", item.id): "item id", ("name", tenant, name_key(item.name)): "name"}
    raise ValueError("a record must be an object of type 'key' or 'item'")


def _key(record: dict[str, Any]) -> ApiKey:
    _exact_fields(record, {"type", "id", "tenant", "role", "key_hash", "created_at", "revoked_at"})
    if not re.fullmatch(r"[0-9a-f]{16}", str(record["id"])):
        raise ValueError("key id must be 16 hex digits")
    if record["role"] not in ROLES or not re.fullmatch(r"[0-9a-f]{64}", str(record["key_hash"])):
        raise ValueError("key role or key_hash is malformed")
    revoked = record["revoked_at"]
    return ApiKey(
        record["id"],
        _tenant(record["tenant"]),
        record["role"],
        bytes.fromhex(record["key_hash"]),
        _timestamp(record["created_at"]),
        None if revoked is None else _timestamp(revoked),
    )


def _item(record: dict[str, Any]) -> Item:
    _exact_fields(
        record, {"type", "tenant", "id", "name", "qty", "version", "created_at", "updated_at"}
    )
    name, qty, version = record["name"], record["qty"], record["version"]
    if not isinstance(name, str) or normalize_text(name) != name or text_problem(name):
        raise ValueError(f"name {name!r} breaks the name invariant")
    if problem := qty_problem(qty):
        raise ValueError(f"qty {problem}")
    if type(version) is not int or not 1 <= version < 2**63:
        raise ValueError("version must be an integer from 1 to 2^63 - 1")
    if str(uuid.UUID(str(record["id"]))) != record["id"]:
        raise ValueError("id must be a lowercase hyphenated UUID")
    return Item(
        record["id"],
        name,
        qty,
        version,
        _timestamp(record["created_at"]),
        _timestamp(record["updated_at"]),
    )


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
