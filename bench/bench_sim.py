"""sim_cpu_per_request_ms: CPU the service spends per simulated request over a simulated day.

Runs `fieldproof simulate` (its own database, API with 2 processes, Celery worker and beat) and reads the report's
``cpu.per_request_ms``: CPU seconds of the API, worker and beat process trees plus the project-local PostgreSQL
and Redis (sim/cpu.py, from /proc), from a healthy stack until the day's uploads are processed, over the requests
the simulated people made. CPU seconds rather than wall time, yet not immune to a busy machine: other load slows
the simulated people (fewer requests in the day) while fixed costs stay, so the figure rises with the load (two
runs of the same code: 52.8 and 40.1 ms, see BASELINES). Compare runs made on an equally quiet machine.

The baseline cannot be re-measured in the same run (it is the service as it was), so it is a constant measured
on the main tree before the issue-15 work, with the same command, recorded below with its date and commit.
At full scale the day is the issue's 200 workers over 8 simulated hours; a quick run (FIELDPROOF_BENCH_SCALE < 1)
uses a 20-worker, 2-hour day at x120, compared with its own baseline (per-request CPU depends on the load, since
idle polling is spread over fewer requests).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import GIVEN_ENV, figure, scale
from core.config import ROOT

# (args, CPU ms per simulated request on main before issue 15, when, commit). Two 200-worker days on main 77915d4:
#   05:35-05:52 UTC, load average ~30 from other sessions: 52.81 ms (673.7 CPU s / 12,757 requests: API 320.5,
#     worker 244.5, beat 3.9, PostgreSQL 95.6, Redis 9.2; day window alone 35.78; 4 transport errors, retried),
#     report in sim/reports/cpu_baseline_200w_8h_seed7_77915d4.txt;
#   06:05-06:21 UTC, load average ~4-15: 40.10 ms (651.9 CPU s / 16,258 requests: API 331.0, worker 218.9,
#     beat 2.3, PostgreSQL 93.8, Redis 5.9; day window alone 32.01; 5 transport errors, retried).
# A loaded machine slows the simulated people (fewer requests per day) while fixed costs stay, so the figure rises
# with load: the baseline is the lower, quieter one (the stricter goal). Re-measure both sides on a quiet machine.
BASELINES = {
    "full": (["--workers", "200", "--hours", "8"], 40.10, "2026-11-29", "77915d4"),
    # ~320 requests a run, for trying the harness, not for judging the goal: 50.85 ms at load ~30 (05:31 UTC),
    # 41.60 ms quieter (06:23 UTC); the lower one, as above.
    "quick": (["--workers", "20", "--hours", "2", "--rate", "120"], 41.60, "2026-11-29", "77915d4"),
}
GOAL_RATIO = 2.0  # "a 200-worker simulated day uses under half the CPU it uses today"


def simulate(args: list[str]) -> dict:
    """Run one simulated day; its JSON report."""

    # As `fieldproof simulate` runs by hand: with the servers as given, not the bench's database (the simulator
    # makes its own), so it finds the local PostgreSQL and Redis whose CPU it counts.
    env = {k: v for k, v in os.environ.items() if k not in GIVEN_ENV}
    env.update({k: v for k, v in GIVEN_ENV.items() if v is not None})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        proc = subprocess.run([sys.executable, "-m", "api.cli", "simulate", *args, "--no-progress", "--json",
                               str(out)], cwd=str(ROOT), capture_output=True, text=True, env=env)
        if not out.exists():
            raise RuntimeError(f"simulate failed ({proc.returncode}): {proc.stderr[-1500:]}")
        return json.loads(out.read_text())


def run() -> dict:
    """One simulated day; the per-request CPU against main's."""
    key = "full" if scale() >= 1 else "quick"
    args, base, when, commit = BASELINES[key]
    rep = simulate(args)
    # The whole day's report (fraud caught, honest workers flagged, ...) is kept beside the figure it gave.
    (ROOT / "sim" / "reports" / f"bench_day_{key}.json").write_text(json.dumps(rep, indent=1, ensure_ascii=False))
    cpu = rep["cpu"]
    # A 5xx, a broken ledger or a backlog left unprocessed (the CPU would be undercounted) fails the figure.
    errors = (rep["errors_5xx"] + rep["transport_errors"] + (0 if rep["ledger_check"]["ok"] else 1)
              + rep["evidence_unprocessed"])
    detail = {"args": " ".join(args), "requests": cpu["simulated_requests"], "cpu_s": cpu["run_s"],
              "by_process_s": cpu["run_by_process_s"], "day_per_request_ms": cpu["day_per_request_ms"],
              "errors_5xx": rep["errors_5xx"], "transport_errors": rep["transport_errors"],
              "ledger_ok": rep["ledger_check"]["ok"], "evidence_unprocessed": rep["evidence_unprocessed"],
              "servers_counted": sorted(cpu["run_by_process_s"]),
              "baseline_from": f"main {commit}, {when}"}
    per_k = rep["storage"]["per_1000_workers_day_mb"]
    storage = {"args": " ".join(args), "largest_tables_bytes": rep["storage"]["largest_tables_bytes"]}
    return {"sim_cpu_per_request_ms": figure(cpu["per_request_ms"], "ms", base, False,
                                             f"under half of main's CPU per request ({' '.join(args)}; "
                                             f"baseline {commit} {when})", min_ratio=GOAL_RATIO,
                                             errors=errors, detail=detail),
            # For the capacity plan (README): what a simulated day leaves on disk, scaled to 1,000 workers.
            "storage_db_per_1000_workers_day_mb": figure(per_k["database"], "MB", None, False,
                                                         "capacity plan input (no goal)", detail=storage),
            "storage_evidence_per_1000_workers_day_mb": figure(per_k["evidence"], "MB", None, False,
                                                               "capacity plan input (no goal)")}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
