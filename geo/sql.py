"""SQL expressions for PostGIS (bound parameters, never string-built SQL)."""
from __future__ import annotations

from geoalchemy2 import Geography
from sqlalchemy import cast, func


def point_geog(lon: float, lat: float):
    """A WGS-84 geography point from bound lon/lat values."""
    return cast(func.ST_SetSRID(func.ST_MakePoint(lon, lat), 4326), Geography(srid=4326))
