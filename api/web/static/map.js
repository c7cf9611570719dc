// Leaflet, loaded from the API's own /app/vendor (installed by the Makefile); null when it is missing.
// The base layer is the configured tile URL, if any: without it fences, points and hexagons draw on a plain grid.

let loading;

export function loadMapLib() {
  loading ??= (async () => {
    try {
      const cfg = await (await fetch("/app/config.json")).json();
      if (!cfg.leaflet) return null;
      document.head.append(Object.assign(document.createElement("link"),
        { rel: "stylesheet", href: "/app/vendor/leaflet/leaflet.css" }));
      const L = await import("/app/vendor/leaflet/leaflet-src.esm.js");
      return { L, tileUrl: cfg.tile_url };
    } catch (err) {
      console.warn("map library unavailable", err);
      return null;
    }
  })();
  return loading;
}

// A map in `node` centred on [lat, lon]; returns {L, map} or null (and says so in the node).
export async function createMap(node, center, zoom = 15) {
  const lib = await loadMapLib();
  if (!lib) {
    node.classList.add("map-missing");
    node.textContent = "Map unavailable (Leaflet not installed: run `make run`). Lists below still work.";
    return null;
  }
  const { L, tileUrl } = lib;
  const map = L.map(node).setView(center, zoom); // SVG: shapes stay DOM elements (tooltips, tests)
  if (tileUrl) L.tileLayer(tileUrl, { maxZoom: 19, attribution: "Map tiles" }).addTo(map);
  else node.classList.add("no-tiles");
  return { L, map };
}

// GeoJSON from the API is [lon, lat]; Leaflet wants [lat, lon].
export function fenceLayer(L, task, style = {}) {
  if (task.radius_m) {
    return L.circle([task.center[1], task.center[0]], { radius: task.radius_m, color: "#2563eb", weight: 2, ...style });
  }
  return L.geoJSON(task.geofence, { style: { color: "#2563eb", weight: 2, ...style } });
}

export function heatColor(t) {
  // 0..1 -> pale yellow to deep red
  const stops = [[255, 237, 160], [254, 178, 76], [240, 59, 32], [128, 0, 38]];
  const x = Math.min(0.999, Math.max(0, t)) * (stops.length - 1);
  const i = Math.floor(x), f = x - i;
  const c = stops[i].map((v, k) => Math.round(v + (stops[i + 1][k] - v) * f));
  return `rgb(${c.join(",")})`;
}
