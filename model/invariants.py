"""The item invariants: the single home of input normalization and validation.

Every transition that takes user input passes it through one of the ``check_*``
functions here before anything is written. Each takes the decoded JSON body (a dict)
and returns the normalized fields, or raises one ``InvariantViolation`` naming every
offending field. The functions are pure and deterministic, and the service and the
reference model both rely on them, so a name means exactly one thing everywhere.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, NotRequired, TypedDict, cast

QTY_MAX = 2**53 - 1
"""The largest quantity: 2^53 - 1, exact in every JSON client."""

NAME_MAX = 200
"""The longest name (and adjustment reason) in code points, both as sent and normalized."""

TENANT_MAX = 100
"""The longest tenant name, in code points."""

Role = Literal["reader", "writer", "admin"]
ROLES: tuple[Role, ...] = ("reader", "writer", "admin")
"""Every role, each including the ones before it: reader < writer < admin."""

_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs"})


class NewItem(TypedDict):
    """A create body, normalized."""

    name: str
    qty: int
    reason: NotRequired[str]


class ItemChanges(TypedDict, total=False):
    """An update body, normalized: the fields to change (at least one of name, qty)."""

    name: str
    qty: int
    reason: str


class Adjustment(TypedDict):
    """An adjustment body, normalized."""

    delta: int
    reason: NotRequired[str]


class Operation(TypedDict, total=False):
    """One operation of a batch, normalized: ``op`` and the fields its kind takes."""

    op: Literal["create", "update", "adjust", "delete"]
    item_id: str
    name: str
    qty: int
    delta: int
    if_match: int


class Batch(TypedDict):
    """A batch body, normalized: 1 to BATCH_MAX operations, and a reason for all."""

    operations: list[Operation]
    reason: NotRequired[str]


BATCH_MAX = 100
"""Operations in one batch, at most."""
_OPERATIONS: dict[str, tuple[tuple[str, ...], set[str]]] = {
    "create": (("name", "qty"), set()),
    "update": (("item_id",), {"name", "qty", "if_match"}),
    "adjust": (("item_id", "delta"), {"if_match"}),
    "delete": (("item_id",), set()),
}
"""Each kind of operation: its required fields, and the optional ones (besides ``op``)."""


@dataclass(frozen=True)
class FieldError:
    """One violated rule: the field (a JSON pointer like ``/qty``) and why."""

    field: str
    message: str


class InvariantViolation(ValueError):
    """The input breaks one or more invariants; ``errors`` lists every one."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


def normalize_text(text: str) -> str:
    """Unicode NFC, then ``str.strip()``: the stored form of a name or reason."""
    return unicodedata.normalize("NFC", text).strip()


def name_key(name: str) -> str:
    """The uniqueness and ordering key of a name: Unicode canonical caseless matching.

    Two names are the same name iff ``NFD(casefold(NFD(x)))`` agree (Unicode D145); the key
    is the NFC of that form. NFC is one-to-one on NFD strings (``NFD(NFC(s)) == s``), so two
    keys are equal exactly when the D145 forms are: ``ΐ`` (U+0390) and ``Ϊ́`` (U+0399 U+0308
    U+0301) share one key, ``café`` and ``cafe`` do not.
    """
    return unicodedata.normalize("NFC", _canonical_caseless(name))


def _canonical_caseless(text: str) -> str:
    nfd = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFD", nfd.casefold())


def prefix_key(prefix: str) -> str:
    """The key a ``name_prefix`` filter is matched against: the prefix's own name key.

    A name matches when its key starts with this one. Every prefix of a stored name that
    ends before a new base character matches it (see ``is_key_boundary``); a prefix that
    ends inside a combining sequence may not, because the name's key can compose across the
    cut: ``W`` + U+030A keys to ``ẘ`` (U+1E98), which does not start with ``w``.
    """
    return name_key(prefix)


def is_key_boundary(name: str, cut: int) -> bool:
    """Whether ``name[:cut]`` ends where keys split: ``name_key(name)`` starts with its key.

    True at either end and before a new base character: one that, like the first character
    of its canonical caseless form, never combines with what precedes it (canonical
    combining class 0, not a mark, not a Hangul vowel or trailing consonant).
    """
    if cut <= 0 or cut >= len(name):
        return True
    return all(_is_fresh_base(c) for c in (name[cut], _canonical_caseless(name[cut])[0]))


def _is_fresh_base(char: str) -> bool:
    return unicodedata.combining(char) == 0 and not _combines_backward(char)


def _combines_backward(char: str) -> bool:
    if "\u1161" <= char <= "\u1175" or "\u11a8" <= char <= "\u11c2":  # Hangul V and T jamo
        return True
    return unicodedata.category(char).startswith("M")


def is_json_integer(value: object) -> bool:
    """True for a JSON integer literal; ``True``, ``5.0`` and ``"5"`` are not."""
    return type(value) is int


def check_create(body: Mapping[str, Any]) -> NewItem:
    """Validate a create body; returns ``{"name", "qty"}`` normalized."""
    errors: list[FieldError] = []
    out: dict[str, Any] = {}
    _require(body, ("name", "qty"), errors)
    _collect(body, out, errors)
    _reject_unknown(body, {"name", "qty", "reason"}, errors)
    return cast(NewItem, _finish(out, errors))


def check_update(body: Mapping[str, Any]) -> ItemChanges:
    """Validate a partial update; returns the present fields normalized."""
    errors: list[FieldError] = []
    out: dict[str, Any] = {}
    if not any(field in body for field in ("name", "qty")):
        errors.append(FieldError("", "at least one of name, qty is required"))
    _collect(body, out, errors)
    _reject_unknown(body, {"name", "qty", "reason"}, errors)
    return cast(ItemChanges, _finish(out, errors))


def check_adjustment(body: Mapping[str, Any]) -> Adjustment:
    """Validate an adjustment; returns ``{"delta"}`` and ``"reason"`` if given."""
    errors: list[FieldError] = []
    out: dict[str, Any] = {}
    _require(body, ("delta",), errors)
    if "delta" in body:
        _check_delta(body["delta"], out, errors)
    if "reason" in body:
        _check_text("reason", body["reason"], out, errors)
    _reject_unknown(body, {"delta", "reason"}, errors)
    return cast(Adjustment, _finish(out, errors))


def check_batch(body: Mapping[str, Any]) -> Batch:
    """Validate a batch: every error of every operation, as ``/operations/<i>/<field>``."""
    errors: list[FieldError] = []
    out: dict[str, Any] = {}
    _require(body, ("operations",), errors)
    if "reason" in body:
        _check_text("reason", body["reason"], out, errors)
    _reject_unknown(body, {"operations", "reason"}, errors)
    operations = body.get("operations")
    if "operations" in body:
        if isinstance(operations, list) and 1 <= len(operations) <= BATCH_MAX:
            out["operations"] = [_check_operation(i, op, errors) for i, op in enumerate(operations)]
        else:
            errors.append(FieldError("/operations", f"must hold 1 to {BATCH_MAX} operations"))
    return cast(Batch, _finish(out, errors))


def _check_operation(index: int, operation: object, errors: list[FieldError]) -> Operation:
    at, found, out = f"/operations/{index}", list[FieldError](), dict[str, Any]()
    kind = operation.get("op") if isinstance(operation, dict) else None
    if not isinstance(operation, dict):
        errors.append(FieldError(at, "must be an object"))
        return cast(Operation, out)
    if not isinstance(kind, str) or kind not in _OPERATIONS:
        errors.append(FieldError(f"{at}/op", "must be one of create, update, adjust, delete"))
        return cast(Operation, out)
    required, optional = _OPERATIONS[str(kind)]
    out["op"] = kind
    _require(operation, required, found)
    _reject_unknown(operation, {"op", *required, *optional}, found)
    if kind == "update" and not {"name", "qty"} & operation.keys():
        found.append(FieldError("", "at least one of name, qty is required"))
    _collect({k: v for k, v in operation.items() if k in ("name", "qty")}, out, found)
    if "delta" in operation:
        _check_delta(operation["delta"], out, found)
    for field, problem_of in (("item_id", id_problem), ("if_match", version_problem)):
        if field in operation and (why := problem_of(operation[field])):
            found.append(FieldError(f"/{field}", why))
        elif field in operation:
            out[field] = operation[field]
    errors.extend(FieldError(at + e.field, e.message) for e in found)
    return cast(Operation, out)


def id_problem(value: object) -> str | None:
    """Why a value is not an item id (a lowercase hyphenated UUID), or None."""
    if isinstance(value, str) and len(value) == 36 and value.count("-") == 4:
        groups = value.split("-")
        if [len(g) for g in groups] == [8, 4, 4, 4, 12] and all(
            c in "0123456789abcdef" for g in groups for c in g
        ):
            return None
    return "must be a lowercase hyphenated UUID"


def tenant_problem(tenant: object) -> str | None:
    """Why a value is not a valid tenant, or None when it is one.

    A tenant is an identifier chosen by an operator: 1 to 100 code points, no control
    character or lone surrogate, and no white space at either end (so that ``acme`` and
    ``acme `` cannot be two tenants that look alike).
    """
    if not isinstance(tenant, str) or not 1 <= len(tenant) <= TENANT_MAX:
        return f"must be a string of 1 to {TENANT_MAX} characters"
    if has_forbidden_character(tenant):
        return "must not contain control characters or lone surrogates"
    if tenant != tenant.strip():
        return "must not start or end with white space"
    return None


def role_includes(role: str, needed: str) -> bool:
    """Whether ``role`` may do what ``needed`` may (reader < writer < admin).

    Both must be roles (ValueError otherwise).
    """
    return ROLES.index(cast(Role, role)) >= ROLES.index(cast(Role, needed))


def text_problem(text: str) -> str | None:
    """Why a normalized name or reason is invalid, or None when it is valid."""
    if not text:
        return "must not be empty or only whitespace"
    if len(text) > NAME_MAX:
        return f"must be at most {NAME_MAX} characters after normalization"
    if has_forbidden_character(text):
        return "must not contain control characters or lone surrogates"
    return None


def has_forbidden_character(text: str) -> bool:
    """Whether ``text`` holds a character no name may hold (category Cc or Cs)."""
    return any(unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in text)


def qty_problem(qty: object) -> str | None:
    """Why a value is not a valid quantity, or None when it is one."""
    if not is_json_integer(qty):
        return "must be an integer"
    assert isinstance(qty, int)
    if not 0 <= qty <= QTY_MAX:
        return f"must be between 0 and {QTY_MAX}"
    return None


def version_problem(version: object) -> str | None:
    """Why a value is not a valid item version, or None when it is one: an integer from 1
    to QTY_MAX, so that every version (and the next one) is exact in any JSON reader."""
    if not is_json_integer(version):
        return "must be an integer"
    assert isinstance(version, int)
    if not 1 <= version <= QTY_MAX:
        return f"must be between 1 and {QTY_MAX}"
    return None


def check_reason(reason: object) -> str:
    """A reason (for a delete, sent apart from any body), normalized; ValueError(why) if bad."""
    errors: list[FieldError] = []
    out: dict[str, Any] = {}
    _check_text("reason", reason, out, errors)
    if errors:
        raise ValueError(errors[0].message)
    return str(out["reason"])


def _collect(body: Mapping[str, Any], out: dict[str, Any], errors: list[FieldError]) -> None:
    if "reason" in body:
        _check_text("reason", body["reason"], out, errors)
    if "name" in body:
        _check_text("name", body["name"], out, errors)
    if "qty" in body:
        problem = qty_problem(body["qty"])
        if problem:
            errors.append(FieldError("/qty", problem))
        else:
            out["qty"] = body["qty"]


def _check_text(field: str, value: object, out: dict[str, Any], errors: list[FieldError]) -> None:
    if not isinstance(value, str):
        errors.append(FieldError(f"/{field}", "must be a string"))
        return
    if len(value) > NAME_MAX:  # as sent; the contract's maxLength says the same
        errors.append(FieldError(f"/{field}", f"must be at most {NAME_MAX} characters"))
        return
    text = normalize_text(value)
    problem = text_problem(text)
    if problem:
        errors.append(FieldError(f"/{field}", problem))
    else:
        out[field] = text


def _check_delta(delta: object, out: dict[str, Any], errors: list[FieldError]) -> None:
    if not is_json_integer(delta):
        errors.append(FieldError("/delta", "must be an integer"))
    elif delta == 0:
        errors.append(FieldError("/delta", "must not be zero"))
    elif abs(delta) > QTY_MAX:  # type: ignore[arg-type]
        errors.append(FieldError("/delta", f"must be between -{QTY_MAX} and {QTY_MAX}"))
    else:
        out["delta"] = delta


def _require(body: Mapping[str, Any], fields: tuple[str, ...], errors: list[FieldError]) -> None:
    errors.extend(FieldError(f"/{f}", "is required") for f in fields if f not in body)


def _reject_unknown(body: Mapping[str, Any], known: set[str], errors: list[FieldError]) -> None:
    errors.extend(FieldError(pointer(f), "is not a known field") for f in body if f not in known)


def pointer(field: str) -> str:
    """The JSON pointer (RFC 6901) to a top-level field."""
    return "/" + field.replace("~", "~0").replace("/", "~1")


def _finish(out: dict[str, Any], errors: list[FieldError]) -> dict[str, Any]:
    if errors:
        raise InvariantViolation(errors)
    return out


class LedgerEntry(NamedTuple):
    """What the ledger rules look at in one event: which item, what kind, where it left it.
    (A tuple: ``inventory check`` holds one per event, a million of them and more.)"""

    item_id: str
    kind: str
    version: int
    qty: int
    delta: int


def ledger_problems(
    current: Mapping[str, tuple[int, int]], entries: list[LedgerEntry]
) -> list[tuple[str, str]]:
    """(item id, what is wrong) for each item of one tenant whose ledger does not add up.

    ``current`` maps each existing item to its (qty, version). For every item ever created:
    its events have consecutive versions, from 1 (or from where the ledger began, for an
    item older than the ledger: its opening ``created`` event), the first ``created`` and
    only the last ``deleted``;
    each event's qty is the previous qty plus its delta (the first: its delta); an existing
    item stands where its last event left it; a deleted item's events sum to 0.
    """
    history: dict[str, list[LedgerEntry]] = {}
    for entry in entries:
        history.setdefault(entry.item_id, []).append(entry)
    problems = [(item_id, "has no events") for item_id in current if item_id not in history]
    for item_id, item_entries in sorted(history.items()):
        item_entries.sort(key=lambda e: e.version)
        why = _history_problem(item_entries) or _ending_problem(item_entries, current.get(item_id))
        if why:
            problems.append((item_id, why))
    return problems


def _history_problem(entries: list[LedgerEntry]) -> str | None:
    qty, first = 0, entries[0].version
    for number, entry in enumerate(entries, start=1):
        if entry.version != first + number - 1:
            return f"event versions are not consecutive: {entry.version} at place {number}"
        if (entry.kind == "created") != (number == 1):
            return f"version {entry.version} is a {entry.kind!r} event"
        if entry.kind == "deleted" and number != len(entries):
            return f"version {entry.version} deletes the item, yet events follow"
        qty += entry.delta
        if entry.qty != qty:
            return f"version {entry.version} says qty {entry.qty}, its deltas sum to {qty}"
    return None


def _ending_problem(entries: list[LedgerEntry], current: tuple[int, int] | None) -> str | None:
    last = entries[-1]
    if current is None:
        return None if last.kind == "deleted" else f"is gone, but its last event is {last.kind!r}"
    if last.kind == "deleted":
        return "exists, but its last event deletes it"
    if (last.qty, last.version) != current:
        return (
            f"stands at qty {current[0]}, version {current[1]}, but its events end at"
            f" qty {last.qty}, version {last.version}"
        )
    return None


def feed_problem(seqs: list[int]) -> str | None:
    """Why one tenant's feed numbers are not exactly 1..n, or None."""
    if sorted(seqs) != list(range(1, len(seqs) + 1)):
        return f"feed numbers are not 1..{len(seqs)}"
    return None
