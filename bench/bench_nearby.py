"""nearby_tasks: p95 latency of the task-hall query (tasks.service.nearby, 5 km, 50 rows) at 100,000 published tasks.

An absolute goal (p95 <= 20 ms), no baseline: a ratio against the same query with its indexes disabled only says
that indexes help, which nobody doubts.
"""
from __future__ import annotations

import json
import random
import time

from bench.common import figure, pct, scale, summary, use_bench_database
from bench.seed import CITIES, published_tasks
from core.db import get_engine, new_session
from tasks import service

QUERIES = 400


def _time_queries(db, points) -> list[float]:

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
        _time_queries(db, points[:50])  # warm the cache
        ours = _time_queries(db, points)
    finally:
        db.rollback()
        db.close()
    return {"nearby_tasks": figure(pct(ours, 95), "ms", None, bigger_is_better=False,
                                   goal=f"p95 <= 20 ms at {n} tasks", at_most=20,
                                   detail={k + "_ms": round(v, 2) for k, v in summary(ours).items()})}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
