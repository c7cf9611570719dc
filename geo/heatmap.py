"""Heatmap roll-ups and queries. The roll-up reads check-ins past a watermark, so it is incremental and,
holding the watermark row locked for its transaction, safe to run twice or on several hosts."""
from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import and_, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from checkin.models import Checkin
from core.errors import InvalidInput
from geo import crs as geocrs
from geo import h3cells
from geo.models import HeatCellHour, HeatCellWorkerDay, RollupState

SPOOF_CODES = {"mock_location", "accuracy_zero", "impossible_travel", "exact_coordinate_repeat", "constant_fix_fields",
               "at_fence_center"}
METRICS = ("checkins", "workers", "spoof_flags", "duplicate_flags")
DEFAULT_K = 5  # cells seen by fewer distinct workers are hidden so no one's movements can be read off the map
MAX_CELLS = 20_000


def _state(db_session: Session, name: str) -> RollupState:
    db_session.execute(insert(RollupState).values(name=name, last_id=0).on_conflict_do_nothing())
    return db_session.scalar(select(RollupState).where(RollupState.name == name).with_for_update())


def roll_up(*, db_session: Session, batch: int = 20_000) -> int:
    """Fold check-ins past the watermark into the per-cell-hour tables; returns how many were read."""
    state = _state(db_session, "checkin")
    rows = db_session.execute(select(Checkin.id, Checkin.h3_r9, Checkin.server_time, Checkin.worker_id,
                                     Checkin.reasons, Checkin.lat, Checkin.lon)
                              .where(Checkin.id > state.last_id).order_by(Checkin.id).limit(batch)).all()
    if not rows:
        db_session.commit()
        return 0
    counts: Counter = Counter()
    workers = set()
    for _, r9, at, worker_id, reasons, lat, lon in rows:
        base = r9 if r9 is not None else h3cells.cell(lat, lon)
        hour = at.replace(minute=0, second=0, microsecond=0)
        spoof, dup = int(bool(SPOOF_CODES & set(reasons))), int("duplicate_evidence" in reasons)
        for res in h3cells.ROLLUP_RES:
            c = base if res == h3cells.BASE_RES else h3cells.parent(base, res)
            counts[(res, c, hour, "checkins")] += 1
            counts[(res, c, hour, "spoof_flags")] += spoof
            counts[(res, c, hour, "duplicate_flags")] += dup
            workers.add((res, c, hour.date(), worker_id))
    _upsert(db_session, counts)
    db_session.execute(insert(HeatCellWorkerDay).values(
        [{"res": r, "cell": c, "day": d, "worker_id": w} for r, c, d, w in workers]).on_conflict_do_nothing())
    state.last_id = rows[-1][0]
    db_session.commit()
    return len(rows)


def _upsert(db_session: Session, counts: Counter) -> None:
    cells: dict[tuple, dict] = {}
    for (res, c, hour, metric), n in counts.items():
        row = cells.setdefault((res, c, hour), {"res": res, "cell": c, "hour": hour, "checkins": 0, "spoof_flags": 0,
                                                "duplicate_flags": 0})
        row[metric] += n
    for row in cells.values():
        row["lat"], row["lon"] = h3cells.centre(row["cell"])
    stmt = insert(HeatCellHour).values(list(cells.values()))
    db_session.execute(stmt.on_conflict_do_update(
        index_elements=["res", "cell", "hour"],
        set_={m: getattr(HeatCellHour, m) + getattr(stmt.excluded, m) for m in ("checkins", "spoof_flags",
                                                                             "duplicate_flags")}))


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


def query(*, db_session: Session, bbox: tuple[float, float, float, float], res: int, metric: str,
          since: datetime, until: datetime, k: int = DEFAULT_K) -> list[tuple[int, int, int]]:
    """(cell, value, distinct workers) for cells in the viewport, hiding cells seen by fewer than k workers."""
    if metric not in METRICS:
        raise InvalidInput(f"metric must be one of {', '.join(METRICS)}.", code="invalid_metric")
    if res not in h3cells.ROLLUP_RES:
        raise InvalidInput(f"res must be one of {h3cells.ROLLUP_RES}.", code="invalid_resolution")
    min_lon, min_lat, max_lon, max_lat = bbox
    in_view = and_(HeatCellHour.res == res, HeatCellHour.hour >= since, HeatCellHour.hour < until,
                   HeatCellHour.lon.between(min_lon, max_lon), HeatCellHour.lat.between(min_lat, max_lat))
    totals = select(HeatCellHour.cell, func.sum(HeatCellHour.checkins).label("checkins"),
                    func.sum(HeatCellHour.spoof_flags).label("spoof_flags"),
                    func.sum(HeatCellHour.duplicate_flags).label("duplicate_flags")) \
        .where(in_view).group_by(HeatCellHour.cell).subquery()
    people = select(HeatCellWorkerDay.cell, func.count(func.distinct(HeatCellWorkerDay.worker_id)).label("workers")) \
        .where(HeatCellWorkerDay.res == res, HeatCellWorkerDay.day >= since.date(), HeatCellWorkerDay.day <= until.date(),
               HeatCellWorkerDay.cell.in_(select(totals.c.cell))) \
        .group_by(HeatCellWorkerDay.cell).subquery()
    value = people.c.workers if metric == "workers" else getattr(totals.c, metric)
    stmt = (select(totals.c.cell, value, people.c.workers).join(people, people.c.cell == totals.c.cell)
            .where(people.c.workers >= k).limit(MAX_CELLS))
    return [(int(c), int(v), int(w)) for c, v, w in db_session.execute(stmt)]


def feature_collection(cells: list[tuple[int, int, int]], metric: str, res: int, crs: str) -> dict:
    """GeoJSON (RFC 7946) FeatureCollection of hexagons, coordinates in ``crs``."""
    import numpy as np

    features = []
    for c, value, workers in cells:
        ring = np.asarray(h3cells.ring(c))
        if crs != "wgs84":
            x, y = geocrs.convert_arrays(ring[:, 0], ring[:, 1], "wgs84", crs)
            ring = np.column_stack([x, y])
        features.append({"type": "Feature", "id": h3cells.h3_str(c),
                         "geometry": {"type": "Polygon", "coordinates": [ring.round(7).tolist()]},
                         "properties": {"cell": h3cells.h3_str(c), "res": res, metric: value, "workers": workers}})
    return {"type": "FeatureCollection", "features": features, "metric": metric, "crs": crs}


def zoom_to_res(z: int) -> int:
    """H3 resolution whose hexagons read well at a web-map zoom (about 10-40 px across)."""
    return max(5, min(9, round(z * 0.55 - 0.5)))


def tile_bbox(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """WGS-84 (min_lon, min_lat, max_lon, max_lat) of an XYZ web-mercator tile."""
    import math

    n = 2 ** z

    def lat(yy: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * yy / n))))

    return x / n * 360 - 180, lat(y + 1), (x + 1) / n * 360 - 180, lat(y)


def mvt_tile(*, db_session: Session, z: int, x: int, y: int, metric: str, since: datetime, until: datetime) -> bytes:
    """A Mapbox Vector Tile of the visible cells, built by PostGIS (ST_AsMVT) from the roll-ups."""
    from sqlalchemy import text

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
    wkts = ["POLYGON((" + ",".join(f"{lon} {lat}" for lon, lat in h3cells.ring(c)) + "))" for c, _, _ in cells]
    sql = text("""
        SELECT ST_AsMVT(q, 'cells', 4096, 'geom') FROM (
            SELECT ST_AsMVTGeom(ST_Transform(ST_GeomFromText(w, 4326), 3857), ST_TileEnvelope(:z, :x, :y)) AS geom,
                   c AS cell, v AS value
            FROM unnest(CAST(:wkts AS text[]), CAST(:cells AS text[]), CAST(:vals AS bigint[])) AS t(w, c, v)
        ) q WHERE geom IS NOT NULL""")
    data = db_session.scalar(sql, {"z": z, "x": x, "y": y, "wkts": wkts, "cells": [h3cells.h3_str(c) for c, _, _ in cells],
                                   "vals": [v for _, v, _ in cells]})
    return bytes(data or b"")


def pending(*, db_session: Session) -> int:
    """Check-ins not yet folded into the roll-ups."""
    last = db_session.scalar(select(RollupState.last_id).where(RollupState.name == "checkin")) or 0
    return db_session.scalar(select(func.count()).select_from(Checkin).where(Checkin.id > last)) or 0


def regions(*, db_session: Session, since: datetime, until: datetime, k: int = DEFAULT_K) -> list[dict]:
    """Per resolution-5 region (~250 km²): check-ins and flag rates, regions with fewer than k workers hidden."""
    rows = db_session.execute(
        select(HeatCellHour.cell, func.sum(HeatCellHour.checkins), func.sum(HeatCellHour.spoof_flags),
               func.sum(HeatCellHour.duplicate_flags))
        .where(HeatCellHour.res == 5, HeatCellHour.hour >= since, HeatCellHour.hour < until)
        .group_by(HeatCellHour.cell)).all()
    people = dict(db_session.execute(
        select(HeatCellWorkerDay.cell, func.count(func.distinct(HeatCellWorkerDay.worker_id)))
        .where(HeatCellWorkerDay.res == 5, HeatCellWorkerDay.day >= since.date(), HeatCellWorkerDay.day <= until.date())
        .group_by(HeatCellWorkerDay.cell)).all())
    out = []
    for c, n, spoof, dup in rows:
        if people.get(c, 0) >= k:
            lat, lon = h3cells.centre(c)
            out.append({"region": h3cells.h3_str(c), "lat": round(lat, 5), "lon": round(lon, 5), "checkins": int(n),
                        "workers": people[c], "spoof_rate": round(spoof / n, 4), "duplicate_rate": round(dup / n, 4)})
    return sorted(out, key=lambda r: -r["checkins"])
