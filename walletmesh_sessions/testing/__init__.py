"""Tools to test session stores: a fake clock and the conformance suite every store passes."""

from ._clock import FakeClock as FakeClock
from ._contract import SessionStoreContract as SessionStoreContract
from ._contract import StoreFactory as StoreFactory

__all__ = ("FakeClock", "SessionStoreContract", "StoreFactory")
