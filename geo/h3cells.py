"""H3 cells (the `h3` package; this PostGIS has no h3 extension). Pure."""
from __future__ import annotations

import math

import h3

BASE_RES = 9  # ~0.1 km² cells: a block; coarser levels are parents of this one
ROLLUP_RES = (5, 6, 7, 8, 9)


def cell(lat: float, lon: float, res: int = BASE_RES) -> int:
    """The H3 cell of a WGS-84 point as a 64-bit int."""
    return h3.str_to_int(h3.latlng_to_cell(lat, lon, res))


def parent(cell_int: int, res: int) -> int:
    """The ancestor of a cell at a coarser resolution."""
    return h3.str_to_int(h3.cell_to_parent(h3.int_to_str(cell_int), res))


def centre(cell_int: int) -> tuple[float, float]:
    """(lat, lon) of a cell's centre."""
    return h3.cell_to_latlng(h3.int_to_str(cell_int))


def ring(cell_int: int) -> list[tuple[float, float]]:
    """The cell boundary as a closed (lon, lat) ring, counter-clockwise (RFC 7946 exterior)."""
    pts = [(lng, lat) for lat, lng in h3.cell_to_boundary(h3.int_to_str(cell_int))]
    area2 = sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(pts, pts[1:] + pts[:1]))
    if area2 < 0:
        pts.reverse()
    return pts + [pts[0]]


def h3_str(cell_int: int) -> str:
    """The usual hex string of a cell."""
    return h3.int_to_str(cell_int)


def cells_in_bbox(bbox: tuple[float, float, float, float], res: int, limit: int) -> list[int] | None:
    """Cells whose centre lies in a WGS-84 (min_lon, min_lat, max_lon, max_lat) box, or None past ``limit``."""
    min_lon, min_lat, max_lon, max_lat = bbox
    km_per_deg = 111.32
    area = (max_lat - min_lat) * km_per_deg * (max_lon - min_lon) * km_per_deg * math.cos(math.radians(
        (min_lat + max_lat) / 2))
    if area / h3.average_hexagon_area(res, "km^2") > limit:
        return None
    poly = h3.LatLngPoly([(min_lat, min_lon), (min_lat, max_lon), (max_lat, max_lon), (max_lat, min_lon)])
    return [h3.str_to_int(c) for c in h3.polygon_to_cells(poly, res)]
