"""Typed async session stores for wallet routers, wire-compatible with `@walletmesh/router`."""

from ._data import SessionData as SessionData
from ._data import SessionStoreConfig as SessionStoreConfig
from ._defaults import default_store as default_store
from ._errors import CorruptRecordError as CorruptRecordError
from ._errors import InvalidConfigError as InvalidConfigError
from ._errors import InvalidSessionDataError as InvalidSessionDataError
from ._errors import InvalidSessionIdError as InvalidSessionIdError
from ._errors import SessionStoreError as SessionStoreError
from ._errors import StoreClosedError as StoreClosedError
from ._errors import StoreUnavailableError as StoreUnavailableError
from ._ids import new_session_id as new_session_id
from ._localstorage import LocalStorageSessionStore as LocalStorageSessionStore
from ._memory import MemorySessionStore as MemorySessionStore
from ._protocol import SessionStore as SessionStore

__all__ = (
    "CorruptRecordError",
    "InvalidConfigError",
    "InvalidSessionDataError",
    "InvalidSessionIdError",
    "LocalStorageSessionStore",
    "MemorySessionStore",
    "SessionData",
    "SessionStore",
    "SessionStoreConfig",
    "SessionStoreError",
    "StoreClosedError",
    "StoreUnavailableError",
    "default_store",
    "new_session_id",
)
