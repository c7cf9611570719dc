"""After the day: wait for evidence processing, auto-confirm and the spot-check queue; read the verdicts."""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import create_engine, text

from sim.client import ApiError

DRAIN_LIMIT_S = 300
EVIDENCE_DRAIN_LIMIT_S = 900  # a 200-worker day on a loaded 2-core machine can leave a long hashing backlog


def _evidence_pending(conn, ids: list[int]) -> int:
    """How many of the day's uploads the Celery worker has not processed yet."""

    n = conn.execute(text("SELECT count(*) FROM evidence WHERE id = ANY(:ids) AND state = 'received'"),
                     {"ids": ids}).scalar_one()
    conn.rollback()  # a fresh snapshot for the next poll
    return n


def _claims(workers) -> dict[int, dict]:
    def mine(w):
        return w.s.call("GET", "/v1/me/claims", params={"limit": 200}).json()

    with ThreadPoolExecutor(12) as pool:
        return {c["id"]: c for rows in pool.map(mine, workers) for c in rows}


def drain_evidence(sim, day) -> int:
    """Wait (up to EVIDENCE_DRAIN_LIMIT_S) until Celery has processed the day's uploads; how many are left.

    Polled in the database, not through the API: thousands of status polls would load the API (and the CPU the
    report measures) more than the uploads themselves; the verdicts are read through the API afterwards."""

    ids = [e for v in day.visits for e in v.evidence_ids]
    if not ids:
        return 0
    deadline = time.monotonic() + EVIDENCE_DRAIN_LIMIT_S
    engine = create_engine(sim.stack.database_url(), pool_size=1)
    try:
        with engine.connect() as conn:
            waiting = _evidence_pending(conn, ids)
            while waiting and time.monotonic() < deadline:  # evidence is hashed asynchronously by Celery
                time.sleep(2)
                waiting = _evidence_pending(conn, ids)
            return waiting
    finally:
        engine.dispose()


def table_bytes(url: str) -> dict[str, int]:
    """Every table's size with its indexes and TOAST, largest first; a partitioned table's months summed under its
    own name."""
    engine = create_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            return {name: int(size) for name, size in conn.execute(text("""
                SELECT coalesce(pg_partition_root(c.oid), c.oid)::regclass::text, sum(pg_total_relation_size(c.oid))
                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'public' AND c.relkind = 'r' GROUP BY 1 ORDER BY 2 DESC""")).all()}
    finally:
        engine.dispose()


def storage(sim) -> dict:
    """What the run added on disk: table growth since the empty migrated database, and the evidence files."""
    after = table_bytes(sim.stack.database_url())
    grown = {name: size - sim.empty_tables.get(name, 0) for name, size in after.items()}
    root = sim.stack.env()["FIELDPROOF_EVIDENCE_DIR"]
    files = sum(os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(root) for f in names)
    return {"db_bytes": sum(grown.values()), "evidence_bytes": files,
            "largest_tables_bytes": dict(sorted(grown.items(), key=lambda kv: -kv[1])[:8])}


def _labelled_evidence(day, workers) -> dict[int, dict]:
    """The reasons of every labelled upload (re-used photos, honest same-scene photos), read as their worker."""
    by_name = {w.s.username: w.s for w in workers}
    wanted = [(by_name[v.worker], eid) for v in day.visits for eid, _ in v.labelled]

    def read(item):
        session, eid = item
        return eid, session.call("GET", f"/v1/evidence/{eid}").json()

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(read, wanted))


def collect(sim, day, workers, merchants, ops, evidence_unprocessed: int) -> dict:
    """Drain the day's other loose ends through the API, then gather claims, stats and the ledger check."""
    deadline = time.monotonic() + DRAIN_LIMIT_S
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
    labelled = _labelled_evidence(day, workers)
    ledger = sim.stack.cli("ledger", "check")
    stats = sim.api.stats
    return {"claims": claims, "visits": day.visits, "workers": workers, "merchants": merchants, "ops": ops,
            "stats": stats, "labelled": labelled, "failures": day.failures, "evidence_unprocessed": evidence_unprocessed,
            "ledger": {"ok": ledger.returncode == 0, "output": (ledger.stdout + ledger.stderr).strip()},
            "storage": storage(sim), "rate": sim.stack.clock.rate, "hours": sim.o.hours, "seed": sim.o.seed}


__all__ = ["collect", "ApiError"]
