"""The reference model: one example per rule of the HTTP contract, then properties over
random command sequences (invariants always hold, rejections change nothing, tenants are
isolated, readers never write).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import FrozenInstanceError, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.invariants import QTY_MAX, name_key, normalize_text, text_problem
from model.reference import (
    AdjustItem,
    ApplyBatch,
    Caller,
    Command,
    CreateItem,
    DeleteItem,
    GetItem,
    Inventory,
    Item,
    Keyed,
    ListEvents,
    ListItemEvents,
    ListItems,
    Outcome,
    UpdateItem,
    apply,
    items_of,
)

WRITER = Caller("acme", "writer")
ADMIN = Caller("acme", "admin")
READER = Caller("acme", "reader")
OTHER = Caller("globex", "writer")
OTHER_READER = Caller("globex", "reader")


def _id(n: int) -> str:
    return str(uuid.UUID(int=n))


ABSENT = _id(999_999)
MALFORMED_IDS = [
    "",
    "nope",
    _id(0xABCDEF).upper(),
    _id(1).replace("-", ""),
    "{" + _id(1) + "}",
    "urn:uuid:" + _id(1),
    _id(1) + " ",
]


def _create(state: Inventory, name: str, qty: int = 1, caller: Caller = WRITER) -> Inventory:
    """``state`` with one more item of ``caller``'s tenant; fails if it is rejected."""
    new_id = _id(len(state.items) + 1)
    state, outcome = apply(state, CreateItem(caller, {"name": name, "qty": qty}, new_id))
    assert outcome.status == 201, outcome
    return state


def _stocked(*names: str, caller: Caller = WRITER) -> Inventory:
    state = Inventory.empty()
    for name in names:
        state = _create(state, name, caller=caller)
    return state


def _item(state: Inventory, name: str) -> Item:
    (item,) = (i for i in state.items.values() if i.name == name)
    return item


def _rejected(state: Inventory, command: Command, status: int, problem: str) -> Outcome:
    """Apply ``command``; assert it is rejected with ``status``/``problem`` and changes nothing."""
    after, outcome = apply(state, command)
    assert (outcome.status, outcome.problem) == (status, problem)
    assert (outcome.item, outcome.items) == (None, None)
    assert after == state
    return outcome


# --- the state and its items ---------------------------------------------------------------


def test_an_empty_inventory_has_no_items() -> None:
    assert dict(Inventory.empty().items) == {}


def test_an_item_shows_id_name_qty_and_version_and_keys_by_its_case_fold() -> None:
    item = Item(_id(1), "acme", "Straße", 3, 2)
    assert item.as_json() == {"id": _id(1), "name": "Straße", "qty": 3, "version": 2}
    assert item.key() == "strasse"


def test_the_state_cannot_be_changed_in_place() -> None:
    source = {_id(1): Item(_id(1), "acme", "apple", 1, 1)}
    state = Inventory(source)
    source.clear()
    assert list(state.items) == [_id(1)]
    with pytest.raises(TypeError):
        state.items[_id(2)] = Item(_id(2), "acme", "pear", 1, 1)  # type: ignore[index]
    with pytest.raises(FrozenInstanceError):
        state.items = {}  # type: ignore[misc]


def test_a_transition_leaves_the_previous_state_as_it_was() -> None:
    before = _stocked("apple")
    _create(before, "pear")
    assert [i.name for i in before.items.values()] == ["apple"]


# --- roles ---------------------------------------------------------------------------------


def _writes(item_id: str) -> list[Command]:
    return [
        CreateItem(READER, {"name": "pear", "qty": 1}, _id(50)),
        UpdateItem(READER, item_id, {"qty": 2}),
        DeleteItem(READER, item_id),
        AdjustItem(READER, item_id, {"delta": 1}),
    ]


@pytest.mark.parametrize("index", range(4))
def test_a_reader_cannot_write(index: int) -> None:
    state = _stocked("apple")
    _rejected(state, _writes(_item(state, "apple").id)[index], 403, "forbidden")


def test_the_role_is_checked_before_the_id_and_the_body() -> None:
    _rejected(Inventory.empty(), AdjustItem(READER, "nope", []), 403, "forbidden")


def test_a_reader_can_get_and_list() -> None:
    state = _stocked("apple")
    item = _item(state, "apple")
    assert apply(state, GetItem(READER, item.id)) == (state, Outcome(200, item=item))
    assert apply(state, ListItems(READER)) == (state, Outcome(200, items=(item,)))


def test_an_admin_can_write() -> None:
    state = _create(Inventory.empty(), "apple", caller=ADMIN)
    state, outcome = apply(state, DeleteItem(ADMIN, _item(state, "apple").id))
    assert outcome == Outcome(204)
    assert not state.items


# --- ids and bodies ------------------------------------------------------------------------


@pytest.mark.parametrize("item_id", MALFORMED_IDS)
@pytest.mark.parametrize(
    "make",
    [
        lambda i: GetItem(WRITER, i),
        lambda i: UpdateItem(WRITER, i, {"qty": 1}),
        lambda i: DeleteItem(WRITER, i),
        lambda i: AdjustItem(WRITER, i, {"delta": 1}),
    ],
    ids=["get", "update", "delete", "adjust"],
)
def test_a_malformed_item_id_is_a_validation_error(item_id: str, make: Any) -> None:
    outcome = _rejected(_stocked("apple"), make(item_id), 400, "validation-error")
    assert outcome.fields == frozenset()


def test_the_id_is_checked_before_the_body() -> None:
    outcome = _rejected(
        Inventory.empty(), AdjustItem(WRITER, "nope", {"delta": 0}), 400, "validation-error"
    )
    assert outcome.fields == frozenset()


@pytest.mark.parametrize("body", [None, [], ["name", "qty"], "apple", 5, True, 1.5])
def test_a_body_that_is_not_an_object_is_a_validation_error(body: object) -> None:
    state = _stocked("apple")
    item_id = _item(state, "apple").id
    for command in (
        CreateItem(WRITER, body, _id(50)),
        UpdateItem(WRITER, item_id, body),
        AdjustItem(WRITER, item_id, body),
    ):
        _rejected(state, command, 400, "validation-error")


def test_a_validation_error_names_every_offending_field() -> None:
    body = {"name": "\x00", "qty": -1, "colour": "red"}
    outcome = _rejected(
        Inventory.empty(), CreateItem(WRITER, body, _id(1)), 400, "validation-error"
    )
    assert outcome.fields == {"/name", "/qty", "/colour"}


def test_the_body_is_checked_before_the_item_is_looked_up() -> None:
    for command in (UpdateItem(WRITER, ABSENT, {}), AdjustItem(WRITER, ABSENT, {"delta": 0})):
        _rejected(Inventory.empty(), command, 400, "validation-error")


# --- create --------------------------------------------------------------------------------


def test_create_stores_the_normalized_name_at_version_1() -> None:
    state, outcome = apply(
        Inventory.empty(), CreateItem(WRITER, {"name": " Cafe\u0301\n", "qty": 7}, _id(1))
    )
    expected = Item(_id(1), "acme", "Caf\u00e9", 7, 1)
    assert outcome == Outcome(201, item=expected)
    assert dict(state.items) == {_id(1): expected}


@pytest.mark.parametrize("taken", ["apple", "APPLE", " Apple\t", "aPpLe"])
def test_a_name_already_in_the_tenant_is_taken_whatever_its_case(taken: str) -> None:
    state = _stocked("Apple")
    _rejected(state, CreateItem(WRITER, {"name": taken, "qty": 1}, _id(50)), 409, "name-taken")


def test_a_name_is_taken_whatever_its_normalization_form() -> None:
    state = _stocked("Caf\u00e9")
    body = {"name": "CAFE\u0301", "qty": 1}
    _rejected(state, CreateItem(WRITER, body, _id(50)), 409, "name-taken")


def test_a_look_alike_that_is_not_a_case_variant_is_a_different_name() -> None:
    state = _create(_stocked("apple"), "\uff41\uff50\uff50\uff4c\uff45")  # fullwidth
    assert len(state.items) == 2


def test_the_same_name_may_exist_in_another_tenant() -> None:
    state = _create(_stocked("apple"), "apple", caller=OTHER)
    assert {(i.tenant, i.name) for i in state.items.values()} == {
        ("acme", "apple"),
        ("globex", "apple"),
    }


# --- get and list --------------------------------------------------------------------------


def test_get_returns_the_callers_item() -> None:
    state = _stocked("apple")
    item = _item(state, "apple")
    assert apply(state, GetItem(WRITER, item.id)) == (state, Outcome(200, item=item))


def test_get_answers_not_found_for_a_missing_item_or_another_tenants() -> None:
    state = _stocked("apple")
    _rejected(state, GetItem(WRITER, ABSENT), 404, "not-found")
    _rejected(state, GetItem(OTHER, _item(state, "apple").id), 404, "not-found")


NAMES = ["banana", "Apple", "cherry", "Zebra", "\u00e9clair", "apricot", "Ärger"]
KEY_ORDER = ["apple", "apricot", "banana", "cherry", "zebra", "ärger", "\u00e9clair"]


def test_list_orders_the_tenants_items_by_name_key_in_code_point_order() -> None:
    state = _create(_stocked(*NAMES), "aardvark", caller=OTHER)
    _, outcome = apply(state, ListItems(WRITER))
    assert outcome.status == 200
    assert outcome.items is not None
    assert [i.key() for i in outcome.items] == KEY_ORDER
    assert outcome.items == items_of(state, "acme")


@pytest.mark.parametrize(
    ("prefix", "keys"),
    [
        (None, KEY_ORDER),
        ("", KEY_ORDER),
        ("AP", ["apple", "apricot"]),
        ("e\u0301", ["\u00e9clair"]),
        ("A\u0308", ["ärger"]),
        ("apple ", []),
        ("x", []),
    ],
)
def test_list_filters_by_the_prefix_key(prefix: str | None, keys: list[str]) -> None:
    _, outcome = apply(_stocked(*NAMES), ListItems(READER, prefix))
    assert outcome.items is not None
    assert [i.key() for i in outcome.items] == keys


def test_list_never_shows_another_tenants_items() -> None:
    state = _stocked("apple")
    assert apply(state, ListItems(OTHER)) == (state, Outcome(200, items=()))


# --- update --------------------------------------------------------------------------------


def test_update_replaces_the_given_fields_and_bumps_the_version() -> None:
    state = _stocked("apple")
    item = _item(state, "apple")
    state, outcome = apply(state, UpdateItem(WRITER, item.id, {"name": " Pear ", "qty": 9}))
    expected = Item(item.id, "acme", "Pear", 9, 2)
    assert outcome == Outcome(200, item=expected)
    assert state.items[item.id] == expected


def test_update_that_changes_nothing_still_bumps_the_version() -> None:
    state = _stocked("apple")
    item = _item(state, "apple")
    state, outcome = apply(state, UpdateItem(WRITER, item.id, {"name": "apple", "qty": item.qty}))
    assert outcome.item == Item(item.id, "acme", "apple", item.qty, 2)


def test_update_may_rename_an_item_to_a_case_variant_of_its_own_name() -> None:
    state = _stocked("apple")
    item = _item(state, "apple")
    state, outcome = apply(
        state, UpdateItem(WRITER, item.id, {"name": "APPLE"}, expected_version=1)
    )
    assert outcome.item == Item(item.id, "acme", "APPLE", item.qty, 2)


def test_update_to_another_items_name_is_taken() -> None:
    state = _stocked("apple", "pear")
    command = UpdateItem(WRITER, _item(state, "pear").id, {"name": "Apple"})
    _rejected(state, command, 409, "name-taken")


def test_update_with_a_stale_version_fails_its_precondition() -> None:
    state = _stocked("apple")
    for version in (0, 2):
        command = UpdateItem(WRITER, _item(state, "apple").id, {"qty": 5}, version)
        _rejected(state, command, 412, "precondition-failed")


def test_update_checks_the_precondition_before_the_name() -> None:
    state = _stocked("apple", "pear")
    command = UpdateItem(WRITER, _item(state, "pear").id, {"name": "apple"}, expected_version=7)
    _rejected(state, command, 412, "precondition-failed")


def test_update_answers_not_found_before_checking_the_precondition() -> None:
    state = _stocked("apple")
    _rejected(state, UpdateItem(WRITER, ABSENT, {"qty": 1}, 1), 404, "not-found")
    command = UpdateItem(OTHER, _item(state, "apple").id, {"qty": 1}, 1)
    _rejected(state, command, 404, "not-found")


# --- delete --------------------------------------------------------------------------------


def test_delete_removes_the_item() -> None:
    state = _stocked("apple", "pear")
    state, outcome = apply(state, DeleteItem(WRITER, _item(state, "apple").id))
    assert outcome == Outcome(204)
    assert [i.name for i in state.items.values()] == ["pear"]


def test_delete_of_a_missing_item_succeeds_and_changes_nothing() -> None:
    state = _stocked("apple")
    assert apply(state, DeleteItem(WRITER, ABSENT)) == (state, Outcome(204))


def test_delete_of_another_tenants_item_succeeds_and_leaves_it_alone() -> None:
    state = _stocked("apple")
    assert apply(state, DeleteItem(OTHER, _item(state, "apple").id)) == (state, Outcome(204))


# --- adjust --------------------------------------------------------------------------------


def test_adjust_adds_the_delta_and_bumps_the_version() -> None:
    state = _stocked("apple")
    item = _item(state, "apple")
    body = {"delta": -1, "reason": "eaten"}
    state, outcome = apply(state, AdjustItem(WRITER, item.id, body))
    assert outcome == Outcome(200, item=Item(item.id, "acme", "apple", 0, 2))
    assert state.items[item.id] == outcome.item


@pytest.mark.parametrize(("qty", "delta"), [(0, QTY_MAX), (QTY_MAX, -QTY_MAX), (5, -5)])
def test_adjust_may_reach_either_bound(qty: int, delta: int) -> None:
    state = _create(Inventory.empty(), "apple", qty)
    item = _item(state, "apple")
    _, outcome = apply(state, AdjustItem(WRITER, item.id, {"delta": delta}))
    assert outcome.item is not None
    assert outcome.item.qty == qty + delta


@pytest.mark.parametrize(("qty", "delta"), [(0, -1), (QTY_MAX, 1), (1, QTY_MAX), (5, -6)])
def test_adjust_beyond_either_bound_is_out_of_range(qty: int, delta: int) -> None:
    state = _create(Inventory.empty(), "apple", qty)
    command = AdjustItem(WRITER, _item(state, "apple").id, {"delta": delta})
    _rejected(state, command, 409, "quantity-out-of-range")


def test_adjust_answers_not_found_for_a_missing_item_or_another_tenants() -> None:
    state = _stocked("apple")
    _rejected(state, AdjustItem(WRITER, ABSENT, {"delta": 1}), 404, "not-found")
    command = AdjustItem(OTHER, _item(state, "apple").id, {"delta": 1})
    _rejected(state, command, 404, "not-found")


# --- properties over random command sequences -----------------------------------------------

# Names built to collide (case, normalization form, padding), and short random ones.
NAME_POOL = ["apple", "Apple", " APPLE\n", "Caf\u00e9", "cafe\u0301", "Straße", "STRASSE", "pear"]
GOOD_NAMES = st.sampled_from(NAME_POOL) | st.text("abAB\u0301", min_size=1, max_size=3)
ANY_NAMES = GOOD_NAMES | st.sampled_from(["", " ", "a\x00", "b" * 201, 5, None])
QTYS = st.integers(0, 10) | st.just(QTY_MAX)
ANY_QTYS = QTYS | st.sampled_from([-1, QTY_MAX + 1, True, 5.0, "5", None])
DELTAS = st.integers(-6, -1) | st.integers(1, 6) | st.sampled_from([QTY_MAX, -QTY_MAX])
ANY_DELTAS = DELTAS | st.sampled_from([0, QTY_MAX + 1, True, 1.5, None])
NOT_OBJECTS: st.SearchStrategy[object] = st.sampled_from([None, [], "x", 1])
EXTRA = {"colour": st.just("red")}

VALID_CREATE = st.fixed_dictionaries({"name": GOOD_NAMES, "qty": QTYS})
VALID_UPDATE = st.fixed_dictionaries(
    {"name": GOOD_NAMES}, optional={"qty": QTYS}
) | st.fixed_dictionaries({"qty": QTYS})
VALID_ADJUST = st.fixed_dictionaries({"delta": DELTAS}, optional={"reason": st.just("recount")})
ANY_ITEM_BODY = (
    st.fixed_dictionaries({}, optional={"name": ANY_NAMES, "qty": ANY_QTYS, **EXTRA}) | NOT_OBJECTS
)
ANY_ADJUST = (
    st.fixed_dictionaries({}, optional={"delta": ANY_DELTAS, "reason": ANY_NAMES, **EXTRA})
    | NOT_OBJECTS
)
PREFIXES = st.none() | st.sampled_from(["", "a", "AP", "caf", "CAFE\u0301", "s", "ß", "z"])

# Commands are drawn against a placeholder id, then aimed at the state (``_aim``): the
# strategy is built once instead of once per step. Writers outnumber readers, and valid
# bodies come as often as arbitrary ones, so the inventory grows and every outcome occurs.
_CALLERS = st.sampled_from([WRITER, WRITER, ADMIN, OTHER, OTHER, READER, OTHER_READER])
_TARGET = st.just("<target>")
_VERSIONS = st.none() | st.integers(0, 4)
COMMANDS: st.SearchStrategy[Command] = st.one_of(
    st.builds(CreateItem, _CALLERS, VALID_CREATE | ANY_ITEM_BODY, _TARGET),
    st.builds(CreateItem, _CALLERS, VALID_CREATE, _TARGET),
    st.builds(GetItem, _CALLERS, _TARGET),
    st.builds(ListItems, _CALLERS, PREFIXES),
    st.builds(UpdateItem, _CALLERS, _TARGET, VALID_UPDATE | ANY_ITEM_BODY, _VERSIONS),
    st.builds(DeleteItem, _CALLERS, _TARGET),
    st.builds(AdjustItem, _CALLERS, _TARGET, VALID_ADJUST | ANY_ADJUST, _VERSIONS),
)
_KEYED_WRITES: st.SearchStrategy[Command] = st.builds(
    Keyed,
    st.sampled_from(["k1", "k2"]),  # few keys: reused by the same request and by others
    st.one_of(
        st.builds(CreateItem, _CALLERS, VALID_CREATE, _TARGET),
        st.builds(UpdateItem, _CALLERS, _TARGET, VALID_UPDATE, _VERSIONS),
        st.builds(DeleteItem, _CALLERS, _TARGET),
        st.builds(AdjustItem, _CALLERS, _TARGET, VALID_ADJUST, _VERSIONS),
    ),
)
COMMANDS = COMMANDS | _KEYED_WRITES


def _aim(command: Command, state: Inventory, choice: int, fresh_id: str) -> Command:
    """``command`` with its id: a fresh one to create, else mostly one the state holds."""
    if isinstance(command, Keyed):
        aimed = _aim(command.command, state, choice, fresh_id)
        assert not isinstance(aimed, Keyed | GetItem | ListItems | ListItemEvents | ListEvents)
        return replace(command, command=aimed)
    if isinstance(command, CreateItem):
        return replace(command, new_id=fresh_id)
    if isinstance(command, ListItems | ListEvents | ApplyBatch):
        return command
    held = sorted(state.items)
    strays = [ABSENT, "nope"]  # choices 0 and 1: an unknown id, a malformed one
    if choice < len(strays) or not held:
        return replace(command, item_id=strays[choice % len(strays)])
    return replace(command, item_id=held[choice % len(held)])


Step = tuple[Inventory, Command, Outcome, Inventory]


def _walk(data: st.DataObject) -> Iterator[Step]:
    """Up to 20 random commands from an empty inventory: (before, command, outcome, after)."""
    state = Inventory.empty()
    for n in range(data.draw(st.integers(1, 20), label="steps")):
        drawn, choice = data.draw(st.tuples(COMMANDS, st.integers(0, 9)))
        command = _aim(drawn, state, choice, _id(n + 1))
        after, outcome = apply(state, command)
        yield state, command, outcome, after
        state = after


def _assert_invariants(state: Inventory) -> None:
    keys: set[tuple[str, str]] = set()
    for item_id, item in state.items.items():
        assert item.id == item_id
        assert item.name == normalize_text(item.name)
        assert text_problem(item.name) is None
        assert type(item.qty) is int
        assert 0 <= item.qty <= QTY_MAX
        assert type(item.version) is int
        assert item.version >= 1
        keys.add((item.tenant, name_key(item.name)))
    assert len(keys) == len(state.items), "a name key is taken twice in one tenant"


PROPERTY = settings(deadline=None)


@PROPERTY
@given(st.data())
def test_every_transition_keeps_the_invariants(data: st.DataObject) -> None:
    for _, _, _, after in _walk(data):
        _assert_invariants(after)


@PROPERTY
@given(st.data())
def test_a_rejected_command_leaves_the_items_and_the_ledger_unchanged(
    data: st.DataObject,
) -> None:
    for before, _, outcome, after in _walk(data):
        if outcome.status >= 400:
            assert outcome.problem is not None
            assert (after.items, after.events) == (before.items, before.events)


@PROPERTY
@given(st.data())
def test_a_replayed_write_changes_nothing_and_repeats_its_first_outcome(
    data: st.DataObject,
) -> None:
    for before, command, outcome, after in _walk(data):
        if outcome.replayed:
            assert isinstance(command, Keyed)
            assert after == before
            _, first = before.answers[(command.caller.tenant, command.key)]
            assert outcome == replace(first, replayed=True)


@PROPERTY
@given(st.data())
def test_only_outcomes_that_reached_the_store_are_kept_under_their_key(
    data: st.DataObject,
) -> None:
    for before, command, outcome, after in _walk(data):
        scope = (command.caller.tenant, command.key) if isinstance(command, Keyed) else None
        kept = (
            scope is not None
            and scope not in before.answers
            and outcome.status
            not in (
                400,
                403,
            )
        )
        assert (scope in after.answers and scope not in before.answers) == kept


@PROPERTY
@given(st.data())
def test_a_command_never_changes_another_tenants_items(data: st.DataObject) -> None:
    for before, command, _, after in _walk(data):
        for tenant in ("acme", "globex"):
            if tenant != command.caller.tenant:
                assert items_of(after, tenant) == items_of(before, tenant)


@PROPERTY
@given(st.data())
def test_a_reader_never_changes_the_state(data: st.DataObject) -> None:
    for before, command, _, after in _walk(data):
        if command.caller.role == "reader":
            assert after == before


@PROPERTY
@given(st.data())
def test_a_successful_write_changes_only_its_own_item_and_bumps_its_version(
    data: st.DataObject,
) -> None:
    writes = CreateItem | UpdateItem | AdjustItem
    for before, command, outcome, after in _walk(data):
        if not isinstance(command, writes) or outcome.item is None:
            continue
        item = outcome.item
        old = before.items.get(item.id)
        assert item.version == (1 if old is None else old.version + 1)
        assert after.items[item.id] == item
        assert _without(after, item.id) == _without(before, item.id)


@PROPERTY
@given(st.data())
def test_a_read_changes_nothing_and_shows_the_callers_items(data: st.DataObject) -> None:
    for before, command, outcome, after in _walk(data):
        if isinstance(command, GetItem | ListItems):
            assert after == before
        if isinstance(command, GetItem) and outcome.item is not None:
            assert outcome.item == before.items[command.item_id]
            assert outcome.item.tenant == command.caller.tenant
        if isinstance(command, ListItems):
            assert outcome.items is not None
            assert set(outcome.items) <= set(items_of(before, command.caller.tenant))


def _without(state: Inventory, item_id: str) -> dict[str, Item]:
    return {k: v for k, v in state.items.items() if k != item_id}


def test_a_batch_applies_its_operations_in_order_each_seeing_the_ones_before() -> None:
    state, outcome = apply(
        Inventory.empty(),
        ApplyBatch(
            WRITER,
            {"operations": [{"op": "create", "name": "bolt", "qty": 2}], "reason": "count"},
            (_id(1),),
        ),
    )
    adjust = {"op": "adjust", "item_id": _id(1), "delta": -1}
    body = {"operations": [adjust, {**adjust, "if_match": 2}, {"op": "delete", "item_id": _id(1)}]}
    after, outcome = apply(state, ApplyBatch(WRITER, body))
    assert outcome.status == 200
    assert outcome.results is not None
    assert [r and (r.qty, r.version) for r in outcome.results] == [(1, 2), (0, 3), None]
    assert [(e.kind, e.delta, e.reason) for e in after.events[1:]] == [
        ("adjusted", -1, None),
        ("adjusted", -1, None),
        ("deleted", 0, None),
    ]


def test_a_batch_refused_at_one_operation_changes_nothing_and_names_it() -> None:
    state, _ = apply(Inventory.empty(), CreateItem(WRITER, {"name": "bolt", "qty": 2}, _id(1)))
    adjust = {"op": "adjust", "item_id": _id(1), "delta": -1}
    for body, status, problem in [
        ({"operations": [adjust, {**adjust, "delta": -5}]}, 409, "quantity-out-of-range"),
        ({"operations": [adjust, {**adjust, "if_match": 1}]}, 412, "precondition-failed"),
        ({"operations": [adjust, {**adjust, "item_id": ABSENT}]}, 404, "not-found"),
        ({"operations": [adjust, {"op": "create", "name": "BOLT", "qty": 1}]}, 409, "name-taken"),
    ]:
        after, outcome = apply(state, ApplyBatch(WRITER, body, (_id(2),)))
        assert (outcome.status, outcome.problem, outcome.operation) == (status, problem, 1)
        assert after == state
