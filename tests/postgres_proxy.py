"""A TCP proxy in front of the test PostgreSQL that can lose a connection at a chosen moment.

Armed with a marker, it forwards the next client message that contains it, lets the server
answer (so the statement has run, and committed if it was a commit), then drops that answer
and closes the connection: the client sees a lost connection after the server acted, the
one case where it cannot know whether its statement took effect.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

__all__ = ("CuttingProxy",)

CHUNK = 65536


class _Link:
    """One client connection and its connection to the server."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.doomed = False

    def close(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class CuttingProxy:
    """Forwards 127.0.0.1:`port` to the server's port; `cut_after` arms one cut."""

    def __init__(self, server_port: int) -> None:
        self._server_port = server_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._marker: bytes | None = None
        self._then: Callable[[], None] | None = None
        self.cuts = 0
        self._links: list[_Link] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def cut_after(self, marker: bytes, then: Callable[[], None] | None = None) -> None:
        """Lose the connection that next sends `marker`, once the server has answered it;
        `then` runs after the server answered and before the client sees the loss."""
        with self._lock:
            self._marker, self._then = marker, then

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for link in self._links:
            link.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _address = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self._server_port))
            link = _Link(client, server)
            self._links.append(link)
            threading.Thread(target=self._upstream, args=(link,), daemon=True).start()
            threading.Thread(target=self._downstream, args=(link,), daemon=True).start()

    def _upstream(self, link: _Link) -> None:
        """Client to server; marks the link doomed when the armed marker passes."""
        with contextlib.suppress(OSError):
            while data := link.client.recv(CHUNK):
                with self._lock:
                    if self._marker is not None and self._marker in data:
                        self._marker = None
                        link.doomed = True
                link.server.sendall(data)
        link.close()

    def _downstream(self, link: _Link) -> None:
        """Server to client; the answer to a doomed message is dropped and the link closed."""
        with contextlib.suppress(OSError):
            while data := link.server.recv(CHUNK):
                if link.doomed:
                    with self._lock:
                        then, self._then = self._then, None
                        self.cuts += 1
                    if then is not None:
                        then()
                    break
                link.client.sendall(data)
        link.close()
