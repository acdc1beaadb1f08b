// The WebSocket to the backend (docs/PROTOCOL.md), kept open by itself: it reconnects with
// backoff when the socket drops, with a fresh access token when the old one expired (or is about
// to: a socket is replaced a minute before its token expires, since the backend refuses every
// frame of a connection whose token has expired), keeps an idle socket alive, and tells its
// listeners when it is back so running answers can resume (chat.resume).

const QUICK_TIMEOUT_MS = 60_000; // a request answered by one result/error (github.* run in a worker)
const KEEPALIVE_MS = 5 * 60_000; // API Gateway drops a socket idle for 10 minutes
const RENEW_BEFORE_EXPIRY_MS = 60_000; // the same margin as auth.js refreshes the token with
const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000, 15000];

export class ProtocolError extends Error {
  /** An `error` frame: `code` is the protocol's error code, `retryAfter` seconds where given. */
  constructor(error) {
    super(error.message || error.code);
    this.code = error.code;
    this.retryAfter = error.retryAfter;
  }
}

export class ConnectionLost extends Error {
  constructor() {
    super("the connection dropped before the answer came");
    this.code = "CONNECTION_LOST";
  }
}

export class Connection extends EventTarget {
  /** `url`: the WebSocket API; `tokens`: an Auth (accessToken({force}), tokenExpiresAt()). */
  constructor({ url, tokens }) {
    super();
    this.url = url;
    this.tokens = tokens;
    this.socket = null;
    this.state = "closed"; // closed | connecting | open | reconnecting
    this.handlers = new Map(); // request id -> (frame) => void
    this.nextId = 1;
    this.attempt = 0;
    this.closing = false;
    this.forceRefresh = false;
    this.opening = null;
    this.keepalive = null;
    this.renewal = null;
    this.unanswered = new Set(); // ids sent on this socket that no frame has answered yet
  }

  _setState(state) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }

  /** Resolves once the socket is open (connecting first if needed). */
  open() {
    const ws = this.socket;
    if (ws && ws.readyState !== WebSocket.OPEN) this._dropped(ws); // closing: its close event is still to come
    if (this.state === "open" && this.socket) return Promise.resolve();
    if (!this.opening) {
      this.closing = false;
      const opening = this._connect().finally(() => {
        if (this.opening === opening) this.opening = null;
      });
      this.opening = opening;
    }
    return this.opening;
  }

  async _connect() {
    for (;;) {
      this._setState(this.attempt ? "reconnecting" : "connecting");
      try {
        const token = await this.tokens.accessToken({ force: this.forceRefresh });
        this.forceRefresh = false;
        await this._openSocket(token);
        const reconnected = this.attempt > 0 || this.wasOpen;
        this.attempt = 0;
        this.wasOpen = true;
        this._setState("open");
        // After this connect has settled: what the listeners send may replace this socket in turn.
        if (reconnected) setTimeout(() => this.dispatchEvent(new Event("reopen")), 0);
        return;
      } catch (error) {
        if (this.closing) throw error;
        if (error.code === "NotAuthorizedException") { // the refresh token itself is no longer valid
          this._setState("closed");
          this.dispatchEvent(new Event("signedout"));
          throw error;
        }
        // A refused handshake looks like any failed connect in a browser: refresh the token next time.
        this.forceRefresh = true;
        const wait = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
        this.attempt += 1;
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
  }

  _openSocket(token) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${this.url}?token=${encodeURIComponent(token)}`);
      let opened = false;
      ws.onopen = () => {
        opened = true;
        this.socket = ws;
        this._startKeepalive();
        resolve();
      };
      ws.onerror = () => { if (!opened) reject(new Error("the connection was refused")); };
      ws.onclose = () => {
        if (!opened) return reject(new Error("the connection was refused"));
        this._dropped(ws);
      };
      ws.onmessage = (event) => this._receive(event.data);
    });
  }

  /** `ws` is gone (or, `replaced`, being closed by us with nothing unanswered on it): reconnect. */
  _dropped(ws, { replaced = false } = {}) {
    if (this.socket !== ws) return;
    this.socket = null;
    this.unanswered.clear();
    clearInterval(this.keepalive);
    clearTimeout(this.renewal);
    if (this.closing) return this._setState("closed");
    this.attempt = Math.max(this.attempt, 1);
    this._setState("reconnecting");
    if (!replaced) this.dispatchEvent(new Event("drop")); // requests awaiting their answer learn it is lost
    this.open().catch(() => {});
  }

  /** Close `ws` for one with a renewed token; only called when nothing on it awaits an answer. */
  _replace(ws) {
    this._dropped(ws, { replaced: true }); // from now on, frames wait for the new socket
    ws.close(1000, "token refresh");
  }

  _startKeepalive() {
    clearInterval(this.keepalive);
    this.keepalive = setInterval(() => {
      if (this.state === "open") this.request("ping").catch(() => {});
    }, KEEPALIVE_MS);
    // Before the token expires, this socket makes way for one with a renewed token: running answers
    // resume on it, instead of the next frame sent here being refused with UNAUTHORIZED.
    clearTimeout(this.renewal);
    const ws = this.socket;
    const left = this.tokens.tokenExpiresAt() * 1000 - Date.now();
    if (left <= 0) return; // no token to watch (the server will say UNAUTHORIZED, and the next socket gets one)
    const expires = Date.now() + left;
    const renew = () => {
      if (this.socket !== ws || this.closing) return;
      // Not while a request waits for its first answer (a chat without its ack could not be resumed),
      // unless the token is about to run out anyway.
      if (this.unanswered.size && expires - Date.now() > 5000) {
        this.renewal = setTimeout(renew, 250);
        return;
      }
      this._replace(ws);
    };
    this.renewal = setTimeout(renew, left - Math.min(RENEW_BEFORE_EXPIRY_MS, left / 2));
  }

  _receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return; // not JSON: nothing in the protocol, nothing to route
    }
    if (frame.type === "error" && frame.error && frame.error.code === "UNAUTHORIZED") {
      this.forceRefresh = true; // the server closes this socket; the next one gets a fresh token
    }
    this.unanswered.delete(frame.id);
    const handler = this.handlers.get(frame.id);
    if (handler) handler(frame);
    else this.dispatchEvent(new CustomEvent("orphan", { detail: frame }));
  }

  newId(prefix = "w") {
    return `${prefix}${Date.now().toString(36)}.${this.nextId++}`;
  }

  /** Send a frame (opening the socket first); frames about `id` go to `handler` until `forget(id)`. */
  async send(frame, handler) {
    const ws = this.socket;
    if (ws && ws.readyState === WebSocket.OPEN && this.tokens.tokenExpiresAt() - Date.now() / 1000 < 5
        && !this.unanswered.size) {
      this._replace(ws); // its token about to expire (a renewal timer a sleeping laptop delayed)
    }
    do await this.open(); while (!this.socket); // a socket closing meanwhile: this frame waits for the next
    if (handler) this.handlers.set(frame.id, handler);
    this.unanswered.add(frame.id);
    this.socket.send(JSON.stringify(frame));
    return frame.id;
  }

  forget(id) {
    this.handlers.delete(id);
  }

  /** One request, one answer: resolves to the `result`'s data (or the `pong`), rejects with a
   *  ProtocolError for an `error` frame, or ConnectionLost if the socket drops first. */
  request(action, params = {}) {
    const id = this.newId("q");
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => finish(() => reject(new Error(`${action}: no answer in time`))), QUICK_TIMEOUT_MS);
      const onDrop = () => finish(() => reject(new ConnectionLost()));
      const finish = (settle) => {
        clearTimeout(timer);
        this.removeEventListener("drop", onDrop);
        this.forget(id);
        settle();
      };
      this.addEventListener("drop", onDrop);
      this.send({ action, id, ...params }, (frame) => {
        if (frame.type === "error") finish(() => reject(new ProtocolError(frame.error)));
        else finish(() => resolve(frame.type === "result" ? frame.data : frame));
      }).catch((error) => finish(() => reject(error)));
    });
  }

  /** Close on purpose (sign-out): no reconnect, every pending request is dropped. */
  close() {
    this.closing = true;
    clearInterval(this.keepalive);
    clearTimeout(this.renewal);
    this.handlers.clear();
    if (this.socket) this.socket.close(1000, "signed out");
    this.socket = null;
    this.wasOpen = false;
    this.attempt = 0;
    this._setState("closed");
  }
}

/** Whether an error means the server does not have this action (an older backend). */
export function isUnknownAction(error) {
  return error instanceof ProtocolError && error.code === "BAD_REQUEST" && /unknown action/i.test(error.message);
}
