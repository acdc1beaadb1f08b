"""A WebSocket client of the protocol: what tests, benchmarks and users script against.

A reader thread sorts incoming frames by their `id`, so several requests (a
chat and its cancel, say) can be in flight on one connection. A chat too large
for one frame (a long conversation, images) goes through `chat.upload` by itself.
"""
from __future__ import annotations

import io
import itertools
import json
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from client import transfer

FINAL_TYPES = frozenset({"pong", "result", "done", "error"})
_NO_ID = "\x00no-id"  # frames that carry no id (an error about an unreadable frame)


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


class IdeClient:
    def __init__(self, url: str, token: str | None, *, token_in: str = "header",
                 open_timeout: float = 10.0, max_size: int = 1 << 20) -> None:
        headers: dict[str, str] = {}
        if token is not None and token_in == "header":
            headers["Authorization"] = f"Bearer {token}"
        elif token is not None:
            separator = "&" if "?" in url else "?"
            url = f"{url}{separator}token={token}"
        try:
            self._ws: ClientConnection = connect(url, additional_headers=headers, open_timeout=open_timeout,
                                                 max_size=max_size, user_agent_header="llm-ide-client/1",
                                                 legacy=True)
        except InvalidStatus as exc:
            raise ConnectionRefused(exc.response.status_code) from None
        self._ids = (f"c{n}" for n in itertools.count(1))
        self._queues: dict[str, queue.Queue] = {}
        self._lock = threading.Lock()
        self.closed = threading.Event()
        self.close_error: ConnectionClosed | None = None
        self._reader = threading.Thread(target=self._read_loop, name="ide-client-reader", daemon=True)
        self._reader.start()

    def __enter__(self) -> IdeClient:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._ws.close()
        self._reader.join(timeout=5)

    # --- sending ----------------------------------------------------------

    def send(self, action: str, *, id: str | None = None, **params: Any) -> str:
        """Send a request frame; answers are read with `next_frame(id)` or `frames(id)`."""
        request_id = id or next(self._ids)
        self._queue(request_id)
        self._ws.send(json.dumps({"action": action, "id": request_id, **params}))
        return request_id

    def send_raw(self, data: str | bytes) -> None:
        self._ws.send(data)

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
        """Send a chat.send with `params`; through `chat.upload` when its frame would be over the frame limit."""
        request_id = id or next(self._ids)
        if frame_bytes("chat.send", request_id, params) > FRAME_LIMIT_BYTES:
            params = {"uploadId": self.upload(params)}
        return self.send("chat.send", id=request_id, **params)

    def upload(self, body: dict[str, Any], *, timeout: float = 60.0) -> str:
        """Put a chat.send body with `chat.upload`; its `uploadId` (UploadFailed if refused)."""
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
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

    def _queue(self, key: str) -> queue.Queue:
        with self._lock:
            return self._queues.setdefault(key, queue.Queue())

    def _read_loop(self) -> None:
        try:
            for message in self._ws:
                try:
                    frame = json.loads(message)
                except ValueError:
                    frame = {"type": "invalid", "raw": message}
                key = frame.get("id") if isinstance(frame, dict) else None
                self._queue(key if isinstance(key, str) else _NO_ID).put(frame)
        except ConnectionClosed as exc:
            self.close_error = exc  # closed abnormally; `closed` tells the waiters either way
        finally:
            self.closed.set()

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code


FRAME_LIMIT_BYTES = 32 * 1024  # the protocol's largest client frame (API Gateway's limit)


def frame_bytes(action: str, request_id: str, params: dict[str, Any]) -> int:
    """The UTF-8 size of the frame `send` would write, to choose between a frame and an upload."""
    return len(json.dumps({"action": action, "id": request_id, **params}).encode("utf-8"))
