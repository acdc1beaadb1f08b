"""The bridge's one WebSocket to the backend, shared by every HTTP request.

Requests are multiplexed by their `id`. The socket is opened on the first request, kept alive
with the protocol's `ping`, and opened again with a renewed token when it closes or when its
token has expired (the backend refuses every frame of an expired connection); the chats that
were running are then resumed (`chat.resume` with the last `seq` seen), so their streams go on
where they were. Stream frames are deduplicated by `seq`, so a frame that arrives on both the
old and the new socket is passed on once.
"""
from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from client.auth import NotSignedIn, SignedIn, TokenFileBusy, Tokens
from client.bridge.errors import ApiError
from client.connection import json_body, needs_upload

logger = logging.getLogger("llm_ide.bridge")

FINAL = frozenset({"pong", "result", "error"})  # the last frame of a request that is not a chat
STREAM = frozenset({"delta", "toolUse"})  # frames numbered by `seq`
IDEMPOTENT = frozenset({"ping", "models.list", "usage.get", "chat.upload", "chat.countTokens"})
TOKEN_MARGIN_SECONDS = 5  # a connection whose token expires sooner is replaced before it is used
REPLACED_DRAIN_SECONDS = 2.0  # how long a replaced socket's pending answers are awaited (an ack takes ~0.1 s)
RECONNECT_DELAYS = (0.0, 0.25, 0.5, 1, 2, 4, 8, 15, 15)  # about 45 s in all, then the chats fail
# A socket that died without a close (a laptop asleep, a new network) delivers nothing and says so never:
# a WebSocket ping this often, unanswered for as long, closes it, and its chats are resumed on a new one.
# The same as the client library's (websockets' defaults); the protocol's `ping` keeps the connection open.
PING_INTERVAL_SECONDS = 20.0
# While a chat streams, the token file is looked at (one stat) this often: a logout, or a login as another user, ends
# the chats of the sign-in that is gone within about this long, not at the bridge's next request or ping (minutes).
SIGN_IN_CHECK_SECONDS = 1.0
_T = TypeVar("_T")
_CLOSED = {"type": "_closed"}  # put in a request's queue when its socket closed before its answer


def unavailable(url: str, why: object) -> ApiError:
    return ApiError(503, "BACKEND_UNAVAILABLE", f"cannot reach the backend at {url}: {why}")


class Chat:
    """One running chat: its `ack`, its frames in order (once each), and its cancel."""

    def __init__(self, backend: Backend, chat_id: str) -> None:
        self.id, self._backend = chat_id, backend
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.ack: dict[str, Any] = {}
        self.request_id: str | None = None  # the server's, from the ack
        self.last_seq = -1
        self.ended = False
        self.resume_id: str | None = None  # the latest chat.resume sent for it: only its answer counts

    async def frames(self) -> AsyncIterator[dict[str, Any]]:
        """The stream frames (`delta`, `toolUse`), then the one `done` or `error`."""
        while not self.ended:
            frame = await self.queue.get()
            kind = frame.get("type")
            if kind in STREAM:
                seq = frame.get("seq")
                if isinstance(seq, int):
                    if seq <= self.last_seq:
                        continue  # already passed on (replayed after a reconnect)
                    self.last_seq = seq
            elif kind in ("done", "error"):
                self._end()
            else:
                continue  # anything a later protocol adds
            yield frame

    def _end(self) -> None:
        self.ended = True
        self._backend._forget(self.id)

    async def cancel(self) -> None:
        """Ask the backend to stop the chat; its `done` (`cancelled`) still comes through `frames`."""
        if not self.ended:
            await self._backend._send_quietly("chat.cancel", requestId=self.request_id or self.id)

    async def abandon(self) -> None:
        """The caller went away: stop the chat, and drop whatever else comes for it."""
        if not self.ended:
            self._end()
            await self._backend._send_quietly("chat.cancel", requestId=self.request_id or self.id)


class Backend:
    """One multiplexed WebSocket to `url`, signed in as `account`."""

    def __init__(self, url: str, account: SignedIn, *, token_use: str = "access",
                 keepalive_seconds: float = 240.0, answer_timeout: float = 30.0,
                 ping_interval: float = PING_INTERVAL_SECONDS, sign_in_check: float = SIGN_IN_CHECK_SECONDS,
                 opener: Callable[..., Any] = connect) -> None:
        self.url = url
        self._account, self._token_use = account, token_use
        self._keepalive, self._answer_timeout = keepalive_seconds, answer_timeout
        self._ping_interval, self._sign_in_check = ping_interval, sign_in_check
        self._watching = False  # whether _watch_sign_in runs
        self._sign_in_read: tuple[int, int, int] | None = None  # the token file's version when last read
        self._opener = opener
        self._ws: ClientConnection | None = None
        self._expires_at = 0.0
        self._username = ""  # whose token opened the socket
        self._lock = asyncio.Lock()
        self._ids = (f"b{n}" for n in itertools.count(1))
        self._routes: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._sent_on: dict[str, ClientConnection] = {}  # request id -> the socket its frame went out on
        self._chats: dict[str, Chat] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._http: aiohttp.ClientSession | None = None
        self._keeping_alive = False
        self.reconnects = 0

    # --- the socket ----------------------------------------------------------------------

    async def _tokens(self, *, force_refresh: bool = False) -> Tokens:
        return await self._sign_in(functools.partial(self._account.tokens, force_refresh=force_refresh))

    async def _sign_in(self, read: Callable[[], _T]) -> _T:
        """`read()` of the sign-in, in a thread; ApiError 401 when there is none (logged out, or never in), 503 when
        another llm-ide process holds the token file too long."""
        self._sign_in_read = self._account.version()  # before the read: a change made meanwhile is seen as one
        try:
            return await asyncio.to_thread(read)
        except NotSignedIn as exc:
            raise ApiError(401, "UNAUTHORIZED", str(exc)) from None
        except TokenFileBusy as exc:  # the sign-in is still there: the request may be sent again, nothing signed off
            raise ApiError(503, "UNAVAILABLE", str(exc)) from None

    async def _open(self) -> ClientConnection:
        """A new socket with a fresh token; a refused handshake is tried once more with a renewed one."""
        for force_refresh in (False, True):
            tokens = await self._tokens(force_refresh=force_refresh)
            if tokens.expired(TOKEN_MARGIN_SECONDS):  # never a socket whose token is about to run out
                tokens = await self._tokens(force_refresh=True)
            try:
                ws = await self._opener(self.url, additional_headers={
                    "Authorization": f"Bearer {tokens.token(self._token_use)}"},
                    open_timeout=10, ping_interval=self._ping_interval,
                    ping_timeout=self._ping_interval, max_size=4 << 20, user_agent_header="llm-ide-bridge/1")
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status == 401 and not force_refresh:
                    continue
                if status == 401:
                    raise ApiError(401, "UNAUTHORIZED", f"the backend at {self.url} refused the sign-in of"
                                   f" {tokens.username}: run `llm-ide login`") from None
                raise unavailable(self.url, f"the handshake was refused with HTTP {status}") from None
            except (OSError, TimeoutError) as exc:
                raise unavailable(self.url, exc) from None
            self._expires_at, self._username = tokens.expires_at, tokens.username
            self._spawn(self._read(ws))
            return ws
        raise AssertionError("unreachable")

    async def _connection(self) -> ClientConnection:
        """The open socket, opened (or replaced, when its token is about to expire) as needed.

        The sign-in is read again for every frame (the token file, a few hundred bytes): after
        `llm-ide logout`, or a login as another user, the old sign-in's socket serves no more, and
        its chats are cancelled. Else a running bridge chatted on as the user who signed out, for as
        long as the socket's token held (up to an hour). Between frames, _watch_sign_in does the same
        while chats stream.
        """
        async with self._lock:
            ws = self._ws
            if ws is not None:
                ws = await self._signed_in(ws)
                if ws is not None and time.time() + TOKEN_MARGIN_SECONDS < self._expires_at:
                    return ws
            old_expires_at = self._expires_at
            self._ws = await self._open()
            if self._keepalive and not self._keeping_alive:
                self._keeping_alive = True
                self._spawn(self._keep_alive())
            if ws is not None:  # replaced: its answers are awaited, its chats move to the new socket, then it goes
                await self._drain(ws, until=old_expires_at - 1)
                await self._resume_all()
                await ws.close()
            return self._ws

    async def _signed_in(self, ws: ClientConnection) -> ClientConnection | None:
        """`ws` while its user is still the one signed in (with the lock held). Else it is signed off (_sign_off):
        None when another user is signed in now (the caller opens their socket), ApiError 401 when nobody is."""
        try:
            # Only who is signed in: a renewal (a call to Cognito) waits for the socket that needs the new token.
            username = await self._sign_in(self._account.username)
        except ApiError as signed_out:
            await self._sign_off(ws, signed_out)
            raise
        if username != self._username:
            await self._sign_off(ws, ApiError(401, "UNAUTHORIZED", f"{self._username} is no longer signed in"
                                              f" here ({username} is): send the request again"))
            return None
        return ws

    def _watch(self) -> None:
        """Watch the sign-in while chats stream (one watcher; it stops when no chat runs)."""
        if self._sign_in_check and not self._watching:
            self._watching = True
            self._spawn(self._watch_sign_in())

    async def _watch_sign_in(self) -> None:
        """While a chat streams, one stat of the token file every `sign_in_check` seconds; when it changed, the
        sign-in is read and checked as a request's would be (_signed_in): a logout, or a login as another user,
        ends the chats of the socket (cancelled, the 401 to their callers) and closes it, within about a second
        rather than at the next request or keep-alive ping."""
        try:
            while any(not chat.ended for chat in self._chats.values()):
                await asyncio.sleep(self._sign_in_check)
                if self._account.version() == self._sign_in_read:
                    continue
                async with self._lock:
                    if self._ws is None:
                        continue  # reconnecting: its _open reads the sign-in anyway
                    try:
                        await self._signed_in(self._ws)
                    except ApiError as exc:
                        logger.info("signed off while chats streamed: %s", exc.message)
                    except Exception as exc:
                        # E.g. the file could not be read. The watch goes on and reads it again at its next look.
                        logger.warning("could not read the sign-in while chats streamed: %s", type(exc).__name__)
                        self._sign_in_read = None
        finally:
            self._watching = False

    def _awaiting(self, ws: ClientConnection) -> list[str]:
        """What was sent on `ws` and awaits its answer there: a request, a resume, a chat's `ack`."""
        return [request_id for request_id in self._routes if self._sent_on.get(request_id) is ws
                and not (request_id in self._chats and self._chats[request_id].request_id is not None)]

    async def _drain(self, ws: ClientConnection, *, until: float) -> None:
        """Before a replaced socket closes (with the lock held), let what awaits an answer on it have it there, for
        up to REPLACED_DRAIN_SECONDS while its token holds; what is still waiting then is told it closed. Else the
        answer came to a closed socket: a request waited out its timeout, and a chat whose `ack` was on its way was
        lost to the caller while it ran (and was charged)."""
        deadline = min(time.time() + REPLACED_DRAIN_SECONDS, until)
        while self._awaiting(ws) and time.time() < deadline:
            await asyncio.sleep(0.02)  # the socket's reader hands the answers on meanwhile
        for request_id in self._awaiting(ws):
            self._routes[request_id].put_nowait(_CLOSED)

    async def _sign_off(self, ws: ClientConnection, error: ApiError) -> None:
        """The socket's sign-in is gone (with the lock held): its chats are cancelled on it and end with
        `error`, the other requests sent on it are told it closed, and it is closed."""
        self._ws = None
        # Acknowledged chats run on the one open socket (moved to it if they began on another); one awaiting its
        # ack belongs to the socket its chat.send went out on, and one not sent yet to none (it goes on the next).
        for chat in [c for c in self._chats.values()
                     if not c.ended and (c.request_id is not None or self._sent_on.get(c.id) is ws)]:
            try:
                await ws.send(json.dumps({"action": "chat.cancel", "id": next(self._ids),
                                          "requestId": chat.request_id or chat.id}))
            except ConnectionClosed:
                logger.info("chat %s not cancelled: its socket closed", chat.id)
            chat.queue.put_nowait({"type": "error", "error": {"code": error.code, "message": error.message}})
        for request_id in self._awaiting(ws):
            if request_id not in self._chats:  # a chat awaiting its ack was ended above
                self._routes[request_id].put_nowait(_CLOSED)
        await ws.close()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                try:
                    frame = json.loads(message)
                except ValueError:
                    logger.warning("the backend sent a frame that is not JSON")
                    continue
                route = self._routes.get(str(frame.get("id"))) if isinstance(frame, dict) else None
                if route is not None:
                    route.put_nowait(frame)
        except ConnectionClosed:
            pass
        finally:
            await self._closed(ws)

    async def _closed(self, ws: ClientConnection) -> None:
        async with self._lock:
            if self._ws is not ws:
                return  # a replaced socket: its chats were moved already
            self._ws = None
        # Requests sent on it that wait for their answer are told; running chats are resumed elsewhere.
        running = {chat.id for chat in self._chats.values() if chat.request_id}
        for request_id, route in list(self._routes.items()):
            if self._sent_on.get(request_id) is ws and request_id not in running:
                route.put_nowait(_CLOSED)
        if running:
            self._spawn(self._reconnect())

    async def _reconnect(self) -> None:
        for delay in RECONNECT_DELAYS:
            await asyncio.sleep(delay)
            try:
                async with self._lock:
                    if self._ws is None:
                        self._ws = await self._open()
                        self.reconnects += 1
                    await self._resume_all()
                return
            except ApiError as exc:
                failure = exc
                logger.warning("reconnecting to %s failed: %s", self.url, exc.message)
                if exc.status == 401:
                    break  # signed out, or the sign-in refused: only `llm-ide login` mends that, not waiting
        for chat in list(self._chats.values()):
            chat.queue.put_nowait({"type": "error", "error": {"code": failure.code, "message": failure.message}})

    async def _resume_all(self) -> None:
        """`chat.resume` every running chat on the current socket (called with the lock held)."""
        for chat in [c for c in self._chats.values() if c.request_id and not c.ended]:
            await self._resume(chat)

    async def _resume(self, chat: Chat) -> None:
        """`chat.resume` one chat on the current socket, from the last `seq` passed on (with the lock held)."""
        ws = self._ws
        assert ws is not None
        resume_id = chat.resume_id = next(self._ids)
        route = self._routes[resume_id] = asyncio.Queue()
        self._sent_on[resume_id] = ws
        try:
            await ws.send(json.dumps({"action": "chat.resume", "id": resume_id, "requestId": chat.request_id,
                                      "afterSeq": chat.last_seq}))
            self._spawn(self._resumed(chat, resume_id, route))
        except ConnectionClosed:
            self._routes.pop(resume_id, None)
            self._sent_on.pop(resume_id, None)
            raise unavailable(self.url, "the connection closed while resuming") from None

    async def _resumed(self, chat: Chat, resume_id: str, route: asyncio.Queue[dict[str, Any]]) -> None:
        try:
            answer = await asyncio.wait_for(route.get(), self._answer_timeout)
        except TimeoutError:
            answer = {"type": "error", "error": {"code": "TIMEOUT", "message": "the backend did not resume the chat"}}
        finally:
            self._routes.pop(resume_id, None)
            self._sent_on.pop(resume_id, None)
        if answer.get("type") != "error" or chat.resume_id != resume_id:
            # Resumed; or _CLOSED: that socket closed too, and the next reconnect resumes the chat again;
            # or a later resume (a newer socket's) speaks for the chat now.
            return
        error = answer.get("error") or {}
        retry_after = error.get("retryAfter")
        if error.get("code") == "RATE_LIMITED" and isinstance(retry_after, int | float):
            # The minute's request limit refused the resume, not the chat, which runs on: ask again then.
            await asyncio.sleep(max(0.0, float(retry_after)))
            try:
                async with self._lock:
                    if not chat.ended and chat.resume_id == resume_id and self._ws is not None:
                        await self._resume(chat)  # else a reconnect has resumed it, or will
            except ApiError as exc:  # the socket closed meanwhile: its reconnect resumes the chat
                logger.info("resuming chat %s again failed: %s", chat.id, exc.message)
            return
        chat.queue.put_nowait({"type": "error", "error": error})  # lost: expired, or a backend without resume

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self._keepalive)
            if self._ws is None:
                continue
            try:
                await self.request("ping", timeout=10)
            except ApiError as exc:
                logger.info("keep-alive ping failed: %s", exc.message)
                ws = self._ws
                if ws is not None:
                    await ws.close()  # its reader reconnects and resumes what was running

    # --- requests ------------------------------------------------------------------------

    async def _send(self, frame: dict[str, Any]) -> None:
        ws = await self._connection()
        if frame["id"] in self._routes:
            self._sent_on[frame["id"]] = ws
        try:
            await ws.send(json.dumps(frame))
        except ConnectionClosed:
            route = self._routes.get(frame["id"])
            if route is not None:
                route.put_nowait(_CLOSED)

    async def _send_quietly(self, action: str, **params: Any) -> None:
        """A frame whose answer nobody waits for (chat.cancel)."""
        try:
            await self._send({"action": action, "id": next(self._ids), **params})
        except ApiError as exc:
            logger.info("%s not sent: %s", action, exc.message)

    async def request(self, action: str, *, timeout: float | None = None, **params: Any) -> dict[str, Any]:
        """Send an action and return its final frame's `data` (`{}` for a pong); ApiError for an error.

        Idempotent actions are sent again once when their socket closes before the answer, and
        any action once more after UNAUTHORIZED (the socket's token expired: a new one is opened).
        A `chat.countTokens` too large for a frame goes through `chat.upload`, as a `chat.send` does.
        """
        request_id = next(self._ids)
        if action == "chat.countTokens" and needs_upload(action, request_id, params):  # as chat.send: an uploadId
            params = {"uploadId": await self._upload(params)}
        for attempt in range(2):
            request_id = request_id if attempt == 0 else next(self._ids)
            route = self._routes[request_id] = asyncio.Queue()
            try:
                await self._send({"action": action, "id": request_id, **params})
                answer = await asyncio.wait_for(route.get(), timeout or self._answer_timeout)
            except TimeoutError:
                raise ApiError(504, "TIMEOUT", f"the backend did not answer {action} in time") from None
            finally:
                self._routes.pop(request_id, None)
                self._sent_on.pop(request_id, None)
            if answer is _CLOSED:
                if action in IDEMPOTENT and attempt == 0:
                    continue
                raise unavailable(self.url, f"the connection closed before {action} was answered")
            if answer.get("type") == "error":
                if answer.get("error", {}).get("code") == "UNAUTHORIZED" and attempt == 0:
                    await self._expire()
                    continue
                raise ApiError.from_protocol(answer.get("error") or {})
            return answer.get("data") or {}
        raise unavailable(self.url, f"{action} failed twice")

    async def _expire(self) -> None:
        """The backend says the socket's token expired: the next request opens a new socket."""
        self._expires_at = 0
        await self._tokens(force_refresh=True)  # signed out meanwhile: 401, telling to log in

    async def start_chat(self, params: dict[str, Any]) -> Chat:
        """Send a `chat.send` (through `chat.upload` when too large for a frame); return it once acknowledged.

        Raises ApiError for a refusal (the backend's `error` instead of an `ack`), 503 when the
        socket closes before the ack (nothing is known to run: the caller may try again).
        """
        chat_id = next(self._ids)
        if needs_upload("chat.send", chat_id, params):
            params = {"uploadId": await self._upload(params)}
        for attempt in range(2):
            chat = self._chats[chat_id] = Chat(self, chat_id)
            self._routes[chat_id] = chat.queue
            try:
                await self._send({"action": "chat.send", "id": chat_id, **params})
                first = await asyncio.wait_for(chat.queue.get(), self._answer_timeout)
            except TimeoutError:
                await chat.abandon()  # by our id: it may have started after all
                raise ApiError(504, "TIMEOUT", "the backend did not acknowledge the chat in time") from None
            except asyncio.CancelledError:  # the caller went away: a chat.send that went out runs without it
                await asyncio.shield(chat.abandon())
                raise
            except BaseException:
                self._forget(chat_id)
                raise
            if first.get("type") == "ack":
                chat.ack, chat.request_id = first, first.get("requestId")
                self._watch()
                return chat
            self._forget(chat_id)
            if first is _CLOSED:
                raise unavailable(self.url, "the connection closed before the chat was acknowledged; try again")
            error = first.get("error") or {}
            if error.get("code") == "UNAUTHORIZED" and attempt == 0:
                await self._expire()
                chat_id = next(self._ids)
                continue
            raise ApiError.from_protocol(error)
        raise AssertionError("unreachable")

    def _forget(self, chat_id: str) -> None:
        self._chats.pop(chat_id, None)
        self._routes.pop(chat_id, None)
        self._sent_on.pop(chat_id, None)

    async def _upload(self, params: dict[str, Any]) -> str:
        """`chat.upload`, then the body PUT to its presigned URL; returns the `uploadId`."""
        body = json_body(params)
        upload = await self.request("chat.upload", size=len(body))
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300, sock_connect=10))
        try:
            async with self._http.put(upload["url"], data=body, headers=upload.get("headers") or {}) as response:
                if response.status >= 300:
                    raise ApiError(502, "UPSTREAM_ERROR",
                                   f"uploading the request was refused with HTTP {response.status}")
        except aiohttp.ClientError as exc:
            raise ApiError(502, "UPSTREAM_ERROR", f"uploading the request failed: {exc}") from None
        return str(upload["uploadId"])

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._ws is not None:
            ws, self._ws = self._ws, None
            await ws.close()
        if self._http is not None:
            await self._http.close()
