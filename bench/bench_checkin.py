"""checkin_throughput: full check-ins over HTTP with 64 connections vs a bare single-INSERT endpoint.

Both run under the same uvicorn settings (2 worker processes) against the same database, driven by the
same asyncio client, in this run. A full check-in converts coordinates, measures the fence in PostGIS,
gathers the risk context, decides, inserts the fix and the audit row and stores the idempotent response.
"""
from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from datetime import datetime, timezone

import httpx
from sqlalchemy import text

from accounts.security import create_access_token
from bench.common import figure, pct, scale, server, use_bench_database
from bench.seed import bench_merchant
from core.db import get_engine

CONNECTIONS = 64
CENTER = (116.3976, 39.8990)


def _seed(n: int) -> list[tuple[int, int]]:
    """n fresh workers, each holding a claim on one big published task; returns (claim_id, worker_id)."""
    run = uuid.uuid4().hex[:8]
    with get_engine().begin() as conn:
        m = bench_merchant(conn)
        task = conn.execute(text("""
            INSERT INTO task (merchant_id, title, description, type, state, reward_fen, slots, slots_taken, starts_at,
                              ends_at, fence, center, fence_kind, radius_m, area_m2, hard_fence, photos_min,
                              video_required, min_credit)
            VALUES (:m, 'checkin bench', '', 'store_visit', 'published', 1000, :n, :n, now() - interval '1 hour',
                    now() + interval '1 day', ST_Buffer(ST_MakePoint(:lon, :lat)::geography, 200),
                    ST_MakePoint(:lon, :lat)::geography, 'circle', 200, 125663.7, true, 1, false, 0)
            RETURNING id"""), {"m": m, "n": n, "lon": CENTER[0], "lat": CENTER[1]}).scalar_one()
        rows = conn.execute(text("""
            WITH w AS (INSERT INTO app_user (username, password_hash, role, display_name)
                       SELECT 'bench_' || :run || '_' || g, 'x', 'worker', 'w' FROM generate_series(1, CAST(:n AS int)) g
                       RETURNING id)
            INSERT INTO claim (task_id, worker_id, state, expires_at, risk_score, flags)
            SELECT :t, id, 'claimed', now() + interval '1 day', 0, '{}' FROM w RETURNING id, worker_id"""),
                            {"run": run, "n": n, "t": task}).all()
    return [(r[0], r[1]) for r in rows]


def _fix(rng: random.Random, worker_id: int) -> dict:
    return {"lat": CENTER[1] + rng.uniform(-0.0005, 0.0005), "lon": CENTER[0] + rng.uniform(-0.0005, 0.0005),
            "crs": "wgs84", "accuracy_m": round(rng.uniform(5, 30), 1),
            "client_time": datetime.now(timezone.utc).isoformat(), "device_id": f"bench-device-{worker_id}",
            "provider": "gps", "platform": "android", "mock_location": False}


async def _drive(base: str, jobs: list[tuple[str, dict, dict]], duration_s: float) -> tuple[float, list[float], int]:
    queue = list(reversed(jobs))
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration_s

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while queue and time.perf_counter() < deadline:
            path, body, headers = queue.pop()
            t = time.perf_counter()
            try:
                r = await client.post(base + path, json=body, headers=headers)
                errors += r.status_code >= 400
            except httpx.TransportError:  # counted, not fatal: a reset connection is a failed request
                errors += 1
            latencies.append((time.perf_counter() - t) * 1000)

    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies, errors


def run() -> dict:
    """Measure both endpoints; returns the two figures."""
    use_bench_database()

    duration = max(5.0, 20.0 * scale())
    claims = _seed(int(4000 * max(scale(), 0.25)))
    rng = random.Random(1)
    full = [(f"/v1/claims/{cid}/checkins", _fix(rng, wid),
             {"Authorization": f"Bearer {create_access_token(wid, 'worker')}", "Idempotency-Key": uuid.uuid4().hex})
            for cid, wid in claims]
    bare = [("/bare", body, {}) for _, body, _ in full]
    with server("bench.bare_app:app") as base:
        asyncio.run(_drive(base, bare[:300], 3))
        bare_rps, bare_lat, bare_err = asyncio.run(_drive(base, bare[300:], duration))
    with server("api.app:app") as base:
        asyncio.run(_drive(base, full[:300], 3))
        rps, lat, err = asyncio.run(_drive(base, full[300:], duration))
    if err or bare_err:
        print(f"[bench_checkin] errors: full {err}, bare {bare_err}")
    return {"checkin_throughput": figure(rps, "req/s", bare_rps, True, "ratio >= 0.6 (64 connections, 2 cores)",
                                                 min_ratio=0.6),
            "checkin_throughput_p99_ms": figure(pct(lat, 99), "ms", pct(bare_lat, 99), False, "p99 <= 250 ms",
                                                        at_most=250)}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
