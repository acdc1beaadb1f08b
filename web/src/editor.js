// The code viewer (CodeMirror 6, editable) and the diff view (@codemirror/merge), loaded lazily.
//
// Each lives in a shadow root: there CodeMirror's style modules become constructed style sheets
// (adoptedStyleSheets), which the page's CSP allows, where in the document they would be inline
// <style> elements, which it forbids. Colours come from the page's theme variables, which
// inherit into the shadow root.
import { EditorView, basicSetup } from "codemirror";
import { EditorState } from "@codemirror/state";
import { MergeView } from "@codemirror/merge";
import { HighlightStyle, syntaxHighlighting } from "@codemirror/language";
import { tags as t } from "@lezer/highlight";
import { languageFor } from "./languages.js";

const highlightStyle = HighlightStyle.define([
  { tag: [t.keyword, t.operatorKeyword, t.modifier, t.controlKeyword, t.definitionKeyword], color: "var(--tok-keyword)" },
  { tag: [t.string, t.special(t.string), t.regexp, t.inserted], color: "var(--tok-string)" },
  { tag: [t.number, t.bool, t.atom, t.literal], color: "var(--tok-number)" },
  { tag: t.comment, color: "var(--tok-comment)", fontStyle: "italic" },
  { tag: [t.function(t.variableName), t.definition(t.variableName), t.function(t.propertyName)], color: "var(--tok-function)" },
  { tag: [t.typeName, t.className, t.namespace], color: "var(--tok-type)" },
  { tag: [t.propertyName, t.attributeName, t.tagName, t.deleted], color: "var(--tok-property)" },
  { tag: [t.meta, t.heading, t.link, t.url], color: "var(--tok-meta)" },
]);

const theme = EditorView.theme({
  "&": { backgroundColor: "var(--bg)", color: "var(--fg)", fontSize: "13px" },
  ".cm-content": { caretColor: "var(--fg)" },
  ".cm-gutters": { backgroundColor: "var(--bg-soft)", color: "var(--fg-soft)", borderRight: "1px solid var(--border)" },
  ".cm-activeLine, .cm-activeLineGutter": { backgroundColor: "var(--bg-strong)" },
  "&.cm-focused .cm-selectionBackground, .cm-selectionBackground": { backgroundColor: "var(--user-bg)" },
});

function extensions(language, { editable = true } = {}) {
  return [basicSetup, theme, syntaxHighlighting(highlightStyle), EditorView.lineWrapping,
    EditorView.editable.of(editable), EditorState.readOnly.of(!editable), ...(language ? [language] : [])];
}

function shadowIn(parent) {
  const host = document.createElement("div");
  host.className = "cm-host";
  parent.replaceChildren(host);
  return host.attachShadow({ mode: "open" });
}

/** A code editor in `parent` holding `text`; returns {text(), selection() -> {text, fromLine, toLine} | null, destroy()}. */
export async function openEditor(parent, path, text) {
  const language = await languageFor(path);
  const root = shadowIn(parent);
  const view = new EditorView({ parent: root, root, state: EditorState.create({ doc: text, extensions: extensions(language) }) });
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
  const root = shadowIn(parent);
  const view = new MergeView({
    parent: root,
    root,
    a: { doc: original, extensions: extensions(language, { editable: false }) },
    b: { doc: proposed, extensions: extensions(language) },
    collapseUnchanged: { margin: 3, minSize: 6 },
  });
  return { text: () => view.b.state.doc.toString(), destroy: () => view.destroy() };
}
