"""The JWKS fetcher against a real HTTP server on 127.0.0.1: status codes, retry, bounds."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chalicelib.auth import errors
from chalicelib.auth.jwks import MAX_JWKS_BYTES, HttpJwksFetcher
from tests import tokens


class Server:
    """Answers each GET with the next scripted reply; ("drip", n) sends headers then one byte every 0.2 s."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                status, body = outer.replies.pop(0) if len(outer.replies) > 1 else outer.replies[0]
                if status == "drip":
                    self.send_response(200)
                    self.send_header("Content-Length", str(body))
                    self.end_headers()
                    try:
                        for _ in range(body):
                            self.wfile.write(b" ")
                            self.wfile.flush()
                            time.sleep(0.2)
                    except ConnectionError:
                        return  # the fetcher hung up, as it should
                    return
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/pool/.well-known/jwks.json"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(*replies):
        servers.append(Server(replies))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


JWKS = json.dumps(tokens.jwks()).encode()


def fetcher(**kwargs):
    return HttpJwksFetcher(connect_timeout=0.5, read_timeout=0.5, sleep=lambda s: None, **kwargs)


def test_fetches_the_document(serve):
    server = serve((200, JWKS))
    assert fetcher().fetch(server.url)["keys"][0]["kid"] == tokens.KID
    assert server.requests == 1


def test_one_retry_after_a_server_error(serve):
    server = serve((503, b"busy"), (200, JWKS))
    assert fetcher().fetch(server.url)["keys"]
    assert server.requests == 2


def test_gives_up_after_one_retry(serve):
    server = serve((500, b"down"))
    with pytest.raises(errors.JwksUnavailable):
        fetcher().fetch(server.url)
    assert server.requests == 2


@pytest.mark.parametrize("reply", [(404, b"no"), (200, b"not json"), (200, b'{"no": "keys"}'),
                                   (200, b'{"keys": []' + b" " * MAX_JWKS_BYTES + b"}")])
def test_client_errors_and_bad_documents_are_not_retried(serve, reply):
    server = serve(reply)
    with pytest.raises(errors.JwksUnavailable):
        fetcher().fetch(server.url)
    assert server.requests == 1


def test_a_dripping_server_is_cut_off_by_the_read_deadline(serve):
    server = serve(("drip", 50))  # would take 10 s to send its body
    started = time.monotonic()
    with pytest.raises(errors.JwksUnavailable):
        fetcher().fetch(server.url)
    # Two attempts of at most connect + read each (0.5 + 0.5 s), not 2 x 10 s.
    assert time.monotonic() - started < 2.5
    assert server.requests == 2


def test_unreachable_host_and_other_schemes():
    with pytest.raises(errors.JwksUnavailable):
        fetcher().fetch("http://127.0.0.1:9/jwks.json")  # discard port: refused at once
    with pytest.raises(errors.JwksUnavailable):
        fetcher().fetch("file:///etc/passwd")
