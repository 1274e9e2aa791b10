"""Typed async session stores for wallet routers, wire-compatible with `@walletmesh/router`."""

from ._cleanup import clean_expired_every as clean_expired_every
from ._cleanup import periodic_cleanup as periodic_cleanup
from ._data import SessionData as SessionData
from ._data import SessionRecord as SessionRecord
from ._data import SessionStoreConfig as SessionStoreConfig
from ._defaults import default_store as default_store
from ._errors import CorruptRecordError as CorruptRecordError
from ._errors import InvalidConfigError as InvalidConfigError
from ._errors import InvalidSessionDataError as InvalidSessionDataError
from ._errors import InvalidSessionIdError as InvalidSessionIdError
from ._errors import MissingDependencyError as MissingDependencyError
from ._errors import NotReplicatedError as NotReplicatedError
from ._errors import SessionIdTakenError as SessionIdTakenError
from ._errors import SessionIdTypeError as SessionIdTypeError
from ._errors import SessionStoreError as SessionStoreError
from ._errors import StoreClosedError as StoreClosedError
from ._errors import StoreUnavailableError as StoreUnavailableError
from ._ids import new_session_id as new_session_id
from ._iteration import iter_sessions as iter_sessions
from ._json import JSONValue as JSONValue
from ._localstorage import LocalStorageSessionStore as LocalStorageSessionStore
from ._memory import MemorySessionStore as MemorySessionStore
from ._protocol import ClosableSessionStore as ClosableSessionStore
from ._protocol import FullSessionStore as FullSessionStore
from ._protocol import Inspectable as Inspectable
from ._protocol import IterableRecords as IterableRecords
from ._protocol import IterableSessionStore as IterableSessionStore
from ._protocol import LifecycleSessionStore as LifecycleSessionStore
from ._protocol import SessionStore as SessionStore
from ._session_map import SessionMap as SessionMap
from ._urls import open_store as open_store

__all__ = (
    "ClosableSessionStore",
    "CorruptRecordError",
    "FullSessionStore",
    "Inspectable",
    "InvalidConfigError",
    "InvalidSessionDataError",
    "InvalidSessionIdError",
    "IterableRecords",
    "IterableSessionStore",
    "JSONValue",
    "LifecycleSessionStore",
    "LocalStorageSessionStore",
    "MemorySessionStore",
    "MissingDependencyError",
    "NotReplicatedError",
    "SessionData",
    "SessionIdTakenError",
    "SessionIdTypeError",
    "SessionMap",
    "SessionRecord",
    "SessionStore",
    "SessionStoreConfig",
    "SessionStoreError",
    "StoreClosedError",
    "StoreUnavailableError",
    "clean_expired_every",
    "default_store",
    "iter_sessions",
    "new_session_id",
    "open_store",
    "periodic_cleanup",
)
