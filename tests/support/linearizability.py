"""Is one item's concurrent history linearizable? A pure checker, no I/O.

A history is what concurrent clients saw of one item: for each call, the command, when it
was invoked and when its answer came back (client-side monotonic clock), and the answer.
It is linearizable when the calls can be put in one sequential order that (1) keeps every
call that returned before another was invoked ahead of it, and (2) gives every call the
answer the sequential specification (``apply``) gives in that order. Each call then took
effect at one instant between its invocation and its answer.

The search is Wing and Gong's, with Lowe's memoization as Porcupine does it: depth first,
each step linearizes one pending call that was invoked before the earliest answer among
the calls not yet linearized; a (linearized set, state) pair met before is not explored
again. A call whose answer is unknown (a 503, whose outcome the client cannot know) may
take effect at any instant after its invocation, or never. One shortcut keeps the search
small: a call with a known answer that is legal now and leaves the state as it is (a read,
a rejection) is taken at once without branching; moving such a call to the front of any
legal order keeps the order legal.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from model.invariants import QTY_MAX

UNKNOWN = math.inf
"""The ``returned`` of a call whose answer never came or says nothing of the outcome."""


class SearchTooLarge(Exception):
    """The search met more states than its budget: the history is too big to judge."""


@dataclass(frozen=True)
class State:
    """What the specification knows of an item."""

    qty: int
    version: int


@dataclass(frozen=True)
class Get:
    """``GET /items/{id}``."""


@dataclass(frozen=True)
class Adjust:
    """``POST /items/{id}/adjustments {"delta": delta}``, with ``If-Match: "<if_match>"``
    unless None."""

    delta: int
    if_match: int | None = None


@dataclass(frozen=True)
class Update:
    """``PATCH /items/{id} {"qty": qty}``, with ``If-Match: "<if_match>"`` unless None."""

    qty: int
    if_match: int | None = None


Command = Get | Adjust | Update


@dataclass(frozen=True)
class Answer:
    """An HTTP status and, for a 200, the item's ``(qty, version)`` it carried."""

    status: int
    state: State | None = None


@dataclass(frozen=True)
class Call:
    """One request as a client saw it. ``answer`` None: the outcome is unknown."""

    command: Command
    invoked: float
    returned: float
    answer: Answer | None
    client: int = 0


@dataclass(frozen=True)
class Verdict:
    """``order``: the history's indices in a legal sequential order, or None when there is
    none. ``longest``: the longest legal prefix the search found (to explain a failure)."""

    order: tuple[int, ...] | None
    longest: tuple[int, ...]
    explored: int

    @property
    def linearizable(self) -> bool:
        return self.order is not None


def apply(state: State, command: Command) -> tuple[State, Answer]:
    """The sequential specification: the state after ``command`` and its answer."""
    if isinstance(command, Get):
        return state, Answer(200, state)
    if isinstance(command, Adjust):
        if command.if_match is not None and command.if_match != state.version:
            return state, Answer(412)  # the version is judged before the range
        if 0 <= state.qty + command.delta <= QTY_MAX:
            after = State(state.qty + command.delta, state.version + 1)
            return after, Answer(200, after)
        return state, Answer(409)
    if command.if_match is None or command.if_match == state.version:
        after = State(command.qty, state.version + 1)
        return after, Answer(200, after)
    return state, Answer(412)


def linearize(initial: State, history: Sequence[Call], budget: int = 1_000_000) -> Verdict:
    """Search for a legal sequential order of ``history`` from ``initial``."""
    return _Search(initial, history, budget).run()


class _Search:
    """One depth-first search; calls are numbered in invocation order (``by_invocation``)."""

    def __init__(self, initial: State, history: Sequence[Call], budget: int) -> None:
        self.by_invocation = sorted(range(len(history)), key=lambda i: history[i].invoked)
        self.calls = [history[i] for i in self.by_invocation]
        self.known = sum(1 << n for n, c in enumerate(self.calls) if c.answer is not None)
        self.initial = initial
        self.budget = budget

    def run(self) -> Verdict:
        seen = {(0, self.initial)}
        stack = [(0, self.initial, self._steps(0, self.initial))]
        order: list[int] = []
        longest: tuple[int, ...] = ()
        while stack:
            linearized, _, steps = stack[-1]
            if linearized & self.known == self.known:
                return Verdict(self._original(order), self._original(longest), len(seen))
            step = next(steps, None)
            if step is None:
                stack.pop()
                if order:
                    order.pop()
                continue
            call, after = step
            child = linearized | 1 << call
            if (child, after) in seen:
                continue
            seen.add((child, after))
            if len(seen) > self.budget:
                raise SearchTooLarge(f"over {self.budget} states for {len(self.calls)} calls")
            stack.append((child, after, self._steps(child, after)))
            order.append(call)
            if len(order) > len(longest):
                longest = tuple(order)
        return Verdict(None, self._original(longest), len(seen))

    def _original(self, order: Sequence[int]) -> tuple[int, ...]:
        return tuple(self.by_invocation[n] for n in order)

    def _steps(self, linearized: int, state: State) -> Iterator[tuple[int, State]]:
        """Each pending call that may take effect now, with the state it leaves."""
        legal = []
        for n in self._pending(linearized):
            after, answer = apply(state, self.calls[n].command)
            expected = self.calls[n].answer
            if expected is None:
                legal.append((n, after))
            elif answer == expected:
                if after == state:
                    return iter([(n, after)])  # a read or a rejection: no need to branch
                legal.append((n, after))
        return iter(legal)

    def _pending(self, linearized: int) -> list[int]:
        """The calls not yet linearized that were invoked before the earliest answer among
        them: no call still pending returned before one of these was invoked."""
        first = (~linearized & (linearized + 1)).bit_length() - 1
        earliest, window = UNKNOWN, []
        for n in range(first, len(self.calls)):
            if self.calls[n].invoked >= earliest:
                break  # this call and every later one were invoked after an answer
            if not linearized >> n & 1:
                window.append(n)
                earliest = min(earliest, self.calls[n].returned)
        return [n for n in window if self.calls[n].invoked < earliest]


def explain(initial: State, history: Sequence[Call], verdict: Verdict, shown: int = 12) -> str:
    """A failure message: where the longest legal prefix ends, and the calls left then."""
    state = initial
    for index in verdict.longest:
        state, _ = apply(state, history[index].command)
    left = sorted(set(range(len(history))) - set(verdict.longest), key=lambda i: history[i].invoked)
    lines = [
        f"no legal order for {len(history)} calls from {initial}: the longest legal prefix "
        f"places {len(verdict.longest)} calls and ends at {state}; the first calls left:"
    ]
    lines += [f"  #{i}: {history[i]}" for i in left[:shown]]
    return "\n".join(lines)
