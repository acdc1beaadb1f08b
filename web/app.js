// The bundled web client: Cognito sign-in, then the WebSocket protocol (docs/PROTOCOL.md).
// Settings come from config.json beside this page (the dev stack serves it; in AWS, `python -m infra.web_bundle`
// writes it for the upload: docs/DEPLOY.md, step 5).
"use strict";

const $ = (id) => document.getElementById(id);
let config = null;
let socket = null;
let token = null;
let nextId = 1;
const pending = new Map(); // request id -> handler(frame)

function setStatus(text) { $("status").textContent = text; }

function line(cls, text) {
  const div = document.createElement("div");
  div.className = cls;
  div.textContent = text; // never innerHTML: replies are untrusted text
  $("transcript").appendChild(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

async function loadConfig() {
  const response = await fetch("config.json", { cache: "no-store" });
  if (!response.ok) throw new Error("config.json not found");
  return response.json();
}

async function signIn(username, password) {
  const endpoint = config.cognito.endpointUrl || `https://cognito-idp.${config.region}.amazonaws.com/`;
  const response = await fetch(endpoint.replace(/\/?$/, "/"), {
    method: "POST",
    headers: {
      "Content-Type": "application/x-amz-json-1.1",
      "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth",
    },
    body: JSON.stringify({
      AuthFlow: "USER_PASSWORD_AUTH",
      ClientId: config.cognito.clientId,
      AuthParameters: { USERNAME: username, PASSWORD: password },
    }),
  });
  const body = await response.json();
  if (!response.ok || !body.AuthenticationResult) {
    throw new Error(body.message || body.__type || "sign-in failed");
  }
  return body.AuthenticationResult.AccessToken;
}

function connect() {
  return new Promise((resolve, reject) => {
    const url = `${config.websocketUrl}?token=${encodeURIComponent(token)}`;
    const ws = new WebSocket(url);
    ws.onopen = () => { setStatus("connected"); resolve(ws); };
    ws.onerror = () => reject(new Error("connection refused"));
    ws.onclose = () => { setStatus("disconnected"); socket = null; };
    ws.onmessage = (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      const handler = pending.get(frame.id);
      if (handler) handler(frame);
      else if (frame.type === "error") line("error", `${frame.error.code}: ${frame.error.message}`);
    };
  });
}

async function send(action, params, handler) {
  if (!socket) socket = await connect();
  const id = `w${nextId++}`;
  pending.set(id, handler);
  socket.send(JSON.stringify({ action, id, ...params }));
  return id;
}

function finish(id) { pending.delete(id); }

function showError(frame) {
  const retry = frame.error.retryAfter ? ` (retry in ${frame.error.retryAfter} s)` : "";
  line("error", `${frame.error.code}: ${frame.error.message}${retry}`);
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    token = await signIn($("username").value, $("password").value);
    $("password").value = "";
    socket = await connect();
    $("signin").hidden = true;
    $("workspace").hidden = false;
    setStatus(`connected as ${$("username").value}`);
  } catch (error) {
    setStatus(`sign-in failed: ${error.message}`);
  }
});

$("ping").addEventListener("click", async () => {
  const started = performance.now();
  await send("ping", {}, (frame) => {
    finish(frame.id);
    line("meta", `pong in ${(performance.now() - started).toFixed(1)} ms`);
  });
});

$("usage").addEventListener("click", async () => {
  await send("usage.get", {}, (frame) => {
    finish(frame.id);
    if (frame.type === "error") return showError(frame);
    line("meta", JSON.stringify(frame.data));
  });
});

let currentChat = null;

$("chat-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const prompt = $("prompt").value;
  if (!prompt.trim()) return;
  $("prompt").value = "";
  line("user", prompt);
  const reply = line("assistant", "");
  $("cancel").disabled = false;
  currentChat = await send("chat.send", { prompt }, (frame) => {
    if (frame.type === "ack") { currentChat = frame.id; return; }
    if (frame.type === "delta") { reply.textContent += frame.text; return; }
    finish(frame.id);
    $("cancel").disabled = true;
    if (frame.type === "done") {
      const u = frame.usage;
      line("meta", `${frame.stopReason} · ${u.inputTokens} in / ${u.outputTokens} out`);
    } else if (frame.type === "error") {
      showError(frame);
    }
  });
});

$("cancel").addEventListener("click", async () => {
  if (!currentChat) return;
  await send("chat.cancel", { requestId: currentChat }, (frame) => {
    finish(frame.id);
    if (frame.type === "error") showError(frame);
  });
});

$("signout").addEventListener("click", () => {
  token = null;
  if (socket) socket.close();
  $("workspace").hidden = true;
  $("signin").hidden = false;
  setStatus("signed out");
});

loadConfig().then((loaded) => { config = loaded; }).catch((error) => setStatus(error.message));
