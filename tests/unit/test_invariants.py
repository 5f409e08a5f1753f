"""The invariants (README, "The invariants"), held against an independent oracle written here.

``model.invariants`` is the single home of normalization and validation; these tests
restate each rule in the plainest Python they can (``_name_ok``, ``_qty_ok``, ``_delta_ok``)
and check, over arbitrary text and arbitrary JSON values, that the module accepts exactly
what the rules allow and names every field it rejects.
"""

from __future__ import annotations

import string
import unicodedata
import uuid
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from model.invariants import (
    NAME_MAX,
    QTY_MAX,
    InvariantViolation,
    check_adjustment,
    check_batch,
    check_create,
    check_update,
    id_problem,
    is_key_boundary,
    name_key,
    normalize_text,
    pointer,
    prefix_key,
)
from service.http.spec import load_document, load_operations

# The central properties get three times the profile's examples (150 in "ci").
THOROUGH = settings(max_examples=3 * settings().max_examples)

# Characters that break naive code: whitespace of every kind (some are Cc, some change
# under NFC), controls, surrogates, combining marks, case-folding expanders, compositions.
PITFALLS = (
    " \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u2000\u2028\u3000"
    "\x00\x7f\ud800\udfff\u200b\ufeff"
    "\u0301\u0308\u0323\u0345\u093c"
    "eEaAiIsS\u00df\u1e9e\u0130\u0131\u03a3\u03c2\u00e9\u00c9\ufb03\u01f0\u1100\u1161\u0958"
)
TEXT = st.text(
    st.characters(exclude_categories=()) | st.sampled_from(PITFALLS), max_size=NAME_MAX + 10
)
LONG_TEXT = st.text(
    st.sampled_from("ae\u0301 \u0958"), min_size=NAME_MAX - 5, max_size=NAME_MAX + 5
)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=5)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=5,
)
QTY_PITFALLS = st.sampled_from(
    [True, False, 5.0, "5", None, -1, 0, 1, QTY_MAX, QTY_MAX + 1, 2**53, 10**30, -(10**30)]
) | st.sampled_from([float("nan"), float("inf"), float("-inf"), [5], {"qty": 5}])
QTY = QTY_PITFALLS | st.integers(-5, 5) | st.integers(QTY_MAX - 2, QTY_MAX + 2) | JSON
DELTA = QTY | st.integers(-QTY_MAX - 2, -QTY_MAX + 2)
NAME = TEXT | LONG_TEXT | JSON
# Where canonical caseless matching is subtle: Greek with dialytika and tonos in every
# spelling, iota subscript (U+0345 folds to U+03B9), sharp s in both cases, ligatures,
# marks whose order NFD fixes, Hangul jamo, the Kelvin and Angstrom signs.
CASELESS_PITFALLS = (
    "\u0390\u0399\u03b9\u03ca\u03aa\u0308\u0301\u0344\u0345\u1fb3\u1fbc\u03b1\u0391"
    "\u00df\u1e9e\u0053\u0073\ufb00\ufb03\u0066\u0069\u0130\u0131\u0323\u0327\u030a"
    "\u00e1\u0061\u00c5\u212b\u212a\u004b\u1100\u1161\u11a8\uac00\u1e98\u0057\u0077"
)
CASELESS_TEXT = st.text(
    st.characters(categories=("L", "M")) | st.sampled_from(CASELESS_PITFALLS), max_size=12
)
SPELLINGS = st.sampled_from(
    [
        lambda s: s,
        str.upper,
        str.lower,
        str.casefold,
        str.swapcase,
        lambda s: unicodedata.normalize("NFC", s),
        lambda s: unicodedata.normalize("NFD", s),
        lambda s: unicodedata.normalize("NFD", s.upper()),
    ]
)


def _name_ok(name: object) -> bool:
    """README's invariants for a name as sent, restated (plus the contract's maxLength as sent)."""
    if not isinstance(name, str) or len(name) > NAME_MAX:
        return False
    stored = unicodedata.normalize("NFC", name).strip()
    return 1 <= len(stored) <= NAME_MAX and not any(
        unicodedata.category(ch) in ("Cc", "Cs") for ch in stored
    )


def _same_name_per_d145(one: str, other: str) -> bool:
    """Unicode D145, canonical caseless matching, as the standard words it: X and Y match
    iff NFD(toCasefold(NFD(X))) = NFD(toCasefold(NFD(Y)))."""

    def nfd(text: str) -> str:
        return unicodedata.normalize("NFD", text)

    return nfd(nfd(one).casefold()) == nfd(nfd(other).casefold())


def _qty_ok(qty: object) -> bool:
    return isinstance(qty, int) and not isinstance(qty, bool) and 0 <= qty <= QTY_MAX


def _delta_ok(delta: object) -> bool:
    return isinstance(delta, int) and not isinstance(delta, bool) and 0 < abs(delta) <= QTY_MAX


def _broken(body: dict[str, Any]) -> set[str]:
    """The pointers of the fields of a name/qty body that the oracle says are invalid."""
    rules = {"name": _name_ok, "qty": _qty_ok}
    return {pointer(field) for field, value in body.items() if not rules[field](value)}


def _violated(check: Any, body: dict[str, Any]) -> set[str]:
    """The fields ``check`` names for ``body``; empty when it accepts the body."""
    try:
        check(body)
    except InvariantViolation as violation:
        return {error.field for error in violation.errors}
    return set()


def _assert_stored_name(name: object) -> None:
    assert isinstance(name, str)
    assert name == unicodedata.normalize("NFC", name)
    assert name == name.strip()
    assert 1 <= len(name) <= NAME_MAX
    assert all(unicodedata.category(ch) not in ("Cc", "Cs") for ch in name)


# --- normalization -----------------------------------------------------------------------


@THOROUGH
@given(TEXT)
def test_normalization_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once


@THOROUGH
@given(TEXT)
def test_normalized_text_is_nfc_and_stripped(text: str) -> None:
    stored = normalize_text(text)
    assert stored == unicodedata.normalize("NFC", stored)
    assert stored == stored.strip()


@given(TEXT)
def test_nfc_and_nfd_variants_share_a_name_key(text: str) -> None:
    nfc, nfd = (unicodedata.normalize(form, text) for form in ("NFC", "NFD"))
    assert name_key(normalize_text(nfc)) == name_key(normalize_text(nfd))


@given(st.text(string.ascii_letters + string.digits + " -", min_size=1))
def test_ascii_case_variants_share_a_name_key(text: str) -> None:
    assert name_key(normalize_text(text.upper())) == name_key(normalize_text(text.lower()))
    assert name_key(normalize_text(text.swapcase())) == name_key(normalize_text(text))


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Apple", "APPLE"),
        ("Straße", "STRASSE"),
        ("ΣΊΣΥΦΟΣ", "σίσυφος"),
        ("Café", "CAFE\u0301"),
        ("\ufb03ce", "FFICE"),
    ],
)
def test_unicode_case_variants_share_a_name_key(one: str, other: str) -> None:
    assert name_key(normalize_text(one)) == name_key(normalize_text(other))


def test_names_that_differ_beyond_case_have_different_keys() -> None:
    assert name_key("apple") != name_key("apples")
    assert name_key("cafe") != name_key("café")


@THOROUGH
@given(
    st.tuples(CASELESS_TEXT, CASELESS_TEXT)
    | st.tuples(CASELESS_TEXT, SPELLINGS, SPELLINGS).map(lambda t: (t[1](t[0]), t[2](t[0])))
    | st.tuples(st.text(st.sampled_from(CASELESS_PITFALLS), max_size=4), CASELESS_TEXT).map(
        lambda t: (t[0], t[0] + t[1][:1])
    )
)
@example(("Apple", "apple"))
@example(("caf\u00e9", "cafe\u0301"))
@example(("\u0390", "\u0399\u0308\u0301"))
@example(("\u1e9e", "\u00df"))
@example(("\u00df", "ss"))
@example(("\ufb00", "FF"))
@example(("\u1fb3", "\u03b1\u03b9"))
@example(("a\u0327\u0301", "a\u0301\u0327"))
@example(("cafe", "caf\u00e9"))
@example(("W\u030a", "\u1e98"))
def test_names_share_a_key_exactly_when_they_match_canonically_caselessly(
    pair: tuple[str, str],
) -> None:
    one, other = pair
    assert (name_key(one) == name_key(other)) == _same_name_per_d145(one, other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Apple", "apple"),
        ("caf\u00e9", "cafe\u0301"),
        ("\u0390", "\u0399\u0308\u0301"),
        ("\u1e9e", "ss"),
        ("\ufb03", "ffi"),
    ],
    ids=["case", "nfc-nfd", "greek-dialytika-tonos", "capital-sharp-s", "ligature"],
)
def test_canonically_caselessly_equal_names_share_a_key(one: str, other: str) -> None:
    assert name_key(normalize_text(one)) == name_key(normalize_text(other))


@THOROUGH
@given(CASELESS_TEXT)
def test_a_name_key_is_nfc(text: str) -> None:
    assert unicodedata.is_normalized("NFC", name_key(text))


@pytest.mark.parametrize(
    ("prefix", "key"),
    [
        ("AP", "ap"),
        ("e\u0301", "\u00e9"),
        ("Straß", "strass"),
        (" a", " a"),  # a prefix is not stripped: "red " narrows to "red apple"
        ("\u0399\u0308\u0301", "\u0390"),
        ("", ""),
    ],
)
def test_prefix_key_is_the_prefixs_own_name_key(prefix: str, key: str) -> None:
    assert prefix_key(prefix) == key == name_key(prefix)


@THOROUGH
@given(TEXT | CASELESS_TEXT, st.integers(0, NAME_MAX))
@example("\u00df\u0323x", 1)
@example("W\u030aW", 2)
@example("\u1100\u1161", 1)
def test_every_prefix_of_a_stored_name_ending_before_a_new_base_matches_that_name(
    text: str, cut: int
) -> None:
    name = normalize_text(text)
    while not is_key_boundary(name, cut):
        cut -= 1
    assert name_key(name).startswith(prefix_key(name[:cut]))


@pytest.mark.parametrize(
    ("name", "cut"),
    [("W\u030a", 1), ("\u00df\u0323", 1)],
    ids=["composes-after-folding", "folds-into-a-composition"],
)
def test_a_prefix_ending_inside_a_combining_sequence_need_not_match(name: str, cut: int) -> None:
    assert not is_key_boundary(name, cut)
    assert not name_key(name).startswith(prefix_key(name[:cut]))


@pytest.mark.parametrize(
    ("field", "expected"), [("qty", "/qty"), ("a/b", "/a~1b"), ("m~n", "/m~0n"), ("", "/")]
)
def test_pointer_escapes_per_rfc_6901(field: str, expected: str) -> None:
    assert pointer(field) == expected


# --- create --------------------------------------------------------------------------------


@THOROUGH
@given(NAME, QTY)
@example("apple\n", 0)
@example("\ud800", 1)
@example("a" * NAME_MAX, QTY_MAX)
def test_create_accepts_exactly_what_the_invariants_allow(name: object, qty: object) -> None:
    body = {"name": name, "qty": qty}
    assert _violated(check_create, body) == _broken(body)


@THOROUGH
@given(NAME, QTY)
def test_every_accepted_create_satisfies_the_invariants(name: object, qty: object) -> None:
    try:
        result = check_create({"name": name, "qty": qty})
    except InvariantViolation:
        return
    assert set(result) == {"name", "qty"}
    _assert_stored_name(result["name"])
    assert name_key(result["name"]) == name_key(normalize_text(str(name)))
    assert type(result["qty"]) is int
    assert 0 <= result["qty"] <= QTY_MAX


@given(st.dictionaries(st.text(max_size=4).filter(lambda k: k not in {"name", "qty"}), JSON))
def test_unknown_fields_are_named(extra: dict[str, Any]) -> None:
    body = {"name": "apple", "qty": 1, **extra}
    assert _violated(check_create, body) == {pointer(field) for field in extra}


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"/name", "/qty"}),
        ({"name": "apple"}, {"/qty"}),
        ({"qty": 1}, {"/name"}),
        ({"name": "", "qty": -1}, {"/name", "/qty"}),
        ({"name": 5, "qty": "5", "colour": "red"}, {"/name", "/qty", "/colour"}),
    ],
)
def test_create_names_every_violated_field(body: dict[str, Any], fields: set[str]) -> None:
    assert _violated(check_create, body) == fields


def test_trailing_newline_is_stripped() -> None:
    assert check_create({"name": "apple\n", "qty": 1})["name"] == "apple"


@pytest.mark.parametrize(
    "name",
    ["ap\u0000ple", "ap\x7fple", "\u3000 \t", "", "\ud800", "a\udfffb", "a\x85b", "\u2028"],
)
def test_control_characters_surrogates_and_blank_names_are_rejected(name: str) -> None:
    assert _violated(check_create, {"name": name, "qty": 1}) == {"/name"}


def test_whitespace_that_is_a_control_character_is_stripped_not_rejected() -> None:
    assert check_create({"name": "\x85apple\x1f", "qty": 1})["name"] == "apple"


def test_a_name_of_exactly_200_code_points_is_accepted() -> None:
    assert check_create({"name": "a" * NAME_MAX, "qty": 1})["name"] == "a" * NAME_MAX


def test_a_name_of_201_code_points_is_rejected() -> None:
    assert _violated(check_create, {"name": "a" * (NAME_MAX + 1), "qty": 1}) == {"/name"}


def test_a_name_that_nfc_expands_past_200_code_points_is_rejected() -> None:
    # U+0958 is a composition exclusion: NFC turns it into two code points.
    name = "a" * (NAME_MAX - 1) + "\u0958"
    assert len(name) == NAME_MAX
    assert len(unicodedata.normalize("NFC", name)) == NAME_MAX + 1
    assert _violated(check_create, {"name": name, "qty": 1}) == {"/name"}


def test_a_decomposed_name_of_200_code_points_composes_under_the_limit() -> None:
    name = "e\u0301" * (NAME_MAX // 2)
    assert check_create({"name": name, "qty": 1})["name"] == "\u00e9" * (NAME_MAX // 2)


def test_a_name_longer_than_200_code_points_as_sent_is_rejected_even_if_it_composes() -> None:
    # The contract's maxLength applies to the name as sent, before normalization.
    name = "e\u0301" * (NAME_MAX // 2 + 1)
    assert len(unicodedata.normalize("NFC", name)) <= NAME_MAX
    assert _violated(check_create, {"name": name, "qty": 1}) == {"/name"}


def test_padding_counts_against_the_limit_as_sent_but_not_after_normalization() -> None:
    assert check_create({"name": " " + "a" * (NAME_MAX - 2) + " ", "qty": 1})["name"] == "a" * (
        NAME_MAX - 2
    )
    assert _violated(check_create, {"name": " " * 2 + "a" * (NAME_MAX - 1), "qty": 1}) == {"/name"}


@pytest.mark.parametrize(
    "qty",
    [True, False, 5.0, "5", None, -1, QTY_MAX + 1, 2**53, 10**30, float("nan"), float("inf")],
)
def test_a_quantity_that_is_not_an_in_range_json_integer_is_rejected(qty: object) -> None:
    assert _violated(check_create, {"name": "apple", "qty": qty}) == {"/qty"}


@pytest.mark.parametrize("qty", [0, 1, QTY_MAX])
def test_quantities_at_the_bounds_are_accepted(qty: int) -> None:
    assert check_create({"name": "apple", "qty": qty}) == {"name": "apple", "qty": qty}


# --- update --------------------------------------------------------------------------------


@THOROUGH
@given(st.fixed_dictionaries({}, optional={"name": NAME, "qty": QTY}))
def test_update_accepts_exactly_the_present_valid_fields(body: dict[str, Any]) -> None:
    expected = _broken(body) if body else {""}
    assert _violated(check_update, body) == expected
    if not expected:
        assert set(check_update(body)) == set(body)


def test_update_requires_at_least_one_field() -> None:
    assert _violated(check_update, {}) == {""}
    assert _violated(check_update, {"colour": "red"}) == {"", "/colour"}


def test_update_normalizes_the_name_it_returns() -> None:
    assert check_update({"name": " Cafe\u0301\n"}) == {"name": "Caf\u00e9"}
    assert check_update({"qty": 0}) == {"qty": 0}


# --- adjustment ----------------------------------------------------------------------------


@THOROUGH
@given(DELTA)
def test_adjustment_accepts_exactly_the_nonzero_in_range_integers(delta: object) -> None:
    assert _violated(check_adjustment, {"delta": delta}) == (
        set() if _delta_ok(delta) else {"/delta"}
    )


@pytest.mark.parametrize(
    "delta", [0, True, False, 1.0, 0.5, "1", None, QTY_MAX + 1, -QTY_MAX - 1, 10**30]
)
def test_adjustment_rejects_zero_bools_floats_and_out_of_range_deltas(delta: object) -> None:
    assert _violated(check_adjustment, {"delta": delta}) == {"/delta"}


@pytest.mark.parametrize("delta", [QTY_MAX, -QTY_MAX, 1, -1])
def test_adjustment_accepts_deltas_up_to_qty_max_either_way(delta: int) -> None:
    assert check_adjustment({"delta": delta}) == {"delta": delta}


def test_adjustment_reason_is_normalized_like_a_name() -> None:
    assert check_adjustment({"delta": 1, "reason": " recount\n"}) == {
        "delta": 1,
        "reason": "recount",
    }


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"/delta"}),
        ({"reason": "x"}, {"/delta"}),
        ({"delta": 0, "reason": "a\x00"}, {"/delta", "/reason"}),
        ({"delta": 1, "reason": None}, {"/reason"}),
        ({"delta": 1, "reason": "r" * (NAME_MAX + 1)}, {"/reason"}),
        ({"delta": 1, "qty": 1}, {"/qty"}),
    ],
)
def test_adjustment_names_every_violated_field(body: dict[str, Any], fields: set[str]) -> None:
    assert _violated(check_adjustment, body) == fields


# --- batches, against the contract's own statement of them -------------------------------

_BATCH_SCHEMA: Any = next(
    op.body_validator for op in load_operations(load_document()) if op.operation_id == "applyBatch"
)
_ID = "0192f0c4-7d5e-7c3a-9b1e-2f4a6c8d0e12"
_FIELDS = {  # each field's values: valid ones often, then each way to be wrong
    "item_id": st.sampled_from([_ID, _ID, _ID.upper(), "nope", 5]),
    "name": st.sampled_from(["apple", "apple", " apple ", "", "   ", "a\x00b", 5, None]),
    "qty": st.sampled_from([0, 5, 5, QTY_MAX, QTY_MAX + 1, -1, True, "5"]),
    "delta": st.sampled_from([1, -1, -1, QTY_MAX, 0, QTY_MAX + 1, -QTY_MAX - 1, True]),
    "if_match": st.sampled_from([1, 2, 2, 0, True, "1", None]),
    "extra": st.just(1),
}
_KINDS = {  # each kind of operation and the fields it takes
    "create": ("name", "qty"),
    "update": ("item_id", "name", "qty", "if_match"),
    "adjust": ("item_id", "delta", "if_match"),
    "delete": ("item_id",),
}


@st.composite
def _operation(draw: st.DrawFn) -> object:
    """An operation of a known kind (or none, or an unknown one): each of its fields present
    4 times in 5, mostly valid; now and then a field of another kind; now and then no object."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from([None, 5, "create", [], {}]))
    kind: object = draw(st.sampled_from([*_KINDS, "zap", None, {}]))
    operation: dict[str, object] = {} if kind is None else {"op": kind}
    for field in _KINDS.get(kind, ("item_id",)) if isinstance(kind, str) else ("item_id",):
        if draw(st.integers(0, 4)):
            operation[field] = draw(_FIELDS[field])
    if draw(st.integers(0, 5)) == 0:
        extra = draw(st.sampled_from(sorted(_FIELDS)))
        operation[extra] = draw(_FIELDS[extra])
    return operation


_OPERATIONS = _operation()
_EXAMPLES = [  # every kind whole, and each without each field it requires
    {"op": "create", "name": "apple", "qty": 1},
    {"op": "create", "name": "apple"},
    {"op": "create", "qty": 1},
    {"op": "update", "item_id": _ID, "qty": 1, "if_match": 1},
    {"op": "update", "item_id": _ID, "if_match": 1},
    {"op": "update", "qty": 1},
    {"op": "adjust", "item_id": _ID, "delta": -1},
    {"op": "adjust", "item_id": _ID},
    {"op": "adjust", "delta": -1},
    {"op": "delete", "item_id": _ID},
    {"op": "delete"},
]
_REASONS = st.sampled_from(["sold", " sold ", "", 5, None])


@given(
    st.fixed_dictionaries(
        {"operations": st.lists(_OPERATIONS, max_size=4)},
        optional={"reason": _REASONS, "extra": st.just(1)},
    )
)
@example({"operations": [{"op": {}, "item_id": _ID}]})
def test_a_batch_is_valid_exactly_when_the_contracts_schema_says_so(body: dict[str, Any]) -> None:
    """``check_batch`` and openapi.yaml's Batch schema are two statements of one rule: on
    bodies without the differences the contract documents (floats that are integers, names
    that grow under NFC), they must agree."""
    _assert_check_and_schema_agree(body)


@pytest.mark.parametrize("operation", _EXAMPLES)
def test_each_kind_of_operation_is_valid_exactly_when_the_contracts_schema_says_so(
    operation: dict[str, Any],
) -> None:
    _assert_check_and_schema_agree({"operations": [operation]})


def _assert_check_and_schema_agree(body: dict[str, Any]) -> None:
    try:
        check_batch(body)
    except InvariantViolation:
        accepted = False
    else:
        accepted = True
    assert accepted == _BATCH_SCHEMA.is_valid(body), body


@pytest.mark.parametrize(
    "value", [_ID, _ID.upper(), _ID[:-1], _ID + "0", _ID.replace("-", ""), 5, None, "nope"]
)
def test_an_item_id_is_valid_exactly_when_it_is_a_canonical_uuid(value: object) -> None:
    assert (id_problem(value) is None) == _canonical_uuid(value)


def _canonical_uuid(value: object) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    except ValueError:
        return False
