"""A store's cache of decoded records, keyed by their exact text and bounded by its size.

The text is the whole record and `SessionData` is immutable, so a hit is exactly what decoding
would give. `clear` and `aclose` empty their store's cache.
"""

from __future__ import annotations

from .codec import decode_record
from .data import SessionData

__all__ = ("DEFAULT_MAX_CHARS", "DecodeCache")

# Record text held at most, summed: about 4 MiB of str for ASCII records.
DEFAULT_MAX_CHARS = 4 * 1024 * 1024
# A record longer than this is decoded every time: caching it would evict many small ones.
_MAX_ENTRY_CHARS = 64 * 1024


class DecodeCache:
    """`decode_record` with memory: same answers, same errors, bounded by the text it keeps."""

    def __init__(self, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        self._max_chars = max_chars
        self._entries: dict[str, tuple[SessionData, int | None]] = {}
        self._chars = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def chars(self) -> int:
        """The length of all the record text held."""
        return self._chars

    def decode(self, text: object, session_id: str) -> tuple[SessionData, int | None]:
        """Parse a stored record into its data and expiry, as `decode_record` does."""
        if type(text) is not str:
            return decode_record(text, session_id)
        hit = self._entries.get(text)
        if hit is not None:
            return hit
        result = decode_record(text, session_id)
        size = len(text)
        if size <= _MAX_ENTRY_CHARS:
            if self._chars + size > self._max_chars:
                self.clear()  # O(1) amortized, and a hard bound on what is held
            self._entries[text] = result
            self._chars += size
        return result

    def clear(self) -> None:
        """Forget every record."""
        self._entries = {}
        self._chars = 0
