"""The conformance kit itself: it passes a correct store and names the rule a broken one breaks."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

SUITE = textwrap.dedent(
    """
    import pytest
    from hypothesis import HealthCheck, Phase, settings
    from tests.kit_subjects import SimpleForeignData, SimpleStore
    from walletmesh_sessions.testing import LifecycleStoreContract

    BUGS = frozenset({bugs!r})


    class TestSimpleStore(LifecycleStoreContract):
        # A broken store's failure is what these runs look for: finding it is enough,
        # shrinking it to the smallest example would take minutes.
        model_settings = settings(
            max_examples=100,
            stateful_step_count=30,
            deadline=None,
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )

        @pytest.fixture
        def storage(self):
            return {{}}

        @pytest.fixture
        def store_factory(self, storage):
            return lambda config, clock: SimpleStore(storage, config, clock, BUGS)

        @pytest.fixture
        def shares_storage(self):
            return True

        @pytest.fixture
        def foreign_data(self, storage):
            return SimpleForeignData(storage)
    """
)


def run_kit(pytester: pytest.Pytester, bugs: set[str], *select: str) -> pytest.RunResult:
    """Run the kit on the small store; `select` narrows it to some rules (pytest -k)."""
    pytester.makepyfile(test_simple=SUITE.format(bugs=sorted(bugs)))
    narrow = ["-k", " or ".join(select)] if select else []
    return pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-W", "error", *narrow)


# Bugs one task's sequence of calls shows, so the model-based rule finds them too; the others
# need concurrency or foreign data, which the model does not make.
MODEL_FINDS = frozenset({"off_by_one", "miscount"})


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
            (
                "revive_deleted",
                "test_concurrent_refresh_never_revives_deleted",
                "a refresh brought back a deleted session",
            ),
            ("greedy_clear", "test_foreign_data_survives", "changed data outside the store"),
            ("miscount", "test_clean_expired_counts", "clean_expired"),
            ("racy_create", "test_create_race_has_one_winner", "concurrent creators won"),
            ("lossy_update", "test_concurrent_increments_are_not_lost", "lost increments"),
            ("gappy_rotate", "test_rotate_has_no_gap", "neither id worked"),
            ("object_lock", "test_racing_increments_are_not_lost", "increments lost across two"),
        ],
    )
    def test_broken_store_fails_naming_the_rule(
        self, pytester: pytest.Pytester, bug: str, failing_rule: str, message: str
    ) -> None:
        """The kit fails a broken store, in the rule it breaks, with a message that says why."""
        # The rule the bug breaks, and, for bugs a sequence of calls shows, the model-based
        # rules too; the whole kit passing on the correct store is test_correct_store_passes.
        model_finds_it = bug in MODEL_FINDS
        select = (failing_rule, "matches_reference_model") if model_finds_it else (failing_rule,)
        result = run_kit(pytester, {bug}, *select)
        outcomes = result.parseoutcomes()
        assert outcomes.get("failed", 0) > 0
        output = result.stdout.str()
        assert f"{failing_rule}[asyncio]" in output
        assert f"{failing_rule}[trio]" in output
        assert message in output
        if model_finds_it:
            assert "test_matches_reference_model" in output


SUBCLASS_SUITE = textwrap.dedent(
    """
    import pytest
    from hypothesis import settings
    from tests.kit_subjects import SimpleStore
    from walletmesh_sessions import SessionStore
    from walletmesh_sessions.testing import SessionStoreContract


    class DeclaredStore(SimpleStore, SessionStore):
        '''A user's store that names the protocol it implements.'''


    class TestDeclaredStore(SessionStoreContract):
        # The model-based rule runs in full on this store's behaviour (the SimpleStore it
        # inherits) in test_correct_store_passes: a few examples here show the subclass runs it.
        model_settings = settings(SessionStoreContract.model_settings, max_examples=10)

        @pytest.fixture
        def store_factory(self):
            storage = {}
            return lambda config, clock: DeclaredStore(storage, config, clock)
    """
)


def test_kit_accepts_a_store_that_subclasses_the_protocol(pytester: pytest.Pytester) -> None:
    """The kit checks the contract: subclassing SessionStore explicitly is the user's right."""
    pytester.makepyfile(test_declared=SUBCLASS_SUITE)
    # In a fresh process: hypothesis' stateful machinery is built once per process.
    pytester.syspathinsert(str(Path(__file__).parent.parent))
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "-W", "error")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0, result.stdout.str()
    assert outcomes["passed"] > 100
