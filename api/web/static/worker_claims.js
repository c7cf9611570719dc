// The worker's claims: one card per claim with its next step (check in / out, photos, submit, appeal), why it
// stands where it does (reasons, deadlines, payment, credit) and a map of the fence while it is worked on.
import {
  $, ApiError, action, api, el, errorText, post, postOrQueue, queued, toast, when, yuan,
} from "./common.js";
import { reason, t } from "./i18n.js";
import { claimMap, compassPoint, fenceDistance } from "./claimmap.js";
import { fixBody, lastPosition, locate, onPosition, watch } from "./worker_geo.js";
import { photos } from "./worker_photos.js";

export { uploadPhoto } from "./worker_photos.js";

const tasks = new Map();   // task id -> task (from the hall or fetched)
const results = new Map(); // claim id -> last check-in/out outcome shown on its card
const maps = new Map();    // claim id -> {ctl, task, walk}
const SHOWN = 20;          // the newest claims get cards; older ones are history
const ON_SITE = ["claimed", "checked_in"];
const EDITABLE = ["checked_in", "changes_requested"];
const WITH_STORY = ["submitted", "changes_requested", "confirmed", "spot_check", "accepted", "paid", "rejected",
  "appealed", "closed"];
const NEXT = { claimed: ".checkin", checked_in: ".checkout, .camera-open", changes_requested: ".camera-open",
  rejected: ".appeal-open", closed: ".appeal-open" };
let claims = [];
let afterChange = () => {};

export function claimsNow() { return claims; }
export function onClaimsChanged(fn) { afterChange = fn; }
export function rememberTask(task) { tasks.set(task.id, task); }

async function taskOf(id) {
  if (!tasks.has(id)) {
    try {
      tasks.set(id, await api(`/v1/tasks/${id}`));
    } catch (err) {
      if (!(err instanceof ApiError)) return { id, title: `#${id}` }; // offline: try again next time
      tasks.set(id, { id, title: `#${id}` }); // e.g. closed since: no longer visible to workers
    }
  }
  return tasks.get(id);
}

const optional = (p) => p.catch((err) => { if (err instanceof ApiError) return null; throw err; });

async function extras(c) {
  const afterCheckin = c.state !== "claimed" && c.state !== "expired" && c.state !== "cancelled";
  const [task, story, files, fixes] = await Promise.all([
    taskOf(c.task_id),
    WITH_STORY.includes(c.state) ? optional(api(`/v1/claims/${c.id}/timeline`)) : null,
    afterCheckin ? optional(api(`/v1/claims/${c.id}/evidence`)) : null,
    c.state === "checked_in" && !results.has(c.id) ? optional(api(`/v1/claims/${c.id}/checkins`)) : null,
  ]);
  const lastFix = fixes?.length ? fixes[fixes.length - 1] : null;
  if (lastFix) results.set(c.id, { result: lastFix, checkout: lastFix.kind === "out" });
  return { task, story, files: files || [] };
}

// Reload the claims; `focus` (a claim id) scrolls its card into view with its next step focused.
export async function loadClaims({ focus } = {}) {
  try {
    claims = await api("/v1/me/claims");
  } catch (err) {
    if (err instanceof ApiError) throw err; // offline: keep showing the last list
  }
  const shown = claims.slice(0, SHOWN);
  const cards = await Promise.all(shown.map(async (c) => claimCard(c, await extras(c))));
  maps.clear();
  $("#claims").replaceChildren(...(cards.length ? cards : [el("p", { class: "muted" }, t("w.no_claims"))]));
  await Promise.all(shown.filter((c) => ON_SITE.includes(c.state)).map((c) => mountMap(c)));
  if (focus) focusCard(focus);
  afterChange(claims);
}

export function focusCard(claimId) {
  const card = $(`#claims .item[data-claim='${claimId}']`);
  if (!card) return;
  card.scrollIntoView({ block: "start" });
  const next = NEXT[card.dataset.state] && card.querySelector(NEXT[card.dataset.state]);
  (next || card).focus({ preventScroll: true });
}

function stateBadge(state) { return el("span", { class: `badge ${state}` }, t(`state.${state}`)); }

function claimCard(c, { task, story, files }) {
  const pending = queued().filter((q) => q.label?.claim_id === c.id);
  if (pending.length) results.set(c.id, { queued: pending[0] });
  const card = el("div", { class: "item claim", tabindex: "-1", dataset: { claim: c.id, state: c.state } },
    el("div", { class: "row" },
      el("div", { class: "grow" }, el("div", { class: "title" }, task.title),
        el("div", { class: "muted" }, t("w.claim_no", { id: c.task_id, when: when(c.claimed_at) }))),
      stateBadge(c.state)),
    c.flags.length ? el("div", { class: "reasons" }, t("w.flags"), ...c.flags.map((f) => el("span", {
      class: "note", title: f }, reason(f)))) : null,
    story ? storyBox(c, story) : null);
  if (c.state === "claimed") card.append(el("div", { class: "muted" }, t("w.checkin_before", { when: when(c.expires_at) })));
  if (ON_SITE.includes(c.state) && task.center) card.append(el("div", { class: "map claim-map" }), el("div", { class: "walk", role: "status" }));
  if (results.has(c.id) && ON_SITE.includes(c.state)) card.append(verdictBox(results.get(c.id)));
  card.append(actions(c));
  if (c.state !== "claimed" && c.state !== "expired" && c.state !== "cancelled") {
    card.append(photos(c, task, files, { editable: EDITABLE.includes(c.state), reload: () => loadClaims({ focus: c.id }) }));
  }
  if (["rejected", "closed"].includes(c.state) && !story?.appeals.some((a) => a.kind === "appeal")) card.append(appealForm(c));
  if (c.state !== "expired" && c.state !== "cancelled") {
    card.append(el("button", { type: "button", class: "details", onclick: action(() => showFixes(c, card)) }, t("w.details")));
  }
  return card;
}

function actions(c) {
  const row = el("div", { class: "row actions" });
  if (c.state === "claimed" && !queued().some((q) => q.label?.claim_id === c.id)) {
    row.append(el("button", { class: "primary checkin", type: "button", onclick: action(() => checkIn(c, "checkins")) },
      t("w.checkin")),
    el("button", { class: "danger cancel", type: "button", onclick: action(async () => {
      await post(`/v1/claims/${c.id}/cancel`);
      toast(t("w.cancelled_toast"), "ok");
      await loadClaims();
    }) }, t("w.cancel")));
  }
  if (c.state === "checked_in" && !c.checked_out_at) {
    row.append(el("button", { class: "checkout", type: "button", onclick: action(() => checkIn(c, "checkouts")) },
      t("w.checkout")));
  }
  if (c.checked_out_at) row.append(el("span", { class: "muted" }, t("w.checked_out", { min: Math.round((c.dwell_s || 0) / 60) })));
  return row;
}

// ---- where the claim stands and why --------------------------------------------------------------------------
const delta = (d) => `${d > 0 ? "+" : "−"}${Math.abs(d)}`;
const lastTo = (story, state) => [...story.events].reverse().find((e) => e.to_state === state);

function rejectionWords(ev) {
  if (!ev) return "—";
  const code = ev.reason_code || "other";
  const text = (ev.reason || "").replace(new RegExp(`^${code}: `), "");
  return `${t(`reject.${code}`)}：${text}`;
}

function storyLines(c, story) {
  const lines = [];
  const s = story.state;
  if (s === "submitted") lines.push(["info", t("w.wait_merchant")]);
  if (s === "confirmed" || s === "spot_check") lines.push(["info", t("w.wait_spot")]);
  if (s === "changes_requested") {
    lines.push(["warn", t("w.changes", { why: lastTo(story, "changes_requested")?.reason || "—" })]);
    if (story.deadline) lines.push(["warn", t("w.resubmit_by", { when: when(story.deadline) })]);
  }
  const rejected = lastTo(story, "rejected");
  if (rejected) lines.push([s === "rejected" ? "bad" : "info", t("w.rejected", { why: rejectionWords(rejected) })]);
  if (story.spot_check?.state === "failed") lines.push(["bad", t("w.spot_failed", { why: story.spot_check.reason || "—" })]);
  for (const a of story.appeals.filter((x) => x.kind === "appeal")) {
    if (a.state === "open") lines.push(["warn", t("w.appeal_open", { when: when(a.created_at), why: a.reason })]);
    if (a.state === "overturned") lines.push(["ok", t("w.appeal_overturned", { why: a.decision_reason || "—" })]);
    if (a.state === "denied") lines.push(["bad", t("w.appeal_denied", { why: a.decision_reason || "—" })]);
  }
  if ((s === "paid" || s === "accepted") && story.paid_fen != null) lines.push(["ok", t("w.paid", { amount: yuan(story.paid_fen) })]);
  for (const cr of story.credit) {
    lines.push([cr.delta > 0 ? "ok" : "bad", t("w.credit_delta", { delta: delta(cr.delta), what: t(`credit.${cr.reason}`) })]);
  }
  return lines;
}

function storyBox(c, story) {
  const lines = storyLines(c, story);
  if (!lines.length) return null;
  return el("div", { class: "story" }, ...lines.map(([kind, text]) => el("p", { class: `line ${kind}` }, text)));
}

function appealForm(c) {
  const box = el("details", { class: "appeal" });
  const text = el("textarea", { name: "reason", required: true, maxlength: "1000", rows: "3" });
  const form = el("form", { class: "stack", onsubmit: action(async (ev) => {
    ev.preventDefault();
    await post(`/v1/claims/${c.id}/appeals`, { reason: text.value.trim() });
    toast(t("w.appeal_toast"), "ok");
    await loadClaims();
  }) }, el("label", {}, t("w.appeal_reason"), text), el("button", { type: "submit", class: "primary" }, t("w.appeal_send")));
  box.append(el("summary", { class: "button appeal-open" }, t("w.appeal")), form);
  return box;
}

// ---- check-in and check-out ------------------------------------------------------------------------------------
function distanceWords(m) { return m <= 0 ? t("w.dist_inside") : t("w.dist_edge", { m: Math.round(m) }); }

function verdictBox(r) {
  if (r.queued) {
    return el("div", { class: "verdict queued" }, el("strong", {}, t("w.queued")),
      el("div", { class: "muted" }, t("w.queued_detail", { key: r.queued.key.slice(0, 8) })));
  }
  if (r.error) {
    const m = r.error.body?.distance_m;
    const words = r.error.code === "outside_fence" && m != null ? t("code.outside_fence_m", { m: Math.round(m) }) : errorText(r.error);
    return el("div", { class: "verdict error", title: r.error.code }, el("strong", { class: "verdict-text" }, t("w.refused")),
      el("div", {}, words));
  }
  const v = r.result;
  return el("div", { class: `verdict ${v.verdict}` },
    el("strong", { class: "verdict-text" }, t(`verdict.${v.verdict}`)),
    el("div", { class: "muted" }, t("w.verdict_line", { dist: distanceWords(v.distance_m), acc: Math.round(v.accuracy_95_m),
      risk: v.risk_score })),
    v.reasons.length ? el("div", { class: "reasons" }, ...v.reasons.map((x) => el("span", { class: "note", title: x }, reason(x)))) : null);
}

async function checkIn(c, kind) {
  let outcome;
  try {
    const pos = await locate();
    outcome = await postOrQueue(`/v1/claims/${c.id}/${kind}`, fixBody(pos), { claim_id: c.id, kind });
  } catch (err) {
    outcome = { error: err };
  }
  results.set(c.id, { ...outcome, checkout: kind === "checkouts" });
  if (outcome.queued) toast(t("w.queued_toast"));
  else if (outcome.error) toast(errorText(outcome.error), "error");
  else if (kind === "checkouts") toast(t("w.checkout_toast", { min: Math.round((outcome.result.dwell_s || 0) / 60) }), "ok");
  else toast(t("w.checkin_toast", { verdict: t(`verdict.${outcome.result.verdict}`) }), outcome.result.verdict === "inside" ? "ok" : "info");
  await loadClaims({ focus: c.id });
}

export function queuedResult(claimId, outcome) { results.set(claimId, outcome); }

async function showFixes(c, card) {
  const fixes = await api(`/v1/claims/${c.id}/checkins`);
  card.querySelector(".fixes")?.remove();
  card.append(el("div", { class: "fixes" }, ...(fixes.length ? fixes.map((f) => el("div", { class: "muted" },
    t("w.fix_line", { kind: t(f.kind === "in" ? "w.fix_in" : "w.fix_out"), when: when(f.client_time),
      verdict: t(`verdict.${f.verdict}`), dist: distanceWords(f.distance_m), risk: f.risk_score }),
    f.reasons.length ? ` — ${f.reasons.map(reason).join("；")}` : "")) : [t("w.no_fixes")])));
}

// ---- the map ---------------------------------------------------------------------------------------------------
async function mountMap(c) {
  const card = $(`#claims .item[data-claim='${c.id}']`);
  const node = card?.querySelector(".claim-map");
  const task = tasks.get(c.task_id);
  if (!node || !task?.center) return;
  const ctl = await claimMap(node, task);
  maps.set(c.id, { ctl, task, walk: card.querySelector(".walk") });
  watch();
  const pos = lastPosition();
  if (pos) drawPosition(pos);
}

function drawPosition(pos) {
  const fix = { lat: pos.coords.latitude, lon: pos.coords.longitude, accuracy: pos.coords.accuracy };
  for (const { ctl, task, walk } of maps.values()) {
    const info = fenceDistance(task, fix.lat, fix.lon);
    const words = info.inside ? t("w.walk_inside")
      : t("w.walk", { dir: t(`dir.${compassPoint(info.bearing)}`), m: Math.round(info.distance_m) });
    ctl.update(fix, info, t("w.map_label", { where: words }));
    walk.dataset.distance = Math.round(info.distance_m);
    walk.replaceChildren(
      info.inside ? el("span", { class: "arrow inside", "aria-hidden": "true" }, "✓")
        : el("span", { class: "arrow", "aria-hidden": "true", style: `transform: rotate(${Math.round(info.bearing)}deg)` }, "↑"),
      el("strong", {}, distanceWords(info.distance_m)), ...(info.inside ? [] : [el("span", { class: "muted" }, ` · ${words}`)]));
  }
}

onPosition((pos, err) => {
  if (pos) drawPosition(pos);
  else if (err) maps.forEach(({ walk }) => { walk.replaceChildren(el("span", { class: "error-text" }, errorText(err))); });
});
