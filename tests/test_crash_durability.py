"""Acknowledged means durable: kill -9 the postmaster under load, restart it, and find every 2xx write.

Runs on a throwaway PostgreSQL cluster of its own (started the way `fieldproof db up` starts one), so the
rest of the suite's server is never killed. While the database is down the API answers 503
``service_unavailable`` with Retry-After, and logs the outage once rather than a traceback per request.
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from accounts import service as accounts
from core.localservices import PG_SUPERUSER, LocalServices
from core.migrate import upgrade
from ledger.models import LedgerTransaction
from tests.helpers import PASSWORD, unique
from tests.live import live_server

LOAD_THREADS = 8
KILL_AFTER_S = 1.5
LOAD_FOR_S = 4.0


@pytest.fixture(scope="module")
def cluster():
    data = Path(tempfile.mkdtemp(prefix="fieldproof-crash-"))
    svc = LocalServices(data)
    svc.pg_up()
    st = svc.state()
    url = f"postgresql+psycopg://{PG_SUPERUSER}:{st['pg_password']}@127.0.0.1:{st['pg_port']}/fieldproof"
    upgrade(url)
    try:
        yield svc, url
    finally:
        svc.pg_down()
        target = svc.pg_dir.resolve()
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(target, ignore_errors=True)


def _processes_of(cluster_dir: str) -> list[int]:
    """Live PostgreSQL processes of this cluster (the postmaster's children outlive it for a moment);
    every one of them runs with the data directory as its working directory."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/cwd") == cluster_dir:
                found.append(int(pid))
        except OSError:
            continue
    return found


def _postmaster_pid(svc: LocalServices) -> int:
    return int((svc.pg_dir.resolve() / "postmaster.pid").read_text().splitlines()[0])


def _kill_9_under_load(svc: LocalServices, engine, load, acked: list) -> int:
    """Run ``load(i)`` on LOAD_THREADS threads, kill -9 the postmaster after KILL_AFTER_S, wait for the load to
    end and the cluster's processes to exit, then start it again (crash recovery replays the WAL). Returns how
    many writes were acknowledged before the kill."""
    threads = [threading.Thread(target=load, args=(i,)) for i in range(LOAD_THREADS)]
    for t in threads:
        t.start()
    time.sleep(KILL_AFTER_S)
    before_kill = len(acked)
    os.kill(_postmaster_pid(svc), signal.SIGKILL)
    for t in threads:
        t.join(30)
    engine.dispose()
    cluster_dir = str(svc.pg_dir.resolve())
    for _ in range(200):  # the orphaned backends notice the postmaster's death and exit
        if not _processes_of(cluster_dir) and not svc.pg_running():
            break
        time.sleep(0.1)
    svc.pg_up()
    return before_kill


def test_the_cluster_acknowledges_only_what_is_on_disk(cluster):
    _, url = cluster
    engine = create_engine(url)
    with engine.connect() as conn:  # the server's own setting, not only what our engine asks for
        assert conn.execute(text("SELECT reset_val FROM pg_settings WHERE name = 'synchronous_commit'")).scalar() == "on"
        assert conn.execute(text("SHOW fsync")).scalar() == "on"
    engine.dispose()
    from core.db import get_engine

    with get_engine().connect() as conn:  # the app's engine insists on it per connection too
        assert conn.execute(text("SHOW synchronous_commit")).scalar() == "on"


def test_kill_9_under_load_loses_no_acknowledged_write(cluster, tmp_path):
    svc, url = cluster
    engine = create_engine(url)
    from sqlalchemy.orm import Session

    with Session(engine, expire_on_commit=False) as s:
        merchants = [accounts.create(db_session=s, username=unique("crash_m"), password=PASSWORD, role="merchant",
                                     self_service=False) for _ in range(LOAD_THREADS)]
    log = tmp_path / "api.log"
    env = {"FIELDPROOF_RATE_LIMIT_PER_MINUTE_USER": "100000", "FIELDPROOF_RATE_LIMIT_PER_MINUTE_IP": "100000",
           "FIELDPROOF_LOGIN_PER_IP_PER_MINUTE": "100000"}
    with live_server("crash", env, database=url, log_path=log) as server:
        tokens = []
        with server.http() as c:
            for m in merchants:
                r = c.post("/v1/auth/token", data={"username": m.username, "password": PASSWORD})
                assert r.status_code == 200, r.text
                tokens.append({"Authorization": f"Bearer {r.json()['access_token']}"})
        acked: list[tuple[dict, str, int]] = []
        outage: list[httpx.Response] = []
        deadline = time.monotonic() + LOAD_FOR_S

        def load(i: int) -> None:
            with server.http() as c:
                while time.monotonic() < deadline:
                    key = uuid.uuid4().hex
                    try:
                        r = c.post("/v1/me/deposits", json={"amount_fen": 100, "purpose": "available"},
                                   headers={**tokens[i], "Idempotency-Key": key}, timeout=10)
                    except httpx.TransportError:
                        continue
                    if r.status_code == 201:
                        acked.append((tokens[i], key, r.json()["transaction_id"]))
                    elif r.status_code >= 500:
                        outage.append(r)
                    time.sleep(0.002)

        before_kill = _kill_9_under_load(svc, engine, load, acked)

        assert before_kill >= 5, "the load never got going"
        with Session(engine) as s:
            stored = set(s.scalars(select(LedgerTransaction.id).where(
                LedgerTransaction.id.in_([txn for _, _, txn in acked]))))
        lost = [txn for _, _, txn in acked if txn not in stored]
        assert lost == [], f"{len(lost)} of {len(acked)} acknowledged deposits lost"
        # The phone's retry of an acknowledged write replays the stored answer; nothing is charged twice.
        with server.http() as c:
            for headers, key, txn in acked[-5:]:
                r = c.post("/v1/me/deposits", json={"amount_fen": 100, "purpose": "available"},
                           headers={**headers, "Idempotency-Key": key})
                assert r.status_code == 201 and r.json()["transaction_id"] == txn, r.text
    engine.dispose()
    # While it was down the API said so with 503 + Retry-After, never 500, and logged the outage once.
    assert outage, "no request saw the outage"
    assert {r.status_code for r in outage} == {503}, {r.status_code for r in outage}
    assert all(r.json()["code"] == "service_unavailable" and int(r.headers["Retry-After"]) > 0 for r in outage)
    text_log = log.read_text(errors="replace")
    assert text_log.count("dependency_unavailable") == 1, text_log[-3000:]
    assert "unhandled_error" not in text_log, text_log[-3000:]


def test_kill_9_under_check_in_load_loses_no_acknowledged_check_in(cluster, tmp_path):
    """The check-in's pipelined write path (async pool, two round trips, COMMIT): kill -9 the postmaster while 8
    phones check in, restart it, and find every acknowledged fix with its claim moved; a retry replays it."""
    from bench.bench_checkin import _fix, seed_claims
    from checkin.models import Checkin
    from tasks.models import Claim

    svc, url = cluster
    if not svc.pg_running():
        svc.pg_up()
    engine = create_engine(url)
    claims = seed_claims(LOAD_THREADS * 400, engine=engine)
    env = {"FIELDPROOF_RATE_LIMIT_PER_MINUTE_USER": "100000", "FIELDPROOF_RATE_LIMIT_PER_MINUTE_IP": "100000"}
    with live_server("crash_checkin", env, database=url, log_path=tmp_path / "api.log") as server:
        acked: list[tuple[dict, str, str, int, int]] = []
        outage: list[httpx.Response] = []
        deadline = time.monotonic() + LOAD_FOR_S
        rng = __import__("random").Random(5)

        def load(i: int) -> None:
            with server.http() as c:
                for s in claims[i::LOAD_THREADS]:
                    if time.monotonic() > deadline:
                        return
                    key, body = uuid.uuid4().hex, _fix(rng, s)
                    headers = {"Authorization": f"Bearer {s.token}", "Idempotency-Key": key,
                               "Content-Type": "application/json"}
                    try:
                        r = c.post(f"/v1/claims/{s.claim_id}/checkins", content=body, headers=headers, timeout=10)
                    except httpx.TransportError:
                        continue
                    if r.status_code == 201:
                        acked.append((headers, body, key, s.claim_id, r.json()["id"]))
                    elif r.status_code >= 500:
                        outage.append(r)

        before_kill = _kill_9_under_load(svc, engine, load, acked)

        assert before_kill >= 5, "the load never got going"
        from sqlalchemy.orm import Session

        with Session(engine) as s:
            stored = dict(s.execute(select(Checkin.id, Checkin.claim_id).where(
                Checkin.id.in_([fid for *_, fid in acked]))).all())
            moved = set(s.scalars(select(Claim.id).where(Claim.id.in_([cid for *_, cid, _ in acked]),
                                                         Claim.state == "checked_in")))
        lost = [(cid, fid) for *_, cid, fid in acked if stored.get(fid) != cid or cid not in moved]
        assert lost == [], f"{len(lost)} of {len(acked)} acknowledged check-ins lost"
        with server.http() as c:  # the phone's retry replays the stored answer: no second fix
            for headers, body, _, cid, fid in acked[-5:]:
                r = c.post(f"/v1/claims/{cid}/checkins", content=body, headers=headers)
                assert r.status_code == 201 and r.json()["id"] == fid, r.text
                assert r.headers.get("Idempotent-Replayed") == "true"
    engine.dispose()
    assert outage, "no request saw the outage"
    assert {r.status_code for r in outage} == {503}, {r.status_code for r in outage}
    assert all(r.json()["code"] == "service_unavailable" for r in outage)
    assert "unhandled_error" not in (tmp_path / "api.log").read_text(errors="replace")
