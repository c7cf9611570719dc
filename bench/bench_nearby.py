"""nearby_tasks: p95 of the task-hall query at 100,000 published tasks.

Baseline: the same query with index scans disabled (a sequential scan and sort), same data, same run.
"""
from __future__ import annotations

import json
import random
import time

from sqlalchemy import text

from bench.common import figure, pct, scale, use_bench_database
from bench.seed import CITIES, published_tasks
from core.db import get_engine, new_session
from tasks import service

QUERIES = 400


def _time_queries(db, points, *, use_index: bool) -> list[float]:
    db.execute(text("SET enable_indexscan = " + ("on" if use_index else "off")))
    db.execute(text("SET enable_bitmapscan = " + ("on" if use_index else "off")))
    out = []
    for lon, lat in points:
        t = time.perf_counter()
        service.nearby(db_session=db, lat=lat, lon=lon, crs="wgs84", radius_m=5000, limit=50)
        out.append((time.perf_counter() - t) * 1000)
    return out


def run() -> dict:
    """Seed (once) and measure."""
    use_bench_database()

    n = int(100_000 * scale())
    with get_engine().begin() as conn:
        published_tasks(conn, n)
    rng = random.Random(7)
    points = [(c[0] + rng.uniform(-0.2, 0.2), c[1] + rng.uniform(-0.2, 0.2))
              for c in (rng.choice(CITIES) for _ in range(QUERIES))]
    db = new_session()
    try:
        _time_queries(db, points[:50], use_index=True)  # warm the cache
        ours = _time_queries(db, points, use_index=True)
        base = _time_queries(db, points[: QUERIES // 4], use_index=False)
    finally:
        db.rollback()
        db.close()
    return {"nearby_tasks": figure(pct(ours, 95), "ms", pct(base, 95), bigger_is_better=False,
                                   goal=f"p95 <= 20 ms at {n} tasks", at_most=20)}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
