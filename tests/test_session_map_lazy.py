"""`SessionMap.of_records`: a map of record texts, decoded whenever a value is read, that keeps
the whole `Mapping[str, SessionData]` contract and holds nothing the garbage collector walks."""

from __future__ import annotations

import gc
import pickle
from collections.abc import Mapping, MutableMapping

import attrs
import pytest

from walletmesh_sessions import SessionData
from walletmesh_sessions._core.codec import decode_record, encode_record
from walletmesh_sessions._core.session_map import SessionMap

DATA = SessionData("s", "https://app.example", {"eip155:1": ["eth_accounts"]}, created_at=5)


def _data(n: int) -> SessionData:
    return attrs.evolve(DATA, id=f"s{n}")


def _records(count: int) -> SessionMap:
    found = SessionMap.of_records(decode_record)
    found._put_all((f"id{n}", encode_record(_data(n), 1_000 + n)) for n in range(count))
    return found


def test_values_are_decoded_on_access_and_never_kept() -> None:
    """Each read decodes the record again: equal values, a new object each time."""
    found = _records(3)
    assert found["id1"] == _data(1)
    assert found["id1"] is not found["id1"]
    assert sorted(found.values(), key=lambda d: d.id) == [_data(n) for n in range(3)]
    assert dict(found.items()) == {f"id{n}": _data(n) for n in range(3)}


def test_the_mapping_contract() -> None:
    """len, iteration, membership, equality both ways, read-only, copies and pickles."""
    found = _records(2_000)
    expected = {f"id{n}": _data(n) for n in range(2_000)}
    assert len(found) == 2_000
    assert sorted(found) == sorted(expected)
    assert "id7" in found
    assert "id2000" not in found
    assert found.get("nope") is None
    with pytest.raises(KeyError):
        found["nope"]
    assert found == expected
    assert expected == found
    assert found == SessionMap(expected)
    assert found != {**expected, "id0": _data(9)}
    assert isinstance(found, Mapping)
    assert not isinstance(found, MutableMapping)
    assert pickle.loads(pickle.dumps(found)) == expected
    assert repr(_records(1)) == f"SessionMap({ {'id0': _data(0)}!r})"


def test_put_all_counts_each_id_once() -> None:
    """A page put again (a retried walk) replaces, not adds."""
    found = _records(100)
    found._put_all((f"id{n}", encode_record(_data(n + 1), None)) for n in range(50, 150))
    assert len(found) == 150
    assert found["id60"] == _data(61)


def test_nothing_tracked_by_the_collector() -> None:
    """Record texts in dicts of strings: no shard is tracked; a map of data is."""
    found = _records(1_000)
    assert not any(gc.is_tracked(shard) for shard in found._shards if shard)
    held = SessionMap({f"id{n}": _data(n) for n in range(1_000)})
    assert any(gc.is_tracked(shard) for shard in held._shards if shard)
