"""Dependency checks for /healthz."""
from __future__ import annotations

import time

from sqlalchemy import text

from core import replica
from core.config import get_settings
from core.db import get_engine
from core.redis import get_redis


def _timed(fn) -> dict:
    started = time.perf_counter()
    try:
        detail = fn()
        return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1), "detail": detail}
    except Exception as exc:  # a health check reports every failure, whatever its kind
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


def _db() -> str:
    with get_engine().connect() as conn:
        return "postgis " + conn.execute(text("SELECT postgis_lib_version()")).scalar_one()


def _redis() -> str:
    get_redis().ping()
    return "pong"


def check_all() -> dict[str, dict]:
    """Check the database and Redis, and report the read replica's lag when one is configured. The replica is
    optional: reads fall back to the primary, so a lagging or stopped replica does not make the service unhealthy."""
    checks = {"database": _timed(_db), "redis": _timed(_redis)}
    if get_settings().replica or get_settings().replica_url:
        checks["replica"] = {**_timed(replica.status), "optional": True}
    return checks
