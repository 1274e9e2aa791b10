"""The codec's fast path for plain records: the same answer as the full path, or none."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from walletmesh_sessions import CorruptRecordError, SessionData
from walletmesh_sessions._core import codec
from walletmesh_sessions._core.data import assemble_session
from walletmesh_sessions._core.json_values import thaw

from .test_codec import sessions

# A JSON text, written by hand so that it may be anything a store could hold: repeated keys,
# NaN, numbers no double holds, escapes, lone surrogates, deep nesting.
Tree = Any


def _write(tree: Tree) -> str:
    kind, value = tree
    if kind == "raw":
        return str(value)
    if kind == "str":
        return value if value.startswith('"') else json.dumps(value, ensure_ascii=False)
    if kind == "list":
        return "[" + ",".join(_write(item) for item in value) + "]"
    return (
        "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_write(v)}" for k, v in value) + "}"
    )


KEYS = ["id", "origin", "permissions", "createdAt", "appData", "data", "expiresAt", "k", "k:"]
_strings = st.sampled_from(
    ["s", "a:b", "caf\u00e9", '"', "\\", "\x00", "\ud800", "x\udfffy", "\u2028", ""]
) | st.text(max_size=3)
_leaves = st.one_of(
    st.tuples(st.just("str"), _strings),
    st.tuples(st.just("str"), st.sampled_from(['"\\ud800"', '"a\\u003ab"', '"\\""'])),
    st.tuples(
        st.just("raw"),
        st.sampled_from(
            [
                "NaN",
                "Infinity",
                "-Infinity",
                "1e400",
                "-0",
                "0",
                "1",
                "1.5",
                "0.5",
                "-0.5",
                "true",
                "false",
                "null",
                "1E2",
                "2.0",
                "9007199254740991",
                "9007199254740992",
                "-9007199254740993",
                "1111111111111111111111111111111111111111",
            ]
        ),
    ),
    st.tuples(st.just("raw"), st.integers() | st.floats(allow_nan=False)),
)
_trees = st.recursive(
    _leaves,
    lambda inner: (
        st.tuples(st.just("list"), st.lists(inner, max_size=3))
        | st.tuples(
            st.just("obj"),
            st.lists(st.tuples(st.sampled_from(KEYS) | _strings, inner), max_size=4),
        )
    ),
    max_leaves=10,
)


@st.composite
def records(draw: st.DrawFn) -> str:
    """Mostly the record's own shape, each member kept, dropped, repeated or made hostile."""
    plain: dict[str, Tree] = {
        "id": ("str", draw(st.sampled_from(["s", "a:b", "caf\u00e9"]) | _strings)),
        "origin": ("str", "https://app.example.com"),
        "permissions": ("obj", [("eip155:1", ("list", [("str", "eth_accounts")]))]),
        "createdAt": ("raw", 1_700_000_000_000),
        "appData": ("obj", [("k", ("list", [("raw", 1), ("str", "v")]))]),
    }
    members: list[tuple[str, Tree]] = []
    for key, value in plain.items():
        how = draw(st.sampled_from(["keep"] * 15 + ["drop", "hostile", "twice"]))
        if how == "drop":
            continue
        members.append((key, draw(_trees) if how == "hostile" else value))
        if how == "twice":
            members.append((key, draw(_trees | st.just(value))))
    if draw(st.integers(0, 3)) == 0:
        members.append((draw(st.sampled_from(KEYS) | _strings), draw(_trees)))
    top: list[tuple[str, Tree]] = [("data", ("obj", draw(st.permutations(members))))]
    if draw(st.booleans()):
        good = st.just(("raw", 1_800_000_000_000))
        top.append(("expiresAt", draw(st.one_of(good, good, good, _trees))))
    if draw(st.integers(0, 9)) == 0:
        top.append((draw(st.sampled_from(KEYS)), draw(_trees)))
    space = draw(st.sampled_from(["", " ", "\n\t"]))
    return space + _write(("obj", draw(st.permutations(top)))) + space


def _exactly(data: SessionData) -> tuple[object, ...]:
    """Everything a decoded session holds, types of JSON numbers and containers included."""
    permissions = {chain: (type(names), names) for chain, names in data.permissions.items()}
    return (data, repr(data), hash(data), permissions, thaw(data.app_data, tuple))


def _assert_same_answer(text: str) -> None:
    fast = codec._decode_plain(text)
    try:
        full = codec._decode_full(text, "s")
    except CorruptRecordError:
        assert fast is None, f"the fast path read a record the full path refuses: {text!r}"
        with pytest.raises(CorruptRecordError):
            codec.decode_record(text, "s")
        return
    if fast is not None:
        assert (_exactly(fast[0]), fast[1]) == (_exactly(full[0]), full[1])
    decoded = codec.decode_record(text, "s")
    assert (_exactly(decoded[0]), decoded[1]) == (_exactly(full[0]), full[1])
    assert codec.encode_record(*decoded) == codec.encode_record(*full)


class TestFastPath:
    """Plain records skip cattrs and the duplicate-key hook, with the very same result."""

    @settings(max_examples=600)
    @given(records())
    def test_hostile_records_get_the_full_paths_answer(self, text: str) -> None:
        """Repeated keys, NaN, huge numbers, escapes, surrogates: the same answer either way."""
        _assert_same_answer(text)

    @given(sessions, st.none() | st.integers(min_value=1, max_value=2**62))
    def test_written_records_take_it(self, data: SessionData, expires_at: int | None) -> None:
        """What the store writes is read by the fast path unless it holds a backslash."""
        text = codec.encode_record(data, expires_at)
        fast = codec._decode_plain(text)
        assert (fast is None) == ("\\" in text)
        _assert_same_answer(text)

    @pytest.mark.parametrize(
        "text",
        [
            '{"data":{"id":"a","origin":"o","id":"b"}}',
            '{"data":{"id":"a","origin":"o"},"data":{"id":"a","origin":"o"}}',
            '{"data":{"id":"a","origin":"o","permissions":{"c":["m"],"c":["m"]}}}',
            '{"data":{"id":"a","origin":"o","appData":{"x":{"k":1,"k":1}}}}',
            '{"data":{"id":"a","origin":"o","appData":{"x:":1,"x:":"a:b"}}}',
            '{"data":{"id":"a","origin":"o","createdAt":1,"createdAt":1}}',
            '{"expiresAt":5,"data":{"id":"a","origin":"o"},"expiresAt":5}',
        ],
    )
    def test_a_repeated_key_is_refused(self, text: str) -> None:
        """The quote count sees a repeated key anywhere; the full path then refuses it."""
        assert codec._decode_plain(text) is None
        with pytest.raises(CorruptRecordError, match="repeats a key"):
            codec.decode_record(text, "s")

    @pytest.mark.parametrize(
        "text",
        [
            '{"data":{"id":"a","origin":"o","appData":{"x":NaN}}}',
            '{"data":{"id":"a","origin":"o","appData":{"x":1e400}}}',
            '{"data":{"id":"\ud800","origin":"o"}}',
            '{"data":{"id":"\\ud800","origin":"o"}}',
            '{"data":{"id":"a","origin":"o","appData":{"k":["\\udc00"]}}}',
            '{"data":{"id":"a","origin":"o","createdAt":9007199254740992}}',
            '{"data":{"id":"a","origin":"o","createdAt":true}}',
            '{"data":{"id":"a","origin":"o","permissions":null}}',
            '{"data":{"id":"a","origin":"o","permissions":{"c":"m"}}}',
            '{"data":{"id":"a","origin":"o","appData":[]}}',
            '{"data":{"id":"a","origin":1}}',
            '{"data":{"id":"a"}}',
            '{"data":{"id":"a","origin":"o"},"expiresAt":true}',
            '{"data":{"id":"a","origin":"o"}} x',
            '[{"data":{"id":"a","origin":"o"}}]',
        ],
    )
    def test_what_the_full_path_refuses_it_leaves(self, text: str) -> None:
        """NaN, 1e400, lone surrogates, unsafe ints, wrong shapes: left to the full path."""
        assert codec._decode_plain(text) is None
        with pytest.raises(CorruptRecordError):
            codec.decode_record(text, "s")

    @pytest.mark.parametrize(
        "text",
        [
            '{"data":{"id":"a","origin":"o","createdAt":1.5}}',
            '{"data":{"id":"a","origin":"o"},"expiresAt":0.5}',
            '{"data":{"id":"a","origin":"o","appData":{"x":9007199254740993}}}',
            '{"data":{"id":"a","origin":"o","extra":{"k":1}}}',
            '{"data":{"id":"a\\u003a","origin":"o"}}',
        ],
    )
    def test_what_the_full_path_changes_it_leaves(self, text: str) -> None:
        """Fractions, unsafe ints (read as doubles), unknown fields, escapes: the full path."""
        assert codec._decode_plain(text) is None
        _assert_same_answer(text)

    def test_deep_app_data_is_left_to_the_full_path(self) -> None:
        """Nesting past MAX_DEPTH is refused by the full path, never frozen by the fast one."""
        deep = "[" * 64 + "]" * 64
        text = '{"data":{"id":"a","origin":"o","appData":{"x":' + deep + "}}}"
        assert codec._decode_plain(text) is None
        with pytest.raises(CorruptRecordError, match="64 levels"):
            codec.decode_record(text, "s")
        ok = '{"data":{"id":"a","origin":"o","appData":{"x":' + deep[1:-1] + "}}}"
        assert codec._decode_plain(ok) is not None
        _assert_same_answer(ok)

    def test_assembled_equals_constructed(self) -> None:
        """`assemble_session` gives what the constructor gives, frozen and hashable alike."""
        built = SessionData("a", "o", {"c": ("m",)}, 5, app_data={"k": (1,)})
        same = assemble_session("a", "o", built.permissions, 5, built.app_data)
        assert _exactly(same) == _exactly(built)
        with pytest.raises(AttributeError):
            same.id = "b"  # type: ignore[misc]


def _assert_same_times(text: str | bytes) -> None:
    """`record_times` refuses what `decode_record` refuses, and reads its expiry and
    createdAt."""
    try:
        data, expires_at = codec.decode_record(text, "s")
    except CorruptRecordError as exc:
        reason = exc.reason
    else:
        assert codec.record_times(text, "s") == (expires_at, data.created_at)
        return
    with pytest.raises(CorruptRecordError) as refused:
        codec.record_times(text, "s")
    assert refused.value.reason == reason


class TestRecordTimes:
    """A walk's check of a record, without the `SessionData`: the same verdict and times."""

    @settings(max_examples=600)
    @given(records())
    def test_hostile_records_get_decode_records_answer(self, text: str) -> None:
        """Repeated keys, NaN, huge numbers, escapes, surrogates: the same answer either way."""
        _assert_same_times(text)
        _assert_same_times(text.encode("utf-8", "surrogatepass"))

    @given(sessions, st.none() | st.integers(min_value=0, max_value=2**62))
    def test_written_records(self, data: SessionData, expires_at: int | None) -> None:
        """What the store writes: its expiry (0 read as none) and createdAt."""
        text = codec.encode_record(data, expires_at)
        assert codec.record_times(text, "s") == (expires_at or None, data.created_at)
        _assert_same_times(text)

    @pytest.mark.parametrize(
        ("text", "times"),
        [
            ('{"data":{"id":"a","origin":"o","createdAt":7},"expiresAt":9}', (9, 7)),
            ('{"data":{"id":"a","origin":"o","createdAt":null},"expiresAt":0}', (None, None)),
            ('{"data":{"id":"a","origin":"o","createdAt":1.5},"expiresAt":0.5}', (1, 1)),
            ('{"data":{"id":"a\\u003a","origin":"o"},"expiresAt":null}', (None, None)),
        ],
    )
    def test_times_read(self, text: str, times: tuple[int | None, int | None]) -> None:
        """Plain records and ones only the full path reads: the times it reads."""
        assert codec.record_times(text, "s") == times

    @pytest.mark.parametrize(
        "text",
        [
            b"\xff",
            '{"data":{"id":"a","origin":"o","permissions":{"c":["m",1]}}}',
            '{"data":{"id":"a","origin":"o","permissions":{"c":["m"],"c":["m"]}}}',
            '{"data":{"id":"a","origin":"o","appData":{"x":NaN}}}',
            '{"data":{"id":"a","origin":"o","createdAt":true}}',
        ],
    )
    def test_unreadable_is_refused(self, text: str | bytes) -> None:
        """What `decode_record` refuses, `record_times` refuses, naming the session."""
        with pytest.raises(CorruptRecordError, match="s"):
            codec.record_times(text, "s")
        _assert_same_times(text)


class TestSharedPermissions:
    """Records granting the same permissions share one read-only mapping."""

    def test_same_grants_share_one_mapping(self) -> None:
        """Same grants in the same order: the very same mapping; another order: its own."""
        first = codec.decode_record(
            '{"data":{"id":"a","origin":"o","permissions":{"c":["m","n"],"d":[]}}}', "a"
        )[0]
        second = codec.decode_record(
            '{"data":{"id":"b","origin":"p","permissions":{"c":["m","n"],"d":[]}}}', "b"
        )[0]
        reordered = codec.decode_record(
            '{"data":{"id":"b","origin":"p","permissions":{"d":[],"c":["m","n"]}}}', "b"
        )[0]
        assert first.permissions is second.permissions
        assert reordered.permissions is not first.permissions
        assert list(reordered.permissions) == ["d", "c"]
        assert reordered.permissions == first.permissions

    def test_the_shared_mappings_are_bounded(self) -> None:
        """However many distinct grants are read, at most `_MAX_SHARED` mappings are kept."""
        for n in range(codec._MAX_SHARED + 10):
            codec.decode_record(
                f'{{"data":{{"id":"a","origin":"o","permissions":{{"c{n}":[]}}}}}}', "a"
            )
            assert len(codec._SHARED) <= codec._MAX_SHARED
