"""After the day: wait for evidence processing, auto-confirm and the spot-check queue; read the verdicts."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from sim.client import ApiError

DRAIN_LIMIT_S = 300


def _evidence_pending(ops, visits) -> list:
    def pending(v):
        rows = ops.call("GET", f"/v1/claims/{v.claim_id}/evidence").json()
        return v if any(r["state"] != "processed" for r in rows) else None

    with ThreadPoolExecutor(12) as pool:
        return [v for v in pool.map(pending, visits) if v is not None]


def _claims(workers) -> dict[int, dict]:
    def mine(w):
        return w.s.call("GET", "/v1/me/claims", params={"limit": 200}).json()

    with ThreadPoolExecutor(12) as pool:
        return {c["id"]: c for rows in pool.map(mine, workers) for c in rows}


def collect(sim, day, workers, merchants, ops) -> dict:
    """Drain the day's loose ends through the API, then gather claims, stats and the ledger check."""
    deadline = time.monotonic() + DRAIN_LIMIT_S
    waiting = [v for v in day.visits if v.evidence_ids]
    while waiting and time.monotonic() < deadline:  # evidence is hashed asynchronously by Celery
        waiting = _evidence_pending(ops.s, waiting)
        if waiting:
            time.sleep(10)  # polling harder only slows the Celery worker sharing the cores
    for m in merchants:
        if not m.lazy:
            m.review_once()
    while time.monotonic() < deadline:  # beat auto-confirms what lazy merchants left; ops clear the queue
        ops.clear_queue()
        states = {c["state"] for c in _claims(workers).values()}
        if not states & {"submitted", "confirmed", "spot_check"}:
            break
        time.sleep(3)
    ops.clear_queue()
    claims = _claims(workers)
    ledger = sim.stack.cli("ledger", "check")
    stats = sim.api.stats
    return {"claims": claims, "visits": day.visits, "workers": workers, "merchants": merchants, "ops": ops,
            "stats": stats, "failures": day.failures, "evidence_unprocessed": len(waiting),
            "ledger": {"ok": ledger.returncode == 0, "output": (ledger.stdout + ledger.stderr).strip()},
            "rate": sim.stack.clock.rate, "hours": sim.o.hours, "seed": sim.o.seed}


__all__ = ["collect", "ApiError"]
