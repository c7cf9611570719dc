"""Claims: one per worker per task, never oversold under concurrency, expiry frees the slot."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from geoalchemy2.shape import from_shape
from shapely.geometry import Point
from sqlalchemy import delete, func, select, update

from accounts.models import User
from core.db import new_session
from core.errors import FieldproofError
from core.models import utcnow
from tasks import claims
from tasks.models import Claim, ClaimEvent, Task, TaskEvent
from tests.fieldwork import STORE, claimed, published_task
from tests.helpers import auth_for, unique


def test_one_active_claim_per_worker_and_audit_rows(client, db):
    task, _, w, _ = claimed(client, db)
    again = client.post(f"/v1/tasks/{task['id']}/claims", headers=w)
    assert again.status_code == 409 and again.json()["code"] == "already_claimed"
    t = db.get(Task, task["id"])
    db.refresh(t)
    assert t.slots_taken == 1
    events = db.scalars(select(ClaimEvent.to_state).join(Claim).where(Claim.task_id == task["id"])).all()
    assert events == ["claimed"]


def test_slots_full_and_cancel_frees_slot(client, db):
    task, m = published_task(client, db, slots=1)
    _, w1 = auth_for(client, db, "worker")
    _, w2 = auth_for(client, db, "worker")
    c1 = client.post(f"/v1/tasks/{task['id']}/claims", headers=w1).json()
    full = client.post(f"/v1/tasks/{task['id']}/claims", headers=w2)
    assert full.status_code == 409 and full.json()["code"] == "slots_full"
    assert client.post(f"/v1/claims/{c1['id']}/cancel", headers=w1).json()["state"] == "cancelled"
    assert client.post(f"/v1/tasks/{task['id']}/claims", headers=w2).status_code == 201
    progress = client.get(f"/v1/tasks/{task['id']}/progress", headers=m).json()
    assert progress["by_state"] == {"cancelled": 1, "claimed": 1} and progress["slots_taken"] == 1


def test_credit_gate(client, db):
    task, _ = published_task(client, db, min_credit=150)
    _, w = auth_for(client, db, "worker")
    r = client.post(f"/v1/tasks/{task['id']}/claims", headers=w)
    assert r.status_code == 403 and r.json()["code"] == "credit_too_low"


def test_expiry_frees_slot_and_is_safe_twice(client, db):
    task, _, w, _ = claimed(client, db)
    cid = client.get("/v1/me/claims", headers=w).json()[0]["id"]
    db.execute(update(Claim).where(Claim.id == cid).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.flush()
    assert claims.expire_stale(db_session=db) >= 1
    assert claims.expire_stale(db_session=db) == 0
    assert client.get(f"/v1/claims/{cid}", headers=w).json()["state"] == "expired"
    t = db.get(Task, task["id"])
    db.refresh(t)
    assert t.slots_taken == 0


def test_every_forbidden_claim_transition_is_refused(db, client):
    _, claim, _, _ = claimed(client, db)
    for bad_from in [("checked_in",), ("submitted",), ("accepted",)]:
        with pytest.raises(FieldproofError) as exc:
            claims.transition(db, claim["id"], bad_from, "paid", actor_id=None)
        assert exc.value.code == "invalid_transition"


N_WORKERS = 200
SLOTS = 5


@pytest.fixture
def committed_race():
    """A committed task and 200 committed workers (the race needs real, separate transactions)."""
    s = new_session()
    merchant = User(username=unique("race_m"), password_hash="x", role="merchant", display_name="m")
    workers = [User(username=unique("race_w"), password_hash="x", role="worker", display_name="w")
               for _ in range(N_WORKERS)]
    s.add_all([merchant, *workers])
    s.flush()
    pt = from_shape(Point(STORE[1], STORE[0]), srid=4326)
    task = Task(merchant_id=merchant.id, title="race", type="poster", state="published", reward_fen=100,
                slots=SLOTS, slots_taken=0, starts_at=utcnow() - timedelta(hours=1),
                ends_at=utcnow() + timedelta(hours=5), fence=from_shape(Point(STORE[1], STORE[0]).buffer(0.001), srid=4326),
                center=pt, fence_kind="polygon", area_m2=1e4, hard_fence=True, photos_min=0, video_required=False,
                min_credit=0)
    s.add(task)
    s.commit()
    ids = (task.id, [w.id for w in workers], merchant.id)
    s.close()
    yield ids
    s = new_session()
    s.execute(delete(ClaimEvent).where(ClaimEvent.claim_id.in_(select(Claim.id).where(Claim.task_id == ids[0]))))
    s.execute(delete(Claim).where(Claim.task_id == ids[0]))
    s.execute(delete(TaskEvent).where(TaskEvent.task_id == ids[0]))
    s.execute(delete(Task).where(Task.id == ids[0]))
    s.execute(delete(User).where(User.id.in_([*ids[1], ids[2]])))
    s.commit()
    s.close()


def test_concurrent_claims_never_oversell(committed_race):
    task_id, worker_ids, _ = committed_race
    barrier = threading.Barrier(50)
    results: list[str] = []
    lock = threading.Lock()

    def attempt(wid: int, sync: bool) -> None:
        s = new_session()
        try:
            if sync:
                barrier.wait(timeout=30)
            claims.claim(db_session=s, worker=s.get(User, wid), task_id=task_id)
            outcome = "ok"
        except FieldproofError as exc:
            outcome = exc.code
        finally:
            s.close()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=attempt, args=(wid, i < 50)) for i, wid in enumerate(worker_ids)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == N_WORKERS
    assert results.count("ok") == SLOTS
    assert set(results) == {"ok", "slots_full"}
    s = new_session()
    try:
        assert s.scalar(select(Task.slots_taken).where(Task.id == task_id)) == SLOTS
        assert s.scalar(select(func.count()).select_from(Claim).where(Claim.task_id == task_id)) == SLOTS
    finally:
        s.close()


def test_claiming_works_under_a_generic_prepared_plan(client, db):
    """psycopg prepares a statement after 5 runs and PostgreSQL may then plan it generically; the ON CONFLICT
    target must still infer the partial unique index (a bound-parameter predicate could not: 42P10 -> 500)."""
    from sqlalchemy import text

    from accounts.models import User
    from tasks import claims
    from tests.fieldwork import published_task
    from tests.helpers import make_user

    task, _ = published_task(client, db, slots=3)
    raw = db.connection().connection.driver_connection
    before = raw.prepare_threshold
    raw.prepare_threshold = 0  # prepare every statement at once
    try:
        db.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        for _ in range(2):
            worker = make_user(db, "worker")
            made = claims.claim(db_session=db, worker=db.get(User, worker.id), task_id=task["id"])
            assert made.state == "claimed"
    finally:
        raw.prepare_threshold = before


def test_a_move_the_guard_refuses_fails_in_postgresql_and_writes_no_audit_row(client, db, connection):
    """move_stmt's guard refuses inside PostgreSQL (so a COMMIT pipelined after it never runs: core.flow): the
    statement fails, the driver raises the move's refusal, and neither the claim nor its audit trail changes."""
    from core import flow
    from core.flow import Batch

    _, claim, _, _ = claimed(client, db)
    events_before = db.scalar(select(func.count()).select_from(ClaimEvent).where(ClaimEvent.claim_id == claim["id"]))

    def wrong_state():
        yield Batch([claims.move_stmt(claim["id"], ("checked_in",), "submitted", actor_id=None, current="claimed")],
                    final=True, commit=True, result=None)

    with pytest.raises(claims.InvalidTransition, match="is claimed; this needs checked_in"):
        with connection.begin_nested():
            flow.run(connection.connection.driver_connection, wrong_state())

    def right_state():
        rows = yield Batch([claims.move_stmt(claim["id"], ("claimed",), "cancelled", actor_id=None,
                                             current="claimed")], final=True, commit=True, result=None)
        return claims.moved(rows[0], claim["id"], ("claimed",), "claimed")

    with connection.begin_nested():
        assert flow.run(connection.connection.driver_connection, right_state()) == "claimed"
    db.expire_all()
    assert db.get(Claim, claim["id"]).state == "cancelled"
    events = db.scalars(select(ClaimEvent.to_state).where(ClaimEvent.claim_id == claim["id"])
                        .order_by(ClaimEvent.id)).all()
    assert len(events) == events_before + 1 and events[-1] == "cancelled"


def test_get_for_reads_in_one_statement_and_locks_the_claim_not_its_task(committed_race):
    """claims.get_for decides who may read a claim in its one statement (claims.readable_by's rule); with
    ``for_update`` it locks the claim's row only, so a merchant confirming does not hold its task's row."""
    from psycopg.errors import LockNotAvailable
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    task_id, worker_ids, merchant_id = committed_race
    s = new_session()
    try:
        mine = claims.claim(db_session=s, worker=s.get(User, worker_ids[0]), task_id=task_id).id
        stranger = User(username=unique("race_x"), password_hash="x", role="merchant", display_name="x")
        ops = User(username=unique("race_o"), password_hash="x", role="ops", display_name="o")
        s.add_all([stranger, ops])
        s.commit()
        readers = {"merchant": s.get(User, merchant_id), "worker": s.get(User, worker_ids[0]), "ops": ops,
                   "other_worker": s.get(User, worker_ids[1]), "other_merchant": stranger}
        assert all(u.id and u.role for u in readers.values())
        engine, counted = s.get_bind(), []

        def count(*_args, **_kw):
            counted.append(1)

        event.listen(engine, "before_cursor_execute", count)
        try:
            seen = {}
            for name, user in readers.items():
                try:
                    seen[name] = claims.get_for(db_session=s, user=user, claim_id=mine).id
                except FieldproofError as exc:
                    seen[name] = exc.code
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert seen == {"merchant": mine, "worker": mine, "ops": mine, "other_worker": "claim_not_found",
                        "other_merchant": "claim_not_found"}, seen
        assert len(counted) == len(readers)  # one statement each, the task's owner included

        other = new_session()
        try:
            claims.get_for(db_session=s, user=readers["merchant"], claim_id=mine, for_update=True)
            other.execute(select(Task.id).where(Task.id == task_id).with_for_update(nowait=True)).one()
            other.rollback()
            with pytest.raises(OperationalError) as held:
                other.execute(select(Claim.id).where(Claim.id == mine).with_for_update(nowait=True)).one()
            assert isinstance(held.value.orig, LockNotAvailable)
            other.rollback()
            s.rollback()
            with pytest.raises(FieldproofError):  # refused: nothing locked
                claims.get_for(db_session=s, user=stranger, claim_id=mine, for_update=True)
            other.execute(select(Claim.id).where(Claim.id == mine).with_for_update(nowait=True)).one()
            other.rollback()
        finally:
            other.close()
    finally:
        s.rollback()
        s.close()


def test_transition_returns_the_changed_claim_from_its_statement(client, db):
    """claims.transition writes the move and its audit row and reads the changed claim back in one statement: the
    Claim already in the session is updated in place, no reload; a refused move names the state it met."""
    from sqlalchemy import event

    _, claim, _, _ = claimed(client, db)
    held = db.get(Claim, claim["id"])
    assert held.state == "claimed" and held.resolved_at is None
    engine, counted = db.get_bind().engine, []

    def count(*_args, **_kw):
        counted.append(1)

    event.listen(engine, "before_cursor_execute", count)
    try:
        moved = claims.transition(db, claim["id"], ("claimed",), "cancelled", actor_id=None, reason="test",
                                  resolved_at=utcnow())
        state, resolved = moved.state, moved.resolved_at
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(counted) == 1
    assert moved is held and state == "cancelled" and resolved is not None
    stored = db.execute(select(Claim.state, Claim.resolved_at).where(Claim.id == claim["id"])).one()
    assert tuple(stored) == ("cancelled", resolved)
    events = db.execute(select(ClaimEvent.from_state, ClaimEvent.to_state, ClaimEvent.reason)
                        .where(ClaimEvent.claim_id == claim["id"]).order_by(ClaimEvent.id)).all()
    assert [tuple(e) for e in events] == [(None, "claimed", None), ("claimed", "cancelled", "test")]
    with pytest.raises(FieldproofError) as refused:
        claims.transition(db, claim["id"], ("claimed",), "expired", actor_id=None)
    assert "cancelled" in str(refused.value)
    assert db.scalar(select(func.count()).select_from(ClaimEvent).where(ClaimEvent.claim_id == claim["id"])) == 2
