"""new_session_id: ids that are safe on a command line as well as unguessable."""

from __future__ import annotations

import math
import string

import pytest

from walletmesh_sessions import new_session_id
from walletmesh_sessions._core import ids as _ids


class TestFirstCharacter:
    """An id never starts with '-', and keeps at least 256 random bits."""

    def test_never_starts_with_dash(self) -> None:
        """No id looks like a command-line option (token_urlsafe alone did, 1 in 64)."""
        ids = [new_session_id() for _ in range(5000)]
        assert not [sid for sid in ids if sid.startswith("-")]
        assert {len(sid) for sid in ids} == {43}
        assert "-" in "".join(sid[1:] for sid in ids)  # the rest keeps the full alphabet

    def test_mechanism(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The first character comes from letters and digits, whatever the random bytes say."""
        monkeypatch.setattr("secrets.token_urlsafe", lambda n: "-" * 43)
        firsts = {new_session_id()[0] for _ in range(2000)}
        assert firsts <= set(string.ascii_letters + string.digits)
        assert len(firsts) > 50
        assert new_session_id()[1:] == "-" * 42

    def test_at_least_256_bits(self) -> None:
        """62 choices for the first character and 64 for each of the other 42."""
        assert math.log2(len(_ids.FIRST_ALPHABET)) + 6 * (_ids.LENGTH - 1) >= 256
