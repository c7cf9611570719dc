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
