// The photos box of a claim card: the in-app camera first (photos with a capture receipt, worker_camera.js), the
// gallery only when the task allows it, thumbnails with their checks ("已验证拍摄" for a verified capture), delete
// and retake, and submit.
import { action, api, el, imageUrl, newKey, post, toast } from "./common.js";
import { reason, t } from "./i18n.js";
import { receiptForm } from "./camera.js";
import { cameraProblem, openCamera } from "./worker_camera.js";

const thumbs = new Map(); // evidence id -> object URL of its thumbnail (fetched once)

// One photo (a File from the picker, or a Blob from the in-app camera with its capture receipt) onto the claim.
export async function uploadPhoto(claimId, blob, name = "photo.jpg", receipt = null) {
  const form = receiptForm(blob, receipt, name);
  const ev = await api(`/v1/claims/${claimId}/evidence`, { method: "POST", form, key: newKey() });
  if (blob instanceof Blob) thumbs.set(ev.id, URL.createObjectURL(blob));
  return ev;
}

function thumb(ev, n) {
  const img = el("img", { alt: t("w.photo_alt", { n }), width: "96", height: "72" });
  if (thumbs.has(ev.id)) img.src = thumbs.get(ev.id);
  else imageUrl(`/v1/evidence/${ev.id}/image?size=thumb`).then((url) => { thumbs.set(ev.id, url); img.src = url; })
    .catch(() => {});
  return img;
}

// The camera for this claim; `replacing` (an evidence id) is withdrawn once a new photo is in. A camera that
// cannot open is told in plain words on the card (with the gallery, when allowed, as the way on).
async function useCamera(c, task, box, reload, replacing = null) {
  const note = box.querySelector(".camera-note");
  note.hidden = true;
  let taken;
  try {
    taken = await openCamera({ claimId: c.id, title: t("cam.title", { task: task.title }),
      upload: (blob, receipt) => uploadPhoto(c.id, blob, "camera.jpg", receipt) });
  } catch (err) {
    note.textContent = cameraProblem(err, task.evidence?.allow_gallery !== false);
    note.hidden = false;
    return;
  }
  if (!taken) { box.querySelector("button.camera-open")?.focus(); return; }
  if (replacing) await post(`/v1/evidence/${replacing}/withdraw`);
  toast(t("cam.uploaded_toast", { n: taken }), "ok");
  await reload();
}

function gallery(c, status, reload) {
  const input = el("input", { type: "file", accept: "image/*", multiple: true, class: "photo-input visually-hidden" });
  input.addEventListener("change", action(async () => {
    const chosen = [...input.files];
    input.value = "";
    for (const [i, file] of chosen.entries()) {
      status.textContent = t("w.uploading", { n: i + 1 });
      await uploadPhoto(c.id, file, file.name || "photo.jpg");
    }
    toast(t("w.uploaded_toast"), "ok");
    await reload();
  }));
  return el("label", { class: "button photo-label" }, t("w.gallery"), input);
}

function figure(ev, n, editable, retake, reload) {
  return el("figure", { class: "photo", dataset: { evidence: ev.id } }, thumb(ev, n),
    ev.capture_verified ? el("span", { class: "badge verified" }, t("cam.verified")) : null,
    ev.reasons.length ? el("div", { class: "reasons" }, ...ev.reasons.map((r) => el("span", { class: "note", title: r }, reason(r)))) : null,
    editable ? el("div", { class: "row" },
      el("button", { type: "button", class: "danger delete", onclick: action(async () => {
        await post(`/v1/evidence/${ev.id}/withdraw`);
        toast(t("w.deleted_toast"), "ok");
        await reload();
      }) }, t("w.delete")),
      el("button", { type: "button", class: "retake", onclick: action(() => retake(ev.id)) }, t("w.retake"))) : null);
}

// The card's photos box; `reload` redraws the claims with this card in view.
export function photos(c, task, files, { editable, reload }) {
  const need = task.evidence?.photos_min ?? 1;
  const allowGallery = task.evidence?.allow_gallery !== false;
  const status = el("div", { class: "muted photo-status", role: "status" },
    editable ? t("w.photos_need", { have: files.length, need }) : t("w.photos_sent", { n: files.length }));
  const box = el("div", { class: "evidence" }, el("div", { class: "title" }, t("w.photos")));
  const retake = (id) => useCamera(c, task, box, reload, id);
  box.append(el("div", { class: "thumbs" }, ...files.map((ev, i) => figure(ev, i + 1, editable, retake, reload))), status);
  if (!editable) return box;
  const enough = files.length >= need; // the next step is the blue one: more photos, or submit
  box.append(el("div", { class: "row photo-actions" },
    el("button", { type: "button", class: `${enough ? "" : "primary "}camera-open`, onclick: action(() => useCamera(c, task, box, reload)) },
      t("cam.open")),
    allowGallery ? gallery(c, status, reload) : null,
    el("button", { class: enough ? "primary submit" : "submit", type: "button", onclick: action(async () => {
      await post(`/v1/claims/${c.id}/submit`);
      toast(t("w.submitted_toast"), "ok");
      await reload();
    }) }, t("w.submit"))),
  el("p", { class: "camera-note error-text", role: "alert", hidden: true }));
  if (!allowGallery) box.append(el("p", { class: "muted camera-only" }, t("cam.camera_only")));
  return box;
}
