"""Heatmap queries over the roll-ups (heatmap.rollup maintains them): GeoJSON cells, vector tiles, region stats.

A range reads whole UTC days from the day table and only its ragged ends from the hour table, so a week
costs ~7 + 46 rows per cell rather than 168. Cells are hidden unless some single hour or day in the range
saw at least k distinct workers: a lower bound of the range's distinct workers, so suppression errs towards
hiding (a cell visited by k workers over a week but never k in one day stays hidden).
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Select,
    any_,
    cast,
    func,
    select,
    text,
    union_all,
)
from sqlalchemy.orm import Session

from core.config import get_settings
from core.errors import InvalidInput
from geo import crs as geocrs
from geo import dwell, h3cells
from heatmap.models import HeatCellDay, HeatCellHour
from heatmap.rollup import COUNTS, catch_up, pending, roll_up  # noqa: F401  (the roll-up verbs live beside the queries' users)

METRICS = ("checkins", "workers", "completions", "rejections", "spot_check_failures", "duplicate_flags",
           "spoof_flags", "median_dwell_s")
# What each metric counts, for legends: a count of check-ins, of distinct workers, of claims, or seconds.
UNITS = {"checkins": "checkins", "workers": "workers", "completions": "claims", "rejections": "claims",
         "spot_check_failures": "claims", "duplicate_flags": "claims", "spoof_flags": "checkins",
         "median_dwell_s": "seconds"}
MAX_CELLS = 20_000
DAY = timedelta(days=1)


class Cells(list):
    """Visible cells, and how many more had data but were hidden (seen by fewer than ``k`` workers)."""

    def __init__(self, items=(), hidden: int = 0, k: int = 0) -> None:
        super().__init__(items)
        self.hidden, self.k = hidden, k


def parse_bbox(bbox: str, crs: str) -> tuple[float, float, float, float]:
    """'minlon,minlat,maxlon,maxlat' in ``crs`` → WGS-84 (min_lon, min_lat, max_lon, max_lat)."""
    try:
        a, b, c, d = (float(x) for x in bbox.split(","))
    except ValueError:
        raise InvalidInput("bbox must be minlon,minlat,maxlon,maxlat.", code="invalid_bbox")
    if not (a < c and b < d):
        raise InvalidInput("bbox must have min < max.", code="invalid_bbox")
    lat1, lon1 = geocrs.to_wgs84(b, a, crs)
    lat2, lon2 = geocrs.to_wgs84(d, c, crs)
    return lon1, lat1, lon2, lat2


def _periods(since: datetime, until: datetime) -> list[tuple[type, object, object]]:
    """(table, from, to) pieces covering [since, until): whole UTC days, hours at the ragged ends."""
    since = since.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    until = until.astimezone(timezone.utc)
    first_day = since.replace(hour=0)
    if first_day < since:
        first_day += DAY
    last_day = until.replace(hour=0, minute=0, second=0, microsecond=0)
    if first_day >= last_day:
        return [(HeatCellHour, since, until)]
    pieces = [(HeatCellDay, first_day.date(), last_day.date())]
    if since < first_day:
        pieces.append((HeatCellHour, since, first_day))
    if last_day < until:
        pieces.append((HeatCellHour, last_day, until))
    return pieces


def _piece(model, lo, hi, res: int, bbox, cells: list[int] | None, with_dwell: bool) -> Select:
    period = model.hour if model is HeatCellHour else model.day
    cols = [model.cell, *(getattr(model, m) for m in COUNTS), model.workers]
    where = [model.res == res, period >= lo, period < hi]
    if cells is not None:  # the viewport's own cells: primary-key lookups instead of every cell in the period
        where.append(model.cell == any_(cast(cells, ARRAY(BigInteger))))
    elif bbox is not None:
        min_lon, min_lat, max_lon, max_lat = bbox
        where += [model.lon.between(min_lon, max_lon), model.lat.between(min_lat, max_lat)]
    return select(*cols, *([model.dwell_hist] if with_dwell else [])).where(*where)


def measures(*, db_session: Session, res: int, since: datetime, until: datetime,
             bbox: tuple[float, float, float, float] | None = None, k: int | None = None,
             with_dwell: bool = False) -> Cells:
    """Every measure per cell over [since, until), cells seen by fewer than k workers hidden (and counted)."""
    if res not in h3cells.ROLLUP_RES:
        raise InvalidInput(f"res must be one of {h3cells.ROLLUP_RES}.", code="invalid_resolution")
    if until <= since:
        raise InvalidInput("'from' must be before 'to'.", code="invalid_time_range")
    k = get_settings().heatmap_k if k is None else k
    cells = h3cells.cells_in_bbox(bbox, res, MAX_CELLS) if bbox is not None else None
    if cells == []:
        return Cells(k=k)
    u = union_all(*(_piece(m, lo, hi, res, bbox, cells, with_dwell)
                    for m, lo, hi in _periods(since, until))).subquery()
    workers = func.max(u.c.workers)
    cols = [u.c.cell, *(func.sum(u.c[m]).label(m) for m in COUNTS), workers.label("workers")]
    if with_dwell:
        cols.append(func.hist_sum(u.c.dwell_hist).label("dwell_hist"))
    # No HAVING: the hidden cells are counted too (the page says how many and why); a viewport holds at most
    # MAX_CELLS cells, so the extra rows are bounded.
    stmt = select(*cols).group_by(u.c.cell).limit(2 * MAX_CELLS)
    out = Cells(k=k)
    for row in db_session.execute(stmt).mappings():
        if row["workers"] < k:
            out.hidden += 1
            continue
        cell = {"cell": int(row["cell"]), "workers": int(row["workers"]), **{m: int(row[m]) for m in COUNTS}}
        if with_dwell:
            cell["median_dwell_s"] = dwell.median(row["dwell_hist"] or [])
        out.append(cell)
    return out


def query(*, db_session: Session, bbox: tuple[float, float, float, float], res: int, metric: str,
          since: datetime, until: datetime, k: int | None = None) -> Cells:
    """Cells in the viewport with every measure and ``value`` = the chosen metric (``hidden``: how many not shown)."""
    if metric not in METRICS:
        raise InvalidInput(f"metric must be one of {', '.join(METRICS)}.", code="invalid_metric")
    cells = measures(db_session=db_session, res=res, since=since, until=until, bbox=bbox, k=k,
                     with_dwell=metric == "median_dwell_s")
    for cell in cells:
        cell["value"] = cell[metric]
    return Cells((c for c in cells if c["value"] is not None), hidden=cells.hidden, k=cells.k)


def feature_collection(cells: list[dict], metric: str, res: int, crs: str) -> dict:
    """GeoJSON (RFC 7946) FeatureCollection of hexagons, coordinates in ``crs``, every measure as a property;
    ``hidden`` says how many cells with data were left out because fewer than ``k`` workers were seen there."""
    features = []
    for cell in cells:
        ring = np.asarray(h3cells.ring(cell["cell"]))
        if crs != "wgs84":
            x, y = geocrs.convert_arrays(ring[:, 0], ring[:, 1], "wgs84", crs)
            ring = np.column_stack([x, y])
        name = h3cells.h3_str(cell["cell"])
        features.append({"type": "Feature", "id": name,
                         "geometry": {"type": "Polygon", "coordinates": [ring.round(7).tolist()]},
                         "properties": {**cell, "cell": name, "res": res}})
    return {"type": "FeatureCollection", "features": features, "metric": metric, "metrics": list(METRICS),
            "crs": crs, "k": getattr(cells, "k", 0) or get_settings().heatmap_k,
            "hidden": getattr(cells, "hidden", 0), "units": UNITS}


def zoom_to_res(z: int) -> int:
    """H3 resolution whose hexagons read well at a web-map zoom (about 10-40 px across)."""
    return max(5, min(9, round(z * 0.55 - 0.5)))


def tile_bbox(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """WGS-84 (min_lon, min_lat, max_lon, max_lat) of an XYZ web-mercator tile."""
    n = 2 ** z

    def lat(yy: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * yy / n))))

    return x / n * 360 - 180, lat(y + 1), (x + 1) / n * 360 - 180, lat(y)


def mvt_tile(*, db_session: Session, z: int, x: int, y: int, metric: str, since: datetime, until: datetime) -> bytes:
    """A Mapbox Vector Tile of the visible cells, built by PostGIS (ST_AsMVT) from the roll-ups."""
    if not (0 <= z <= 22 and 0 <= x < 2 ** z and 0 <= y < 2 ** z):
        raise InvalidInput("No such tile.", code="invalid_tile")
    res = zoom_to_res(z)
    min_lon, min_lat, max_lon, max_lat = tile_bbox(z, x, y)
    # Cells whose centre lies just outside still overlap the tile: widen the search by one cell edge.
    pad = 0.02 * 2 ** (9 - res)
    cells = query(db_session=db_session, bbox=(min_lon - pad, min_lat - pad, max_lon + pad, max_lat + pad), res=res,
                  metric=metric, since=since, until=until)
    if not cells:
        return b""
    wkts = ["POLYGON((" + ",".join(f"{lon} {lat}" for lon, lat in h3cells.ring(c["cell"])) + "))" for c in cells]
    sql = text("""
        SELECT ST_AsMVT(q, 'cells', 4096, 'geom') FROM (
            SELECT ST_AsMVTGeom(ST_Transform(ST_GeomFromText(w, 4326), 3857), ST_TileEnvelope(:z, :x, :y)) AS geom,
                   c AS cell, v AS value, n AS workers
            FROM unnest(CAST(:wkts AS text[]), CAST(:cells AS text[]), CAST(:vals AS float8[]), CAST(:ns AS int[]))
                 AS t(w, c, v, n)
        ) q WHERE geom IS NOT NULL""")
    data = db_session.scalar(sql, {"z": z, "x": x, "y": y, "wkts": wkts,
                                   "cells": [h3cells.h3_str(c["cell"]) for c in cells],
                                   "vals": [c["value"] for c in cells], "ns": [c["workers"] for c in cells]})
    return bytes(data or b"")


def regions(*, db_session: Session, since: datetime, until: datetime, k: int | None = None) -> Cells:
    """Per resolution-5 region (~250 km²): totals and rates, regions seen by fewer than k workers hidden."""
    out = []
    found = measures(db_session=db_session, res=5, since=since, until=until, k=k, with_dwell=True)
    for r in found:
        lat, lon = h3cells.centre(r["cell"])
        n, done = r["checkins"], r["completions"] + r["rejections"]
        out.append({"region": h3cells.h3_str(r["cell"]), "lat": round(lat, 5), "lon": round(lon, 5), "checkins": n,
                    "workers": r["workers"], "completions": r["completions"], "rejections": r["rejections"],
                    "spot_check_failures": r["spot_check_failures"], "median_dwell_s": r["median_dwell_s"],
                    "spoof_rate": round(r["spoof_flags"] / n, 4) if n else None,
                    "duplicate_rate": round(r["duplicate_flags"] / n, 4) if n else None,
                    "rejection_rate": round(r["rejections"] / done, 4) if done else None})
    return Cells(sorted(out, key=lambda r: -r["checkins"]), hidden=found.hidden, k=found.k)
