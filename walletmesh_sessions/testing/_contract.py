"""The conformance suites: every rule class combined, as the pytest classes a store subclasses
(how to use them: docs/custom-store.md)."""

from __future__ import annotations

from ._kit_base import StoreFactory
from ._rules_app_data import AppDataLifecycleRules, AppDataRules
from ._rules_basic import BasicRules
from ._rules_concurrency import ConcurrencyRules
from ._rules_expiry import ExpiryRules
from ._rules_input import InputRules
from ._rules_iteration import IterationRules
from ._rules_lifecycle import LifecycleRules
from ._rules_model import ModelRules
from ._rules_shared import SharedStorageRules

__all__ = ("LifecycleStoreContract", "SessionStoreContract", "StoreFactory")


class SessionStoreContract(
    BasicRules,
    ExpiryRules,
    InputRules,
    ConcurrencyRules,
    ModelRules,
    IterationRules,
    AppDataRules,
):
    """The conformance suite. Subclass it and provide a `store_factory` fixture."""


class LifecycleStoreContract(
    SessionStoreContract, LifecycleRules, AppDataLifecycleRules, SharedStorageRules
):
    """The suite for a `LifecycleSessionStore`: every `SessionStoreContract` rule, plus atomic
    create, update and rotate under concurrency (of permissions and of app_data, and across two
    store objects when `shares_storage` says they share storage), and the absolute timeout."""
