"""`make bench`: run every benchmark of MODULES (or those named, OPT_IN ones too), write bench/results.json and
bench/results.md.

Each figure carries the UTC time and machine of the run that measured it, so running a subset updates those figures
and keeps the others, with their own timestamps, from earlier runs. Exit status 1 when a benchmark raised or any
figure of this run counted failed requests or lost work (``errors``); a goal not yet met is reported in the ``met``
column, not as a failure of the harness.
"""
from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from bench.common import machine, scale

MODULES = ["bench.bench_checkin", "bench.bench_nearby", "bench.bench_phash", "bench.bench_presence",
           "bench.bench_dedup", "bench.bench_heatmap", "bench.bench_partitions", "bench.bench_upload",
           "bench.bench_sim", "bench.bench_pgbouncer"]
# Run only when named (`make bench BENCH="bench.bench_partitions_scale"`): 4 M and 50 M check-ins (the 50 M copy at
# the same density: 12.5x the workers, area and heat places) take about an hour of loading and ~45 GB of disk.
OPT_IN = ["bench.bench_partitions_scale"]
OUT = Path(__file__).resolve().parent
# Table order: each goal figure beside its references; figures not listed follow in the order they came.
ORDER = ["checkin_throughput", "checkin_throughput_p99_ms", "checkin_non2xx", "checkout_throughput",
         "checkout_throughput_p99_ms", "checkout_non2xx", "insert_baseline_async", "insert_baseline_sync",
         "shared_ip_count_us", "checkin_presence_http_ms", "checkin_presence_http_cpu_ms", "checkin_presence_ms",
         "checkin_presence_cpu_ms", "capture_nonce_us", "radio_learn_per_checkin_ms",
         "upload_to_verdict", "upload_sustainable_rate", "sim_cpu_per_request_ms", "nearby_tasks",
         "phash_throughput", "phash_vs_decode_limit", "evidence_cpu_per_upload",
         "evidence_cpu_per_matched_upload", "upload_presence_cpu_ms", "upload_presence_cpu_matched_ms",
         "dedup_lookup", "heatmap_viewport", "mvt_tile",
         "partition_measure", "partition_heatmap_window", "partition_nearby", "partition_worker_history",
         "partition_claim_history", "partition_rollup_read",
         "partition_scale_measure", "partition_scale_heatmap_window", "partition_scale_nearby",
         "partition_scale_worker_history", "partition_scale_claim_history", "partition_scale_rollup_read",
         "pgbouncer_prepared_query", "unprepared_statement_cost", "pgbouncer_hall"]


def _previous() -> dict[str, dict]:
    path = OUT / "results.json"
    if not path.exists():
        return {}
    doc = json.loads(path.read_text())
    # Figures from before figures carried their own run get the file's machine and no time.
    return {name: {"machine": doc.get("machine"), **r} for name, r in doc.get("results", {}).items()}


def main(names: list[str]) -> int:
    """Run the benchmarks in order; a failing one is reported, the rest still run."""
    results = _previous()
    failed = []
    here = machine()
    for name in names or MODULES:
        started = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            figures = importlib.import_module(name).run()
        except Exception:  # one broken benchmark must not cost the others' figures
            traceback.print_exc()
            failed.append(name)
            continue
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for fig, row in figures.items():
            results[fig] = {**row, "measured_at": at, "machine": here, "scale": scale()}
            if row.get("errors"):
                failed.append(f"{name}: {fig} ({row['errors']} errors)")
        print(f"[bench] {name} done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    rank = {name: i for i, name in enumerate(ORDER)}
    ordered = dict(sorted(results.items(), key=lambda kv: rank.get(kv[0], len(ORDER))))
    doc = {"machine": here, "results": ordered}
    (OUT / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    (OUT / "results.md").write_text(markdown(doc))
    print(markdown(doc))
    for f in failed:
        print(f"[bench] FAILED: {f}", file=sys.stderr)
    return 1 if failed else 0


def _cell(x) -> str:
    return "-" if x is None else f"{x:g}" if isinstance(x, float) else str(x)


def _machine_label(m: dict | None) -> str:
    if not m:
        return "?"
    return f"{m.get('host', '?')} ({m.get('cpus')} CPU, {m.get('memory_gb')} GB)"


def markdown(doc: dict) -> str:
    """The figures with goals, ``met`` and when and where each was measured (and at what scale, if not 1)."""
    lines = ["| figure | value | unit | baseline | ratio | goal | met | measured (UTC) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    marks = {True: "yes", False: "**no**", None: "-"}
    machines = set()
    for name, r in doc["results"].items():
        met = marks[r.get("met")] + (f" ({r['errors']} errors)" if r.get("errors") else "")
        when = (r.get("measured_at") or "?").replace("+00:00", "Z")
        if r.get("scale", 1.0) != 1.0:
            when += f" (scale {r['scale']:g})"
        lines.append(f"| {name} | {_cell(r['value'])} | {r['unit']} | {_cell(r.get('baseline'))} | "
                     f"{_cell(r.get('ratio'))} | {r.get('goal', '')} | {met} | {when} |")
        machines.add(_machine_label(r.get("machine")))
    m = doc["machine"]
    where = "; ".join(sorted(machines))
    return ("\n".join(lines) + f"\n\nMeasured on: {where}. Latest run: {m['cpus']} CPUs, {m['memory_gb']} GB, "
            f"{m['platform']}, Python {m['python']}.\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
