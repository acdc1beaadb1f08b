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

const loaded = new Map();

/** Resolves to the CodeMirror LanguageSupport (or StreamLanguage) for a fence name or a file
 *  name, or to null for a language it does not know. */
export function languageFor(nameOrPath) {
  if (!nameOrPath) return Promise.resolve(null);
  const base = nameOrPath.toLowerCase().split("/").pop();
  const key = base === "dockerfile" ? "dockerfile" : base.includes(".") ? base.split(".").pop() : base;
  const name = LOADERS[key] ? key : ALIASES[key];
  if (!name) return Promise.resolve(null);
  if (!loaded.has(name)) loaded.set(name, LOADERS[name]());
  return loaded.get(name);
}

/** The Lezer parser of a language support (LanguageSupport or a bare Language). */
export function parserOf(support) {
  return (support.language || support).parser;
}
