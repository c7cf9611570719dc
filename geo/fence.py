"""Geofences: circles and (multi)polygons, validated and converted to WGS-84 at the boundary. Pure, no DB."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from core.errors import InvalidInput
from geo import crs as geocrs
from geo.geojson import fence_geojson

EARTH_RADIUS_M = 6371008.8  # IUGG mean Earth radius
MIN_RADIUS_M = 10  # below consumer GPS accuracy a fence cannot be checked fairly
MAX_RADIUS_M = 5000  # a fence is a place (a store, a block, a campus), not a district
MIN_AREA_M2 = 100.0  # ~10 m × 10 m: smaller than one GPS error ellipse
MAX_AREA_M2 = 50e6  # 50 km²: larger than this is a city district, not a place to be checked in at
MAX_REPAIR_CHANGE = 0.01  # make_valid may fix a ring; if it changes the area by more than 1 % we refuse
CIRCLE_VERTICES = 64


class InvalidGeofence(InvalidInput):
    code = "invalid_geofence"
    detail = "The geofence must be a GeoJSON Polygon/MultiPolygon or {\"center\": [lon, lat], \"radius_m\": r}."


class FenceTooSmall(InvalidInput):
    code = "fence_too_small"


class FenceTooLarge(InvalidInput):
    code = "fence_too_large"


class FenceRepairChangedArea(InvalidInput):
    code = "fence_repair_changed_area"


@dataclass(frozen=True)
class Fence:
    """A validated fence in WGS-84 (shapely lon/lat)."""

    kind: Literal["circle", "polygon"]
    geometry: BaseGeometry
    center: tuple[float, float]
    radius_m: float | None
    area_m2: float

    def to_geojson(self, crs: str = "wgs84") -> dict[str, Any]:
        """GeoJSON geometry (RFC 7946 winding) in ``crs``."""
        return fence_geojson(self.geometry, crs)


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def _local(geom: BaseGeometry, lon0: float, lat0: float) -> BaseGeometry:
    """Lambert azimuthal equal-area projection centred at (lon0, lat0), in metres (areas exact on the sphere)."""
    l0, p0 = math.radians(lon0), math.radians(lat0)

    def fn(c: np.ndarray) -> np.ndarray:
        lam, phi = np.radians(c[:, 0]) - l0, np.radians(c[:, 1])
        k = np.sqrt(2 / (1 + math.sin(p0) * np.sin(phi) + math.cos(p0) * np.cos(phi) * np.cos(lam)))
        x = EARTH_RADIUS_M * k * np.cos(phi) * np.sin(lam)
        y = EARTH_RADIUS_M * k * (math.cos(p0) * np.sin(phi) - math.sin(p0) * np.cos(phi) * np.cos(lam))
        return np.column_stack([x, y])

    return shapely.transform(geom, fn)


def area_m2(geom: BaseGeometry) -> float:
    """Area of a lon/lat polygon in square metres."""
    c = geom.centroid
    return _local(geom, c.x, c.y).area


def _circle(lon: float, lat: float, radius_m: float) -> Polygon:
    """A geodesic circle as a polygon (destination points along 64 bearings)."""
    d = radius_m / EARTH_RADIUS_M
    p1, l1 = math.radians(lat), math.radians(lon)
    pts = []
    for i in range(CIRCLE_VERTICES):
        b = 2 * math.pi * i / CIRCLE_VERTICES
        p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
        l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
        pts.append((math.degrees(l2), math.degrees(p2)))
    return Polygon(pts)


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise geocrs.InvalidCoordinates("Coordinates must be numbers.")
    try:
        return float(v)
    except OverflowError:  # an integer of hundreds of digits (JSON allows it)
        raise geocrs.InvalidCoordinates("Coordinates must be numbers in range.") from None


def _parse_circle(data: dict, crs: str) -> Fence:
    center, radius = data.get("center"), data.get("radius_m")
    if not isinstance(center, (list, tuple)) or len(center) != 2:
        raise InvalidGeofence("center must be [lon, lat].")
    lon, lat = _number(center[0]), _number(center[1])
    r = _number(radius) if radius is not None else math.nan
    if not math.isfinite(r):
        raise InvalidGeofence("radius_m must be a finite number of metres.")
    if r < MIN_RADIUS_M:
        raise FenceTooSmall(f"radius_m must be at least {MIN_RADIUS_M} m (GPS cannot resolve less).")
    if r > MAX_RADIUS_M:
        raise FenceTooLarge(f"radius_m must be at most {MAX_RADIUS_M} m.")
    wlat, wlon = geocrs.convert(lat, lon, crs, "wgs84")
    return Fence("circle", _circle(wlon, wlat, r), (wlon, wlat), r, math.pi * r * r)


def _positions(coordinates: Any, depth: int) -> None:
    """Every position of a (Multi)Polygon's ``coordinates`` ``depth`` lists deep is numbers (``_number``: true is
    not 1), as a circle's centre must be; anything else is a malformed geometry, refused alike in every CRS."""
    level = [coordinates]
    for _ in range(depth):
        if not all(isinstance(x, (list, tuple)) for x in level):
            raise InvalidGeofence("Malformed GeoJSON geometry: coordinates are not nested as the type says.")
        level = [y for x in level for y in x]
    for position in level:
        if not isinstance(position, (list, tuple)) or not 2 <= len(position) <= 3:
            raise InvalidGeofence("Malformed GeoJSON geometry: a position is [lon, lat] (an altitude is ignored).")
        for v in position:
            _number(v)


def _parse_polygon(data: dict, crs: str) -> Fence:
    _positions(data.get("coordinates"), 2 if data.get("type") == "Polygon" else 3)
    try:
        geom = shapely.force_2d(shape(data))  # an altitude says nothing about a fence on the ground
    except Exception as exc:  # shapely raises several types for malformed GeoJSON
        raise InvalidGeofence(f"Malformed GeoJSON geometry: {exc}.")
    if not isinstance(geom, (Polygon, MultiPolygon)) or geom.is_empty:
        raise InvalidGeofence()
    coords = shapely.get_coordinates(geom)
    geocrs.check_coordinates(coords[:, 0], coords[:, 1])
    geom = geocrs.transform_geometry(geom, crs, "wgs84")
    geom = _repaired(geom)
    area = area_m2(geom)
    if area < MIN_AREA_M2:
        raise FenceTooSmall(f"The fence covers {area:.0f} m²; at least {MIN_AREA_M2:.0f} m² is needed.")
    if area > MAX_AREA_M2:
        raise FenceTooLarge(f"The fence covers {area / 1e6:.1f} km²; at most {MAX_AREA_M2 / 1e6:.0f} km².")
    c = geom.representative_point() if not geom.centroid.within(geom) else geom.centroid
    return Fence("polygon", geom, (c.x, c.y), None, area)


def _repaired(geom: BaseGeometry) -> BaseGeometry:
    """Valid geometry, or a clear error if repair would change the fence noticeably."""
    if geom.is_valid:
        return geom
    fixed = shapely.make_valid(geom)
    polys = [g for g in getattr(fixed, "geoms", [fixed]) if isinstance(g, (Polygon, MultiPolygon))]
    fixed = shapely.union_all(polys) if polys else Polygon()
    before = abs(_shoelace_area(geom))
    after = area_m2(fixed) if not fixed.is_empty else 0.0
    if fixed.is_empty or before == 0 or abs(after - before) / before > MAX_REPAIR_CHANGE:
        raise FenceRepairChangedArea(
            f"The fence's rings are invalid ({shapely.is_valid_reason(geom)}); repairing them would change its area "
            f"from {before:.0f} m² to {after:.0f} m². Redraw it without self-intersections.")
    return fixed


def _shoelace_area(geom: BaseGeometry) -> float:
    """Signed-sum area of the rings as drawn (what the merchant meant), in m²; holes subtract."""
    c = shapely.get_coordinates(geom).mean(axis=0)
    total = 0.0
    for poly in getattr(geom, "geoms", [geom]):
        local = _local(poly, c[0], c[1])
        total += _ring_area(local.exterior) - sum(_ring_area(r) for r in local.interiors)
    return total


def _ring_area(ring) -> float:
    xy = np.asarray(ring.coords)
    return abs(0.5 * np.sum(xy[:-1, 0] * xy[1:, 1] - xy[1:, 0] * xy[:-1, 1]))


def parse_fence(data: dict, crs: str = "wgs84") -> Fence:
    """Validate a fence body and convert it to WGS-84."""
    geocrs.check_crs(crs)
    if not isinstance(data, dict):
        raise InvalidGeofence()
    if "center" in data or "radius_m" in data:
        return _parse_circle(data, crs)
    if data.get("type") in ("Polygon", "MultiPolygon"):
        return _parse_polygon(data, crs)
    raise InvalidGeofence(f"Unsupported geofence type {data.get('type')!r}; use Polygon, MultiPolygon or a circle.")
