"""The storage steps both backends share, in process: the page query (run for real on an
in-memory SQLite database built by the real migrations), the page cut, the prefix bound,
the rejection sequences and the migration listing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.invariants import name_key
from service.problems import NotFound, PreconditionFailed, QuantityOutOfRange
from service.store.key_cache import KeyCache
from service.store.records import ApiKey, Item, PageRequest
from service.store.shared import (
    ITEM_ROW_COLUMNS,
    adjustment_refused,
    item_rows,
    key_successor,
    list_query,
    page_of,
    pending_migrations,
    updatable,
    updated_values,
)
from service.store.sqlite import migrate

NOW = "2026-01-01T00:00:00.000000Z"
names = (
    st.text(st.characters(exclude_categories=["Cc", "Cs"]), min_size=1, max_size=4)
    .map(str.strip)
    .filter(bool)
)


def item(name: str, version: int = 1, qty: int = 5) -> Item:
    return Item(f"id-{name}", name, qty, version, NOW, NOW)


@pytest.fixture
def database() -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(":memory:", isolation_level=None)
    migrate(db)
    yield db
    db.close()


def walk(db: sqlite3.Connection, tenant: str, limit: int, prefix: str | None) -> list[str]:
    """Every name a walk of pages finds, following each page's last key."""
    seen: list[str] = []
    after = None
    while True:
        query, params = list_query(tenant, PageRequest(limit, after, prefix), lambda _: "?")
        page = page_of(db.execute(query, params).fetchall(), limit)
        seen += [i.name for i in page.items]
        if page.last_key is None:
            return seen
        after = page.last_key


@given(
    st.lists(names, max_size=12, unique_by=name_key),
    st.integers(min_value=1, max_value=4),
    st.none() | st.text(max_size=2).map(str.casefold),
)
def test_walking_pages_finds_each_matching_item_once_in_name_key_order(
    stored: list[str], limit: int, prefix: str | None
) -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    migrate(db)
    rows = item_rows([("acme", item(n)) for n in stored] + [("globex", item("other"))])
    db.executemany(f"INSERT INTO items ({ITEM_ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    expected = sorted(
        (n for n in stored if not prefix or name_key(n).startswith(prefix)), key=name_key
    )
    assert walk(db, "acme", limit, prefix or None) == expected
    db.close()


def test_the_page_query_numbers_its_placeholders_in_parameter_order() -> None:
    query, params = list_query(
        "acme", PageRequest(10, after_key="b", prefix_key="a"), lambda n: f"${n}"
    )
    assert params == ["acme", "b", "a", "b", 11]
    assert [f"${n}" in query for n in range(1, 6)] == [True] * 5
    assert "$6" not in query


def test_a_page_cut_from_one_row_more_than_the_limit_continues_after_its_last_item() -> None:
    rows = [(*vars_of(item(n)), n) for n in ("a", "b", "c")]
    page = page_of(rows, 2)
    assert [i.name for i in page.items] == ["a", "b"]
    assert page.last_key == "b"
    assert page_of(rows, 3).last_key is None


def vars_of(i: Item) -> tuple[object, ...]:
    return (i.id, i.name, i.qty, i.version, i.created_at, i.updated_at)


@given(st.text(min_size=1, max_size=3), st.text(max_size=3))
def test_the_successor_of_a_prefix_bounds_every_string_that_starts_with_it(
    prefix: str, rest: str
) -> None:
    upper = key_successor(prefix)
    if upper is not None:
        assert prefix <= prefix + rest < upper


def test_the_successor_skips_surrogates_and_ends_at_the_last_code_point() -> None:
    assert key_successor("a\ud7ff") == "a\ue000"
    assert key_successor("ab\U0010ffff") == "ac"
    assert key_successor("\U0010ffff\U0010ffff") is None


def test_an_update_of_a_missing_item_is_not_found_before_any_condition() -> None:
    with pytest.raises(NotFound, match="no item x"):
        updatable(None, "x", frozenset({1}))


def test_an_update_under_a_stale_condition_fails_naming_the_current_version() -> None:
    with pytest.raises(PreconditionFailed, match='"3"'):
        updatable(item("a", version=3), "x", frozenset({2}))
    assert updatable(item("a", version=3), "x", frozenset({2, 3})).version == 3
    assert updatable(item("a", version=3), "x", None).version == 3


def test_an_update_keeps_what_it_does_not_change_and_keys_the_new_name() -> None:
    assert updated_values(item("a", qty=5), {"name": "Äb"}) == ("Äb", "äb", 5)
    assert updated_values(item("a", qty=5), {"qty": 7}) == ("a", "a", 7)


def test_a_refused_adjustment_is_not_found_or_out_of_range() -> None:
    assert isinstance(adjustment_refused("x", None, 1), NotFound)
    refusal = adjustment_refused("x", 5, -6)
    assert isinstance(refusal, QuantityOutOfRange)
    assert "qty 5 + delta -6" in refusal.detail


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_pending_migrations_are_listed_in_order_without_the_applied_ones(backend: str) -> None:
    every = pending_migrations(backend, set())
    assert [name for name, _ in every] == sorted(name for name, _ in every)
    assert every[0][0] == "0001_items_and_keys.sql"
    first = every[0][1]
    assert isinstance(first, str)
    assert "CREATE TABLE items" in first
    python = dict(every)["0003_canonical_caseless_keys.py"]
    assert callable(python)
    assert every[-1][0] == "0004_idempotency.sql"
    assert pending_migrations(backend, {name for name, _ in every}) == []


def test_migrating_twice_applies_nothing_the_second_time(database: sqlite3.Connection) -> None:
    assert migrate(database) == []


def _key(key_id: str) -> ApiKey:
    return ApiKey(key_id, "acme", "writer", b"h", "2026-01-01T00:00:00.000000Z", None)


def test_the_key_cache_keeps_nothing_until_revocations_can_be_heard() -> None:
    cache = KeyCache()
    cache.keep(_key("a"), cache.generation)
    assert cache.get("a") is None
    cache.switch(on=True)
    cache.keep(_key("a"), cache.generation)
    assert cache.get("a") == _key("a")


def test_a_key_read_while_a_revocation_arrived_is_not_kept() -> None:
    cache = KeyCache()
    cache.switch(on=True)
    read_at = cache.generation  # a lookup begins reading the database...
    cache.revoked("a")  # ...a revocation is heard before it ends...
    cache.keep(_key("a"), read_at)  # ...so what it read may be stale
    assert cache.get("a") is None


def test_the_key_cache_forgets_a_revoked_key_and_everything_when_switched_off() -> None:
    cache = KeyCache()
    cache.switch(on=True)
    for key_id in ("a", "b"):
        cache.keep(_key(key_id), cache.generation)
    cache.revoked("a")
    assert (cache.get("a"), cache.get("b")) == (None, _key("b"))
    cache.switch(on=False)
    assert cache.get("b") is None
    cache.switch(on=True)
    assert cache.get("b") is None
