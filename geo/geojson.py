"""GeoJSON output per RFC 7946: exterior rings counter-clockwise, holes clockwise, in the requested crs."""
from __future__ import annotations

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
