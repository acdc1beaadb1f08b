// The conversation: send, stream, cancel, regenerate, resume after a reconnect, and the
// transcript of a stored session.
import { $, h } from "./ui.js";
import { AssistantMessage, errorBlock, userMessage } from "./message.js";
import { ConnectionLost, ProtocolError, isUnknownAction } from "./connection.js";
import { putWithProgress } from "./context.js";

const SYSTEM_PROMPT = "You are a coding assistant in a web IDE. Answer in Markdown. To propose a change to a "
  + "repository file, give the whole new file in one fenced code block whose info string is the language "
  + "and then the file's path, for example ```python src/app.py.";
const TITLE_CHARS = 60;
// A chat.send frame is served up to 32 KiB, its prompt and system text up to 24 KiB each (MAX_PROMPT_BYTES);
// a larger one goes as a chat.upload body (docs/PROTOCOL.md, "Requests larger than a frame"), as llm-ide's does.
const FRAME_LIMIT_BYTES = 32 * 1024;
const TEXT_LIMIT_BYTES = 24 * 1024;
const encoder = new TextEncoder();

/** Whether the chat.send `frame` must go through chat.upload: a frame would be refused (PAYLOAD_TOO_LARGE), or,
 *  past 128 KiB, cut the connection. */
export function needsUpload(frame) {
  return encoder.encode(JSON.stringify(frame)).length > FRAME_LIMIT_BYTES
    || [frame.prompt, frame.system].some((text) => typeof text === "string" && encoder.encode(text).length > TEXT_LIMIT_BYTES);
}

// Every line break Unicode knows (the server refuses a title holding one), and what a title shows nothing of.
const LINE_BREAK = /\r\n|[\n\r\v\f\x85\u2028\u2029]/;
const VISIBLE = /[^\s\p{Cf}]/u;

/**
 * A new session's title: the prompt's first line of text without the Markdown that opens it (a heading's
 * `#`, a quote's `>`, a list's marker; code fences are skipped), at most TITLE_CHARS characters, cut by
 * code points (cut by UTF-16 units, an emoji may be halved into a lone surrogate the server refuses).
 * Lines end at any line break, a control character (a tab) becomes a space, and a line with nothing
 * visible (zero-width characters only) is skipped: the server refuses such titles, and the chat with them.
 * @param {string} prompt
 * @returns {string}
 */
export function sessionTitle(prompt) {
  for (const raw of prompt.split(LINE_BREAK)) {
    const line = raw.replace(/\p{Cc}/gu, " ").trim();
    if (line.startsWith("```") || line.startsWith("~~~")) continue;
    const text = line.replace(/^(?:#{1,6}\s+|>\s*|[-*+]\s+|\d+[.)]\s+)+/, "").trim();
    const title = Array.from(text).slice(0, TITLE_CHARS).join("").trim();
    if (VISIBLE.test(title)) return title;
  }
  return "Untitled";
}

export class Chat {
  constructor({ conn, limits, models, context, sessions, changes }) {
    this.conn = conn;
    this.limits = limits;
    this.models = models;
    this.context = context;
    this.sessions = sessions;
    this.changes = changes;
    this.session = null;
    this.running = null;
    this.lastPrompt = null;
    this.transcript = $("transcript");
    this.follow = true; // keep the newest text in view unless the reader scrolled up
    this.transcript.addEventListener("scroll", () => {
      const t = this.transcript;
      this.follow = t.scrollHeight - t.scrollTop - t.clientHeight < 40;
    });
    this.transcript.addEventListener("rendered", () => this.scroll());
    conn.addEventListener("reopen", () => this.resume());
    this.messageOptions = {
      onProposal: (path, text, lang) => this.changes.propose(path, text, lang),
    };
  }

  scroll() {
    if (this.follow) this.transcript.scrollTop = this.transcript.scrollHeight;
  }

  setButtons() {
    $("cancel").disabled = !this.running;
    $("send").disabled = Boolean(this.running);
    $("regenerate").disabled = Boolean(this.running) || !this.lastPrompt;
  }

  /** Start a new, empty conversation (its session is made with the first message). */
  clear() {
    this.session = null;
    this.lastPrompt = null;
    this.transcript.replaceChildren(h("p", { class: "hint empty" }, "Ask anything. Attach files or repository code from the panel on the right."));
    $("chat-title").textContent = "New chat";
    this.setButtons();
  }

  /** Show a stored session (messages oldest first); `more` loads further pages if any. */
  show(session, messages) {
    this.session = session;
    $("chat-title").textContent = session.title;
    this.transcript.replaceChildren();
    this.appendStored(messages);
    const lastUser = [...messages].reverse().find((m) => m.role === "user");
    this.lastPrompt = lastUser && typeof lastUser.content === "string" ? lastUser.content : null;
    this.setButtons();
    this.follow = true;
    this.scroll();
  }

  appendStored(messages) {
    for (const message of messages) {
      if (message.role === "user") {
        const el = userMessage(message.content ?? "");
        if (message.content === null && message.contentUrl) this.fetchLong(el.querySelector(".body"), message.contentUrl, null);
        this.transcript.append(el);
        continue;
      }
      const reply = AssistantMessage.stored(message.content ?? "", this.messageOptions, { cancelled: message.cancelled });
      if (message.content === null && message.contentUrl) this.fetchLong(null, message.contentUrl, reply);
      this.transcript.append(reply.el);
    }
  }

  /** A message too large for a frame: its text from the presigned `contentUrl`. */
  async fetchLong(plainEl, url, reply) {
    const target = plainEl || reply.body;
    target.prepend(h("p", { class: "hint loading" }, "Loading a long message…"));
    try {
      const response = await fetch(url, { credentials: "omit", referrerPolicy: "no-referrer" });
      if (!response.ok) throw new Error(`the stored text could not be read (HTTP ${response.status})`);
      const text = await response.text();
      if (plainEl) plainEl.textContent = text;
      else {
        reply.text = "";
        reply.stableEnd = 0;
        reply.stable.replaceChildren();
        reply.append(text);
        reply.flush(true);
      }
    } catch (error) {
      target.replaceChildren(errorBlock({ code: "UPSTREAM_ERROR", message: error.message }));
    }
  }

  async send(prompt, { regenerate = false } = {}) {
    if (this.running || !prompt.trim()) return;
    this.transcript.querySelector(".empty")?.remove();
    this.lastPrompt = prompt;
    const reply = new AssistantMessage(this.messageOptions);
    const run = { id: this.conn.newId("c"), requestId: null, lastSeq: -1, reply, resumed: false, sent: false };
    this.running = run;
    this.setButtons();
    this.transcript.append(userMessage(prompt, { note: regenerate ? "Regenerated" : null }), reply.el);
    this.follow = true;
    this.scroll();
    try {
      if (!this.session) {
        this.session = (await this.conn.request("session.create", { title: sessionTitle(prompt) })).session;
        $("chat-title").textContent = this.session.title;
        this.sessions.added(this.session);
      }
      const params = { prompt, sessionId: this.session.sessionId, system: SYSTEM_PROMPT };
      const model = this.models.selected();
      if (model) params.model = model;
      const maxTokens = Number($("max-tokens").value);
      if (Number.isInteger(maxTokens) && maxTokens > 0) params.maxTokens = maxTokens;
      const paths = this.context.attachedPaths();
      if (paths.length) params.contextPaths = paths;
      let frame = { action: "chat.send", id: run.id, ...params };
      if (needsUpload(frame)) frame = { action: "chat.send", id: run.id, uploadId: await this.upload(params) };
      await this.conn.send(frame, (answer) => this.onFrame(run, answer));
      run.sent = true;
    } catch (error) {
      this.end(run, () => reply.fail(error instanceof ProtocolError ? error : { code: error.code || "ERROR", message: error.message }));
    }
  }

  /** Put the chat.send `params` as a chat.upload body; its uploadId. */
  async upload(params) {
    const body = encoder.encode(JSON.stringify(params));
    const grant = await this.conn.request("chat.upload", { size: body.length });
    await putWithProgress(grant, body);
    return grant.uploadId;
  }

  onFrame(run, frame) {
    const { reply } = run;
    switch (frame.type) {
      case "ack":
        run.requestId = frame.requestId;
        run.model = frame.model;
        this.limits.update(frame.limits);
        break;
      case "delta":
      case "toolUse":
        if (frame.seq <= run.lastSeq) return; // replayed twice (a resume overlapping the live stream)
        run.lastSeq = frame.seq;
        if (frame.type === "delta") reply.append(frame.text);
        else reply.addToolUse(frame);
        break;
      case "done":
        this.end(run, () => reply.finish({ stopReason: frame.stopReason, usage: frame.usage, model: run.model }));
        this.limits.update(frame.limits);
        this.sessions.touched(this.session);
        break;
      case "error":
        this.end(run, () => reply.fail(frame.error));
        break;
      default:
        break; // a frame type this page does not know: the contract lets servers add them
    }
  }

  end(run, render) {
    this.conn.forget(run.id);
    render();
    if (this.running === run) this.running = null;
    this.setButtons();
  }

  async cancel() {
    const run = this.running;
    if (!run) return;
    $("cancel").disabled = true;
    try {
      await this.conn.request("chat.cancel", { requestId: run.requestId || run.id });
    } catch (error) {
      if (this.running === run) run.reply.note(`Cancel failed: ${error.code || ""} ${error.message}`);
      $("cancel").disabled = !this.running;
    }
  }

  regenerate() {
    if (this.lastPrompt && this.optionsValid()) this.send(this.lastPrompt, { regenerate: true });
  }

  /** Whether the options typed beside the chat (max tokens) are valid; if not, the browser says why at the
   *  field, and nothing is sent (an invalid one was dropped without a word: the chat ran with the default). */
  optionsValid() {
    const maxTokens = $("max-tokens");
    if (maxTokens.checkValidity()) return true;
    maxTokens.reportValidity();
    return false;
  }

  /** The socket came back: continue the running answer where it stopped (chat.resume). */
  async resume() {
    const run = this.running;
    if (!run || !run.sent) return; // nothing running, or its chat.send is still to go out (on the new socket)
    if (!run.requestId) { // sent, but the ack was lost with the socket: the chat cannot be named to resume it
      this.end(run, () => run.reply.fail(new ConnectionLost()));
      return;
    }
    const attempt = run.resumes = (run.resumes || 0) + 1; // only the latest resume can end the answer
    try {
      await this.conn.request("chat.resume", { requestId: run.requestId, afterSeq: run.lastSeq });
      if (!run.resumed) run.reply.note("The connection dropped; the answer continues.");
      run.resumed = true;
    } catch (error) {
      if (this.running !== run || run.resumes !== attempt) return; // it ended, or a later resume speaks for it
      if (error instanceof ConnectionLost) return; // this socket dropped too: the next one resumes it
      if (error.code === "RATE_LIMITED" && error.retryAfter >= 0) {
        // The minute's request limit refused the resume, not the answer, which runs on: ask again then.
        setTimeout(() => { if (this.running === run && run.resumes === attempt) this.resume(); },
          error.retryAfter * 1000);
        return;
      }
      this.end(run, () => run.reply.fail(isUnknownAction(error) ? new ConnectionLost() : error));
    }
  }
}
