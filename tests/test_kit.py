"""The conformance kit itself: it passes a correct store and names the rule a broken one breaks."""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ("pytester",)

SUITE = textwrap.dedent(
    """
    import pytest
    from tests.kit_subjects import SimpleForeignData, SimpleStore
    from walletmesh_sessions.testing import SessionStoreContract

    BUGS = frozenset({bugs!r})


    class TestSimpleStore(SessionStoreContract):
        @pytest.fixture
        def storage(self):
            return {{}}

        @pytest.fixture
        def store_factory(self, storage):
            return lambda config, clock: SimpleStore(storage, config, clock, BUGS)

        @pytest.fixture
        def foreign_data(self, storage):
            return SimpleForeignData(storage)
    """
)


def run_kit(pytester: pytest.Pytester, bugs: set[str]) -> pytest.RunResult:
    pytester.makepyfile(test_simple=SUITE.format(bugs=sorted(bugs)))
    return pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-W", "error")


class TestKit:
    """Run the kit against a small store, correct and deliberately broken."""

    def test_correct_store_passes(self, pytester: pytest.Pytester) -> None:
        """Every rule passes, none skipped, on both backends."""
        result = run_kit(pytester, set())
        outcomes = result.parseoutcomes()
        assert outcomes.get("failed", 0) == 0, result.stdout.str()
        assert outcomes.get("skipped", 0) == 0
        assert outcomes["passed"] > 100

    @pytest.mark.parametrize(
        ("bug", "failing_rule", "message"),
        [
            ("off_by_one", "test_valid_at_exactly_expiry", "expired at exactly its expiry"),
            ("stale_refresh", "test_refresh_never_undoes_a_set", "a refresh wrote back stale data"),
            ("greedy_clear", "test_foreign_data_survives", "changed data outside the store"),
            ("miscount", "test_clean_expired_counts", "clean_expired"),
        ],
    )
    def test_broken_store_fails_naming_the_rule(
        self, pytester: pytest.Pytester, bug: str, failing_rule: str, message: str
    ) -> None:
        """The kit fails a broken store, in the rule it breaks, with a message that says why."""
        result = run_kit(pytester, {bug})
        outcomes = result.parseoutcomes()
        assert outcomes.get("failed", 0) > 0
        output = result.stdout.str()
        assert f"{failing_rule}[asyncio]" in output
        assert f"{failing_rule}[trio]" in output
        assert message in output
        assert "test_matches_reference_model" in output or bug in {"stale_refresh", "greedy_clear"}
