"""A live uvicorn server and a headless Chromium for the browser tests, both on loopback only.

Chromium is Debian's (/usr/bin/chromium) driven by Debian's chromedriver through selenium: the
driver path is given, so Selenium Manager never runs and nothing is downloaded. Every wait is
bounded by `DEADLINE`, and both contexts stop what they started.
"""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.remote_connection import RemoteConnection

from .servers import starting

__all__ = (
    "DEADLINE",
    "LiveServer",
    "browser_cookies",
    "chromium",
    "fetch",
    "live_server",
    "page_json",
    "plant_cookie",
)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DEADLINE = 10.0
"""Seconds any one wait may take: server start and stop, a page load, a page script."""

# The browser reaches nothing but the loopback server: no update, sync, field-trial or
# component traffic, no QUIC, no proxy, and a profile of its own that is thrown away after.
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    "--window-size=800,600",
)
# The selenium <-> chromedriver HTTP calls, which have no timeout of their own by default.
_DRIVER_CALL_SECONDS = 30


@attrs.frozen
class LiveServer:
    """A server listening on 127.0.0.1:`port`, also reachable as localhost (another site)."""

    port: int

    @property
    def origin(self) -> str:
        """The site the session cookie belongs to."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def other_origin(self) -> str:
        """The same server under another site: hosts differ, so cookies are not shared."""
        return f"http://localhost:{self.port}"


@contextmanager
def live_server(app: Any) -> Iterator[LiveServer]:
    """Serve `app` with uvicorn in a thread on a free loopback port, until the block ends."""
    # The socket is bound here and handed over, so no other process can take the port between.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app,
        http="h11",
        ws="none",
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=int(DEADLINE / 2),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="uvicorn", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + DEADLINE
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                msg = f"uvicorn did not start on 127.0.0.1:{port} within {DEADLINE} s"
                raise RuntimeError(msg)
            time.sleep(0.02)
        yield LiveServer(port)
    finally:
        server.should_exit = True
        thread.join(DEADLINE)
        listener.close()
        if thread.is_alive():
            msg = f"uvicorn on 127.0.0.1:{port} did not stop within {DEADLINE} s"
            raise RuntimeError(msg)


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    """A headless Chromium under chromedriver, with a fresh profile; quit when the block ends."""
    starting("browser")
    with tempfile.TemporaryDirectory(prefix="wm-chromium-", ignore_cleanup_errors=True) as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*_FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
        try:
            executor = driver.command_executor
            assert isinstance(executor, RemoteConnection)
            executor.client_config.timeout = _DRIVER_CALL_SECONDS
            driver.set_page_load_timeout(DEADLINE)
            driver.set_script_timeout(DEADLINE)
            yield driver
        finally:
            driver.quit()


def browser_cookies(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """Every cookie in the browser's store, HttpOnly ones too, as CDP describes them."""
    cookies: list[dict[str, Any]] = driver.execute_cdp_cmd("Storage.getCookies", {})["cookies"]
    return cookies


def plant_cookie(driver: webdriver.Chrome, url: str, name: str, value: str) -> None:
    """Put a Secure, HttpOnly, SameSite=Lax host cookie for `url` straight into the store."""
    driver.execute_cdp_cmd(
        "Network.setCookie",
        {
            "url": url,
            "name": name,
            "value": value,
            "path": "/",
            "secure": True,
            "httpOnly": True,
            "sameSite": "Lax",
        },
    )


_FETCH = """
const [path, method, done] = arguments;
fetch(path, {method, credentials: "include"}).then(
  async (response) => done({status: response.status, body: await response.text()}),
  (error) => done({status: null, body: String(error)}),
);
"""


def fetch(driver: webdriver.Chrome, path: str, method: str = "GET") -> tuple[int, str]:
    """The status and body of a ``fetch()`` the current page makes, with its credentials."""
    result: dict[str, Any] = driver.execute_async_script(_FETCH, path, method)
    status, body = result["status"], result["body"]
    assert isinstance(status, int), f"fetch({path!r}) failed in the page: {body}"
    assert isinstance(body, str)
    return status, body


def page_json(driver: webdriver.Chrome) -> Any:
    """The JSON document the browser shows (Chromium puts a JSON response in a <pre>)."""
    text = driver.execute_script("return document.querySelector('pre')?.textContent ?? null;")
    assert isinstance(text, str), f"no JSON document at {driver.current_url}"
    return json.loads(text)
