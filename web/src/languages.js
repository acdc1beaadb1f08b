// The languages the highlighter and the code viewer know, by fence name or file extension.
// Each loads on first use (its own chunk), so neither the first paint nor a reply with Python
// code waits for the parsers of every other language.

const stream = (load) => () => Promise.all([import("@codemirror/language"), load()])
  .then(([{ StreamLanguage }, mode]) => StreamLanguage.define(mode));

const LOADERS = {
  python: () => import("@codemirror/lang-python").then((m) => m.python()),
  javascript: () => import("@codemirror/lang-javascript").then((m) => m.javascript({ jsx: true })),
  typescript: () => import("@codemirror/lang-javascript").then((m) => m.javascript({ typescript: true, jsx: true })),
  json: () => import("@codemirror/lang-json").then((m) => m.json()),
  markdown: () => import("@codemirror/lang-markdown").then((m) => m.markdown()),
  html: () => import("@codemirror/lang-html").then((m) => m.html()),
  css: () => import("@codemirror/lang-css").then((m) => m.css()),
  rust: () => import("@codemirror/lang-rust").then((m) => m.rust()),
  go: () => import("@codemirror/lang-go").then((m) => m.go()),
  java: () => import("@codemirror/lang-java").then((m) => m.java()),
  cpp: () => import("@codemirror/lang-cpp").then((m) => m.cpp()),
  sql: () => import("@codemirror/lang-sql").then((m) => m.sql()),
  yaml: () => import("@codemirror/lang-yaml").then((m) => m.yaml()),
  shell: stream(() => import("@codemirror/legacy-modes/mode/shell").then((m) => m.shell)),
  toml: stream(() => import("@codemirror/legacy-modes/mode/toml").then((m) => m.toml)),
  dockerfile: stream(() => import("@codemirror/legacy-modes/mode/dockerfile").then((m) => m.dockerFile)),
};

const ALIASES = {
  py: "python", js: "javascript", mjs: "javascript", cjs: "javascript", jsx: "javascript", ts: "typescript",
  tsx: "typescript", md: "markdown", htm: "html", rs: "rust", golang: "go", c: "cpp", h: "cpp", cc: "cpp",
  hpp: "cpp", "c++": "cpp", yml: "yaml", sh: "shell", bash: "shell", zsh: "shell", console: "shell",
  jsonc: "json",
};

// The bare Lezer parsers (with their highlighting) for code blocks in replies: far lighter than
// the editor's language support, which brings the editor itself along.
const PARSERS = {
  python: () => import("@lezer/python").then((m) => m.parser),
  javascript: () => import("@lezer/javascript").then((m) => m.parser.configure({ dialect: "jsx" })),
  typescript: () => import("@lezer/javascript").then((m) => m.parser.configure({ dialect: "ts jsx" })),
  json: () => import("@lezer/json").then((m) => m.parser),
  markdown: () => import("@lezer/markdown").then((m) => m.parser),
  html: () => import("@lezer/html").then((m) => m.parser),
  css: () => import("@lezer/css").then((m) => m.parser),
  rust: () => import("@lezer/rust").then((m) => m.parser),
  go: () => import("@lezer/go").then((m) => m.parser),
  java: () => import("@lezer/java").then((m) => m.parser),
  cpp: () => import("@lezer/cpp").then((m) => m.parser),
  yaml: () => import("@lezer/yaml").then((m) => m.parser),
};

function nameOf(nameOrPath) {
  if (!nameOrPath) return null;
  const base = nameOrPath.toLowerCase().split("/").pop();
  const key = base === "dockerfile" ? "dockerfile" : base.includes(".") ? base.split(".").pop() : base;
  return LOADERS[key] ? key : ALIASES[key] || null;
}

const loaded = new Map();
function once(key, load) {
  if (!loaded.has(key)) loaded.set(key, load());
  return loaded.get(key);
}

/** Resolves to the CodeMirror LanguageSupport (or StreamLanguage) for a fence name or a file
 *  name, or to null for a language it does not know. */
export function languageFor(nameOrPath) {
  const name = nameOf(nameOrPath);
  return name ? once(`support:${name}`, LOADERS[name]) : Promise.resolve(null);
}

/** Resolves to a Lezer parser for a fence name or a file name (the bare grammar where there is
 *  one, else the editor language's), or to null for a language it does not know. */
export function parserFor(nameOrPath) {
  const name = nameOf(nameOrPath);
  if (!name) return Promise.resolve(null);
  if (PARSERS[name]) return once(`parser:${name}`, PARSERS[name]);
  return languageFor(name).then((support) => (support.language || support).parser);
}
