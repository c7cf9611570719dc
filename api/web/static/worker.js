// Worker page: task hall by location, claim, check in (queued when offline), photos, submit, verdicts, earnings.
import {
  $, ApiError, action, api, el, errorText, flushQueue, newKey, onQueueResult, post, postOrQueue, queued, setupLogin, toast, when,
  yuan,
} from "./common.js";

const DEVICE_KEY = "fp.device_id";
const tasks = new Map();   // task id -> task (from the hall or fetched)
const results = new Map(); // claim id -> last check-in outcome shown on its card
let lastClaims = [];       // shown again from memory while offline

function deviceId() {
  let id = localStorage.getItem(DEVICE_KEY);
  if (!id) { id = `web-${newKey()}`; localStorage.setItem(DEVICE_KEY, id); }
  return id;
}

function locate() {
  return new Promise((resolve, reject) => {
    if (!navigator.geolocation) return reject(new Error("This browser has no geolocation."));
    navigator.geolocation.getCurrentPosition(resolve, (e) => reject(new Error(e.message || "Location refused.")),
      { enableHighAccuracy: true, timeout: 20000, maximumAge: 0 });
  });
}

function num(v) { return typeof v === "number" && Number.isFinite(v) ? v : null; }

// The fix exactly as the browser reports it; the API converts crs and judges it.
function fixBody(pos) {
  const c = pos.coords;
  const heading = num(c.heading);
  return {
    lat: c.latitude, lon: c.longitude, crs: "wgs84", accuracy_m: c.accuracy,
    client_time: new Date(pos.timestamp || Date.now()).toISOString(), device_id: deviceId(),
    provider: "fused", platform: "browser", mock_location: null, altitude: num(c.altitude),
    speed: num(c.speed) !== null && c.speed >= 0 ? c.speed : null,
    bearing: heading !== null && heading >= 0 && heading <= 360 ? heading : null,
  };
}

// ---- earnings ----------------------------------------------------------------
async function loadWallet() {
  const w = await api("/v1/me/wallet");
  $("#earn-available").textContent = yuan(w.balances_fen.available || 0);
  $("#earn-withdrawing").textContent = yuan(w.balances_fen.withdrawing || 0);
  $("#credit").textContent = w.credit_score ?? "—";
  $("#credit-formula").textContent = w.credit_formula || "";
}

// ---- task hall ---------------------------------------------------------------
async function loadNearby() {
  $("#position").textContent = "Reading your location…";
  const pos = await locate();
  const { latitude: lat, longitude: lon, accuracy } = pos.coords;
  $("#position").textContent = `You are at ${lat.toFixed(5)}, ${lon.toFixed(5)} (±${Math.round(accuracy)} m).`;
  const found = await api(`/v1/tasks/nearby?lat=${lat}&lon=${lon}&crs=wgs84&radius_m=5000`);
  found.forEach((t) => tasks.set(t.id, t));
  $("#nearby").replaceChildren(...(found.length ? found.map(taskCard) : [el("p", { class: "muted" }, "No open tasks within 5 km.")]));
}

const ACTIVE = ["claimed", "checked_in", "submitted", "changes_requested"];

function taskCard(t) {
  const mine = lastClaims.find((c) => c.task_id === t.id && ACTIVE.includes(c.state));
  return el("div", { class: "item", dataset: { task: t.id } },
    el("div", { class: "row" },
      el("div", { class: "grow" },
        el("div", { class: "title" }, t.title),
        el("div", { class: "muted" }, `${t.type.replace("_", " ")} · ${Math.round(t.distance_m ?? 0)} m away · `
          + `${t.slots - t.slots_taken} of ${t.slots} slots · ${t.evidence.photos_min} photo(s)`)),
      el("div", { class: "stat" }, yuan(t.reward_fen))),
    mine ? el("span", { class: `badge ${mine.state}` }, `yours: ${mine.state.replace("_", " ")}`) : el("button", {
      class: "primary", type: "button", onclick: action(async () => {
        await post(`/v1/tasks/${t.id}/claims`);
        toast("Claimed. Go to the place and check in.", "ok");
        await loadClaims();
        await loadNearby();
      }),
    }, "Claim"));
}

// ---- claims ------------------------------------------------------------------
async function taskOf(id) {
  if (!tasks.has(id)) {
    try {
      tasks.set(id, await api(`/v1/tasks/${id}`));
    } catch (err) {
      if (!(err instanceof ApiError)) return { id, title: `Task #${id}` }; // offline: try again next time
      tasks.set(id, { id, title: `Task #${id}` }); // e.g. closed since: no longer visible to workers
    }
  }
  return tasks.get(id);
}

async function loadClaims() {
  try {
    lastClaims = await api("/v1/me/claims");
  } catch (err) {
    if (err instanceof ApiError) throw err; // offline: keep showing the last list
  }
  const cards = await Promise.all(lastClaims.map(async (c) => claimCard(c, await taskOf(c.task_id))));
  $("#claims").replaceChildren(...(cards.length ? cards : [el("p", { class: "muted" }, "No claims yet.")]));
  renderNet();
}

function claimCard(c, task) {
  const pending = queued().filter((q) => q.label?.claim_id === c.id);
  const card = el("div", { class: "item", dataset: { claim: c.id, state: c.state } },
    el("div", { class: "row" },
      el("div", { class: "grow" }, el("div", { class: "title" }, task.title),
        el("div", { class: "muted" }, `claim #${c.id} · claimed ${when(c.claimed_at)}`
          + (c.state === "claimed" ? ` · check in before ${when(c.expires_at)}` : ""))),
      el("span", { class: `badge ${c.state}` }, c.state.replace("_", " "))),
    c.flags.length ? el("div", { class: "reasons" }, "flags:", ...c.flags.map((f) => el("code", {}, f))) : null);
  if (pending.length) results.set(c.id, { queued: pending[0] });
  if (c.state === "claimed" && !pending.length) {
    card.append(el("button", { class: "primary checkin", type: "button", onclick: action(() => checkIn(c)) }, "Check in here"));
  }
  if (c.state === "checked_in" || c.state === "changes_requested") card.append(evidenceForm(c, task));
  const shown = results.get(c.id);
  if (shown) card.append(verdictBox(shown));
  card.append(el("button", { type: "button", class: "details", onclick: action(() => showFixes(c, card)) }, "Check-in details"));
  return card;
}

function verdictBox(r) {
  if (r.queued) {
    return el("div", { class: "verdict queued" }, el("strong", {}, "Queued offline"),
      el("div", { class: "muted" }, `Will be sent with key ${r.queued.key.slice(0, 8)}… when you are back online.`));
  }
  if (r.error) {
    return el("div", { class: "verdict error" }, el("strong", { class: "verdict-text" }, `Refused: ${r.error.code}`),
      el("div", {}, r.error.detail));
  }
  const v = r.result;
  return el("div", { class: `verdict ${v.verdict}` },
    el("strong", { class: "verdict-text" }, v.verdict),
    ` · ${v.distance_m} m from the fence · ±${Math.round(v.accuracy_95_m)} m · risk ${v.risk_score}/100`,
    v.reasons.length ? el("div", { class: "reasons" }, ...v.reasons.map((x) => el("code", {}, x))) : null,
    v.remark ? el("div", { class: "muted" }, v.remark) : null);
}

async function checkIn(c) {
  const pos = await locate();
  let outcome;
  try {
    outcome = await postOrQueue(`/v1/claims/${c.id}/checkins`, fixBody(pos), { claim_id: c.id, kind: "checkin" });
  } catch (err) {
    outcome = { error: err };
  }
  results.set(c.id, outcome);
  if (outcome.queued) toast("You are offline: the check-in is saved and will be sent automatically.");
  else if (outcome.error) toast(errorText(outcome.error), "error");
  else toast(`Check-in: ${outcome.result.verdict}`, outcome.result.verdict === "inside" ? "ok" : "info");
  await loadClaims();
}

async function showFixes(c, card) {
  const fixes = await api(`/v1/claims/${c.id}/checkins`);
  card.querySelector(".fixes")?.remove();
  card.append(el("div", { class: "fixes" }, ...(fixes.length ? fixes.map((f) => el("div", { class: "muted" },
    `${f.kind === "in" ? "check-in" : "check-out"} ${when(f.client_time)}: `, el("span", { class: `badge ${f.verdict}` }, f.verdict),
    ` ${f.distance_m} m, risk ${f.risk_score}`, f.reasons.length ? ` — ${f.reasons.join(", ")}` : "")) : ["No check-ins yet."])));
}

function evidenceForm(c, task) {
  const input = el("input", { type: "file", accept: "image/*", capture: "environment", multiple: true, class: "photo-input" });
  const status = el("div", { class: "muted" }, `Needs ${task.evidence?.photos_min ?? 1} photo(s).`);
  const thumbs = el("div", { class: "thumbs" });
  input.addEventListener("change", action(async () => {
    for (const file of input.files) {
      const form = new FormData();
      form.append("file", file, file.name || "photo.jpg");
      const ev = await api(`/v1/claims/${c.id}/evidence`, { method: "POST", form, key: newKey() });
      thumbs.append(el("img", { src: URL.createObjectURL(file), alt: `photo ${ev.id}` }));
      status.textContent = `Uploaded ${thumbs.children.length} photo(s).`;
    }
    input.value = "";
  }));
  const submit = el("button", {
    class: "primary submit", type: "button", onclick: action(async () => {
      const claim = await post(`/v1/claims/${c.id}/submit`);
      toast(`Submitted: ${claim.state}`, "ok");
      await loadClaims();
    }),
  }, "Submit for confirmation");
  return el("div", { class: "evidence" }, el("label", {}, "Take photos", input), thumbs, status, submit);
}

// ---- connectivity --------------------------------------------------------------
function renderNet() {
  const n = queued().length;
  const banner = $("#net");
  banner.hidden = navigator.onLine && n === 0;
  banner.className = navigator.onLine ? "banner" : "banner offline";
  banner.textContent = navigator.onLine ? `${n} check-in(s) waiting to be sent…` : `Offline. ${n} check-in(s) queued; `
    + "they will be sent with their original keys when you are back online.";
}

onQueueResult((r) => {
  const claimId = r.item.label?.claim_id;
  if (!r.queued && claimId) {
    results.set(claimId, r.error ? { error: r.error } : { result: r.result });
    toast(r.error ? `Queued check-in refused: ${errorText(r.error)}` : `Queued check-in sent: ${r.result.verdict}`,
      r.error ? "error" : "ok");
    loadClaims().catch(() => {});
  }
  renderNet();
});
window.addEventListener("online", renderNet);
window.addEventListener("offline", renderNet);

setupLogin("worker", () => {
  $("#nearby-refresh").addEventListener("click", action(loadNearby));
  $("#claims-refresh").addEventListener("click", action(loadClaims));
  $("#wallet-refresh").addEventListener("click", action(loadWallet));
  Promise.all([loadWallet(), loadClaims()]).catch((err) => toast(errorText(err), "error"));
  flushQueue();
  loadNearby().catch((err) => { $("#position").textContent = errorText(err); });
});
