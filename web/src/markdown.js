// The model's Markdown, rendered safely: markdown-it with raw HTML off (a reply's tags show as
// text), then DOMPurify over what it made. Model output is untrusted: links keep only http(s)
// and mailto targets and open without opener or referrer; images become links (the page's CSP
// allows no remote image, and one would tell a third party who reads the reply).
import MarkdownIt from "markdown-it";
import DOMPurify from "dompurify";

const md = new MarkdownIt({ html: false, linkify: true, typographer: false });
const escape = md.utils.escapeHtml;

md.renderer.rules.image = (tokens, idx, options, env, self) => {
  const token = tokens[idx];
  const src = token.attrGet("src") || "";
  const alt = self.renderInlineAsText(token.children || [], options, env) || src;
  return `<a href="${escape(src)}">${escape(alt)}</a>`;
};

// A fence's info string is "<language> [<path>]": the path marks a proposed change to that file.
md.renderer.rules.fence = (tokens, idx) => {
  const token = tokens[idx];
  const [lang = "", path = ""] = token.info.trim().split(/\s+/);
  return `<pre class="code" data-lang="${escape(lang)}" data-path="${escape(path)}"><code>${escape(token.content)}</code></pre>\n`;
};

const PURIFY = {
  RETURN_DOM_FRAGMENT: true,
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i,
  FORBID_TAGS: ["img", "style", "form", "input", "button", "textarea", "select", "iframe", "svg", "math"],
  FORBID_ATTR: ["style", "id", "class"], // the page styles what it made, never what a reply asks for
  ADD_ATTR: ["data-lang", "data-path"],
};

/** `text` as a sanitized DocumentFragment. */
export function renderMarkdown(text) {
  const fragment = DOMPurify.sanitize(md.render(text), PURIFY);
  for (const link of fragment.querySelectorAll("a")) {
    if (!link.getAttribute("href")) {
      link.replaceWith(...link.childNodes); // a target the sanitizer refused: plain text
      continue;
    }
    link.target = "_blank";
    link.rel = "noopener noreferrer nofollow";
  }
  return fragment;
}

/** Where `text` can be cut so that everything before is final Markdown: after the last blank
 *  line outside a code fence. Rendering the part before once, and only the rest on each delta,
 *  keeps a long answer's streaming cost flat. */
export function stableLength(text, from = 0) {
  let fence = null;
  let stable = from;
  let position = from;
  while (position < text.length) {
    const end = text.indexOf("\n", position);
    if (end < 0) break; // an unfinished line is never stable
    const line = text.slice(position, end);
    const marker = /^ {0,3}(`{3,}|~{3,})/.exec(line);
    if (marker) {
      if (fence === null) fence = marker[1];
      else if (marker[1][0] === fence[0] && marker[1].length >= fence.length && !line.trim().slice(marker[1].length)) fence = null;
    } else if (fence === null && line.trim() === "") {
      stable = end + 1;
    }
    position = end + 1;
  }
  return stable;
}
