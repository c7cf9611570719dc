"""Ops views: the heatmap."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from api.deps import DbSession, Ops
from geo import heatmap

router = APIRouter(prefix="/v1/ops", tags=["ops"])


@router.get("/heatmap")
def heatmap_cells(ops: Ops, db_session: DbSession, bbox: str, res: Annotated[int, Query(ge=5, le=9)] = 8,
                  metric: Literal["checkins", "workers", "spoof_flags", "duplicate_flags"] = "checkins",
                  from_: Annotated[AwareDatetime | None, Query(alias="from")] = None,
                  to: AwareDatetime | None = None, crs: Literal["wgs84", "gcj02", "bd09"] = "wgs84") -> dict:
    """H3 cells in a viewport with a metric over a time range (cells seen by < k workers are hidden)."""
    until = to or datetime.now(timezone.utc)
    since = from_ or until - timedelta(days=7)
    cells = heatmap.query(db_session=db_session, bbox=heatmap.parse_bbox(bbox, crs), res=res, metric=metric,
                          since=since, until=until)
    return heatmap.feature_collection(cells, metric, res, crs)
