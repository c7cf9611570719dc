// The claim map on the worker's phone: the fence, where the worker is (dot and accuracy circle), the distance to
// the fence's edge (0 inside, as the check-in measures it) and the direction to walk. Leaflet through map.js;
// without Leaflet (not installed, offline) a plain SVG drawing of the same things.
import { createMap, fenceLayer, loadMapLib, toDisplay } from "./map.js";

const RAD = Math.PI / 180;
const SVG = "http://www.w3.org/2000/svg";

// Local plane in metres around (lat0, lon0), with the WGS-84 ellipsoid's length of a degree at that latitude (a
// sphere is off by up to 0.7 %, enough to disagree with the server's spheroid distances by metres).
function plane(lat0, lon0) {
  const p = lat0 * RAD;
  const mLat = 111132.92 - 559.82 * Math.cos(2 * p) + 1.175 * Math.cos(4 * p);
  const mLon = 111412.84 * Math.cos(p) - 93.5 * Math.cos(3 * p);
  return {
    xy: (lat, lon) => [(lon - lon0) * mLon, (lat - lat0) * mLat],
    ll: (x, y) => [lat0 + y / mLat, lon0 + x / mLon],
  };
}

function rings(task) { // outer rings and holes as [[lon, lat], ...] lists, whatever the geometry type
  const g = task.geofence || {};
  if (g.type === "Polygon") return [g.coordinates];
  if (g.type === "MultiPolygon") return g.coordinates;
  return [];
}

function inRing(p, ring) {
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [xi, yi] = ring[i], [xj, yj] = ring[j];
    if ((yi > p[1]) !== (yj > p[1]) && p[0] < ((xj - xi) * (p[1] - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

function nearestOnSegment(p, a, b) {
  const dx = b[0] - a[0], dy = b[1] - a[1];
  const len = dx * dx + dy * dy;
  const t = len ? Math.max(0, Math.min(1, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len)) : 0;
  return [a[0] + t * dx, a[1] + t * dy];
}

function polygonDistance(task, lat, lon) {
  const pl = plane(lat, lon);
  let best = null, inside = false;
  for (const poly of rings(task)) {
    const local = poly.map((ring) => ring.map(([x, y]) => pl.xy(y, x)));
    if (inRing([0, 0], local[0]) && !local.slice(1).some((h) => inRing([0, 0], h))) inside = true;
    for (const ring of local) {
      for (let i = 1; i < ring.length; i++) {
        const q = nearestOnSegment([0, 0], ring[i - 1], ring[i]);
        const d = Math.hypot(q[0], q[1]);
        if (!best || d < best.d) best = { d, q };
      }
    }
  }
  if (!best) return null;
  return { distance_m: inside ? 0 : best.d, inside, target: pl.ll(best.q[0], best.q[1]) };
}

// Distance from (lat, lon) to the task's fence edge (0 inside) and the bearing (° from north) to walk.
export function fenceDistance(task, lat, lon) {
  const [clon, clat] = task.center;
  let out;
  if (task.radius_m) {
    const [x, y] = plane(lat, lon).xy(clat, clon);
    const d = Math.hypot(x, y);
    out = { distance_m: Math.max(0, d - task.radius_m), inside: d <= task.radius_m, target: [clat, clon] };
  } else {
    out = polygonDistance(task, lat, lon) || { distance_m: 0, inside: false, target: [clat, clon] };
  }
  const [tx, ty] = plane(lat, lon).xy(out.target[0], out.target[1]);
  out.bearing = (Math.atan2(tx, ty) / RAD + 360) % 360;
  return out;
}

// One of eight compass points for a bearing, as a key for the page's strings ("n", "ne", ...).
export function compassPoint(bearing) {
  return ["n", "ne", "e", "se", "s", "sw", "w", "nw"][Math.round(bearing / 45) % 8];
}

// ---- Leaflet -----------------------------------------------------------------------------------------------
async function leafletMap(node, task) {
  const made = await createMap(node, [task.center[1], task.center[0]], 17);
  if (!made) return null;
  const { L, map } = made;
  const fence = fenceLayer(L, task, { fillOpacity: 0.12 }).addTo(map);
  let layers = [];
  map.fitBounds(fence.getBounds(), { padding: [24, 24] });
  return {
    kind: "leaflet",
    update(fix, info) {
      layers.forEach((l) => l.remove());
      const here = toDisplay(fix.lat, fix.lon); // the phone reports WGS-84; the base map may be GCJ-02
      layers = [
        L.circle(here, { radius: fix.accuracy || 0, color: "#0ea5e9", weight: 1, fillOpacity: 0.15 }),
        L.polyline([here, toDisplay(...info.target)], { color: "#b45309", weight: 3, dashArray: info.inside ? null : "6 6" }),
        L.circleMarker(here, { radius: 7, color: "#fff", weight: 2, fillColor: "#0369a1", fillOpacity: 1 }),
      ];
      if (info.inside) layers.splice(1, 1);
      layers.forEach((l) => l.addTo(map));
      map.fitBounds(fence.getBounds().extend(here), { padding: [24, 24], maxZoom: 18 });
    },
  };
}

// ---- SVG fallback --------------------------------------------------------------------------------------------
function svgEl(tag, attrs) {
  const n = document.createElementNS(SVG, tag);
  Object.entries(attrs).forEach(([k, v]) => n.setAttribute(k, v));
  return n;
}

function svgMap(node, task) {
  node.classList.add("map-svg");
  const svg = svgEl("svg", { viewBox: "-100 -100 200 200", role: "img", preserveAspectRatio: "xMidYMid meet" });
  node.replaceChildren(svg);
  const [clon, clat] = task.center;
  const pl = plane(clat, clon);
  return {
    kind: "svg",
    update(fix, info, label) {
      svg.setAttribute("aria-label", label || "");
      const here = pl.xy(fix.lat, fix.lon);
      const shapes = task.radius_m ? [] : rings(task).map((poly) => poly[0].map(([x, y]) => pl.xy(y, x)));
      const extent = Math.max(task.radius_m || 0, Math.hypot(...here) + (fix.accuracy || 0),
        ...shapes.flat().map((p) => Math.hypot(...p)), 20) * 1.15;
      const s = 100 / extent; // metres → drawing units; north up (SVG y grows downwards)
      const P = ([x, y]) => `${(x * s).toFixed(1)},${(-y * s).toFixed(1)}`;
      const fence = task.radius_m
        ? svgEl("circle", { cx: 0, cy: 0, r: task.radius_m * s, class: "fence" })
        : svgEl("g", {});
      shapes.forEach((ring) => fence.append(svgEl("polygon", { points: ring.map(P).join(" "), class: "fence" })));
      const [tx, ty] = pl.xy(info.target[0], info.target[1]);
      const [hx, hy] = P(here).split(",").map(Number);
      svg.replaceChildren(fence,
        svgEl("circle", { cx: hx, cy: hy, r: Math.max(2, (fix.accuracy || 0) * s), class: "accuracy" }),
        ...(info.inside ? [] : [svgEl("line", { x1: hx, y1: hy, x2: tx * s, y2: -ty * s, class: "walk-line" })]),
        svgEl("circle", { cx: hx, cy: hy, r: 4, class: "me" }));
    },
  };
}

// The claim map in `node` for `task`; returns {kind, update(fix, info, label)}.
export async function claimMap(node, task) {
  const lib = await loadMapLib();
  return (lib && await leafletMap(node, task)) || svgMap(node, task);
}
