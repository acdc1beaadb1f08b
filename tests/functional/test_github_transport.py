"""The HTTP boundary against real sockets: keep-alive reuse, and the read timeout."""
from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chalicelib.transport import HttpTransport, TransportError


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: set = set()

    def do_GET(self):
        Handler.connections.add(self.client_address)
        if self.path == "/slow":  # answers nothing for a second, then hangs up
            time.sleep(1)
            self.close_connection = True
            return
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-RateLimit-Remaining", "4999")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Handler.connections = set()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_responses_keep_their_status_headers_and_body_and_the_connection_is_reused(server):
    transport = HttpTransport(connect_timeout=1, read_timeout=2)
    first = transport.send("GET", f"{server}/a?x=1", headers={"Accept": "application/json"}, body=None)
    second = transport.send("GET", f"{server}/b", headers={}, body=None)
    assert first.status == 200 and first.body == b'{"ok": true}' and first.header("X-RateLimit-Remaining") == "4999"
    assert second.status == 200 and len(Handler.connections) == 1


def test_a_server_that_does_not_answer_is_a_transport_error_after_the_read_timeout():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts connections, never answers
        transport = HttpTransport(connect_timeout=1, read_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(TransportError, match="timed out"):
            transport.send("GET", f"http://127.0.0.1:{listener.getsockname()[1]}/x", headers={}, body=None)
        assert time.monotonic() - started < 2


def test_a_refused_connection_is_a_transport_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransportError):
        HttpTransport(connect_timeout=1, read_timeout=1).send("GET", f"http://127.0.0.1:{port}/", headers={},
                                                              body=None)



def test_the_time_left_caps_the_timeouts_of_new_and_kept_alive_connections(server):
    transport = HttpTransport(connect_timeout=1, read_timeout=30)
    assert transport.send("GET", f"{server}/a", headers={}, body=None).status == 200  # a kept-alive connection
    started = time.monotonic()
    with pytest.raises(TransportError, match="timed out"):
        transport.send("GET", f"{server}/slow", headers={}, body=None, timeout=0.3)  # answers after 1 s
    assert time.monotonic() - started < 0.9
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts connections, never answers
        started = time.monotonic()
        with pytest.raises(TransportError, match="timed out"):
            transport.send("GET", f"http://127.0.0.1:{listener.getsockname()[1]}/x", headers={}, body=None,
                           timeout=0.3)
        assert time.monotonic() - started < 0.9
