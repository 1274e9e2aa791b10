"""The session cookie: its options, reading the id from a request, writing it to a response.

Only a value shaped like `new_session_id()` is ever taken from a request, so a forged,
oversized, non-ASCII or foreign cookie is refused before any store call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

import attrs

from .._core.errors import InvalidConfigError
from .._core.ids import is_new_session_id_shape

__all__ = ("CookieOptions", "is_token", "session_id_from_cookies")

# RFC 6265's cookie-name is an RFC 7230 token.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# A Path or Domain attribute value: printable ASCII, no ';' (it would end the attribute).
_ATTRIBUTE_VALUE = re.compile(r"[\x21-\x3a\x3c-\x7e]+")
_HOST_PREFIX = "__Host-"
_SAME_SITE = {"lax": "Lax", "strict": "Strict", "none": "None"}


def is_token(value: object) -> bool:
    """True if `value` is an HTTP token: what a cookie or header name must be."""
    return isinstance(value, str) and _TOKEN.fullmatch(value) is not None


def _check_name(_instance: object, _attribute: object, value: Any) -> None:
    if not is_token(value):
        msg = f"cookie name must be a token (ASCII letters, digits, !#$%&'*+.^_`|~-), got {value!r}"
        raise InvalidConfigError(msg)


def _check_path(_instance: object, _attribute: object, value: Any) -> None:
    if not (isinstance(value, str) and value[:1] == "/" and _ATTRIBUTE_VALUE.fullmatch(value)):
        msg = f"cookie path must start with '/', printable ASCII but ';', got {value!r}"
        raise InvalidConfigError(msg)


def _check_domain(_instance: object, _attribute: object, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not _ATTRIBUTE_VALUE.fullmatch(value)):
        msg = f"cookie domain must be None or printable ASCII other than ';', got {value!r}"
        raise InvalidConfigError(msg)


def _check_same_site(instance: CookieOptions, _attribute: object, value: Any) -> None:
    if value not in _SAME_SITE:
        msg = f"same_site must be 'lax', 'strict' or 'none', got {value!r}"
        raise InvalidConfigError(msg)
    if value == "none" and not instance.secure:
        msg = "same_site='none' needs secure=True: browsers refuse such a cookie otherwise"
        raise InvalidConfigError(msg)


def _check_bool(_instance: object, attribute: attrs.Attribute[bool], value: Any) -> None:
    if not isinstance(value, bool):
        msg = f"{attribute.name} must be a bool, got {value!r}"
        raise InvalidConfigError(msg)


@attrs.frozen(kw_only=True)
class CookieOptions:
    """How the session id travels in a cookie. The defaults are the safe ones.

    `HttpOnly` keeps it from page scripts, `Secure` off plain HTTP, ``SameSite=Lax`` out of
    cross-site POSTs. With `host_prefix`, and when the options allow it (secure, path ``/``,
    no domain), the name gets the ``__Host-`` prefix, which browsers accept only from the host
    itself over HTTPS: no subdomain or plain-HTTP page can plant or shadow the cookie.
    """

    name: str = attrs.field(default="wm_session", validator=_check_name)
    path: str = attrs.field(default="/", validator=_check_path)
    domain: str | None = attrs.field(default=None, validator=_check_domain)
    secure: bool = attrs.field(default=True, validator=_check_bool)
    http_only: bool = attrs.field(default=True, validator=_check_bool)
    same_site: Literal["lax", "strict", "none"] = attrs.field(
        default="lax", validator=_check_same_site
    )
    host_prefix: bool = attrs.field(default=True, validator=_check_bool)

    @property
    def full_name(self) -> str:
        """The name as sent: ``__Host-`` first when `host_prefix` is set and the options allow."""
        if self.host_prefix and self.secure and self.path == "/" and self.domain is None:
            return _HOST_PREFIX + self.name
        return self.name

    def set_header(self, session_id: str, max_age: int | None) -> bytes:
        """The ``Set-Cookie`` value for `session_id`; no `max_age`: a browser-session cookie."""
        lifetime = "" if max_age is None else f"; Max-Age={max(max_age, 0)}"
        return f"{self.full_name}={session_id}{lifetime}{self._attributes()}".encode("ascii")

    def expire_header(self) -> bytes:
        """The ``Set-Cookie`` value that makes a browser drop the cookie at once."""
        expired = "; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        return f"{self.full_name}={expired}{self._attributes()}".encode("ascii")

    def _attributes(self) -> str:
        parts = [f"Path={self.path}"]
        if self.domain is not None:
            parts.append(f"Domain={self.domain}")
        if self.secure:
            parts.append("Secure")
        if self.http_only:
            parts.append("HttpOnly")
        parts.append(f"SameSite={_SAME_SITE[self.same_site]}")
        return "; " + "; ".join(parts)


def session_id_from_cookies(headers: Iterable[tuple[bytes, bytes]], name: str) -> str | None:
    """The first value of cookie `name` in the request's ``Cookie`` headers that is shaped like
    a session id, else `None`. Other cookies, and values of any other shape, are ignored."""
    wanted = name.encode("ascii")
    for key, value in headers:
        if key.lower() != b"cookie":
            continue
        for pair in value.split(b";"):
            cookie_name, equals, cookie_value = pair.strip(b" \t").partition(b"=")
            if not equals or cookie_name != wanted or not cookie_value.isascii():
                continue
            text = cookie_value.decode("ascii")
            if is_new_session_id_shape(text):
                return text
    return None
