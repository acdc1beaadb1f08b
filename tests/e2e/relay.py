"""A TCP relay in front of the local stack whose connections can go silent, as a network path does.

A laptop that sleeps or changes networks leaves its socket open with nothing coming through it, and
no FIN or RST ever reaches either end: only a client that checks its connection (WebSocket pings)
learns that it is dead. `silence()` does that to every connection open at the time; connections
made afterwards go through.
"""
from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit, urlunsplit


class Relay:
    def __init__(self, url: str) -> None:
        """Relay to the host and port of `url` (a ws:// or http:// URL); `url_for(url)` goes through it."""
        parts = urlsplit(url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._silent: set[socket.socket] = set()
        self.accepted = 0
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    def url_for(self, url: str) -> str:
        parts = urlsplit(url)
        return urlunsplit(parts._replace(netloc=f"127.0.0.1:{self.port}"))

    def silence(self) -> int:
        """Stop relaying on every open connection, closing nothing; how many there were."""
        with self._lock:
            pairs = len(self._open) // 2
            self._silent.update(self._open)
            self._open.clear()
        return pairs

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            sockets = [*self._open, *self._silent]
        for sock in sockets:
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self._target)
            with self._lock:
                self._open += [client, server]
                self.accepted += 1
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), name="relay-pump", daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if source not in self._silent:
                    sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            return  # either end closed
