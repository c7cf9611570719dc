"""Hot queries on monthly partitions vs the same tables unpartitioned, at the same scale, in the same run.

Two schemas in the bench database hold the same rows: ``bench_flat`` (plain tables, the indexes of the models) and
``bench_month`` (partitioned by month exactly as migration 0014_partitions leaves production, partitions made by
core.partitions). Each query runs with ``search_path`` set to one schema, then the other, so the SQL text is
byte-for-byte the same (``_MEASURE`` is imported from checkin.service; the heatmap window is heatmap.measures).
Claims, tasks and users stay in ``public`` and are shared.

Data: N check-ins (4 M at scale 1; 50 M of the partitioned layout alone: bench_partitions_scale) over
24 months by 50,000 workers around ten cities, one claim audit row per two check-ins, and heatmap hour roll-ups
(cells at res 5-9 of 100 places an hour over the same 24 months). Seeding is set-based SQL (generate_series); the
flat copy is loaded first and the partitioned one from it, indexes built after loading.

Figures (p95 ms; ratio = flat / partitioned, so >= 1 means partitions cost nothing):
- partition_measure: the check-in's measure statement (claim locked, fence distance, history signals), sent as the
  write path sends it (core.flow, prepared once per connection, generic plans: planning is not paid per call);
- partition_heatmap_window: a 23-hour city viewport from the hour roll-ups (res 8);
- partition_nearby: fixes within 300 m of a point in the last 24 h (what a merchant's map of a store shows);
- partition_worker_history: a worker's fixes of the last 30 days, newest first (bounded above at now + a few
  minutes, as every history read in checkin.service is: the months made ahead and the default stay out);
- partition_claim_history: a recent claim's fixes by claim id, bounded from the claim's creation to now as
  checkin.models.of_claim does (a week of slack before, a few minutes after);
- partition_rollup_read: the heatmap fold's next batch past its watermark (id order).
"""
from __future__ import annotations

import json
import random
import time
from datetime import datetime, timedelta, timezone

import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from bench.common import figure, pct, scale, use_bench_database
from bench.seed import CITIES, published_tasks
from checkin.models import CLAIM_FIX_SLACK, FIX_CLOCK_SLACK
from checkin.service import _MEASURE
from core import flow, partitions
from core.db import get_engine, libpq_url
from core.flow import Batch, Stmt, sql
from geo import h3cells
from heatmap import service as heatmap

N_FULL = 4_000_000
WORKERS = 50_000
MONTHS = 24
QUERIES = 200
# Timed rounds (the QUERIES claims are asked again in turn): a p95 of 200 samples moved by more than the two
# layouts differ between runs on this shared machine.
ROUNDS = 1000
SCHEMAS = ("bench_flat", "bench_month")
CHECKIN_INDEXES = ["(worker_id, client_time)", "(device_id, worker_id)", "(ip, server_time)", "(raw_coord_key)",
                   "USING gist (point)", "(claim_id)", "(task_id)"]


def _workers(conn) -> tuple[int, int]:
    """(first id, count) of the bench's worker accounts (one INSERT, password hashes are placeholders)."""
    conn.execute(text("INSERT INTO app_user (username, password_hash, role, display_name) "
                      "SELECT 'pbw' || g, 'x', 'worker', 'w' FROM generate_series(1, :n) g "
                      "ON CONFLICT (username) DO NOTHING"), {"n": WORKERS})
    return conn.execute(text("SELECT min(id), count(*) FROM app_user WHERE username LIKE 'pbw%'")).one()


def _tables(conn, schema: str, partitioned: bool | None = None) -> None:
    """Empty copies of the partitioned tables in a fresh ``schema``: by month (plus a default partition, as
    migration 0014 leaves production) when ``partitioned`` (default: the schema is bench_month), else plain."""
    partitioned = schema == "bench_month" if partitioned is None else partitioned
    conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    conn.execute(text(f"CREATE SCHEMA {schema}"))
    for table, key in partitions.PARTITIONED.items():
        tail = f" PARTITION BY RANGE ({key})" if partitioned else ""
        conn.execute(text(f"CREATE TABLE {schema}.{table} (LIKE public.{table} INCLUDING DEFAULTS "
                          f"INCLUDING CONSTRAINTS){tail}"))
        if partitioned:
            conn.execute(text(f"CREATE TABLE {schema}.{table}_default PARTITION OF {schema}.{table} DEFAULT"))


def _engine(schema: str):
    """An engine whose connections see ``schema`` first (the same SQL text then reads one copy or the other)."""
    return create_engine(get_engine().url, connect_args={"options": f"-c search_path={schema},public"})


def _flow_conn(schema: str) -> psycopg.Connection:
    """A connection like the write path's pool's (core.db.open_flow_pool): the flow's own prepared statements,
    generic plans; its search path sees ``schema`` first."""
    conn = psycopg.connect(libpq_url(get_engine().url.render_as_string(hide_password=False)), prepare_threshold=None,
                           options=f"-c search_path={schema},public -c plan_cache_mode=force_generic_plan")
    flow.prepare_on(conn)
    return conn


def _months(start: datetime, schema: str = "bench_month") -> None:
    """Every month from start to three ahead in ``schema``, made by the production maintenance code."""
    engine = _engine(schema)
    with Session(engine) as db:
        for i in range(MONTHS + 4):
            for table in partitions.PARTITIONED:
                partitions.create_ahead(db, table, partitions.month_start(start, i), months=0)
    engine.dispose()


def _load_flat(conn, n: int, w0: int, tasks: tuple[int, int], start: datetime) -> None:
    """n check-ins in time order over MONTHS months, n/2 audit rows, hour roll-ups, in bench_flat."""
    _load(conn, "bench_flat", n, w0, tasks, start, 1, n)
    _heat(conn, start, "bench_flat", max(10, int(100 * min(1.0, scale()))))


def _load(conn, schema: str, n: int, w0: int, tasks: tuple[int, int], start: datetime, lo: int, hi: int) -> None:
    """Rows lo..hi (1-based) of n check-ins spread in time order over MONTHS 30-day months, and the audit row of
    each 'in' fix (one per two check-ins), into ``schema``; any range of rows is the same rows whatever the chunking
    (the coordinates' jitter aside)."""
    span = MONTHS * 30 * 86400
    lons = "ARRAY[" + ",".join(str(c[0]) for c in CITIES) + "]::float8[]"
    lats = "ARRAY[" + ",".join(str(c[1]) for c in CITIES) + "]::float8[]"
    conn.execute(text(f"""
        WITH c AS (
        INSERT INTO {schema}.checkin (id, claim_id, worker_id, task_id, kind, point, lat, lon, raw_lat, raw_lon,
            raw_crs, raw_coord_key, accuracy_m, accuracy_95_m, provider, device_id, ip, client_time, server_time,
            verdict, distance_m, risk_score, reasons, signals)
        SELECT g, g / 2, w, :t0 + g % :tn, CASE WHEN g % 2 = 0 THEN 'in' ELSE 'out' END,
               CAST(ST_SetSRID(ST_MakePoint(x, y), 4326) AS geography), y, x, y, x, 'wgs84',
               to_char(y, 'FM990.000000') || ',' || to_char(x, 'FM990.000000'), 10, 16, 'gps', 'pbd' || w,
               CAST('10.' || (w % 200) || '.' || (w / 200 % 250) || '.1' AS inet), ts - interval '3 seconds', ts,
               'inside', 0, 0, '{{}}', '[]'
        FROM generate_series(CAST(:lo AS bigint), :hi) g,
             LATERAL (SELECT :w0 + (g * 7919) % :wn AS w,
                             CAST(:start AS timestamptz) + g * (:span / CAST(:n AS float8)) * interval '1 second'
                               AS ts,
                             ({lons})[1 + g % 10] + (random() - 0.5) * 0.4 AS x,
                             ({lats})[1 + g % 10] + (random() - 0.5) * 0.3 AS y) r
        RETURNING id, claim_id, worker_id, kind, server_time)
        INSERT INTO {schema}.claim_event (id, claim_id, from_state, to_state, actor_id, reason, data, at)
        SELECT id / 2 + 1, claim_id, 'claimed', 'checked_in', worker_id, NULL, jsonb_build_object('checkin_id', id),
               server_time
        FROM c WHERE kind = 'in'
    """), {"n": n, "lo": lo, "hi": hi, "t0": tasks[0], "tn": tasks[1], "w0": w0, "wn": WORKERS, "start": start,
           "span": span})


def _heat(conn, start: datetime, schema: str, per_hour: int, months: range = range(MONTHS)) -> None:
    """Hour roll-ups: per_hour places an hour (of 20,000 around Beijing), each at res 5-9, over the given months
    of 30 days (100 an hour over all MONTHS: ~5.8 M rows)."""
    rng = random.Random(11)
    places = []
    for pid in range(20_000):
        r9 = h3cells.cell(CITIES[0][1] + rng.gauss(0, 0.08), CITIES[0][0] + rng.gauss(0, 0.1))
        lat, lon = h3cells.centre(r9)
        places.append({"pid": pid, "r9": r9, "lat": lat, "lon": lon,
                       **{f"r{r}": h3cells.parent(r9, r) for r in (5, 6, 7, 8)}})
    conn.execute(text("CREATE TEMP TABLE place (pid int, r5 bigint, r6 bigint, r7 bigint, r8 bigint, r9 bigint, "
                      "lat float8, lon float8) ON COMMIT DROP"))
    conn.execute(text("INSERT INTO place VALUES (:pid, :r5, :r6, :r7, :r8, :r9, :lat, :lon)"), places)
    h0, h1 = months.start * 30 * 24, months.stop * 30 * 24
    for res in (5, 6, 7, 8, 9):
        conn.execute(text(f"""
            INSERT INTO {schema}.heat_cell_hour (res, cell, hour, lat, lon, checkins, workers)
            SELECT {res}, p.r{res}, CAST(:start AS timestamptz) + h * interval '1 hour', avg(p.lat), avg(p.lon),
                   count(*), count(*)
            FROM generate_series(:h0, :h1 - 1) h CROSS JOIN generate_series(0, :per_hour - 1) k
            JOIN place p ON p.pid = (h * 7919 + k * 197) % 20000
            GROUP BY 1, 2, 3"""), {"start": start, "h0": h0, "h1": h1, "per_hour": per_hour})


def _index(conn, schema: str, month: bool | None = None) -> None:
    """The models' keys and indexes, built after loading (on the parent: PostgreSQL builds one per partition);
    ``month``: keys of the partitioned layout (default: the schema is bench_month)."""
    month = schema == "bench_month" if month is None else month
    conn.execute(text(f"ALTER TABLE {schema}.checkin ADD PRIMARY KEY (id{', server_time' if month else ''})"))
    conn.execute(text(f"ALTER TABLE {schema}.claim_event ADD PRIMARY KEY (id{', at' if month else ''})"))
    conn.execute(text(f"ALTER TABLE {schema}.heat_cell_hour ADD PRIMARY KEY (res, cell, hour)"))
    for cols in CHECKIN_INDEXES:
        conn.execute(text(f"CREATE INDEX ON {schema}.checkin {cols}"))
    conn.execute(text(f"CREATE INDEX ON {schema}.claim_event (claim_id)"))
    conn.execute(text(f"CREATE INDEX ON {schema}.heat_cell_hour (res, hour)"))


def _seeded(conn, n: int) -> bool:
    exists = conn.execute(text("SELECT to_regclass('bench_month.checkin') IS NOT NULL")).scalar()
    return bool(exists) and conn.execute(text(
        "SELECT count(*) FROM bench_month.checkin")).scalar() >= n


def seed(n: int) -> dict:
    """Both schemas with the same n check-ins (skipped when already there); returns timings and sizes."""
    started, engine = time.perf_counter(), get_engine()
    start = partitions.month_start(datetime.now(timezone.utc), -MONTHS + 1)
    with engine.begin() as conn:
        w0, _ = _workers(conn)
        if _seeded(conn, n):
            return {"seeded_s": 0}
        tasks = (published_tasks(conn, 2000), 2000)
        t0 = conn.execute(text("SELECT min(id) FROM task WHERE title LIKE 'bench %'")).scalar()
        for schema in SCHEMAS:
            _tables(conn, schema)
    _months(start)
    with engine.begin() as conn:
        _load_flat(conn, n, w0, (t0, tasks[1]), start)
    with engine.begin() as conn:
        for table in partitions.PARTITIONED:
            conn.execute(text(f"INSERT INTO bench_month.{table} SELECT * FROM bench_flat.{table}"))
    loaded = time.perf_counter() - started
    for schema in SCHEMAS:
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
            _index(conn, schema)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for schema in SCHEMAS:
            conn.execute(text(f"VACUUM ANALYZE {schema}.checkin, {schema}.claim_event, {schema}.heat_cell_hour"))
    return {"seeded_s": round(time.perf_counter() - started), "loaded_s": round(loaded)}


_NEARBY = text("""
SELECT id, claim_id, worker_id, lat, lon FROM checkin
 WHERE ST_DWithin(point, CAST(ST_SetSRID(ST_MakePoint(:x, :y), 4326) AS geography), 300) AND server_time > :since
 ORDER BY server_time DESC LIMIT 200""")
_WORKER = text("""
SELECT id, kind, lat, lon, client_time, verdict FROM checkin
 WHERE worker_id = :w AND server_time > :since AND server_time <= :until ORDER BY client_time DESC LIMIT 50""")
_CLAIM = text("""
SELECT id, kind, verdict, client_time FROM checkin
 WHERE claim_id = :c AND server_time BETWEEN :lo AND :hi ORDER BY id""")
_FOLD = text("""
SELECT id, server_time, h3_r9, lat, lon, worker_id, kind, reasons FROM checkin
 WHERE id > :last ORDER BY id LIMIT 20000""")


def _claims(conn, w0: int) -> list[tuple[int, int]]:
    """QUERIES checked-in claims of bench workers (made once), for the measure statement to lock."""
    conn.execute(text("""
        INSERT INTO claim (task_id, worker_id, state, expires_at, risk_score, flags)
        SELECT t.id, :w0 + (t.id * 7919) % :wn, 'checked_in', now() + interval '1 day', 0, '{}'
          FROM (SELECT id FROM task WHERE title LIKE 'bench %' ORDER BY id LIMIT :q) t
         WHERE NOT EXISTS (SELECT 1 FROM claim c JOIN app_user u ON u.id = c.worker_id
                            WHERE u.username LIKE 'pbw%')"""), {"w0": w0, "wn": WORKERS, "q": QUERIES})
    return [tuple(r) for r in conn.execute(text(
        "SELECT c.id, c.worker_id FROM claim c JOIN app_user u ON u.id = c.worker_id WHERE u.username LIKE 'pbw%'"
        " ORDER BY c.id LIMIT :q"), {"q": QUERIES})]


def _calls(n: int, claims: list[tuple[int, int]], now: datetime, rounds: int = QUERIES) -> list[dict]:
    """One set of parameters per query round, drawn once so both schemas answer exactly the same questions (the
    first QUERIES rounds are the same whatever ``rounds``)."""
    rng = random.Random(7)
    out = []
    for i in range(rounds):
        claim_id, w = claims[i % len(claims)]
        x, y = CITIES[i % 10][0] + rng.uniform(-0.15, 0.15), CITIES[i % 10][1] + rng.uniform(-0.1, 0.1)
        day = partitions.month_start(now, -rng.randrange(MONTHS - 1)) + timedelta(days=rng.randrange(27))
        out.append({
            "measure": {"claim_id": claim_id, "worker_id": w, "lon": x, "lat": y, "recent_n": 4,
                        "coord_key": f"{y:.6f},{x:.6f}", "fix_day": now.date(), "device_id": f"pbd{w}",
                        "device_cap": 2, "ip": f"10.{w % 200}.{w // 200 % 250}.1",
                        "ip_since": now - timedelta(hours=1), "ip_rows": 500, "radio": [], "hash_min": 2,
                        "history_since": now - timedelta(days=92), "history_until": now + timedelta(minutes=5)},
            "heat": (day.replace(hour=2), day.replace(hour=1) + timedelta(days=1)),
            "nearby": {"x": x, "y": y, "since": now - timedelta(days=1)},
            "worker": {"w": w, "since": now - timedelta(days=30), "until": now + FIX_CLOCK_SLACK},
            # Claims looked up by id are recent ones (a worker's open claim, submissions awaiting confirmation,
            # spot checks): drawn from the last 30 days, as a fraction of them, so a run at another n asks about the
            # same moment and the later draws stay the same (bench_partitions_scale asks two sizes the same questions).
            "claim": _claim_params(n // 2 - 1 - int(rng.random() * (n // 48)), n, now),
            "fold": {"last": max(0, n - 30_000 - rng.randrange(10_000))}})
    return out


def _claim_params(claim_id: int, n: int, now: datetime) -> dict:
    """A seeded claim and its creation time (its fixes are rows 2c and 2c + 1, see _load_flat), as
    checkin.models.of_claim bounds the lookup (there the time comes from the claim row)."""
    start = partitions.month_start(now, -MONTHS + 1)
    claimed_at = start + timedelta(seconds=2 * claim_id * MONTHS * 30 * 86400 / n - 60)
    return {"c": claim_id, "lo": claimed_at - CLAIM_FIX_SLACK, "hi": now + FIX_CLOCK_SLACK}


def _measure(p: dict):
    yield Batch([Stmt(sql(_MEASURE), p, one_row=True)])


def _one(db: Session, name: str, p, conn: psycopg.Connection | None = None) -> int:
    """Run one query; returns how many rows (heatmap: cells) it answered. The measure runs as the write path
    runs it: a pipelined flow (core.flow) on ``conn``, prepared once, planned generically."""
    if name == "measure":
        flow.run(conn, _measure(p))
        conn.rollback()  # lets go of the claim's row lock
        return 1
    if name == "heat":
        box = (CITIES[0][0] - 0.09, CITIES[0][1] - 0.055, CITIES[0][0] + 0.09, CITIES[0][1] + 0.055)
        cells = heatmap.measures(db_session=db, res=8, since=p[0], until=p[1], bbox=box, k=1)
        return len(cells) + cells.hidden
    return len(db.execute({"nearby": _NEARBY, "worker": _WORKER, "claim": _CLAIM, "fold": _FOLD}[name], p).all())


NAMES = {"measure": "partition_measure", "heat": "partition_heatmap_window", "nearby": "partition_nearby",
         "worker": "partition_worker_history", "claim": "partition_claim_history", "fold": "partition_rollup_read"}


def _time(rounds: dict[str, list[dict]], answered: dict | None = None) -> dict[str, dict[str, list[float]]]:
    """Milliseconds per query and schema (``rounds``: each schema's parameters per round, the same questions asked
    of each); each round runs every schema in a random order (drift hits all). ``answered``, when given, gets the
    rows each timed call answered, by query and schema."""
    schemas = list(rounds)
    engines = {s: _engine(s) for s in schemas}
    sessions = {s: Session(engines[s]) for s in schemas}
    conns = {s: _flow_conn(s) for s in schemas}
    out = {name: {s: [] for s in schemas} for name in NAMES}
    rng = random.Random(3)
    try:
        for i in range(min(len(r) for r in rounds.values())):
            for name in NAMES:
                if name == "fold" and i % 4:  # a 20,000-row batch: a quarter of the rounds is plenty
                    continue
                for schema in rng.sample(schemas, len(schemas)):
                    t = time.perf_counter()
                    rows = _one(sessions[schema], name, rounds[schema][i][name], conns[schema])
                    if i >= 8:  # the first rounds warm caches and prepare statements
                        out[name][schema].append((time.perf_counter() - t) * 1000)
                        if answered is not None:
                            answered.setdefault(name, {}).setdefault(schema, []).append(rows)
            for db in sessions.values():
                db.rollback()
    finally:
        for s in schemas:
            sessions[s].close()
            engines[s].dispose()
            conns[s].close()
    return out


def run() -> dict:
    """Seed both copies once, then time every hot query on both in the same run."""
    use_bench_database()
    n = int(N_FULL * scale())
    seeded = seed(n)
    with get_engine().begin() as conn:
        w0, _ = _workers(conn)
        claims = _claims(conn, w0)
        sizes = {s: conn.execute(text(f"SELECT pg_size_pretty(pg_total_relation_size('{s}.checkin')) ")).scalar()
                 for s in ("bench_flat",)}
        months = conn.execute(text("SELECT count(*) FROM pg_inherits WHERE inhparent = 'bench_month.checkin'::regclass"
                                   )).scalar()
    rounds = _calls(n, claims, datetime.now(timezone.utc), ROUNDS)
    times = _time({s: rounds for s in SCHEMAS})
    out = {}
    for name, fig in NAMES.items():
        flat, month = pct(times[name]["bench_flat"], 95), pct(times[name]["bench_month"], 95)
        out[fig] = figure(month, "ms", flat, False,
                          f"p95 partitioned <= unpartitioned (ratio >= 0.9) at {n} check-ins", min_ratio=0.9,
                          detail={"flat_p50_ms": round(pct(times[name]["bench_flat"], 50), 3),
                                  "month_p50_ms": round(pct(times[name]["bench_month"], 50), 3),
                                  "partitions": months, "flat_checkin_size": sizes["bench_flat"], **seeded})
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
