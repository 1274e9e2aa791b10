"""`StoreSpec`: what makes one Redis store (prefix, expiry rules, clock, decoding), no I/O."""

from __future__ import annotations

import attrs

from .._core.codec import Decode, decode_record
from .._core.data import SessionStoreConfig
from .._core.expiry import Clock, slides_on_read

__all__ = ("EXACT", "StoreSpec", "glob_escape")

# Times (ms) below this add up exactly in a double, as a driver's script computes them.
EXACT = 10**15


def glob_escape(text: str) -> str:
    """`text` as a Redis glob that matches only itself: every special character escaped."""
    return "".join("\\" + c if c in "\\*?[]^-" else c for c in text)


@attrs.frozen
class StoreSpec:
    """What makes one store: its prefix, its expiry rules, its clock and how it decodes.

    A spec, not a connection: it names where the sessions live and by which rules, and holds
    nothing about how to reach Redis, so the same spec runs on any driver. `decode` is
    `decode_record` or the store's own cache of it (same answers, same errors).
    """

    prefix: str
    config: SessionStoreConfig
    clock: Clock
    decode: Decode = decode_record
    waits_for_replicas: bool = False
    prefix_bytes: bytes = attrs.field(init=False)
    pattern: bytes = attrs.field(init=False)
    ttl_ms: int | None = attrs.field(init=False)
    slides: bool = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        lifetime = self.config.lifetime_ms
        # Redis keeps a key a little longer than the library's lifetime, so the clock alone
        # decides validity while abandoned sessions still vanish without any cleaning.
        ttl = None if lifetime is None else lifetime + max(1000, lifetime // 10)
        object.__setattr__(self, "prefix_bytes", self.prefix.encode())
        object.__setattr__(self, "pattern", (glob_escape(self.prefix) + "*").encode())
        object.__setattr__(self, "ttl_ms", ttl)
        # A read slides in one `ReadAndSlide` only while the driver's arithmetic (on doubles,
        # in Lua) is exact: every sum of times stays far below 2**53.
        bounded = all(v is None or v < EXACT for v in (lifetime, self.config.max_lifetime_ms))
        object.__setattr__(self, "slides", slides_on_read(self.config) and bounded)

    def key(self, session_id: str) -> str:
        """The Redis key of a session."""
        return self.prefix + session_id

    def ttl(self, now: int, expires_at: int | None) -> int | None:
        """The Redis TTL (ms) of a record written at `now` that expires at `expires_at`.

        None for a record without an expiry. Otherwise a span relative to `now`, never an
        absolute time, a little longer than the expiry written: span + max(1 s, 10 %), where
        the span is the lifetime, or the time left when that is longer or there is no lifetime
        (an expiry set by the absolute timeout alone, or one carried over by `rotate`).
        """
        if expires_at is None:
            return None
        lifetime = self.config.lifetime_ms
        left = max(0, expires_at - now)
        span = left if lifetime is None else max(left, lifetime)
        # A far expiry a record may carry (written elsewhere) would overflow Redis's TTL:
        # 10**15 ms (31,700 years) is as good as forever, and Redis takes it.
        return min(span + max(1000, span // 10), EXACT)
