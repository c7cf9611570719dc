// Merchant console: find a place, draw a fence and publish, wallet and statement, tasks with progress; the
// submission queue (filters, bulk confirm, photo viewer, worker profiles) is in merchant-queue.js.
import { $, action, api, download, el, errorText, post, setupLogin, toast, when, yuan } from "./common.js";
import { lang, t } from "./i18n.js";
import { createMap, fenceLayer, fromDisplay, toDisplay } from "./map.js";
import "./merchant-i18n.js";
import { confirmDialog, loadQueue, setupQueue, showTasks } from "./merchant-queue.js";

const DEFAULT_CENTER = [39.8990, 116.3976];
const draw = { mode: "circle", points: [], layer: null, ctx: null, marker: null, ref: null };
let allTasks = [];

// ---- drawing a fence ------------------------------------------------------------
function metres(a, b) {
  const R = 6371008.8, rad = Math.PI / 180;
  const dlat = (b[0] - a[0]) * rad, dlon = (b[1] - a[1]) * rad;
  const h = Math.sin(dlat / 2) ** 2 + Math.cos(a[0] * rad) * Math.cos(b[0] * rad) * Math.sin(dlon / 2) ** 2;
  return 2 * R * Math.asin(Math.sqrt(h));
}

function drawStatus() {
  const { mode, points } = draw;
  if (mode === "polygon") return t("m.status_polygon", { n: points.length });
  if (!points.length) return t("m.status_circle_start");
  return points.length < 2 ? t("m.status_circle_edge") : t("m.status_circle_done", { r: $("#task-form").radius_m.value });
}

function redraw() {
  const { ctx, points, mode } = draw;
  const f = $("#task-form");
  if (mode === "circle" && points.length) {
    f.lat.value = points[0][0].toFixed(6);
    f.lon.value = points[0][1].toFixed(6);
    if (points.length > 1) f.radius_m.value = Math.round(metres(points[0], points[1]));
  }
  $("#draw-status").textContent = drawStatus();
  if (!ctx) return;
  draw.layer?.remove();
  draw.layer = null;
  const { L, map } = ctx;
  const style = { color: "#dc2626" };
  if (mode === "circle" && points.length) {
    draw.layer = L.circle(toDisplay(...points[0]), { radius: Number(f.radius_m.value) || 1, ...style }).addTo(map);
  } else if (mode === "polygon" && points.length) {
    const shown = points.map((p) => toDisplay(...p)); // points are WGS-84; the base map may be GCJ-02
    draw.layer = (points.length > 2 ? L.polygon(shown, style) : L.polyline(shown, style)).addTo(map);
  }
}

function clearDrawing() { draw.points = []; redraw(); }

// Switching shape starts afresh: a polygon must not be sent with the old circle's centre and radius.
function setMode(mode) {
  const f = $("#task-form");
  draw.mode = mode;
  f.lat.value = ""; f.lon.value = ""; f.radius_m.value = "";
  $("#circle-fields").hidden = mode !== "circle";
  clearDrawing();
}

function fenceFromForm(f) {
  if (draw.mode === "polygon") {
    if (draw.points.length < 3) throw new Error(t("m.err_polygon"));
    const ring = draw.points.map(([lat, lon]) => [lon, lat]);
    return { type: "Polygon", coordinates: [[...ring, ring[0]]] };
  }
  const lat = Number(f.lat.value), lon = Number(f.lon.value), r = Number(f.radius_m.value);
  if (!f.lat.value || !f.lon.value || !r) throw new Error(t("m.err_circle"));
  return { center: [lon, lat], radius_m: r };
}

function localInput(d) {
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

function taskBody(f) {
  const dwell = f.min_dwell_min.value === "" ? null : Math.round(Number(f.min_dwell_min.value) * 60);
  return {
    title: f.title.value.trim(), description: f.description.value.trim(), type: f.type.value,
    reward_fen: Math.round(Number(f.reward.value) * 100), slots: Number(f.slots.value),
    starts_at: new Date(f.starts_at.value).toISOString(), ends_at: new Date(f.ends_at.value).toISOString(),
    crs: "wgs84", geofence: fenceFromForm(f), hard_fence: f.hard_fence.value === "true",
    evidence: { photos_min: Number(f.photos_min.value || 0), video: f.video.checked },
    min_credit: Number(f.min_credit.value || 0), min_dwell_s: dwell,
  };
}

async function createTask(ev) {
  ev.preventDefault();
  const f = ev.currentTarget;
  let body;
  try { body = taskBody(f); } catch (err) { return toast(err.message, "error"); }
  try {
    const task = await post("/v1/tasks", body);
    const published = await post(`/v1/tasks/${task.id}/publish`);
    toast(t("m.created", { id: task.id, state: t(`state.${published.state}`) }), "ok");
    clearDrawing();
    await Promise.all([loadTasks(), loadWallet()]);
  } catch (err) { toast(errorText(err), "error"); }
}

// ---- place search: the merchant's own tasks, or typed coordinates (works without any online geocoder) --------
function showPlace(lat, lon, label) {
  const ctx = draw.ctx;
  if (!ctx) return;
  ctx.map.setView(toDisplay(lat, lon), 16);
  draw.marker?.remove();
  draw.marker = ctx.L.circleMarker(toDisplay(lat, lon), { radius: 6, color: "#0f172a" }).bindTooltip(label).addTo(ctx.map);
}

function searchPlaces(ev) {
  ev.preventDefault();
  const q = $("#place-q").value.trim().toLowerCase();
  const hits = q ? allTasks.filter((x) => `${x.title} ${x.description}`.toLowerCase().includes(q)).slice(0, 8) : [];
  const items = hits.map((x) => el("li", {}, el("button", { type: "button", class: "linkish", onclick: () => {
    showPlace(x.center[1], x.center[0], x.title);
    draw.ref?.remove();
    if (draw.ctx) draw.ref = fenceLayer(draw.ctx.L, x, { dashArray: "4 4" }).addTo(draw.ctx.map);
  } }, `#${x.id} ${x.title}`)));
  $("#place-results").replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, t("m.no_places"))]));
}

async function goToCoords(ev) {
  ev.preventDefault();
  const f = ev.currentTarget;
  const src = f.crs.value;
  const p = src === "wgs84" ? { lat: Number(f.lat.value), lon: Number(f.lon.value) }
    : await api(`/v1/coords/convert?lat=${f.lat.value}&lon=${f.lon.value}&src=${src}&dst=wgs84`);
  showPlace(p.lat, p.lon, t("m.typed_point"));
  if (draw.mode === "circle") { draw.points = [[p.lat, p.lon]]; redraw(); }
}

// ---- wallet ----------------------------------------------------------------------
async function loadWallet() {
  const w = await api("/v1/me/wallet");
  $("#balances").replaceChildren(...Object.entries(w.balances_fen).map(([k, v]) =>
    el("div", {}, el("div", { class: "stat" }, yuan(v)), el("div", { class: "muted" }, t(`acct.${k}`)))));
}

async function deposit(ev) {
  ev.preventDefault();
  const f = ev.currentTarget;
  await post("/v1/me/deposits", { amount_fen: Math.round(Number(f.amount.value) * 100), purpose: f.purpose.value });
  toast(t("m.funds_added"), "ok");
  await loadWallet();
}

// ---- tasks and progress -------------------------------------------------------------
const DONE = ["paid", "accepted"], CHECKING = ["confirmed", "spot_check"], WAITING = ["submitted"];
const WORKING = ["claimed", "checked_in", "changes_requested"];

function sum(by, states) { return states.reduce((n, s) => n + (by[s] || 0), 0); }

function progressBar(t0, p) {
  const by = p.by_state || {};
  const parts = [["done", DONE], ["checking", CHECKING], ["waiting", WAITING], ["working", WORKING]]
    .map(([k, states]) => [k, sum(by, states)]);
  const done = parts[0][1];
  const bar = el("div", { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": t0.slots,
    "aria-valuenow": done, "aria-label": t("m.progress_aria", { title: t0.title }) },
  ...parts.filter(([, n]) => n).map(([k, n]) => el("span", { class: `seg ${k}`, style: `width:${Math.min(100, 100 * n / t0.slots)}%` })));
  const words = parts.filter(([, n]) => n).map(([k, n]) => t(`m.prog_${k}`, { n }));
  const rejected = by.rejected || 0;
  if (rejected) words.push(t("m.prog_rejected", { n: rejected }));
  return el("div", { class: "progress-box" }, bar,
    el("div", { class: "muted" }, t("m.progress_text", { done, slots: t0.slots }) + (words.length ? ` · ${words.join(" · ")}` : "")));
}

function taskActions(x) {
  const verb = (path, key) => el("button", { type: "button", class: `task-${path}`, onclick: action(async () => {
    if (path === "close" && !(await confirmDialog(t("m.close_title"), t("m.close_intro", { title: x.title })))) return;
    await post(`/v1/tasks/${x.id}/${path}`);
    toast(t(`m.done_${path}`, { id: x.id }), "ok");
    await Promise.all([loadTasks(), loadWallet()]);
  }) }, t(key));
  const out = [];
  if (x.state === "published") out.push(verb("pause", "m.pause"));
  if (x.state === "paused") out.push(verb("resume", "m.resume"));
  if (["published", "paused"].includes(x.state)) out.push(verb("close", "m.close_task"));
  return out;
}

async function taskItem(x) {
  const p = await api(`/v1/tasks/${x.id}/progress`).catch(() => ({ by_state: {} }));
  const fence = x.radius_m ? t("m.fence_circle", { r: Math.round(x.radius_m) }) : t("m.fence_polygon");
  const rules = [t(x.hard_fence ? "m.hard_short" : "m.soft_short"), t("m.photos_n", { n: x.evidence.photos_min }),
    x.evidence.video ? t("m.video_short") : null, x.min_dwell_s ? t("m.dwell_n", { n: Math.round(x.min_dwell_s / 60) }) : null]
    .filter(Boolean).join(" · ");
  return el("div", { class: "item task", dataset: { task: x.id } },
    el("div", { class: "row" },
      el("div", { class: "grow" }, el("div", { class: "title" }, `#${x.id} ${x.title}`),
        el("div", { class: "muted" }, `${t(`type.${x.type}`)} · ${yuan(x.reward_fen)} × ${x.slots} · ${fence} · ${rules}`),
        el("div", { class: "muted" }, t("m.ends_at", { when: when(x.ends_at) })
          + (x.review_reason ? ` · ${t("m.review_note", { reason: x.review_reason })}` : ""))),
      el("span", { class: `badge ${x.state}` }, t(`state.${x.state}`)),
      ...taskActions(x),
      ["draft", "pending_review"].includes(x.state) ? null
        : el("button", { type: "button", class: "open-queue", onclick: action(() => openQueue(x)) }, t("m.open_queue"))),
    progressBar(x, p));
}

async function loadTasks() {
  allTasks = await api("/v1/tasks?limit=200");
  const rows = await Promise.all(allTasks.map(taskItem));
  $("#tasks").replaceChildren(...(rows.length ? rows : [el("p", { class: "muted" }, t("m.no_tasks"))]));
  showTasks(allTasks);
}

async function openQueue(task) {
  $("#queue-task").value = String(task.id);
  await loadQueue();
  $("#queue-card").scrollIntoView({ behavior: "smooth" });
}

// ---- start ---------------------------------------------------------------------------------
async function startMap() {
  draw.ctx = await createMap($("#draw-map"), DEFAULT_CENTER, 15);
  draw.ctx?.map.on("click", (e) => {
    if (draw.mode === "circle" && draw.points.length >= 2) draw.points = [];
    draw.points.push(fromDisplay(e.latlng.lat, e.latlng.lng)); // kept in WGS-84, whatever the base map's system
    redraw();
  });
  navigator.geolocation?.getCurrentPosition((p) => draw.ctx?.map.setView(toDisplay(p.coords.latitude, p.coords.longitude), 15),
    () => {}, { timeout: 5000 });
}

setupLogin("merchant", async () => {
  const f = $("#task-form");
  const now = new Date();
  f.starts_at.value = localInput(now);
  f.ends_at.value = localInput(new Date(now.getTime() + 2 * 86400_000));
  f.addEventListener("submit", createTask);
  $("#place-form").addEventListener("submit", searchPlaces);
  $("#coord-form").addEventListener("submit", action(goToCoords));
  $("#deposit-form").addEventListener("submit", action(deposit));
  $("#tasks-refresh").addEventListener("click", action(loadTasks));
  $("#statement").addEventListener("click", action(() => download(`/v1/me/statement.csv?lang=${lang()}`, "statement.csv")));
  $("#draw-mode").addEventListener("change", (e) => setMode(e.target.value));
  $("#draw-clear").addEventListener("click", clearDrawing);
  f.radius_m.addEventListener("input", redraw);
  setupQueue(() => Promise.all([loadTasks(), loadWallet()]));
  redraw();
  Promise.all([loadWallet(), loadTasks().then(loadQueue)]).catch((err) => toast(errorText(err), "error"));
  await startMap();
});
