// Ops queues: task review, spot checks (the submitted photo beside the original it matched, check-ins on a map
// against the fence), appeals, and user search with freezing.
import { $, action, api, el, imageUrl, percent, post, toast, when, yuan } from "./common.js";
import { addStrings, reason, t } from "./i18n.js";
import { createMap, fenceLayer, toDisplay } from "./map.js";

const SPOT_SHOWN = 10;
const DUPLICATE = new Set(["duplicate_evidence", "exact_duplicate_evidence"]); // cards with a map and photos each: the oldest ten are plenty to work through

addStrings({
  zh: {
    "ops.reviews": "待审核任务", "ops.spot": "抽查", "ops.appeals": "申诉", "ops.users": "查找并冻结用户",
    "ops.refresh_spot": "刷新抽查", "ops.refresh_reviews": "刷新待审核任务", "ops.refresh_appeals": "刷新申诉",
    "ops.refresh_stats": "刷新区域统计", "ops.user_q": "用户名或昵称", "ops.search": "搜索",
    "ops.reason": "理由", "ops.reason_required": "决定理由（必填）", "ops.approve": "通过", "ops.reject": "驳回",
    "ops.pass": "抽查通过", "ops.fail": "抽查不通过", "ops.overturn": "改判通过", "ops.deny": "维持原判",
    "ops.freeze": "冻结", "ops.unfreeze": "解冻", "ops.freeze_reason": "冻结原因",
    "ops.no_reviews": "没有待审核的任务。", "ops.no_spot": "没有待处理的抽查。", "ops.no_appeals": "没有待处理的申诉。",
    "ops.no_users": "没有找到匹配的用户。", "ops.spot_count": "共 {n} 条", "ops.spot_more": "共 {n} 条，先显示最需处理的 {shown} 条",
    "ops.task_line": "商家 #{merchant} · {type} · {reward} × {slots} 个名额 · {fence} · {from} – {to}",
    "ops.circle": "半径 {r} 米的圆形围栏", "ops.polygon": "多边形围栏",
    "ops.spot_title": "认领 #{claim} · {stratum} · 抽中概率 {p}",
    "ops.spot_who": "地推人员 #{worker} · 风险分 {risk} · 标记：{flags}", "ops.none": "无",
    "ops.fix": "{kind} · 距围栏 {d} 米", "ops.fix_in": "签到", "ops.fix_out": "签退",
    "ops.submitted_photo": "提交的照片 #{id}", "ops.original_photo": "匹配的原图 #{id}（相似度距离 {d}）",
    "ops.photo_alt": "认领 #{claim} 提交的照片", "ops.original_alt": "与之重复的较早照片 #{id}",
    "ops.no_photos": "没有照片。", "ops.map_of": "认领 #{claim} 的签到位置与围栏",
    "stratum.flagged": "有硬性风险标记", "stratum.unchecked": "照片查重未完成", "stratum.high_risk": "高风险", "stratum.low_risk": "低风险", "stratum.clean": "无风险",
    "verdict.inside": "围栏内", "verdict.uncertain": "不确定", "verdict.outside": "围栏外",
    "ops.appeal_title": "{kind} #{id} · 认领 #{claim} · 地推人员 #{worker}", "ops.appeal_from": "原状态 {state} · {at}",
    "kind.appeal": "申诉", "kind.complaint": "投诉", "ops.write_reason": "请先填写理由。",
    "ops.task_done": "任务 #{id}：{d}", "ops.spot_done": "抽查 #{id}：{v}", "ops.appeal_done": "申诉 #{id}：{d}",
    "ops.user_line": "#{id} · {role} · 注册于 {at}", "ops.frozen": "已冻结", "ops.active": "正常",
    "ops.user_done": "{name} 现在{state}", "ops.loading": "正在加载…",
  },
  en: {
    "ops.reviews": "Tasks to review", "ops.spot": "Spot checks", "ops.appeals": "Appeals", "ops.users": "Find and freeze users",
    "ops.refresh_spot": "Refresh spot checks", "ops.refresh_reviews": "Refresh tasks to review",
    "ops.refresh_appeals": "Refresh appeals", "ops.refresh_stats": "Refresh region stats",
    "ops.user_q": "Username or display name", "ops.search": "Search",
    "ops.reason": "Reason", "ops.reason_required": "Decision reason (required)", "ops.approve": "Approve",
    "ops.reject": "Reject", "ops.pass": "Pass", "ops.fail": "Fail", "ops.overturn": "Overturn", "ops.deny": "Deny",
    "ops.freeze": "Freeze", "ops.unfreeze": "Unfreeze", "ops.freeze_reason": "Reason for freezing",
    "ops.no_reviews": "No tasks waiting.", "ops.no_spot": "No open spot checks.", "ops.no_appeals": "No open appeals.",
    "ops.no_users": "No matching users.", "ops.spot_count": "{n} open", "ops.spot_more": "{n} open; the {shown} most pressing shown",
    "ops.task_line": "merchant #{merchant} · {type} · {reward} × {slots} slots · {fence} · {from} – {to}",
    "ops.circle": "circle of {r} m", "ops.polygon": "polygon",
    "ops.spot_title": "Claim #{claim} · {stratum} · sampled with p = {p}",
    "ops.spot_who": "worker #{worker} · risk {risk} · flags: {flags}", "ops.none": "none",
    "ops.fix": "{kind} · {d} m from the fence", "ops.fix_in": "check-in", "ops.fix_out": "check-out",
    "ops.submitted_photo": "Submitted photo #{id}", "ops.original_photo": "Matched original #{id} (distance {d})",
    "ops.photo_alt": "Photo submitted for claim #{claim}", "ops.original_alt": "Earlier photo #{id} it duplicates",
    "ops.no_photos": "No photos.", "ops.map_of": "Check-ins of claim #{claim} and the fence",
    "stratum.flagged": "hard flag", "stratum.unchecked": "photo check not finished", "stratum.high_risk": "high risk", "stratum.low_risk": "low risk", "stratum.clean": "clean",
    "verdict.inside": "inside", "verdict.uncertain": "uncertain", "verdict.outside": "outside",
    "ops.appeal_title": "{kind} #{id} · claim #{claim} · worker #{worker}", "ops.appeal_from": "from {state} · {at}",
    "kind.appeal": "Appeal", "kind.complaint": "Complaint", "ops.write_reason": "Write a reason first.",
    "ops.task_done": "Task #{id}: {d}", "ops.spot_done": "Spot check #{id}: {v}", "ops.appeal_done": "Appeal #{id}: {d}",
    "ops.user_line": "#{id} · {role} · since {at}", "ops.frozen": "frozen", "ops.active": "active",
    "ops.user_done": "{name} is now {state}", "ops.loading": "Loading…",
  },
});

export const loaders = {};

function decide(label, cls, fn, input) {
  return el("button", { type: "button", class: cls, onclick: action(async () => { await fn(input?.value.trim() || ""); }) }, label);
}

function reasonInput(key = "ops.reason") {
  return el("input", { placeholder: t(key), "aria-label": t(key), class: "grow", maxlength: 500 });
}

const flagWords = (codes) => (codes?.length ? codes.map((c) => reason(c)).join("、") : t("ops.none"));

// ---- task review ---------------------------------------------------------------------------------------------
loaders.reviews = async function loadReviews() {
  const list = await api("/v1/tasks/review-queue");
  const items = list.map((task) => {
    const why = reasonInput();
    const mapBox = el("div", { class: "map small", "aria-label": task.title });
    createMap(mapBox, [task.center[1], task.center[0]], 15).then((ctx) => {
      if (ctx) ctx.map.fitBounds(fenceLayer(ctx.L, task).addTo(ctx.map).getBounds().pad(0.3));
    });
    const done = (d) => async (r) => {
      await post(`/v1/tasks/${task.id}/review`, { decision: d, reason: r });
      toast(t("ops.task_done", { id: task.id, d: t(`ops.${d}`) }), "ok");
      await loaders.reviews();
    };
    return el("div", { class: "item", dataset: { task: task.id } },
      el("div", { class: "title" }, `#${task.id} ${task.title}`),
      el("div", { class: "muted" }, t("ops.task_line", { merchant: task.merchant_id, type: t(`type.${task.type}`),
        reward: yuan(task.reward_fen), slots: task.slots, from: when(task.starts_at), to: when(task.ends_at),
        fence: task.radius_m ? t("ops.circle", { r: task.radius_m }) : t("ops.polygon") })),
      task.description ? el("p", {}, task.description) : null, mapBox,
      el("div", { class: "row" }, decide(t("ops.approve"), "primary", done("approve"), why), why,
        decide(t("ops.reject"), "danger", done("reject"), why)));
  });
  $("#reviews").replaceChildren(...(items.length ? items : [el("p", { class: "muted" }, t("ops.no_reviews"))]));
};

// ---- spot checks ---------------------------------------------------------------------------------------------
async function photo(path, alt, cls) {
  const src = await imageUrl(path).catch(() => null);
  return src ? el("img", { src, alt, class: cls }) : el("span", { class: "muted" }, alt);
}

// Each file, and beside it the earlier file it duplicates (if the duplicate finder matched one).
async function evidenceBlock(s) {
  const blocks = [];
  for (const ev of s.evidence || []) {
    const mine = await photo(`/v1/evidence/${ev.id}/image?size=thumb`, t("ops.photo_alt", { claim: s.claim_id }), "submitted");
    const reasons = (ev.reasons || []).map((c) => el("span", { class: "badge" }, reason(c)));
    if (!ev.matches?.length) { blocks.push(el("figure", { class: "photo" }, mine, el("figcaption", {}, t("ops.submitted_photo", { id: ev.id }), ...reasons))); continue; }
    for (const m of ev.matches) {
      const other = await photo(`/v1/evidence/${ev.id}/matches/${m.matched_evidence_id}/image?size=thumb`,
        t("ops.original_alt", { id: m.matched_evidence_id }), "original");
      blocks.push(el("div", { class: "pair", dataset: { match: m.matched_evidence_id } },
        el("figure", {}, mine.cloneNode(), el("figcaption", {}, t("ops.submitted_photo", { id: ev.id }), ...reasons)),
        el("figure", {}, other, el("figcaption", {}, t("ops.original_photo", { id: m.matched_evidence_id, d: m.distance })))));
    }
  }
  return blocks.length ? el("div", { class: "photos" }, ...blocks) : el("p", { class: "muted" }, t("ops.no_photos"));
}

const pendingMaps = [];

// The fence and every check-in/out point of the claim.
function spotMap(s) {
  const box = el("div", { class: "map small spot-map", "aria-label": t("ops.map_of", { claim: s.claim_id }) });
  const first = s.checkins?.[0];
  if (!first || !s.claim) return box;
  // Drawn once the card is in the page: Leaflet measures its box, and a detached one has no size.
  pendingMaps.push(() => Promise.all([createMap(box, [first.lat, first.lon], 17),
    api(`/v1/tasks/${s.claim.task_id}`).catch(() => null)])
    .then(([ctx, task]) => {
      if (!ctx) return;
      const { L, map } = ctx;
      const shapes = task ? [fenceLayer(L, task).addTo(map)] : [];
      for (const f of s.checkins) {
        shapes.push(L.circleMarker(toDisplay(f.lat, f.lon), { radius: 6, weight: 2, color: f.kind === "in" ? "#15803d" : "#7c3aed",
          fillOpacity: 0.8 }).bindTooltip(t("ops.fix", { kind: t(`ops.fix_${f.kind}`), d: Math.round(f.distance_m) })).addTo(map));
      }
      map.fitBounds(L.featureGroup(shapes).getBounds().pad(0.4), { maxZoom: 18 });
    }));
  return box;
}

async function spotCard(s) {
  const why = reasonInput();
  const verdict = (v) => async (r) => {
    await post(`/v1/spot-checks/${s.id}/verdict`, { verdict: v, reason: r });
    toast(t("ops.spot_done", { id: s.id, v: t(`ops.${v}`) }), "ok");
    await loaders.spot();
  };
  const fixes = (s.checkins || []).map((f) => el("div", { class: "muted" },
    el("span", { class: `badge ${f.verdict}` }, t(`verdict.${f.verdict}`)), " ",
    t("ops.fix", { kind: t(`ops.fix_${f.kind}`), d: Math.round(f.distance_m) }),
    (f.reasons || []).length ? ` · ${flagWords(f.reasons)}` : ""));
  return el("div", { class: "item spot", dataset: { spot: s.id } },
    el("div", { class: "title" }, t("ops.spot_title", { claim: s.claim_id, stratum: t(`stratum.${s.stratum}`), p: percent(s.probability) })),
    el("div", { class: "muted" }, t("ops.spot_who", { worker: s.claim?.worker_id, risk: s.claim?.risk_score, flags: flagWords(s.claim?.flags) })),
    el("div", { class: "spot-body" }, el("div", { class: "spot-side" }, await evidenceBlock(s), ...fixes), spotMap(s)),
    el("div", { class: "row" }, decide(t("ops.pass"), "primary", verdict("pass"), why), why, decide(t("ops.fail"), "danger", verdict("fail"), why)));
}

loaders.spot = async function loadSpotChecks() {
  if (!$("#spot [data-spot]")) $("#spot").replaceChildren(el("p", { class: "muted" }, t("ops.loading")));
  const list = await api("/v1/spot-checks?limit=200");
  // Photo duplicates first (judged at a glance, side by side), then the riskiest, then the oldest.
  const dup = (s) => ((s.claim?.flags || []).some((f) => DUPLICATE.has(f)) ? 0 : 1);
  list.sort((a, b) => dup(a) - dup(b) || (b.claim?.risk_score ?? 0) - (a.claim?.risk_score ?? 0) || a.id - b.id);
  const items = [];
  for (const s of list.slice(0, SPOT_SHOWN)) items.push(await spotCard(s));
  $("#spot-count").textContent = list.length > SPOT_SHOWN ? t("ops.spot_more", { n: list.length, shown: SPOT_SHOWN })
    : list.length ? t("ops.spot_count", { n: list.length }) : "";
  $("#spot").replaceChildren(...(items.length ? items : [el("p", { class: "muted" }, t("ops.no_spot"))]));
  await Promise.all(pendingMaps.splice(0).map((draw) => draw()));
};

// ---- appeals -------------------------------------------------------------------------------------------------
loaders.appeals = async function loadAppeals() {
  const list = await api("/v1/appeals");
  const items = list.map((a) => {
    const why = reasonInput("ops.reason_required");
    const done = (d) => async (r) => {
      if (!r) return toast(t("ops.write_reason"), "error");
      await post(`/v1/appeals/${a.id}/decision`, { decision: d, reason: r });
      toast(t("ops.appeal_done", { id: a.id, d: t(`ops.${d}`) }), "ok");
      await loaders.appeals();
    };
    return el("div", { class: "item", dataset: { appeal: a.id } },
      el("div", { class: "title" }, t("ops.appeal_title", { kind: t(`kind.${a.kind}`), id: a.id, claim: a.claim_id, worker: a.worker_id })),
      el("div", { class: "muted" }, t("ops.appeal_from", { state: a.from_state, at: when(a.created_at) })), el("p", {}, a.reason),
      el("div", { class: "row" }, decide(t("ops.overturn"), "primary", done("overturn"), why), why, decide(t("ops.deny"), "danger", done("deny"), why)));
  });
  $("#appeals").replaceChildren(...(items.length ? items : [el("p", { class: "muted" }, t("ops.no_appeals"))]));
};

// ---- users ---------------------------------------------------------------------------------------------------
function userItem(u) {
  const why = reasonInput("ops.freeze_reason");
  const set = (frozen) => async (r) => {
    if (frozen && !r) return toast(t("ops.write_reason"), "error");
    const after = await post(`/v1/users/${u.id}/freeze`, { reason: r || "unfreeze", frozen });
    toast(t("ops.user_done", { name: after.display_name || after.username, state: t(after.frozen ? "ops.frozen" : "ops.active") }), "ok");
    await searchUsers();
  };
  return el("div", { class: "item", dataset: { user: u.id, frozen: u.frozen } },
    el("div", { class: "title" }, `${u.display_name || u.username} `, el("span", { class: "muted" }, u.username), " ",
      el("span", { class: `badge ${u.frozen ? "frozen" : "active"}` }, t(u.frozen ? "ops.frozen" : "ops.active"))),
    el("div", { class: "muted" }, t("ops.user_line", { id: u.id, role: t(`role.${u.role}`), at: when(u.created_at) })),
    el("div", { class: "row" }, why, u.frozen ? decide(t("ops.unfreeze"), "", set(false), why)
      : decide(t("ops.freeze"), "danger", set(true), why)));
}

async function searchUsers(ev) {
  ev?.preventDefault();
  const q = $("#user-q").value.trim();
  if (!q) return;
  const list = await api(`/v1/users?${new URLSearchParams({ q })}`);
  $("#users").replaceChildren(...(list.length ? list.map(userItem) : [el("p", { class: "muted" }, t("ops.no_users"))]));
}

export function setupQueues() {
  $("#user-search").addEventListener("submit", action(searchUsers));
  document.querySelectorAll("[data-reload]").forEach((b) => b.addEventListener("click", action(() => loaders[b.dataset.reload]())));
}
