"""Hot queries on the partitioned layout at 4 M and at 50 M check-ins, in the same run (issue 18: latency kept as the
data grows 12.5x the way a country grows: more workers over more area, each as busy as before). Opt-in: about an hour
of loading on a small machine, so not in `make bench`'s default list; run it with
``make bench BENCH="bench.bench_partitions_scale"``.

Two schemas of the bench database, both partitioned by month exactly as bench_partitions' ``bench_month`` (and so
as migration 0014_partitions leaves production; months made by core.partitions): ``bench_scale_small`` with 4 M
check-ins and ``bench_scale_large`` with 50 M (times FIELDPROOF_BENCH_SCALE: 0.02 gives 80,000 vs 1 M for a quick end
to end check; the worker counts do not scale, so such a run's per-worker windows are near empty). Both come from
bench_partitions' generator (``_load``, ``_heat``) with a width: 1 for the small copy (exactly bench_partitions' data:
50,000 workers in ten 0.4 x 0.3 degree city boxes, 2,000 tasks, 20,000 heat places around Beijing) and
WIDTH = 12.5 for the large one: 625,000 workers (accounts 'pbw1'..'pbw625000', the small copy's 50,000 among them),
125 boxes of the same size (the ten cities and 115 more on a 1-degree grid, none overlapping), 25,000 tasks, 250,000
heat places (the 20,000 around Beijing again, the very same places, then copies of that spread around twelve further
centres and a half-size one around a thirteenth, far from Beijing), heat places an hour x 12.5. So per worker, per
box, per device, per address (one per worker) and per square kilometre the two copies hold the same rows; only the
table is 12.5x the size. Every worker stays in one box (a city's 5,000).

The data's span is the same for both: from the first day of the month 23 months back to the moment the load began
(recorded with the load, so a resumed load keeps it), and the questions are asked at that moment: "the last 24 hours"
and "the last 30 days" are full windows.

Loading is set-based (INSERT ... SELECT generate_series, one transaction per 24th of the rows, progress on stderr),
then keys and indexes, then VACUUM ANALYZE. Each step is recorded in the schema's ``_bench_load`` table in the step's
own transaction, so an interrupted load goes on where it stopped; a copy of other sizes, width or span is dropped and
loaded anew. Loading stops (raises) when free disk under FIELDPROOF_DATA_DIR would fall below
FIELDPROOF_BENCH_MIN_FREE_GB (20).

The queries and the timing loop are bench_partitions' own (``_calls``, ``_time``); each copy is asked equivalent
questions, drawn by the same random sequence: a claim of its own (the large copy's 200 claims are by workers drawn
from all 625,000), that claim's worker and device and address, a recent claim id of its own rows at the same moment,
a point at the same offset in a box (the small copy's ten boxes in turn, the large copy's 125), the same heatmap
viewport and hours. Each figure's ``detail`` has the mean rows a call answered in each copy (small_rows, large_rows),
which this design makes about equal.

Figures partition_scale_* (p95 ms at 50 M; baseline = p95 at 4 M; ratio = p95 at 4 M / p95 at 50 M, goal >= 0.9,
i.e. at most ~10 % slower at 12.5x the rows at the same density), one per hot query of bench_partitions.
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

from bench.bench_partitions import (MONTHS, N_FULL, NAMES, QUERIES, WORKERS, Workers, _calls, _claims, _heat,
                                    _index, _load, _months, _tables, _time, _workers)
from bench.common import figure, pct, scale, use_bench_database
from bench.seed import published_tasks
from core import partitions
from core.db import get_engine

N_LARGE = 50_000_000
WIDTH = N_LARGE / N_FULL  # 12.5: the large copy's workers, boxes, tasks and heat places, times the small's
TASKS = 2000  # bench tasks the small copy's check-ins name (the large: WIDTH x)
# Rounds of the hot queries (bench_partitions asks 200): the two copies differ by less than this shared machine's
# noise moves a p95 of 200 samples (its ratio moved by 0.3 between two runs 2 minutes apart).
ROUNDS = 1000
SMALL, LARGE = "bench_scale_small", "bench_scale_large"
TABLES = tuple(partitions.PARTITIONED)


def _free_gb() -> float:
    return shutil.disk_usage(os.environ.get("FIELDPROOF_DATA_DIR") or ".").free / 2**30


# Index bytes per table byte of a loaded copy (keys and indexes of the three tables: 14.6 GB on 20.5 GB at 50 M).
INDEX_PER_TABLE = 0.75


def _check_disk(need_gb: float = 0) -> None:
    """Raise unless free disk stays >= FIELDPROOF_BENCH_MIN_FREE_GB (20) after a step that writes need_gb more."""
    floor = float(os.environ.get("FIELDPROOF_BENCH_MIN_FREE_GB", "20"))
    if _free_gb() - need_gb < floor:
        raise RuntimeError(f"free disk {_free_gb():.1f} GB - {need_gb:.1f} GB the next step writes < {floor:g} GB: "
                           f"loading stopped (it goes on where it stopped when run again)")


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


def _meta(n: int, width: float, start: datetime) -> str:
    return f"n={n} width={width:g} start={start.date()} end="


def _recorded_end(conn, schemas: tuple[str, ...], metas: tuple[str, ...]) -> datetime | None:
    """The end of the span an earlier (maybe interrupted) load of these sizes recorded, if any: a resumed load
    keeps it, so the months loaded already and the months to come are one span."""
    for schema, meta in zip(schemas, metas):
        if conn.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"{schema}._bench_load"}).scalar():
            step = conn.execute(text(f"SELECT step FROM {schema}._bench_load WHERE starts_with(step, :m)"),
                                {"m": meta}).scalar()
            if step:
                return datetime.fromisoformat(step[len(meta):])
    return None


def load(schema: str, n: int, workers: Workers, tasks: tuple[int, int], start: datetime, end: datetime,
         width: float) -> dict[str, float]:
    """``schema`` with n check-ins by month from start to end, ``width`` x the small copy's spread (resuming an
    interrupted load); returns the seconds of each phase."""
    engine = get_engine()
    meta = _meta(n, width, start) + end.isoformat()
    span_s = (end - start).total_seconds()
    with engine.begin() as conn:
        if _fresh(conn, schema, meta):
            _log(f"{schema}: going on with the load of {meta}")
    _months(start, schema)  # the missing months only
    per_hour = round(max(10, round(100 * scale())) * width)
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
            # One transaction per 24th of the rows and its record: a crash loses both, the next run loads it again.
            _load(conn, schema, n, workers, tasks, start, k * n // MONTHS + 1, (k + 1) * n // MONTHS, width=width,
                  span_s=span_s)
            _heat(conn, start, schema, per_hour, range(k, k + 1), width=width, span_s=span_s)
            _record(conn, schema, step, time.perf_counter() - t)
        rows, minutes = (k + 1) * n // MONTHS, (time.perf_counter() - began) / 60
        _log(f"{schema}: month {k + 1}/{MONTHS}, {rows / 1e6:.1f} M rows, "
             f"{(rows - first) / 1e6 / minutes:.1f} M rows/min (this month {time.perf_counter() - t:.0f} s, "
             f"{_free_gb():.0f} GB free)")
        done[step] = 0.0
    if "index" not in done:
        with engine.connect() as conn:
            heap = conn.execute(text("SELECT sum(pg_table_size(p.relid)) FROM unnest(CAST(:t AS text[])) t, "
                                     "pg_partition_tree(CAST(t AS regclass)) p"),
                                {"t": [f"{schema}.{table}" for table in TABLES]}).scalar()
        _check_disk(INDEX_PER_TABLE * int(heap or 0) / 2**30)
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
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    start = partitions.month_start(now, -MONTHS + 1)
    metas = (_meta(n_large, WIDTH, start), _meta(n_small, 1, start))
    with get_engine().begin() as conn:
        # The large copy's accounts first: made in one INSERT they are one run of ids (the first 50,000, the small
        # copy's workers, among them).
        workers = {LARGE: _workers(conn, round(WORKERS * WIDTH))}
        workers[SMALL] = _workers(conn, WORKERS)
        published_tasks(conn, round(TASKS * WIDTH))
        t0 = conn.execute(text("SELECT min(id) FROM task WHERE title LIKE 'bench %'")).scalar()
        end = _recorded_end(conn, (LARGE, SMALL), metas) or now
    _log(f"span {start.isoformat()} .. {end.isoformat()}; workers {workers[SMALL].n} / {workers[LARGE].n}")
    seeded = {SMALL: load(SMALL, n_small, workers[SMALL], (t0, TASKS), start, end, 1),
              LARGE: load(LARGE, n_large, workers[LARGE], (t0, round(TASKS * WIDTH)), start, end, WIDTH)}
    with get_engine().begin() as conn:
        claims = {SMALL: _claims(conn, workers[SMALL]), LARGE: _claims(conn, workers[LARGE], offset=QUERIES)}
        size = {s: sizes(conn, s) for s in (SMALL, LARGE)}
        months = conn.execute(text("SELECT count(*) FROM pg_inherits WHERE inhparent = CAST(:t AS regclass)"),
                              {"t": f"{LARGE}.checkin"}).scalar()
    # Questions are asked at the moment the data ends (the load's start; a few minutes before this if it was made
    # in this run), so "the last 24 hours" or "the last 30 days" hold a full window of rows in both copies.
    span_s = (end - start).total_seconds()
    answered: dict = {}
    times = _time({SMALL: _calls(n_small, claims[SMALL], end, ROUNDS, workers=workers[SMALL], start=start,
                                 span_s=span_s),
                   LARGE: _calls(n_large, claims[LARGE], end, ROUNDS, width=WIDTH, workers=workers[LARGE],
                                 start=start, span_s=span_s)},
                  answered)
    out = {}
    for name, fig in NAMES.items():
        small, large = times[name][SMALL], times[name][LARGE]
        out[fig.replace("partition_", "partition_scale_", 1)] = figure(
            pct(large, 95), "ms", pct(small, 95), False,
            f"p95 at {n_large} check-ins ({WIDTH:g}x the workers, area, tasks and heat places, same density) within "
            f"10 % of p95 at {n_small} (ratio = p95 small / p95 large >= 0.9)",
            min_ratio=0.9,
            detail={"small_checkins": n_small, "large_checkins": n_large, "width": WIDTH,
                    "small_workers": workers[SMALL].n, "large_workers": workers[LARGE].n,
                    "span": [start.isoformat(), end.isoformat()], "samples": len(large),
                    "small_p50_ms": round(pct(small, 50), 3), "large_p50_ms": round(pct(large, 50), 3),
                    # rows (heatmap: cells) a call answered, mean: about equal, the copies having the same density
                    "small_rows": round(statistics.fmean(answered[name][SMALL]), 1),
                    "large_rows": round(statistics.fmean(answered[name][LARGE]), 1),
                    "partitions": months, "load": seeded, "sizes": size})
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
