"""Masking secrets: no message, log line or repr shows a password from a URL, in any form."""

from __future__ import annotations

import re
from urllib.parse import quote, quote_plus, unquote, unquote_plus

__all__ = ("MASK", "misread_userinfo", "redact", "redact_error", "redact_message")

MASK = "***"
# A query parameter holds a secret when its name (lower case, alphanumeric) contains one of these.
SECRET_KEY_PARTS = ("pass", "pwd", "secret", "token", "auth", "credential", "apikey", "accesskey")
SECRET_KEYS = frozenset({"key", "privatekey", "sig", "signature"})
# A parser cuts a password it misreads at these characters and may quote the pieces.
_PIECE_BREAKS = re.compile(r"[/?#@:&;=]")
_QUERY_PAIR = re.compile(r"(?<=[?&])([^=&]*)=([^&]*)")
# A libpq key=value connection string ("host=db password='a b'"): a keyword at the start or
# after white space, '=' with optional spaces, and a value, single-quoted (with \' and \\)
# or up to the next white space.
_CONNINFO_PAIR = re.compile(r"(?:^|(?<=\s))([A-Za-z_]\w*)\s*=\s*('(?:[^'\\]|\\.)*'?|\S*)")
NOTICE = (
    "details withheld: they quote part of the password; "
    "percent-encode any '#', '/', '?' or '@' in it"
)


def is_secret_key(name: str) -> bool:
    """True if a query parameter called `name` (any case, percent-encoded or not) holds a secret."""
    key = re.sub(r"[^a-z0-9]", "", unquote_plus(name).lower())
    return key in SECRET_KEYS or any(part in key for part in SECRET_KEY_PARTS)


def _userinfo(url: str) -> tuple[int, int] | None:
    """Where the password of `url` lies, found in the text: it may hold '#', '/', '?' or '@',
    which end the host part for a URL parser, so the last '@' is taken as the end."""
    start = url.find("//")
    start = 0 if start < 0 else start + 2
    end = url.rfind("@", start)
    if end < 0:
        return None
    colon = url.find(":", start, end)
    if colon < 0 or colon + 1 == end:
        return None
    return colon + 1, end


def misread_userinfo(url: str) -> bool:
    """True if `url`'s user name or password holds an unencoded '#', '/', '?' or '@': a URL
    parser would take part of the password for the host, path, query or fragment."""
    start, end = url.find("//"), url.rfind("@")
    if start >= 0:
        userinfo = url[start + 2 : end] if end > start else ""
    else:
        userinfo = url[1:end] if _userinfo(url) is not None else ""
    return any(c in userinfo for c in "#/?@")


def _spans(url: str) -> list[tuple[int, int]]:
    """Where `url`'s secrets lie: the password, every secret query value, and every secret
    value of a libpq key=value string, in text order."""
    spans = [
        match.span(2)
        for pairs in (_QUERY_PAIR, _CONNINFO_PAIR)
        for match in pairs.finditer(url)
        if match.group(2) and is_secret_key(match.group(1))
    ]
    userinfo = _userinfo(url)
    if userinfo is not None:
        spans.append(userinfo)
    return sorted(spans)


def redact(url: str) -> str:
    """`url` with every credential replaced by ``***``, fit for error messages and logs.

    Masks the password (from the first ':' after ``//`` to the last '@', unencoded '#', '/',
    '?' or '@' included) and every secret query value (``password``, ``token``, ...). When in
    doubt it masks too much, never too little.
    """
    merged: list[tuple[int, int]] = []
    for start, end in _spans(url):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    for start, end in reversed(merged):
        url = url[:start] + MASK + url[end:]
    return url


def redact_message(message: str, url: str) -> str:
    """`message` (text about `url`, such as a parser's error) with `url`'s secrets masked, as
    written and percent-decoded; if a piece of one is still there, a fixed notice instead."""
    secrets = [url[start:end] for start, end in _spans(url)]
    # As written, decoded, and encoded (the command line turns a bare path into a file URL).
    written = (
        f
        for s in secrets
        for f in (s, unquote(s), unquote_plus(s), quote(s, safe=""), quote_plus(s), quote(s))
    )
    forms = sorted({f for f in written if f}, key=len)
    for form in reversed(forms):
        message = message.replace(form, MASK)
    # A parser misreads only what is written: pieces of the secrets as written, not decoded.
    pieces = {p for s in secrets for p in _PIECE_BREAKS.split(s) if p}
    if any(piece in message.replace(MASK, "") for piece in pieces):
        return NOTICE
    return message


def redact_error(error: Exception, url: str) -> Exception:
    """`error` itself if its message shows none of `url`'s secrets, else a stand-in of a
    builtin type `error` is an instance of, with the message masked (to chain as a cause)."""
    message = str(error)
    masked = redact_message(message, url)
    if masked == message:
        return error
    for kind in (ValueError, TypeError, OSError, LookupError):
        if isinstance(error, kind):
            return kind(masked)
    return Exception(masked)
