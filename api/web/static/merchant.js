// Merchant console: draw a fence and publish, progress, submission queue with evidence and check-ins, decisions, money.
import { $, action, api, download, el, errorText, imageUrl, post, setupLogin, toast, when, yuan } from "./common.js";
import { createMap, fenceLayer } from "./map.js";

const DEFAULT_CENTER = [39.8990, 116.3976];
const draw = { mode: "circle", points: [], layer: null, ctx: null };
let selectedTask = null;

// ---- drawing a fence ------------------------------------------------------------
function metres(a, b) {
  const R = 6371008.8, rad = Math.PI / 180;
  const dlat = (b[0] - a[0]) * rad, dlon = (b[1] - a[1]) * rad;
  const h = Math.sin(dlat / 2) ** 2 + Math.cos(a[0] * rad) * Math.cos(b[0] * rad) * Math.sin(dlon / 2) ** 2;
  return 2 * R * Math.asin(Math.sqrt(h));
}

function redraw() {
  const { ctx, points, mode } = draw;
  const f = $("#task-form");
  if (mode === "circle" && points.length) {
    f.lat.value = points[0][0].toFixed(6);
    f.lon.value = points[0][1].toFixed(6);
    if (points.length > 1) f.radius_m.value = Math.round(metres(points[0], points[1]));
  }
  if (!ctx) return;
  draw.layer?.remove();
  const { L, map } = ctx;
  if (mode === "circle" && points.length) {
    draw.layer = L.circle(points[0], { radius: Number(f.radius_m.value) || 1, color: "#dc2626" }).addTo(map);
  } else if (mode === "polygon" && points.length) {
    draw.layer = (points.length > 2 ? L.polygon(points, { color: "#dc2626" }) : L.polyline(points, { color: "#dc2626" })).addTo(map);
  }
  $("#draw-status").textContent = mode === "circle"
    ? (points.length < 2 ? "Click the centre, then a point on the edge." : `Circle of ${f.radius_m.value} m.`)
    : `${points.length} corner(s); at least 3 make a polygon.`;
}

function clearDrawing() { draw.points = []; redraw(); }

function fenceFromForm(f) {
  if (draw.mode === "polygon") {
    if (draw.points.length < 3) throw new Error("Click at least three corners for a polygon.");
    const ring = draw.points.map(([lat, lon]) => [lon, lat]);
    return { type: "Polygon", coordinates: [[...ring, ring[0]]] };
  }
  const lat = Number(f.lat.value), lon = Number(f.lon.value), r = Number(f.radius_m.value);
  if (!f.lat.value || !f.lon.value || !r) throw new Error("Place a circle on the map (or type centre and radius).");
  return { center: [lon, lat], radius_m: r };
}

function localInput(d) {
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

async function createTask(ev) {
  ev.preventDefault();
  const f = ev.currentTarget;
  let body;
  try {
    body = {
      title: f.title.value.trim(), type: f.type.value, reward_fen: Math.round(Number(f.reward.value) * 100),
      slots: Number(f.slots.value), starts_at: new Date(f.starts_at.value).toISOString(),
      ends_at: new Date(f.ends_at.value).toISOString(), crs: "wgs84", geofence: fenceFromForm(f),
      evidence: { photos_min: Number(f.photos_min.value || 0), video: false },
    };
  } catch (err) { return toast(err.message, "error"); }
  try {
    const task = await post("/v1/tasks", body);
    const published = await post(`/v1/tasks/${task.id}/publish`);
    toast(`Task #${task.id} sent to review (${published.state}).`, "ok");
    clearDrawing();
    await Promise.all([loadTasks(), loadWallet()]);
  } catch (err) { toast(errorText(err), "error"); }
}

// ---- wallet ----------------------------------------------------------------------
async function loadWallet() {
  const w = await api("/v1/me/wallet");
  $("#balances").replaceChildren(...Object.entries(w.balances_fen).map(([k, v]) =>
    el("div", {}, el("div", { class: "stat" }, yuan(v)), el("div", { class: "muted" }, k.replace("_", " ")))));
}

async function deposit(ev) {
  ev.preventDefault();
  const f = ev.currentTarget;
  await post("/v1/me/deposits", { amount_fen: Math.round(Number(f.amount.value) * 100), purpose: f.purpose.value });
  toast("Funds added.", "ok");
  await loadWallet();
}

// ---- tasks and progress -------------------------------------------------------------
async function loadTasks() {
  const list = await api("/v1/tasks");
  const rows = await Promise.all(list.map(async (t) => {
    const p = await api(`/v1/tasks/${t.id}/progress`).catch(() => ({ by_state: {} }));
    const counts = Object.entries(p.by_state).map(([s, n]) => el("span", { class: `badge ${s}` }, `${s.replace("_", " ")} ${n}`));
    return el("div", { class: "item", dataset: { task: t.id } },
      el("div", { class: "row" },
        el("div", { class: "grow" }, el("div", { class: "title" }, `#${t.id} ${t.title}`),
          el("div", { class: "muted" }, `${yuan(t.reward_fen)} × ${t.slots} · ${t.slots_taken} taken · ends ${when(t.ends_at)}`
            + (t.review_reason ? ` · review: ${t.review_reason}` : ""))),
        el("span", { class: `badge ${t.state}` }, t.state.replace("_", " ")),
        el("button", { type: "button", class: "open-queue", onclick: action(() => openQueue(t)) }, "Submissions")),
      el("div", { class: "reasons" }, ...counts));
  }));
  $("#tasks").replaceChildren(...(rows.length ? rows : [el("p", { class: "muted" }, "No tasks yet: draw one above.")]));
}

// ---- submission queue ------------------------------------------------------------------
async function openQueue(task) {
  selectedTask = task;
  $("#queue-task").textContent = `· #${task.id} ${task.title}`;
  await loadQueue();
  $("#queue-card").scrollIntoView({ behavior: "smooth" });
}

async function loadQueue() {
  if (!selectedTask) return;
  const state = $("#queue-state").value;
  const claims = await api(`/v1/tasks/${selectedTask.id}/submissions?state=${state}`);
  const cards = claims.map((c) => submissionCard(c, selectedTask));
  $("#queue").classList.remove("muted");
  $("#queue").replaceChildren(...(cards.length ? cards : [el("p", { class: "muted" }, "Nothing here.")]));
}

function submissionCard(c, task) {
  const mapBox = el("div", { class: "map small" });
  const evBox = el("div", {});
  const card = el("div", { class: "item submission", dataset: { claim: c.id } },
    el("div", { class: "row" },
      el("div", { class: "grow" }, el("div", { class: "title" }, `Claim #${c.id} by worker #${c.worker_id}`),
        el("div", { class: "muted" }, `submitted ${when(c.submitted_at)} · risk ${c.risk_score}/100`)),
      el("span", { class: `badge ${c.state}` }, c.state.replace("_", " "))),
    c.flags.length ? el("div", { class: "reasons" }, "flags:", ...c.flags.map((f) => el("code", {}, f))) : null,
    evBox, mapBox, decisionControls(c));
  fillEvidence(c, evBox).catch((err) => evBox.append(el("div", { class: "error-text" }, errorText(err))));
  fillFixes(c, task, mapBox).catch((err) => mapBox.append(errorText(err)));
  return card;
}

async function fillEvidence(c, box) {
  const files = await api(`/v1/claims/${c.id}/evidence`);
  const thumbs = el("div", { class: "thumbs" });
  box.append(thumbs);
  for (const ev of files) {
    if (ev.kind === "image") {
      thumbs.append(el("img", { src: await imageUrl(`/v1/evidence/${ev.id}/image?size=thumb`), alt: `evidence ${ev.id}`, title: ev.reasons.join(", ") }));
    } else thumbs.append(el("span", { class: "badge" }, `video #${ev.id}`));
    for (const m of ev.matches) {
      const other = await imageUrl(`/v1/evidence/${ev.id}/matches/${m.matched_evidence_id}/image?size=thumb`).catch(() => null);
      box.append(el("div", { class: "pair duplicate" },
        el("img", { src: await imageUrl(`/v1/evidence/${ev.id}/image?size=thumb`), alt: "this claim" }),
        other ? el("img", { src: other, alt: `duplicate ${m.matched_evidence_id}` }) : el("span", {}, "(no preview)"),
        el("div", {}, el("strong", {}, "Possible duplicate"), el("div", { class: "muted" },
          `of file #${m.matched_evidence_id} on another claim · ${m.method}, distance ${m.distance}`))));
    }
  }
  if (!files.length) thumbs.append(el("span", { class: "muted" }, "No files."));
}

async function fillFixes(c, task, box) {
  const fixes = await api(`/v1/claims/${c.id}/checkins`);
  const ctx = await createMap(box, [task.center[1], task.center[0]], 16);
  const text = fixes.map((f) => `${f.kind}: ${f.verdict}, ${f.distance_m} m${f.reasons.length ? ` (${f.reasons.join(", ")})` : ""}`);
  box.after(el("div", { class: "muted fixes" }, text.join(" · ") || "No check-ins."));
  if (!ctx) return;
  const { L, map } = ctx;
  const fence = fenceLayer(L, task).addTo(map);
  const colors = { inside: "#16a34a", uncertain: "#d97706", outside: "#dc2626" };
  const pts = fixes.map((f) => L.circleMarker([f.lat, f.lon], { radius: 7, color: colors[f.verdict], fillOpacity: 0.8 })
    .bindTooltip(`${f.kind} ${f.verdict} ${f.distance_m} m`).addTo(map));
  map.fitBounds(L.featureGroup([fence, ...pts]).getBounds().pad(0.3));
}

function decisionControls(c) {
  const reason = el("input", { placeholder: "Reason (for reject / changes)", class: "grow reason", maxlength: 500 });
  const code = el("select", { class: "reason-code" }, ...["evidence_insufficient", "not_at_location", "evidence_fake",
    "work_not_done", "other"].map((x) => el("option", { value: x }, x.replaceAll("_", " "))));
  const done = (verb) => async (claim) => { toast(`Claim #${c.id} ${verb}: ${claim.state ?? "ok"}`, "ok"); await Promise.all([loadQueue(), loadTasks(), loadWallet()]); };
  const need = () => { if (!reason.value.trim()) throw new Error("Write a reason first."); return reason.value.trim(); };
  const guarded = (fn) => action(async () => { try { await fn(); } catch (e) { if (e.code) throw e; toast(e.message, "error"); } });
  if (c.state === "submitted") {
    return el("div", { class: "row decisions" },
      el("button", { class: "primary confirm", type: "button", onclick: guarded(async () => done("confirmed")(await post(`/v1/submissions/${c.id}/confirm`))) }, "Confirm"),
      code, reason,
      el("button", { class: "danger reject", type: "button", onclick: guarded(async () => done("rejected")(await post(`/v1/submissions/${c.id}/reject`, { reason_code: code.value, reason: need() }))) }, "Reject"),
      el("button", { type: "button", class: "changes", onclick: guarded(async () => done("sent back")(await post(`/v1/submissions/${c.id}/request-changes`, { reason: need() }))) }, "Request changes"));
  }
  if (c.state === "accepted" || c.state === "paid") {
    const stars = el("select", { class: "stars" }, ...[5, 4, 3, 2, 1].map((n) => el("option", { value: n }, "★".repeat(n))));
    return el("div", { class: "row decisions" }, stars,
      el("button", { type: "button", class: "rate", onclick: guarded(async () => done("rated")(await post(`/v1/submissions/${c.id}/rating`, { stars: Number(stars.value), comment: reason.value }))) }, "Rate"),
      reason);
  }
  return null;
}

// ---- start ---------------------------------------------------------------------------------
setupLogin("merchant", async () => {
  const f = $("#task-form");
  const now = new Date();
  f.starts_at.value = localInput(now);
  f.ends_at.value = localInput(new Date(now.getTime() + 2 * 86400_000));
  f.addEventListener("submit", createTask);
  $("#deposit-form").addEventListener("submit", action(deposit));
  $("#tasks-refresh").addEventListener("click", action(loadTasks));
  $("#queue-state").addEventListener("change", action(loadQueue));
  $("#statement").addEventListener("click", action(() => download("/v1/me/statement.csv", "statement.csv")));
  $("#draw-mode").addEventListener("change", (e) => { draw.mode = e.target.value; clearDrawing(); });
  $("#draw-clear").addEventListener("click", clearDrawing);
  f.radius_m.addEventListener("input", redraw);
  Promise.all([loadWallet(), loadTasks()]).catch((err) => toast(errorText(err), "error"));
  draw.ctx = await createMap($("#draw-map"), DEFAULT_CENTER, 15);
  draw.ctx?.map.on("click", (e) => {
    if (draw.mode === "circle" && draw.points.length >= 2) draw.points = [];
    draw.points.push([e.latlng.lat, e.latlng.lng]);
    redraw();
  });
  navigator.geolocation?.getCurrentPosition((p) => draw.ctx?.map.setView([p.coords.latitude, p.coords.longitude], 15),
    () => {}, { timeout: 5000 });
});
