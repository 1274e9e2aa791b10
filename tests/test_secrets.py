"""Masking: no password from a URL reaches a message, whatever form the URL takes."""

from __future__ import annotations

from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from walletmesh_sessions import InvalidConfigError, open_store
from walletmesh_sessions._core.masking import (
    NOTICE,
    misread_userinfo,
    redact,
    redact_error,
    redact_message,
)
from walletmesh_sessions.redis import RedisSessionStore

# Characters URL parsers treat specially, which a password may still hold.
AWKWARD = "#/?@:%&=;+ "
PASSWORDS = st.text(alphabet=st.sampled_from("abcXYZ019" + AWKWARD), min_size=0, max_size=20).map(
    lambda tail: "Sekr3t" + tail
)


class TestForms:
    """Each way a credential can sit in a URL is masked."""

    @pytest.mark.parametrize(
        ("url", "shown"),
        [
            ("redis://user:hunter2@h:6379/0", "redis://user:***@h:6379/0"),
            ("redis://:hunter2@h:6379/0", "redis://:***@h:6379/0"),
            ("rediss://default:hunter2@h", "rediss://default:***@h"),
            ("redis://user:hunter%232@h/0", "redis://user:***@h/0"),
        ],
    )
    def test_userinfo(self, url: str, shown: str) -> None:
        """user:password@ and :password@ (empty user), encoded or not."""
        assert redact(url) == shown

    @pytest.mark.parametrize(
        ("url", "shown"),
        [
            ("redis://user:pa#ss/word@host:6379", "redis://user:***@host:6379"),
            ("redis://user:pa/ss@host:6379/0", "redis://user:***@host:6379/0"),
            ("redis://user:pa?ss@host:6379/0", "redis://user:***@host:6379/0"),
            ("redis://user:p@ss:w@host:6379/0", "redis://user:***@host:6379/0"),
            ("redis://:a#b@host", "redis://:***@host"),
        ],
    )
    def test_unparseable_password(self, url: str, shown: str) -> None:
        """A password with an unencoded # / ? @ is masked up to the last '@' all the same."""
        assert redact(url) == shown

    @pytest.mark.parametrize(
        "query",
        [
            "password=hunter2",
            "PASSWORD=hunter2",
            "Password=hunter2&db=1",
            "db=1&passwd=hunter2",
            "pwd=hunter2",
            "ssl_password=hunter2",
            "sentinel-password=hunter2",
            "token=hunter2",
            "client_secret=hunter2",
            "pass%77ord=hunter2",
            "password=hunter%232",
            "password=hun#ter2",
        ],
    )
    def test_query_parameter(self, query: str) -> None:
        """A secret query parameter keeps its name and loses its value."""
        shown = redact(f"redis://h:6379/0?{query}")
        assert "hunter" not in shown
        assert "***" in shown

    def test_other_parameters_stay(self) -> None:
        """Only secrets are masked: the rest of the URL stays readable."""
        url = "redis://user@h:6379/0?db=1&client_name=api&prefix=wm_"
        assert redact(url) == url
        assert redact("unix:///run/redis@main.sock?db=0") == "unix:///run/redis@main.sock?db=0"
        assert redact("sqlite:///sessions.db") == "sqlite:///sessions.db"
        assert redact("sessions.db") == "sessions.db"

    def test_both_places(self) -> None:
        """A URL with a password in the userinfo and in the query loses both."""
        shown = redact("redis://u:one1@h/0?password=two2")
        assert shown == "redis://u:***@h/0?password=***"

    def test_at_in_a_secret_query_value(self) -> None:
        """An '@' in a secret query value cannot leave a piece of it visible."""
        shown = redact("redis://h:6379/0?password=ab@cdef")
        assert "ab" not in shown.split("//")[1]
        assert "cdef" not in shown

    @given(PASSWORDS)
    def test_any_password_in_userinfo(self, password: str) -> None:
        """Whatever the characters, the password, as written or encoded, is gone."""
        for written in (password, quote(password, safe="")):
            for url in (f"redis://user:{written}@host:6379/0", f"redis://:{written}@host"):
                shown = redact(url)
                assert password not in shown
                assert written not in shown

    @given(PASSWORDS.filter(lambda p: "&" not in p))
    def test_any_password_in_query(self, password: str) -> None:
        """The same for a password given as a query parameter."""
        for written in (password, quote(password, safe="")):
            shown = redact(f"redis://host:6379/0?db=0&password={written}")
            assert password not in shown
            assert written not in shown


class TestConnectionStrings:
    """A libpq key=value string's password is masked, however it is written."""

    @pytest.mark.parametrize(
        ("dsn", "shown"),
        [
            ("host=db password=Sekr3t", "host=db password=***"),
            ("host=db password = Sekr3t user=u", "host=db password = *** user=u"),
            ("password='Sek r3t' host=db", "password=*** host=db"),
            ("host=db password='Sek\\'r3t' user=u", "host=db password=*** user=u"),
            ("host=db\tPASSWORD=Sekr3t", "host=db\tPASSWORD=***"),
            ("host=db sslpassword=Sekr3t", "host=db sslpassword=***"),
            ("host=db password='Sekr3t", "host=db password=***"),
        ],
    )
    def test_forms(self, dsn: str, shown: str) -> None:
        """Bare, spaced, quoted, escaped, upper-case and unterminated values."""
        assert redact(dsn) == shown

    @given(PASSWORDS)
    def test_any_quoted_password(self, password: str) -> None:
        """Whatever the characters, a quoted password is gone, as written and encoded."""
        written = password.replace("\\", "\\\\").replace("'", "\\'")
        dsn = f"host=db password='{written}' dbname=app"
        assert password not in redact(dsn)
        message = f"no file at {quote(dsn)} ({dsn})"
        assert "Sekr3t" not in redact_message(message, dsn)

    def test_where_they_go(self) -> None:
        """open_store and PostgresSessionStore.from_url refuse one without showing it."""
        from walletmesh_sessions.postgres import PostgresSessionStore

        dsn = "host=127.0.0.1 dbname=app password=Sekr3t"
        for make in (open_store, PostgresSessionStore.from_url):
            with pytest.raises(InvalidConfigError) as info:
                make(dsn)
            assert_clean(info.value, ("Sekr3t",))


class TestMessages:
    """Text about a URL, such as a parser's error, is masked too."""

    def test_whole_secret_replaced(self) -> None:
        """The secret, as written or decoded, is replaced where it appears."""
        url = "redis://u:hunter%232@h"
        assert redact_message("bad password hunter#2", url) == "bad password ***"
        assert redact_message("nothing secret", url) == "nothing secret"

    def test_piece_gives_the_notice(self) -> None:
        """A parser that cut the password and quotes a piece: the message is withheld."""
        url = "redis://user:pa#ss/word@host:6379"
        message = "Port could not be cast to integer value as 'pa'"
        assert redact_message(message, url) == NOTICE

    def test_error_stand_in(self) -> None:
        """An error quoting the password is replaced by a masked one of the same builtin kind."""
        url = "redis://user:pa#ss/word@host:6379"
        clean = ValueError("no scheme")
        assert redact_error(clean, url) is clean
        masked = redact_error(ValueError("Port ... as 'pa'"), url)
        assert isinstance(masked, ValueError)
        assert "pa'" not in str(masked)


class TestWhereUrlsGo:
    """Every place that puts a URL in an exception masks it."""

    @pytest.mark.parametrize(
        "url",
        [
            "redis://h:6379/0?password=Sekr3t&lifetime=soon",
            "redis://:Sekr3t@h:6379/0?lifetime=soon",
            "ftp://u:Sekr3t@h/?password=Sekr3t",
            "memory://?password=Sekr3t",
            "redis://user:Sek#r3t@host:6379",
            "redis://user:Sekr3t@host:99999999",
        ],
    )
    def test_open_store(self, url: str) -> None:
        """open_store's errors, and every cause chained to them, hide the password."""
        with pytest.raises(InvalidConfigError) as info:
            open_store(url)
        assert_clean(info.value, ("Sekr3t", "Sek", "r3t"))

    @pytest.mark.parametrize(
        "url",
        [
            "redis://user:Sek#r3t@host:6379",
            "redis://user:Sek/r3t@host:6379",
            "redis://host:6379/0?password=Sekr3t&db=x",
            "redis://:Sekr3t@host:6379/0?socket_timeout=soon",
        ],
    )
    def test_from_url(self, url: str) -> None:
        """RedisSessionStore.from_url's parse errors, and their causes, hide the password."""
        with pytest.raises(InvalidConfigError) as info:
            RedisSessionStore.from_url(url)
        assert "not a Redis URL" in str(info.value)
        assert_clean(info.value, ("Sekr3t", "Sek", "r3t"))


def assert_clean(error: BaseException, secrets: tuple[str, ...]) -> None:
    """Neither the error nor any exception a traceback of it would print shows a secret."""
    seen: BaseException | None = error
    while seen is not None:
        for secret in secrets:
            assert secret not in str(seen), f"{type(seen).__name__}: {seen}"
            assert secret not in repr(seen)
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)


def test_an_encoded_password_does_not_withhold_plain_messages() -> None:
    """A percent-encoded password is never misread, so its pieces mean nothing in a message."""
    url = "redis://:ab%23t@127.0.0.1:6397/0"
    message = "Redis is unavailable (inspect): ConnectionError"
    assert redact_message(message, url) == message


@pytest.mark.parametrize(
    ("url", "misread"),
    [
        ("postgresql://user:pa%23ss@host/db", False),
        ("postgresql://user:plain@host/db?x=1", False),
        ("postgresql://host/db", False),
        ("postgresql://user:pa#ss@host/db", True),
        ("postgresql://user:pa/ss@host/db", True),
        ("postgresql://user:pa?ss@host/db", True),
        ("postgresql://user:p@ss@host/db", True),
        ("postgresql://us/er@host/db", True),
    ],
)
def test_misread_userinfo(url: str, misread: bool) -> None:
    """A user name or password with an unencoded '#', '/', '?' or '@' is told apart."""
    assert misread_userinfo(url) is misread


class TestPlusAsSpace:
    """A space in a password may be written '+' (form encoding): a message that shows the
    password decoded that way, with spaces, is masked too."""

    @pytest.mark.parametrize(
        "url",
        [
            "redis://127.0.0.1:6379/0?password=two+words+here",
            "postgresql://app@db.example/sessions?password=two+words+here&sslmode=disable",
            "redis://user:two+words+here@127.0.0.1:6379/0",
        ],
    )
    def test_spaces_for_plus(self, url: str) -> None:
        """'two+words+here' in the URL: 'two words here' in a message is masked."""
        message = "authentication failed: password 'two words here' rejected"
        masked = redact_message(message, url)
        assert "two words" not in masked
        assert "words here" not in masked
        assert masked == "authentication failed: password '***' rejected"

    def test_error_quoting_spaces_for_plus(self) -> None:
        """An error that quotes the '+'-decoded password gives way to a masked stand-in."""
        url = "redis://127.0.0.1:6379/0?auth=open+sesame"
        masked = redact_error(ValueError("bad auth 'open sesame'"), url)
        assert isinstance(masked, ValueError)
        assert "open sesame" not in str(masked)

    @given(PASSWORDS.filter(lambda p: " " in p))
    def test_any_password_with_spaces(self, password: str) -> None:
        """Form-encoded in the query, a password with spaces never shows decoded."""
        url = f"redis://127.0.0.1:6379/0?password={quote_plus(password)}"
        masked = redact_message(f"refused: {password}", url)
        assert password not in masked
        assert "Sekr3t" not in masked
