// The code viewer (CodeMirror 6, editable) and the diff view (@codemirror/merge), loaded lazily.
import { EditorView, basicSetup } from "codemirror";
import { EditorState } from "@codemirror/state";
import { MergeView } from "@codemirror/merge";
import { classHighlighter } from "@lezer/highlight";
import { syntaxHighlighting } from "@codemirror/language";
import { languageFor } from "./languages.js";

function extensions(path, language, { editable = true } = {}) {
  return [basicSetup, syntaxHighlighting(classHighlighter), EditorView.lineWrapping,
    EditorView.editable.of(editable), EditorState.readOnly.of(!editable), ...(language ? [language] : [])];
}

/** A code editor in `parent` holding `text`; returns {text(), selection() -> {text, from, to} | null, destroy()}. */
export async function openEditor(parent, path, text) {
  const language = await languageFor(path);
  const view = new EditorView({ parent, state: EditorState.create({ doc: text, extensions: extensions(path, language) }) });
  return {
    text: () => view.state.doc.toString(),
    selection() {
      const range = view.state.selection.main;
      if (range.empty) return null;
      const doc = view.state.doc;
      return { text: doc.sliceString(range.from, range.to), fromLine: doc.lineAt(range.from).number,
        toLine: doc.lineAt(range.to).number };
    },
    destroy: () => view.destroy(),
  };
}

/** A side-by-side diff in `parent`: `original` (read-only) against `proposed` (editable). Returns {text(), destroy()}. */
export async function openDiff(parent, path, original, proposed) {
  const language = await languageFor(path);
  const view = new MergeView({
    parent,
    a: { doc: original, extensions: extensions(path, language, { editable: false }) },
    b: { doc: proposed, extensions: extensions(path, language) },
    collapseUnchanged: { margin: 3, minSize: 6 },
  });
  return { text: () => view.b.state.doc.toString(), destroy: () => view.destroy() };
}
