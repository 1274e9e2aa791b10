"""Tools to test session stores: a fake clock and the conformance suite every store passes."""

from ._clock import FakeClock as FakeClock
from ._contract import SessionStoreContract as SessionStoreContract
from ._kit_base import ForeignData as ForeignData
from ._kit_base import StoreFactory as StoreFactory

__all__ = ("FakeClock", "ForeignData", "SessionStoreContract", "StoreFactory")
