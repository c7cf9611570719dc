import { lang, loadReasons, reason, setLang, t, translate } from "./i18n.js";

export { percent, when, yuan } from "./i18n.js";

// Shared by the three pages: session, fetch with errors as {code, detail}, Idempotency-Key, offline queue, DOM helpers.

const SESSION_KEY = "fp.session";
const QUEUE_KEY = "fp.queue";

export class ApiError extends Error {
  constructor(status, code, detail, body = null) {
    super(detail || code);
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.body = body; // the whole error body: some carry figures (e.g. distance_m) for the page's own words
  }
}

// ---- session -------------------------------------------------------------
export function session() {
  try { return JSON.parse(localStorage.getItem(SESSION_KEY)) || null; } catch { return null; }
}

function saveSession(s) {
  if (s) localStorage.setItem(SESSION_KEY, JSON.stringify(s)); else localStorage.removeItem(SESSION_KEY);
}

export async function login(username, password) {
  const form = new URLSearchParams({ username, password });
  const resp = await fetch("/v1/auth/token", { method: "POST", body: form });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new ApiError(resp.status, data.code || "login_failed", data.detail || "Login failed.");
  saveSession({ access: data.access_token, refresh: data.refresh_token });
  const me = await api("/v1/me");
  saveSession({ ...session(), me });
  return me;
}

export function logout() { saveSession(null); location.reload(); }

async function refreshToken() {
  const s = session();
  if (!s?.refresh) return false;
  const resp = await fetch("/v1/auth/refresh", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: s.refresh }),
  });
  if (!resp.ok) return false;
  const data = await resp.json();
  saveSession({ ...s, access: data.access_token, refresh: data.refresh_token });
  return true;
}

// ---- fetch -----------------------------------------------------------------
export function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs a secure context; this does not
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

// api(path, {method, json, form, key, raw}): JSON in and out; throws ApiError; retries once after a token refresh.
export async function api(path, opts = {}, retried = false) {
  const headers = {};
  const s = session();
  if (s?.access) headers.Authorization = `Bearer ${s.access}`;
  if (opts.key) headers["Idempotency-Key"] = opts.key;
  let body;
  if (opts.json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(opts.json); }
  if (opts.form) body = opts.form;
  const resp = await fetch(path, { method: opts.method || (body ? "POST" : "GET"), headers, body });
  if (resp.status === 401 && !retried && s?.refresh && await refreshToken()) return api(path, opts, true);
  if (opts.raw && resp.ok) return resp;
  const data = resp.status === 204 ? null : await resp.json().catch(() => null);
  if (!resp.ok) {
    if (resp.status === 401 && path !== "/v1/auth/token") saveSession(null);
    throw new ApiError(resp.status, data?.code || `http_${resp.status}`, data?.detail || resp.statusText, data);
  }
  return data;
}

// POST with a fresh Idempotency-Key (a double tap or a retry changes nothing on the server).
export function post(path, json) { return api(path, { method: "POST", json: json ?? {}, key: newKey() }); }

// An authenticated image (the API wants a bearer token, which <img src> cannot send) as an object URL.
export async function imageUrl(path) {
  const resp = await api(path, { raw: true });
  return URL.createObjectURL(await resp.blob());
}

export async function download(path, filename) {
  const resp = await api(path, { raw: true });
  const a = el("a", { href: URL.createObjectURL(await resp.blob()), download: filename });
  document.body.append(a); a.click(); a.remove();
}

// ---- offline queue ---------------------------------------------------------
// A write made while offline is kept with its Idempotency-Key and body and sent later with the SAME key, so a
// request that did reach the server before the connection dropped is answered from the stored response.
function allQueued() {
  try { return JSON.parse(localStorage.getItem(QUEUE_KEY)) || []; } catch { return []; }
}

// The signed-in user's queued writes (another account signing in on the same phone must not send them).
export function queued() { return allQueued().filter((q) => q.user === session()?.me?.id); }

function saveQueue(items) { localStorage.setItem(QUEUE_KEY, JSON.stringify(items)); }

const queueListeners = [];
export function onQueueResult(fn) { queueListeners.push(fn); }

// Send now if possible, else queue. Returns {queued: true, item} or {result}.
export async function postOrQueue(path, json, label) {
  const item = { path, json, key: newKey(), label, user: session()?.me?.id, queued_at: new Date().toISOString() };
  if (!navigator.onLine) return enqueue(item);
  try {
    return { result: await api(path, { method: "POST", json, key: item.key }) };
  } catch (err) {
    if (err instanceof ApiError) throw err; // the server answered: not a connectivity problem
    return enqueue(item);
  }
}

function enqueue(item) {
  saveQueue([...allQueued(), item]);
  queueListeners.forEach((fn) => fn({ item, queued: true }));
  return { queued: true, item };
}

// Signed out, rate-limited, still running elsewhere or a server fault: the same request may succeed later.
function retryLater(err) {
  return err.status === 401 || err.status === 429 || err.status >= 500 || err.code === "idempotency_in_flight";
}

let flushing = false;
export async function flushQueue() {
  if (flushing || !navigator.onLine) return;
  flushing = true;
  try {
    for (const item of queued()) {
      let outcome;
      try {
        outcome = { result: await api(item.path, { method: "POST", json: item.json, key: item.key }) };
      } catch (err) {
        if (!(err instanceof ApiError) || retryLater(err)) break; // keep it (and the order) for the next try
        outcome = { error: err }; // a definite answer (e.g. outside the fence): do not resend
      }
      saveQueue(allQueued().filter((q) => q.key !== item.key));
      queueListeners.forEach((fn) => fn({ item, ...outcome }));
    }
  } finally {
    flushing = false;
  }
}

window.addEventListener("online", () => flushQueue());
setInterval(() => flushQueue(), 30_000);

// ---- DOM -------------------------------------------------------------------
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}

export const $ = (sel, root = document) => root.querySelector(sel);

export function toast(message, kind = "info") {
  const box = $("#toasts") || document.body.appendChild(el("div", { id: "toasts", "aria-live": "polite" }));
  const t = el("div", { class: `toast ${kind}` }, message);
  box.append(t);
  while (box.children.length > 2) box.firstChild.remove(); // the newest two are enough on a phone screen
  setTimeout(() => t.remove(), 5000);
}

// Plain words for a failure: the reason registry's or the page's text for the code, else the server's detail;
// the code itself is kept out of sight (it stays in the API and in the element's title for support).
export function errorText(err) {
  if (!(err instanceof ApiError)) return t("err.network");
  const words = reason(err.code);
  return words !== err.code ? words : (err.detail || err.code);
}

// Run an async action from a button: disable it meanwhile, report errors.
export function action(fn) {
  return async (ev) => {
    const btn = ev?.currentTarget;
    if (btn) btn.disabled = true;
    try { await fn(ev); } catch (err) { toast(errorText(err), "error"); } finally { if (btn) btn.disabled = false; }
  };
}

// The login form for a page; calls ready(me) once signed in with the right role.
export function setupLogin(role, ready) {
  translate();
  $("#lang").addEventListener("click", () => setLang(lang() === "en" ? "zh" : "en"));
  const reasonsLoaded = loadReasons();
  const box = $("#login");
  const start = (me) => {
    box.hidden = true;
    $("#app").hidden = false;
    $("#whoami").textContent = `${me.display_name || me.username} · ${t(`role.${me.role}`)}`;
    reasonsLoaded.then(() => ready(me));
  };
  $("#logout").addEventListener("click", logout);
  const s = session();
  if (s?.me?.role === role) return start(s.me);
  box.hidden = false;
  box.querySelector("form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.currentTarget;
    try {
      const me = await login(f.username.value.trim(), f.password.value);
      if (me.role !== role && !(role === "ops" && me.role === "admin")) {
        saveSession(null);
        throw new ApiError(403, "wrong_role", t("err.wrong_role", { role: t(`role.${role}`), you: t(`role.${me.role}`) }));
      }
      start(me);
    } catch (err) {
      $("#login-error").textContent = errorText(err);
    }
  });
}
