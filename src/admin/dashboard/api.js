// The admin REST API as the page calls it: the bearer token (asked for on
// a 401, kept in sessionStorage), errors and notices.
"use strict";

// Relative to /dashboard/, so the page also works behind a path prefix.
const API = "../api/v1/";
const METRICS = "../metrics";
const TOKEN_KEY = "sluice.admin-token";
const auth = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  // Set when the API refused us: no more calls until a token is given
  // (or, without a token configured, at all: only loopback may call).
  blocked: false,
  required: null, // from config.json's token_required; null: unknown
};

class ApiError extends Error {}

// Calls the admin API; resolves to the JSON answer (or text for /metrics).
async function call(path, { method = "GET", text = false } = {}) {
  if (auth.blocked) throw new ApiError("waiting for the admin token");
  const headers = {};
  if (auth.token) headers.Authorization = "Bearer " + auth.token;
  const res = await fetch(path.startsWith("../") ? path : API + path, { method, headers, cache: "no-store" });
  if (res.status === 401) {
    const why = await res.json().catch(() => ({}));
    refused(res.headers.has("WWW-Authenticate"), why.error);
    throw new ApiError(why.error || "unauthorized");
  }
  const answer = text ? await res.text() : await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError((answer && answer.error) || "HTTP " + res.status);
  return answer;
}

// A 401 with WWW-Authenticate wants the token; without it the broker has
// no token and serves loopback clients only: a token cannot help.
function refused(wantsToken, message) {
  auth.blocked = true;
  if (wantsToken) {
    showTokenForm(auth.token ? "The admin API refused this token. Enter the right one." : null);
  } else {
    showApiError((message || "the admin API refused the page") +
      ". Open the dashboard from this machine, or configure admin.token_file.");
  }
}

function showTokenForm(why) {
  const form = $("token-form");
  form.hidden = false;
  $("token-why").textContent = why ||
    "This admin API needs its bearer token (admin.token_file or admin.token_env).";
  $("token").focus();
}

// The API cannot be reached or refuses the page (cleared by the next
// tick that works).
function showApiError(message) {
  const p = $("api-error");
  p.hidden = !message;
  p.textContent = message || "";
}

// The outcome of an operator's action (kick, delete, pause), for a while.
let noticeTimer = null;
function notice(message, bad = false) {
  const p = $("notice");
  p.textContent = message;
  p.hidden = false;
  p.classList.toggle("bad", bad);
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { p.hidden = true; }, 8000);
}

$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const token = $("token").value.trim();
  if (!token) return;
  auth.token = token;
  auth.blocked = false;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  $("token-form").hidden = true;
  tick();
  topics.reconnectNow();
});

// The WebSocket subprotocol carrying the token to the admin listener's
// MQTT endpoint (a browser cannot set headers on a WebSocket).
function bearerProtocol(token) {
  const bytes = new TextEncoder().encode(token);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return "sluice.bearer." + btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
