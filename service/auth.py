"""API keys: how they are made, stored and checked, and what each role may do.

A key reads ``inv_<id>_<secret>``: 16 hex digits of public id (for lookup and for
revocation), then 256 random bits. Only SHA-256 of the whole key is stored; with that
much entropy a fast hash is enough, and it keeps authentication cheap. SQLite reads the
key on every request (no cache: ``inventory keys revoke`` writes the file from another
process, and its next request must see that; the read is a few percent of a request).
PostgreSQL keeps each process's keys only while it hears every revocation
(``service.store.key_cache``): another process refuses a revoked key once the notification
arrives, within 100 ms (tests/system/test_workers.py), the revoking one at once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from model.invariants import ROLES, FieldError, InvariantViolation, role_includes, tenant_problem
from service.problems import Forbidden, Unauthorized
from service.store import ApiKey, Store, utc_now

_KEY_FORMAT = re.compile(r"inv_([0-9a-f]{16})_[A-Za-z0-9_-]{43}")
_BEARER = re.compile(r"bearer +(\S+) *", re.IGNORECASE)
_HOW_TO_GET_ONE = (
    "to get a key, run 'inventory keys create --tenant TENANT --role reader|writer|admin'"
    " where the service runs, or ask an admin of your tenant (POST /keys)"
)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: the tenant and role of a valid key."""

    tenant: str
    role: str
    key_id: str

    def may(self, role: str) -> bool:
        """Whether this caller's role includes ``role`` (reader < writer < admin)."""
        return role_includes(self.role, role)


def hash_key(key: str) -> bytes:
    """What the database keeps of a key."""
    return hashlib.sha256(key.encode()).digest()


def new_key(tenant: str, role: str) -> tuple[ApiKey, str]:
    """A fresh key record and its secret (to be shown once); InvariantViolation for a bad
    tenant or role."""
    errors = [FieldError("tenant", problem)] if (problem := tenant_problem(tenant)) else []
    if role not in ROLES:
        errors.append(FieldError("role", f"must be one of {', '.join(ROLES)}"))
    if errors:
        raise InvariantViolation(errors)
    key_id = secrets.token_hex(8)
    key = f"inv_{key_id}_{secrets.token_urlsafe(32)}"
    return ApiKey(key_id, tenant, role, hash_key(key), utc_now(), None), key


async def authenticate(store: Store, authorization: list[str]) -> Caller:
    """The caller that the ``Authorization`` header lines prove, or Unauthorized."""
    if not authorization or not authorization[0]:
        raise Unauthorized(f"send an API key as 'Authorization: Bearer <key>'; {_HOW_TO_GET_ONE}")
    if len(authorization) > 1:
        raise Unauthorized("send exactly one Authorization header")
    bearer = _BEARER.fullmatch(authorization[0])
    if bearer is None:
        raise Unauthorized("the Authorization header must read 'Bearer <key>'")
    match = _KEY_FORMAT.fullmatch(key := bearer.group(1))
    if match is None:
        raise Unauthorized(
            "the API key is malformed: a key reads inv_<16 hex digits>_<43 characters>, as"
            f" 'inventory keys create' prints it; {_HOW_TO_GET_ONE}"
        )
    record = await store.find_key(match.group(1))
    if record is None or not hmac.compare_digest(record.key_hash, hash_key(key)):
        raise Unauthorized(f"unknown API key; {_HOW_TO_GET_ONE}")
    if record.revoked_at is not None:
        raise Unauthorized(f"this API key has been revoked; {_HOW_TO_GET_ONE}")
    return Caller(record.tenant, record.role, record.id)


def authorize(caller: Caller, role: str) -> None:
    """Raise Forbidden unless ``caller`` has at least ``role``."""
    if not caller.may(role):
        raise Forbidden(f"a {caller.role} key may not do this; it needs a key of role {role}")
