// The sidebar: the user's sessions, newest first and paged; open, rename, delete.
import { $, confirmDialog, formatTime, h, toast } from "./ui.js";
import { isUnknownAction } from "./connection.js";

const PAGE = 20;
const HISTORY_PAGES_AT_ONCE = 5;
const TITLE_MAX_CHARS = 200;

/** Why the server would refuse `title` (session.update's rules in docs/PROTOCOL.md: 1-200 characters, not
 *  blank, one line without control characters), in words for the user; "" when it would take it. */
export function titleProblem(title) {
  if (!/[^\s\p{Cf}]/u.test(title)) return "A title needs some visible text.";
  if (/[\p{Cc}\u2028\u2029]/u.test(title)) return "A title is one line, without tabs or other control characters.";
  const length = [...title].length;
  if (length > TITLE_MAX_CHARS) return `A title has at most ${TITLE_MAX_CHARS} characters; this one has ${length}.`;
  return "";
}

export class Sessions {
  constructor({ conn }) {
    this.conn = conn;
    this.list = $("sessions");
    this.cursor = null;
    this.chat = null; // set by main.js (the two refer to each other)
    this.canRename = true;
    $("more-sessions").addEventListener("click", () => this.loadMore());
  }

  async load() {
    this.list.replaceChildren();
    this.cursor = null;
    await this.loadMore();
  }

  async loadMore() {
    const more = $("more-sessions");
    more.disabled = true;
    try {
      const params = { limit: PAGE };
      if (this.cursor) params.cursor = this.cursor;
      const page = await this.conn.request("session.list", params);
      for (const session of page.sessions) {
        if (!this.item(session.sessionId)) this.list.append(this.render(session));
      }
      this.cursor = page.cursor;
      more.hidden = !page.cursor;
    } catch (error) {
      toast(`Sessions could not be listed: ${error.message}`, "error");
    } finally {
      more.disabled = false;
    }
  }

  item(sessionId) {
    return this.list.querySelector(`li[data-session-id="${CSS.escape(sessionId)}"]`);
  }

  render(session) {
    const open = h("button", { type: "button", class: "session-open", title: session.title,
      onclick: () => this.open(session.sessionId) },
    h("span", { class: "title" }, session.title), h("time", { datetime: session.updatedAt }, formatTime(session.updatedAt)));
    const rename = h("button", { type: "button", class: "icon", "aria-label": `Rename ${session.title}`,
      onclick: () => this.rename(session.sessionId) }, "✎");
    const remove = h("button", { type: "button", class: "icon", "aria-label": `Delete ${session.title}`,
      onclick: () => this.remove(session.sessionId) }, "✕");
    const li = h("li", { dataset: { sessionId: session.sessionId, updatedAt: session.updatedAt } }, open, rename, remove);
    if (!this.canRename) rename.hidden = true;
    return li;
  }

  select(sessionId) {
    for (const li of this.list.children) {
      li.classList.toggle("current", li.dataset.sessionId === sessionId);
      li.querySelector(".session-open").setAttribute("aria-current", li.dataset.sessionId === sessionId ? "page" : "false");
    }
  }

  /** A session the chat just made: first in the list, selected. */
  added(session) {
    this.item(session.sessionId)?.remove();
    this.list.prepend(this.render(session));
    this.select(session.sessionId);
  }

  /** The session had activity: it moves to the top, as session.list would order it. */
  touched(session) {
    const li = session && this.item(session.sessionId);
    if (li && li !== this.list.firstElementChild) this.list.prepend(li);
  }

  async open(sessionId) {
    if (this.chat.running) return toast("Wait for the answer to finish, or cancel it, first.");
    const ticket = this.opening = {};
    // Pages come one by one: another session opened, or a new chat started, meanwhile has the
    // transcript now, and a page of this one that arrives late is not put into it.
    const current = () => this.opening === ticket && (pages === 0 || this.chat.session?.sessionId === sessionId);
    let pages = 0;
    try {
      let page = await this.conn.request("session.get", { sessionId });
      if (!current()) return;
      this.chat.show(page.session, page.messages);
      this.select(sessionId);
      pages = 1;
      while (page.cursor) {
        if (pages % HISTORY_PAGES_AT_ONCE === 0) {
          await this.morePagesButton();
        }
        page = await this.conn.request("session.get", { sessionId, cursor: page.cursor });
        if (!current()) return;
        this.chat.appendStored(page.messages);
        pages += 1;
      }
    } catch (error) {
      if (!current()) return;
      toast(`The session could not be opened: ${error.code || ""} ${error.message}`, "error");
      if (error.code === "NOT_FOUND") this.item(sessionId)?.remove();
    }
  }

  /** A new chat replaces the transcript: a session still being opened stays closed. */
  stopOpening() {
    this.opening = null;
  }

  morePagesButton() {
    return new Promise((resolve) => {
      const button = h("button", { type: "button", class: "more-history" }, "Load later messages");
      button.addEventListener("click", () => { button.remove(); resolve(); });
      $("transcript").append(button);
    });
  }

  rename(sessionId) {
    const li = this.item(sessionId);
    const title = li.querySelector(".title").textContent;
    const input = h("input", { class: "rename", value: title, "aria-label": "New title" });
    const form = h("form", { class: "rename-form" }, input);
    li.replaceChildren(form);
    input.focus();
    input.select();
    let done = false;
    const restore = (session) => li.replaceWith(this.render(session));
    // Enter with a title the server would refuse says why at the field and keeps what was typed; leaving
    // the field with one (a click elsewhere) keeps the old title and says why in a note.
    const finish = async (save, { stay = false } = {}) => {
      if (done) return;
      done = true;
      const wanted = input.value.trim();
      const problem = save && wanted !== title ? titleProblem(wanted) : "";
      if (problem && stay) {
        done = false;
        input.setCustomValidity(problem);
        input.reportValidity();
        return;
      }
      if (problem) toast(`The title stays “${title}”: ${problem}`, "error");
      if (!save || problem || wanted === title) return restore({ sessionId, title, updatedAt: li.dataset.updatedAt });
      try {
        const { session } = await this.conn.request("session.update", { sessionId, title: wanted });
        restore(session);
        this.select(this.chat.session?.sessionId);
        if (this.chat.session?.sessionId === sessionId) {
          this.chat.session = session;
          $("chat-title").textContent = session.title;
        }
      } catch (error) {
        if (isUnknownAction(error)) {
          this.canRename = false;
          toast("This server cannot rename sessions yet.", "error");
        } else toast(`Rename failed: ${error.code || ""} ${error.message}`, "error");
        restore({ sessionId, title, updatedAt: li.dataset.updatedAt });
      }
    };
    form.addEventListener("submit", (event) => { event.preventDefault(); finish(true, { stay: true }); });
    input.addEventListener("input", () => input.setCustomValidity(""));
    input.addEventListener("keydown", (event) => { if (event.key === "Escape") finish(false); });
    input.addEventListener("blur", () => finish(true));
  }

  async remove(sessionId) {
    const title = this.item(sessionId).querySelector(".title").textContent;
    if (!(await confirmDialog(`Delete “${title}” with all its messages and files? This cannot be undone.`))) return;
    try {
      await this.conn.request("session.delete", { sessionId });
      this.item(sessionId)?.remove();
      if (this.chat.session?.sessionId === sessionId) this.chat.clear();
      toast(`Deleted “${title}”.`);
    } catch (error) {
      toast(`Delete failed: ${error.code || ""} ${error.message}`, "error");
    }
  }
}
