"""Hot queries on monthly partitions vs the same tables unpartitioned, at the same scale, in the same run.

Two schemas in the bench database hold the same rows: ``bench_flat`` (plain tables, the indexes of the models) and
``bench_month`` (partitioned by month exactly as migration 0014_partitions leaves production, partitions made by
core.partitions). Each query runs with ``search_path`` set to one schema, then the other, so the SQL text is
byte-for-byte the same (``_MEASURE`` is imported from checkin.service; the heatmap window is heatmap.measures).
Claims, tasks and users stay in ``public`` and are shared.

Data: N check-ins (4 M at scale 1; 50 M of the partitioned layout alone: bench_partitions_scale) over
24 months by 50,000 workers around ten cities, one claim audit row per two check-ins, and heatmap hour roll-ups
(cells at res 5-9 of 100 places an hour over the same 24 months). Seeding is set-based SQL (generate_series); the
flat copy is loaded first and the partitioned one from it, indexes built after loading. The generator takes a width
(workers, city boxes, tasks and heat places times it, the same density): 1 here; bench_partitions_scale's 50 M copy
is width 12.5.

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
import math
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache

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


@dataclass(frozen=True)
class Workers:
    """The bench's worker accounts 'pbw1' .. 'pbw<n>' as runs of consecutive user ids: ``runs`` holds (first index,
    first id, count) per run, index k of account 'pbw<k + 1>' (one run when they were made in one INSERT; a later,
    larger count adds a run, since other users may have taken ids in between)."""

    n: int
    runs: tuple[tuple[int, int, int], ...]

    def id(self, k: int) -> int:
        """The user id of worker index k."""
        for k0, id0, count in self.runs:
            if k0 <= k < k0 + count:
                return id0 + k - k0
        raise IndexError(k)

    def index(self, w: int) -> int:
        """The worker index of user id w."""
        for k0, id0, count in self.runs:
            if id0 <= w < id0 + count:
                return k0 + w - id0
        raise IndexError(w)

    def sql(self, k: str) -> str:
        """SQL for the user id of the worker index expression ``k`` (ids are integers read from the database)."""
        if len(self.runs) == 1:
            return f"{self.runs[0][1]} + {k}"
        arms = " ".join(f"WHEN {k} < {k0 + count} THEN {id0 - k0} + {k}" for k0, id0, count in self.runs[:-1])
        return f"CASE {arms} ELSE {self.runs[-1][1] - self.runs[-1][0]} + {k} END"


def _workers(conn, n: int = WORKERS) -> Workers:
    """The first n bench worker accounts, made where missing (one INSERT; password hashes are placeholders)."""
    conn.execute(text("INSERT INTO app_user (username, password_hash, role, display_name) "
                      "SELECT 'pbw' || g, 'x', 'worker', 'w' FROM generate_series(1, :n) g "
                      "WHERE NOT EXISTS (SELECT 1 FROM app_user u WHERE u.username = 'pbw' || g) "
                      "ON CONFLICT (username) DO NOTHING"), {"n": n})
    runs = tuple(tuple(r) for r in conn.execute(text("""
        SELECT min(k), min(id), count(*) FROM (
            SELECT CAST(substr(username, 4) AS int) - 1 AS k, id FROM app_user WHERE username ~ '^pbw[0-9]+$') u
         WHERE k < :n GROUP BY id - k ORDER BY 1"""), {"n": n}))
    if sum(r[2] for r in runs) != n:
        raise RuntimeError(f"bench worker accounts pbw1..pbw{n} incomplete: {runs}")
    return Workers(n, runs)


def ip_of(w: int, k: int) -> str:
    """The address a worker (user id w, index k) checks in from: one per worker (the first 50,000: 10.x.y.1)."""
    return f"10.{w % 200}.{w // 200 % 250}.{1 + k // 50_000}"


@lru_cache(maxsize=4)
def centres(width: float = 1) -> tuple[tuple[float, float], ...]:
    """round(10 x width) box centres (lon, lat) the check-ins fall around, each box 0.4 x 0.3 degrees: the ten cities,
    then (width > 1) more on a 1-degree grid over eastern China, none overlapping another's box (so density per
    area and per box is the same at any width)."""
    out = list(CITIES)
    want = round(10 * width)
    lat = 22.0
    while len(out) < want:
        for i in range(26):
            x, y = 99.0 + i, lat
            if len(out) < want and all(abs(x - cx) >= 0.5 or abs(y - cy) >= 0.4 for cx, cy in out):
                out.append((x, y))
        lat += 1.0
    return tuple(out[:want])


@lru_cache(maxsize=4)
def _places(width: float = 1) -> dict[str, list]:
    """round(20,000 x width) heat places, as column arrays: 20,000 around Beijing (gaussian), then (width > 1) the
    same again around further centres of ``centres(width)`` far from Beijing, the last one narrower when width is not
    whole (a half: the gaussian's spread x sqrt(0.5)); so the same places per area as at width 1, and the Beijing
    places, where the heatmap window looks, the very places of width 1."""
    rng = random.Random(11)
    cols: dict[str, list] = {c: [] for c in ("pid", "r5", "r6", "r7", "r8", "r9", "lat", "lon")}
    at = [CITIES[0], *(c for c in centres(width + 1) if abs(c[1] - CITIES[0][1]) > 3)]
    left, j = round(20_000 * width), 0
    while left > 0:
        count = min(20_000, left)
        spread = math.sqrt(count / 20_000)
        for _ in range(count):
            r9 = h3cells.cell(at[j][1] + rng.gauss(0, 0.08) * spread, at[j][0] + rng.gauss(0, 0.1) * spread)
            lat, lon = h3cells.centre(r9)
            for key, v in (("pid", len(cols["pid"])), ("r9", r9), ("lat", lat), ("lon", lon),
                           *((f"r{r}", h3cells.parent(r9, r)) for r in (5, 6, 7, 8))):
                cols[key].append(v)
        left, j = left - count, j + 1
    return cols


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


def _load_flat(conn, n: int, workers: Workers, tasks: tuple[int, int], start: datetime) -> None:
    """n check-ins in time order over MONTHS months, n/2 audit rows, hour roll-ups, in bench_flat."""
    _load(conn, "bench_flat", n, workers, tasks, start, 1, n)
    _heat(conn, start, "bench_flat", max(10, int(100 * min(1.0, scale()))))


SPAN_S = MONTHS * 30 * 86400  # bench_partitions' span: 24 months of 30 days from month_start(now, -23)


def _load(conn, schema: str, n: int, workers: Workers, tasks: tuple[int, int], start: datetime, lo: int, hi: int,
          *, width: float = 1, span_s: float = SPAN_S) -> None:
    """Rows lo..hi (1-based) of n check-ins spread in time order over span_s seconds from start (default MONTHS
    30-day months), and the audit row of each 'in' fix (one per two check-ins), into ``schema``; any range of rows is
    the same rows whatever the chunking (the coordinates' jitter aside). Row g is by worker index (g x 7919) mod
    workers.n, in box g mod round(10 x width) of ``centres(width)``; so at width 1 with 50,000 workers the ten
    cities, and at width w with w x 50,000 workers and w x the rows the same fixes per worker, per box and per
    area (each worker stays in one box)."""
    boxes = centres(width)
    lons = "ARRAY[" + ",".join(str(c[0]) for c in boxes) + "]::float8[]"
    lats = "ARRAY[" + ",".join(str(c[1]) for c in boxes) + "]::float8[]"
    conn.execute(text(f"""
        WITH c AS (
        INSERT INTO {schema}.checkin (id, claim_id, worker_id, task_id, kind, point, lat, lon, raw_lat, raw_lon,
            raw_crs, raw_coord_key, accuracy_m, accuracy_95_m, provider, device_id, ip, client_time, server_time,
            verdict, distance_m, risk_score, reasons, signals)
        SELECT g, g / 2, w, :t0 + g % :tn, CASE WHEN g % 2 = 0 THEN 'in' ELSE 'out' END,
               CAST(ST_SetSRID(ST_MakePoint(x, y), 4326) AS geography), y, x, y, x, 'wgs84',
               to_char(y, 'FM990.000000') || ',' || to_char(x, 'FM990.000000'), 10, 16, 'gps', 'pbd' || w,
               CAST('10.' || (w % 200) || '.' || (w / 200 % 250) || '.' || (1 + k / 50000) AS inet),
               ts - interval '3 seconds', ts, 'inside', 0, 0, '{{}}', '[]'
        FROM generate_series(CAST(:lo AS bigint), :hi) g,
             LATERAL (SELECT (g * 7919) % :wn AS k) kk,
             LATERAL (SELECT {workers.sql("k")} AS w,
                             CAST(:start AS timestamptz) + g * (:span / CAST(:n AS float8)) * interval '1 second'
                               AS ts,
                             ({lons})[1 + g % {len(boxes)}] + (random() - 0.5) * 0.4 AS x,
                             ({lats})[1 + g % {len(boxes)}] + (random() - 0.5) * 0.3 AS y) r
        RETURNING id, claim_id, worker_id, kind, server_time)
        INSERT INTO {schema}.claim_event (id, claim_id, from_state, to_state, actor_id, reason, data, at)
        SELECT id / 2 + 1, claim_id, 'claimed', 'checked_in', worker_id, NULL, jsonb_build_object('checkin_id', id),
               server_time
        FROM c WHERE kind = 'in'
    """), {"n": n, "lo": lo, "hi": hi, "t0": tasks[0], "tn": tasks[1], "wn": workers.n, "start": start,
           "span": span_s})


def _heat(conn, start: datetime, schema: str, per_hour: int, months: range = range(MONTHS), *, width: float = 1,
          span_s: float = SPAN_S) -> None:
    """Hour roll-ups: per_hour places an hour (of ``_places(width)``, 20,000 around Beijing at width 1), each at res
    5-9, over the given 24ths of the span (default: months of 30 days; 100 an hour over all MONTHS: ~5.8 M rows)."""
    places = _places(width)
    count = len(places["pid"])
    conn.execute(text("CREATE TEMP TABLE place (pid int, r5 bigint, r6 bigint, r7 bigint, r8 bigint, r9 bigint, "
                      "lat float8, lon float8) ON COMMIT DROP"))
    conn.execute(text("INSERT INTO place SELECT * FROM unnest(CAST(:pid AS int[]), CAST(:r5 AS bigint[]), "
                      "CAST(:r6 AS bigint[]), CAST(:r7 AS bigint[]), CAST(:r8 AS bigint[]), CAST(:r9 AS bigint[]), "
                      "CAST(:lat AS float8[]), CAST(:lon AS float8[]))"), places)
    hours = int(span_s // 3600)
    h0, h1 = months.start * hours // MONTHS, months.stop * hours // MONTHS
    for res in (5, 6, 7, 8, 9):
        conn.execute(text(f"""
            INSERT INTO {schema}.heat_cell_hour (res, cell, hour, lat, lon, checkins, workers)
            SELECT {res}, p.r{res}, CAST(:start AS timestamptz) + h * interval '1 hour', avg(p.lat), avg(p.lon),
                   count(*), count(*)
            FROM generate_series(:h0, :h1 - 1) h CROSS JOIN generate_series(0, :per_hour - 1) k
            JOIN place p ON p.pid = (h * 7919 + k * 197) % :count
            GROUP BY 1, 2, 3"""), {"start": start, "h0": h0, "h1": h1, "per_hour": per_hour, "count": count})


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
        workers = _workers(conn)
        if _seeded(conn, n):
            return {"seeded_s": 0}
        tasks = (published_tasks(conn, 2000), 2000)
        t0 = conn.execute(text("SELECT min(id) FROM task WHERE title LIKE 'bench %'")).scalar()
        for schema in SCHEMAS:
            _tables(conn, schema)
    _months(start)
    with engine.begin() as conn:
        _load_flat(conn, n, workers, (t0, tasks[1]), start)
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


def _claims(conn, workers: Workers, offset: int = 0) -> list[tuple[int, int]]:
    """QUERIES checked-in claims of bench workers (made once) on the bench tasks offset.. offset + QUERIES - 1 in id
    order, each by worker index (task id x 7919) mod workers.n, for the measure statement to lock."""
    conn.execute(text(f"""
        INSERT INTO claim (task_id, worker_id, state, expires_at, risk_score, flags)
        SELECT t.id, {workers.sql("(t.id * 7919) % :wn")}, 'checked_in', now() + interval '1 day', 0, '{{}}'
          FROM (SELECT id FROM task WHERE title LIKE 'bench %' ORDER BY id OFFSET :off LIMIT :q) t
         WHERE NOT EXISTS (SELECT 1 FROM claim c JOIN app_user u ON u.id = c.worker_id
                            WHERE u.username LIKE 'pbw%' AND c.task_id IN (
                                SELECT id FROM task WHERE title LIKE 'bench %' ORDER BY id OFFSET :off LIMIT :q))"""),
                 {"wn": workers.n, "q": QUERIES, "off": offset})
    return [tuple(r) for r in conn.execute(text(
        "SELECT c.id, c.worker_id FROM claim c JOIN app_user u ON u.id = c.worker_id WHERE u.username LIKE 'pbw%'"
        " AND c.task_id IN (SELECT id FROM task WHERE title LIKE 'bench %' ORDER BY id OFFSET :off LIMIT :q)"
        " ORDER BY c.id LIMIT :q"), {"q": QUERIES, "off": offset})]


def _calls(n: int, claims: list[tuple[int, int]], now: datetime, rounds: int = QUERIES, *, width: float = 1,
           workers: Workers | None = None, start: datetime | None = None, span_s: float = SPAN_S) -> list[dict]:
    """One set of parameters per query round, drawn once so both schemas answer exactly the same questions (the
    first QUERIES rounds are the same whatever ``rounds``). ``width``: the copy's spread (see _load), the points
    asked about then lie in the same spot of every box; ``workers`` (default: the first 50,000) gives the claims'
    workers' indexes (their addresses); ``start``/``span_s``: the data's time span (default bench_partitions')."""
    rng = random.Random(7)
    boxes = centres(width)
    out = []
    for i in range(rounds):
        claim_id, w = claims[i % len(claims)]
        x, y = boxes[i % len(boxes)][0] + rng.uniform(-0.15, 0.15), boxes[i % len(boxes)][1] + rng.uniform(-0.1, 0.1)
        day = partitions.month_start(now, -rng.randrange(MONTHS - 1)) + timedelta(days=rng.randrange(27))
        day = min(day, (now - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0))  # not ahead
        out.append({
            "measure": {"claim_id": claim_id, "worker_id": w, "lon": x, "lat": y, "recent_n": 4,
                        "coord_key": f"{y:.6f},{x:.6f}", "fix_day": now.date(), "device_id": f"pbd{w}",
                        "device_cap": 2, "ip": ip_of(w, 0 if workers is None else workers.index(w)),
                        "ip_since": now - timedelta(hours=1), "ip_rows": 500, "radio": "{}",
                        "history_since": now - timedelta(days=92), "history_until": now + timedelta(minutes=5)},
            "heat": (day.replace(hour=2), day.replace(hour=1) + timedelta(days=1)),
            "nearby": {"x": x, "y": y, "since": now - timedelta(days=1)},
            "worker": {"w": w, "since": now - timedelta(days=30), "until": now + FIX_CLOCK_SLACK},
            # Claims looked up by id are recent ones (a worker's open claim, submissions awaiting confirmation,
            # spot checks): drawn from the last 30 days, as a fraction of them, so a run at another n asks about the
            # same moment and the later draws stay the same (bench_partitions_scale asks two sizes the same questions).
            "claim": _claim_params(n // 2 - 1 - int(rng.random() * (n // 48)), n, now, start, span_s),
            "fold": {"last": max(0, n - 30_000 - rng.randrange(10_000))}})
    return out


def _claim_params(claim_id: int, n: int, now: datetime, start: datetime | None = None,
                  span_s: float = SPAN_S) -> dict:
    """A seeded claim and its creation time (its fixes are rows 2c and 2c + 1, see _load), as
    checkin.models.of_claim bounds the lookup (there the time comes from the claim row)."""
    start = partitions.month_start(now, -MONTHS + 1) if start is None else start
    claimed_at = start + timedelta(seconds=2 * claim_id * span_s / n - 60)
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
        claims = _claims(conn, _workers(conn))
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
