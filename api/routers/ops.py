"""Ops views: the heatmap."""
from __future__ import annotations

from typing import Annotated, Literal

import hashlib

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from api.deps import HeatmapReadDb, Ops, StatsReadDb
from core.bounds import BoundedDatetime
from heatmap import ops as ops_views
from heatmap import service as heatmap

router = APIRouter(prefix="/v1/ops", tags=["ops"])


@router.get("/heatmap")
def heatmap_cells(ops: Ops, db_session: HeatmapReadDb, bbox: str, res: Annotated[int, Query(ge=5, le=9)] = 8,
                  metric: str = "checkins",
                  from_: Annotated[BoundedDatetime | None, Query(alias="from")] = None,
                  to: BoundedDatetime | None = None, crs: Literal["wgs84", "gcj02", "bd09"] = "wgs84") -> dict:
    """H3 cells in a viewport with every measure over a time range (cells seen by < k workers hidden)."""
    since, until = ops_views.heatmap_window(from_, to)
    cells = heatmap.query(db_session=db_session, bbox=heatmap.parse_bbox(bbox, crs), res=res, metric=metric,
                          since=since, until=until)
    return heatmap.feature_collection(cells, metric, res, crs)


@router.get("/tiles/{z}/{x}/{y}.mvt", response_class=Response, responses={
    200: {"content": {"application/vnd.mapbox-vector-tile": {"schema": {"type": "string", "format": "binary"}}}},
    304: {"description": "Not modified (If-None-Match)"}})
def tile(z: Annotated[int, Path(ge=0, le=30)], x: Annotated[int, Path(ge=0, le=2**30)],
         y: Annotated[int, Path(ge=0, le=2**30)], ops: Ops, db_session: HeatmapReadDb, request: Request,
         metric: str = "checkins",
         days: Annotated[int, Query(ge=1, le=90)] = 7) -> Response:
    """Vector tile of the heatmap (ST_AsMVT), resolution chosen from the zoom; ETag and a short cache."""
    since, until = ops_views.tile_window(days)
    data = heatmap.mvt_tile(db_session=db_session, z=z, x=x, y=y, metric=metric, since=since, until=until)
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=60"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="application/vnd.mapbox-vector-tile", headers=headers)


@router.get("/stats")
def stats(ops: Ops, db_session: StatsReadDb, from_: Annotated[BoundedDatetime | None, Query(alias="from")] = None,
          to: BoundedDatetime | None = None) -> dict:
    """Totals and rates per task type, and check-in/flag rates per region (k-anonymous)."""
    return ops_views.stats(db_session=db_session, ops=ops, since=from_, until=to)
