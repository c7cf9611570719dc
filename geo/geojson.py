"""GeoJSON output per RFC 7946: exterior rings counter-clockwise, holes clockwise, in the requested crs."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import shapely
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from geo import crs as geocrs


def fence_geojson(geom: BaseGeometry, crs: str = "wgs84") -> dict[str, Any]:
    """A WGS-84 shapely geometry as a GeoJSON geometry dict in ``crs`` with RFC 7946 winding."""
    if crs != "wgs84":
        geom = geocrs.transform_geometry(geom, "wgs84", crs)
    return mapping(shapely.orient_polygons(geom, exterior_cw=False))


# Fences rendered from their stored bytes, kept per process: the task hall draws the same nearby fences request
# after request, and converting one 65-vertex fence to GCJ-02 costs ~0.2 ms (a page of 50 tasks: ~12 ms of CPU).
FENCE_CACHE_SIZE = 1024  # ~9 KB an entry in GCJ-02 (a 65-vertex circle), so ~9 MB a process when full


def _frozen(value: Any) -> Any:
    """Lists as tuples, all the way down: a cached GeoJSON that no caller can change for the next one."""
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


@lru_cache(maxsize=FENCE_CACHE_SIZE)
def _fence_geojson_of(wkb: bytes | str, crs: str) -> dict[str, Any]:
    return {k: _frozen(v) for k, v in fence_geojson(shapely.from_wkb(wkb), crs).items()}


def fence_geojson_of_wkb(wkb: bytes | memoryview | str, crs: str = "wgs84") -> dict[str, Any]:
    """``fence_geojson`` of a geometry given as (E)WKB bytes or hex, as PostGIS returns it; cached by those bytes
    and the crs (the same bytes are the same fence), a fresh dict each call."""
    return dict(_fence_geojson_of(bytes(wkb) if isinstance(wkb, memoryview) else wkb, crs))
