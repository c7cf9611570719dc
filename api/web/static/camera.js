// In-app camera for capture receipts (issue 17): take a photo from the live camera (never the gallery), stamp
// the server's capture nonce, the time and the place visibly on it, and return it with the receipt the upload
// sends as the multipart field `capture_receipt`. The stamp lets a reviewer read the nonce off the picture; the
// server verifies the nonce itself (issued to this claim, unexpired, used once).
//
//   import { capture, receiptForm } from "./camera.js";
//   const { blob, receipt } = await capture({ nonce, expiresAt, lat, lon });
//   await fetch(`/v1/claims/${id}/evidence`, { method: "POST", body: receiptForm(blob, receipt), headers });

const JPEG_QUALITY = 0.9;
const MAX_SIDE = 2048; // enough to read a shelf; keeps uploads around 0.5-1 MB

export class CameraError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

function waitFor(target, event) {
  return new Promise((resolve, reject) => {
    target.addEventListener(event, resolve, { once: true });
    target.addEventListener("error", () => reject(new CameraError("camera_failed", "The camera stream failed.")),
      { once: true });
  });
}

// The rear camera's stream (a viewfinder <video> can show it); CameraError camera_refused / camera_unavailable.
export async function openStream() {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new CameraError("camera_unavailable", "This browser cannot open the camera.");
  }
  try {
    return await navigator.mediaDevices.getUserMedia({
      video: { facingMode: { ideal: "environment" }, width: { ideal: 1920 }, height: { ideal: 1080 } }, audio: false,
    });
  } catch (e) {
    throw new CameraError(e?.name === "NotAllowedError" ? "camera_refused" : "camera_unavailable",
      e?.message || "The camera could not be opened.");
  }
}

// One frame of a playing <video> on a canvas, scaled so its longer side is at most MAX_SIDE.
async function grabFrame(video) {
  if (video.readyState < 2) await waitFor(video, "loadeddata");
  const scale = Math.min(1, MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  return canvas;
}

function pad(n) { return String(n).padStart(2, "0"); }

// Local wall-clock time with its UTC offset, as a person reads it on the photo.
export function localStamp(d) {
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? "+" : "-";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:`
    + `${pad(d.getSeconds())} UTC${sign}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
}

// The band along the bottom: nonce, time, place. Dark translucent background so it reads on any scene.
export function stamp(canvas, { nonce, at, lat, lon }) {
  const ctx = canvas.getContext("2d");
  const size = Math.max(12, Math.round(canvas.width / 40));
  const lines = [
    `#${nonce}`,
    localStamp(at),
    Number.isFinite(lat) && Number.isFinite(lon) ? `${lat.toFixed(6)}, ${lon.toFixed(6)}` : "",
  ].filter(Boolean);
  const lineH = Math.round(size * 1.35);
  const band = lineH * lines.length + size;
  ctx.fillStyle = "rgba(0, 0, 0, 0.6)";
  ctx.fillRect(0, canvas.height - band, canvas.width, band);
  ctx.fillStyle = "#fff";
  ctx.textBaseline = "top";
  lines.forEach((text, i) => {
    // The nonce is long: shrink its line to fit the width rather than cut it.
    let px = size;
    ctx.font = `${px}px monospace`;
    while (ctx.measureText(text).width > canvas.width - size && px > 8) { px -= 1; ctx.font = `${px}px monospace`; }
    ctx.fillText(text, Math.round(size / 2), canvas.height - band + Math.round(size / 2) + i * lineH);
  });
  return canvas;
}

function toJpeg(canvas) {
  return new Promise((resolve, reject) => canvas.toBlob(
    (b) => (b ? resolve(b) : reject(new CameraError("encode_failed", "The photo could not be encoded."))),
    "image/jpeg", JPEG_QUALITY));
}

// Take one photo. `video`: an already playing viewfinder <video> to grab from (left running); without it the
// camera is opened for this shot and closed again. Refuses an expired nonce: ask the server for a new one.
export async function capture({ nonce, expiresAt, lat, lon, video = null }) {
  if (!nonce) throw new CameraError("no_nonce", "Check in first: the photo needs the check-in's capture nonce.");
  if (expiresAt && Date.now() > new Date(expiresAt).getTime()) {
    throw new CameraError("nonce_expired", "The capture nonce expired; get a new one before taking the photo.");
  }
  let stream = null;
  let source = video;
  try {
    if (!source) {
      stream = await openStream();
      source = document.createElement("video");
      source.muted = true;
      source.playsInline = true;
      source.srcObject = stream;
      await source.play();
    }
    const at = new Date();
    const canvas = stamp(await grabFrame(source), { nonce, at, lat, lon });
    const blob = await toJpeg(canvas);
    return { blob, receipt: { nonce, captured_at: at.toISOString() }, width: canvas.width, height: canvas.height };
  } finally {
    if (stream) stream.getTracks().forEach((t) => t.stop());
  }
}

// The multipart body of an upload: the photo and its receipt.
export function receiptForm(blob, receipt, name = "photo.jpg") {
  const form = new FormData();
  form.append("file", blob, name);
  if (receipt) form.append("capture_receipt", JSON.stringify(receipt));
  return form;
}
