"""The check-in write path: its round-trip budget, one session per request, check-out as one service verb."""
from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from accounts import service as accounts
from accounts.models import User
from checkin import service as checkins
from checkin.models import Checkin
from checkin.schemas import CheckinCreate
from tasks.models import Claim, ClaimEvent
from tests.fieldwork import claimed, fix, now
from tests.helpers import PASSWORD, unique

# What one check-in may cost: two round trips (pipeline syncs: core.flow) and five statements in them. First the
# user (auth) with the idempotency lock, then the key's record with the measure (claim locked, fence distance,
# history, the fix's id); then the fix, the claim's guarded move with its audit row, and the stored response, with
# the COMMIT in the same round trip (the batch is marked ``commit``; on the API's pool run_in_transaction sends it).
CHECKIN_ROUND_TRIPS, CHECKIN_STATEMENTS = 2, 5


def _counting_runner(client):
    """Wrap the app's flow runner: every batch a flow sends (one round trip each) with its statements."""
    from api import deps

    inner_factory = client.app.dependency_overrides[deps.get_flow_runner]
    batches: list[list] = []
    committing: list[bool] = []

    async def factory():
        inner = await inner_factory()

        async def run(f):
            def counted():
                rows = None
                while True:
                    try:
                        batch = f.send(rows)
                    except StopIteration as stop:
                        return stop.value
                    batches.append(list(batch.stmts))
                    committing.append(batch.commit)
                    rows = yield batch
            return await inner(counted())
        return run

    client.app.dependency_overrides[deps.get_flow_runner] = factory
    return batches, committing


def test_checkin_and_checkout_stay_within_their_round_trip_budget(client, db, connection):
    """Every batch is a round trip to PostgreSQL: the budget is the contract (was 19 statements, each its own
    round trip, for a check-in; then 7 statements and 9 round trips with BEGIN and COMMIT; then 7 statements in
    2 round trips)."""
    _, claim, w, _ = claimed(client, db)
    batches, batches_committing = _counting_runner(client)
    r = client.post(f"/v1/claims/{claim['id']}/checkins", json=fix(), headers=dict(w, **{"Idempotency-Key": "b-1"}))
    assert r.status_code == 201, r.text
    assert len(batches) == CHECKIN_ROUND_TRIPS and sum(map(len, batches)) <= CHECKIN_STATEMENTS, batches
    assert not any(s.writes for s in batches[0])  # nothing is written before the key is known not to be a replay
    assert batches_committing[-1]  # the last batch carries the COMMIT where the driver owns the transaction
    batches.clear()
    h, out = dict(w, **{"Idempotency-Key": "b-2"}), fix()
    r = client.post(f"/v1/claims/{claim['id']}/checkouts", json=out, headers=h)
    assert r.status_code == 201, r.text
    assert len(batches) == CHECKIN_ROUND_TRIPS and sum(map(len, batches)) <= CHECKIN_STATEMENTS, batches
    # A replay is one round trip that writes nothing: the stored response comes back, nothing is written again.
    batches.clear()
    r2 = client.post(f"/v1/claims/{claim['id']}/checkouts", json=out, headers=h)
    assert r2.headers.get("Idempotent-Replayed") == "true" and r2.json() == r.json()
    assert len(batches) == 1 and not any(s.writes for s in batches[0]), batches
    stored = db.scalars(select(Checkin).where(Checkin.claim_id == claim["id"])).all()
    assert sorted(c.kind for c in stored) == ["in", "out"]


def test_check_out_is_one_service_verb_returning_the_dwell(client, db):
    """The dwell is computed and stored by the service (no HTTP involved), with the audit row and the signal."""
    _, claim, _, _ = claimed(client, db, min_dwell_s=600)
    worker = db.get(User, claim["worker_id"])
    t0 = now() - timedelta(minutes=3)
    checkins.check_in(db_session=db, worker=worker, claim_id=claim["id"], ip=None,
                      body=CheckinCreate(**fix(client_time=t0.isoformat())))
    row, dwell = checkins.check_out(db_session=db, worker=worker, claim_id=claim["id"], ip=None,
                                    body=CheckinCreate(**fix(client_time=(t0 + timedelta(seconds=125)).isoformat())))
    assert dwell == 125 and row.kind == "out"
    assert "short_dwell" in row.reasons  # below the task's 10-minute minimum
    stored = db.get(Claim, claim["id"])
    db.refresh(stored)
    assert stored.dwell_s == 125 and stored.state == "checked_in" and "short_dwell" in stored.flags
    events = db.scalars(select(ClaimEvent).where(ClaimEvent.claim_id == claim["id"]).order_by(ClaimEvent.id)).all()
    assert [(e.from_state, e.to_state) for e in events][-2:] == [("claimed", "checked_in"),
                                                                 ("checked_in", "checked_in")]
    assert events[-1].data == {"checkin_id": row.id, "dwell_s": 125} and events[-1].reason == "checked out"
    assert db.get(Checkin, row.id).risk_score == row.risk_score


def test_a_users_request_holds_at_most_one_session(client, db, connection, monkeypatch):
    """A session-based write shares one session between authentication and the write (one connection, one
    transaction); the check-in's pipelined flow opens none (its auth rides in the flow's first round trip)."""
    from api import deps

    made = []
    joined = asyncio.run(client.app.dependency_overrides[deps.get_session_factory]())

    def counting():
        made.append(joined())
        return made[-1]

    async def factory():
        return counting

    client.app.dependency_overrides[deps.get_session_factory] = factory
    _, claim, w, _ = claimed(client, db)
    made.clear()
    r = client.post(f"/v1/claims/{claim['id']}/checkins", json=fix(), headers=dict(w, **{"Idempotency-Key": "one"}))
    assert r.status_code == 201 and len(made) == 0
    r = client.post(f"/v1/claims/{claim['id']}/capture-nonces", headers=dict(w, **{"Idempotency-Key": "two"}))
    assert r.status_code == 201 and len(made) == 1


def _signed_in_worker(srv) -> dict:
    """A new worker on a live server, signed in: its Authorization header."""
    with srv.session() as s:
        user = accounts.create(db_session=s, username=unique("live"), password=PASSWORD, role="worker",
                               self_service=False)
    with srv.http() as c:
        r = c.post("/v1/auth/token", data={"username": user.username, "password": PASSWORD})
        return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_more_requests_than_connections_never_wait_for_a_connection_while_holding_a_thread(test_database):
    """A session keeps its connection across the request's thread hops (auth, then the handler). With 2
    threads, 2 connections and no overflow, 24 authenticated requests at once must all succeed: unbounded,
    requests past their auth would hold both connections while the threads wait for a third (pool timeout)."""
    from tests.live import live_server, release_together

    env = {"FIELDPROOF_API_THREADS": "2", "FIELDPROOF_DB_POOL_SIZE": "2", "FIELDPROOF_DB_MAX_OVERFLOW": "0",
           "FIELDPROOF_DB_POOL_TIMEOUT_S": "3", "FIELDPROOF_RATE_LIMIT_PER_MINUTE_USER": "100000",
           "FIELDPROOF_RATE_LIMIT_PER_MINUTE_IP": "100000"}
    with live_server("pool", env) as srv:
        headers = _signed_in_worker(srv)
        results = release_together(srv, 24, lambda c, i: c.get("/v1/me", headers=headers))
    codes = [r if isinstance(r, Exception) else r.status_code for r in results]
    assert codes == [200] * 24, codes


def test_a_slow_upload_holds_no_connection_while_its_body_arrives(test_database):
    """With one connection and one session slot per process, another request is served while a phone is still
    sending a photo: the upload reads the worker from the database only once its body is in."""
    import threading
    import time
    from pathlib import Path

    from tests.live import live_server

    photo = (Path(__file__).parent / "data" / "photos" / "brick.jpg").read_bytes()
    boundary = "slowboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()
    env = {"FIELDPROOF_API_THREADS": "2", "FIELDPROOF_DB_POOL_SIZE": "1", "FIELDPROOF_DB_MAX_OVERFLOW": "0",
           "FIELDPROOF_DB_POOL_TIMEOUT_S": "10"}
    with live_server("slowupload", env) as srv:
        headers = _signed_in_worker(srv)
        sending = threading.Event()

        def slow_body():
            yield head
            sending.set()
            for i in range(0, len(photo), len(photo) // 4 + 1):
                time.sleep(1.0)
                yield photo[i:i + len(photo) // 4 + 1]
            yield f"\r\n--{boundary}--\r\n".encode()

        result = {}

        def upload():
            with srv.http() as c:
                result["upload"] = c.post("/v1/claims/999999/evidence", content=slow_body(), headers={
                    **headers, "Content-Type": f"multipart/form-data; boundary={boundary}"})

        t = threading.Thread(target=upload)
        t.start()
        assert sending.wait(10)
        time.sleep(0.5)  # the upload's request is in and its body is arriving
        with srv.http() as c:
            started = time.monotonic()
            me = c.get("/v1/me", headers=headers)
            waited = time.monotonic() - started
        t.join(30)
    assert me.status_code == 200 and waited < 2.0, (me.status_code, waited)
    assert result["upload"].status_code == 404  # the body was taken in full, then the claim was looked up


def test_the_api_freezes_what_it_built_while_starting(test_database):
    """core.heap: a served API process has moved its startup objects (modules, app, mappers: over 100,000) out of
    the cyclic collector's reach, so a full collection under load no longer walks them (and stalls requests)."""
    import re

    from tests.live import live_server

    token = "m" * 40
    with live_server("heap", {"FIELDPROOF_METRICS_TOKEN": token}) as srv, srv.http() as c:
        body = c.get("/metrics", headers={"Authorization": f"Bearer {token}"}).text
    frozen = re.search(r"^fieldproof_gc_frozen_objects (\S+)$", body, re.M)
    assert frozen and float(frozen.group(1)) > 100_000, body[:2000]


def test_every_celery_pool_process_freezes_its_startup_objects():
    """The same for the evidence and check-in workers: wired to each pool process's start."""
    import weakref

    from celery import signals

    from workers import celery_app

    # Celery keeps weak references to receivers unless told otherwise; never call a receiver itself here.
    receivers = [ref() if isinstance(ref, weakref.ReferenceType) else ref
                 for _, ref in signals.worker_process_init.receivers]
    assert celery_app._freeze_startup in receivers
