"""A WebSocket client of the protocol: what tests, benchmarks, the terminal commands and users script against.

A reader thread sorts incoming frames by their `id`, so several requests (a chat and its cancel,
say) can be in flight on one connection. A chat too large for one frame (a long conversation,
images) goes through `chat.upload` by itself.

With `reconnect` (a `Reconnect`), the client also stays connected by itself, as API Gateway
requires of a client: it pings a connection that has sent nothing for a while (API Gateway closes
one idle for ten minutes), opens a new connection with a renewed token before the token expires
(the backend refuses every frame of a connection whose token has expired) or when the backend says
it has (UNAUTHORIZED), and reconnects with backoff when the connection closes (API Gateway closes
every connection after two hours; networks drop). Every chat that was running is then resumed
(`chat.resume` with the last `seq` received), and its frames are deduplicated by `seq`: whoever
reads a chat's frames sees one uninterrupted stream, its `ack`, its stream frames once each in
order, and its one `done` or `error`. A request other than a chat whose connection closed before
its answer raises ClientClosed (it may or may not have been served); so does a chat that had no
`ack` yet (it cannot be resumed without the server's id).
"""
from __future__ import annotations

import io
import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from client import transfer

logger = logging.getLogger("llm_ide.connection")

FINAL_TYPES = frozenset({"pong", "result", "done", "error"})
STREAM_TYPES = frozenset({"delta", "toolUse"})  # a chat's frames numbered by `seq`
_NO_ID = "\x00no-id"  # frames that carry no id (an error about an unreadable frame)
_CLOSED = {"type": "\x00closed"}  # put in a request's queue when its connection closed before its answer

RECONNECT_DELAYS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0)  # about 45 s in all, then give up
KEEPALIVE_SECONDS = 240.0  # well within API Gateway's 10 idle minutes
RENEW_MARGIN_SECONDS = 60.0  # a new connection this long before the token expires (at most half its life)
RETIRE_SECONDS = 10.0  # how long a replaced connection may still answer what was asked on it


class ConnectionRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"the server refused the connection with HTTP {status}")
        self.status = status


class ClientClosed(Exception):
    """The connection closed while a frame was awaited."""


class UploadFailed(Exception):
    """`chat.upload` was refused, or the body's PUT failed; `error` is the protocol's error object, if any."""

    def __init__(self, message: str, error: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.error = error


@dataclass(frozen=True)
class Reconnect:
    """How an IdeClient stays connected by itself.

    `tokens(force_refresh)` returns `(token, expires_at)`: a token to open a connection with and
    when it expires (epoch seconds); with `force_refresh`, a renewed one (the old one was refused,
    or is about to expire). `client.auth.SignedIn` provides one (`token_source`).
    """

    tokens: Callable[[bool], tuple[str, float]]
    delays: Sequence[float] = RECONNECT_DELAYS
    keepalive_seconds: float = KEEPALIVE_SECONDS
    renew_margin_seconds: float = RENEW_MARGIN_SECONDS


@dataclass(eq=False)
class _Socket:
    ws: ClientConnection
    reader: threading.Thread | None = None


@dataclass
class _Chat:
    """A chat.send this client sent: what resuming it needs."""

    socket: _Socket
    request_id: str | None = None  # the server's id, from the ack
    last_seq: int = -1
    resume_id: str | None = None  # the latest chat.resume sent for it: only its answer counts


class IdeClient:
    def __init__(self, url: str, token: str | None = None, *, token_in: str = "header",
                 open_timeout: float = 10.0, max_size: int = 1 << 20, reconnect: Reconnect | None = None) -> None:
        """Connect with `token` (None: none at all), or with `reconnect`'s tokens, and stay connected.

        Raises ConnectionRefused when the handshake is refused (with `reconnect`, after a second try
        with a renewed token when the first one was refused with 401).
        """
        if token is not None and reconnect is not None:
            raise ValueError("a token, or a Reconnect whose tokens open the connection, not both")
        self._url, self._token_in = url, token_in
        self._open_timeout, self._max_size = open_timeout, max_size
        self._reconnect = reconnect
        self._ids = (f"c{n}" for n in itertools.count(1))
        self._internal_ids = (f"i{n}" for n in itertools.count(1))  # keep-alive pings and resumes
        self._queues: dict[str, queue.Queue] = {}
        self._lock = threading.RLock()  # queues, chats, and which socket is current
        self._chats: dict[str, _Chat] = {}
        self._sent_on: dict[str, _Socket] = {}  # a request awaiting its answer -> the socket it went out on
        self._resuming: dict[str, str] = {}  # a chat.resume's id -> the chat's id
        self._keepalives: set[str] = set()
        self._socket: _Socket | None = None
        self._last_ws: ClientConnection | None = None
        self._up = threading.Event()  # a socket is current
        self._wake = threading.Event()  # the supervisor has something to do
        self._stop = threading.Event()  # close() was called: no more reconnecting
        self._force_refresh = False
        self._expires_at = float("inf")
        self._renew_at = float("inf")
        self._last_sent = time.monotonic()
        self.closed = threading.Event()  # closed for good: by close(), or reconnecting gave up
        self.close_error: ConnectionClosed | None = None
        self.reconnects = 0
        self._use(self._open(token) if reconnect is None else self._first_open())
        self._supervisor: threading.Thread | None = None
        if reconnect is not None:
            self._supervisor = threading.Thread(target=self._supervise, name="ide-client-supervisor", daemon=True)
            self._supervisor.start()

    def __enter__(self) -> IdeClient:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            socket = self._socket
        if socket is not None:
            socket.ws.close()
            if socket.reader is not None:
                socket.reader.join(timeout=5)
        self.closed.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)

    # --- sending ----------------------------------------------------------

    def send(self, action: str, *, id: str | None = None, **params: Any) -> str:
        """Send a request frame; answers are read with `next_frame(id)` or `frames(id)`."""
        request_id = id or next(self._ids)
        self._queue(request_id)
        data = json.dumps({"action": action, "id": request_id, **params})
        for attempt in range(2):
            socket = self._current()
            with self._lock:
                self._sent_on[request_id] = socket
                if action == "chat.send":
                    self._chats[request_id] = _Chat(socket)
            try:
                socket.ws.send(data)
            except ConnectionClosed:
                if self._reconnect is None or attempt:
                    raise ClientClosed(f"the connection closed before {action} could be sent") from None
                self._up.wait(self._open_timeout)  # the frame was not written: send it on the next connection
                continue
            self._last_sent = time.monotonic()
            return request_id
        raise AssertionError("unreachable")

    def send_raw(self, data: str | bytes) -> None:
        self._current().ws.send(data)

    # --- receiving --------------------------------------------------------

    def next_frame(self, request_id: str | None, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame about a request (None: frames that carry no id)."""
        box = self._queue(_NO_ID if request_id is None else request_id)
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = box.get(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                if self.closed.is_set() and box.empty():
                    raise ClientClosed(f"connection closed while waiting for {request_id!r}") from None
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"no frame for {request_id!r} within {timeout} s") from None
                continue
            if item is _CLOSED:
                raise ClientClosed(f"the connection closed before {request_id!r} was answered")
            return item

    def frames(self, request_id: str, timeout: float = 60.0) -> Iterator[dict[str, Any]]:
        """Every frame about a request, up to and including its final one."""
        while True:
            frame = self.next_frame(request_id, timeout=timeout)
            yield frame
            if frame.get("type") in FINAL_TYPES:
                return

    def request(self, action: str, *, timeout: float = 10.0, **params: Any) -> dict[str, Any]:
        """Send a request and return its answer (the first frame about it)."""
        return self.next_frame(self.send(action, **params), timeout=timeout)

    def chat(self, prompt: str | None = None, *, timeout: float = 60.0, **options: Any) -> Iterator[dict[str, Any]]:
        """Send a chat.send now; iterate its frames as they come: `ack`, `delta`/`toolUse`..., then `done` or
        `error`.

        `options` are the protocol's parameters (`model`, `maxTokens`, `system`, `messages`, `tools`,
        `toolChoice`, ...); a chat too large for a frame is uploaded first (`send_chat`).
        `timeout` bounds the wait for each frame. The chat's `id` is the `ack`'s `id`.
        """
        params = {"prompt": prompt, **options}
        request_id = self.send_chat({k: v for k, v in params.items() if v is not None})
        return self.frames(request_id, timeout=timeout)

    def send_chat(self, params: dict[str, Any], *, id: str | None = None) -> str:
        """Send a chat.send with `params`; through `chat.upload` when a frame cannot hold it (`needs_upload`)."""
        request_id = id or next(self._ids)
        if needs_upload("chat.send", request_id, params):
            params = {"uploadId": self.upload(params)}
        return self.send("chat.send", id=request_id, **params)

    def upload(self, body: dict[str, Any], *, timeout: float = 60.0) -> str:
        """Put a chat.send body with `chat.upload`; its `uploadId` (UploadFailed if refused)."""
        data = json_body(body)
        answer = self.request("chat.upload", size=len(data), timeout=timeout)
        if answer.get("type") != "result":
            error = answer.get("error") or {}
            raise UploadFailed(f"chat.upload refused: {error.get('code')}: {error.get('message')}", error)
        upload = answer["data"]
        try:
            transfer.put(upload["url"], upload.get("headers") or {}, io.BytesIO(data))
        except transfer.TransferFailed as exc:
            raise UploadFailed(str(exc)) from None
        return str(upload["uploadId"])

    def ping(self, timeout: float = 10.0) -> float:
        """Round trip of a protocol ping, in seconds."""
        started = time.perf_counter()
        frame = self.request("ping", timeout=timeout)
        if frame.get("type") != "pong":
            raise RuntimeError(f"expected pong, got {frame}")
        return time.perf_counter() - started

    def chat_request_id(self, chat_id: str) -> str | None:
        """The server's id (`requestId`) of a running chat this client sent, from its `ack` as the reader
        thread received it, whether or not the `ack` was read from `frames` yet; None before the `ack`,
        or once the chat ended."""
        with self._lock:
            chat = self._chats.get(chat_id)
            return chat.request_id if chat is not None else None

    @property
    def close_code(self) -> int | None:
        return self._last_ws.close_code if self._last_ws is not None else None

    def _queue(self, key: str) -> queue.Queue:
        with self._lock:
            return self._queues.setdefault(key, queue.Queue())

    # --- the socket -------------------------------------------------------

    def _open(self, token: str | None) -> _Socket:
        url, headers = self._url, {}
        if token is not None and self._token_in == "header":
            headers["Authorization"] = f"Bearer {token}"
        elif token is not None:
            url = f"{url}{'&' if '?' in url else '?'}token={token}"
        try:
            ws = connect(url, additional_headers=headers, open_timeout=self._open_timeout, max_size=self._max_size,
                         user_agent_header="llm-ide-client/1", legacy=True)
        except InvalidStatus as exc:
            raise ConnectionRefused(exc.response.status_code) from None
        socket = _Socket(ws)
        socket.reader = threading.Thread(target=self._read_loop, args=(socket,), name="ide-client-reader",
                                         daemon=True)
        socket.reader.start()
        return socket

    def _first_open(self) -> _Socket:
        try:
            return self._open(self._token(force_refresh=False))
        except ConnectionRefused as exc:
            if exc.status != 401:
                raise
        return self._open(self._token(force_refresh=True))

    def _use(self, socket: _Socket) -> None:
        with self._lock:
            self._socket, self._last_ws = socket, socket.ws
            self._up.set()

    def _current(self) -> _Socket:
        socket = self._socket
        if socket is not None:
            return socket
        if self._reconnect is not None and not self.closed.is_set():
            self._up.wait(self._open_timeout * 3)
            socket = self._socket
            if socket is not None:
                return socket
        raise ClientClosed("the connection is closed")

    def _read_loop(self, socket: _Socket) -> None:
        try:
            for message in socket.ws:
                try:
                    frame = json.loads(message)
                except ValueError:
                    frame = {"type": "invalid", "raw": message}
                self._route(frame if isinstance(frame, dict) else {"type": "invalid", "raw": message})
        except ConnectionClosed as exc:
            self.close_error = exc  # closed abnormally; `closed` tells the waiters either way
        finally:
            self._dropped(socket)

    def _route(self, frame: dict[str, Any]) -> None:
        key = frame.get("id")
        key = key if isinstance(key, str) else _NO_ID
        kind = frame.get("type")
        with self._lock:
            if kind == "error" and (frame.get("error") or {}).get("code") == "UNAUTHORIZED":
                self._force_refresh = True  # the backend closes this connection: the next one gets a new token
            if key in self._keepalives:
                self._keepalives.discard(key)
                return
            if key in self._resuming:
                self._sent_on.pop(key, None)
                self._resumed(key, self._resuming.pop(key), frame)
                return
            chat = self._chats.get(key)
            if chat is not None:
                if kind == "ack":
                    chat.request_id = frame.get("requestId")
                elif kind in STREAM_TYPES and isinstance(frame.get("seq"), int):
                    if frame["seq"] <= chat.last_seq:
                        return  # already received: a resume replays from the last seq it knew of
                    chat.last_seq = frame["seq"]
                elif kind in ("done", "error"):
                    del self._chats[key]
            if kind in FINAL_TYPES and kind != "ack":
                self._sent_on.pop(key, None)
            self._queue(key).put(frame)

    def _resumed(self, resume_id: str, chat_id: str, frame: dict[str, Any]) -> None:
        """The answer to a chat.resume (called with the lock held): an error ends the chat with it, but for
        RATE_LIMITED (the minute's request limit refused the resume, not the chat, which runs on): the
        resume is sent again after its `retryAfter`."""
        chat = self._chats.get(chat_id)
        if frame.get("type") != "error" or chat is None or chat.resume_id != resume_id:
            return  # resumed, or ended, or a later resume speaks for the chat now
        error = frame.get("error") or {}
        retry_after = error.get("retryAfter")
        if error.get("code") == "RATE_LIMITED" and isinstance(retry_after, int | float):
            timer = threading.Timer(max(0.0, float(retry_after)), self._resume_again, args=(chat_id, resume_id))
            timer.daemon = True
            timer.start()
            return
        logger.warning("chat %s could not be resumed: %s", chat_id, error.get("code"))
        del self._chats[chat_id]
        self._sent_on.pop(chat_id, None)
        self._queue(chat_id).put({**frame, "id": chat_id})

    def _resume_again(self, chat_id: str, resume_id: str) -> None:
        """A refused resume, once more on the current socket (unless a reconnect resumed the chat meanwhile)."""
        with self._lock:
            chat, socket = self._chats.get(chat_id), self._socket
            if self._stop.is_set() or socket is None or chat is None or chat.resume_id != resume_id:
                return  # closed, or a reconnect resumes it (or has), or it ended
        self._resume(socket, chat_id)

    def _dropped(self, socket: _Socket) -> None:
        """A socket closed: its unanswered requests are told, its chats wait to be resumed elsewhere."""
        with self._lock:
            current = socket is self._socket
            if current:
                self._socket = None
                self._up.clear()
            if self._reconnect is None:
                if current:
                    self.closed.set()
                return
            for request_id, sent_on in list(self._sent_on.items()):
                chat = self._chats.get(request_id)
                if sent_on is not socket or (chat is not None and chat.request_id is not None):
                    continue  # another socket's, or a chat to resume
                del self._sent_on[request_id]
                self._chats.pop(request_id, None)
                self._queue(request_id).put(_CLOSED)
            for resume_id in [r for r, _ in self._resuming.items() if self._sent_on.get(r) is socket]:
                del self._resuming[resume_id]  # the next connection resumes the chat again
                self._sent_on.pop(resume_id, None)
        if current:
            self._wake.set()

    # --- staying connected (with `reconnect`) ----------------------------

    def _token(self, *, force_refresh: bool) -> str:
        """A token for a new connection; renewed when asked, when refused, or when it is about to expire."""
        assert self._reconnect is not None
        now = time.time()
        token, expires_at = self._reconnect.tokens(force_refresh or self._force_refresh)
        if expires_at - now < 5:
            token, expires_at = self._reconnect.tokens(True)
        self._force_refresh = False
        self._expires_at = expires_at
        self._renew_at = expires_at - min(self._reconnect.renew_margin_seconds, (expires_at - now) / 2)
        return token

    def _supervise(self) -> None:
        assert self._reconnect is not None
        keepalive = self._reconnect.keepalive_seconds
        while not self._stop.is_set():
            now = time.monotonic()
            due = min(self._last_sent + keepalive - now, self._renew_at - time.time())
            self._wake.wait(max(0.0, due))
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if self._socket is None:
                    self._reconnect_now()
                elif time.time() >= self._renew_at:
                    self._renew()
                elif time.monotonic() >= self._last_sent + keepalive:
                    self._keep_alive()
            except Exception:
                logger.exception("keeping the connection failed")
                self._renew_at = max(self._renew_at, time.time() + 5)  # tried again soon, not in a loop

    def _reconnect_now(self) -> None:
        assert self._reconnect is not None
        failure: Exception | None = None
        for delay in self._reconnect.delays:
            time.sleep(delay)
            if self._stop.is_set():
                return
            try:
                socket = self._open(self._token(force_refresh=False))
            except ConnectionRefused as exc:
                failure = exc
                self._force_refresh = exc.status == 401  # a refused token: the next try gets a new one
                continue
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                failure = exc
                continue
            except Exception as exc:  # no token to be had (signed out): retrying cannot help
                failure = exc
                break
            self._use(socket)
            self.reconnects += 1
            self._resume_all(socket)
            logger.info("reconnected to %s", self._url)
            return
        logger.warning("could not reconnect to %s: %s", self._url, failure)
        with self._lock:
            self.closed.set()
            for request_id in list(self._chats):
                self._queue(request_id).put(_CLOSED)
            self._chats.clear()

    def _renew(self) -> None:
        """A new connection with a renewed token before the old token expires; the old one retires."""
        old = self._socket
        socket = self._open(self._token(force_refresh=True))
        self._use(socket)
        self.reconnects += 1
        resumes = self._resume_all(socket)
        if old is not None:
            threading.Thread(target=self._retire, args=(old, resumes), name="ide-client-retire", daemon=True).start()

    def _retire(self, socket: _Socket, resumes: list[str]) -> None:
        """Close a replaced socket once what was asked on it is answered and its chats are resumed."""
        deadline = time.monotonic() + RETIRE_SECONDS
        while time.monotonic() < deadline:
            with self._lock:
                waiting = any(s is socket and r not in self._chats for r, s in self._sent_on.items()) \
                    or any(r in self._resuming for r in resumes)
            if not waiting:
                break
            time.sleep(0.05)
        socket.ws.close()

    def _resume_all(self, socket: _Socket) -> list[str]:
        """`chat.resume` every running chat on `socket`, from the last seq received; the resumes' ids."""
        with self._lock:
            running = [chat_id for chat_id, chat in self._chats.items() if chat.request_id is not None]
        sent: list[str] = []
        for chat_id in running:
            resume_id = self._resume(socket, chat_id)
            if resume_id is None:
                return sent  # this socket closed too: the next one resumes them
            sent.append(resume_id)
        return sent

    def _resume(self, socket: _Socket, chat_id: str) -> str | None:
        """`chat.resume` one chat on `socket` from the last seq received; its id (None: the socket closed)."""
        resume_id = next(self._internal_ids)
        with self._lock:
            chat = self._chats.get(chat_id)
            if chat is None or chat.request_id is None:
                return resume_id  # ended meanwhile: nothing to resume
            chat.resume_id = resume_id
            self._resuming[resume_id] = chat_id
            self._sent_on[resume_id] = socket
            frame = json.dumps({"action": "chat.resume", "id": resume_id, "requestId": chat.request_id,
                                "afterSeq": chat.last_seq})
        try:
            socket.ws.send(frame)
        except ConnectionClosed:
            return None
        self._last_sent = time.monotonic()
        return resume_id

    def _keep_alive(self) -> None:
        socket = self._socket
        if socket is None:
            return
        ping_id = next(self._internal_ids)
        with self._lock:
            self._keepalives.add(ping_id)
        try:
            socket.ws.send(json.dumps({"action": "ping", "id": ping_id}))
        except ConnectionClosed:
            return  # its reader reconnects
        self._last_sent = time.monotonic()


FRAME_LIMIT_BYTES = 32 * 1024  # the protocol's largest client frame (API Gateway's limit)
# A frame's `prompt` and `system` are each bound by the backend's MAX_PROMPT_BYTES (PAYLOAD_TOO_LARGE above
# it); an upload's body is not. The default, 24 KiB: a client cannot read a stage's setting.
FRAME_TEXT_LIMIT_BYTES = 24 * 1024


def frame_bytes(action: str, request_id: str, params: dict[str, Any]) -> int:
    """The UTF-8 size of the frame `send` would write, to choose between a frame and an upload."""
    return len(json.dumps({"action": action, "id": request_id, **params}).encode("utf-8"))


def needs_upload(action: str, request_id: str, params: dict[str, Any]) -> bool:
    """Whether a `chat.send` or `chat.countTokens` must go through `chat.upload`: its frame would be over
    FRAME_LIMIT_BYTES, or its `prompt` or `system` over FRAME_TEXT_LIMIT_BYTES (a frame refuses either)."""
    texts = (params.get(name) for name in ("prompt", "system"))
    return frame_bytes(action, request_id, params) > FRAME_LIMIT_BYTES or any(  # a lone surrogate counts too
        isinstance(text, str) and len(text.encode("utf-8", "surrogatepass")) > FRAME_TEXT_LIMIT_BYTES for text in texts)


def json_body(value: Any) -> bytes:
    """`value` as UTF-8 JSON (an upload's body). A lone surrogate, which UTF-8 cannot hold (a JavaScript client's
    text cut in the middle of an emoji), is written as its JSON escape, so the backend refuses it naming the field."""
    try:
        return json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value).encode("ascii")
