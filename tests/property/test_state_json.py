"""Properties of JSON state documents through the state manager, on every backend: NUL, lone
surrogates, huge integers and floats, NaN and infinities, deep nesting, huge keys. Each
document either comes back exactly as written (types included: ``1.0`` stays a float, ``-0.0``
keeps its sign) or is refused with the library's error for bad input (an
:class:`InvalidArgument`, or :class:`StateTooLarge` past ``state_max_bytes``), never a
driver's error; and a refused write changes nothing."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sessionward import Settings, open_ward
from sessionward.errors import InvalidArgument, StateTooLarge
from sessionward.state import StateDocument
from sessionward.stores.records import StateScope
from sessionward.ward import Ward

from . import profiles  # noqa: F401 (loads the settings profile)

pytestmark = pytest.mark.anyio
MAX_BYTES = 256 * 1024

# Every character, surrogates and NUL included (st.text() alone almost never draws these).
chars = st.characters(codec=None)
hostile_text = st.text(chars, max_size=40) | st.sampled_from(
    ["\x00", "a\x00b", "\ud800", "\udfff", "x\ud83d", "\ufeff", "\u2028", "\U0010ffff"]
)
huge_key = st.builds(lambda c, n: c * n, st.sampled_from("k\x00é€😀"), st.integers(1, 70_000))
numbers = (
    st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.sampled_from([2**53 + 1, -(2**63), 2**64])
    | st.builds(pow, st.just(10), st.sampled_from([4299, 4300, 5000]))  # repr-safe
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([1e308, -1e-320, 5e-324, -0.0, 1.0, float("nan"), float("inf")])
)
leaves = st.none() | st.booleans() | numbers | hostile_text
documents = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(hostile_text | huge_key, inner, max_size=4)
    ),
    max_leaves=12,
)


def nested(depth: int, leaf: Any = 1) -> Any:
    """A document ``depth`` levels deep (``st.recursive`` stays shallow)."""
    doc = leaf
    for level in range(depth):
        doc = [doc] if level % 2 else {"k": doc}
    return doc


deep = st.builds(nested, st.integers(1, 5_000), leaves)


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (and the same sign of zero); iterative,
    so any depth compares."""
    pairs = [(a, b)]
    while pairs:
        x, y = pairs.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, float):
            if not (x == y and math.copysign(1, x) == math.copysign(1, y)):
                return False
        elif isinstance(x, list):
            if len(x) != len(y):
                return False
            pairs.extend(zip(x, y, strict=True))
        elif isinstance(x, dict):
            if x.keys() != y.keys():
                return False
            pairs.extend((x[k], y[k]) for k in x)
        elif x != y:
            return False
    return True


@pytest.fixture
async def ward(store_url: str) -> AsyncIterator[Ward]:
    async with open_ward(store_url, settings=Settings(state_max_bytes=MAX_BYTES),
                         sweep=False) as ward:  # fmt: skip
        yield ward


async def _round_trip(ward: Ward, data: Any) -> None:
    scope = StateScope("user", "prop-user")
    before = await ward.state.get(scope, "doc")
    try:
        version = await ward.state.put(scope, "doc", data)
    except (InvalidArgument, StateTooLarge):
        assert await ward.state.get(scope, "doc") == before  # a refusal changes nothing
        return
    found = await ward.state.get(scope, "doc")
    assert isinstance(found, StateDocument) and found.version == version
    assert same(found.data, data), (found.data, data)


@given(data=documents)
@example(data={"a\x00b": "c\x00d"})
@example(data=["\ud800"])
@example(data={"\udfff": 1})
@example(data=[1e308, 5e-324, -0.0, 2**64])
@example(data={"k" * 70_000: 1})
async def test_a_document_round_trips_or_is_refused(ward: Ward, data: Any) -> None:
    await _round_trip(ward, data)


@given(data=deep)
@example(data=nested(500))
@example(data=nested(5_000))
@example(data=nested(100_000))
async def test_deep_nesting_round_trips_or_is_refused(ward: Ward, data: Any) -> None:
    await _round_trip(ward, data)


@given(name=hostile_text | st.text(st.sampled_from("ab.-_"), min_size=100, max_size=200))
@example(name="a\x00")
@example(name="\ud800")
async def test_a_state_name_round_trips_or_is_refused(ward: Ward, name: str) -> None:
    scope = StateScope("user", "prop-user")
    try:
        await ward.state.put(scope, name, 1)
    except InvalidArgument:
        return
    found = await ward.state.get(scope, name)
    assert found is not None and found.data == 1 and name in await ward.state.names(scope)


@given(user=hostile_text)
@example(user="a\x00b")
@example(user="\ud800")
@example(user="x" * 300)
async def test_a_user_id_round_trips_or_is_refused(ward: Ward, user: str) -> None:
    try:
        new = await ward.sessions.create(user)
    except InvalidArgument:
        return
    assert [s.session_id for s in await ward.sessions.list_active(user)][-1:] == [
        new.session.session_id
    ]
    await ward.state.put(new.session.scope("session"), "doc", {"u": user})
    found = await ward.state.get(new.session.scope("session"), "doc")
    assert found is not None and found.data == {"u": user}
    assert await ward.sessions.revoke(user, new.session.session_id)
