// Context files: the user's files in the context store (docs/PROTOCOL.md, context.*), uploaded
// from disk (small ones in a frame, large ones to a presigned URL with a progress bar) or taken
// from a repository; the checked ones go with each chat.send as `contextPaths`.
import { $, confirmDialog, formatBytes, h, toast } from "./ui.js";

// A context.put frame must stay under the 32 KiB frame limit once its text is JSON-escaped.
const FRAME_BUDGET_BYTES = 30 * 1024;
const MAX_ATTACHED = 20; // MAX_CONTEXT_PATHS on the server
const encoder = new TextEncoder();

/** A context path from a file name: what the server's path rules accept (chalicelib/protocol.py's
 *  validate_path): a control character (C0, DEL or C1), '/', '\\' and what compatibility
 *  normalisation (NFKC) turns into either (a fullwidth solidus '／') become '_'; a name that is or
 *  becomes '.' or '..' (a two-dot leader '‥') becomes '_' too. */
export function contextPath(prefix, name) {
  const clean = [...name.normalize("NFC")]
    .map((ch) => (/[\p{Cc}\\/]/u.test(ch) || /[\\/]/.test(ch.normalize("NFKC")) ? "_" : ch)).join("");
  return `${prefix}${/^\.{1,2}$/.test(clean.normalize("NFKC")) ? "_" : clean || "file"}`;
}

export class Context {
  /** `maxBytes`: the largest context file the server takes (config.json's `contextMaxBytes`, the
   *  deployment's CONTEXT_MAX_BYTES); a larger one is refused before it is read. */
  constructor({ conn, maxBytes }) {
    this.conn = conn;
    this.maxBytes = maxBytes;
    this.attached = new Set();
    this.known = new Map(); // path -> {path, size, updatedAt}
    $("file-input").addEventListener("change", (event) => {
      const files = [...event.target.files];
      event.target.value = "";
      this.uploadFiles(files);
    });
    // Files dropped anywhere on the page are attached: a drop the page does not take, the browser takes
    // by opening the file in the page's place, and the answer on its way and the typed prompt go with it.
    // (Text dragged into the message box stays the browser's to insert.)
    const composer = $("chat-form");
    const files = (event) => event.dataTransfer && [...event.dataTransfer.types].includes("Files");
    document.addEventListener("dragover", (event) => {
      if (!files(event)) return;
      event.preventDefault();
      composer.classList.add("drop");
    });
    document.addEventListener("dragleave", (event) => { if (!event.relatedTarget) composer.classList.remove("drop"); });
    document.addEventListener("drop", (event) => {
      composer.classList.remove("drop");
      if (!files(event)) return;
      event.preventDefault();
      this.uploadFiles([...event.dataTransfer.files]);
    });
  }

  attachedPaths() {
    return [...this.attached];
  }

  async load() {
    try {
      const { items } = await this.conn.request("context.list", {});
      this.known = new Map(items.map((item) => [item.path, item]));
      for (const path of this.attached) if (!this.known.has(path)) this.attached.delete(path);
      this.render();
    } catch (error) {
      toast(`Context files could not be listed: ${error.message}`, "error");
    }
  }

  render() {
    const list = $("context-list");
    list.replaceChildren(...[...this.known.values()].map((item) => {
      const box = h("input", { type: "checkbox", checked: this.attached.has(item.path),
        "aria-label": `Attach ${item.path} to the next messages` });
      box.addEventListener("change", () => this.setAttached(item.path, box.checked));
      return h("li", { dataset: { path: item.path } },
        h("label", { class: "file" }, box, h("span", { class: "path" }, item.path)),
        h("span", { class: "size" }, formatBytes(item.size)),
        h("button", { type: "button", class: "icon", "aria-label": `Delete ${item.path}`,
          onclick: () => this.remove(item.path) }, "✕"));
    }));
    if (!this.known.size) list.append(h("li", { class: "hint" }, "No context files yet."));
    $("attached").replaceChildren(...[...this.attached].map((path) => h("li", { class: "chip" },
      h("span", {}, path), h("button", { type: "button", class: "icon", "aria-label": `Detach ${path}`,
        onclick: () => this.setAttached(path, false) }, "×"))));
  }

  setAttached(path, on) {
    if (on && this.attached.size >= MAX_ATTACHED && !this.attached.has(path)) {
      toast(`At most ${MAX_ATTACHED} files go with a message.`, "error");
    } else if (on) this.attached.add(path);
    else this.attached.delete(path);
    this.render();
  }

  async uploadFiles(files) {
    for (const file of files) {
      await this.upload(contextPath("uploads/", file.name), file);
    }
  }

  /** Store `data` (a File/Blob, or a string) at `path` and attach it. */
  async upload(path, data) {
    const blob = typeof data === "string" ? new Blob([data], { type: "text/plain" }) : data;
    const row = h("li", {}, h("span", { class: "path" }, path), h("progress", { max: blob.size || 1, value: 0,
      "aria-label": `Uploading ${path}` }), h("span", { class: "size" }, formatBytes(blob.size)));
    $("uploads").append(row);
    try {
      // Read whole, a file of gigabytes took the tab's memory and minutes before the server refused it.
      if (blob.size > this.maxBytes) {
        throw new Error(`${path} is ${formatBytes(blob.size)}: a context file may be at most `
          + formatBytes(this.maxBytes));
      }
      const bytes = new Uint8Array(await blob.arrayBuffer());
      let text;
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
      } catch {
        throw new Error(`${path} is not UTF-8 text: only text files can be context`);
      }
      const frame = JSON.stringify({ action: "context.put", id: "x".repeat(24), path, content: text });
      if (encoder.encode(frame).length <= FRAME_BUDGET_BYTES) {
        await this.conn.request("context.put", { path, content: text });
        row.querySelector("progress").value = blob.size || 1;
      } else {
        const grant = await this.conn.request("context.uploadUrl", { path, size: bytes.length });
        await putWithProgress(grant, bytes, row.querySelector("progress"));
      }
      this.known.set(path, { path, size: bytes.length, updatedAt: new Date().toISOString() });
      this.setAttached(path, true);
      row.remove();
      await this.load();
      return true;
    } catch (error) {
      row.replaceChildren(h("span", { class: "error" }, `${path}: ${error.code ? `${error.code}: ` : ""}${error.message}`),
        h("button", { type: "button", class: "icon", "aria-label": "Dismiss", onclick: () => row.remove() }, "×"));
      return false;
    }
  }

  async remove(path) {
    if (!(await confirmDialog(`Delete the context file ${path}?`))) return;
    try {
      await this.conn.request("context.delete", { path });
      this.attached.delete(path);
      this.known.delete(path);
      this.render();
    } catch (error) {
      toast(`Delete failed: ${error.code || ""} ${error.message}`, "error");
    }
  }
}

/** PUT `bytes` to a presigned URL with the granted headers; `progress` (a <progress>, or null) follows the upload. */
export function putWithProgress(grant, bytes, progress = null) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest(); // fetch() reports no upload progress
    xhr.open("PUT", grant.url);
    for (const [name, value] of Object.entries(grant.headers || {})) {
      if (name.toLowerCase() !== "content-length" && name.toLowerCase() !== "host") xhr.setRequestHeader(name, value);
    }
    xhr.upload.addEventListener("progress", (event) => { if (progress && event.lengthComputable) progress.value = event.loaded; });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        if (progress) progress.value = progress.max;
        resolve();
      } else reject(new Error(`the upload was refused (HTTP ${xhr.status})`));
    });
    xhr.addEventListener("error", () => reject(new Error("the upload failed: network error")));
    xhr.send(bytes);
  });
}
