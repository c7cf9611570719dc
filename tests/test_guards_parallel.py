"""Every guard that reads then writes, proven with N requests released at one barrier against a real server.

Each test makes the race as likely as the stack allows (one thread per request, connections opened before
the barrier, the server's own thread pool) and then checks the invariant, not the timing.
"""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from accounts import service as accounts
from accounts.models import User
from core.models import utcnow
from ledger import service as ledger
from ledger import withdrawals  # noqa: F401  (registers its reconciler with ledger.check)
from ledger.models import LedgerAccount, LedgerTransaction, Withdrawal
from ledger.settings import get_ledger_settings
from tasks import credit
from tasks import service as task_service
from tasks.models import Claim, CreditEvent, Task, TaskEvent
from tests.fieldwork import fix, publish_approved, task_body
from tests.helpers import PASSWORD, unique
from tests.live import release_together

PHOTO = Path(__file__).parent / "data" / "photos" / "coffee.jpg"
PHOTO_BYTES = PHOTO.stat().st_size
# Request-rate limits lifted: these tests are about the guards, and every request comes from 127.0.0.1.
LIMITS = {"FIELDPROOF_RATE_LIMIT_PER_MINUTE_USER": "100000", "FIELDPROOF_RATE_LIMIT_PER_MINUTE_IP": "100000",
          "FIELDPROOF_LOGIN_PER_IP_PER_MINUTE": "100000", "FIELDPROOF_LOGIN_PER_MINUTE_TOTAL": "100000",
          # Upload quotas small enough for a test to reach: two files per claim, two photos a day.
          "FIELDPROOF_MAX_EVIDENCE_PER_CLAIM": "2", "FIELDPROOF_MAX_UPLOAD_BYTES_PER_WORKER_DAY": str(2 * PHOTO_BYTES + 100)}


@pytest.fixture(scope="module")
def server(test_database):
    from tests.live import live_server

    with live_server("guards", LIMITS) as srv:
        yield srv


def _users(server, role: str, n: int, **values) -> list[User]:
    with server.session() as s:
        users = [accounts.create(db_session=s, username=unique(f"g_{role}"), password=PASSWORD, role=role,
                                 self_service=False) for _ in range(n)]
        if values:
            s.execute(update(User).where(User.id.in_([u.id for u in users])).values(**values))
            s.commit()
        return users


def _token(server, user: User) -> dict:
    with server.http() as c:
        r = c.post("/v1/auth/token", data={"username": user.username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _funded_merchant(server) -> tuple[User, dict]:
    merchant = _users(server, "merchant", 1)[0]
    headers = _token(server, merchant)
    with server.http() as c:
        for purpose, amount in (("security_deposit", 10_000), ("available", 5_000_000)):
            r = c.post("/v1/me/deposits", json={"amount_fen": amount, "purpose": purpose}, headers=headers)
            assert r.status_code == 201, r.text
    return merchant, headers


def _published(server, slots: int, **over) -> tuple[dict, User, dict]:
    merchant, m_headers = _funded_merchant(server)
    ops_headers = _token(server, _users(server, "ops", 1)[0])
    with server.http() as c:
        task = publish_approved(c, task_body(slots=slots, **over), m_headers, ops_headers)
    return task, merchant, m_headers


def _codes(results) -> list[int]:
    for r in results:
        assert not isinstance(r, Exception), r
    return [r.status_code for r in results]


def test_parallel_confirmations_keep_each_tasks_escrow(server):
    n = 10
    task, merchant, m_headers = _published(server, slots=n, photos_min=0)
    workers = _users(server, "worker", n)
    with server.session() as s:
        s.add_all([Claim(task_id=task["id"], worker_id=w.id, state="submitted", expires_at=utcnow(), risk_score=0,
                         flags=[], submitted_at=utcnow()) for w in workers])
        s.execute(update(Task).where(Task.id == task["id"]).values(slots_taken=n))
        s.commit()
        claim_ids = list(s.scalars(select(Claim.id).where(Claim.task_id == task["id"]).order_by(Claim.id)))
        held = s.scalar(select(Task.escrow_fen).where(Task.id == task["id"]))

    results = release_together(server, n, lambda c, i: c.post(f"/v1/submissions/{claim_ids[i]}/confirm",
                                                               headers=m_headers))
    assert _codes(results) == [200] * n, [r.text for r in results]
    with server.session() as s:
        paid = s.scalar(select(func.count()).where(Claim.task_id == task["id"], Claim.state == "paid"))
        figure = s.scalar(select(Task.escrow_fen).where(Task.id == task["id"]))
        per_claim = task["reward_fen"] + ledger.commission_for(task["reward_fen"])
        assert paid > 0
        assert figure == held - paid * per_claim  # no decrement lost
        assert [p for p in task_service.reconcile_escrow(s) if f"task {task['id']}:" in p] == []
        # Closing now releases exactly what the unpaid claims do not need; the merchant's escrow stays whole.
        task_service.close(db_session=s, merchant=s.get(User, merchant.id), task_id=task["id"])
        assert s.scalar(select(Task.escrow_fen).where(Task.id == task["id"])) == (n - paid) * per_claim
        escrow = ledger.balances(s, merchant.id)["merchant_escrow"]
        assert escrow == (n - paid) * per_claim
        assert ledger.check(s) == []


def test_parallel_wrong_passwords_lock_the_account_after_the_limit(server):
    user = _users(server, "worker", 1)[0]
    n, limit = 20, 5
    results = release_together(server, n, lambda c, i: c.post(
        "/v1/auth/token", data={"username": user.username, "password": f"wrong password {i}"}))
    codes = _codes(results)
    assert codes.count(401) == limit, codes  # only the first five guesses reached the password check
    assert codes.count(429) == n - limit
    with server.http() as c:  # locked: even the right password is refused now
        r = c.post("/v1/auth/token", data={"username": user.username, "password": PASSWORD})
        assert r.status_code == 429 and r.json()["code"] == "login_locked"


def test_right_password_among_parallel_guesses_gets_in_only_while_unlocked(server):
    user = _users(server, "worker", 1)[0]
    n = 12
    results = release_together(server, n, lambda c, i: c.post(
        "/v1/auth/token", data={"username": user.username,
                                "password": PASSWORD if i == n - 1 else f"wrong password {i}"}))
    codes = _codes(results)
    if 200 not in codes:  # the right one came too late: five checks, then the lock
        assert codes.count(401) == 5 and codes.count(429) == n - 5, codes
    else:
        # A right password clears the account's counter (by design: its owner signed in), so guesses still
        # arriving after it get five more checks: at most 4 wrong before it (it took one of the five) + 5 after.
        assert codes.count(401) <= 9 and codes.count(200) == 1, codes


def test_parallel_guesses_from_one_ip_stop_at_the_ip_limit(server):
    n, limit = 45, 30  # many accounts from one address: the per-IP counter is the guard
    names = [unique("nobody") for _ in range(n)]
    results = release_together(server, n, lambda c, i: c.post(
        "/v1/auth/token", data={"username": names[i], "password": "wrong password"}))
    codes = _codes(results)
    assert codes.count(401) == limit, codes
    assert codes.count(429) == n - limit


def test_parallel_requests_stop_at_the_per_minute_user_limit(server):
    """The per-minute request counter (api.ratelimit's script: INCR and expiry in one atomic call) under 24
    requests released together with 7 left in the user's window: exactly 7 get through."""
    import time

    from api.ratelimit import _key
    from core.redis import get_redis

    user = _users(server, "worker", 1)[0]
    headers = _token(server, user)
    n, left, limit = 24, 7, int(LIMITS["FIELDPROOF_RATE_LIMIT_PER_MINUTE_USER"])
    if time.time() % 60 > 50:  # all the requests in one window
        time.sleep(61 - time.time() % 60)
    key = _key(f"user:{user.id}", 60, time.time())
    get_redis().set(key, limit - left, ex=120)
    codes = _codes(release_together(server, n, lambda c, i: c.get("/v1/me", headers=headers)))
    assert codes.count(200) == left and codes.count(429) == n - left, codes
    assert int(get_redis().get(key)) == limit - left + n


def test_parallel_withdrawals_stay_within_the_daily_limit(server):
    worker = _users(server, "worker", 1, real_name_verified=True)[0]
    with server.session() as s:
        cause = int(s.scalar(select(func.nextval("ledger_cause_seq"))))
        ledger._move(s, kind="deposit", cause=("test_earnings", cause), src=ledger.account(s, None, "external"),
                     dst=ledger.account(s, worker.id, "worker_available"), amount=1_000_000)
        s.commit()
    headers = _token(server, worker)
    limit = get_ledger_settings().withdrawal_daily_limit_fen
    amount = 130_000  # four of these are 5,200 yuan against a 5,000 yuan day
    results = release_together(server, 4, lambda c, i: c.post("/v1/me/withdrawals", json={"amount_fen": amount},
                                                              headers=headers))
    codes = _codes(results)
    assert codes.count(201) == limit // amount, codes
    assert all(r.json()["code"] == "daily_withdrawal_limit" for r in results if r.status_code != 201)
    with server.session() as s:
        total = s.scalar(select(func.sum(Withdrawal.amount_fen)).where(Withdrawal.worker_id == worker.id))
        assert total <= limit
        assert ledger.balances(s, worker.id)["worker_withdrawing"] == total
        assert ledger.check(s) == []


def test_parallel_claims_never_oversell_slots(server):
    slots, n = 3, 12
    task, _, _ = _published(server, slots=slots)
    headers = [_token(server, w) for w in _users(server, "worker", n)]
    results = release_together(server, n, lambda c, i: c.post(f"/v1/tasks/{task['id']}/claims", headers=headers[i]))
    codes = _codes(results)
    assert codes.count(201) == slots, codes
    assert all(r.json()["code"] == "slots_full" for r in results if r.status_code != 201)
    with server.session() as s:
        assert s.scalar(select(Task.slots_taken).where(Task.id == task["id"])) == slots
        assert s.scalar(select(func.count()).where(Claim.task_id == task["id"])) == slots


def test_parallel_claims_on_a_premium_task_respect_the_credit_gate(server):
    n = 8
    task, _, _ = _published(server, slots=n, premium=True)
    workers = _users(server, "worker", n)
    eligible = {w.id for w in workers[: n // 2]}
    with server.session() as s:  # half the workers have the record premium tasks need
        for w in workers[: n // 2]:
            s.add_all([CreditEvent(worker_id=w.id, delta=credit.ON_ACCEPTED, reason="accepted",
                                   at=utcnow() - timedelta(days=1)) for _ in range(credit.PREMIUM_CREDIT - 100)])
        s.commit()
    headers = [_token(server, w) for w in workers]
    results = release_together(server, n, lambda c, i: c.post(f"/v1/tasks/{task['id']}/claims", headers=headers[i]))
    codes = _codes(results)
    assert [codes[i] for i, w in enumerate(workers) if w.id in eligible] == [201] * (n // 2), codes
    assert {r.json()["code"] for r in results if r.status_code != 201} <= {"credit_too_low", "task_not_found"}
    with server.session() as s:
        holders = set(s.scalars(select(Claim.worker_id).where(Claim.task_id == task["id"])))
        assert holders == eligible
        assert s.scalar(select(Task.slots_taken).where(Task.id == task["id"])) == n // 2


def _checked_in_claims(server, worker_headers: dict, n: int) -> list[int]:
    ids = []
    for _ in range(n):
        task, _, _ = _published(server, slots=1)
        with server.http() as c:
            r = c.post(f"/v1/tasks/{task['id']}/claims", headers=worker_headers)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
            r = c.post(f"/v1/claims/{ids[-1]}/checkins", json=fix(), headers=worker_headers)
            assert r.status_code == 201 and r.json()["verdict"] == "inside", r.text
    return ids


def _upload(c, claim_id: int, headers: dict, data: bytes):
    return c.post(f"/v1/claims/{claim_id}/evidence", files={"file": ("p.jpg", data, "image/jpeg")}, headers=headers)


def test_parallel_uploads_to_one_claim_stop_at_its_file_limit(server):
    worker = _users(server, "worker", 1)[0]
    headers = _token(server, worker)
    claim_id = _checked_in_claims(server, headers, 1)[0]
    photo = PHOTO.read_bytes()
    variants = [photo + bytes([i]) * 8 for i in range(6)]  # six different files (trailing bytes after EOI)
    results = release_together(server, 6, lambda c, i: _upload(c, claim_id, headers, variants[i]))
    codes = _codes(results)
    assert codes.count(201) == 2, [r.text for r in results]
    assert {r.json()["code"] for r in results if r.status_code != 201} == {"evidence_limit_reached"}


def test_parallel_uploads_to_several_claims_stop_at_the_daily_quota(server):
    worker = _users(server, "worker", 1)[0]
    headers = _token(server, worker)
    claim_ids = _checked_in_claims(server, headers, 4)  # the claim locks do not serialise these: the quota must
    photo = PHOTO.read_bytes()
    results = release_together(server, 4, lambda c, i: _upload(c, claim_ids[i], headers, photo))
    codes = _codes(results)
    assert codes.count(201) == 2, [r.text for r in results]
    assert {r.json()["code"] for r in results if r.status_code != 201} == {"daily_upload_quota"}


def test_ledger_check_catches_an_injected_escrow_mismatch(client, db):
    from tests.fieldwork import published_task

    task, _ = published_task(client, db)
    assert [p for p in ledger.check(db) if f"task {task['id']}:" in p] == []
    db.execute(update(Task).where(Task.id == task["id"]).values(escrow_fen=Task.escrow_fen + 7))
    problems = [p for p in ledger.check(db) if f"task {task['id']}:" in p]
    assert problems and "escrow figure" in problems[0]


def test_ledger_check_catches_withdrawals_out_of_step(db):
    from tests.helpers import make_user

    worker = make_user(db, "worker")
    cause = int(db.scalar(select(func.nextval("ledger_cause_seq"))))
    ledger._move(db, kind="deposit", cause=("test_earnings", cause), src=ledger.account(db, None, "external"),
                 dst=ledger.account(db, worker.id, "worker_withdrawing"), amount=500)
    problems = [p for p in ledger.check(db) if f"worker {worker.id}:" in p]
    assert problems and "withdrawals in flight 0" in problems[0]
    assert db.scalar(select(LedgerAccount.balance_fen).where(LedgerAccount.owner_id == worker.id)) == 500


def _claimed(server, n_workers: int = 1) -> tuple[int, dict, User]:
    """A claimed slot of a new worker on a new task (the check-in's pipelined path serves the next request)."""
    task, _, _ = _published(server, slots=1)
    worker = _users(server, "worker", n_workers)[0]
    headers = _token(server, worker)
    with server.http() as c:
        r = c.post(f"/v1/tasks/{task['id']}/claims", headers=headers)
        assert r.status_code == 201, r.text
    return r.json()["id"], headers, worker


def _fixes_and_audit(server, claim_id: int) -> tuple[list[str], list[tuple[str, str]]]:
    from checkin.models import Checkin
    from tasks.models import ClaimEvent

    with server.session() as s:
        kinds = sorted(s.scalars(select(Checkin.kind).where(Checkin.claim_id == claim_id)))
        moves = [(e.from_state, e.to_state) for e in
                 s.scalars(select(ClaimEvent).where(ClaimEvent.claim_id == claim_id).order_by(ClaimEvent.id))]
    return kinds, moves


def test_parallel_check_ins_on_one_claim_record_exactly_one(server):
    """N check-ins of one claim with different keys, released together on the async pipelined path: one 201,
    the rest 409 already_checked_in; one fix and one claimed -> checked_in audit row."""
    claim_id, headers, _ = _claimed(server)
    n = 12
    results = release_together(server, n, lambda c, i: c.post(
        f"/v1/claims/{claim_id}/checkins", json=fix(), headers={**headers, "Idempotency-Key": f"par-in-{i}"}))
    codes = _codes(results)
    assert sorted(codes) == [201] + [409] * (n - 1), codes
    assert {r.json()["code"] for r in results if r.status_code == 409} == {"already_checked_in"}
    kinds, moves = _fixes_and_audit(server, claim_id)
    assert kinds == ["in"] and moves.count(("claimed", "checked_in")) == 1, (kinds, moves)


def test_parallel_check_outs_on_one_claim_record_exactly_one(server):
    claim_id, headers, _ = _claimed(server)
    with server.http() as c:
        assert c.post(f"/v1/claims/{claim_id}/checkins", json=fix(), headers=headers).status_code == 201
    n = 12
    results = release_together(server, n, lambda c, i: c.post(
        f"/v1/claims/{claim_id}/checkouts", json=fix(), headers={**headers, "Idempotency-Key": f"par-out-{i}"}))
    codes = _codes(results)
    assert sorted(codes) == [201] + [409] * (n - 1), codes
    kinds, moves = _fixes_and_audit(server, claim_id)
    assert kinds == ["in", "out"] and moves.count(("checked_in", "checked_in")) == 1, (kinds, moves)


def test_parallel_replays_of_one_check_in_run_it_once(server):
    """N copies of one check-in (same key, same body) released together: it runs once; every other copy is
    either the replay of the first response or 409 idempotency_in_flight, never a second fix."""
    claim_id, headers, _ = _claimed(server)
    body, n = fix(), 12
    results = release_together(server, n, lambda c, i: c.post(
        f"/v1/claims/{claim_id}/checkins", json=body, headers={**headers, "Idempotency-Key": "one-fix"}))
    codes = _codes(results)
    firsts = [r for r in results if r.status_code == 201 and r.headers.get("Idempotent-Replayed") != "true"]
    replays = [r for r in results if r.headers.get("Idempotent-Replayed") == "true"]
    assert len(firsts) == 1, codes
    assert all(r.json() == firsts[0].json() and r.status_code == 201 for r in replays)
    assert {r.json()["code"] for r in results if r.status_code == 409} <= {"idempotency_in_flight"}
    assert len(firsts) + len(replays) + codes.count(409) == n, codes
    with server.http() as c:  # after the dust settles, the key replays the first response
        again = c.post(f"/v1/claims/{claim_id}/checkins", json=body, headers={**headers, "Idempotency-Key": "one-fix"})
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == firsts[0].json()
    kinds, moves = _fixes_and_audit(server, claim_id)
    assert kinds == ["in"] and moves.count(("claimed", "checked_in")) == 1


def test_publishing_waits_for_a_forfeit_of_the_security_deposit_and_then_sees_it(server):
    """The deposit check is decided under the deposit's row lock: a forfeit holding it makes the publish wait, and
    once the forfeit commits the publish sees the deposit short (409) instead of publishing on a read from before."""
    import threading

    merchant, m_headers = _funded_merchant(server)  # exactly the deposit publishing needs
    with server.http() as c:
        draft = c.post("/v1/tasks", json=task_body(), headers=m_headers)
        assert draft.status_code == 201, draft.text
    out: dict = {}
    forfeit = server.session()
    try:
        ledger.forfeit_security_deposit(forfeit, merchant_id=merchant.id, amount_fen=1, memo="test: held")
        worker = threading.Thread(target=lambda: out.update(
            r=_publish(server, draft.json()["id"], m_headers)), daemon=True)
        worker.start()
        worker.join(1.5)
        assert worker.is_alive(), out  # waiting on the deposit's lock, not deciding on the committed balance
        forfeit.commit()
    finally:
        forfeit.close()
    worker.join(30)
    assert out["r"].status_code == 409 and out["r"].json()["code"] == "security_deposit_required", out["r"].text


def _publish(server, task_id: int, headers: dict):
    with server.http() as c:
        return c.post(f"/v1/tasks/{task_id}/publish", headers=headers)


def test_parallel_task_state_changes_leave_a_consistent_audit_trail(server):
    """Pause, resume and close released together: every change's audit row names the state it really left, so the
    trail reads as one chain (each row's from_state is the previous row's to_state)."""
    task, _, m_headers = _published(server, slots=2)
    verbs = ["pause", "resume", "close", "pause", "resume", "pause", "resume", "close"]
    results = release_together(server, len(verbs), lambda c, i: c.post(f"/v1/tasks/{task['id']}/{verbs[i]}",
                                                                        headers=m_headers))
    assert set(_codes(results)) <= {200, 409}
    with server.session() as s:
        trail = s.execute(select(TaskEvent.from_state, TaskEvent.to_state).where(TaskEvent.task_id == task["id"])
                          .order_by(TaskEvent.id)).all()
    assert trail[-1].to_state == "closed" or any(e.to_state == "closed" for e in trail)
    for before, after in zip(trail, trail[1:]):
        assert after.from_state == before.to_state, trail


def test_parallel_appeals_of_one_claim_file_exactly_one(server):
    """A claim is appealed once: N appeals of one rejected claim released together (different keys) give one 201,
    the rest 409, and one appeal row."""
    from tasks.models import Appeal

    claim_id, headers, _ = _claimed(server)
    with server.session() as s:
        s.execute(update(Claim).where(Claim.id == claim_id).values(state="rejected", resolved_at=utcnow()))
        s.commit()
    n = 8
    results = release_together(server, n, lambda c, i: c.post(
        f"/v1/claims/{claim_id}/appeals", json={"reason": f"照片能证明 {i}"},
        headers={**headers, "Idempotency-Key": f"par-appeal-{i}"}))
    codes = _codes(results)
    assert sorted(codes) == [201] + [409] * (n - 1), [r.text for r in results]
    with server.session() as s:
        assert s.scalar(select(func.count()).select_from(Appeal).where(Appeal.claim_id == claim_id)) == 1


def test_a_file_being_checked_is_withdrawn_or_sent_again_without_a_lock_cycle(server):
    """Processing holds its file's row lock from the start and takes claims' locks at the end. Withdrawing a file
    takes the file's lock first, in that order: it waits for the check, holding nothing the processor needs, and
    goes through once the check ends. Sending a withdrawn file again holds the claim from the upload's start: while
    a processor holds the file it answers 409 evidence_processing at once. Before, both waited for the file with the
    claim held, until PostgreSQL broke the cycle by failing one side; here the processor takes the claim without
    waiting (lock_timeout 3 s), or the test fails."""
    import threading

    from sqlalchemy import text

    from evidence.models import Evidence

    worker = _users(server, "worker", 1)[0]
    headers = _token(server, worker)
    claim_id = _checked_in_claims(server, headers, 1)[0]
    photo = PHOTO.read_bytes()
    with server.http() as c:
        up = _upload(c, claim_id, headers, photo)
    assert up.status_code == 201, up.text
    ev_id = up.json()["id"]

    def withdraw():
        with server.http() as c:
            return c.post(f"/v1/evidence/{ev_id}/withdraw", headers=headers)

    def send_again():
        with server.http() as c:
            return _upload(c, claim_id, headers, photo)

    def while_checked(verb, waits: bool):
        out: dict = {}
        processor = server.session()
        try:
            processor.execute(select(Evidence.id).where(Evidence.id == ev_id).with_for_update())  # process() begins
            caller = threading.Thread(target=lambda: out.update(r=verb()), daemon=True)
            caller.start()
            caller.join(1.5)
            assert caller.is_alive() == waits, out
            processor.execute(text("SET LOCAL lock_timeout = '3s'"))
            processor.execute(select(Claim.id).where(Claim.id == claim_id).with_for_update())  # records matches
            processor.commit()
        finally:
            processor.close()
        caller.join(30)
        return out["r"]

    done = while_checked(withdraw, waits=True)
    assert done.status_code == 200 and done.json()["withdrawn_at"], done.text
    refused = while_checked(send_again, waits=False)
    assert refused.status_code == 409 and refused.json()["code"] == "evidence_processing", refused.text
    assert int(refused.headers["Retry-After"]) > 0
    again = send_again()
    assert again.status_code == 201 and again.json()["withdrawn_at"] is None, again.text


def test_parallel_reserve_releases_return_a_closed_tasks_escrow_once(server):
    """Several beat hosts releasing what closed tasks hold at once return the slot's money once; ledger and figure
    agree. The task's row lock decides it; behind it the merchant's escrow balance (never negative) and the
    figure's CHECK refuse a second release too (the test still passes with the lock taken out: it proves the
    invariant, not which guard keeps it)."""
    import threading

    claim_id, _, _ = _claimed(server)
    with server.session() as s:
        task_id = s.scalar(select(Claim.task_id).where(Claim.id == claim_id))
        s.execute(update(Claim).where(Claim.id == claim_id).values(state="rejected", resolved_at=utcnow()))
        s.execute(update(Task).where(Task.id == task_id).values(starts_at=utcnow() - timedelta(days=2),
                                                              ends_at=utcnow() - timedelta(minutes=1)))
        s.commit()
        assert task_service.settle_ended(db_session=s) >= 1
        held = s.scalar(select(Task.escrow_fen).where(Task.id == task_id))
        assert held > 0  # kept for the rejected claim, which may still be appealed
        s.execute(update(Claim).where(Claim.id == claim_id).values(resolved_at=utcnow() - timedelta(days=8)))
        s.commit()
    n = 6
    barrier, acted = threading.Barrier(n), [None] * n

    def sweep(i: int) -> None:
        with server.session() as s:
            s.execute(select(1))  # connected before the barrier
            s.commit()
            barrier.wait(timeout=60)
            acted[i] = task_service.release_reserves(db_session=s)

    threads = [threading.Thread(target=sweep, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(isinstance(a, int) for a in acted), acted
    with server.session() as s:
        assert s.scalar(select(Task.escrow_fen).where(Task.id == task_id)) == 0
        events = s.scalars(select(TaskEvent.id).where(TaskEvent.task_id == task_id,
                                                      TaskEvent.reason.like("escrow no claim can use%"))).all()
        assert len(events) == 1, events
        released = s.scalar(select(func.count()).select_from(LedgerTransaction).where(
            LedgerTransaction.kind == "escrow_release", LedgerTransaction.cause_type == "task_event",
            LedgerTransaction.cause_id == events[0]))
        assert released == 1
        assert [p for p in ledger.check(s) if f"task {task_id}:" in p] == []


def test_parallel_submits_without_a_check_out_weigh_the_stay_signals_once(server):
    """A task asking for an hour on site, its claim checked in and submitted N times at once without a check-out:
    one 200, the rest 409, and no_checkout + short_dwell added to the claim's risk once. The claim's row lock (taken
    before the submit checks) orders the submits; a later one sees the claim submitted and its transition refuses
    (which alone would also undo its signals: this shows the outcome, not which guard gives it)."""
    from checkin.settings import get_checkin_settings

    task, _, _ = _published(server, slots=1, min_dwell_s=3600, evidence={"photos_min": 0, "video": False})
    worker = _users(server, "worker", 1)[0]
    headers = _token(server, worker)
    with server.http() as c:
        claim_id = c.post(f"/v1/tasks/{task['id']}/claims", headers=headers).json()["id"]
        assert c.post(f"/v1/claims/{claim_id}/checkins", json=fix(), headers=headers).status_code == 201
    with server.session() as s:
        before = s.get(Claim, claim_id).risk_score
    n = 8
    results = release_together(server, n, lambda c, i: c.post(
        f"/v1/claims/{claim_id}/submit", headers={**headers, "Idempotency-Key": f"par-submit-{i}"}))
    codes = _codes(results)
    assert sorted(codes) == [200] + [409] * (n - 1), [r.text for r in results]
    s_ = get_checkin_settings()
    with server.session() as s:
        claim = s.get(Claim, claim_id)
        assert claim.state == "submitted"
        assert claim.flags.count("no_checkout") == 1 and claim.flags.count("short_dwell") == 1, claim.flags
        assert claim.risk_score == min(100, before + s_.weight_no_checkout + s_.weight_short_dwell)
