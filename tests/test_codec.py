"""The wire codec: the TypeScript package's exact JSON, both ways."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from walletmesh_sessions import CorruptRecordError, SessionData
from walletmesh_sessions._codec import (
    decode_record,
    encode_record,
    record_with_expiry,
    session_from_json,
    session_to_json,
)
from walletmesh_sessions._expiry import is_expired

FIXTURE = Path(__file__).parent / "fixtures" / "ts-localstorage-records.json"
PREFIX = "wm_session_"


def load_fixture() -> tuple[int, dict[str, str]]:
    raw = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return raw["written_at_ms"], {r["key"]: r["value"] for r in raw["records"]}


text = st.text(st.characters(blacklist_categories=["Cs"]))
sessions = st.builds(
    SessionData,
    id=text,
    origin=text,
    permissions=st.dictionaries(text, st.lists(text, max_size=4), max_size=4),
    created_at=st.none() | st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1),
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

    def test_unknown_field_types(self) -> None:
        """Python reads the permission lists in order."""
        _, records = load_fixture()
        value: Any = json.loads(records["wm_session_https://dapp.example.org_s-multi"])
        data = session_from_json(value["data"])
        assert list(data.permissions) == ["eip155:1", "eip155:137", "aztec:testnet"]
