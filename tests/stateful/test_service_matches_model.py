"""The live service and the reference model, step by step, must never disagree.

A Hypothesis state machine sends the same operation, valid or hostile, to the running
service (over HTTP, as any client would) and to ``model.reference``. After every step:
the response's status, problem type and item equal the model's prediction; the full
persisted state, read straight from the database, equals the model's state; and every
invariant of DESIGN §3 holds on the stored rows. Two tenants, each with a writer, plus a
reader, share the service, so isolation is checked at every step too.
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from typing import Any

import hypothesis.strategies as st
import pytest
import requests
from hypothesis import settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from model.invariants import NAME_MAX, QTY_MAX, name_key
from model.reference import (
    AdjustItem,
    Caller,
    Command,
    CreateItem,
    DeleteItem,
    GetItem,
    Inventory,
    Item,
    ListItems,
    Outcome,
    UpdateItem,
    apply,
)
from tests.support import db
from tests.support.contract import ContractClient
from tests.support.server import LiveServer

CALLERS = (
    Caller("acme", "writer"),
    Caller("acme", "reader"),
    Caller("globex", "writer"),
)

# Names built to collide: case variants, NFC/NFD forms, padding, look-alikes.
BASE_NAMES = (
    "apple",
    "Apple",
    "APPLE",
    "caf\u00e9",
    "cafe\u0301",
    "stra\u00dfe",
    "STRASSE",
    "\u01c5",
)
names = st.one_of(
    st.sampled_from(BASE_NAMES),
    st.builds(
        lambda n, pad: pad + n + pad,
        st.sampled_from(BASE_NAMES),
        st.sampled_from([" ", "\t", "\u3000", "\n"]),
    ),
    st.text(max_size=8),
    st.sampled_from(
        [
            "",
            "   ",
            "\u3000\u2003",
            "ap\x00ple",
            "a\x7fb",
            "\ud800",
            "x" * NAME_MAX,
            "x" * (NAME_MAX + 1),
        ]
    ),
)
quantities = st.one_of(
    st.sampled_from([0, 1, QTY_MAX, QTY_MAX + 1, -1]),
    st.integers(min_value=0, max_value=100),
    st.sampled_from([True, 5.0, "5", None]),
)
deltas = st.one_of(
    st.sampled_from([1, -1, QTY_MAX, -QTY_MAX, QTY_MAX + 1, 0, True, 1.5]),
    st.integers(min_value=-10, max_value=10),
)
hostile_bodies: st.SearchStrategy[object] = st.one_of(
    st.sampled_from([[], "x", 5, None, {"name": "a", "qty": 1, "extra": 1}]),
    st.dictionaries(
        st.sampled_from(["name", "qty", "delta", "reason", "x"]),
        st.none() | st.integers() | st.text(max_size=3),
        max_size=3,
    ),
)
missing_ids = st.one_of(
    st.uuids(version=4).map(str), st.sampled_from(["nope", "00000000-0000-0000-0000-00000000000G"])
)


class ServiceMatchesModel(RuleBasedStateMachine):
    """One live service against the reference model."""

    server: LiveServer
    clients: dict[Caller, ContractClient]

    ids = Bundle("ids")
    deleted = Bundle("deleted")

    def __init__(self) -> None:
        super().__init__()
        self.model = Inventory.empty()

    @initialize()
    def start_from_empty(self) -> None:
        assert db.items(self.server.database) == []

    def teardown(self) -> None:
        _empty_items(self.server)

    # --- items -----------------------------------------------------------------------

    @rule(target=ids, caller=st.sampled_from(CALLERS), name=names, qty=quantities)
    def create(self, caller: Caller, name: str, qty: object) -> Any:
        return self._create(caller, {"name": name, "qty": qty})

    @rule(target=ids, caller=st.sampled_from(CALLERS), body=hostile_bodies)
    def create_hostile(self, caller: Caller, body: object) -> Any:
        return self._create(caller, body)

    @rule(caller=st.sampled_from(CALLERS), item_id=ids | deleted | missing_ids)
    def get(self, caller: Caller, item_id: str) -> None:
        response = self.clients[caller].get(f"/items/{item_id}")
        self._expect(GetItem(caller, item_id), response)

    @rule(
        caller=st.sampled_from(CALLERS),
        item_id=ids | deleted | missing_ids,
        name=st.none() | names,
        qty=st.none() | quantities,
        stale=st.booleans(),
    )
    def update(self, caller: Caller, item_id: str, name: object, qty: object, stale: bool) -> None:
        body = {k: v for k, v in (("name", name), ("qty", qty)) if v is not None}
        expected = self._current_version(item_id)
        if expected is not None and stale:
            expected += 1
        headers = {"If-Match": f'"{expected}"'} if expected is not None else {}
        response = self._send(caller, "PATCH", f"/items/{item_id}", body, headers)
        self._expect(UpdateItem(caller, item_id, body, expected), response)

    @rule(
        caller=st.sampled_from(CALLERS),
        item_id=ids | missing_ids,
        delta=deltas,
        reason=st.none() | names,
    )
    def adjust(self, caller: Caller, item_id: str, delta: object, reason: str | None) -> None:
        body = {"delta": delta} | ({} if reason is None else {"reason": reason})
        response = self._send(caller, "POST", f"/items/{item_id}/adjustments", body)
        self._expect(AdjustItem(caller, item_id, body), response)

    @rule(target=deleted, caller=st.sampled_from(CALLERS), item_id=consumes(ids))
    def delete(self, caller: Caller, item_id: str) -> str:
        response = self.clients[caller].delete(f"/items/{item_id}")
        self._expect(DeleteItem(caller, item_id), response)
        return item_id

    @rule(caller=st.sampled_from(CALLERS), item_id=deleted | missing_ids)
    def delete_again(self, caller: Caller, item_id: str) -> None:
        response = self.clients[caller].delete(f"/items/{item_id}")
        self._expect(DeleteItem(caller, item_id), response)

    @rule(
        caller=st.sampled_from(CALLERS),
        prefix=st.none() | st.sampled_from(["a", "A", "caf", "CAFE\u0301", "stras", "x", " a"]),
        limit=st.integers(min_value=1, max_value=4),
    )
    def list_every_page(self, caller: Caller, prefix: str | None, limit: int) -> None:
        """Walking all pages yields each item exactly once, in the model's order."""
        seen: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": limit} | (
            {} if prefix is None else {"name_prefix": prefix}
        )
        while True:
            response = self.clients[caller].get("/items", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(page["items"]) <= limit
            seen += page["items"]
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
        _, outcome = apply(self.model, ListItems(caller, prefix))
        assert outcome.items is not None
        assert [_public(i) for i in seen] == [i.as_json() for i in outcome.items]

    # --- the checks after every step ---------------------------------------------------

    @invariant()
    def persisted_state_equals_model(self) -> None:
        rows = db.items(self.server.database)
        stored = {(r["id"], r["tenant"], r["name"], r["qty"], r["version"]) for r in rows}
        expected = {(i.id, i.tenant, i.name, i.qty, i.version) for i in self.model.items.values()}
        assert stored == expected

    @invariant()
    def stored_rows_satisfy_every_invariant(self) -> None:
        rows = db.items(self.server.database)
        for r in rows:
            assert r["name"] == unicodedata.normalize("NFC", r["name"]).strip()
            assert 1 <= len(r["name"]) <= NAME_MAX
            assert not any(unicodedata.category(c) in ("Cc", "Cs") for c in r["name"])
            assert type(r["qty"]) is int
            assert 0 <= r["qty"] <= QTY_MAX
            assert r["name_key"] == name_key(r["name"])
            assert r["version"] >= 1
        assert len({(r["tenant"], r["name_key"]) for r in rows}) == len(rows)

    # --- helpers -------------------------------------------------------------------------

    def _create(self, caller: Caller, body: object) -> Any:
        response = self._send(caller, "POST", "/items", body)
        new_id = response.json()["id"] if response.status_code == 201 else str(uuid.uuid4())
        self._expect(CreateItem(caller, body, new_id), response)
        return new_id if response.status_code == 201 else multiple()

    def _send(
        self,
        caller: Caller,
        method: str,
        path: str,
        body: object,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """Send ``body`` as JSON, whatever it is (``json=None`` would send no body at all)."""
        headers = {"Content-Type": "application/json"} | (headers or {})
        return self.clients[caller].request(method, path, data=json.dumps(body), headers=headers)

    def _expect(self, command: Command, response: requests.Response) -> Outcome:
        self.model, outcome = apply(self.model, command)
        body: Any = response.json() if response.content else None
        assert response.status_code == outcome.status, (command, body, outcome)
        if outcome.problem is not None:
            assert body["type"] == f"urn:inventory:problem:{outcome.problem}", body
        if outcome.item is not None:
            assert _public(body) == outcome.item.as_json()
            assert response.headers["ETag"] == f'"{outcome.item.version}"'
        return outcome

    def _current_version(self, item_id: str) -> int | None:
        item: Item | None = self.model.items.get(item_id)
        return item.version if item is not None else None


def _public(item: dict[str, Any]) -> dict[str, Any]:
    """An item as the model sees it: without the timestamps it cannot predict."""
    return {k: v for k, v in item.items() if k not in ("created_at", "updated_at")}


def _empty_items(server: LiveServer) -> None:
    """Remove every item (keys stay) so the next example starts from an empty inventory."""
    db.execute(server.database, "DELETE FROM items")


def test_service_matches_model(server: LiveServer) -> None:
    clients = {c: ContractClient(server.url, server.create_key(c.tenant, c.role)) for c in CALLERS}
    ServiceMatchesModel.server = server
    ServiceMatchesModel.clients = clients
    # The examples come from the active profile (tests/conftest.py): ci, or deep.
    run_state_machine_as_test(
        ServiceMatchesModel,
        settings=settings(stateful_step_count=30, deadline=None),
    )
    for client in clients.values():
        client.close()


@pytest.fixture(autouse=True)
def _no_leftovers(server: LiveServer) -> None:
    """Each run starts from an empty inventory."""
    _empty_items(server)
