"""The reference model: the inventory's semantics as pure functions over immutable state.

An independent second implementation of what the service does, written for obviousness
rather than speed: ``apply(state, command) -> (state', outcome)``, no I/O. The state
machine in tests/stateful runs it beside the live service and fails on any disagreement.
It shares only ``model.invariants`` (what a valid name or quantity is) with the service.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, TypeVar

from model.invariants import (
    QTY_MAX,
    InvariantViolation,
    Role,
    check_adjustment,
    check_create,
    check_update,
    name_key,
    prefix_key,
    role_includes,
)


@dataclass(frozen=True)
class Caller:
    """Who sends a command: a tenant and a role."""

    tenant: str
    role: Role


@dataclass(frozen=True)
class Item:
    """One item of one tenant."""

    id: str
    tenant: str
    name: str
    qty: int
    version: int

    def key(self) -> str:
        """The name's uniqueness and ordering key."""
        return name_key(self.name)

    def as_json(self) -> dict[str, Any]:
        """The item as the API shows it, less the timestamps the model cannot predict."""
        return {"id": self.id, "name": self.name, "qty": self.qty, "version": self.version}


@dataclass(frozen=True)
class Inventory:
    """Every item of every tenant, by id; never mutated."""

    items: Mapping[str, Item] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Snapshot whatever mapping was given, so no one holding it can change this state.
        object.__setattr__(self, "items", MappingProxyType(dict(self.items)))

    @classmethod
    def empty(cls) -> Inventory:
        """The inventory before the first command."""
        return cls()

    def put(self, item: Item) -> Inventory:
        """The inventory with ``item`` added or replaced."""
        return Inventory({**self.items, item.id: item})

    def remove(self, item_id: str) -> Inventory:
        """The inventory without the item ``item_id``."""
        return Inventory({k: v for k, v in self.items.items() if k != item_id})


@dataclass(frozen=True)
class CreateItem:
    """Create an item; ``new_id`` is the id the service assigned."""

    caller: Caller
    body: object
    new_id: str


@dataclass(frozen=True)
class GetItem:
    """Read one item."""

    caller: Caller
    item_id: str


@dataclass(frozen=True)
class ListItems:
    """List the caller's items, optionally those whose name starts with a prefix."""

    caller: Caller
    name_prefix: str | None = None


@dataclass(frozen=True)
class UpdateItem:
    """Change name and/or qty; ``expected_version`` is the If-Match condition, if any."""

    caller: Caller
    item_id: str
    body: object
    expected_version: int | None = None


@dataclass(frozen=True)
class DeleteItem:
    """Delete an item (idempotent)."""

    caller: Caller
    item_id: str


@dataclass(frozen=True)
class AdjustItem:
    """Add a delta to an item's quantity."""

    caller: Caller
    item_id: str
    body: object


Command = CreateItem | GetItem | ListItems | UpdateItem | DeleteItem | AdjustItem


@dataclass(frozen=True)
class Outcome:
    """What the service must answer: a status, and an item, items or a problem kind."""

    status: int
    item: Item | None = None
    items: tuple[Item, ...] | None = None
    problem: str | None = None
    fields: frozenset[str] = frozenset()


def _rejected(status: int, problem: str, fields: frozenset[str] = frozenset()) -> Outcome:
    return Outcome(status, problem=problem, fields=fields)


_FORBIDDEN = _rejected(403, "forbidden")
_NOT_FOUND = _rejected(404, "not-found")
_INVALID = _rejected(400, "validation-error")


def items_of(state: Inventory, tenant: str) -> tuple[Item, ...]:
    """The tenant's items ordered by name key (code-point order)."""
    return tuple(sorted((i for i in state.items.values() if i.tenant == tenant), key=Item.key))


def apply(state: Inventory, command: Command) -> tuple[Inventory, Outcome]:
    """The state after ``command``, and the outcome the caller sees."""
    needed = "reader" if isinstance(command, GetItem | ListItems) else "writer"
    if not role_includes(command.caller.role, needed):
        return state, _FORBIDDEN
    if not isinstance(command, CreateItem | ListItems) and not _is_canonical_id(command.item_id):
        return state, _INVALID
    match command:
        case CreateItem():
            return _validated(state, command, check_create, _create)
        case GetItem():
            item = _find(state, command.caller, command.item_id)
            return state, Outcome(200, item=item) if item else _NOT_FOUND
        case ListItems():
            return state, Outcome(200, items=_listing(state, command))
        case UpdateItem():
            return _validated(state, command, check_update, _update)
        case DeleteItem():
            found = _find(state, command.caller, command.item_id)
            return (state.remove(found.id) if found else state), Outcome(204)
        case AdjustItem():
            return _validated(state, command, check_adjustment, _adjust)


_Write = TypeVar("_Write", CreateItem, UpdateItem, AdjustItem)


def _validated(
    state: Inventory,
    command: _Write,
    check: Callable[[Mapping[str, Any]], Mapping[str, Any]],
    transition: Callable[[Inventory, _Write, Mapping[str, Any]], tuple[Inventory, Outcome]],
) -> tuple[Inventory, Outcome]:
    """Run ``transition`` on the checked body, or reject the body naming every bad field."""
    if not isinstance(command.body, dict):
        return state, _INVALID
    try:
        fields = check(command.body)
    except InvariantViolation as violation:
        return state, _rejected(
            400, "validation-error", frozenset(e.field for e in violation.errors)
        )
    return transition(state, command, fields)


def _create(
    state: Inventory, command: CreateItem, fields: Mapping[str, Any]
) -> tuple[Inventory, Outcome]:
    if _name_taken(state, command.caller.tenant, fields["name"], except_id=None):
        return state, _rejected(409, "name-taken")
    item = Item(command.new_id, command.caller.tenant, fields["name"], fields["qty"], 1)
    return state.put(item), Outcome(201, item=item)


def _update(
    state: Inventory, command: UpdateItem, fields: Mapping[str, Any]
) -> tuple[Inventory, Outcome]:
    item = _find(state, command.caller, command.item_id)
    if item is None:
        return state, _NOT_FOUND
    if command.expected_version is not None and command.expected_version != item.version:
        return state, _rejected(412, "precondition-failed")
    if "name" in fields and _name_taken(state, item.tenant, fields["name"], except_id=item.id):
        return state, _rejected(409, "name-taken")
    updated = replace(item, **fields, version=item.version + 1)
    return state.put(updated), Outcome(200, item=updated)


def _adjust(
    state: Inventory, command: AdjustItem, fields: Mapping[str, Any]
) -> tuple[Inventory, Outcome]:
    item = _find(state, command.caller, command.item_id)
    if item is None:
        return state, _NOT_FOUND
    qty = item.qty + fields["delta"]
    if not 0 <= qty <= QTY_MAX:
        return state, _rejected(409, "quantity-out-of-range")
    adjusted = replace(item, qty=qty, version=item.version + 1)
    return state.put(adjusted), Outcome(200, item=adjusted)


def _listing(state: Inventory, command: ListItems) -> tuple[Item, ...]:
    items = items_of(state, command.caller.tenant)
    if not command.name_prefix:
        return items
    prefix = prefix_key(command.name_prefix)
    return tuple(i for i in items if i.key().startswith(prefix))


def _find(state: Inventory, caller: Caller, item_id: str) -> Item | None:
    item = state.items.get(item_id)
    return item if item is not None and item.tenant == caller.tenant else None


def _name_taken(state: Inventory, tenant: str, name: str, except_id: str | None) -> bool:
    key = name_key(name)
    return any(
        i.tenant == tenant and i.key() == key and i.id != except_id for i in state.items.values()
    )


def _is_canonical_id(item_id: str) -> bool:
    try:
        return str(uuid.UUID(item_id)) == item_id
    except ValueError:
        return False
