"""Shared benchmark plumbing: a separate bench database, percentiles, figure records, per-call CPU of this process
and of its PostgreSQL backend."""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from core import localservices
from core.config import get_settings
from core.db import get_engine, new_session
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


class ServerURL(str):
    """A running server's base URL; ``pid`` is its uvicorn process (the root of its process tree)."""

    pid: int


@contextmanager
def server(app_path: str, workers: int = 2, env: dict[str, str] | None = None):
    """Run uvicorn (``workers`` processes, rate limits lifted) on a free loopback port; yields the base URL.

    Every HTTP benchmark, baseline and real app alike, runs under exactly these settings (``env`` adds variables
    that do not change them, such as PGAPPNAME to tell its database connections apart).
    """

    port = free_port()
    env = {**os.environ, **RATE_LIMITS_LIFTED, "FIELDPROOF_LOG_LEVEL": "WARNING", **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", app_path, "--host", "127.0.0.1", "--port", str(port),
                             "--workers", str(workers), "--no-access-log", "--log-level", "warning"], env=env)
    base = ServerURL(f"http://127.0.0.1:{port}")
    base.pid = proc.pid
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


def backend_cpu_s(pid: int | None) -> float | None:
    """CPU seconds a local PostgreSQL backend has used (/proc/PID/sched, to the microsecond: /proc/PID/stat counts
    10 ms ticks); None when unreadable (an external server)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/sched") as f:
            for line in f:
                if line.startswith("se.sum_exec_runtime"):
                    return float(line.split(":")[1]) / 1000
    except OSError:
        return None
    return None


def backend_pid(session) -> int:
    """The PostgreSQL backend behind a session's connection (psycopg keeps it: no round trip)."""
    return session.connection().connection.driver_connection.info.backend_pid


@dataclass
class Sample:
    """Per-call wall and CPU (this process + its backend, when the backend was readable) in seconds."""

    wall: list[float]
    cpu: list[float]
    db_cpu: list[float]

    @classmethod
    def empty(cls) -> "Sample":
        return cls([], [], [])

    def add(self, wall: float, cpu: float, db: float | None) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu + (db or 0.0))
        if db is not None:
            self.db_cpu.append(db)

    def ms(self) -> dict:
        """p50/p95 of wall and total CPU, and the backend's mean, in ms."""
        out = {"wall_p50": pct(self.wall, 50), "wall_p95": pct(self.wall, 95), "cpu_p50": pct(self.cpu, 50),
               "cpu_p95": pct(self.cpu, 95), "app_cpu_mean": statistics.fmean(self.cpu) - (
                   statistics.fmean(self.db_cpu) if self.db_cpu else 0.0)}
        if self.db_cpu:
            out["db_cpu_mean"] = statistics.fmean(self.db_cpu)
        return {k: round(v * 1000, 3) for k, v in out.items()}


class Meter:
    """Times calls on one pooled connection, reading its backend's CPU around each."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.switched = 0

    def call(self, sample: Sample | None, fn) -> object:
        """Run ``fn(session)`` in a fresh session; it commits and returns (result, backend_pid(session) read
        while it held the connection). Recorded in ``sample`` unless None."""
        db0 = backend_cpu_s(self.pid)
        w0, c0 = time.perf_counter(), time.process_time()
        session = new_session()
        try:
            out, used = fn(session)
        finally:
            session.close()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        db1 = backend_cpu_s(self.pid)
        if used != self.pid:  # another pooled connection: its backend's CPU was not the one read
            self.switched += self.pid is not None
            self.pid, db0 = used, None
        if sample is not None:
            sample.add(wall, cpu, None if db0 is None or db1 is None else db1 - db0)
        return out
