"""WGS-84 ⇄ GCJ-02 ⇄ BD-09, vectorised with numpy; points outside mainland China are left unchanged.

GCJ-02 is the obfuscated datum Chinese map SDKs (Amap, Tencent) report; BD-09 is Baidu's further
offset of it. The forward transforms are the public formulas; the inverses solve forward(x) = y by
fixed-point iteration to below 1e-9° (the forward map is a small smooth offset, so it converges fast).
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from core.errors import InvalidInput

SUPPORTED_CRS = ("wgs84", "gcj02", "bd09")
_A = 6378245.0  # Krasovsky 1940 semi-major axis, as the GCJ-02 algorithm uses
_EE = 0.00669342162296594323
_X_PI = math.pi * 3000.0 / 180.0
_INVERSE_TOL = 1e-10
_INVERSE_MAX_ITER = 30


class InvalidCrs(InvalidInput):
    code = "invalid_crs"
    detail = "crs must be one of wgs84, gcj02, bd09."


class InvalidCoordinates(InvalidInput):
    code = "invalid_coordinates"
    detail = "Coordinates must be finite numbers with lat in [-90, 90] and lon in [-180, 180]."


@lru_cache
def _outline() -> BaseGeometry:
    rings = json.loads((Path(__file__).parent / "data" / "china_mainland.json").read_text())["rings"]
    geom = shapely.union_all([Polygon(r) for r in rings])
    shapely.prepare(geom)
    return geom


def in_china(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Boolean mask: which (lon, lat) points lie in mainland China (where providers shift coordinates)."""
    return shapely.contains_xy(_outline(), lon, lat)


def in_mainland_china(lat: float, lon: float) -> bool:
    """Whether map providers would shift this WGS-84 point."""
    return bool(in_china(np.asarray([lon]), np.asarray([lat]))[0])


class _Scalar:
    """numpy's names for the math module's functions: each step below runs on one point in plain floats (a
    single check-in's fix: 30x faster than on 1-element arrays) or on arrays, with the same formulas."""

    sqrt, sin, cos, arctan2, abs, pi = math.sqrt, math.sin, math.cos, math.atan2, abs, math.pi


def _delta(lon, lat, np=np):
    """GCJ-02 offset (dlon, dlat) in degrees at WGS-84 (lon, lat)."""
    x, y = lon - 105.0, lat - 35.0
    dlat = (-100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
            + (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
            + (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
            + (160.0 * np.sin(y / 12.0 * np.pi) + 320 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0)
    dlon = (300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
            + (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
            + (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
            + (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0)
    rad = lat / 180.0 * np.pi
    magic = 1 - _EE * np.sin(rad) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrt_magic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrt_magic * np.cos(rad) * np.pi)
    return dlon, dlat


def _wgs_to_gcj(lon, lat, np=np):
    dlon, dlat = _delta(lon, lat, np)
    return lon + dlon, lat + dlat


def _gcj_to_bd(lon, lat, np=np):
    z = np.sqrt(lon * lon + lat * lat) + 0.00002 * np.sin(lat * _X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def _bd_to_gcj_approx(lon, lat, np=np):
    x, y = lon - 0.0065, lat - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta), z * np.sin(theta)


def _invert(forward, lon, lat, guess, np=np):
    """Solve forward(p) = (lon, lat) by fixed-point iteration from ``guess``."""
    x, y = guess
    for _ in range(_INVERSE_MAX_ITER):
        fx, fy = forward(x, y, np)
        ex, ey = fx - lon, fy - lat
        x, y = x - ex, y - ey
        if (np.abs(ex) < _INVERSE_TOL).all() and (np.abs(ey) < _INVERSE_TOL).all() if np is not _Scalar else (
                abs(ex) < _INVERSE_TOL and abs(ey) < _INVERSE_TOL):
            break
    return x, y


def _gcj_to_wgs(lon, lat, np=np):
    dlon, dlat = _delta(lon, lat, np)
    return _invert(_wgs_to_gcj, lon, lat, (lon - dlon, lat - dlat), np)


def _bd_to_gcj(lon, lat, np=np):
    return _invert(_gcj_to_bd, lon, lat, _bd_to_gcj_approx(lon, lat, np), np)


# Each step works on (lon, lat) arrays; a path from src to dst is a chain of steps through GCJ-02.
_STEPS = {("wgs84", "gcj02"): [_wgs_to_gcj], ("gcj02", "wgs84"): [_gcj_to_wgs],
          ("gcj02", "bd09"): [_gcj_to_bd], ("bd09", "gcj02"): [_bd_to_gcj],
          ("wgs84", "bd09"): [_wgs_to_gcj, _gcj_to_bd], ("bd09", "wgs84"): [_bd_to_gcj, _gcj_to_wgs]}


def check_crs(crs: str) -> str:
    """Validate a crs name."""
    if crs not in SUPPORTED_CRS:
        raise InvalidCrs(f"Unknown crs {crs!r}; use one of {', '.join(SUPPORTED_CRS)}.")
    return crs


_NOT_FINITE = "Coordinates must be finite numbers (no NaN or infinity)."
_OUT_OF_RANGE = "Latitude must be within ±90 and longitude within ±180 (GeoJSON order is [lon, lat])."


def check_coordinates(lon: np.ndarray, lat: np.ndarray) -> None:
    """Reject NaN, infinities and out-of-range values."""
    if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))):
        raise InvalidCoordinates(_NOT_FINITE)
    if np.any(np.abs(lat) > 90) or np.any(np.abs(lon) > 180):
        raise InvalidCoordinates(_OUT_OF_RANGE)


# Beyond the outline's bounds by this much no point is shifted: GCJ-02 and BD-09 move a point by ~0.01°.
_PAD_DEG = 0.5


def _shifted(lon: np.ndarray, lat: np.ndarray, src: str) -> np.ndarray:
    """Which points providers shift, judged by where they really are (their WGS-84 position).

    Judging an obfuscated point by its own coordinates would fail near the border, where a mainland
    point's GCJ-02 image can fall just outside the outline.
    """
    if src == "wgs84":
        return in_china(lon, lat)
    near = _near_china(lon, lat)
    out = np.zeros(np.shape(lon), dtype=bool)
    if near.any():
        x, y = lon[near], lat[near]
        for step in _STEPS[(src, "wgs84")]:
            x, y = step(x, y)
        out[near] = in_china(x, y)
    return out


@lru_cache
def _padded_bounds() -> tuple[float, float, float, float]:
    west, south, east, north = _outline().bounds
    return west - _PAD_DEG, south - _PAD_DEG, east + _PAD_DEG, north + _PAD_DEG


def _near_china(lon, lat):
    """Within the outline's bounds padded by _PAD_DEG: farther out no point is shifted (and near the poles the
    formulas' cos(lat) overflows). The bounds are read once per process: every check-in converts its fix."""
    west, south, east, north = _padded_bounds()
    return (west <= lon) & (lon <= east) & (south <= lat) & (lat <= north)


def convert_arrays(lon, lat, src: str, dst: str) -> tuple[np.ndarray, np.ndarray]:
    """Convert (lon, lat) arrays; points outside mainland China are returned unchanged."""
    check_crs(src), check_crs(dst)
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    check_coordinates(lon, lat)
    if src == dst:
        return lon.copy(), lat.copy()
    mask = _shifted(lon, lat, src)
    out_lon, out_lat = lon.copy(), lat.copy()
    if mask.any():
        x, y = lon[mask], lat[mask]
        for step in _STEPS[(src, dst)]:
            x, y = step(x, y)
        out_lon[mask], out_lat[mask] = x, y
    return out_lon, out_lat


def convert(lat: float, lon: float, src: str, dst: str) -> tuple[float, float]:
    """Convert one point; returns (lat, lon). The same steps as ``convert_arrays`` on plain floats."""
    check_crs(src), check_crs(dst)
    lon, lat = float(lon), float(lat)
    if not (math.isfinite(lon) and math.isfinite(lat)):  # check_coordinates' checks, on floats
        raise InvalidCoordinates(_NOT_FINITE)
    if abs(lat) > 90 or abs(lon) > 180:
        raise InvalidCoordinates(_OUT_OF_RANGE)
    if src == dst:
        return lat, lon
    if not _near_china(lon, lat):
        return lat, lon
    x, y = lon, lat
    if src != "wgs84":
        for step in _STEPS[(src, "wgs84")]:
            x, y = step(x, y, _Scalar)
    if not shapely.contains_xy(_outline(), x, y):  # where it really is decides whether it was shifted
        return lat, lon
    if dst == "wgs84":
        return y, x
    x, y = lon, lat
    for step in _STEPS[(src, dst)]:
        x, y = step(x, y, _Scalar)
    return y, x


def to_wgs84(lat: float, lon: float, crs: str) -> tuple[float, float]:
    """A point in ``crs`` as WGS-84 (lat, lon)."""
    return convert(lat, lon, crs, "wgs84")


def from_wgs84(lat: float, lon: float, crs: str) -> tuple[float, float]:
    """A WGS-84 point in ``crs`` (lat, lon)."""
    return convert(lat, lon, "wgs84", crs)


def wgs84_to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    """WGS-84 → GCJ-02."""
    return convert(lat, lon, "wgs84", "gcj02")


def gcj02_to_wgs84(lat: float, lon: float) -> tuple[float, float]:
    """GCJ-02 → WGS-84 (iterative inverse)."""
    return convert(lat, lon, "gcj02", "wgs84")


def gcj02_to_bd09(lat: float, lon: float) -> tuple[float, float]:
    """GCJ-02 → BD-09."""
    return convert(lat, lon, "gcj02", "bd09")


def bd09_to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    """BD-09 → GCJ-02 (iterative inverse)."""
    return convert(lat, lon, "bd09", "gcj02")


def wgs84_to_bd09(lat: float, lon: float) -> tuple[float, float]:
    """WGS-84 → BD-09."""
    return convert(lat, lon, "wgs84", "bd09")


def bd09_to_wgs84(lat: float, lon: float) -> tuple[float, float]:
    """BD-09 → WGS-84."""
    return convert(lat, lon, "bd09", "wgs84")


def transform_geometry(geom: BaseGeometry, src: str, dst: str) -> BaseGeometry:
    """A shapely geometry (lon, lat order) converted between coordinate systems, vertex by vertex."""
    if src == dst:
        return geom

    def fn(coords: np.ndarray) -> np.ndarray:
        x, y = convert_arrays(coords[:, 0], coords[:, 1], src, dst)
        return np.column_stack([x, y])

    return shapely.transform(geom, fn)
