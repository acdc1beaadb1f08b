// The WebSocket to the backend (docs/PROTOCOL.md), kept open by itself: it reconnects with
// backoff when the socket drops, with a fresh access token when the old one expired, keeps an
// idle socket alive, and tells its listeners when it is back so running answers can resume.

const QUICK_TIMEOUT_MS = 60_000; // a request answered by one result/error (github.* run in a worker)
const KEEPALIVE_MS = 5 * 60_000; // API Gateway drops a socket idle for 10 minutes
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
  }

  _setState(state) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }

  /** Resolves once the socket is open (connecting first if needed). */
  open() {
    if (this.state === "open") return Promise.resolve();
    if (!this.opening) {
      this.closing = false;
      this.opening = this._connect().finally(() => { this.opening = null; });
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
        if (reconnected) this.dispatchEvent(new Event("reopen"));
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

  _dropped(ws) {
    if (this.socket !== ws) return;
    this.socket = null;
    clearInterval(this.keepalive);
    if (this.closing) return this._setState("closed");
    this.attempt = Math.max(this.attempt, 1);
    this._setState("reconnecting");
    this.dispatchEvent(new Event("drop"));
    this.open().catch(() => {});
  }

  _startKeepalive() {
    clearInterval(this.keepalive);
    this.keepalive = setInterval(() => {
      if (this.state === "open") this.request("ping").catch(() => {});
    }, KEEPALIVE_MS);
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
    const handler = this.handlers.get(frame.id);
    if (handler) handler(frame);
    else this.dispatchEvent(new CustomEvent("orphan", { detail: frame }));
  }

  newId(prefix = "w") {
    return `${prefix}${Date.now().toString(36)}.${this.nextId++}`;
  }

  /** Send a frame (opening the socket first); frames about `id` go to `handler` until `forget(id)`. */
  async send(frame, handler) {
    if (this.state === "open" && this.tokens.tokenExpiresAt() - Date.now() / 1000 < 30 && !this.busy()) {
      this.socket.close(1000, "token refresh"); // reconnect now rather than be told UNAUTHORIZED
    }
    await this.open();
    if (handler) this.handlers.set(frame.id, handler);
    this.socket.send(JSON.stringify(frame));
    return frame.id;
  }

  forget(id) {
    this.handlers.delete(id);
  }

  busy() {
    return [...this.handlers.keys()].some((id) => id.startsWith("c"));
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
