"""Credit with decay, the premium pool, member commission rates, deposit forfeiture, settling ended tasks."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from core.models import utcnow
from ledger import service as ledger
from tasks import credit
from tasks import service as tasks
from tasks.models import CreditEvent, Task
from tests.fieldwork import STORE, claimed, fix, funded_merchant, published_task
from tests.helpers import auth_for, make_user


def test_credit_violations_decay_with_a_90_day_half_life(db):
    w = make_user(db, "worker")
    credit.adjust(db, w.id, credit.ON_VIOLATION, "spot check failed")
    assert credit.score(db, w.id) == 95
    db.execute(update(CreditEvent).where(CreditEvent.worker_id == w.id).values(at=utcnow() - timedelta(days=180)))
    assert credit.score(db, w.id) == 99  # two half-lives: −5 weighs −1.25
    for _ in range(150):
        credit.adjust(db, w.id, credit.ON_ACCEPTED, "accepted")
    assert credit.score(db, w.id) == credit.MAX


def test_premium_tasks_need_premium_credit(client, db):
    task, _ = published_task(client, db, premium=True)
    user, w = auth_for(client, db, "worker")
    params = {"lat": STORE[0], "lon": STORE[1], "radius_m": 1000}
    assert task["id"] not in [t["id"] for t in client.get("/v1/tasks/nearby", params=params, headers=w).json()]
    r = client.post(f"/v1/tasks/{task['id']}/claims", headers=w)
    assert r.status_code == 403 and r.json()["code"] == "credit_too_low"
    for _ in range(credit.PREMIUM_CREDIT - credit.START):
        credit.adjust(db, user.id, credit.ON_ACCEPTED, "accepted")
    assert task["id"] in [t["id"] for t in client.get("/v1/tasks/nearby", params=params, headers=w).json()]
    assert client.post(f"/v1/tasks/{task['id']}/claims", headers=w).status_code == 201


def test_member_merchant_commission_rate(client, db):
    merchant, m = funded_merchant(client, db)
    _, ops = auth_for(client, db, "ops")
    r = client.put(f"/v1/merchants/{merchant.id}/terms", json={"commission_bp": 200, "note": "member"}, headers=ops)
    assert r.status_code == 200 and r.json()["commission_bp"] == 200
    assert client.put(f"/v1/merchants/{merchant.id}/terms", json={"commission_bp": 1}, headers=m).status_code == 403
    published_task(client, db, merchant_headers=m, ops_headers=ops, reward_fen=1000, slots=2)
    assert client.get("/v1/me/wallet", headers=m).json()["balances_fen"]["merchant_escrow"] == 2 * (1000 + 20)


def test_ops_forfeit_security_deposit(client, db):
    merchant, m = funded_merchant(client, db)
    _, ops = auth_for(client, db, "ops")
    r = client.post(f"/v1/merchants/{merchant.id}/deposit-forfeits", json={"amount_fen": 4000, "reason": "fake task"},
                    headers=ops)
    assert r.status_code == 200 and r.json()["balances_fen"]["merchant_deposit"] == 6000
    too_much = client.post(f"/v1/merchants/{merchant.id}/deposit-forfeits", json={"amount_fen": 7000, "reason": "x"},
                           headers=ops)
    assert too_much.status_code == 409 and too_much.json()["code"] == "insufficient_funds"
    assert client.post(f"/v1/merchants/{merchant.id}/deposit-forfeits", json={"amount_fen": 1, "reason": "x"},
                       headers=m).status_code == 403
    assert ledger.check(db) == []


def test_ended_tasks_close_and_return_unused_escrow(client, db):
    task, claim, w, m = claimed(client, db, slots=3)
    before = client.get("/v1/me/wallet", headers=m).json()["balances_fen"]
    db.execute(update(Task).where(Task.id == task["id"]).values(ends_at=utcnow() - timedelta(minutes=1),
                                                                  starts_at=utcnow() - timedelta(days=1)))
    assert tasks.settle_ended(db_session=db) >= 1
    assert tasks.settle_ended(db_session=db) == 0
    after = client.get("/v1/me/wallet", headers=m).json()["balances_fen"]
    assert after["merchant_escrow"] == 1575  # the one open claim keeps its slot's money
    assert after["merchant_available"] == before["merchant_available"] + 2 * 1575
    assert client.get(f"/v1/tasks/{task['id']}", headers=m).json()["state"] == "closed"


def test_withdrawal_through_the_api_after_real_name_check(client, db, monkeypatch):
    from core.config import get_settings

    monkeypatch.setattr(get_settings(), "spot_check_base_rate", 0.0)
    task, claim, w, m = claimed(client, db, evidence={"photos_min": 0, "video": False})
    client.post(f"/v1/claims/{claim['id']}/checkins", json=fix(STORE[0] + 0.0003, STORE[1]), headers=w)
    client.post(f"/v1/claims/{claim['id']}/submit", headers=w)
    assert client.post(f"/v1/submissions/{claim['id']}/confirm", headers=m).json()["state"] == "paid"
    r = client.post("/v1/me/withdrawals", json={"amount_fen": 1000}, headers=w)
    assert r.status_code == 403 and r.json()["code"] == "real_name_required"
    _, ops = auth_for(client, db, "ops")
    assert client.post(f"/v1/users/{claim['worker_id']}/real-name", json={"verified": True}, headers=m).status_code == 403
    assert client.post(f"/v1/users/{claim['worker_id']}/real-name", json={"verified": True},
                       headers=ops).json()["real_name_verified"] is True
    r = client.post("/v1/me/withdrawals", json={"amount_fen": 1000}, headers=w)
    assert r.status_code == 201 and r.json()["state"] == "approved"
    wallet = client.get("/v1/me/wallet", headers=w).json()["balances_fen"]
    assert wallet == {"worker_available": 500, "worker_withdrawing": 1000}
    assert [x["id"] for x in client.get("/v1/me/withdrawals", headers=w).json()] == [r.json()["id"]]


def test_a_deposit_retried_after_its_idempotency_record_expired_is_credited_once(client, db):
    """The provider keeps the charge under the request's key for good; the request's own record expires. A retry
    after that is one charge and one credit (the deposit recorded for that charge comes back), and the same key
    with another amount is refused: never a credit of money that was not charged."""
    from core.idempotency import IdempotencyRecord

    _, m = auth_for(client, db, "merchant")

    def deposit(amount: int):
        return client.post("/v1/me/deposits", json={"amount_fen": amount, "purpose": "available"},
                           headers={**m, "Idempotency-Key": "dep-1"})

    first = deposit(100)
    assert first.status_code == 201 and first.json()["balances_fen"]["merchant_available"] == 100

    def expire() -> None:
        db.execute(update(IdempotencyRecord).where(IdempotencyRecord.key == "dep-1")
                   .values(expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()

    expire()
    again = deposit(100)
    assert again.status_code == 201, again.json()
    assert again.json()["transaction_id"] == first.json()["transaction_id"]
    assert again.json()["balances_fen"]["merchant_available"] == 100
    expire()
    other = deposit(100_000_000)
    assert other.status_code == 409 and other.json()["code"] == "payment_key_reused"
    assert client.get("/v1/me/wallet", headers=m).json()["balances_fen"]["merchant_available"] == 100
    assert ledger.check(db) == []


def test_a_deposit_recorded_before_charge_causes_is_found_by_its_charge_after_migration_0022(client, db):
    """A deposit recorded before credits were keyed by their provider charge had a sequence number as its cause
    and the charge only in its memo. Migration 0022 gives it the charge's cause, so a retry of its request after
    the idempotency record expired returns it instead of crediting the charge a second time."""
    import importlib

    from sqlalchemy import select, text

    from core.idempotency import IdempotencyRecord
    from ledger.models import LedgerTransaction

    rekey = importlib.import_module("migrations.versions.0022_deposit_causes_by_charge").REKEY
    _, m = auth_for(client, db, "merchant")

    def deposit():
        return client.post("/v1/me/deposits", json={"amount_fen": 250, "purpose": "available"},
                           headers={**m, "Idempotency-Key": "dep-old"})

    first = deposit()
    assert first.status_code == 201, first.text
    txn_id = first.json()["transaction_id"]
    # As the release before recorded it: cause ("deposit", a sequence number), the charge in the memo.
    db.execute(update(LedgerTransaction).where(LedgerTransaction.id == txn_id).values(
        cause_type="deposit", cause_id=text("nextval('ledger_cause_seq')")))
    db.execute(text(rekey))
    memo, cause = db.execute(select(LedgerTransaction.memo, LedgerTransaction.cause_id)
                             .where(LedgerTransaction.id == txn_id)).one()
    assert cause == ledger.charge_cause_id(memo.removeprefix("provider "))
    db.execute(update(IdempotencyRecord).where(IdempotencyRecord.key == "dep-old")
               .values(expires_at=utcnow() - timedelta(seconds=1)))
    db.commit()
    again = deposit()
    assert again.status_code == 201 and again.json()["transaction_id"] == txn_id, again.text
    assert client.get("/v1/me/wallet", headers=m).json()["balances_fen"]["merchant_available"] == 250

    # The SQL's number is Python's for a charge whose hash has its top bit set and one where it is clear (a signed
    # shift would differ on the first); of two old credits of one charge, only the first is re-keyed.
    refs = {"legacy-charge-1": 2, "legacy-charge-0": 1}  # sha256 begins 0b1... and 0b0...
    rows = [LedgerTransaction(kind="deposit", cause_type="deposit", cause_id=-(k + 1) * 1000 - n, memo=f"provider {ref}")
            for k, (ref, count) in enumerate(refs.items()) for n in range(count)]
    db.add_all(rows)
    db.flush()
    db.execute(text(rekey))
    try:
        for ref, count in refs.items():
            mine = sorted((r for r in rows if r.memo == f"provider {ref}"), key=lambda r: r.id)
            got = [db.execute(select(LedgerTransaction.cause_type, LedgerTransaction.cause_id)
                              .where(LedgerTransaction.id == r.id)).one() for r in mine]
            assert got[0] == ("provider_charge", ledger.charge_cause_id(ref)), (ref, got)
            assert all(g.cause_type == "deposit" for g in got[1:]), (ref, got)  # left, and listed by the migration
    finally:
        db.rollback()


def _submitted(client, db, slots: int = 2):
    from tests.fieldwork import STORE as _STORE

    task, claim, w, m = claimed(client, db, evidence={"photos_min": 0, "video": False}, slots=slots)
    assert client.post(f"/v1/claims/{claim['id']}/checkins", json=fix(_STORE[0] + 0.0003, _STORE[1]),
                       headers=w).status_code == 201
    assert client.post(f"/v1/claims/{claim['id']}/submit", headers=w).status_code == 200
    return task, claim, w, m


def _end(db, task_id: int) -> None:
    db.execute(update(Task).where(Task.id == task_id).values(ends_at=utcnow() - timedelta(minutes=1),
                                                             starts_at=utcnow() - timedelta(days=1)))
    assert tasks.settle_ended(db_session=db) >= 1


def test_a_failed_spot_check_keeps_its_escrow_for_the_appeal_and_is_appealed_once(client, db, monkeypatch):
    """A claim closed by a failed spot check may be appealed for 7 days: the task's settlement keeps its slot's
    money, so an overturn after the task ended pays from escrow; a second appeal is refused. Once no claim can be
    paid any more, the reserve goes back to the merchant."""
    from core.config import get_settings
    from tasks.models import Claim

    monkeypatch.setattr(get_settings(), "spot_check_base_rate", 1.0)  # every confirmed claim is sampled
    task, claim, w, m = _submitted(client, db)
    _, ops = auth_for(client, db, "ops")
    assert client.post(f"/v1/submissions/{claim['id']}/confirm", headers=m).json()["state"] == "spot_check"
    check = next(c for c in client.get("/v1/spot-checks", headers=ops).json() if c["claim_id"] == claim["id"])
    assert client.post(f"/v1/spot-checks/{check['id']}/verdict", json={"verdict": "fail", "reason": "no flyers"},
                       headers=ops).status_code == 200
    _end(db, task["id"])
    per_slot = 1575
    assert client.get("/v1/me/wallet", headers=m).json()["balances_fen"]["merchant_escrow"] == per_slot
    appeal = client.post(f"/v1/claims/{claim['id']}/appeals", json={"reason": "照片能证明"}, headers=w)
    assert appeal.status_code == 201, appeal.text
    d = client.post(f"/v1/appeals/{appeal.json()['id']}/decision", json={"decision": "deny", "reason": "不符"},
                    headers=ops)
    assert d.status_code == 200 and client.get(f"/v1/claims/{claim['id']}", headers=w).json()["state"] == "closed"
    again = client.post(f"/v1/claims/{claim['id']}/appeals", json={"reason": "再申诉"}, headers=w)
    assert again.status_code == 409 and again.json()["code"] == "already_appealed"
    # Denied: nothing can be paid on this task any more; the sweep gives the slot's money back.
    assert tasks.release_reserves(db_session=db) >= 1
    assert tasks.release_reserves(db_session=db) == 0
    assert client.get("/v1/me/wallet", headers=m).json()["balances_fen"]["merchant_escrow"] == 0

    # The same path, overturned: paid from the escrow the settlement kept.
    task2, claim2, w2, m2 = _submitted(client, db)
    assert client.post(f"/v1/submissions/{claim2['id']}/confirm", headers=m2).json()["state"] == "spot_check"
    check2 = next(c for c in client.get("/v1/spot-checks", headers=ops).json() if c["claim_id"] == claim2["id"])
    client.post(f"/v1/spot-checks/{check2['id']}/verdict", json={"verdict": "fail", "reason": "x"}, headers=ops)
    _end(db, task2["id"])
    tasks.release_reserves(db_session=db)  # within the window: the slot stays reserved
    assert client.get("/v1/me/wallet", headers=m2).json()["balances_fen"]["merchant_escrow"] == per_slot
    a2 = client.post(f"/v1/claims/{claim2['id']}/appeals", json={"reason": "请复核"}, headers=w2).json()
    d2 = client.post(f"/v1/appeals/{a2['id']}/decision", json={"decision": "overturn", "reason": "ok"}, headers=ops)
    assert d2.status_code == 200, d2.text
    assert client.get(f"/v1/claims/{claim2['id']}", headers=w2).json()["state"] == "paid"
    assert client.get("/v1/me/wallet", headers=m2).json()["balances_fen"]["merchant_escrow"] == 0

    # Rejected and never appealed: the reserve is kept for 7 days, then given back.
    task3, claim3, w3, m3 = _submitted(client, db)
    client.post(f"/v1/submissions/{claim3['id']}/reject", json={"reason_code": "work_not_done", "reason": "没发传单"},
                headers=m3)
    _end(db, task3["id"])
    tasks.release_reserves(db_session=db)
    assert client.get("/v1/me/wallet", headers=m3).json()["balances_fen"]["merchant_escrow"] == per_slot
    db.execute(update(Claim).where(Claim.id == claim3["id"]).values(resolved_at=utcnow() - timedelta(days=8)))
    assert tasks.release_reserves(db_session=db) >= 1
    assert client.get("/v1/me/wallet", headers=m3).json()["balances_fen"]["merchant_escrow"] == 0
    assert ledger.check(db) == []
