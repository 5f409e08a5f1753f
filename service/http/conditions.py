"""Entity tags: an item's ``ETag`` and what an ``If-Match`` header accepts (RFC 9110 §13.1.1).

An item's entity tag is its version, quoted: ``"3"``. Comparison is strong.
"""

from __future__ import annotations

import re

from service.store import Item

_ENTITY_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*')
VERSION_MAX = 2**63 - 1
"""No item gets past this version (a 64-bit integer in either database): a tag above it
names no version of ours."""


def etag(item: Item) -> str:
    """The item's strong entity tag."""
    return f'"{item.version}"'


def parse_if_match(header: str) -> frozenset[int] | None:
    """The item versions ``If-Match`` accepts; None for no condition (``*``).

    Strong comparison: weak tags and tags that are no version of ours (not digits, or past
    ``VERSION_MAX``) match nothing, so a well-formed but stale or foreign header is a 412,
    never a 400 (nor a number too large for the database to compare).
    """
    if header.strip() == "*":
        return None
    versions: set[int] = set()
    for part in header.split(","):
        tag = _ENTITY_TAG.fullmatch(part)
        digits = tag.group(2) if tag and not tag.group(1) else ""
        # Past 19 digits no tag is a version (and none is converted).
        if digits.isascii() and digits.isdigit() and len(digits) <= 19:
            version = int(digits)
            if version <= VERSION_MAX:
                versions.add(version)
    return frozenset(versions)
