// The phone's position for the worker page: one read (check-in, task hall) or a watch (the claim maps); refusals
// and failures become ApiError-shaped errors with codes the page has plain words for (code.geo_*).
import { ApiError, newKey } from "./common.js";
import { t } from "./i18n.js";

const DEVICE_KEY = "fp.device_id";
const GEO_CODES = { 1: "geo_denied", 2: "geo_unavailable", 3: "geo_timeout" };
const OPTIONS = { enableHighAccuracy: true, timeout: 20000, maximumAge: 0 };
const listeners = [];
let last = null;     // the latest position (GeolocationPosition) or null
let watching = null;

export function deviceId() {
  let id = localStorage.getItem(DEVICE_KEY);
  if (!id) { id = `web-${newKey()}`; localStorage.setItem(DEVICE_KEY, id); }
  return id;
}

function geoError(e) {
  const code = GEO_CODES[e?.code] || "geo_unavailable";
  return new ApiError(0, code, t(`code.${code}`));
}

function tell(pos, err) {
  if (pos) last = pos;
  listeners.forEach((fn) => fn(pos, err));
}

// One fresh position; rejects with an ApiError whose code is geo_denied / geo_unavailable / geo_timeout. A running
// watch is paused meanwhile: while it holds the location provider, Chromium answers a one-off request that wants a
// fresh fix only when the position next changes, which for a worker standing still may be never.
export function locate() {
  const resume = watching !== null;
  stopWatch();
  return new Promise((resolve, reject) => {
    if (!navigator.geolocation) return reject(new ApiError(0, "geo_missing", t("code.geo_missing")));
    navigator.geolocation.getCurrentPosition((pos) => { tell(pos); resolve(pos); },
      (e) => { const err = geoError(e); tell(null, err); reject(err); }, OPTIONS);
  }).finally(() => { if (resume) watch(); });
}

function stopWatch() {
  if (watching !== null) navigator.geolocation.clearWatch(watching);
  watching = null;
}

// Keep positions coming while the page shows a claim map; fn(pos, err) for each (and for locate()'s reads).
export function onPosition(fn) { listeners.push(fn); }

export function watch() {
  if (watching !== null || !navigator.geolocation) return;
  watching = navigator.geolocation.watchPosition((pos) => tell(pos), (e) => tell(null, geoError(e)), OPTIONS);
}

export function lastPosition() { return last; }

function num(v) { return typeof v === "number" && Number.isFinite(v) ? v : null; }

// The fix exactly as the browser reports it; the API converts crs and judges it.
export function fixBody(pos) {
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
