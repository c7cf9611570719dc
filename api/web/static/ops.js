// Ops dashboard: heatmap (metrics from the API, a time slider over the last 30 days, legends with units, the
// count of cells hidden by k-anonymity), region stats; the queues and user search are in ops_queues.js.
import { $, action, api, el, errorText, percent, setupLogin, toast, when } from "./common.js";
import { addStrings, t, translate } from "./i18n.js";
import { createMap, displayCrs, heatColor } from "./map.js";
import { loaders, setupQueues } from "./ops_queues.js";

document.head.append(el("link", { rel: "stylesheet", href: "/app/static/ops.css" }));

const FALLBACK_METRICS = ["checkins", "workers", "spoof_flags", "duplicate_flags"];
const heat = { ctx: null, layer: null, metrics: null };
const DAY_MS = 86400_000;

addStrings({
  zh: {
    "ops.heatmap": "热力图", "ops.metric": "指标", "ops.res": "网格大小", "ops.window": "时间范围（最近 30 天）",
    "ops.from": "开始", "ops.to": "结束", "ops.show": "显示", "ops.cell": "网格", "ops.value": "数值",
    "ops.workers": "地推人员", "ops.days_ago": "{n} 天前", "ops.now": "现在",
    "ops.summary": "{cells} 个网格 · {metric}合计 {total}",
    "ops.hidden": "另有 {n} 个网格有数据但未显示：所选时间内，这些网格的任一小时或一天都不足 {k} 名地推人员（k 匿名，保护个人行踪）。",
    "ops.hidden_all": "所选范围内有 {n} 个网格有数据，但都不足 {k} 名地推人员，为保护个人行踪全部隐藏。可放大网格、拉长时间范围。",
    "ops.empty": "所选范围和时间内没有数据。",
    "ops.legend": "图例（单位：{unit}）",
    "metric.checkins": "签到", "metric.workers": "地推人员", "metric.completions": "完成", "metric.rejections": "驳回",
    "metric.spot_check_failures": "抽查未通过", "metric.duplicate_flags": "重复照片", "metric.spoof_flags": "疑似虚假定位",
    "metric.median_dwell_s": "停留时长中位数",
    "unit.checkins": "次签到", "unit.workers": "名地推人员", "unit.claims": "单", "unit.seconds": "分钟",
    "res.5": "5 级（约 250 平方公里）", "res.6": "6 级（约 36 平方公里）", "res.7": "7 级（约 5 平方公里）",
    "res.8": "8 级（约 0.7 平方公里）", "res.9": "9 级（约 0.1 平方公里）",
    "ops.stats": "区域统计", "ops.by_type": "按任务类型", "ops.by_region": "按区域",
    "ops.regions_hidden": "另有 {n} 个区域不足 {k} 名地推人员，未显示。", "ops.nothing": "暂无数据。",
    "col.type": "任务类型", "col.claims": "领取", "col.acceptance_rate": "通过率", "col.rejection_rate": "驳回率",
    "col.spot_check_failures": "抽查未通过", "col.region": "区域", "col.checkins": "签到", "col.workers": "地推人员",
    "col.completions": "完成", "col.rejections": "驳回", "col.median_dwell_s": "停留中位数",
    "col.spoof_rate": "虚假定位率", "col.duplicate_rate": "重复照片率",
    "type.store_visit": "门店拜访", "type.shelf_audit": "货架巡检", "type.flyer_run": "传单派发", "type.poster": "海报张贴",
    "type.signup_drive": "地推拉新", "type.other_offline": "其他线下",
    "ops.tooltip": "{metric}：{value} · 地推人员 {workers} 名",
  },
  en: {
    "ops.heatmap": "Heatmap", "ops.metric": "Metric", "ops.res": "Cell size", "ops.window": "Time range (last 30 days)",
    "ops.from": "From", "ops.to": "To", "ops.show": "Show", "ops.cell": "Cell", "ops.value": "Value",
    "ops.workers": "Workers", "ops.days_ago": "{n} days ago", "ops.now": "now",
    "ops.summary": "{cells} cells · {metric} total {total}",
    "ops.hidden": "{n} more cells have data but are hidden: no single hour or day in the range saw {k} distinct workers there (k-anonymity protects individual movements).",
    "ops.hidden_all": "{n} cells in view have data, but all saw fewer than {k} workers, so they are hidden to protect individual movements. Try larger cells or a longer range.",
    "ops.empty": "No data in this view and time range.",
    "ops.legend": "Legend (in {unit})",
    "metric.checkins": "Check-ins", "metric.workers": "Workers", "metric.completions": "Completions",
    "metric.rejections": "Rejections", "metric.spot_check_failures": "Failed spot checks",
    "metric.duplicate_flags": "Duplicate photos", "metric.spoof_flags": "Suspected GPS spoofing",
    "metric.median_dwell_s": "Median dwell",
    "unit.checkins": "check-ins", "unit.workers": "workers", "unit.claims": "claims", "unit.seconds": "minutes",
    "res.5": "5 (~250 km²)", "res.6": "6 (~36 km²)", "res.7": "7 (~5 km²)", "res.8": "8 (~0.7 km²)", "res.9": "9 (~0.1 km²)",
    "ops.stats": "Region stats", "ops.by_type": "By task type", "ops.by_region": "By region",
    "ops.regions_hidden": "{n} more regions saw fewer than {k} workers and are not shown.", "ops.nothing": "Nothing yet.",
    "col.type": "Task type", "col.claims": "Claims", "col.acceptance_rate": "Accepted", "col.rejection_rate": "Rejected",
    "col.spot_check_failures": "Failed spot checks", "col.region": "Region", "col.checkins": "Check-ins",
    "col.workers": "Workers", "col.completions": "Completions", "col.rejections": "Rejections",
    "col.median_dwell_s": "Median dwell", "col.spoof_rate": "Spoofing rate", "col.duplicate_rate": "Duplicate rate",
    "type.store_visit": "Store visit", "type.shelf_audit": "Shelf audit", "type.flyer_run": "Flyer run",
    "type.poster": "Poster", "type.signup_drive": "Sign-up drive", "type.other_offline": "Other offline",
    "ops.tooltip": "{metric}: {value} · {workers} workers",
  },
});

// Centre from the URL (#lat,lon,zoom) so a view can be shared; else central Beijing.
function initialView() {
  const [lat, lon, zoom] = location.hash.slice(1).split(",").map(Number);
  return Number.isFinite(lat) && Number.isFinite(lon) ? [[lat, lon], zoom || 14] : [[39.9042, 116.4074], 12];
}

function bbox() {
  if (heat.ctx) { // the map shows the tiles' crs; the API is asked in that crs
    const b = heat.ctx.map.getBounds();
    return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map((x) => x.toFixed(6)).join(",");
  }
  const [[lat, lon]] = initialView();
  return [lon - 0.1, lat - 0.08, lon + 0.1, lat + 0.08].map((x) => x.toFixed(6)).join(",");
}

const metricName = (m) => t(`metric.${m}`);
const unitOf = (fc, m) => t(`unit.${fc.units?.[m] || "checkins"}`);
// Dwell comes in seconds; people read minutes.
const shown = (m, v) => (m === "median_dwell_s" ? Math.round(v / 6) / 10 : v);

function fillMetrics(list) {
  const sel = $("#heat-metric");
  const current = sel.value || "checkins";
  sel.replaceChildren(...list.map((m) => el("option", { value: m, selected: m === current }, metricName(m))));
}

// The slider's two ends as ISO times: "from" N days ago, "to" M days ago (0 = now).
function windowFromSlider() {
  const f = $("#heat-form");
  let a = Number(f.from_days.value), b = Number(f.to_days.value);
  if (a <= b) { a = b + 1; f.from_days.value = a; } // keep at least a day between the ends
  const now = Date.now();
  $("#heat-from-out").textContent = t("ops.days_ago", { n: a });
  $("#heat-to-out").textContent = b ? t("ops.days_ago", { n: b }) : t("ops.now");
  f.from_days.setAttribute("aria-valuetext", t("ops.days_ago", { n: a }));
  f.to_days.setAttribute("aria-valuetext", b ? t("ops.days_ago", { n: b }) : t("ops.now"));
  return { from: new Date(now - a * DAY_MS).toISOString(), to: new Date(now - b * DAY_MS + (b ? 0 : 3600_000)).toISOString() };
}

function legend(fc, metric, max) {
  const stops = [0, 0.25, 0.5, 0.75, 1];
  $("#heat-legend").replaceChildren(el("span", { class: "muted" }, t("ops.legend", { unit: unitOf(fc, metric) })),
    el("span", {}, "0"), ...stops.map((s) => el("span", { class: "sw", style: `background:${heatColor(s)}`, "aria-hidden": "true" })),
    el("span", {}, `${shown(metric, max)} ${unitOf(fc, metric)}`));
}

function summarise(fc, metric, total) {
  const summary = $("#heat-summary");
  summary.textContent = t("ops.summary", { cells: fc.features.length, metric: metricName(metric),
    total: `${shown(metric, total)} ${unitOf(fc, metric)}` });
  Object.assign(summary.dataset, { cells: fc.features.length, total, hidden: fc.hidden ?? 0, k: fc.k ?? "" });
  const note = $("#heat-hidden");
  const hidden = fc.hidden ?? 0;
  note.hidden = false;
  note.textContent = hidden ? t(fc.features.length ? "ops.hidden" : "ops.hidden_all", { n: hidden, k: fc.k })
    : fc.features.length ? "" : t("ops.empty");
  note.hidden = !note.textContent;
}

async function loadHeat(ev) {
  ev?.preventDefault();
  const f = $("#heat-form");
  const { from, to } = windowFromSlider();
  const crs = heat.ctx?.crs || "wgs84";
  const q = new URLSearchParams({ bbox: bbox(), res: f.res.value, metric: f.metric.value, from, to, crs });
  const fc = await api(`/v1/ops/heatmap?${q}`);
  if (Array.isArray(fc.metrics) && fc.metrics.join() !== heat.metrics?.join()) { heat.metrics = fc.metrics; fillMetrics(fc.metrics); }
  const metric = fc.metric || f.metric.value;
  const value = (feat) => Number(feat.properties.value ?? feat.properties[metric] ?? 0);
  const values = fc.features.map(value);
  const max = Math.max(1, ...values);
  summarise(fc, metric, values.reduce((a, b) => a + b, 0));
  legend(fc, metric, max);
  const rows = fc.features.map((feat) => el("tr", {}, el("td", {}, feat.properties.cell), el("td", {}, shown(metric, value(feat))),
    el("td", {}, feat.properties.workers ?? "")));
  $("#heat-table tbody").replaceChildren(...rows);
  if (!heat.ctx) { $("#heat-table").hidden = false; return; }
  const { L, map } = heat.ctx;
  heat.layer?.remove();
  heat.layer = L.geoJSON(fc, {
    style: (feat) => ({ color: "#7f1d1d", weight: 1, fillColor: heatColor(value(feat) / max), fillOpacity: 0.7 }),
    onEachFeature: (feat, layer) => layer.bindTooltip(t("ops.tooltip", { metric: metricName(metric),
      value: `${shown(metric, value(feat))} ${unitOf(fc, metric)}`, workers: feat.properties.workers ?? "?" })),
  }).addTo(map);
}

// ---- stats ---------------------------------------------------------------------------------------------------
const RATE = /_rate$/;
function cellText(key, v) {
  if (v === null || v === undefined) return "—";
  if (RATE.test(key)) return percent(v, 1);
  if (key === "type") return t(`type.${v}`);
  if (key === "median_dwell_s") return `${Math.round(v / 60)} ${t("unit.seconds")}`;
  return String(v);
}

function table(rows, keys) {
  if (!rows.length) return el("p", { class: "muted" }, t("ops.nothing"));
  return el("table", {}, el("thead", {}, el("tr", {}, ...keys.map((k) => el("th", { scope: "col" }, t(`col.${k}`))))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...keys.map((k) => el("td", {}, cellText(k, r[k])))))));
}

async function loadStats() {
  const s = await api("/v1/ops/stats");
  const regions = ["region", "checkins", "workers", "completions", "rejections", "median_dwell_s", "spoof_rate",
    "duplicate_rate", "rejection_rate"];
  $("#stats").replaceChildren(el("div", { class: "muted" }, `${when(s.from)} – ${when(s.to)}`),
    el("h3", {}, t("ops.by_type")),
    table(s.by_type || [], ["type", "claims", "acceptance_rate", "rejection_rate", "spot_check_failures"]),
    el("h3", {}, t("ops.by_region")), table(s.by_region || [], regions),
    ...(s.regions_hidden ? [el("p", { class: "muted" }, t("ops.regions_hidden", { n: s.regions_hidden, k: s.k }))] : []));
}
loaders.stats = loadStats;

// ---- start ---------------------------------------------------------------------------------------------------
setupLogin("ops", async () => {
  translate();
  const f = $("#heat-form");
  $("#heat-res").replaceChildren(...[5, 6, 7, 8, 9].map((r) => el("option", { value: r, selected: r === 8 }, t(`res.${r}`))));
  fillMetrics(FALLBACK_METRICS);
  windowFromSlider();
  f.addEventListener("submit", action(loadHeat));
  for (const input of [f.metric, f.res, f.from_days, f.to_days]) input.addEventListener("change", action(loadHeat));
  for (const input of [f.from_days, f.to_days]) input.addEventListener("input", () => windowFromSlider());
  setupQueues();
  for (const load of Object.values(loaders)) load().catch((err) => toast(errorText(err), "error"));
  const [center, zoom] = initialView();
  heat.ctx = await createMap($("#heat-map"), center, zoom);
  if (heat.ctx) heat.ctx.crs = displayCrs();
  heat.ctx?.map.on("moveend", () => loadHeat().catch(() => {}));
  await loadHeat().catch((err) => toast(errorText(err), "error"));
});
