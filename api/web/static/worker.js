// Worker page: earnings and withdrawals, credit and why it moved, the task hall by location, and the claims
// (worker_claims.js: check in/out with a map, photos, submit, reasons, appeals). Chinese by default.
import "./worker_strings.js";
import { $, action, api, el, errorText, flushQueue, onQueueResult, post, queued, setupLogin, toast, when, yuan } from "./common.js";
import { lang, t } from "./i18n.js";
import { claimsNow, focusCard, loadClaims, onClaimsChanged, queuedResult, rememberTask } from "./worker_claims.js";
import { locate } from "./worker_geo.js";

const ACTIVE = ["claimed", "checked_in", "submitted", "changes_requested", "confirmed", "spot_check"];
const DONE = ["accepted", "paid", "rejected", "appealed", "closed"]; // the API refuses these a second claim
const signed = (d) => `${d > 0 ? "+" : "−"}${Math.abs(d)}`;

// ---- earnings, credit, withdrawals ---------------------------------------------------------------------------
async function loadWallet() {
  const [w, credit, out] = await Promise.all([api("/v1/me/wallet"), api("/v1/me/credit"), api("/v1/me/withdrawals")]);
  $("#earn-available").textContent = yuan(w.balances_fen.worker_available || 0);
  $("#earn-withdrawing").textContent = yuan(w.balances_fen.worker_withdrawing || 0);
  $("#credit").textContent = credit.score;
  $("#credit-changes").replaceChildren(...(credit.events.length ? credit.events.slice(0, 5).map((e) => el("li", {
    class: e.delta > 0 ? "ok" : "bad" }, t("w.credit_change", { when: when(e.at), what: t(`credit.${e.reason}`),
    delta: signed(e.delta) }))) : [el("li", { class: "muted" }, t("w.credit_none"))]));
  $("#withdrawals").replaceChildren(...out.slice(0, 5).map((x) => el("li", { class: "muted" },
    t("w.withdrawal_line", { when: when(x.created_at), amount: yuan(x.amount_fen), state: t(`wd.${x.state}`) }))));
}

async function withdraw(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const fen = Math.round(parseFloat(form.amount.value) * 100);
  await post("/v1/me/withdrawals", { amount_fen: fen });
  toast(t("w.withdraw_ok", { amount: yuan(fen) }), "ok");
  form.reset();
  await loadWallet();
}

// ---- task hall -------------------------------------------------------------------------------------------------
async function loadNearby() {
  const position = $("#position");
  position.textContent = t("w.reading");
  let pos;
  try {
    pos = await locate();
  } catch (err) {
    position.replaceChildren(el("p", { class: "error-text geo-error" }, errorText(err)),
      el("button", { type: "button", id: "geo-retry", class: "primary", onclick: action(loadNearby) }, t("w.retry")));
    return;
  }
  const { latitude: lat, longitude: lon, accuracy } = pos.coords;
  position.textContent = t("w.here", { lat: lat.toFixed(5), lon: lon.toFixed(5), acc: Math.round(accuracy) });
  const found = await api(`/v1/tasks/nearby?lat=${lat}&lon=${lon}&crs=wgs84&radius_m=5000`);
  found.forEach(rememberTask);
  $("#nearby").replaceChildren(...(found.length ? found.map(taskCard) : [el("p", { class: "muted" }, t("w.none_near"))]));
}

function taskCard(task) {
  const mine = claimsNow().find((c) => c.task_id === task.id && ACTIVE.includes(c.state));
  const done = !mine && claimsNow().some((c) => c.task_id === task.id && DONE.includes(c.state));
  const where = task.distance_m > 0 ? t("w.dist_edge", { m: Math.round(task.distance_m) }) : t("w.dist_inside");
  return el("div", { class: "item", dataset: { task: task.id } },
    el("div", { class: "row" },
      el("div", { class: "grow" },
        el("div", { class: "title" }, task.title),
        el("div", { class: "muted" }, t("w.task_line", { type: t(`type.${task.type}`), where, free: task.slots - task.slots_taken,
          slots: task.slots, photos: task.evidence.photos_min }))),
      el("div", { class: "stat" }, yuan(task.reward_fen))),
    done ? el("span", { class: "badge" }, t("w.done_before")) : null,
    mine ? el("span", { class: `badge ${mine.state}` }, t("w.yours", { state: t(`state.${mine.state}`) })) : done ? null : el("button", {
      class: "primary claim", type: "button", onclick: action(async () => {
        const claim = await post(`/v1/tasks/${task.id}/claims`);
        toast(t("w.claimed_toast"), "ok");
        await loadClaims({ focus: claim.id }); // the next step (check in) on screen, not below the hall
        loadNearby().catch(() => {});
      }),
    }, t("w.claim")));
}

// ---- the next step, always on screen ---------------------------------------------------------------------------
function nextStep(claims) {
  const c = claims.find((x) => ["claimed", "checked_in", "changes_requested"].includes(x.state));
  const bar = $("#nextbar");
  bar.hidden = !c;
  document.body.classList.toggle("has-nextbar", Boolean(c));
  if (!c) return;
  const key = c.state === "checked_in" && !c.checked_out_at ? "next.checkout" : `next.${c.state}`;
  $("#nextbar-text").textContent = t(key, { deadline: when(c.expires_at) });
  $("#nextbar-go").onclick = () => focusCard(c.id);
}

// ---- connectivity ----------------------------------------------------------------------------------------------
function renderNet() {
  const n = queued().length;
  const banner = $("#net");
  banner.hidden = navigator.onLine && n === 0;
  banner.className = navigator.onLine ? "banner" : "banner offline";
  banner.textContent = navigator.onLine ? t("w.net_sending", { n }) : t("w.net_offline", { n });
}

onQueueResult((r) => {
  const claimId = r.item.label?.claim_id;
  if (!r.queued && claimId) {
    queuedResult(claimId, r.error ? { error: r.error } : { result: r.result });
    toast(r.error ? t("w.queue_refused", { why: errorText(r.error) }) : t("w.queue_sent", { verdict: t(`verdict.${r.result.verdict}`) }),
      r.error ? "error" : "ok");
    loadClaims().catch(() => {});
  }
  renderNet();
});
window.addEventListener("online", renderNet);
window.addEventListener("offline", renderNet);

document.documentElement.lang = lang() === "en" ? "en" : "zh-CN";
setupLogin("worker", () => {
  let first = true; // the first claims load runs beside loadWallet below; later ones may have moved money
  onClaimsChanged((claims) => {
    nextStep(claims);
    renderNet();
    if (!first) loadWallet().catch(() => {});
    first = false;
  });
  $("#nearby-refresh").addEventListener("click", action(loadNearby));
  $("#claims-refresh").addEventListener("click", action(() => loadClaims()));
  $("#wallet-refresh").addEventListener("click", action(loadWallet));
  $("#withdraw-form").addEventListener("submit", action(withdraw));
  Promise.all([loadWallet(), loadClaims()]).catch((err) => toast(errorText(err), "error"));
  flushQueue();
  loadNearby().catch((err) => { $("#position").textContent = errorText(err); });
});
