// Ops dashboard: heatmap (metric list read from the API), region stats, task review, spot checks, appeals, freezing.
import { $, ApiError, action, api, el, errorText, imageUrl, post, setupLogin, toast, when } from "./common.js";
import { createMap, fenceLayer, heatColor } from "./map.js";

const FALLBACK_METRICS = ["checkins", "workers", "spoof_flags", "duplicate_flags"];
const heat = { ctx: null, layer: null, metrics: null };

// Centre from the URL (#lat,lon,zoom) so a view can be shared; else central Beijing.
function initialView() {
  const [lat, lon, zoom] = location.hash.slice(1).split(",").map(Number);
  return Number.isFinite(lat) && Number.isFinite(lon) ? [[lat, lon], zoom || 14] : [[39.9042, 116.4074], 12];
}

function localInput(d) {
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

function bbox() {
  if (heat.ctx) {
    const b = heat.ctx.map.getBounds();
    return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map((x) => x.toFixed(6)).join(",");
  }
  const [[lat, lon]] = initialView();
  return [lon - 0.1, lat - 0.08, lon + 0.1, lat + 0.08].map((x) => x.toFixed(6)).join(",");
}

// The metrics the API offers: from a response's "metrics", else from its error naming the allowed values.
async function discoverMetrics() {
  try {
    const fc = await api(`/v1/ops/heatmap?bbox=${bbox()}&res=5&metric=checkins`);
    if (Array.isArray(fc.metrics) && fc.metrics.length) return fc.metrics;
  } catch { /* fall through to the probe */ }
  try {
    await api(`/v1/ops/heatmap?bbox=${bbox()}&res=5&metric=__list__`);
  } catch (err) {
    if (err instanceof ApiError) {
      const text = err.detail || "";
      const quoted = [...text.matchAll(/'([a-z0-9_]+)'/g)].map((m) => m[1]);
      const listed = text.match(/one of ([a-z0-9_, ]+)/)?.[1].split(",").map((s) => s.trim()).filter(Boolean) ?? [];
      if (quoted.length || listed.length) return quoted.length ? quoted : listed;
    }
  }
  return FALLBACK_METRICS;
}

function fillMetrics(list) {
  const sel = $("#heat-metric");
  const current = sel.value || "checkins";
  sel.replaceChildren(...list.map((m) => el("option", { value: m, selected: m === current }, m.replaceAll("_", " "))));
}

async function loadHeat(ev) {
  ev?.preventDefault();
  const f = $("#heat-form");
  const q = new URLSearchParams({ bbox: bbox(), res: f.res.value, metric: f.metric.value });
  if (f.from.value) q.set("from", new Date(f.from.value).toISOString());
  if (f.to.value) q.set("to", new Date(f.to.value).toISOString());
  const fc = await api(`/v1/ops/heatmap?${q}`);
  if (Array.isArray(fc.metrics) && fc.metrics.join() !== heat.metrics?.join()) { heat.metrics = fc.metrics; fillMetrics(fc.metrics); }
  const metric = fc.metric || f.metric.value;
  const value = (feat) => Number(feat.properties.value ?? feat.properties[metric] ?? 0);
  const values = fc.features.map(value);
  const max = Math.max(1, ...values);
  const total = values.reduce((a, b) => a + b, 0);
  const summary = $("#heat-summary");
  summary.textContent = `${fc.features.length} cells · ${metric} total ${total}`;
  summary.dataset.cells = fc.features.length;
  summary.dataset.total = total;
  $("#heat-legend").replaceChildren("0", ...[0, .25, .5, .75, 1].map((t) => el("span", { class: "sw", style: `background:${heatColor(t)}` })), String(max));
  const rows = fc.features.map((feat) => el("tr", {}, el("td", {}, feat.properties.cell), el("td", {}, value(feat)),
    el("td", {}, feat.properties.workers ?? "")));
  $("#heat-table tbody").replaceChildren(...rows);
  if (!heat.ctx) { $("#heat-table").hidden = false; return; }
  const { L, map } = heat.ctx;
  heat.layer?.remove();
  heat.layer = L.geoJSON(fc, {
    style: (feat) => ({ color: "#7f1d1d", weight: 1, fillColor: heatColor(value(feat) / max), fillOpacity: 0.7 }),
    onEachFeature: (feat, layer) => layer.bindTooltip(`${metric}: ${value(feat)} · workers ${feat.properties.workers ?? "?"}`),
  }).addTo(map);
}

// ---- generic tables -----------------------------------------------------------------
function table(rows) {
  if (!rows.length) return el("p", { class: "muted" }, "Nothing yet.");
  const keys = Object.keys(rows[0]).filter((k) => typeof rows[0][k] !== "object" || rows[0][k] === null);
  return el("table", {}, el("thead", {}, el("tr", {}, ...keys.map((k) => el("th", {}, k.replaceAll("_", " "))))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...keys.map((k) => el("td", {}, r[k] ?? "—"))))));
}

async function loadStats() {
  const s = await api("/v1/ops/stats");
  $("#stats").replaceChildren(el("div", { class: "muted" }, `${when(s.from)} – ${when(s.to)}`),
    el("h3", {}, "By task type"), table(s.by_type || []), el("h3", {}, "By region"), table(s.by_region || []));
}

// ---- queues ----------------------------------------------------------------------------
function decide(label, cls, fn, reason) {
  return el("button", { type: "button", class: cls, onclick: action(async () => { await fn(reason?.value.trim() || ""); }) }, label);
}

async function loadReviews() {
  const list = await api("/v1/tasks/review-queue");
  const items = list.map((t) => {
    const reason = el("input", { placeholder: "Reason", class: "grow", maxlength: 500 });
    const mapBox = el("div", { class: "map small" });
    createMap(mapBox, [t.center[1], t.center[0]], 15).then((ctx) => {
      if (ctx) ctx.map.fitBounds(fenceLayer(ctx.L, t).addTo(ctx.map).getBounds().pad(0.3));
    });
    const done = (d) => async (r) => { await post(`/v1/tasks/${t.id}/review`, { decision: d, reason: r }); toast(`Task #${t.id}: ${d}d`, "ok"); await loadReviews(); };
    return el("div", { class: "item", dataset: { task: t.id } },
      el("div", { class: "title" }, `#${t.id} ${t.title}`),
      el("div", { class: "muted" }, `merchant #${t.merchant_id} · ${t.type} · ¥${(t.reward_fen / 100).toFixed(2)} × ${t.slots} · `
        + `${t.radius_m ? `circle ${t.radius_m} m` : "polygon"} · ${when(t.starts_at)} – ${when(t.ends_at)}`),
      t.description ? el("p", {}, t.description) : null, mapBox,
      el("div", { class: "row" }, decide("Approve", "primary", done("approve"), reason), reason, decide("Reject", "danger", done("reject"), reason)));
  });
  $("#reviews").replaceChildren(...(items.length ? items : [el("p", { class: "muted" }, "No tasks waiting.")]));
}

async function loadSpotChecks() {
  const list = await api("/v1/spot-checks");
  const items = await Promise.all(list.map(async (s) => {
    const reason = el("input", { placeholder: "Reason", class: "grow", maxlength: 500 });
    const thumbs = el("div", { class: "thumbs" });
    for (const ev of s.evidence) {
      const src = await imageUrl(`/v1/evidence/${ev.id}/image?size=thumb`).catch(() => null);
      if (src) thumbs.append(el("img", { src, alt: `evidence ${ev.id}`, title: (ev.reasons || []).join(", ") }));
    }
    const verdict = (v) => async (r) => { await post(`/v1/spot-checks/${s.id}/verdict`, { verdict: v, reason: r }); toast(`Spot check #${s.id}: ${v}`, "ok"); await loadSpotChecks(); };
    return el("div", { class: "item", dataset: { spot: s.id } },
      el("div", { class: "title" }, `Claim #${s.claim_id} · ${s.stratum} · p=${(s.probability * 100).toFixed(0)}%`),
      el("div", { class: "muted" }, `worker #${s.claim?.worker_id} · risk ${s.claim?.risk_score} · flags ${(s.claim?.flags || []).join(", ") || "none"}`),
      ...s.checkins.map((f) => el("div", { class: "muted" }, el("span", { class: `badge ${f.verdict}` }, f.verdict),
        ` ${f.kind} ${Math.round(f.distance_m)} m ${(f.reasons || []).join(", ")}`)),
      thumbs,
      el("div", { class: "row" }, decide("Pass", "primary", verdict("pass"), reason), reason, decide("Fail", "danger", verdict("fail"), reason)));
  }));
  $("#spot").replaceChildren(...(items.length ? items : [el("p", { class: "muted" }, "No open spot checks.")]));
}

async function loadAppeals() {
  const list = await api("/v1/appeals");
  const items = list.map((a) => {
    const reason = el("input", { placeholder: "Decision reason (required)", class: "grow", maxlength: 500 });
    const done = (d) => async (r) => {
      if (!r) return toast("Write a reason first.", "error");
      await post(`/v1/appeals/${a.id}/decision`, { decision: d, reason: r }); toast(`Appeal #${a.id}: ${d}`, "ok"); await loadAppeals();
    };
    return el("div", { class: "item", dataset: { appeal: a.id } },
      el("div", { class: "title" }, `${a.kind} #${a.id} · claim #${a.claim_id} · worker #${a.worker_id}`),
      el("div", { class: "muted" }, `from ${a.from_state} · ${when(a.created_at)}`), el("p", {}, a.reason),
      el("div", { class: "row" }, decide("Overturn", "primary", done("overturn"), reason), reason, decide("Deny", "danger", done("deny"), reason)));
  });
  $("#appeals").replaceChildren(...(items.length ? items : [el("p", { class: "muted" }, "No open appeals.")]));
}

async function freeze(ev) {
  ev.preventDefault();
  const f = ev.currentTarget;
  const frozen = ev.submitter?.value !== "false";
  const u = await post(`/v1/users/${Number(f.user_id.value)}/freeze`, { reason: f.reason.value.trim(), frozen });
  toast(`${u.username} is ${u.frozen ? "frozen" : "active"}.`, "ok");
}

const loaders = { reviews: loadReviews, spot: loadSpotChecks, appeals: loadAppeals, stats: loadStats };

setupLogin("ops", async () => {
  const f = $("#heat-form");
  const now = new Date();
  f.from.value = localInput(new Date(now.getTime() - 7 * 86400_000));
  f.to.value = localInput(new Date(now.getTime() + 3600_000));
  fillMetrics(FALLBACK_METRICS);
  f.addEventListener("submit", action(loadHeat));
  f.metric.addEventListener("change", action(loadHeat));
  $("#freeze-form").addEventListener("submit", action(freeze));
  document.querySelectorAll("[data-reload]").forEach((b) => b.addEventListener("click", action(() => loaders[b.dataset.reload]())));
  for (const load of Object.values(loaders)) load().catch((err) => toast(errorText(err), "error"));
  const [center, zoom] = initialView();
  heat.ctx = await createMap($("#heat-map"), center, zoom);
  heat.ctx?.map.on("moveend", () => loadHeat().catch(() => {}));
  heat.metrics = await discoverMetrics();
  fillMetrics(heat.metrics);
  await loadHeat().catch((err) => toast(errorText(err), "error"));
});
