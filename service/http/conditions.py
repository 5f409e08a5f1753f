"""Entity tags: an item's ``ETag`` and what an ``If-Match`` header accepts (RFC 9110 §13.1.1).

An item's entity tag is its version, quoted: ``"3"``. Comparison is strong.
"""

from __future__ import annotations

import re

from service.store import Item

_ENTITY_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*')


def etag(item: Item) -> str:
    """The item's strong entity tag."""
    return f'"{item.version}"'


def parse_if_match(header: str) -> frozenset[int] | None:
    """The item versions ``If-Match`` accepts; None for no condition (``*``).

    Strong comparison: weak tags and tags that are no version of ours match nothing, so a
    well-formed but stale or foreign header is a 412, never a 400.
    """
    if header.strip() == "*":
        return None
    versions = set()
    for part in header.split(","):
        tag = _ENTITY_TAG.fullmatch(part)
        if tag and not tag.group(1) and tag.group(2).isascii() and tag.group(2).isdigit():
            versions.add(int(tag.group(2)))
    return frozenset(versions)
