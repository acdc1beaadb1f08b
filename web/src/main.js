// The web IDE: sign-in, then the workspace (sessions, chat, context, repositories, changes).
// Settings come from config.json beside this page: the local stack serves one, and
// `python -m infra.web_bundle --stage <stage>` writes one for the upload (docs/DEPLOY.md).
import { $, toast } from "./ui.js";
import { Auth } from "./auth.js";
import { Connection } from "./connection.js";
import { Chat } from "./chat.js";
import { Sessions } from "./sessions.js";
import { Context } from "./context.js";
import { Repos } from "./repos.js";
import { Changes } from "./changes.js";
import { Limits } from "./limits.js";
import { Models } from "./models.js";
import { initTheme } from "./theme.js";
import { initShortcuts } from "./shortcuts.js";

const STATUS = { connecting: "connecting…", reconnecting: "reconnecting…", closed: "disconnected" };

let auth = null;
let conn = null;
let parts = null;

function setStatus(text) {
  $("status").textContent = text;
}

function showTab(name) {
  for (const tab of ["context", "repo", "changes"]) {
    $(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
    $(`pane-${tab}`).hidden = tab !== name;
  }
  togglePanel(true);
  if (name === "repo") parts.repos.load();
}

function togglePanel(show) {
  const panel = $("panel");
  const visible = show ?? panel.classList.contains("closed");
  panel.classList.toggle("closed", !visible);
  $("toggle-panel").setAttribute("aria-expanded", String(visible));
}

function toggleSidebar(show) {
  const sidebar = $("sidebar");
  const visible = show ?? sidebar.classList.contains("closed");
  sidebar.classList.toggle("closed", !visible);
  $("toggle-sidebar").setAttribute("aria-expanded", String(visible));
}

function showSignIn(form = "signin-form") {
  for (const id of ["signin-form", "newpassword-form", "totp-form"]) $(id).hidden = id !== form;
  $("signin").hidden = false;
  $("workspace").hidden = true;
  $("signout").hidden = true;
  $("toggle-sidebar").hidden = true;
  $("limits").hidden = true;
  setStatus("signed out");
  const first = $(form).querySelector("input");
  if (first) first.focus();
}

async function enterWorkspace() {
  conn = new Connection({ url: window.llmIdeConfig.websocketUrl, tokens: auth });
  conn.addEventListener("state", (event) => {
    setStatus(event.detail === "open" ? `connected as ${auth.username}` : STATUS[event.detail]);
    document.body.dataset.connection = event.detail;
  });
  conn.addEventListener("signedout", () => signOut("Your sign-in expired: sign in again."));
  const limits = new Limits({ conn });
  const models = new Models({ conn });
  const context = new Context({ conn, maxBytes: window.llmIdeConfig.contextMaxBytes });
  const sessions = new Sessions({ conn });
  const changes = new Changes({ conn, showTab });
  const repos = new Repos({ conn, context, changes });
  const chat = new Chat({ conn, limits, models, context, sessions, changes });
  sessions.chat = chat;
  parts = { limits, models, context, sessions, changes, repos, chat };
  $("signin").hidden = true;
  $("workspace").hidden = false;
  $("signout").hidden = false;
  $("toggle-sidebar").hidden = false;
  chat.clear();
  try {
    await conn.open();
  } catch (error) {
    return;
  }
  await Promise.all([sessions.load(), limits.load(), models.load(), context.load()]);
  $("prompt").focus();
}

// What the sign-in form says after a sign-out, carried over the reload in this tab's storage.
const SIGNED_OUT_NOTE = "llm-ide.signed-out-note";

/** Revoke and forget the tokens, then load the page afresh: nothing of the signed-out user stays
 *  in it (the transcript, the sessions, an open repository file, proposed changes, the limits'
 *  timer, the listeners of the workspace's parts and their socket), whoever signs in next. */
async function signOut(message) {
  leaving = true;
  if (conn) conn.close();
  conn = null;
  parts = null;
  const failure = auth ? await auth.signOut() : null;
  const note = [message, failure && `Signed out here, but the sign-in could not be revoked: ${failure.message}`];
  if (note.some(Boolean)) sessionStorage.setItem(SIGNED_OUT_NOTE, note.filter(Boolean).join(" "));
  window.location.reload();
}

function signInError(error) {
  $("signin-error").textContent = error.message || String(error);
  setStatus(`sign-in failed: ${error.message || error}`);
}

async function afterStep(step) {
  $("signin-error").textContent = "";
  if (step.session) return enterWorkspace();
  pendingStep = step;
  showSignIn(step.challenge === "NEW_PASSWORD_REQUIRED" ? "newpassword-form" : "totp-form");
  setStatus(step.challenge === "NEW_PASSWORD_REQUIRED" ? "a new password is needed" : "a code is needed");
}

let pendingStep = null;

function wireSignIn() {
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const password = $("password").value;
    $("password").value = ""; // the password is not kept, not even in the form
    setStatus("signing in…");
    try {
      await afterStep(await auth.signIn($("username").value.trim(), password));
    } catch (error) {
      showSignIn();
      signInError(error);
    }
  });
  $("newpassword-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const [first, again] = [$("new-password").value, $("new-password-again").value];
    if (first !== again) return signInError(new Error("The two passwords differ."));
    $("new-password").value = "";
    $("new-password-again").value = "";
    try {
      await afterStep(await pendingStep.answer(first));
    } catch (error) {
      signInError(error);
    }
  });
  $("totp-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const code = $("totp-code").value.trim();
    $("totp-code").value = "";
    try {
      await afterStep(await pendingStep.answer(code));
    } catch (error) {
      showSignIn();
      signInError(error);
    }
  });
}

let leaving = false; // signing out: the reload asks nothing

/** What a reload or a closed tab would lose, or null: the browser asks before leaving while there is some. */
function unsaved() {
  if (!parts || leaving) return null;
  if (parts.chat.running) return "an answer being written";
  if ($("prompt").value.trim()) return "a typed message";
  if (parts.changes.files.size) return "proposed changes";
  return null;
}

function wireWorkspace() {
  window.addEventListener("beforeunload", (event) => {
    if (unsaved()) event.preventDefault(); // the browser's own "Leave site?" (its text cannot be set)
  });
  $("signout").addEventListener("click", () => signOut());
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const prompt = $("prompt").value;
    if (!prompt.trim() || parts.chat.running || !parts.chat.optionsValid()) return;
    $("prompt").value = "";
    parts.chat.send(prompt);
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("chat-form").requestSubmit();
    }
  });
  $("cancel").addEventListener("click", () => parts.chat.cancel());
  $("regenerate").addEventListener("click", () => parts.chat.regenerate());
  $("new-session").addEventListener("click", () => {
    if (parts.chat.running) return toast("Wait for the answer to finish, or cancel it, first.");
    parts.sessions.stopOpening();
    parts.chat.clear();
    parts.sessions.select(null);
    $("prompt").focus();
  });
  for (const tab of ["context", "repo", "changes"]) $(`tab-${tab}`).addEventListener("click", () => showTab(tab));
  $("toggle-panel").addEventListener("click", () => togglePanel());
  $("toggle-sidebar").addEventListener("click", () => toggleSidebar());
  $("shortcuts").addEventListener("click", () => $("shortcuts-dialog").showModal());
  // On a narrow screen the side panels start closed, as overlays.
  if (window.matchMedia("(max-width: 1000px)").matches) togglePanel(false);
  if (window.matchMedia("(max-width: 700px)").matches) toggleSidebar(false);
}

async function boot() {
  initTheme($("theme"));
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    if (!response.ok) throw new Error(`config.json: HTTP ${response.status}`);
    window.llmIdeConfig = await response.json();
  } catch (error) {
    setStatus(`cannot start: ${error.message}`);
    return;
  }
  auth = new Auth(window.llmIdeConfig);
  wireSignIn();
  wireWorkspace();
  initShortcuts({
    cancel: () => parts?.chat.cancel(),
    regenerate: () => parts?.chat.regenerate(),
    newChat: () => $("new-session").click(),
    toggleSidebar: () => toggleSidebar(),
    togglePanel: () => togglePanel(),
    focusPrompt: () => $("prompt").focus(),
    active: () => Boolean(parts),
  });
  const note = sessionStorage.getItem(SIGNED_OUT_NOTE);
  sessionStorage.removeItem(SIGNED_OUT_NOTE);
  if (await auth.restore()) await enterWorkspace();
  else {
    showSignIn();
    $("signin-error").textContent = note || "";
  }
  document.body.dataset.ready = "true"; // interactive: the benchmark's time-to-interactive mark
  performance.mark("llm-ide:interactive");
}

boot();
