"""The simulated city: Beijing's commercial districts, shops (POIs) and their geofences. Pure.

Coordinates a merchant types come from Amap, so they are GCJ-02; the truth the simulator moves people
through is WGS-84 (what a GPS chip measures), converted with geo.crs.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from geo import crs as geocrs

EARTH_R = 6_371_008.8

# Commercial districts of Beijing (WGS-84 lat, lon): where shops, and so tasks, cluster.
DISTRICTS = {
    "wangfujing": (39.9135, 116.4110),
    "xidan": (39.9072, 116.3680),
    "sanlitun": (39.9333, 116.4490),
    "guomao": (39.9087, 116.4552),
    "zhongguancun": (39.9812, 116.3050),
    "wudaokou": (39.9925, 116.3326),
    "qianmen": (39.8968, 116.3922),
    "wangjing": (39.9965, 116.4700),
}


def offset(lat: float, lon: float, east_m: float, north_m: float) -> tuple[float, float]:
    """The point ``east_m``/``north_m`` metres from (lat, lon) (local tangent plane; fine below ~50 km)."""
    dlat = north_m / EARTH_R
    dlon = east_m / (EARTH_R * math.cos(math.radians(lat)))
    return lat + math.degrees(dlat), lon + math.degrees(dlon)


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_R * math.asin(math.sqrt(min(1.0, a)))


@dataclass(frozen=True)
class Shop:
    """A place a task sends workers to: its WGS-84 truth and the fence its merchant drew in GCJ-02."""

    name: str
    district: str
    lat: float  # WGS-84 of the shop's door
    lon: float
    fence: dict  # GeoJSON geometry or {"center", "radius_m"}, in GCJ-02
    fence_kind: str
    size_m: float  # half-width of the fence, metres


def _circle_fence(lat: float, lon: float, radius_m: float) -> dict:
    glat, glon = geocrs.wgs84_to_gcj02(lat, lon)
    return {"center": [round(glon, 6), round(glat, 6)], "radius_m": radius_m}


def _polygon_fence(rng: random.Random, lat: float, lon: float, half_m: float) -> dict:
    """A shop footprint: a rotated rectangle or an irregular hexagon around the door, in GCJ-02."""
    turn = rng.uniform(0, math.pi)
    if rng.random() < 0.5:
        w, h = half_m * rng.uniform(0.8, 1.3), half_m * rng.uniform(0.6, 1.0)
        corners = [(-w, -h), (w, -h), (w, h), (-w, h)]
    else:
        corners = [(half_m * rng.uniform(0.8, 1.2) * math.cos(a), half_m * rng.uniform(0.8, 1.2) * math.sin(a))
                   for a in (i * math.pi / 3 for i in range(6))]
    ring = []
    for x, y in corners:
        e, n = x * math.cos(turn) - y * math.sin(turn), x * math.sin(turn) + y * math.cos(turn)
        plat, plon = offset(lat, lon, e, n)
        glat, glon = geocrs.wgs84_to_gcj02(plat, plon)
        ring.append([round(glon, 6), round(glat, 6)])
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}


def make_shops(rng: random.Random, count: int) -> list[Shop]:
    """``count`` shops scattered (denser near the middle) around the districts, each with a fence."""
    names = list(DISTRICTS)
    shops = []
    for i in range(count):
        district = names[i % len(names)]
        clat, clon = DISTRICTS[district]
        r, a = 1800 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
        lat, lon = offset(clat, clon, r * math.cos(a), r * math.sin(a))
        if rng.random() < 0.6:
            size = rng.choice([50.0, 80.0, 100.0, 150.0, 200.0])
            fence, kind = _circle_fence(lat, lon, size), "circle"
        else:
            size = rng.uniform(30, 70)
            fence, kind = _polygon_fence(rng, lat, lon, size), "polygon"
        shops.append(Shop(f"{district}-{i:04d}", district, lat, lon, fence, kind, size))
    return shops


def fence_center_gcj(shop: Shop) -> tuple[float, float]:
    """(lat, lon) in GCJ-02 of the point a map shows as the fence's pin (circle centre or ring centroid)."""
    if "center" in shop.fence:
        lon, lat = shop.fence["center"]
        return lat, lon
    ring = shop.fence["coordinates"][0][:-1]
    return sum(p[1] for p in ring) / len(ring), sum(p[0] for p in ring) / len(ring)


def home_near(rng: random.Random, district: str) -> tuple[float, float]:
    """Where a worker starts the day: within ~3 km of a district."""
    clat, clon = DISTRICTS[district]
    r, a = 3000 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
    return offset(clat, clon, r * math.cos(a), r * math.sin(a))


# ---- radio environment ---------------------------------------------------------------------------------
# Cells: each carrier (China Mobile 0, Unicom 1, Telecom 11) covers the city with a grid of sites ~450 m apart
# (dense urban macro cells); a phone reports its serving cell and up to two neighbours of its carrier.
MCC, CARRIERS, CELL_SPACING_M = 460, (0, 1, 11), 450.0
_ORIGIN = (39.9042, 116.4074)  # Tiananmen: the grid's origin
_CARRIER_SHIFT = {0: (0.0, 0.0), 1: (150.0, 220.0), 11: (310.0, 90.0)}


def _local_m(lat: float, lon: float) -> tuple[float, float]:
    """East and north metres from the grid origin (tangent plane; fine across the city)."""
    north = math.radians(lat - _ORIGIN[0]) * EARTH_R
    east = math.radians(lon - _ORIGIN[1]) * EARTH_R * math.cos(math.radians(_ORIGIN[0]))
    return east, north


def cells_near(lat: float, lon: float, mnc: int, count: int = 3) -> list[dict]:
    """The ``count`` nearest cells of carrier ``mnc`` to (lat, lon) WGS-84, nearest (serving) first."""
    sx, sy = _CARRIER_SHIFT[mnc]
    east, north = _local_m(lat, lon)
    gx, gy = (east - sx) / CELL_SPACING_M, (north - sy) / CELL_SPACING_M
    around = [(math.floor(gx) + dx, math.floor(gy) + dy) for dx in (-1, 0, 1, 2) for dy in (-1, 0, 1, 2)]
    around.sort(key=lambda c: (c[0] - gx) ** 2 + (c[1] - gy) ** 2)
    out = []
    for ix, iy in around[:count]:
        cid = (random.Random(f"cell:{mnc}:{ix}:{iy}").getrandbits(28)) | 1
        out.append({"mcc": MCC, "mnc": mnc, "tac": 4000 + ((ix // 8) * 31 + (iy // 8)) % 5000, "cid": cid})
    return out


def _bssid(rng: random.Random) -> str:
    return ":".join(f"{rng.getrandbits(8):02x}" for _ in range(6))


@dataclass(frozen=True)
class AccessPoint:
    """A Wi-Fi access point; one that gets replaced during the day answers with ``replaced_by`` after ``until_h``."""

    bssid: str
    replaced_by: str | None = None
    until_h: float = 24.0


def access_points(key: str, lo: int = 8, hi: int = 24) -> list[AccessPoint]:
    """The access points heard at a place (a shop and its neighbours in the street or mall, or a flat and the
    rest of its building; Beijing scans indoors hear dozens), deterministic in ``key``.

    About one in ten is swapped during the day (a new router, a neighbour's replaced box): the churn a
    learned fingerprint must survive."""
    rng = random.Random(f"aps:{key}")
    out = []
    for _ in range(rng.randint(lo, hi)):
        if rng.random() < 0.1:
            out.append(AccessPoint(_bssid(rng), _bssid(rng), rng.uniform(9, 14)))
        else:
            out.append(AccessPoint(_bssid(rng)))
    return out


def visible_bssid(ap: AccessPoint, hour: float) -> str:
    """The BSSID an access point answers with at ``hour`` (local, 0-24)."""
    return ap.replaced_by if ap.replaced_by and hour >= ap.until_h else ap.bssid
