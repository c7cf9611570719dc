"""Hot queries on the partitioned layout at 4 M and at 50 M check-ins, in the same run (issue 18: latency kept as the
data grows 12.5x). Opt-in: ~1.5-2 hours of loading on a small machine, so not in `make bench`'s default list; run it
with ``make bench BENCH="bench.bench_partitions_scale"``.

Two schemas of the bench database, both partitioned by month exactly as bench_partitions' ``bench_month`` (and so
as migration 0014_partitions leaves production; months made by core.partitions): ``bench_scale_small`` with 4 M
check-ins and ``bench_scale_large`` with 50 M (times FIELDPROOF_BENCH_SCALE: 0.1 gives 0.4 M vs 5 M for a quick end
to end check). Both come from the same generator as bench_partitions (``_load``, ``_heat``): the same 24 months, the
same 50,000 workers around ten cities, one claim audit row per two check-ins, and hour roll-ups scaled with the
check-ins (100 places an hour at 4 M, 1,250 at 50 M). So the large copy is 12.5x denser, not longer: a worker has
12.5x the fixes in any window, an hour 12.5x the roll-up places.

Loading is set-based (INSERT ... SELECT generate_series, one transaction per 30-day month of rows, progress on
stderr), then keys and indexes, then VACUUM ANALYZE. Each step is recorded in the schema's ``_bench_load`` table in
the step's own transaction, so an interrupted load goes on where it stopped; a copy of other sizes or months is
dropped and loaded anew. Loading stops (raises) when free disk under FIELDPROOF_DATA_DIR would fall below
FIELDPROOF_BENCH_MIN_FREE_GB (20).

The queries, their parameters and the timing loop are bench_partitions' own (``_calls``, ``_time``): every round asks
both copies the same questions (a claim at the same moment, the same worker, point and day) in a random order.

Figures partition_scale_* (p95 ms at 50 M; baseline = p95 at 4 M; ratio = p95 at 4 M / p95 at 50 M, goal >= 0.9,
i.e. at most ~10 % slower at 12.5x the rows), one per hot query of bench_partitions.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from datetime import datetime, timezone

from sqlalchemy import text

from bench.bench_partitions import (MONTHS, N_FULL, NAMES, _calls, _claims, _heat, _index, _load, _months, _tables,
                                    _time, _workers)
from bench.common import figure, pct, scale, use_bench_database
from bench.seed import published_tasks
from core import partitions
from core.db import get_engine

N_LARGE = 50_000_000
# Rounds of the hot queries (bench_partitions asks 200): the two copies differ by less than this shared machine's
# noise moves a p95 of 200 samples (its ratio moved by 0.3 between two runs 2 minutes apart).
ROUNDS = 1000
SMALL, LARGE = "bench_scale_small", "bench_scale_large"
TABLES = tuple(partitions.PARTITIONED)


def _free_gb() -> float:
    return shutil.disk_usage(os.environ.get("FIELDPROOF_DATA_DIR") or ".").free / 2**30


def _check_disk() -> None:
    floor = float(os.environ.get("FIELDPROOF_BENCH_MIN_FREE_GB", "20"))
    if _free_gb() < floor:
        raise RuntimeError(f"free disk {_free_gb():.1f} GB < {floor:g} GB: loading stopped (it goes on where it "
                           f"stopped when run again)")


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _done(conn, schema: str) -> dict[str, float]:
    return {step: s for step, s in conn.execute(text(f"SELECT step, seconds FROM {schema}._bench_load"))}


def _record(conn, schema: str, step: str, seconds: float) -> None:
    conn.execute(text(f"INSERT INTO {schema}._bench_load (step, seconds) VALUES (:s, :t)"),
                 {"s": step, "t": seconds})


def _fresh(conn, schema: str, meta: str) -> bool:
    """Make ``schema`` ready to load (re)starting where it stopped; False when an earlier load of other sizes or
    months is there (dropped and made anew)."""
    there = conn.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"{schema}._bench_load"}).scalar()
    if there and _done(conn, schema).get(meta) is not None:
        return True
    _tables(conn, schema, partitioned=True)  # drops the schema first
    conn.execute(text(f"CREATE TABLE {schema}._bench_load (step text PRIMARY KEY, seconds float8 NOT NULL, "
                      f"at timestamptz NOT NULL DEFAULT now())"))
    _record(conn, schema, meta, 0)
    return False


def load(schema: str, n: int, w0: int, tasks: tuple[int, int], start: datetime) -> dict[str, float]:
    """``schema`` with n check-ins by month (resuming an interrupted load); returns the seconds of each phase."""
    engine = get_engine()
    meta = f"n={n} start={start.date()}"
    with engine.begin() as conn:
        if _fresh(conn, schema, meta):
            _log(f"{schema}: going on with the load of {meta}")
    _months(start, schema)  # the missing months only
    per_hour = max(10, round(100 * n / N_FULL))
    with engine.connect() as conn:
        done = _done(conn, schema)
    began, first = time.perf_counter(), None
    for k in range(MONTHS):
        step = f"month {k + 1}"
        if step in done:
            continue
        _check_disk()
        t, first = time.perf_counter(), k * n // MONTHS if first is None else first
        with engine.begin() as conn:
            # A crash may lose the month's rows, but only with its record: the next run loads it again.
            conn.execute(text("SET LOCAL synchronous_commit = off"))
            _load(conn, schema, n, w0, tasks, start, k * n // MONTHS + 1, (k + 1) * n // MONTHS)
            _heat(conn, start, schema, per_hour, range(k, k + 1))
            _record(conn, schema, step, time.perf_counter() - t)
        rows, minutes = (k + 1) * n // MONTHS, (time.perf_counter() - began) / 60
        _log(f"{schema}: month {k + 1}/{MONTHS}, {rows / 1e6:.1f} M rows, "
             f"{(rows - first) / 1e6 / minutes:.1f} M rows/min (this month {time.perf_counter() - t:.0f} s, "
             f"{_free_gb():.0f} GB free)")
        done[step] = 0.0
    if "index" not in done:
        _check_disk()
        t = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
            _index(conn, schema, month=True)
            _record(conn, schema, "index", time.perf_counter() - t)
        _log(f"{schema}: keys and indexes in {time.perf_counter() - t:.0f} s")
    if "analyze" not in done:
        t = time.perf_counter()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"VACUUM ANALYZE {', '.join(f'{schema}.{table}' for table in TABLES)}"))
            _record(conn, schema, "analyze", time.perf_counter() - t)
        _log(f"{schema}: VACUUM ANALYZE in {time.perf_counter() - t:.0f} s")
    with engine.connect() as conn:
        done = _done(conn, schema)
    loaded = sum(s for step, s in done.items() if step.startswith("month "))
    return {"load_s": round(loaded), "index_s": round(done["index"]), "analyze_s": round(done["analyze"]),
            "total_s": round(loaded + done["index"] + done["analyze"])}


def sizes(conn, schema: str) -> dict:
    """Rows (estimated by ANALYZE), heap and index bytes of each table, summed over its partitions."""
    out = {}
    for table in TABLES:
        heap, idx = conn.execute(text("SELECT sum(pg_table_size(relid)), sum(pg_indexes_size(relid)) "
                                      "FROM pg_partition_tree(:t)"), {"t": f"{schema}.{table}"}).one()
        rows = conn.execute(text("SELECT sum(c.reltuples) FROM pg_partition_tree(:t) p JOIN pg_class c "
                                 "ON c.oid = p.relid WHERE p.isleaf"), {"t": f"{schema}.{table}"}).scalar()
        out[table] = {"rows": int(rows), "table_gb": round(int(heap) / 2**30, 2),
                      "index_gb": round(int(idx) / 2**30, 2)}
    return out


def run() -> dict:
    """Load both copies (or finish loading them), then time every hot query on both in the same run."""
    use_bench_database()
    n_small, n_large = int(N_FULL * scale()), int(N_LARGE * scale())
    start = partitions.month_start(datetime.now(timezone.utc), -MONTHS + 1)
    with get_engine().begin() as conn:
        w0, _ = _workers(conn)
        published_tasks(conn, 2000)
        t0 = conn.execute(text("SELECT min(id) FROM task WHERE title LIKE 'bench %'")).scalar()
    seeded = {SMALL: load(SMALL, n_small, w0, (t0, 2000), start), LARGE: load(LARGE, n_large, w0, (t0, 2000), start)}
    with get_engine().begin() as conn:
        claims = _claims(conn, w0)
        size = {s: sizes(conn, s) for s in (SMALL, LARGE)}
        months = conn.execute(text("SELECT count(*) FROM pg_inherits WHERE inhparent = CAST(:t AS regclass)"),
                              {"t": f"{LARGE}.checkin"}).scalar()
    now = datetime.now(timezone.utc)
    answered: dict = {}
    times = _time({SMALL: _calls(n_small, claims, now, ROUNDS), LARGE: _calls(n_large, claims, now, ROUNDS)},
                  answered)
    out = {}
    for name, fig in NAMES.items():
        small, large = times[name][SMALL], times[name][LARGE]
        out[fig.replace("partition_", "partition_scale_", 1)] = figure(
            pct(large, 95), "ms", pct(small, 95), False,
            f"p95 at {n_large} check-ins within 10 % of p95 at {n_small} (ratio = p95 small / p95 large >= 0.9)",
            min_ratio=0.9,
            detail={"small_checkins": n_small, "large_checkins": n_large, "samples": len(large),
                    "small_p50_ms": round(pct(small, 50), 3), "large_p50_ms": round(pct(large, 50), 3),
                    # rows (heatmap: cells) a call answered, mean: the large copy is denser, not longer
                    "small_rows": round(statistics.fmean(answered[name][SMALL]), 1),
                    "large_rows": round(statistics.fmean(answered[name][LARGE]), 1),
                    "partitions": months, "load": seeded, "sizes": size})
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
