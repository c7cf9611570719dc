"""Ops' views over the heatmap: their default time windows, and the stats per task type and region."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from accounts.models import User
from core.models import utcnow
from heatmap import service as heatmap
from tasks import reviews

HEATMAP_DAYS = 7  # the heatmap shows the last week unless asked otherwise
STATS_DAYS = 30  # stats compare task types over a month: a week has too few claims per type


def heatmap_window(since: datetime | None, until: datetime | None, *,
                   now: datetime | None = None) -> tuple[datetime, datetime]:
    """(since, until) for the heatmap: up to now, the last HEATMAP_DAYS unless given."""
    until = until or now or utcnow()
    return since or until - timedelta(days=HEATMAP_DAYS), until


def tile_window(days: int, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """(since, until) for a tile: ``days`` up to the end of the current hour, so a tile's ETag holds for the hour."""
    until = (now or utcnow()).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return until - timedelta(days=days), until


def stats_window(since: datetime | None, until: datetime | None, *,
                 now: datetime | None = None) -> tuple[datetime, datetime]:
    """(since, until) for the stats: up to an hour ahead (clock skew), the last STATS_DAYS unless given."""
    until = until or (now or utcnow()) + timedelta(hours=1)
    return since or until - timedelta(days=STATS_DAYS), until


def stats(*, db_session: Session, ops: User, since: datetime | None, until: datetime | None) -> dict:
    """Totals and rates per task type, and check-in/flag rates per region (k-anonymous)."""
    since, until = stats_window(since, until)
    by_region = heatmap.regions(db_session=db_session, since=since, until=until)
    return {"from": since, "to": until,
            "by_type": reviews.stats_by_type(db_session=db_session, ops=ops, since=since, until=until),
            "by_region": list(by_region), "regions_hidden": by_region.hidden, "k": by_region.k}
