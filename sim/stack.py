"""The simulated service: its own database and Redis DB, an API server, a Celery worker and beat,
all on one simulated clock (core.clock) anchored to a real epoch every process shares."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import redis
from sqlalchemy import create_engine, text

from core.clock import ClockConfig
from core.config import ROOT
from core.db import database_url
from core.localservices import free_port
from core.migrate import upgrade
from core.redis import redis_url


def _with_db(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


@dataclass
class Stack:
    """Processes and settings of one simulation run."""

    database_name: str
    redis_db: int
    clock: ClockConfig
    api_workers: int = 2
    celery_concurrency: int = 2
    auto_confirm_after_s: int = 1800
    port: int = field(default_factory=free_port)
    procs: list = field(default_factory=list)
    workdir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="fieldproof-sim-"))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def database_url(self) -> str:
        return _with_db(database_url(), self.database_name)

    def redis_url(self) -> str:
        return redis_url().rsplit("/", 1)[0] + f"/{self.redis_db}"

    def env(self) -> dict[str, str]:
        """Settings for the child processes (FIELDPROOF_* env vars), layered over ours."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDPROOF_SIM_")}
        env.update({
            "FIELDPROOF_ENV": "sim",
            "FIELDPROOF_DATABASE_URL": self.database_url(),
            "FIELDPROOF_REDIS_URL": self.redis_url(),
            "FIELDPROOF_EVIDENCE_DIR": os.path.join(self.workdir, "evidence"),
            "FIELDPROOF_SIM_CLOCK_START": self.clock.start.isoformat(),
            "FIELDPROOF_SIM_CLOCK_RATE": repr(self.clock.rate),
            "FIELDPROOF_SIM_CLOCK_EPOCH": repr(self.clock.epoch),
            # Merchants who never act are confirmed by beat within the simulated day.
            "FIELDPROOF_AUTO_CONFIRM_AFTER_S": str(self.auto_confirm_after_s),
            # Limits count per *real* minute and every phone is 127.0.0.1 behind the forwarded header:
            # a day compressed 60x sends 60x the per-minute traffic, so the limits are lifted here only.
            "FIELDPROOF_RATE_LIMIT_PER_MINUTE_USER": "1000000",
            "FIELDPROOF_RATE_LIMIT_PER_MINUTE_IP": "1000000",
            "FIELDPROOF_LOGIN_MAX_FAILURES_PER_IP": "1000000",
            # Every simulated phone signs up and logs in from 127.0.0.1.
            "FIELDPROOF_REGISTER_PER_IP_PER_HOUR": "1000000",
            "FIELDPROOF_REGISTER_PER_MINUTE_TOTAL": "1000000",
            "FIELDPROOF_LOGIN_PER_IP_PER_MINUTE": "1000000",
            "FIELDPROOF_LOGIN_PER_MINUTE_TOTAL": "1000000",
            # Hourly instead of 15-minute tokens: the day still crosses expiries, with 4x fewer refreshes.
            "FIELDPROOF_ACCESS_TOKEN_TTL_S": "3600",
            # Hundreds of sign-ups on two cores: a cheap argon2 (8 MiB, 1 pass; refused in prod) so setup
            # measures the service, not the password hash. Verification reads the cost from each hash.
            "FIELDPROOF_ARGON2_MEMORY_KIB": "8192",
            "FIELDPROOF_ARGON2_TIME_COST": "1",
            "FIELDPROOF_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        })
        return env

    def create_database(self) -> None:
        """Drop and re-create the simulation database, then migrate it."""
        admin = create_engine(_with_db(self.database_url(), "postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{self.database_name}"'))
        admin.dispose()

        redis.Redis.from_url(self.redis_url()).flushdb()
        upgrade(self.database_url())

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        """Run a `fieldproof` command against the simulation's database."""
        return subprocess.run([sys.executable, "-m", "api.cli", *args], input=stdin, capture_output=True, text=True,
                              env=self.env(), cwd=str(ROOT), timeout=300)

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(os.path.join(self.workdir, f"{name}.log"), "w")
        self.procs.append(subprocess.Popen(args, env=self.env(), cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))

    def start(self) -> None:
        """API (uvicorn, trusting X-Forwarded-For from loopback only), Celery worker and beat."""
        py = sys.executable
        self._spawn("api", [py, "-m", "uvicorn", "api.app:app", "--host", "127.0.0.1", "--port", str(self.port),
                            "--workers", str(self.api_workers), "--no-access-log", "--log-level", "warning",
                            "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"])
        celery = [py, "-m", "celery", "-A", "workers.celery_app:app"]
        self._spawn("worker", [*celery, "worker", "-Q", "default,evidence,maintenance,money", "--concurrency",
                               str(self.celery_concurrency), "-n", f"sim{os.getpid()}@%h", "--without-gossip",
                               "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"])
        self._spawn("beat", [*celery, "beat", "--schedule", os.path.join(self.workdir, "beat-schedule"),
                             "--loglevel", "WARNING"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"a simulation process exited early; logs in {self.workdir}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the simulation API did not become healthy; logs in {self.workdir}")

    def pids(self) -> dict[str, int]:
        """The started processes by role (api, worker, beat): roots of the trees whose CPU is reported."""
        return {name: p.pid for name, p in zip(("api", "worker", "beat"), self.procs)}

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self, keep_logs: bool = False) -> None:
        """Terminate what we started (SIGTERM, then SIGKILL) and remove the work directory."""
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()
        if not keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)


def clock_for(start: datetime, rate: float, lead_s: float = 0.0) -> ClockConfig:
    """A clock whose simulated ``start`` is ``lead_s`` real seconds from now."""
    return ClockConfig(start=start, rate=rate, epoch=time.time() + lead_s)
