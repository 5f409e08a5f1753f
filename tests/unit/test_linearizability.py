"""The linearizability checker (``tests.support.linearizability``) judges histories rightly.

Hand-made histories show each rule of the item's sequential specification and of real
time: a read after a write returned sees it, overlapping calls may take effect in either
order, a lost update or a refusal that should have succeeded has no legal order, a call
with an unknown outcome may take effect once after its invocation or never. Generated
histories, made by running the specification at a random instant inside each call, are
always accepted; the same histories with answers swapped or duplicated are rejected; and
on small histories the checker agrees with a brute force over every order.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.invariants import QTY_MAX
from tests.support.linearizability import (
    UNKNOWN,
    Adjust,
    Answer,
    Call,
    Command,
    Get,
    SearchTooLarge,
    State,
    Update,
    apply,
    explain,
    linearize,
)

START = State(qty=1, version=1)
REFUSED, STALE = Answer(409), Answer(412)


def ok(qty: int, version: int) -> Answer:
    return Answer(200, State(qty, version))


def call(command: Command, invoked: float, returned: float, answer: Answer | None) -> Call:
    return Call(command, invoked, returned, answer)


def unknown(command: Command, invoked: float) -> Call:
    """A call whose answer says nothing of its outcome (a 503, a lost connection)."""
    return Call(command, invoked, UNKNOWN, None)


def linearizable(history: Sequence[Call], initial: State = START) -> bool:
    return linearize(initial, history).linearizable


# --- an independent judge of one order, and a brute force over all of them -----------------


def is_legal_order(initial: State, history: Sequence[Call], order: Sequence[int]) -> bool:
    """Whether ``order`` places every call with a known answer, each once, keeps real time
    (a call that returned before another was invoked comes first) and gives each placed
    call its answer."""
    if len(set(order)) != len(order) or any(
        history[i].answer is not None for i in set(range(len(history))) - set(order)
    ):
        return False
    for before, after in itertools.combinations(order, 2):
        if history[after].returned <= history[before].invoked:
            return False
    state = initial
    for index in order:
        state, answer = apply(state, history[index].command)
        if history[index].answer not in (None, answer):
            return False
    return True


def brute_force(initial: State, history: Sequence[Call]) -> bool:
    """Whether any order of any admissible subset of ``history`` is legal."""
    known = [i for i, c in enumerate(history) if c.answer is not None]
    maybe = [i for i, c in enumerate(history) if c.answer is None]
    for size in range(len(maybe) + 1):
        for chosen in itertools.combinations(maybe, size):
            for order in itertools.permutations(known + list(chosen)):
                if is_legal_order(initial, history, order):
                    return True
    return False


# --- hand-made histories -------------------------------------------------------------


def test_an_empty_history_is_linearizable() -> None:
    assert linearize(START, []).order == ()


def test_calls_made_one_after_another_are_judged_in_the_order_they_were_made() -> None:
    history = [
        call(Adjust(2), 0, 1, ok(3, 2)),
        call(Get(), 2, 3, ok(3, 2)),
        call(Update(5, if_match=2), 4, 5, ok(5, 3)),
        call(Update(0), 6, 7, ok(0, 4)),
        call(Get(), 8, 9, ok(0, 4)),
    ]
    verdict = linearize(START, history)

    assert verdict.order == (0, 1, 2, 3, 4)
    assert is_legal_order(START, history, verdict.order)
    read_first = [call(Get(), 0, 1, ok(3, 2)), call(Adjust(2), 2, 3, ok(3, 2))]
    assert not linearizable(read_first)  # the same answers, the calls made the other way round


def test_a_read_invoked_after_a_write_returned_must_see_that_write() -> None:
    write = call(Adjust(2), 0, 1, ok(3, 2))

    assert not linearizable([write, call(Get(), 1.5, 2, ok(1, 1))])  # a stale read
    assert linearizable([write, call(Get(), 1.5, 2, ok(3, 2))])


def test_a_call_invoked_the_instant_another_returned_comes_after_it() -> None:
    """Invocations are stamped before sending and answers after receiving: equal stamps
    still mean the one answered before the other was sent."""
    assert not linearizable([call(Adjust(2), 0, 1, ok(3, 2)), call(Get(), 1, 2, ok(1, 1))])


def test_a_read_overlapping_a_write_may_see_the_state_before_or_after_it() -> None:
    write = call(Adjust(2), 0, 2, ok(3, 2))

    assert linearizable([write, call(Get(), 1, 3, ok(1, 1))])
    assert linearizable([write, call(Get(), 1, 3, ok(3, 2))])
    assert not linearizable([write, call(Get(), 1, 3, ok(2, 2))])  # a state never reached


def test_overlapping_adjustments_may_take_effect_in_the_other_order_than_invoked() -> None:
    first = call(Adjust(1), 0, 10, ok(4, 3))
    second = call(Adjust(2), 1, 9, ok(3, 2))

    verdict = linearize(START, [first, second])

    assert verdict.order == (1, 0)


def test_two_adjustments_that_both_answer_the_same_version_are_a_lost_update() -> None:
    history = [call(Adjust(1), 0, 2, ok(2, 2)), call(Adjust(1), 1, 3, ok(2, 2))]

    assert not linearizable(history)


def test_an_adjustment_is_refused_exactly_when_it_would_leave_the_range() -> None:
    assert linearizable([call(Adjust(-2), 0, 1, REFUSED)])
    assert not linearizable([call(Adjust(-1), 0, 1, REFUSED)])  # 1 - 1 = 0 is in range
    assert not linearizable([call(Adjust(-2), 0, 1, ok(-1, 2))])
    assert linearizable([call(Adjust(-1), 0, 1, ok(0, 2))])
    near_max = State(QTY_MAX - 1, 7)
    assert linearizable([call(Adjust(2), 0, 1, REFUSED)], near_max)
    assert linearizable([call(Adjust(1), 0, 1, ok(QTY_MAX, 8))], near_max)


def test_a_refusal_is_legal_when_an_overlapping_write_may_have_emptied_the_item() -> None:
    emptied = call(Update(0), 0, 3, ok(0, 2))

    assert linearizable([emptied, call(Adjust(-1), 1, 2, REFUSED)])
    assert not linearizable([emptied, call(Adjust(-1), 4, 5, ok(0, 3))])  # after: 0 - 1 < 0


def test_if_match_decides_whether_an_update_applies() -> None:
    assert linearizable([call(Update(4, if_match=1), 0, 1, ok(4, 2))])
    assert linearizable([call(Update(4, if_match=2), 0, 1, STALE)])
    assert not linearizable([call(Update(4, if_match=1), 0, 1, STALE)])  # it matched
    assert not linearizable([call(Update(4, if_match=2), 0, 1, ok(4, 2))])  # it did not
    # Racing an adjustment, either may go first; whichever did, the other's answer shows it.
    assert linearizable([call(Adjust(1), 0, 3, ok(2, 2)), call(Update(4, 1), 1, 2, STALE)])
    assert linearizable([call(Adjust(1), 0, 3, ok(5, 3)), call(Update(4, 1), 1, 2, ok(4, 2))])
    assert not linearizable([call(Adjust(1), 0, 3, ok(2, 2)), call(Update(4, 1), 1, 2, ok(4, 2))])


def test_if_match_decides_whether_an_adjustment_applies_before_its_range_does() -> None:
    assert linearizable([call(Adjust(2, if_match=1), 0, 1, ok(3, 2))])
    assert linearizable([call(Adjust(2, if_match=2), 0, 1, STALE)])
    assert not linearizable([call(Adjust(2, if_match=1), 0, 1, STALE)])  # it matched
    assert not linearizable([call(Adjust(2, if_match=2), 0, 1, ok(3, 2))])  # it did not
    # Out of range and stale: the version is judged first.
    assert linearizable([call(Adjust(-5, if_match=2), 0, 1, STALE)])
    assert not linearizable([call(Adjust(-5, if_match=2), 0, 1, REFUSED)])
    assert linearizable([call(Adjust(-5, if_match=1), 0, 1, REFUSED)])


def test_an_update_without_if_match_always_applies() -> None:
    assert linearizable([call(Update(9), 0, 1, ok(9, 2))])
    assert not linearizable([call(Update(9), 0, 1, STALE)])


def test_a_call_with_an_unknown_outcome_may_take_effect_once_after_its_invocation_or_never() -> (
    None
):
    maybe = unknown(Adjust(2), 0)

    assert linearizable([maybe, call(Get(), 1, 2, ok(3, 2))])  # it took effect
    assert linearizable([maybe, call(Get(), 1, 2, ok(1, 1))])  # not (yet)
    assert linearizable([maybe, call(Get(), 1, 2, ok(1, 1)), call(Get(), 3, 4, ok(3, 2))])
    assert not linearizable([maybe, call(Get(), 1, 2, ok(3, 2)), call(Get(), 3, 4, ok(1, 1))])
    assert not linearizable([maybe, call(Get(), 1, 2, ok(5, 3))])  # not twice
    assert not linearizable([unknown(Adjust(2), 5), call(Get(), 1, 2, ok(3, 2))])  # too early


def test_two_calls_of_unknown_outcome_may_have_taken_effect_in_either_order() -> None:
    """The same calls placed in two orders leave two states: the search must not take the
    state it met first for the only one (its memo is of the calls placed *and* the state)."""
    history = [unknown(Update(5), 0), unknown(Update(6), 0), call(Get(), 1, 2, ok(5, 3))]

    assert linearizable(history)


def test_a_failure_is_explained_by_where_the_longest_legal_prefix_ends() -> None:
    history = [call(Adjust(2), 0, 1, ok(3, 2)), call(Get(), 2, 3, ok(1, 1))]
    verdict = linearize(START, history)

    message = explain(START, history, verdict)

    assert verdict.longest == (0,)
    assert "ends at State(qty=3, version=2)" in message
    assert "#1: Call(command=Get()" in message


def test_the_search_stops_with_an_error_past_its_budget() -> None:
    maybe = [unknown(Adjust(1), 0) for _ in range(12)]
    history = [*maybe, call(Get(), 1, 2, ok(99, 99))]  # never legal: every order is tried

    with pytest.raises(SearchTooLarge):
        linearize(START, history, budget=100)


# --- generated histories -------------------------------------------------------------


def commands(state: State) -> st.SearchStrategy[Command]:
    versions = st.none() | st.integers(state.version - 1, state.version + 1)
    return st.one_of(
        st.just(Get()),
        st.builds(Adjust, st.sampled_from([-3, -2, -1, 1, 2, 3]), versions),
        st.builds(Update, st.integers(0, 6), versions),
    )


@st.composite
def legal_histories(
    draw: st.DrawFn, most: int = 12, spread: float = 3.0, unknown_one_in: int = 10
) -> tuple[State, list[Call]]:
    """Call k takes effect at instant k, somewhere inside its interval; its answer is the
    specification's there. About one call in ``unknown_one_in`` (none if 0) has an unknown
    outcome: it took effect, or did not."""
    initial = State(draw(st.integers(0, 4)), draw(st.integers(1, 3)))
    state, history = initial, []
    for k in range(draw(st.integers(0, most))):
        command = draw(commands(state))
        invoked = k - draw(st.floats(0.01, spread))
        returned = k + draw(st.floats(0.01, spread))
        if unknown_one_in and draw(st.integers(1, unknown_one_in)) == 1:
            if draw(st.booleans()):
                state, _ = apply(state, command)
            history.append(unknown(command, invoked))
            continue
        state, answer = apply(state, command)
        history.append(call(command, invoked, returned, answer))
    return initial, history


@given(legal_histories(most=40))
def test_a_history_made_by_the_specification_is_accepted_with_a_legal_order(
    case: tuple[State, list[Call]],
) -> None:
    initial, history = case

    verdict = linearize(initial, history)

    assert verdict.order is not None
    assert is_legal_order(initial, history, verdict.order)


@given(legal_histories(spread=0.4, unknown_one_in=0), st.randoms(use_true_random=False))
def test_calls_made_one_after_another_with_two_answers_swapped_are_rejected(
    case: tuple[State, list[Call]], rng: random.Random
) -> None:
    """Apart in time, only one order is legal, and the specification answers each call in
    one way only: any two different answers exchanged break it."""
    initial, history = case
    pairs = [
        (a, b)
        for a, b in itertools.combinations(range(len(history)), 2)
        if history[a].answer != history[b].answer
    ]
    if not pairs:
        return
    a, b = rng.choice(pairs)
    swapped = list(history)
    swapped[a] = replace(history[a], answer=history[b].answer)
    swapped[b] = replace(history[b], answer=history[a].answer)

    assert not linearize(initial, swapped).linearizable


@given(legal_histories(most=30, unknown_one_in=0), st.randoms(use_true_random=False))
def test_two_successful_writes_that_answer_the_same_version_are_rejected(
    case: tuple[State, list[Call]], rng: random.Random
) -> None:
    """Each successful write makes the next version: no two can answer the same one."""
    initial, history = case
    writes = [
        n
        for n, c in enumerate(history)
        if not isinstance(c.command, Get) and c.answer is not None and c.answer.status == 200
    ]
    if len(writes) < 2:
        return
    source, target = rng.sample(writes, 2)
    copied = list(history)
    copied[target] = replace(history[target], answer=history[source].answer)

    assert not linearize(initial, copied).linearizable


ANSWERS = st.one_of(
    st.builds(ok, st.integers(0, 8), st.integers(1, 8)), st.just(REFUSED), st.just(STALE)
)


@given(
    legal_histories(most=6, unknown_one_in=3),
    st.lists(st.tuples(st.integers(0, 5), ANSWERS), max_size=2),
)
def test_on_small_histories_the_search_agrees_with_trying_every_order(
    case: tuple[State, list[Call]], changes: list[tuple[int, Answer]]
) -> None:
    initial, history = case
    for index, answer in changes:  # some answers made up: legal or not, as it happens
        if index < len(history) and history[index].answer is not None:
            history[index] = replace(history[index], answer=answer)

    verdict = linearize(initial, history)

    assert verdict.linearizable == brute_force(initial, history)
    if verdict.order is not None:
        assert is_legal_order(initial, history, verdict.order)


def busy_clients(rng: random.Random, clients: int, calls: int, initial: State) -> list[Call]:
    """``clients`` clients, each making ``calls`` calls one after another with random
    durations; each call takes effect at a random instant inside its interval."""
    timed: list[tuple[float, int, Command, float, float]] = []
    for client in range(clients):
        now = rng.random()
        for _ in range(calls):
            options: list[Command] = [
                Get(),
                Adjust(rng.choice([-3, -1, 2])),
                Update(rng.randint(0, 6)),
            ]
            command = rng.choice(options)
            invoked, returned = now, now + rng.uniform(0.1, 3)
            timed.append((rng.uniform(invoked, returned), client, command, invoked, returned))
            now = returned + rng.uniform(0, 0.5)
    state, history = initial, []
    for _, client, command, invoked, returned in sorted(timed, key=lambda t: t[0]):
        state, answer = apply(state, command)
        history.append(Call(command, invoked, returned, answer, client))
    return history


def test_a_history_of_eight_busy_clients_is_accepted_without_a_long_search() -> None:
    history = busy_clients(random.Random(16), clients=8, calls=40, initial=START)

    verdict = linearize(START, history, budget=50_000)

    assert verdict.order is not None
    assert is_legal_order(START, history, verdict.order)
