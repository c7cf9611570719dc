// Merchant console, submission queue: filters by task and state, bulk confirm through a confirmation dialog,
// reject / request changes / complain with a reason, a photo viewer, worker profiles, duplicates, ratings.
import { $, action, api, el, errorText, imageUrl, post, toast, when } from "./common.js";
import { reason, t } from "./i18n.js";
import { createMap, fenceLayer, toDisplay } from "./map.js";

let tasks = [];
let onChanged = async () => {};
const profiles = new Map(); // worker id -> promise of the profile (one request per worker per page load)
const picked = new Map();   // claim id -> claim, for bulk confirm

export function showTasks(list) {
  tasks = list;
  const sel = $("#queue-task");
  const keep = sel.value;
  sel.replaceChildren(el("option", { value: "" }, t("m.all_tasks")),
    ...list.map((x) => el("option", { value: String(x.id) }, `#${x.id} ${x.title}`)));
  sel.value = list.some((x) => String(x.id) === keep) ? keep : "";
}

// Tasks that can have claims (a draft or one in review has none).
function queueTasks() {
  const id = $("#queue-task").value;
  if (id) return tasks.filter((x) => String(x.id) === id);
  return tasks.filter((x) => !["draft", "pending_review", "rejected"].includes(x.state));
}

export async function loadQueue() {
  const state = $("#queue-state").value;
  const lists = await Promise.all(queueTasks().map(async (task) =>
    (await api(`/v1/tasks/${task.id}/submissions?state=${state}`)).map((c) => [c, task])));
  const cards = lists.flat().map(([c, task]) => submissionCard(c, task));
  picked.clear();
  updateBulk();
  $("#select-all").checked = false;
  $("#queue").classList.remove("muted");
  $("#queue").replaceChildren(...(cards.length ? cards : [el("p", { class: "muted" }, t("m.nothing_here"))]));
}

function updateBulk() {
  const btn = $("#bulk-confirm");
  btn.disabled = picked.size === 0;
  btn.textContent = t("m.bulk_confirm_n", { n: picked.size });
}

// ---- a submission --------------------------------------------------------------------
function submissionCard(c, task) {
  const mapBox = el("div", { class: "map small" });
  const evBox = el("div", {});
  const who = el("div", { class: "worker-profile muted" }, t("m.loading"));
  const pick = c.state === "submitted" ? el("input", { type: "checkbox", class: "pick",
    "aria-label": t("m.pick_aria", { id: c.id }), onchange: (e) => {
      if (e.target.checked) picked.set(c.id, { c, task }); else picked.delete(c.id);
      updateBulk();
    } }) : null;
  const card = el("div", { class: "item submission", dataset: { claim: c.id, state: c.state } },
    el("div", { class: "row" }, pick,
      el("div", { class: "grow" }, el("div", { class: "title" }, t("m.sub_title", { id: c.id, task: task.id, title: task.title })),
        who, el("div", { class: "muted" }, t("m.sub_meta", { when: when(c.submitted_at), risk: c.risk_score })
          + (c.dwell_s == null ? "" : ` · ${t("m.dwell", { n: Math.round(c.dwell_s / 60) })}`))),
      el("span", { class: `badge ${c.state}` }, t(`state.${c.state}`))),
    c.flags.length ? el("div", { class: "reasons" }, t("m.flags"), ...c.flags.map((f) => el("span", { class: "badge flag", title: f }, reason(f)))) : null,
    evBox, mapBox, decisionControls(c, task));
  fillProfile(c.worker_id, who).catch((err) => { who.textContent = errorText(err); });
  fillEvidence(c, evBox).catch((err) => evBox.append(el("div", { class: "error-text" }, errorText(err))));
  fillFixes(c, task, mapBox).catch((err) => mapBox.append(errorText(err)));
  return card;
}

async function fillProfile(workerId, box) {
  if (!profiles.has(workerId)) profiles.set(workerId, api(`/v1/workers/${workerId}`));
  const p = await profiles.get(workerId);
  const by = p.claims_by_state || {};
  const done = (by.paid || 0) + (by.accepted || 0), total = Object.values(by).reduce((a, b) => a + b, 0);
  box.replaceChildren(el("strong", {}, p.display_name || t("m.unnamed_worker")), " · ",
    t("m.profile", { credit: p.credit_score, done, rejected: by.rejected || 0, total }), " · ",
    p.ratings ? t("m.profile_rating", { avg: p.rating_avg.toFixed(1), n: p.ratings }) : t("m.profile_unrated"));
}

function duplicateNote(m) {
  const where = m.own ? t("m.dup_own", { claim: m.claim_id, task: m.task_id, title: m.task_title })
    : t("m.dup_other");
  // A same-scene match is another exposure of the place (a note, no penalty), not a re-used photo.
  const title = m.verdict === "same_scene" ? t("m.scene_title") : t("m.dup_title");
  return el("div", {}, el("strong", {}, title), el("div", { class: "muted dup-where" }, where),
    el("div", { class: "muted" }, t("m.dup_method", { distance: m.distance })));
}

async function fillEvidence(c, box) {
  const files = await api(`/v1/claims/${c.id}/evidence`);
  const images = files.filter((f) => f.kind === "image");
  const thumbs = el("div", { class: "thumbs" });
  box.append(thumbs);
  for (const ev of files) {
    if (ev.kind !== "image") { thumbs.append(el("span", { class: "badge" }, t("m.video_n", { id: ev.id }))); continue; }
    const i = images.indexOf(ev);
    const note = ev.reasons.map(reason).join("；");
    thumbs.append(el("button", { type: "button", class: "thumb", "aria-label": t("m.open_photo", { n: i + 1, id: c.id }),
      title: note, onclick: () => openViewer(c, images, i) },
    el("img", { src: await imageUrl(`/v1/evidence/${ev.id}/image?size=thumb`), alt: "" })));
    for (const m of ev.matches) {
      const other = await imageUrl(`/v1/evidence/${ev.id}/matches/${m.matched_evidence_id}/image?size=thumb`).catch(() => null);
      box.append(el("div", { class: m.verdict === "same_scene" ? "pair scene" : "pair duplicate" },
        el("img", { src: await imageUrl(`/v1/evidence/${ev.id}/image?size=thumb`), alt: t("m.this_photo") }),
        other ? el("img", { src: other, alt: t("m.dup_photo") }) : el("span", {}, t("m.no_preview")), duplicateNote(m)));
    }
  }
  if (!files.length) thumbs.append(el("span", { class: "muted" }, t("m.no_files")));
}

async function fillFixes(c, task, box) {
  const fixes = await api(`/v1/claims/${c.id}/checkins`);
  const text = fixes.map((f) => t("m.fix", { kind: t(`fix.${f.kind}`), verdict: t(`verdict.${f.verdict}`), d: f.distance_m })
    + (f.reasons.length ? `（${f.reasons.map(reason).join("；")}）` : ""));
  box.after(el("div", { class: "muted fixes", dataset: { verdicts: fixes.map((f) => f.verdict).join(" ") } },
    text.join(" · ") || t("m.no_fixes")));
  const ctx = await createMap(box, [task.center[1], task.center[0]], 16);
  if (!ctx) return;
  const { L, map } = ctx;
  const fence = fenceLayer(L, task).addTo(map);
  const colors = { inside: "#16a34a", uncertain: "#d97706", outside: "#dc2626" };
  const pts = fixes.map((f) => L.circleMarker(toDisplay(f.lat, f.lon), { radius: 7, color: colors[f.verdict], fillOpacity: 0.8 })
    .bindTooltip(t("m.fix", { kind: t(`fix.${f.kind}`), verdict: t(`verdict.${f.verdict}`), d: f.distance_m })).addTo(map));
  map.fitBounds(L.featureGroup([fence, ...pts]).getBounds().pad(0.3));
}

// ---- decisions -------------------------------------------------------------------------
function stars(n) { return "★".repeat(n) + "☆".repeat(5 - n); }

function ratingControls(c) {
  if (c.rating) {
    return el("div", { class: "rating-given" }, t("m.my_rating"), " ",
      el("span", { class: "stars", "aria-label": t("m.stars_n", { n: c.rating.stars }) }, stars(c.rating.stars)),
      c.rating.comment ? ` · ${c.rating.comment}` : "");
  }
  const sel = el("select", { class: "stars-pick" }, ...[5, 4, 3, 2, 1].map((n) => el("option", { value: n }, `${stars(n)} ${n}`)));
  const note = el("input", { class: "grow rating-comment", maxlength: 500 });
  return el("div", { class: "row decisions" },
    el("label", {}, t("m.rating"), sel), el("label", { class: "grow" }, t("m.rating_comment"), note),
    el("button", { type: "button", class: "rate", onclick: action(async () => {
      await post(`/v1/submissions/${c.id}/rating`, { stars: Number(sel.value), comment: note.value.trim() });
      toast(t("m.rated", { id: c.id }), "ok");
      await loadQueue();
    }) }, t("m.rate")));
}

function decisionControls(c, task) {
  const one = [{ c, task }];
  const btn = (cls, key, verb) => el("button", { type: "button", class: cls, onclick: action(() => decide(verb, one)) }, t(key));
  const complain = btn("complain", "m.complain", "complain");
  if (c.state === "submitted") {
    return el("div", { class: "row decisions" }, btn("primary confirm", "m.confirm", "confirm"),
      btn("danger reject", "m.reject", "reject"), btn("changes", "m.request_changes", "changes"), complain);
  }
  if (c.state === "accepted" || c.state === "paid") return el("div", { class: "stack" }, ratingControls(c), el("div", { class: "row" }, complain));
  return el("div", { class: "row decisions" }, complain);
}

const VERBS = {
  confirm: { path: "confirm", reason: false, code: false },
  reject: { path: "reject", reason: true, code: true },
  changes: { path: "request-changes", reason: true, code: false },
  complain: { path: "complaints", reason: true, code: false },
};

// The dialog asks before anything is sent: it lists what will happen; reject, changes and complaints need a reason.
function ask(verb, items) {
  const dlg = $("#decide"), form = dlg.querySelector("form"), spec = VERBS[verb];
  $("#decide-h").textContent = t(`m.dlg_${verb}_title`, { n: items.length });
  $("#decide-intro").textContent = t(`m.dlg_${verb}_intro`);
  $("#decide-list").replaceChildren(...items.map(({ c, task }) => el("li", {}, t("m.sub_title", { id: c.id, task: task.id, title: task.title }))));
  $("#decide-reason").hidden = !spec.reason;
  form.code.closest("label").hidden = !spec.code;
  form.reason.value = "";
  form.reason.setAttribute("aria-required", String(spec.reason));
  form.reason.oninput = () => { $("#decide-error").textContent = ""; };
  $("#decide-error").textContent = "";
  $("#decide-ok").textContent = t(`m.dlg_${verb}_ok`, { n: items.length });
  $("#decide-ok").className = verb === "confirm" ? "primary" : "danger";
  return new Promise((resolve) => {
    form.onsubmit = (e) => {
      e.preventDefault();
      if (e.submitter?.value !== "ok") { dlg.close(); return resolve(null); }
      if (spec.reason && !form.reason.value.trim()) { $("#decide-error").textContent = t("m.err_reason"); return form.reason.focus(); }
      dlg.close();
      resolve({ reason_code: form.code.value, reason: form.reason.value.trim() });
    };
    dlg.oncancel = () => resolve(null);
    dlg.showModal();
  });
}

export async function confirmDialog(title, intro) {
  const dlg = $("#decide"), form = dlg.querySelector("form");
  $("#decide-h").textContent = title;
  $("#decide-intro").textContent = intro;
  $("#decide-list").replaceChildren();
  $("#decide-reason").hidden = true;
  $("#decide-error").textContent = "";
  $("#decide-ok").textContent = t("m.ok");
  $("#decide-ok").className = "danger";
  return new Promise((resolve) => {
    form.onsubmit = (e) => { e.preventDefault(); dlg.close(); resolve(e.submitter?.value === "ok"); };
    dlg.oncancel = () => resolve(false);
    dlg.showModal();
  });
}

function bodyFor(verb, answer) {
  if (verb === "reject") return answer;
  if (verb === "confirm") return undefined;
  return { reason: answer.reason };
}

async function decide(verb, items) {
  const answer = await ask(verb, items);
  if (!answer) return;
  const spec = VERBS[verb];
  let ok = 0;
  for (const { c } of items) {
    const path = verb === "complain" ? `/v1/claims/${c.id}/complaints` : `/v1/submissions/${c.id}/${spec.path}`;
    try { await post(path, bodyFor(verb, answer)); ok += 1; } catch (err) { toast(`#${c.id}: ${errorText(err)}`, "error"); }
  }
  profiles.clear(); // their track records just changed
  if (ok) toast(t(`m.done_${verb}`, { n: ok }), "ok");
  await Promise.all([loadQueue(), onChanged()]);
}

// ---- photo viewer -------------------------------------------------------------------------
const viewer = { claim: null, images: [], i: 0 };

async function showPhoto() {
  const { claim, images, i } = viewer;
  const ev = images[i];
  $("#viewer-h").textContent = t("m.viewer_title", { n: i + 1, total: images.length, id: claim.id });
  $("#viewer-note").textContent = ev.reasons.map(reason).join("；") || t("m.photo_clean");
  const img = $("#viewer-img");
  img.alt = t("m.viewer_alt", { n: i + 1, id: claim.id });
  img.src = await imageUrl(`/v1/evidence/${ev.id}/image?size=large`);
  $("#viewer-prev").disabled = $("#viewer-next").disabled = images.length < 2;
}

function step(d) { viewer.i = (viewer.i + d + viewer.images.length) % viewer.images.length; showPhoto().catch((e) => toast(errorText(e), "error")); }

function openViewer(claim, images, i) {
  Object.assign(viewer, { claim, images, i });
  $("#viewer").showModal();
  showPhoto().catch((e) => toast(errorText(e), "error"));
}

export function setupQueue(changed) {
  onChanged = changed;
  $("#queue-state").addEventListener("change", action(loadQueue));
  $("#queue-task").addEventListener("change", action(loadQueue));
  $("#queue-refresh").addEventListener("click", action(loadQueue));
  $("#select-all").addEventListener("change", (e) => {
    document.querySelectorAll("#queue input.pick").forEach((box) => {
      if (box.checked !== e.target.checked) box.click();
    });
  });
  $("#bulk-confirm").addEventListener("click", action(() => decide("confirm", [...picked.values()])));
  $("#viewer-prev").addEventListener("click", () => step(-1));
  $("#viewer-next").addEventListener("click", () => step(1));
  $("#viewer-close").addEventListener("click", () => $("#viewer").close());
  $("#viewer").addEventListener("keydown", (e) => {
    if (e.key === "ArrowLeft") step(-1);
    if (e.key === "ArrowRight") step(1);
  });
}
