"""Shared benchmark plumbing: a separate bench database, percentiles, figure records."""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager

import httpx
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from core import localservices
from core.config import get_settings
from core.db import get_engine
from core.localservices import free_port
from core.migrate import upgrade
from core.redis import redis_url

BENCH_DB = "fieldproof_bench"
# The server settings as given, before use_bench_database() points this process at the bench database and Redis DB.
GIVEN_ENV = {k: os.environ.get(k) for k in ("FIELDPROOF_DATABASE_URL", "FIELDPROOF_REDIS_URL")}


def scale() -> float:
    """FIELDPROOF_BENCH_SCALE shrinks data sizes for a quick run (1.0 = the sizes the goals name)."""
    return float(os.environ.get("FIELDPROOF_BENCH_SCALE", "1.0"))


def use_bench_database() -> str:
    """Point this process (and children) at a migrated bench database; returns its URL."""

    localservices.up()
    url = os.environ.get("FIELDPROOF_BENCH_DATABASE_URL")
    if not url:
        if localservices.external():
            base = get_settings().database_url.rsplit("/", 1)[0]
        else:
            svc = localservices.LocalServices.from_settings()
            svc.ensure_database(BENCH_DB)
            base = svc.database_url(BENCH_DB).rsplit("/", 1)[0]
        url = f"{base}/{BENCH_DB}"
    os.environ["FIELDPROOF_DATABASE_URL"] = url
    if not os.environ.get("FIELDPROOF_REDIS_URL"):

        os.environ["FIELDPROOF_REDIS_URL"] = redis_url().rsplit("/", 1)[0] + "/14"
    get_settings.cache_clear()

    get_engine.cache_clear()
    upgrade(url)
    return url


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def figure(value: float, unit: str, baseline: float | None, bigger_is_better: bool, goal: str, *,
           at_most: float | None = None, at_least: float | None = None, min_ratio: float | None = None,
           errors: int = 0, detail: dict | None = None) -> dict:
    """One result row; ratio is oriented so that bigger is always better; ``met`` checks the goal's bounds.

    ``errors`` counts failed requests (non-2xx, socket errors, timeouts) or lost work behind the figure: any makes
    ``met`` false and `bench.run` exit non-zero, since a figure measured over failures is not a measurement.
    """
    ratio = None
    if baseline:
        ratio = value / baseline if bigger_is_better else baseline / value if value else None
    checks = []
    if at_most is not None:
        checks.append(value <= at_most)
    if at_least is not None:
        checks.append(value >= at_least)
    if min_ratio is not None:
        checks.append(ratio is not None and ratio >= min_ratio)
    met = all(checks) if checks else None
    if errors:
        met = False
    row = {"value": round(value, 3), "unit": unit, "baseline": None if baseline is None else round(baseline, 3),
           "ratio": None if ratio is None else round(ratio, 3), "goal": goal, "met": met, "errors": errors}
    if detail:
        row["detail"] = detail
    return row


RATE_LIMITS_LIFTED = {name: "100000000" for name in (
    "FIELDPROOF_RATE_LIMIT_PER_MINUTE_USER", "FIELDPROOF_RATE_LIMIT_PER_MINUTE_IP",
    "FIELDPROOF_REGISTER_PER_IP_PER_HOUR", "FIELDPROOF_REGISTER_PER_MINUTE_TOTAL",
    "FIELDPROOF_LOGIN_PER_IP_PER_MINUTE", "FIELDPROOF_LOGIN_PER_MINUTE_TOTAL", "FIELDPROOF_LOGIN_MAX_FAILURES_PER_IP")}


@contextmanager
def server(app_path: str, workers: int = 2):
    """Run uvicorn (``workers`` processes, rate limits lifted) on a free loopback port; yields the base URL.

    Every HTTP benchmark, baseline and real app alike, runs under exactly these settings.
    """

    port = free_port()
    env = {**os.environ, **RATE_LIMITS_LIFTED, "FIELDPROOF_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", app_path, "--host", "127.0.0.1", "--port", str(port),
                             "--workers", str(workers), "--no-access-log", "--log-level", "warning"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{app_path} exited with {proc.returncode} before it was healthy")
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{app_path} did not become healthy in 60 s")
            time.sleep(0.2)
        time.sleep(1.0)  # /healthz answered from one worker process; give the other time to finish starting
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def machine() -> dict:
    """What the figures were measured on."""
    return {"host": platform.node(), "python": sys.version.split()[0], "platform": platform.platform(),
            "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def checkpoint() -> None:
    """Flush dirty pages now, so a checkpoint does not land inside the next timed window (best effort)."""


    try:
        with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("CHECKPOINT"))
    except DBAPIError as exc:  # not allowed on an external server: the bench still runs
        print(f"[bench] CHECKPOINT skipped: {exc.__class__.__name__}", file=sys.stderr)


def summary(latencies_ms: list[float]) -> dict:
    """Median and tail of a latency sample."""
    return {"p50": statistics.median(latencies_ms), "p95": pct(latencies_ms, 95), "p99": pct(latencies_ms, 99)}
