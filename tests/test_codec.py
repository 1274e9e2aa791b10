"""The wire codec: the TypeScript package's exact JSON, both ways."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from walletmesh_sessions import CorruptRecordError, JSONValue, SessionData
from walletmesh_sessions._core.codec import (
    decode_record,
    encode_record,
    record_with_expiry,
    same_but_expiry,
    session_from_json,
    session_to_json,
)
from walletmesh_sessions._core.expiry import is_expired

FIXTURE = Path(__file__).parent / "fixtures" / "ts-localstorage-records.json"
PREFIX = "wm_session_"


def load_fixture() -> tuple[int, dict[str, str]]:
    raw = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return raw["written_at_ms"], {r["key"]: r["value"] for r in raw["records"]}


text = st.text(st.characters(blacklist_categories=["Cs"]))
safe_integers = st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
json_values: st.SearchStrategy[JSONValue] = st.recursive(
    st.none()
    | st.booleans()
    | safe_integers
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
    | st.sampled_from(["createdAt", "expiresAt", "data", "appData", '"}', "\\", "\x00"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
app_data = st.dictionaries(
    text | st.sampled_from(["createdAt", "expiresAt", "data"]), json_values, max_size=4
)


def nested_arrays(levels: int) -> JSONValue:
    """``[[...[]...]]``, `levels` arrays deep."""
    value: JSONValue = []
    for _ in range(levels - 1):
        value = [value]
    return value


sessions = st.builds(
    SessionData,
    id=text,
    origin=text,
    permissions=st.dictionaries(text, st.lists(text, max_size=4), max_size=4),
    created_at=st.none() | safe_integers,
    app_data=st.just({}) | app_data,
)


class TestWireFormat:
    """Records look exactly like the TypeScript store's."""

    def test_exact_text(self) -> None:
        """Compact JSON, camelCase, expiresAt last, createdAt only when set."""
        data = SessionData("s1", "https://app.example.com", {"eip155:1": ["eth_accounts"]})
        assert encode_record(data, 1_700_000_060_000) == (
            '{"data":{"id":"s1","origin":"https://app.example.com",'
            '"permissions":{"eip155:1":["eth_accounts"]}},"expiresAt":1700000060000}'
        )
        assert encode_record(SessionData("s", "o", created_at=5), None) == (
            '{"data":{"id":"s","origin":"o","permissions":{},"createdAt":5}}'
        )

    def test_app_data_text(self) -> None:
        """appData inside data, after createdAt, compact; absent when empty."""
        data = SessionData("s", "o", {"c": ["m"]}, 5, app_data={"a": [1, 2.5, None, True], "b": {}})
        assert encode_record(data, 9) == (
            '{"data":{"id":"s","origin":"o","permissions":{"c":["m"]},"createdAt":5,'
            '"appData":{"a":[1,2.5,null,true],"b":{}}},"expiresAt":9}'
        )
        assert encode_record(SessionData("s", "o", app_data={"k": "caf\u00e9"}), None) == (
            '{"data":{"id":"s","origin":"o","permissions":{},"appData":{"k":"caf\u00e9"}}}'
        )
        assert "appData" not in encode_record(SessionData("s", "o", app_data={}), None)

    def test_non_ascii_is_kept_raw(self) -> None:
        """Like JSON.stringify, non-ASCII text is not escaped."""
        assert '"origin":"https://caf\u00e9.example"' in encode_record(
            SessionData("s", "https://caf\u00e9.example"), None
        )

    @given(sessions, st.none() | st.integers(min_value=1, max_value=2**62))
    def test_round_trip(self, data: SessionData, expires_at: int | None) -> None:
        """decode(encode(x)) == x for any session."""
        assert decode_record(encode_record(data, expires_at), "id") == (data, expires_at)

    @given(sessions)
    def test_json_object_round_trip(self, data: SessionData) -> None:
        """session_from_json(session_to_json(x)) == x."""
        assert session_from_json(session_to_json(data)) == data

    @given(app_data, st.none() | st.integers(min_value=1, max_value=2**62))
    def test_app_data_round_trip(
        self, values: dict[str, JSONValue], expires_at: int | None
    ) -> None:
        """Any JSON object survives encode and decode: equal, as the same plain JSON, and
        encoded again to the same bytes."""
        data = SessionData("s", "o", created_at=1, app_data=values)
        record = encode_record(data, expires_at)
        decoded, expiry = decode_record(record, "id")
        assert (decoded, expiry) == (data, expires_at)
        assert decoded.to_json() == data.to_json()
        assert json.loads(record)["data"].get("appData", {}) == data.to_json().get("appData", {})
        assert encode_record(decoded, expiry) == record

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ('{"data":{"id":"a","origin":"o","appData":{}}}', {}),
            (
                '{"data":{"id":"a","origin":"o","appData":{"x":[1,{"y":null}]}}}',
                {"x": [1, {"y": None}]},
            ),
            # Before createdAt, as a TypeScript application may order its object.
            (
                '{"data":{"id":"a","origin":"o","appData":{"createdAt":1},"createdAt":2}}',
                {"createdAt": 1},
            ),
            # JavaScript has only doubles: twenty digits are the double they spell.
            (
                '{"data":{"id":"a","origin":"o","appData":{"n":[100000000000000000000]}}}',
                {"n": [1e20]},
            ),
            ('{"data":{"id":"a","origin":"o","appData":{"n":9007199254740993}}}', {"n": 2.0**53}),
            # As deep as app_data may nest: itself and 63 arrays.
            (
                '{"data":{"id":"a","origin":"o","appData":{"x":' + "[" * 63 + "]" * 63 + "}}}",
                {"x": nested_arrays(63)},
            ),
        ],
    )
    def test_app_data_reads(self, raw: str, expected: dict[str, JSONValue]) -> None:
        """appData reads frozen, wherever it stands in data; huge integers as doubles."""
        data, _ = decode_record(raw, "id")
        assert data.to_json().get("appData", {}) == expected
        assert data == SessionData("a", "o", created_at=data.created_at, app_data=expected)

    @pytest.mark.parametrize(
        ("raw", "expires_at"),
        [
            ('{"data":{"id":"a","origin":"o"},"expiresAt":null}', None),
            ('{"data":{"id":"a","origin":"o"},"expiresAt":0}', None),
            ('{"data":{"id":"a","origin":"o"},"expiresAt":5.0}', 5),
            ('{"data":{"id":"a","origin":"o","extra":[1]},"v":2,"expiresAt":7}', 7),
        ],
    )
    def test_lenient_reads(self, raw: str, expires_at: int | None) -> None:
        """null/0 expiry is none, integral floats are ms, unknown fields are ignored."""
        assert decode_record(raw, "id") == (SessionData("a", "o"), expires_at)

    @pytest.mark.parametrize(
        "raw",
        [
            "dark",
            "[]",
            "null",
            '{"expiresAt":5}',
            '{"data":{"origin":"o"}}',
            '{"data":{"id":1,"origin":"o"}}',
            '{"data":{"id":"a","origin":"o","permissions":{"c":"m"}}}',
            '{"data":{"id":"a","origin":"o","permissions":null}}',
            '{"data":{"id":"a","origin":"o"},"expiresAt":"5"}',
            '{"data":{"id":"a","origin":"o","createdAt":true}}',
            # appData must be an object of JSON values JavaScript reads as Python does.
            '{"data":{"id":"a","origin":"o","appData":null}}',
            '{"data":{"id":"a","origin":"o","appData":[]}}',
            '{"data":{"id":"a","origin":"o","appData":"x"}}',
            '{"data":{"id":"a","origin":"o","appData":1}}',
            '{"data":{"id":"a","origin":"o","appData":{"x":1e999}}}',
            '{"data":{"id":"a","origin":"o","appData":{"x":[NaN]}}}',
            '{"data":{"id":"a","origin":"o","appData":{"x":"\\ud800"}}}',
            '{"data":{"id":"a","origin":"o","appData":{"x":1,"x":2}}}',
            '{"data":{"id":"a","origin":"o","appData":{"x":' + "[" * 64 + "]" * 64 + "}}}",
            # NaN and Infinity are not JSON (JSON.parse refuses them), wherever they stand.
            '{"data":{"id":"a","origin":"o"},"x":NaN}',
            '{"data":{"id":"a","origin":"o"},"x":[-Infinity]}',
            '{"data":{"id":"a","origin":"o"},"expiresAt":Infinity}',
            '{"data":{"id":"a","origin":"o"},"expiresAt":1e999}',
            '{"data":{"id":"a","origin":"o"}} trailing',
            # A repeated key is ambiguous: JSON.parse keeps the last, SQLite's JSON the first.
            '{"data":{"id":"a","origin":"o"},"expiresAt":null,"expiresAt":5}',
            '{"data":{"id":"a","id":"b","origin":"o"}}',
            b'{"data":{"id":"a","origin":"\xff"}}',
            b"\xfe\xff",
            {"data": {"id": "a", "origin": "o"}},
            42,
        ],
    )
    def test_corrupt_records(self, raw: object) -> None:
        """Anything else is a CorruptRecordError that names the session id."""
        with pytest.raises(CorruptRecordError, match="'the-id'") as info:
            decode_record(raw, "the-id")
        assert info.value.session_id == "the-id"
        # The storage is damaged, not the caller's input: never caught as a ValueError.
        assert not isinstance(info.value, ValueError)

    def test_record_with_expiry_keeps_unknown_fields(self) -> None:
        """Refreshing rewrites only expiresAt."""
        raw = '{"data":{"id":"a","origin":"o","x":1},"expiresAt":5,"future":true}'
        assert json.loads(record_with_expiry(raw, 9)) == {
            "data": {"id": "a", "origin": "o", "x": 1},
            "expiresAt": 9,
            "future": True,
        }

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            # Every other byte stays: number spellings, escapes, whitespace, member order.
            (
                '{ "data" : {"id":"a","origin":"\\u00e9","n":1e3}, "expiresAt" : 5.0 , "z":[] }',
                '{ "data" : {"id":"a","origin":"\\u00e9","n":1e3}, "expiresAt" : 9 , "z":[] }',
            ),
            # Absent: appended as the last member, as JSON.stringify would place it.
            ('{"data":{"id":"a","origin":"o"}}', '{"data":{"id":"a","origin":"o"},"expiresAt":9}'),
            (
                '{"data":{"id":"a","origin":"o"} }\n',
                '{"data":{"id":"a","origin":"o"},"expiresAt":9 }\n',
            ),
            # A nested expiresAt is not the record's.
            (
                '{"data":{"id":"a","origin":"o","expiresAt":1},"expiresAt":3}',
                '{"data":{"id":"a","origin":"o","expiresAt":1},"expiresAt":9}',
            ),
            (
                '{"data":{"id":"a","origin":"o"},"expiresAt":null}',
                '{"data":{"id":"a","origin":"o"},"expiresAt":9}',
            ),
        ],
    )
    def test_record_with_expiry_keeps_every_other_byte(self, raw: str, expected: str) -> None:
        """Only the value of the top-level expiresAt changes; the result still decodes."""
        decode_record(raw, "id")
        assert record_with_expiry(raw, 9) == expected
        assert decode_record(expected, "id")[1] == 9

    @given(sessions, st.none() | st.integers(min_value=1, max_value=2**62), st.integers(1, 2**62))
    def test_record_with_expiry_round_trip(
        self, data: SessionData, expires_at: int | None, new: int
    ) -> None:
        """On our own records, rewriting the expiry is the same as encoding with it."""
        assert record_with_expiry(encode_record(data, expires_at), new) == encode_record(data, new)

    def test_decoded_expiry_is_an_int(self) -> None:
        """A JSON 5.0 reads as the int 5 (and a fraction as its floor), never as a float."""
        for raw, expected in (("5.0", 5), ("1700000001500.5", 1700000001500)):
            _, expires_at = decode_record(
                f'{{"data":{{"id":"a","origin":"o"}},"expiresAt":{raw}}}', "id"
            )
            assert expires_at == expected
            assert type(expires_at) is int


class TestTypeScriptFixture:
    """Records written by the TypeScript LocalStorageSessionStore read the same here."""

    def test_reads_like_typescript(self) -> None:
        """At written_at_ms: three live sessions, s-old expired, 'theme' not a session."""
        now, records = load_fixture()
        live: dict[str, SessionData] = {}
        expired: list[str] = []
        for key, value in records.items():
            if not key.startswith(PREFIX):
                continue
            data, expires_at = decode_record(value, key[len(PREFIX) :])
            (expired.append(key) if is_expired(expires_at, now) else live.update({key: data}))
        assert expired == ["wm_session_https://old.example.com_s-old"]
        assert live == {
            "wm_session_https://app.example.com_s-basic": SessionData(
                "s-basic",
                "https://app.example.com",
                {"eip155:1": ["eth_accounts", "eth_sendTransaction"]},
            ),
            "wm_session_https://dapp.example.org_s-multi": SessionData(
                "s-multi",
                "https://dapp.example.org",
                {
                    "eip155:1": ["eth_accounts"],
                    "eip155:137": ["eth_sendTransaction", "personal_sign"],
                    "aztec:testnet": ["aztec_getAddress"],
                },
            ),
            "wm_session_https://wallet.example_s-noexp": SessionData(
                "s-noexp", "https://wallet.example", {}
            ),
        }

    def test_reencodes_identically(self) -> None:
        """What we write for the same session is byte-for-byte what TypeScript wrote."""
        _, records = load_fixture()
        for key, value in records.items():
            if key.startswith(PREFIX):
                data, expires_at = decode_record(value, key)
                assert encode_record(data, expires_at) == value

    def test_records_without_app_data_are_byte_identical(self) -> None:
        """Every fixture record reads with empty app_data and encodes to its very bytes; adding
        app_data and removing it again gives those bytes back too."""
        _, records = load_fixture()
        sessions = {k: v for k, v in records.items() if k.startswith(PREFIX)}
        assert len(sessions) == 4
        for value in sessions.values():
            data, expires_at = decode_record(value.encode("utf-8"), "id")
            assert dict(data.app_data) == {}
            assert encode_record(data, expires_at).encode("utf-8") == value.encode("utf-8")
            again = data.with_app_data({"a": 1}).without_app_data("a")
            assert encode_record(again, expires_at) == value

    def test_unknown_field_types(self) -> None:
        """Python reads the permission lists in order."""
        _, records = load_fixture()
        value: Any = json.loads(records["wm_session_https://dapp.example.org_s-multi"])
        data = session_from_json(value["data"])
        assert list(data.permissions) == ["eip155:1", "eip155:137", "aztec:testnet"]


class TestSameButExpiry:
    """Two record texts are one record if only expiresAt differs: what a sliding read leaves."""

    TEXT = encode_record(SessionData("s", "https://a.example", {"c": ["m"]}), 1_000)

    def test_a_slide_is_the_same_record(self) -> None:
        """Another expiresAt, added or changed, as text or bytes: the same record."""
        assert same_but_expiry(self.TEXT, record_with_expiry(self.TEXT, 2_000))
        assert same_but_expiry(record_with_expiry(self.TEXT, 2_000).encode(), self.TEXT)
        no_expiry = encode_record(SessionData("s", "https://a.example", {"c": ["m"]}), None)
        assert same_but_expiry(no_expiry, self.TEXT)

    @pytest.mark.parametrize(
        "other",
        [
            encode_record(SessionData("s", "https://b.example", {"c": ["m"]}), 1_000),
            encode_record(SessionData("s", "https://a.example", {"c": ["m", "n"]}), 1_000),
            encode_record(SessionData("t", "https://a.example", {"c": ["m"]}), 1_000),
            "not json",
            b"\xff",
            None,
        ],
    )
    def test_anything_else_is_not(self, other: object) -> None:
        """Other data, or anything unreadable, is not the same record."""
        assert not same_but_expiry(self.TEXT, other)
