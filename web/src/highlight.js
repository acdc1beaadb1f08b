// Highlighting of the code blocks in replies, with the code viewer's own parsers (Lezer), as
// spans with `tok-*` classes that style.css colours: no markup from strings, no inline style.
import { classHighlighter, highlightCode } from "@lezer/highlight";
import { parserFor } from "./languages.js";

/** Replace the text of `code` (a <code> element) by highlighted spans; resolves false if the language is unknown. */
export async function highlightElement(code, lang) {
  const parser = await parserFor(lang);
  if (!parser || !code.isConnected) return false;
  const text = code.textContent;
  const tree = parser.parse(text);
  const fragment = document.createDocumentFragment();
  highlightCode(text, tree, classHighlighter, (piece, classes) => {
    if (!classes) return fragment.append(piece);
    const span = document.createElement("span");
    span.className = classes;
    span.textContent = piece;
    fragment.append(span);
  }, () => fragment.append("\n"));
  code.replaceChildren(fragment);
  return true;
}
