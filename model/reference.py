"""The reference model: the inventory's semantics as pure functions over immutable state.

An independent second implementation of what the service does, written for obviousness
rather than speed: ``apply(state, command) -> (state', outcome)``, no I/O. The state
machine in tests/stateful runs it beside the live service and fails on any disagreement.
It shares only ``model.invariants`` (what a valid name or quantity is) with the service.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, TypeVar

from model.invariants import (
    QTY_MAX,
    InvariantViolation,
    Role,
    check_adjustment,
    check_batch,
    check_create,
    check_reason,
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
class Event:
    """One entry of a tenant's ledger: the change that left an item as it is."""

    tenant: str
    seq: int
    item_id: str
    kind: str
    version: int
    qty: int
    delta: int
    name: str
    reason: str | None
    by: Caller

    def as_json(self) -> dict[str, Any]:
        """The event as the API shows it, less who, which request and when."""
        return {
            "seq": self.seq,
            "item_id": self.item_id,
            "type": self.kind,
            "version": self.version,
            "qty": self.qty,
            "delta": self.delta,
            "name": self.name,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Inventory:
    """Every item of every tenant, by id, and every event ever; never mutated."""

    items: Mapping[str, Item] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    answers: Mapping[tuple[str, str], tuple[object, Outcome]] = field(default_factory=dict)
    """Each (tenant, Idempotency-Key) used: the request it came with, and its outcome."""

    def __post_init__(self) -> None:
        # Snapshot whatever mappings were given, so no one holding one can change this state.
        object.__setattr__(self, "items", MappingProxyType(dict(self.items)))
        object.__setattr__(self, "answers", MappingProxyType(dict(self.answers)))

    @classmethod
    def empty(cls) -> Inventory:
        """The inventory before the first command."""
        return cls()

    def put(self, item: Item) -> Inventory:
        """The inventory with ``item`` added or replaced."""
        return replace(self, items={**self.items, item.id: item})

    def remove(self, item_id: str) -> Inventory:
        """The inventory without the item ``item_id``."""
        return replace(self, items={k: v for k, v in self.items.items() if k != item_id})

    def logged(
        self, item: Item, kind: str, delta: int, reason: str | None, by: Caller
    ) -> Inventory:
        """The inventory with the event that left ``item`` as it is appended to its tenant's."""
        seq = 1 + sum(1 for e in self.events if e.tenant == item.tenant)
        event = Event(
            item.tenant, seq, item.id, kind, item.version, item.qty, delta, item.name, reason, by
        )
        return replace(self, events=(*self.events, event))

    def history(self, tenant: str, item_id: str) -> tuple[Event, ...]:
        """The item's events, oldest first."""
        return tuple(e for e in self.events if e.tenant == tenant and e.item_id == item_id)

    def feed(self, tenant: str, after: int = 0) -> tuple[Event, ...]:
        """The tenant's events after seq ``after``, oldest first."""
        return tuple(e for e in self.events if e.tenant == tenant and e.seq > after)


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
    """Delete an item (idempotent); ``reason`` as sent (None: not sent)."""

    caller: Caller
    item_id: str
    reason: object = None


@dataclass(frozen=True)
class AdjustItem:
    """Add a delta to an item's quantity; ``expected_version`` is the If-Match condition."""

    caller: Caller
    item_id: str
    body: object
    expected_version: int | None = None


@dataclass(frozen=True)
class ListItemEvents:
    """Read one item's history."""

    caller: Caller
    item_id: str


@dataclass(frozen=True)
class ListEvents:
    """Read the caller's tenant's feed after seq ``after``."""

    caller: Caller
    after: int = 0


@dataclass(frozen=True)
class ApplyBatch:
    """Apply a batch of operations, all or nothing; ``new_ids`` are the ids the service
    assigned to its creates, in order."""

    caller: Caller
    body: object
    new_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Keyed:
    """A write sent with an Idempotency-Key (``key``, as the header names it)."""

    key: str
    command: CreateItem | UpdateItem | DeleteItem | AdjustItem | ApplyBatch

    @property
    def caller(self) -> Caller:
        """Who sends it."""
        return self.command.caller


Command = (
    CreateItem
    | ApplyBatch
    | Keyed
    | GetItem
    | ListItems
    | UpdateItem
    | DeleteItem
    | AdjustItem
    | ListItemEvents
    | ListEvents
)
_Read = GetItem | ListItems | ListItemEvents | ListEvents


@dataclass(frozen=True)
class Outcome:
    """What the service must answer: a status, and an item, items or a problem kind."""

    status: int
    item: Item | None = None
    items: tuple[Item, ...] | None = None
    events: tuple[Event, ...] | None = None
    problem: str | None = None
    fields: frozenset[str] = frozenset()
    replayed: bool = False
    """The outcome an earlier request with the same Idempotency-Key stored, given again."""
    results: tuple[Item | None, ...] | None = None
    """A batch's items after each operation (None for a delete)."""
    operation: int | None = None
    """The index of the operation that refused a batch."""


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
    if isinstance(command, Keyed):
        return _keyed(state, command)
    needed = "reader" if isinstance(command, _Read) else "writer"
    if not role_includes(command.caller.role, needed):
        return state, _FORBIDDEN
    has_id = not isinstance(command, CreateItem | ListItems | ListEvents | ApplyBatch)
    if has_id and not _is_canonical_id(command.item_id):  # type: ignore[union-attr]
        return state, _INVALID
    match command:
        case CreateItem():
            return _validated(state, command, check_create, _create)
        case ApplyBatch():
            return _validated(state, command, check_batch, _batch)
        case GetItem():
            item = _find(state, command.caller, command.item_id)
            return state, Outcome(200, item=item) if item else _NOT_FOUND
        case ListItems():
            return state, Outcome(200, items=_listing(state, command))
        case UpdateItem():
            return _validated(state, command, check_update, _update)
        case DeleteItem():
            return _delete(state, command)
        case AdjustItem():
            return _validated(state, command, check_adjustment, _adjust)
        case ListItemEvents():
            history = state.history(command.caller.tenant, command.item_id)
            return state, Outcome(200, events=history) if history else _NOT_FOUND
        case ListEvents():
            return state, Outcome(200, events=state.feed(command.caller.tenant, command.after))


_NOT_STORED = frozenset({400, 403})
"""Outcomes decided before the store is reached: an Idempotency-Key does not keep them."""


def _keyed(state: Inventory, keyed: Keyed) -> tuple[Inventory, Outcome]:
    """A write under an Idempotency-Key: answered as before if its key was used (for the
    same request; another is 422), else applied and its outcome kept with its key."""
    after, outcome = apply(state, keyed.command)
    if outcome.status in _NOT_STORED:
        return state, outcome
    scope, request = (keyed.command.caller.tenant, keyed.key), _request_of(keyed.command)
    if scope in state.answers:
        earlier, answer = state.answers[scope]
        if earlier != request:
            return state, _rejected(422, "idempotency-key-reused")
        return state, replace(answer, replayed=True)
    return replace(after, answers={**after.answers, scope: (request, outcome)}), outcome


def _request_of(command: CreateItem | UpdateItem | DeleteItem | AdjustItem | ApplyBatch) -> object:
    """What makes two valid writes the same request: the operation, its item, its
    condition, and its fields as they are kept (normalized; member order does not count)."""
    match command:
        case CreateItem():
            return "create", sorted(check_create(command.body).items())  # type: ignore[arg-type]
        case UpdateItem():
            fields = sorted(check_update(command.body).items())  # type: ignore[arg-type]
            return "update", command.item_id, fields, command.expected_version
        case AdjustItem():
            fields = sorted(check_adjustment(command.body).items())  # type: ignore[arg-type]
            return "adjust", command.item_id, fields, command.expected_version
        case DeleteItem():
            reason = None if command.reason is None else check_reason(command.reason)
            return "delete", command.item_id, reason
        case ApplyBatch():
            batch = check_batch(command.body)  # type: ignore[arg-type]
            operations = [sorted(op.items()) for op in batch["operations"]]
            return "batch", operations, batch.get("reason")


def _delete(state: Inventory, command: DeleteItem) -> tuple[Inventory, Outcome]:
    reason = command.reason
    if reason is not None:
        try:
            reason = check_reason(reason)
        except ValueError:
            return state, _rejected(400, "validation-error", frozenset({"query.reason"}))
    found = _find(state, command.caller, command.item_id)
    if found is None:
        return state, Outcome(204)
    last = replace(found, qty=0, version=found.version + 1)
    after = state.remove(found.id).logged(last, "deleted", -found.qty, reason, command.caller)
    return after, Outcome(204)


_Write = TypeVar("_Write", CreateItem, UpdateItem, AdjustItem, ApplyBatch)


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
    after = state.put(item).logged(item, "created", item.qty, fields.get("reason"), command.caller)
    return after, Outcome(201, item=item)


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
    changes = {k: v for k, v in fields.items() if k in ("name", "qty")}
    updated = replace(item, **changes, version=item.version + 1)
    delta, reason = updated.qty - item.qty, fields.get("reason")
    after = state.put(updated).logged(updated, "updated", delta, reason, command.caller)
    return after, Outcome(200, item=updated)


def _adjust(
    state: Inventory, command: AdjustItem, fields: Mapping[str, Any]
) -> tuple[Inventory, Outcome]:
    item = _find(state, command.caller, command.item_id)
    if item is None:
        return state, _NOT_FOUND
    if command.expected_version is not None and command.expected_version != item.version:
        return state, _rejected(412, "precondition-failed")
    qty = item.qty + fields["delta"]
    if not 0 <= qty <= QTY_MAX:
        return state, _rejected(409, "quantity-out-of-range")
    adjusted = replace(item, qty=qty, version=item.version + 1)
    delta, reason = fields["delta"], fields.get("reason")
    after = state.put(adjusted).logged(adjusted, "adjusted", delta, reason, command.caller)
    return after, Outcome(200, item=adjusted)


def _batch(
    state: Inventory, command: ApplyBatch, batch: Mapping[str, Any]
) -> tuple[Inventory, Outcome]:
    """Each operation in turn on the state the ones before left; the first refusal refuses
    the batch, and the state is as it was."""
    after, results = state, list[Item | None]()
    fresh = iter(command.new_ids)
    for index, op in enumerate(batch["operations"]):
        after, outcome = _operation(after, command.caller, op, batch.get("reason"), fresh)
        if outcome.status >= 400:
            return state, replace(outcome, operation=index)
        results.append(outcome.item)
    return after, Outcome(200, results=tuple(results))


def _operation(
    state: Inventory,
    caller: Caller,
    op: Mapping[str, Any],
    reason: str | None,
    fresh: Iterator[str],
) -> tuple[Inventory, Outcome]:
    """One operation of a batch, as the single request of its kind would apply it."""
    because = {} if reason is None else {"reason": reason}
    fields = {k: v for k, v in op.items() if k in ("name", "qty", "delta")} | because
    match op["op"]:
        case "create":
            return _create(state, CreateItem(caller, fields, next(fresh, "")), fields)
        case "update":
            update = UpdateItem(caller, op["item_id"], fields, op.get("if_match"))
            return _update(state, update, fields)
        case "adjust":
            adjust = AdjustItem(caller, op["item_id"], fields, op.get("if_match"))
            return _adjust(state, adjust, fields)
        case _:
            return _delete(state, DeleteItem(caller, op["item_id"], reason))


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
