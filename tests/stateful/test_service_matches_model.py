"""The live service and the reference model, step by step, must never disagree.

A Hypothesis state machine sends the same operation, valid or hostile, to the running
service (over HTTP, as any client would) and to ``model.reference``. After every step:
the response's status, problem type and item equal the model's prediction; the full
persisted state, read straight from the database, equals the model's state; and every
invariant (README, "The invariants") holds on the stored rows. Two tenants, each with a
writer, plus a reader, share the service, so isolation is checked at every step too.
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

import hypothesis.strategies as st
import pytest
import requests
from hypothesis import event, settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from model.invariants import NAME_MAX, QTY_MAX, name_key
from model.reference import (
    AdjustItem,
    ApplyBatch,
    Caller,
    Command,
    CreateItem,
    DeleteItem,
    Event,
    GetItem,
    Inventory,
    Item,
    Keyed,
    ListItemEvents,
    ListItems,
    Outcome,
    UpdateItem,
    apply,
)
from tests.support import db, postgres
from tests.support.contract import ContractClient
from tests.support.db import Database, PostgresDatabase
from tests.support.problems import PREFIX
from tests.support.server import LiveServer

ACME, ACME_READER, GLOBEX = (
    Caller("acme", "writer"),
    Caller("acme", "reader"),
    Caller("globex", "writer"),
)
CALLERS = (ACME, ACME_READER, GLOBEX)
WRITERS = {"acme": ACME, "globex": GLOBEX}

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
    "b",
    "B",
    # Each group one name under canonical caseless matching (Unicode D145): U+0390 and
    # U+0399 U+0308 U+0301 (not one name by casefold(NFC) alone), U+1E9E, sharp s and
    # "ss", W + ring and U+1E98. The model shares name_key; tests/unit/test_invariants.py
    # holds name_key against D145 itself.
    "\u0390",
    "\u0399\u0308\u0301",
    "\u1e9e",
    "\u00df",
    "ss",
    "W\u030a",
    "\u1e98",
)
PADDING = st.sampled_from(["", " ", "\t", "\u3000", "\n", " \u2003"])
valid_names = st.one_of(
    st.builds(lambda pad, n, end: pad + n + end, PADDING, st.sampled_from(BASE_NAMES), PADDING),
    st.text(
        st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), min_size=1, max_size=6
    ).filter(lambda n: n.strip() != ""),
)
invalid_names = st.one_of(
    st.sampled_from(
        ["", "   ", "\u3000\u2003", "ap\x00ple", "a\x7fb", "a\x85b", "\ud800", "x" * (NAME_MAX + 1)]
    ),
    st.sampled_from([None, 5, True, ["apple"]]),
)
valid_quantities = st.one_of(
    st.sampled_from([0, 1, QTY_MAX - 1, QTY_MAX]), st.integers(min_value=0, max_value=20)
)
invalid_quantities = st.sampled_from([QTY_MAX + 1, -1, 10**30, True, False, 5.0, "5", None, [5]])
valid_deltas = st.one_of(
    st.sampled_from([1, -1, QTY_MAX, -QTY_MAX, QTY_MAX - 1, -(QTY_MAX - 1)]),
    st.integers(min_value=-25, max_value=25).filter(bool),
)
invalid_deltas = st.sampled_from([0, QTY_MAX + 1, -QTY_MAX - 1, True, 1.5, "1", None])
hostile_bodies: st.SearchStrategy[object] = st.one_of(
    st.sampled_from([[], "x", 5, None, {"name": "a", "qty": 1, "extra": 1}, {}]),
    st.dictionaries(
        st.sampled_from(["name", "qty", "delta", "reason", "x"]),
        st.none() | st.integers() | st.text(max_size=3),
        max_size=3,
    ),
)
missing_ids = st.one_of(
    st.uuids(version=4).map(str),
    st.sampled_from(
        ["nope", "00000000-0000-0000-0000-00000000000G", "0190A7C4-0000-7000-8000-000000000000"]
    ),
)


def _sendable(value: object) -> bool:
    """Whether ``value`` can travel in a query string at all (a string without surrogates)."""
    return isinstance(value, str) and value.encode("utf-8", "surrogatepass") == value.encode(
        "utf-8", "replace"
    )


# Idempotency-Keys, as sent: few, so that both tenants reuse them, for the same request (a
# replay) and for others (422); '"k1"' is k1 in the draft's quoted form.
idempotency_keys = st.none() | st.sampled_from(["k1", '"k1"', "k2", "k3"])
Write = CreateItem | UpdateItem | DeleteItem | AdjustItem | ApplyBatch
# A batch's plan: each operation's kind, the item it names, and a name, number and If-Match
# mode to build it from (a create takes the name and |number|; an update |number| as qty).
batch_plans = st.lists(
    st.tuples(
        st.sampled_from(["create", "update", "adjust", "adjust", "delete"]),
        st.sampled_from(["known", "known", "known", "missing"]),
        valid_names,
        st.integers(min_value=-6, max_value=6),
        st.sampled_from(["none", "current", "current", "stale"]),
    ),
    min_size=1,
    max_size=4,
)


def _keyed(command: Write, key: str | None) -> Command:
    """``command``, sent with the Idempotency-Key header ``key`` (if any)."""
    return command if key is None else Keyed(key.strip('"'), command)


# Who sends a command about an existing item: its owner mostly, sometimes the other
# tenant (must see 404 / change nothing), sometimes acme's reader (403 on writes).
senders = st.sampled_from(["owner", "owner", "owner", "other tenant", "reader"])


# The examples (max_examples) come from the profile tests/conftest.py loaded before this
# module was imported: ci, deep, or mutants.
@settings(stateful_step_count=50, deadline=None)
class ServiceMatchesModel(RuleBasedStateMachine):
    """One live service against the reference model."""

    server: ClassVar[LiveServer]
    clients: ClassVar[dict[Caller, ContractClient]]
    key_ids: ClassVar[dict[Caller, str]]

    ids = Bundle("ids")
    deleted = Bundle("deleted")

    def __init__(self) -> None:
        super().__init__()
        self.model = Inventory.empty()
        self.cursors = {"acme": "0", "globex": "0"}  # each tenant's follower resumes here
        self.first_answers: dict[tuple[str, str], bytes] = {}  # each kept answer, as sent
        self.keyed_requests: list[tuple[Command, str, str, object, dict[str, str]]] = []

    @initialize()
    def start_from_empty(self) -> None:
        assert db.items(self.server.database) == []
        assert db.events(self.server.database) == []

    def teardown(self) -> None:
        _empty_items(self.server)

    # --- creating ------------------------------------------------------------------------

    @rule(
        target=ids,
        caller=st.sampled_from([ACME, GLOBEX]),
        name=valid_names,
        qty=valid_quantities,
        key=idempotency_keys,
    )
    def create(self, caller: Caller, name: str, qty: int, key: str | None) -> Any:
        return self._create(caller, {"name": name, "qty": qty}, key)

    @rule(target=ids, caller=st.sampled_from([ACME, GLOBEX]), name=valid_names, reason=valid_names)
    def create_with_a_reason(self, caller: Caller, name: str, reason: str) -> Any:
        return self._create(caller, {"name": name, "qty": 1, "reason": reason})

    @rule(
        target=ids,
        caller=st.sampled_from(CALLERS),
        name=valid_names | invalid_names,
        qty=valid_quantities | invalid_quantities,
    )
    def create_with_any_fields(self, caller: Caller, name: object, qty: object) -> Any:
        return self._create(caller, {"name": name, "qty": qty})

    @rule(target=ids, caller=st.sampled_from(CALLERS), body=hostile_bodies)
    def create_hostile(self, caller: Caller, body: object) -> Any:
        return self._create(caller, body)

    # --- reading ---------------------------------------------------------------------------

    @rule(item_id=ids, sender=senders)
    def get(self, item_id: str, sender: str) -> None:
        caller = self._sender(item_id, sender)
        self._expect(GetItem(caller, item_id), self.clients[caller].get(f"/items/{item_id}"))

    @rule(caller=st.sampled_from(CALLERS), item_id=deleted | missing_ids)
    def get_missing(self, caller: Caller, item_id: str) -> None:
        self._expect(GetItem(caller, item_id), self.clients[caller].get(f"/items/{item_id}"))

    @rule(
        caller=st.sampled_from(CALLERS),
        prefix=st.none()
        | st.sampled_from(["a", "A", "caf", "CAFE\u0301", "stras", "b", " a", "\u01c6"]),
        limit=st.sampled_from([1, 1, 2, 3]),  # 1 most: every item is a page boundary
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

    # --- changing ----------------------------------------------------------------------------

    @rule(
        item_id=ids,
        sender=senders,
        name=st.none() | valid_names,
        qty=st.none() | valid_quantities,
        if_match=st.sampled_from(["none", "current", "stale"]),
        reason=st.none() | valid_names,
        key=idempotency_keys,
    )
    def update(
        self,
        item_id: str,
        sender: str,
        name: object,
        qty: object,
        if_match: str,
        reason: object,
        key: str | None,
    ) -> None:
        self._update(item_id, sender, name, qty, if_match, reason, key)

    @rule(
        item_id=ids,
        name=st.none() | valid_names | invalid_names,
        qty=st.none() | invalid_quantities,
    )
    def update_with_invalid_fields(self, item_id: str, name: object, qty: object) -> None:
        self._update(item_id, "owner", name, qty, "none")

    @rule(
        item_id=ids,
        sender=senders,
        delta=valid_deltas,
        reason=st.none() | valid_names,
        if_match=st.sampled_from(["none", "none", "current", "stale"]),
        key=idempotency_keys,
    )
    def adjust(
        self,
        item_id: str,
        sender: str,
        delta: int,
        reason: str | None,
        if_match: str,
        key: str | None,
    ) -> None:
        body: dict[str, object] = {"delta": delta}
        if reason is not None:
            body["reason"] = reason
        self._adjust(item_id, sender, body, if_match, key)

    @rule(item_id=ids, delta=invalid_deltas | valid_deltas, reason=st.none() | invalid_names)
    def adjust_with_invalid_fields(self, item_id: str, delta: object, reason: object) -> None:
        self._adjust(
            item_id, "owner", {"delta": delta} | ({} if reason is None else {"reason": reason})
        )

    @rule(caller=st.sampled_from(CALLERS), item_id=deleted | missing_ids, delta=valid_deltas)
    def adjust_missing(self, caller: Caller, item_id: str, delta: int) -> None:
        response = self._send(caller, "POST", f"/items/{item_id}/adjustments", {"delta": delta})
        self._expect(AdjustItem(caller, item_id, {"delta": delta}), response)

    @rule(target=deleted, item_id=consumes(ids))
    def delete(self, item_id: str) -> str:
        caller = self._sender(item_id, "owner")
        self._expect(DeleteItem(caller, item_id), self.clients[caller].delete(f"/items/{item_id}"))
        return item_id

    @rule(
        item_id=ids | deleted,
        reason=valid_names | invalid_names.filter(_sendable),
        key=idempotency_keys,
    )
    def delete_with_a_reason(self, item_id: str, reason: str, key: str | None) -> None:
        """A valid reason is stored with the event; an invalid one is a 400 changing nothing."""
        caller = self._sender(item_id, "owner")
        response = self.clients[caller].delete(
            f"/items/{item_id}", params={"reason": reason}, headers=_key_header(key)
        )
        self._expect(_keyed(DeleteItem(caller, item_id, reason), key), response)

    # --- batches -------------------------------------------------------------------------

    @rule(
        target=ids,
        caller=st.sampled_from([ACME, ACME, GLOBEX, GLOBEX, ACME_READER]),
        plan=batch_plans,
        known=st.lists(ids, min_size=1, max_size=2),  # few: operations meet on an item
        missing=missing_ids,
        reason=st.none() | valid_names,
        key=idempotency_keys,
    )
    def apply_a_batch(
        self,
        caller: Caller,
        plan: list[tuple[str, str, str, int, str]],
        known: list[str],
        missing: str,
        reason: str | None,
        key: str | None,
    ) -> Any:
        """All or nothing: the model's results, or its refusal naming the operation."""
        operations = [
            self._batch_operation(
                kind, known[i % 2 % len(known)] if which == "known" else missing, n, q, m
            )
            for i, (kind, which, n, q, m) in enumerate(plan)
        ]
        body = {"operations": operations} | ({} if reason is None else {"reason": reason})
        headers = _key_header(key)
        before = self.model
        response = self._send(caller, "POST", "/batch", body, headers)
        answer = response.json() if response.status_code == 200 else None
        created = [
            result["id"]
            for result, op in zip(answer["results"] if answer else (), operations, strict=False)
            if op["op"] == "create"
        ]
        command = _keyed(ApplyBatch(caller, body, tuple(created)), key)
        if isinstance(command, Keyed):
            self.keyed_requests.append((command, "POST", "/batch", body, headers))
        outcome = self._expect(command, response)
        if answer is not None and not outcome.replayed:
            self._check_batch_events(before, answer["batch_id"])
        return multiple(*created) if outcome.results is not None else multiple()

    @rule(
        item_id=ids,
        deltas=st.tuples(valid_deltas, valid_deltas),
        expect=st.sampled_from(["version after the first", "version before the batch"]),
    )
    def adjust_one_item_twice_in_a_batch(
        self, item_id: str, deltas: tuple[int, int], expect: str
    ) -> None:
        """The second adjustment's if_match is judged against what the first one left."""
        caller = self._sender(item_id, "owner")
        version = self._current_version(item_id) or 1
        if_match = version + 1 if expect == "version after the first" else version
        body = {
            "operations": [
                {"op": "adjust", "item_id": item_id, "delta": deltas[0]},
                {"op": "adjust", "item_id": item_id, "delta": deltas[1], "if_match": if_match},
            ]
        }
        self._expect(ApplyBatch(caller, body), self._send(caller, "POST", "/batch", body))

    # --- idempotent retries --------------------------------------------------------------

    @precondition(lambda self: self.keyed_requests)
    @rule(choice=st.integers(min_value=0))
    def retry_a_keyed_write(self, choice: int) -> None:
        """A keyed write sent again exactly as before: its kept answer again, byte for byte,
        nothing changed (or, if it was never kept, 400 or 403, it runs again)."""
        command, method, path, body, headers = self.keyed_requests[
            choice % len(self.keyed_requests)
        ]
        response = self._send(command.caller, method, path, body, headers)
        self._expect(command, response)

    # --- the ledger ----------------------------------------------------------------------

    @rule(item_id=ids | deleted | missing_ids, sender=senders, limit=st.integers(1, 3))
    def read_history(self, item_id: str, sender: str, limit: int) -> None:
        """Walking an item's history page by page yields exactly the model's events."""
        caller = self._sender(item_id, sender)
        seen, after = [], None
        while True:
            params = {"limit": limit} | ({} if after is None else {"after": after})
            response = self.clients[caller].get(f"/items/{item_id}/events", params=params)
            if response.status_code != 200 or response.json()["next_cursor"] is None:
                break
            seen += response.json()["events"]
            after = response.json()["next_cursor"]
        outcome = self._expect(ListItemEvents(caller, item_id), response)
        if outcome.events is not None:
            seen += response.json()["events"]
            self._check_events(seen, outcome.events)

    @rule(caller=st.sampled_from(CALLERS), limit=st.integers(1, 4))
    def follow_the_feed(self, caller: Caller, limit: int) -> None:
        """A follower resuming only from next_cursor sees each event once, in order."""
        cursor = self.cursors[caller.tenant]
        params: dict[str, str | int] = {"after": cursor, "limit": limit}
        response = self.clients[caller].get("/events", params=params)
        assert response.status_code == 200, response.text
        expected = self.model.feed(caller.tenant, int(cursor))[:limit]
        body = response.json()
        self._check_events(body["events"], expected)
        assert body["next_cursor"] == str(expected[-1].seq if expected else cursor)
        self.cursors[caller.tenant] = body["next_cursor"]
        event(f"feed page of {len(expected)}")

    @rule(
        item_id=ids | deleted | missing_ids,
        sender=st.sampled_from(["other tenant", "reader", "owner of nothing"]),
    )
    def delete_changing_nothing(self, item_id: str, sender: str) -> None:
        """Another tenant's, a reader's, or a repeated / random DELETE: 204 or 403, no change."""
        if sender == "owner of nothing" and item_id in self.model.items:
            sender = "other tenant"
        caller = self._sender(item_id, sender)
        self._expect(DeleteItem(caller, item_id), self.clients[caller].delete(f"/items/{item_id}"))

    # --- the checks after every step ---------------------------------------------------

    @invariant()
    def persisted_state_equals_model(self) -> None:
        rows = db.items(self.server.database)
        stored = {(r["id"], r["tenant"], r["name"], r["qty"], r["version"]) for r in rows}
        expected = {(i.id, i.tenant, i.name, i.qty, i.version) for i in self.model.items.values()}
        assert stored == expected

    @invariant()
    def stored_ledger_equals_model(self) -> None:
        stored = [
            (r["tenant"], r["seq"], r["item_id"], r["type"], r["version"], r["qty"], r["delta"],
             r["name"], r["reason"], r["key_id"])
            for r in db.events(self.server.database)
        ]  # fmt: skip
        expected = [
            (e.tenant, e.seq, e.item_id, e.kind, e.version, e.qty, e.delta, e.name, e.reason,
             self.key_ids[e.by])
            for e in sorted(self.model.events, key=lambda e: (e.tenant, e.seq))
        ]  # fmt: skip
        assert stored == expected

    @invariant()
    def kept_answers_equal_model(self) -> None:
        stored = {(r["tenant"], r["key"], r["status"]) for r in db.answers(self.server.database)}
        expected = {(t, k, outcome.status) for (t, k), (_, outcome) in self.model.answers.items()}
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

    def _create(self, caller: Caller, body: object, key: str | None = None) -> Any:
        response = self._send(caller, "POST", "/items", body, _key_header(key))
        new_id = response.json()["id"] if response.status_code == 201 else str(uuid.uuid4())
        command = _keyed(CreateItem(caller, body, new_id), key)
        if isinstance(command, Keyed):
            self.keyed_requests.append((command, "POST", "/items", body, _key_header(key)))
        self._expect(command, response)
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

    def _check_events(self, seen: list[dict[str, Any]], expected: tuple[Event, ...]) -> None:
        """The events the service showed are the model's, each made with its sender's key."""
        assert [_public_event(e) for e in seen] == [e.as_json() for e in expected]
        assert [e["key_id"] for e in seen] == [self.key_ids[e.by] for e in expected]

    def _expect(self, command: Command, response: requests.Response) -> Outcome:
        before, (self.model, outcome) = self.model, apply(self.model, command)
        event(f"{type(command).__name__} -> {outcome.status} {outcome.problem or ''}")
        body: Any = response.json() if response.content else None
        assert response.status_code == outcome.status, (command, body, outcome)
        if isinstance(command, Keyed):
            self._check_kept_answer(before, command, outcome, response)
        if outcome.problem is not None:
            assert body["type"] == PREFIX + outcome.problem, body
        if outcome.results is not None:
            results = [None if r is None else _public(r) for r in body["results"]]
            assert results == [None if i is None else i.as_json() for i in outcome.results]
        if outcome.operation is not None:
            assert body["operation"] == outcome.operation, body
        if outcome.item is not None:
            assert _public(body) == outcome.item.as_json()
            assert response.headers["ETag"] == f'"{outcome.item.version}"'
        return outcome

    def _batch_operation(
        self, kind: str, item_id: str, name: str, number: int, if_match: str
    ) -> dict[str, object]:
        """One operation of a batch, built from a plan's step."""
        operation: dict[str, object] = {"op": kind}
        if kind == "create":
            return operation | {"name": name, "qty": abs(number)}
        operation["item_id"] = item_id
        if kind == "update":
            operation["qty"] = abs(number)
        if kind == "adjust":
            operation["delta"] = number or 1
        expected = self._condition(item_id, if_match)
        if kind in ("update", "adjust") and expected is not None:
            operation["if_match"] = expected
        return operation

    def _check_batch_events(self, before: Inventory, batch_id: str) -> None:
        """The events a batch appended, and only those, carry its id."""
        appended = self.model.events[len(before.events) :]
        stored = [
            (e["tenant"], e["seq"]) for e in db.events(self.server.database)
            if e["batch_id"] == batch_id
        ]  # fmt: skip
        assert stored == sorted((e.tenant, e.seq) for e in appended)
        event(f"batch of {len(appended)} events")

    def _check_kept_answer(
        self, before: Inventory, command: Keyed, outcome: Outcome, response: requests.Response
    ) -> None:
        """A replay is marked and repeats the kept answer's bytes; a first answer is kept."""
        scope = (command.caller.tenant, command.key)
        if outcome.replayed:
            event(f"replayed {outcome.status}")
            assert response.headers.get("Idempotent-Replayed") == "true"
            assert response.content == self.first_answers[scope]
            return
        assert "Idempotent-Replayed" not in response.headers
        if scope in self.model.answers and scope not in before.answers:
            self.first_answers[scope] = response.content

    def _send_write(
        self,
        command: Write,
        key: str | None,
        method: str,
        path: str,
        body: object,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Send a write (with ``key``, if any); remember a keyed one, to retry it later."""
        headers = (headers or {}) | _key_header(key)
        response = self._send(command.caller, method, path, body, headers)
        keyed = _keyed(command, key)
        if isinstance(keyed, Keyed):
            self.keyed_requests.append((keyed, method, path, body, headers))
        self._expect(keyed, response)

    def _update(
        self,
        item_id: str,
        sender: str,
        name: object,
        qty: object,
        if_match: str,
        reason: object = None,
        key: str | None = None,
    ) -> None:
        caller = self._sender(item_id, sender)
        fields = (("name", name), ("qty", qty), ("reason", reason))
        body = {k: v for k, v in fields if v is not None}
        expected = self._condition(item_id, if_match)
        headers = {} if expected is None else {"If-Match": f'"{expected}"'}
        command = UpdateItem(caller, item_id, body, expected)
        self._send_write(command, key, "PATCH", f"/items/{item_id}", body, headers)

    def _adjust(
        self,
        item_id: str,
        sender: str,
        body: dict[str, object],
        if_match: str = "none",
        key: str | None = None,
    ) -> None:
        caller = self._sender(item_id, sender)
        expected = self._condition(item_id, if_match)
        headers = {} if expected is None else {"If-Match": f'"{expected}"'}
        command = AdjustItem(caller, item_id, body, expected)
        self._send_write(command, key, "POST", f"/items/{item_id}/adjustments", body, headers)

    def _condition(self, item_id: str, if_match: str) -> int | None:
        """The version an If-Match names: none, the item's current one, or a stale one."""
        version = self._current_version(item_id)
        if if_match == "none" or version is None:
            return None
        return version + (if_match == "stale")

    def _sender(self, item_id: str, sender: str) -> Caller:
        """The caller ``sender`` names, relative to the item's owner."""
        item = self.model.items.get(item_id)
        owner = item.tenant if item is not None else "acme"
        if sender == "reader":
            return ACME_READER
        if sender == "other tenant":
            return WRITERS["globex" if owner == "acme" else "acme"]
        return WRITERS[owner]

    def _current_version(self, item_id: str) -> int | None:
        item: Item | None = self.model.items.get(item_id)
        return item.version if item is not None else None


def _key_header(key: str | None) -> dict[str, str]:
    return {} if key is None else {"Idempotency-Key": key}


def _public_event(event: dict[str, Any]) -> dict[str, Any]:
    """An event as the model sees it: without who, which request, which batch and when."""
    return {k: v for k, v in event.items() if k not in ("key_id", "request_id", "batch_id", "at")}


def _public(item: dict[str, Any]) -> dict[str, Any]:
    """An item as the model sees it: without the timestamps it cannot predict."""
    return {k: v for k, v in item.items() if k not in ("created_at", "updated_at")}


def _empty_items(server: LiveServer) -> None:
    """Remove every item (keys stay) so the next example starts from an empty inventory."""
    db.empty_items(server.database)


@pytest.fixture(scope="class")
def live_service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """A live server on the backend the TestCase names, with a client for every caller.

    Started before the machine's TestCase runs and stopped after it; the machine reads them
    from its class attributes, as each example makes a new machine.
    """
    backend = request.cls.backend
    database: Database
    if backend == "sqlite":
        database = tmp_path_factory.mktemp("stateful") / "inventory.db"
    else:
        database = PostgresDatabase(request.getfixturevalue("postgres_url"))
    server = LiveServer(database).start()
    keys = {c: server.create_key(c.tenant, c.role) for c in CALLERS}
    clients = {c: ContractClient(server.url, key) for c, key in keys.items()}
    ServiceMatchesModel.server = server
    ServiceMatchesModel.clients = clients
    ServiceMatchesModel.key_ids = {c: key.split("_")[1] for c, key in keys.items()}
    _empty_items(server)  # each run starts from an empty inventory
    yield
    for client in clients.values():
        client.close()
    server.stop()
    if isinstance(database, PostgresDatabase):
        postgres.empty_database(database.url)


# Hypothesis' own form (``Machine.TestCase``), so that ``event()`` statistics are reported
# (``pytest --hypothesis-show-statistics``); one TestCase per backend, which pytest collects
# and runs (``runTest``) between the class fixture's setup and teardown. mypy cannot take a
# base class made at run time, hence the ignore.


@pytest.mark.usefixtures("live_service")
class TestServiceMatchesModelOnSqlite(ServiceMatchesModel.TestCase):  # type: ignore[misc,valid-type]
    """The state machine against a live server on a SQLite file."""

    backend = "sqlite"


@pytest.mark.usefixtures("live_service")
class TestServiceMatchesModelOnPostgres(ServiceMatchesModel.TestCase):  # type: ignore[misc,valid-type]
    """The state machine against a live server on the session's PostgreSQL database."""

    backend = "postgres"
