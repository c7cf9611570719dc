"""PgBouncer (transaction mode) in front of PostgreSQL: what it costs and what it saves (README, Scale-out).

``unprepared_statement_cost``: Debian 12's PgBouncer 1.18 cannot follow protocol-level prepared statements, so
behind it psycopg runs with ``prepare_threshold=None``. Figure: the task-hall query (tasks.service.nearby) and an
auth-style primary-key read, direct to PostgreSQL, unprepared vs psycopg's default (prepared from the 6th run).
``pgbouncer_hall``: the task hall over HTTP from 4 uvicorn workers with a pool of 16 each, through the bouncer
(16 server connections) vs straight to PostgreSQL, with wrk; the detail has the most PostgreSQL connections seen.
"""
from __future__ import annotations

import json
import os
import random
import statistics
import sys
import threading
import time
from contextlib import contextmanager

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from accounts import service as accounts
from bench import wrk
from bench.common import figure, scale, server, use_bench_database
from bench.seed import CITIES, published_tasks
from core import localservices
from core.localscale import Bouncer, on_local_cluster
from tasks import service

QUERIES = 1000
ROUNDS = 10
PASSWORD = "bench-password-1"
WRK_S = 10.0


def _points(n: int, seed: int = 7) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [(c[0] + rng.uniform(-0.2, 0.2), c[1] + rng.uniform(-0.2, 0.2))
            for c in (rng.choice(CITIES) for _ in range(n))]


def _time(db: Session, points, user_id: int) -> tuple[float, float]:
    """Median ms of the hall query and of a primary-key read over ``points``, on one connection."""
    hall, pk = [], []
    for lon, lat in points:
        t = time.perf_counter()
        service.nearby(db_session=db, lat=lat, lon=lon, crs="wgs84", radius_m=5000, limit=50)
        t2 = time.perf_counter()
        db.execute(text("SELECT * FROM app_user WHERE id = :id"), {"id": user_id}).one()
        hall.append((t2 - t) * 1000)
        pk.append((time.perf_counter() - t2) * 1000)
    return statistics.median(hall), statistics.median(pk)


def _prepare_cost(url: str) -> dict:
    """Prepared and unprepared in alternating rounds on two warm connections (a busy machine drifts over time);
    the figure is the median over rounds."""
    engines = [create_engine(url), create_engine(url, connect_args={"prepare_threshold": None})]
    sessions = [Session(e) for e in engines]
    user_id = sessions[0].execute(text("SELECT min(id) FROM app_user")).scalar_one()
    points = _points(QUERIES)
    for db in sessions:
        _time(db, points[:50], user_id)  # warm-up: caches, and psycopg's prepare threshold
    rounds = [[_time(db, points[i::ROUNDS], user_id) for db in sessions] for i in range(ROUNDS)]
    for db, engine in zip(sessions, engines):
        db.rollback()
        db.close()
        engine.dispose()
    (hall_p, pk_p), (hall_u, pk_u) = [[statistics.median(r[k][j] for r in rounds) for j in (0, 1)] for k in (0, 1)]
    print(f"[bench_pgbouncer] median ms prepared hall {hall_p:.3f} pk {pk_p:.3f}; unprepared hall {hall_u:.3f} "
          f"pk {pk_u:.3f}", file=sys.stderr)
    return {"unprepared_statement_cost": figure(
        hall_u, "ms", hall_p, False, "reference: task-hall query median unprepared (behind PgBouncer 1.18) vs prepared",
        detail={"hall_prepared_ms": round(hall_p, 3), "hall_unprepared_ms": round(hall_u, 3),
                "pk_read_prepared_ms": round(pk_p, 3), "pk_read_unprepared_ms": round(pk_u, 3), "rounds": ROUNDS})}


@contextmanager
def _max_connections(url: str, dbname: str):
    """Samples PostgreSQL's client connections to ``dbname`` while the block runs; yields a dict with 'max'."""
    seen, stop = {"max": 0}, threading.Event()
    engine = create_engine(url)

    def sample() -> None:
        with engine.connect() as conn:
            while not stop.is_set():
                n = conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND backend_type = "
                                      "'client backend' AND pid <> pg_backend_pid()"), {"d": dbname}).scalar_one()
                conn.rollback()
                seen["max"] = max(seen["max"], n)
                stop.wait(0.1)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield seen
    finally:
        stop.set()
        t.join()
        engine.dispose()


def _hall_run(url: str, reqs: list[wrk.Req], via_bouncer: bool) -> tuple[wrk.WrkResult, int]:
    os.environ["FIELDPROOF_PGBOUNCER"] = "1" if via_bouncer else "0"
    try:
        with server("api.app:app", workers=4) as base:
            wrk.run(base, reqs[:2000], 2)  # warm-up: pools filled, caches warm
            with _max_connections(url, url.rsplit("/", 1)[1]) as seen:
                result = wrk.run(base, reqs[2000:], WRK_S)
    finally:
        os.environ.pop("FIELDPROOF_PGBOUNCER", None)
    return result, seen["max"]


def _worker(url: str) -> str:
    """A new worker in the bench database; returns its username."""
    engine = create_engine(url)
    name = f"bench_pgb_{random.randrange(10**9)}"
    with Session(engine) as db:
        accounts.create(db_session=db, username=name, password=PASSWORD, role="worker", self_service=False)
    engine.dispose()
    return name


def _hall_requests(token: str) -> list[wrk.Req]:
    headers = {"Authorization": f"Bearer {token}"}
    return [wrk.Req("GET", f"/v1/tasks/nearby?lat={lat:.5f}&lon={lon:.5f}&radius_m=5000", headers)
            for lon, lat in _points(40_000, seed=11)]


def run() -> dict:
    """Seed (once) and measure both figures."""
    url = use_bench_database()
    seeding = create_engine(url)
    with seeding.begin() as conn:
        published_tasks(conn, int(100_000 * scale()))
    seeding.dispose()  # an idle pooled connection would count among the connections measured below
    out = _prepare_cost(url)
    if not on_local_cluster(url):  # the bouncer fronts the local cluster only
        return out
    Bouncer(localservices.LocalServices.from_settings()).up()
    reqs = _hall_requests(_token(_worker(url)))
    direct, direct_max = _hall_run(url, reqs, via_bouncer=False)
    pooled, pooled_max = _hall_run(url, reqs, via_bouncer=True)
    print(f"[bench_pgbouncer] hall direct {direct.req_per_s:.0f} req/s (max {direct_max} connections), via bouncer "
          f"{pooled.req_per_s:.0f} req/s (max {pooled_max})", file=sys.stderr)
    out["pgbouncer_hall"] = figure(pooled.req_per_s, "req/s", direct.req_per_s, True,
                                   "reference: 4 workers x pool 16 through PgBouncer (16 server connections) vs direct",
                                   errors=pooled.failed + direct.failed,
                                   detail={"via_bouncer": pooled.detail(), "direct": direct.detail(),
                                           "max_pg_connections_via_bouncer": pooled_max,
                                           "max_pg_connections_direct": direct_max})
    return out


def _token(username: str) -> str:
    with server("api.app:app", workers=1) as base:
        r = httpx.post(base + "/v1/auth/token", data={"username": username, "password": PASSWORD})
        r.raise_for_status()
        return r.json()["access_token"]


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
