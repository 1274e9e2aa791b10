"""Typed async session stores for wallet routers, wire-compatible with `@walletmesh/router`."""

from ._core.data import SessionData as SessionData
from ._core.data import SessionRecord as SessionRecord
from ._core.data import SessionStoreConfig as SessionStoreConfig
from ._core.errors import CorruptRecordError as CorruptRecordError
from ._core.errors import InvalidConfigError as InvalidConfigError
from ._core.errors import InvalidSessionDataError as InvalidSessionDataError
from ._core.errors import InvalidSessionIdError as InvalidSessionIdError
from ._core.errors import MissingDependencyError as MissingDependencyError
from ._core.errors import NotReplicatedError as NotReplicatedError
from ._core.errors import SessionIdTakenError as SessionIdTakenError
from ._core.errors import SessionIdTypeError as SessionIdTypeError
from ._core.errors import SessionStoreError as SessionStoreError
from ._core.errors import StoreClosedError as StoreClosedError
from ._core.errors import StoreUnavailableError as StoreUnavailableError
from ._core.expiry import Clock as Clock
from ._core.ids import new_session_id as new_session_id
from ._core.iteration import iter_sessions as iter_sessions
from ._core.json_values import JSONValue as JSONValue
from ._core.protocol import ClosableSessionStore as ClosableSessionStore
from ._core.protocol import FullSessionStore as FullSessionStore
from ._core.protocol import Inspectable as Inspectable
from ._core.protocol import IterableRecords as IterableRecords
from ._core.protocol import IterableSessionStore as IterableSessionStore
from ._core.protocol import LifecycleSessionStore as LifecycleSessionStore
from ._core.protocol import SessionStore as SessionStore
from ._core.public import present_as as _present_as
from ._local.localstorage import LocalStorageSessionStore as LocalStorageSessionStore
from ._local.memory import MemorySessionStore as MemorySessionStore
from ._local.memory import default_store as default_store
from ._tools.cleanup import clean_expired_every as clean_expired_every
from ._tools.cleanup import periodic_cleanup as periodic_cleanup
from ._tools.open_store import open_store as open_store

__all__ = (
    "Clock",
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

_present_as(__name__, globals(), __all__)
