"""PgBouncer (transaction mode) in front of PostgreSQL: what it costs and what it saves (README, Scale-out).

The local bouncer is PgBouncer 1.24 (core.pgbouncer_build; Debian 12's 1.18 only if that build failed), with
``max_prepared_statements``, so psycopg prepares through it as it does direct. Query figures: the task-hall query
(tasks.service.nearby) and an auth-style primary-key read, each run in its own committed transaction (as a request's
would: a rollback makes psycopg drop its prepared statements), on warm connections, the variants interleaved in
rounds (a busy machine drifts over time); each figure is the median over rounds.
``pgbouncer_prepared_query``: the hall query through the bouncer, prepared, vs direct, prepared (the baseline).
``unprepared_statement_cost``: direct, unprepared (what a bouncer without prepared statements forces) vs prepared.
``pgbouncer_hall``: the task hall over HTTP from 4 uvicorn workers with a pool of 16 each, through the bouncer
(16 server connections) vs straight to PostgreSQL, with wrk; the detail has the most PostgreSQL connections seen and
how many of the statements the bouncer forwarded ran prepared.
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
import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from accounts import service as accounts
from bench import wrk
from bench.common import figure, scale, server, use_bench_database
from bench.seed import CITIES, published_tasks
from core import localservices, pgbouncer_build
from core.localscale import Bouncer, on_local_cluster
from core.localservices import PG_SUPERUSER
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
    """Median ms of the hall query and of a primary-key read over ``points``, on one connection, each pair in its
    own transaction (committed outside the timing: through the bouncer the next may meet another server)."""
    hall, pk = [], []
    for lon, lat in points:
        t = time.perf_counter()
        service.nearby(db_session=db, lat=lat, lon=lon, crs="wgs84", radius_m=5000, limit=50)
        t2 = time.perf_counter()
        db.execute(text("SELECT * FROM app_user WHERE id = :id"), {"id": user_id}).one()
        hall.append((t2 - t) * 1000)
        pk.append((time.perf_counter() - t2) * 1000)
        db.commit()
    return statistics.median(hall), statistics.median(pk)


def _query_cost(url: str, bouncer: Bouncer | None) -> dict:
    """Direct and (when given) through the bouncer, each prepared and unprepared, in interleaved rounds."""
    bouncer_url = make_url(url).set(port=bouncer.port).render_as_string(hide_password=False) if bouncer else None
    variants = {"direct_prepared": (url, {}), "direct_unprepared": (url, {"prepare_threshold": None})}
    if bouncer_url:
        variants |= {"bouncer_prepared": (bouncer_url, {}),
                     "bouncer_unprepared": (bouncer_url, {"prepare_threshold": None})}
    engines = {name: create_engine(u, connect_args=args) for name, (u, args) in variants.items()}
    sessions = {name: Session(e) for name, e in engines.items()}
    user_id = sessions["direct_prepared"].execute(text("SELECT min(id) FROM app_user")).scalar_one()
    points = _points(QUERIES)
    for db in sessions.values():
        _time(db, points[:50], user_id)  # warm-up: caches, and psycopg's prepare threshold
    before = _bouncer_stats(bouncer, url) if bouncer_url else {}
    rounds = [{name: _time(db, points[i::ROUNDS], user_id) for name, db in sessions.items()} for i in range(ROUNDS)]
    after = _bouncer_stats(bouncer, url) if bouncer_url else {}
    for db in sessions.values():
        db.rollback()
        db.close()
    for engine in engines.values():
        engine.dispose()
    ms = {name: [statistics.median(r[name][j] for r in rounds) for j in (0, 1)] for name in variants}
    print("[bench_pgbouncer] median ms " + "; ".join(f"{name} hall {h:.3f} pk {p:.3f}" for name, (h, p) in ms.items()),
          file=sys.stderr)
    detail = {f"{name}_{q}_ms": round(ms[name][j], 3) for name in variants for j, q in enumerate(("hall", "pk_read"))}
    detail |= {"rounds": ROUNDS, "points_per_variant": QUERIES}
    if bouncer_url:
        # The bouncer counts a Bind only for a named (prepared) statement: the unprepared variant adds none, so
        # this is how many of the prepared variant's 2 x points_per_variant statements ran prepared through it.
        detail["prepared_executions_via_bouncer"] = int(after["total_bind_count"] - before["total_bind_count"])
        detail["prepares_on_servers"] = int(after["total_server_parse_count"] - before["total_server_parse_count"])
    out = {"unprepared_statement_cost": figure(
        ms["direct_unprepared"][0], "ms", ms["direct_prepared"][0], False,
        "reference: task-hall query median, direct, unprepared (what a bouncer without prepared statements forces) "
        "vs prepared", detail=detail)}
    if bouncer_url:
        out["pgbouncer_prepared_query"] = figure(
            ms["bouncer_prepared"][0], "ms", ms["direct_prepared"][0], False,
            f"reference: task-hall query median through PgBouncer {_bouncer_version()} with prepared statements "
            "vs direct, prepared", detail=detail)
    return out


def _bouncer_version() -> str:
    version = pgbouncer_build.version_of(Bouncer(localservices.LocalServices.from_settings()).exe() or "")
    return ".".join(map(str, version)) if version else "?"


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
    """Seed (once) and measure the figures."""
    url = use_bench_database()
    seeding = create_engine(url)
    with seeding.begin() as conn:
        published_tasks(conn, int(100_000 * scale()))
    seeding.dispose()  # an idle pooled connection would count among the connections measured below
    if not on_local_cluster(url):  # the bouncer fronts the local cluster only
        return _query_cost(url, None)
    bouncer = Bouncer(localservices.LocalServices.from_settings())
    bouncer.up()
    out = _query_cost(url, bouncer if bouncer.prepared_statements() else None)
    reqs = _hall_requests(_token(_worker(url)))
    direct, direct_max = _hall_run(url, reqs, via_bouncer=False)
    before = _bouncer_stats(bouncer, url)
    pooled, pooled_max = _hall_run(url, reqs, via_bouncer=True)
    after = _bouncer_stats(bouncer, url)
    forwarded = {k: int(after[k] - before[k]) for k in ("total_query_count", "total_bind_count",
                                                          "total_server_parse_count")}
    print(f"[bench_pgbouncer] hall direct {direct.req_per_s:.0f} req/s (max {direct_max} connections), via bouncer "
          f"{pooled.req_per_s:.0f} req/s (max {pooled_max}); through the bouncer {forwarded}", file=sys.stderr)
    out["pgbouncer_hall"] = figure(pooled.req_per_s, "req/s", direct.req_per_s, True,
                                   f"reference: 4 workers x pool 16 through PgBouncer {_bouncer_version()} (16 server "
                                   "connections) vs direct",
                                   errors=pooled.failed + direct.failed,
                                   detail={"via_bouncer": pooled.detail(), "direct": direct.detail(),
                                           "max_pg_connections_via_bouncer": pooled_max,
                                           "max_pg_connections_direct": direct_max,
                                           "prepared_statements": bouncer.prepared_statements(),
                                           "statements_via_bouncer": forwarded["total_query_count"],
                                           "prepared_executions_via_bouncer": forwarded["total_bind_count"],
                                           "prepares_on_servers": forwarded["total_server_parse_count"]})
    return out


def _bouncer_stats(bouncer: Bouncer, url: str) -> dict:
    """The bouncer's SHOW STATS row for the bench database (counters since it started; 0 for a row not yet there)."""
    st, dbname = bouncer.svc.state(), make_url(url).database
    with psycopg.connect(host="127.0.0.1", port=bouncer.port, user=PG_SUPERUSER, password=st["pg_password"],
                         dbname="pgbouncer", autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
        cur = conn.execute("SHOW STATS")
        rows = [dict(zip([d.name for d in cur.description], row)) for row in cur.fetchall()]
    row = next((r for r in rows if r["database"] == dbname), {})
    return {k: row.get(k) or 0 for k in ("total_query_count", "total_bind_count", "total_server_parse_count")}


def _token(username: str) -> str:
    with server("api.app:app", workers=1) as base:
        r = httpx.post(base + "/v1/auth/token", data={"username": username, "password": PASSWORD})
        r.raise_for_status()
        return r.json()["access_token"]


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
