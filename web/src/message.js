// One message in the transcript. An assistant reply streams in: deltas are coalesced to one
// render per animation frame, and only the unfinished tail of the Markdown is re-rendered (the
// part before the last blank line outside a code fence is rendered once), so a long answer
// costs the same per frame at its end as at its start.
import { h } from "./ui.js";
import { renderMarkdown, stableLength } from "./markdown.js";

let highlighter = null; // loaded on the first code block
function highlight(code, lang) {
  if (!lang) return;
  highlighter = highlighter || import("./highlight.js");
  highlighter.then((module) => module.highlightElement(code, lang)).catch(() => {});
}

export const ADVICE = {
  RATE_LIMITED: (e) => `Too many requests this minute: wait ${e.retryAfter ?? "a few"} s, then send again.`,
  BUDGET_EXCEEDED: (e) => `This hour's token budget cannot cover it: wait ${e.retryAfter ?? "a while"} s, or ask for less (a shorter prompt, fewer files).`,
  UPSTREAM_THROTTLED: (e) => `The model is busy: wait ${e.retryAfter ?? "a few"} s, then regenerate.`,
  UPSTREAM_ERROR: () => "The model failed: regenerate to try again.",
  TIMEOUT: () => "The answer ran out of time: regenerate, or ask for less.",
  PAYLOAD_TOO_LARGE: () => "Too large: shorten the message, or attach the text as a file.",
  MODEL_NOT_ALLOWED: () => "This model is not allowed for you: choose another one.",
  NOT_FOUND: () => "It is gone: reload the list, it may have been deleted or expired.",
  FORBIDDEN: () => "You do not have access to this.",
  QUOTA_EXCEEDED: () => "A quota is spent: delete some files or close another connection.",
  BAD_REQUEST: () => "The request was refused as malformed.",
  UNAUTHORIZED: () => "Your sign-in expired: the page signs in again by itself; send again.",
  INTERNAL: () => "The server failed: try again later.",
  CONNECTION_LOST: () => "The connection dropped before the answer finished: regenerate to ask again.",
};

/** An error (a protocol error {code, message, retryAfter} or an Error) as a block that says what to do. */
export function errorBlock(error) {
  const code = error.code || "ERROR";
  const advice = ADVICE[code] ? ADVICE[code](error) : "";
  const block = h("div", { class: "error", role: "alert" },
    h("strong", {}, `${code}: `), error.message || "", advice ? h("div", { class: "advice" }, advice) : null);
  block.dataset.code = code;
  if (error.retryAfter) {
    const until = Date.now() + error.retryAfter * 1000;
    const count = h("span", { class: "countdown" });
    block.append(count);
    const tick = () => {
      const left = Math.ceil((until - Date.now()) / 1000);
      count.textContent = left > 0 ? ` (${left} s left)` : " (you can send again)";
      if (left > 0 && block.isConnected) setTimeout(tick, 1000);
    };
    tick();
  }
  return block;
}

export function userMessage(text, { note } = {}) {
  return h("article", { class: "msg user", "aria-label": "You" },
    note ? h("div", { class: "note" }, note) : null,
    h("div", { class: "body plain" }, text));
}

export class AssistantMessage {
  /** `onProposal(path, text, lang)`: a code block that names a file was offered as a change. */
  constructor({ onProposal, onRegenerate }) {
    this.onProposal = onProposal;
    this.onRegenerate = onRegenerate;
    this.text = "";
    this.stableEnd = 0;
    this.frame = 0;
    this.stable = h("div", { class: "stable" });
    this.tail = h("div", { class: "tail" });
    this.body = h("div", { class: "body markdown" }, this.stable, this.tail);
    this.meta = h("footer", { class: "meta" }, h("span", { class: "typing" }, "…"));
    this.el = h("article", { class: "msg assistant streaming", "aria-label": "Assistant", "aria-busy": "true" },
      this.body, this.meta);
  }

  append(text) {
    this.text += text;
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush(final = false) {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    const end = final ? this.text.length : stableLength(this.text, this.stableEnd);
    if (end > this.stableEnd) {
      const fragment = renderMarkdown(this.text.slice(this.stableEnd, end));
      this.decorate(fragment, true);
      // Each finished part in its own box, which the browser skips laying out while off screen.
      this.stable.append(h("div", { class: "chunk" }, fragment));
      this.stableEnd = end;
    }
    const rest = this.text.slice(this.stableEnd);
    if (rest || this.tail.firstChild) {
      const fragment = renderMarkdown(rest);
      this.decorate(fragment, false);
      this.tail.replaceChildren(fragment);
    }
    this.el.dispatchEvent(new Event("rendered", { bubbles: true }));
  }

  decorate(root, final) {
    for (const pre of root.querySelectorAll("pre[data-lang]")) {
      pre.className = "code";
      const code = pre.querySelector("code");
      const lang = pre.dataset.lang;
      const path = pre.dataset.path;
      const bar = h("div", { class: "code-bar" }, h("span", { class: "lang" }, path ? `${lang} · ${path}` : lang));
      const copy = h("button", { type: "button", class: "copy", "aria-label": "Copy the code" }, "Copy");
      copy.addEventListener("click", async () => {
        try {
          await navigator.clipboard.writeText(code.textContent);
          copy.textContent = "Copied";
        } catch {
          copy.textContent = "Copy failed";
        }
        setTimeout(() => { copy.textContent = "Copy"; }, 1500);
      });
      bar.append(copy);
      if (path && final && this.onProposal) {
        bar.append(h("button", { type: "button", class: "propose",
          onclick: () => this.onProposal(path, code.textContent, lang) }, `Review change to ${path}`));
      }
      pre.prepend(bar);
      if (final) highlight(code, lang || path);
    }
  }

  addToolUse(frame) {
    this.flush(true);
    this.el.insertBefore(h("details", { class: "tool", open: true },
      h("summary", {}, `Tool call: ${frame.name}`),
      h("pre", {}, JSON.stringify(frame.input, null, 2))), this.meta);
  }

  finish({ stopReason, usage, model }) {
    this.flush(true);
    this.el.classList.remove("streaming");
    this.el.removeAttribute("aria-busy");
    const parts = [stopReason];
    if (usage) parts.push(`${usage.inputTokens} in / ${usage.outputTokens} out tokens`);
    if (usage && typeof usage.costUsd === "number") parts.push(`$${usage.costUsd.toFixed(4)}`);
    if (model) parts.push(model);
    this.meta.replaceChildren(h("span", { class: "stop" }, parts.join(" · ")), this.actions());
  }

  fail(error) {
    this.flush(true);
    this.el.classList.remove("streaming");
    this.el.removeAttribute("aria-busy");
    this.el.insertBefore(errorBlock(error), this.meta);
    this.meta.replaceChildren(this.actions());
  }

  note(text) {
    this.el.insertBefore(h("div", { class: "note" }, text), this.meta);
  }

  /** A stored reply (from session.get): rendered at once, no streaming. */
  static stored(text, options, { cancelled } = {}) {
    const message = new AssistantMessage(options);
    message.text = text;
    message.finish({ stopReason: cancelled ? "cancelled" : "stored" });
    message.meta.querySelector(".stop").textContent = cancelled ? "cancelled" : "";
    return message;
  }

  actions() {
    const copy = h("button", { type: "button", class: "link", "aria-label": "Copy the answer" }, "Copy answer");
    copy.addEventListener("click", () => navigator.clipboard.writeText(this.text).then(
      () => { copy.textContent = "Copied"; }, () => { copy.textContent = "Copy failed"; }));
    return h("span", { class: "msg-actions" }, copy);
  }
}
