// The in-app camera view of the worker page (issues 16, 17): a full-screen live preview with a shutter. Each photo
// gets a fresh capture nonce from the server, is stamped by camera.js and uploaded with its receipt, so the server
// can mark it capture-verified. Nothing is queued offline: a receipt needs the server's nonce, so without a
// network the view says so and keeps no photo.
import { ApiError, el, errorText, post } from "./common.js";
import { lang, t } from "./i18n.js";
import { CameraError, capture, openStream } from "./camera.js";
import { lastPosition, locate } from "./worker_geo.js";

const OFFLINE = "offline";
const NONCE_MARGIN_MS = 60_000; // a prefetched nonce this close to expiry is replaced rather than risked

// Plain words for a camera that cannot be opened, with what to do, and the gallery choice when the task allows it.
export function cameraProblem(err, allowGallery) {
  const key = err instanceof CameraError && err.code === "camera_refused" ? "cam.refused" : "cam.unavailable";
  return [t(key), t(allowGallery ? "cam.use_gallery" : "cam.camera_only")].join(lang() === "en" ? " " : "");
}

// The latest position the page has (the claim map's watch keeps it fresh), else one read; none is fine.
async function where() {
  const pos = lastPosition() || await locate().catch(() => null);
  return pos ? { lat: pos.coords.latitude, lon: pos.coords.longitude } : {};
}

function words(err) {
  if (err === OFFLINE || !(err instanceof ApiError || err instanceof CameraError)) return t("cam.offline");
  if (err instanceof CameraError) return t("cam.failed");
  return errorText(err);
}

function view(title) {
  const video = el("video", { class: "camera-preview", autoplay: true, playsinline: true, "aria-label": t("cam.preview") });
  video.muted = true;
  const status = el("p", { class: "camera-status", role: "status" }, t("cam.ready"));
  const strip = el("div", { class: "camera-strip" });
  const shutter = el("button", { type: "button", class: "shutter", "aria-label": t("cam.shutter") },
    el("span", { class: "shutter-ring", "aria-hidden": "true" }));
  const close = el("button", { type: "button", class: "camera-close" }, t("cam.cancel"));
  const root = el("div", { id: "camera", class: "camera-view", role: "dialog", "aria-modal": "true",
    "aria-labelledby": "camera-h" },
  el("h2", { id: "camera-h", class: "camera-title" }, title), video, status, strip,
  el("div", { class: "camera-bar" }, close, shutter, el("span", { class: "camera-spacer" })));
  return { root, video, status, strip, shutter, close };
}

function askNonce(cam) { return post(`/v1/claims/${cam.claimId}/capture-nonces`); }

// The next photo's nonce is asked for while the worker aims, so the shutter grabs the frame at the tap rather
// than a network round trip later. One nonce per photo; a failed or stale one is asked for again at the tap.
function prefetch(cam) { cam.next = navigator.onLine ? askNonce(cam).catch(() => null) : null; }

async function nonceFor(cam) {
  const ready = await cam.next;
  cam.next = null;
  if (ready && Date.parse(ready.capture_nonce_expires_at) - Date.now() > NONCE_MARGIN_MS) return ready;
  cam.status.textContent = t("cam.nonce");
  return askNonce(cam);
}

// One shot: position, its nonce, the frame with its receipt, the upload. Errors become words in the view.
async function shoot(cam) {
  cam.shutter.disabled = true;
  cam.status.classList.remove("error");
  try {
    if (!navigator.onLine) throw OFFLINE;
    const place = await where();
    const nonce = await nonceFor(cam);
    const { blob, receipt } = await capture({ nonce: nonce.capture_nonce, expiresAt: nonce.capture_nonce_expires_at,
      video: cam.video, ...place });
    cam.status.textContent = t("cam.uploading");
    const ev = await cam.upload(blob, receipt);
    cam.taken += 1;
    cam.close.textContent = t("cam.done");
    cam.strip.append(el("figure", { class: "photo", dataset: { evidence: ev.id } },
      el("img", { src: URL.createObjectURL(blob), alt: t("w.photo_alt", { n: cam.taken }), width: "64", height: "48" }),
      ev.capture_verified ? el("span", { class: "badge verified" }, t("cam.verified")) : null));
    cam.status.textContent = t(ev.capture_verified ? "cam.sent_verified" : "cam.sent", { n: cam.taken });
  } catch (err) {
    cam.status.textContent = words(err);
    cam.status.classList.add("error");
  } finally {
    prefetch(cam);
    cam.shutter.disabled = false;
  }
}

// Open the camera for a claim. `upload(blob, receipt)` sends one photo and returns its evidence. Resolves with the
// number of photos sent once the view is closed; rejects with a CameraError when the camera cannot be opened (the
// stream is opened before the view shows, so a refusal is told on the card, not over a black screen).
export async function openCamera({ claimId, title, upload }) {
  const stream = await openStream();
  const cam = { claimId, upload, taken: 0, ...view(title) };
  const behind = [...document.body.children];
  return new Promise((resolve) => {
    let closed = false;
    const finish = async () => {
      if (closed) return;
      closed = true;
      cam.close.disabled = true;
      await cam.busy; // a photo on its way is sent (and counted) before the view goes
      stream.getTracks().forEach((track) => track.stop());
      cam.root.remove();
      document.body.classList.remove("camera-open");
      behind.forEach((n) => { n.inert = false; });
      resolve(cam.taken);
    };
    // Listening before the preview plays: a tap that quick still takes its photo (grabFrame waits for a frame).
    cam.shutter.addEventListener("click", () => { cam.busy = shoot(cam); });
    cam.close.addEventListener("click", finish);
    cam.root.addEventListener("keydown", (ev) => { if (ev.key === "Escape") finish(); });
    behind.forEach((n) => { n.inert = true; });
    document.body.append(cam.root);
    document.body.classList.add("camera-open");
    prefetch(cam);
    cam.video.srcObject = stream;
    cam.video.play().catch(() => {}); // autoplay starts it too
    cam.shutter.focus();
  });
}
