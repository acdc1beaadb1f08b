// Proposed file changes (from a reply's code block that names a file, or from an edit in the
// viewer): a diff per file against the repository's default branch, then one pull request.
import { $, h, toast } from "./ui.js";

let editorModule = null;
const loadEditor = () => (editorModule = editorModule || import("./editor.js"));

export class Changes {
  constructor({ conn, showTab }) {
    this.conn = conn;
    this.showTab = showTab;
    this.repo = null;
    this.files = new Map(); // path -> {diff (null while the diff view loads), el, text}
    this.pending = new Map(); // path -> the latest proposal of it still loading
    $("pr-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.openPullRequest();
    });
  }

  setRepo(repo) {
    if (repo?.fullName === this.repo?.fullName) return;
    this.repo = repo;
    for (const path of [...this.files.keys()]) this.discard(path);
  }

  count() {
    $("changes-count").textContent = this.files.size ? `(${this.files.size})` : "";
    $("pr-form").hidden = this.files.size === 0;
    $("changes-empty").hidden = this.files.size > 0;
  }

  /** Show `text` as the new content of `path`, diffed against the repository's version. */
  async propose(path, text) {
    if (!this.repo) {
      toast("Choose the repository in the Repository tab first: the change is diffed against it.", "error");
      this.showTab("repo");
      return;
    }
    this.showTab("changes");
    const ticket = {};
    this.pending.set(path, ticket);
    let original = "";
    let isNew = false;
    try {
      original = (await this.conn.request("github.file", { repo: this.repo.fullName, path, ref: this.repo.defaultBranch })).content;
    } catch (error) {
      if (error.code !== "NOT_FOUND") return toast(`${path}: ${error.code || ""} ${error.message}`, "error");
      isNew = true;
    }
    const { openDiff } = await loadEditor();
    // The same file proposed again meanwhile (a double click): only the latest shows, once.
    if (this.pending.get(path) !== ticket) return;
    this.pending.delete(path);
    this.discard(path);
    const view = h("div", { class: "diff" });
    const el = h("section", { class: "change", dataset: { path } },
      h("header", {}, h("strong", {}, path), isNew ? h("span", { class: "badge" }, "new file") : null,
        h("button", { type: "button", class: "link", onclick: () => this.discard(path) }, "Discard")),
      view);
    $("changes").append(el);
    const entry = { diff: null, el, text };
    this.files.set(path, entry);
    entry.diff = await openDiff(view, path, original, text);
    if (this.files.get(path) !== entry) entry.diff.destroy(); // discarded while it loaded
    if (!$("pr-title").value) $("pr-title").value = `Update ${path}`;
    if (!$("pr-branch").value) $("pr-branch").value = `llm-ide/${new Date().toISOString().slice(0, 19).replace(/[-:T]/g, "")}`;
    this.count();
    $("pr-result").replaceChildren();
  }

  discard(path) {
    const file = this.files.get(path);
    if (!file) return;
    file.diff?.destroy();
    file.el.remove();
    this.files.delete(path);
    this.count();
  }

  async openPullRequest() {
    const button = $("open-pr");
    button.disabled = true;
    const result = $("pr-result");
    result.replaceChildren("Opening the pull request…");
    try {
      const files = [...this.files].map(([path, file]) => ({ path, content: file.diff ? file.diff.text() : file.text }));
      const pr = await this.conn.request("github.pr", {
        repo: this.repo.fullName, base: this.repo.defaultBranch, branch: $("pr-branch").value.trim(),
        title: $("pr-title").value.trim(), body: $("pr-body").value, files });
      // The URL is GitHub's (html_url): a link only to a web page, never a javascript: or data: one.
      const number = `#${pr.number}`;
      result.replaceChildren("Pull request ", webUrl(pr.url) ? h("a", { href: pr.url, target: "_blank",
        rel: "noopener noreferrer", id: "pr-link" }, number) : number, ` opened from ${pr.branch} (${pr.commitSha.slice(0, 7)}).`);
      for (const path of [...this.files.keys()]) this.discard(path);
      $("pr-title").value = "";
      $("pr-branch").value = "";
      $("pr-body").value = "";
    } catch (error) {
      result.replaceChildren(h("span", { class: "error" }, `${error.code || "ERROR"}: ${error.message}`));
    } finally {
      button.disabled = false;
    }
  }
}

/** Whether `url` is an absolute http(s) URL. */
function webUrl(url) {
  try {
    return ["https:", "http:"].includes(new URL(url).protocol);
  } catch {
    return false;
  }
}
