// Leaflet, loaded from the API's own /app/vendor (installed by the Makefile); null when it is missing.
// The base layer is the configured tile template (FIELDPROOF_MAP_TILE_URL, default OpenStreetMap) drawn in its
// coordinate system (FIELDPROOF_MAP_TILE_CRS): on GCJ-02 tiles (AutoNavi/Gaode) WGS-84 data is shifted to GCJ-02
// for display, the same transform as geo/crs.py (tests compare the two). Without tiles, or when they cannot load
// (offline), fences, points and hexagons draw on a plain grid.
import { addStrings, t } from "./i18n.js";

addStrings({
  zh: { "map.missing": "地图组件未安装（请运行 `make run`），下方列表仍可使用。", "map.label": "地图" },
  en: { "map.missing": "Map unavailable (Leaflet not installed: run `make run`). Lists below still work.", "map.label": "Map" },
});

let loading;
let outline = null; // mainland China rings [[lon, lat], ...] (WGS-84), from geo/data via /app/china_mainland.json
let displayCrsName = "wgs84";

// ---- coordinate systems (a port of geo/crs.py) -------------------------------------------------------------
const A = 6378245.0; // Krasovsky 1940 semi-major axis, as the GCJ-02 algorithm uses
const EE = 0.00669342162296594323;

export async function loadOutline() {
  if (!outline) outline = (await (await fetch("/app/china_mainland.json")).json()).rings;
  return outline;
}

function inRing(ring, lon, lat) {
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [xi, yi] = ring[i], [xj, yj] = ring[j];
    if ((yi > lat) !== (yj > lat) && lon < ((xj - xi) * (lat - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

// Whether map providers shift this WGS-84 point (mainland China only; needs loadOutline() first).
export function inChina(lat, lon) {
  if (!outline) throw new Error("call loadOutline() first");
  return outline.some((ring) => inRing(ring, lon, lat));
}

function delta(lon, lat) {
  const x = lon - 105.0, y = lat - 35.0, PI = Math.PI;
  let dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * Math.sqrt(Math.abs(x))
    + ((20.0 * Math.sin(6.0 * x * PI) + 20.0 * Math.sin(2.0 * x * PI)) * 2.0) / 3.0
    + ((20.0 * Math.sin(y * PI) + 40.0 * Math.sin((y / 3.0) * PI)) * 2.0) / 3.0
    + ((160.0 * Math.sin((y / 12.0) * PI) + 320 * Math.sin((y * PI) / 30.0)) * 2.0) / 3.0;
  let dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * Math.sqrt(Math.abs(x))
    + ((20.0 * Math.sin(6.0 * x * PI) + 20.0 * Math.sin(2.0 * x * PI)) * 2.0) / 3.0
    + ((20.0 * Math.sin(x * PI) + 40.0 * Math.sin((x / 3.0) * PI)) * 2.0) / 3.0
    + ((150.0 * Math.sin((x / 12.0) * PI) + 300.0 * Math.sin((x / 30.0) * PI)) * 2.0) / 3.0;
  const rad = (lat / 180.0) * PI;
  const magic = 1 - EE * Math.sin(rad) ** 2, sqrtMagic = Math.sqrt(magic);
  dlat = (dlat * 180.0) / (((A * (1 - EE)) / (magic * sqrtMagic)) * PI);
  dlon = (dlon * 180.0) / ((A / sqrtMagic) * Math.cos(rad) * PI);
  return [dlon, dlat];
}

function wgsToGcj(lon, lat) { const [dx, dy] = delta(lon, lat); return [lon + dx, lat + dy]; }

function gcjToWgs(lon, lat) {
  const [dx, dy] = delta(lon, lat);
  let x = lon - dx, y = lat - dy; // then fixed-point iteration, as geo/crs.py's inverse does
  for (let i = 0; i < 30; i++) {
    const [fx, fy] = wgsToGcj(x, y);
    const ex = fx - lon, ey = fy - lat;
    x -= ex; y -= ey;
    if (Math.abs(ex) < 1e-10 && Math.abs(ey) < 1e-10) break;
  }
  return [x, y];
}

// WGS-84 → GCJ-02 as [lat, lon]; points outside mainland China unchanged (needs loadOutline()).
export function wgs84ToGcj02(lat, lon) {
  if (!inChina(lat, lon)) return [lat, lon];
  const [x, y] = wgsToGcj(lon, lat);
  return [y, x];
}

// GCJ-02 → WGS-84 as [lat, lon], judged (like geo/crs.py) by where the point really is.
export function gcj02ToWgs84(lat, lon) {
  const [x, y] = gcjToWgs(lon, lat);
  return inChina(y, x) ? [y, x] : [lat, lon];
}

// The coordinate system the base map is drawn in ("wgs84" or "gcj02"), known once loadMapLib() resolved.
export function displayCrs() { return displayCrsName; }

// A WGS-84 point (as the API sends it) where it belongs on the base map, [lat, lon].
export function toDisplay(lat, lon) { return displayCrsName === "gcj02" ? wgs84ToGcj02(lat, lon) : [lat, lon]; }

// A point picked on the base map back in WGS-84, [lat, lon].
export function fromDisplay(lat, lon) { return displayCrsName === "gcj02" ? gcj02ToWgs84(lat, lon) : [lat, lon]; }

// GeoJSON (WGS-84, [lon, lat]) with every position moved to the base map's system.
export function displayGeoJSON(geojson) {
  if (displayCrsName !== "gcj02") return geojson;
  const move = (c) => (typeof c[0] === "number" ? toDisplay(c[1], c[0]).reverse().concat(c.slice(2)) : c.map(move));
  const walk = (g) => {
    if (!g || typeof g !== "object") return g;
    if (Array.isArray(g)) return g.map(walk);
    const out = { ...g };
    if (g.coordinates) out.coordinates = move(g.coordinates);
    if (g.geometry) out.geometry = walk(g.geometry);
    if (g.features) out.features = g.features.map(walk);
    if (g.geometries) out.geometries = g.geometries.map(walk);
    return out;
  };
  return walk(geojson);
}

// ---- Leaflet -------------------------------------------------------------------------------------------------
export function loadMapLib() {
  loading ??= (async () => {
    try {
      const cfg = await (await fetch("/app/config.json")).json();
      displayCrsName = cfg.tile_url && cfg.tile_crs === "gcj02" ? "gcj02" : "wgs84";
      if (displayCrsName === "gcj02") await loadOutline();
      if (!cfg.leaflet) return null;
      document.head.append(Object.assign(document.createElement("link"),
        { rel: "stylesheet", href: "/app/vendor/leaflet/leaflet.css" }));
      const L = await import("/app/vendor/leaflet/leaflet-src.esm.js");
      return { L, tileUrl: cfg.tile_url, tiles: cfg };
    } catch (err) {
      console.warn("map library unavailable", err);
      return null;
    }
  })();
  return loading;
}

// A map in `node` centred on [lat, lon] (WGS-84); returns {L, map} or null (and says so in the node).
export async function createMap(node, center, zoom = 15) {
  if (!node.hasAttribute("role")) node.setAttribute("role", "region"); // a named landmark for screen readers
  if (!node.hasAttribute("aria-label")) node.setAttribute("aria-label", t("map.label"));
  const lib = await loadMapLib();
  if (!lib) {
    node.classList.add("map-missing");
    node.textContent = t("map.missing");
    return null;
  }
  const { L, tileUrl, tiles } = lib;
  const map = L.map(node).setView(toDisplay(center[0], center[1]), zoom); // SVG: shapes stay DOM elements
  if (tileUrl) {
    let failed = 0;
    L.tileLayer(tileUrl, { maxZoom: 19, subdomains: tiles.tile_subdomains || "abc",
      attribution: tiles.tile_attribution || "" })
      .on("tileerror", () => { if (++failed >= 2) node.classList.add("no-tiles"); }) // offline: the plain grid
      .on("tileload", () => { failed = 0; node.classList.remove("no-tiles"); })
      .addTo(map);
  } else node.classList.add("no-tiles");
  return { L, map };
}

// GeoJSON from the API is [lon, lat] in WGS-84; Leaflet wants [lat, lon] on the base map's system.
export function fenceLayer(L, task, style = {}) {
  if (task.radius_m) {
    return L.circle(toDisplay(task.center[1], task.center[0]), { radius: task.radius_m, color: "#2563eb", weight: 2, ...style });
  }
  return L.geoJSON(displayGeoJSON(task.geofence), { style: { color: "#2563eb", weight: 2, ...style } });
}

export function heatColor(t) {
  // 0..1 -> pale yellow to deep red
  const stops = [[255, 237, 160], [254, 178, 76], [240, 59, 32], [128, 0, 38]];
  const x = Math.min(0.999, Math.max(0, t)) * (stops.length - 1);
  const i = Math.floor(x), f = x - i;
  const c = stops[i].map((v, k) => Math.round(v + (stops[i + 1][k] - v) * f));
  return `rgb(${c.join(",")})`;
}
