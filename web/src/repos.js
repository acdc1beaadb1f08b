// The GitHub App's repositories: browse trees, open a file in the code viewer, add the file or
// a selection to the chat's context, or propose an edit made in the viewer.
import { $, h, toast } from "./ui.js";
import { contextPath } from "./context.js";

let editorModule = null;
const loadEditor = () => (editorModule = editorModule || import("./editor.js"));

export class Repos {
  constructor({ conn, context, changes }) {
    this.conn = conn;
    this.context = context;
    this.changes = changes;
    this.repos = [];
    this.repo = null;
    this.file = null; // {path, content, sha}
    this.editor = null;
    this.loaded = false;
    $("repo-select").addEventListener("change", (event) => this.choose(event.target.value));
    $("add-file").addEventListener("click", () => this.addFile());
    $("add-selection").addEventListener("click", () => this.addSelection());
    $("stage-edit").addEventListener("click", () => this.proposeEdit());
  }

  async load() {
    if (this.loaded) return;
    this.loaded = true;
    const select = $("repo-select");
    select.replaceChildren(h("option", { value: "" }, "Loading…"));
    try {
      const { repos } = await this.conn.request("github.repos");
      this.repos = repos;
      select.replaceChildren(h("option", { value: "" }, repos.length ? "Choose a repository" : "No repository is shared with the app"),
        ...repos.map((repo) => h("option", { value: repo.fullName }, `${repo.fullName}${repo.private ? " (private)" : ""}`)));
    } catch (error) {
      this.loaded = false;
      select.replaceChildren(h("option", { value: "" }, "Repositories unavailable"));
      $("repo-tree").replaceChildren(h("li", { class: "error" }, `${error.code || ""}: ${error.message}`));
    }
  }

  async choose(fullName) {
    this.repo = this.repos.find((repo) => repo.fullName === fullName) || null;
    this.changes.setRepo(this.repo);
    this.closeFile();
    if (this.repo) await this.browse("");
  }

  async browse(path) {
    const tree = $("repo-tree");
    tree.replaceChildren(h("li", { class: "hint" }, "Loading…"));
    this.crumbs(path);
    try {
      const params = { repo: this.repo.fullName, ref: this.repo.defaultBranch };
      if (path) params.path = path;
      // The tree is recursive: keep the folder's own entries.
      const prefix = path ? `${path}/` : "";
      const entries = (await this.conn.request("github.tree", params)).entries
        .filter((entry) => entry.path.startsWith(prefix) && !entry.path.slice(prefix.length).includes("/"));
      const sorted = [...entries].sort((a, b) => (a.type === b.type ? a.path.localeCompare(b.path) : a.type === "dir" ? -1 : 1));
      tree.replaceChildren(...sorted.map((entry) => {
        const name = entry.path.split("/").pop();
        const isDir = entry.type === "dir" || entry.type === "tree";
        return h("li", {}, h("button", { type: "button", class: `entry ${isDir ? "dir" : "file"}`,
          onclick: () => (isDir ? this.browse(entry.path) : this.openFile(entry.path)) },
        isDir ? `▸ ${name}/` : name));
      }));
      if (!entries.length) tree.append(h("li", { class: "hint" }, "Empty folder."));
    } catch (error) {
      tree.replaceChildren(h("li", { class: "error" }, `${error.code || ""}: ${error.message}`));
    }
  }

  crumbs(path) {
    const nav = $("repo-path");
    const parts = path ? path.split("/") : [];
    nav.replaceChildren(h("button", { type: "button", class: "link", onclick: () => this.browse("") }, this.repo.fullName),
      ...parts.flatMap((part, index) => [" / ", h("button", { type: "button", class: "link",
        onclick: () => this.browse(parts.slice(0, index + 1).join("/")) }, part)]));
  }

  async openFile(path) {
    try {
      const [file, editor] = await Promise.all([
        this.conn.request("github.file", { repo: this.repo.fullName, path, ref: this.repo.defaultBranch }), loadEditor()]);
      this.closeFile();
      this.file = file;
      $("file-path").textContent = file.path;
      $("file-view").hidden = false;
      this.editor = await editor.openEditor($("editor"), file.path, file.content);
    } catch (error) {
      toast(`${path} could not be opened: ${error.code || ""} ${error.message}`, "error");
    }
  }

  closeFile() {
    this.editor?.destroy();
    this.editor = null;
    this.file = null;
    $("file-view").hidden = true;
  }

  /** The context path of a repository file: each of its names made one the server accepts (git allows
   *  a tab, a backslash or a C1 control in a name; a context path does not). */
  repoPath(path) {
    return `repos/${this.repo.fullName}/${path.split("/").map((name) => contextPath("", name)).join("/")}`;
  }

  async addFile() {
    if (this.file && await this.context.upload(this.repoPath(this.file.path), this.file.content)) {
      toast(`${this.file.path} goes with your next messages.`);
    }
  }

  async addSelection() {
    const selection = this.editor?.selection();
    if (!selection) return toast("Select some lines in the viewer first.");
    const path = contextPath(`repos/${this.repo.fullName}/`, `${this.file.path.replaceAll("/", "_")}.L${selection.fromLine}-L${selection.toLine}`);
    if (await this.context.upload(path, selection.text)) toast(`Lines ${selection.fromLine}–${selection.toLine} go with your next messages.`);
  }

  proposeEdit() {
    if (!this.file) return;
    const text = this.editor.text();
    if (text === this.file.content) return toast("The file is unchanged: edit it in the viewer first.");
    this.changes.propose(this.file.path, text);
  }
}
