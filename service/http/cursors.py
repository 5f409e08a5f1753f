"""Listing cursors: an opaque token for "after this name key", issued and read back.

A cursor is unpadded base64url of the UTF-8 of a name key. A name key holds no control
character, so a token that decodes to one (or to nothing) was not issued by us.
"""

from __future__ import annotations

import base64
import binascii

from model.invariants import has_forbidden_character


def encode_cursor(key: str) -> str:
    """The cursor that continues after name key ``key``."""
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The name key inside ``cursor``; ValueError for a cursor we did not issue."""
    try:
        key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        key = None
    if key is None or has_forbidden_character(key):
        raise ValueError("is malformed")
    return key
