"""The claim lifecycle with money: confirm, sampling, spot checks, appeals, changes, auto-confirm."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from core.config import get_settings
from checkin.settings import get_checkin_settings
from core.models import utcnow
from ledger import service as ledger
from ledger.models import LedgerTransaction
from tasks import acceptance
from tasks.models import Claim
from tests.fieldwork import STORE, claimed, fix
from tests.helpers import auth_for

REWARD = 1500
COMMISSION = 75  # 5 %


@pytest.fixture
def no_sampling(monkeypatch):
    monkeypatch.setattr(get_settings(), "spot_check_base_rate", 0.0)


def submitted(client, db, **fix_over):
    """A checked-in, submitted claim on a task needing no photos."""
    task, claim, w, m = claimed(client, db, evidence={"photos_min": 0, "video": False}, slots=2)
    r = client.post(f"/v1/claims/{claim['id']}/checkins", json=fix(STORE[0] + 0.0003, STORE[1], **fix_over),
                    headers=w)
    assert r.status_code == 201, r.text
    r = client.post(f"/v1/claims/{claim['id']}/submit", headers=w)
    assert r.status_code == 200 and r.json()["state"] == "submitted", r.text
    return task, claim, w, m


def _wallet(client, headers):
    return client.get("/v1/me/wallet", headers=headers).json()["balances_fen"]


def test_publish_holds_escrow_and_confirm_pays_once(client, db, no_sampling):
    task, claim, w, m = submitted(client, db)
    assert _wallet(client, m)["merchant_escrow"] == 2 * (REWARD + COMMISSION)
    r = client.post(f"/v1/submissions/{claim['id']}/confirm", headers=m)
    assert r.status_code == 200 and r.json()["state"] == "paid", r.text
    assert _wallet(client, w)["worker_available"] == REWARD
    assert _wallet(client, m)["merchant_escrow"] == REWARD + COMMISSION
    again = client.post(f"/v1/submissions/{claim['id']}/confirm", headers=m)
    assert again.status_code == 409
    n = db.scalar(select(func.count()).select_from(LedgerTransaction).where(
        LedgerTransaction.kind == "claim_payout", LedgerTransaction.cause_id == claim["id"]))
    assert n == 1 and ledger.check(db) == []
    wallet = client.get("/v1/me/wallet", headers=w).json()
    assert wallet["credit_score"] == 101 and "accepted" in wallet["credit_formula"]


def test_flagged_claim_always_sampled_then_spot_check_fail_and_appeal_overturn(client, db, no_sampling):
    task, claim, w, m = submitted(client, db, mock_location=True)
    _, ops = auth_for(client, db, "ops")
    r = client.post(f"/v1/submissions/{claim['id']}/confirm", headers=m)
    assert r.json()["state"] == "spot_check"
    queue = client.get("/v1/spot-checks", headers=ops).json()
    check = next(c for c in queue if c["claim_id"] == claim["id"])
    assert check["stratum"] == "flagged" and check["probability"] == 1.0
    assert "mock_location" in check["checkins"][0]["reasons"]
    assert client.get("/v1/spot-checks", headers=m).status_code == 403
    r = client.post(f"/v1/spot-checks/{check['id']}/verdict", json={"verdict": "fail", "reason": "mock GPS"},
                    headers=ops)
    assert r.status_code == 200 and r.json()["state"] == "failed"
    assert client.get(f"/v1/claims/{claim['id']}", headers=w).json()["state"] == "closed"
    assert client.get("/v1/me/wallet", headers=w).json()["credit_score"] == 95
    a = client.post(f"/v1/claims/{claim['id']}/appeals", json={"reason": "my phone's GPS app was on"}, headers=w)
    assert a.status_code == 201, a.text
    d = client.post(f"/v1/appeals/{a.json()['id']}/decision", json={"decision": "overturn", "reason": "video ok"},
                    headers=ops)
    assert d.status_code == 200 and d.json()["state"] == "overturned"
    assert client.get(f"/v1/claims/{claim['id']}", headers=w).json()["state"] == "paid"
    assert _wallet(client, w)["worker_available"] == REWARD
    report = client.get("/v1/spot-checks/report", headers=ops).json()
    assert any(r["stratum"] == "flagged" and r["failed"] >= 1 for r in report)


def test_spot_check_pass_pays(client, db, no_sampling):
    _, claim, w, m = submitted(client, db, accuracy_m=0)
    _, ops = auth_for(client, db, "ops")
    assert client.post(f"/v1/submissions/{claim['id']}/confirm", headers=m).json()["state"] == "spot_check"
    check = next(c for c in client.get("/v1/spot-checks", headers=ops).json() if c["claim_id"] == claim["id"])
    r = client.post(f"/v1/spot-checks/{check['id']}/verdict", json={"verdict": "pass"}, headers=ops)
    assert r.json()["state"] == "passed"
    assert _wallet(client, w)["worker_available"] == REWARD
    again = client.post(f"/v1/spot-checks/{check['id']}/verdict", json={"verdict": "pass"}, headers=ops)
    assert again.status_code == 409


def test_reject_then_appeal_denied_or_overturned(client, db):
    _, claim, w, m = submitted(client, db)
    _, ops = auth_for(client, db, "ops")
    r = client.post(f"/v1/submissions/{claim['id']}/reject", json={"reason_code": "work_not_done", "reason": "no flyers"},
                    headers=m)
    assert r.json()["state"] == "rejected"
    a = client.post(f"/v1/claims/{claim['id']}/appeals", json={"reason": "photos prove it"}, headers=w).json()
    assert client.get("/v1/appeals", headers=ops).status_code == 200
    d = client.post(f"/v1/appeals/{a['id']}/decision", json={"decision": "deny", "reason": "photos unrelated"},
                    headers=ops)
    assert d.json()["state"] == "denied"
    assert client.get(f"/v1/claims/{claim['id']}", headers=w).json()["state"] == "closed"
    assert _wallet(client, w).get("worker_available", 0) == 0


def test_request_changes_once(client, db):
    _, claim, w, m = submitted(client, db)
    r = client.post(f"/v1/submissions/{claim['id']}/request-changes", json={"reason": "photo of the shelf"}, headers=m)
    assert r.json()["state"] == "changes_requested"
    assert client.post(f"/v1/claims/{claim['id']}/submit", headers=w).json()["state"] == "submitted"
    again = client.post(f"/v1/submissions/{claim['id']}/request-changes", json={"reason": "more"}, headers=m)
    assert again.status_code == 409 and again.json()["code"] == "changes_already_requested"


def test_forbidden_transitions(client, db):
    task, claim, w, m = claimed(client, db, evidence={"photos_min": 0, "video": False})
    # submit before check-in, confirm before submit, appeal a live claim
    assert client.post(f"/v1/claims/{claim['id']}/submit", headers=w).status_code == 409
    assert client.post(f"/v1/submissions/{claim['id']}/confirm", headers=m).status_code == 409
    assert client.post(f"/v1/claims/{claim['id']}/appeals", json={"reason": "x"}, headers=w).status_code == 409


def test_evidence_requirement_blocks_submit(client, db):
    _, claim, w, _ = claimed(client, db)  # default task needs one photo
    client.post(f"/v1/claims/{claim['id']}/checkins", json=fix(STORE[0] + 0.0003, STORE[1]), headers=w)
    r = client.post(f"/v1/claims/{claim['id']}/submit", headers=w)
    assert r.status_code == 409 and r.json()["code"] == "evidence_incomplete"


def test_merchant_cannot_decide_another_merchants_claim(client, db):
    _, claim, w, _ = submitted(client, db)
    _, other = auth_for(client, db, "merchant")
    for path in ("confirm", "reject", "request-changes"):
        r = client.post(f"/v1/submissions/{claim['id']}/{path}", json={"reason": "x", "reason_code": "other"},
                        headers=other)
        assert r.status_code == 404, path
    _, other_worker = auth_for(client, db, "worker")
    assert client.post(f"/v1/claims/{claim['id']}/submit", headers=other_worker).status_code == 404
    assert client.get(f"/v1/tasks/{claim['task_id']}/submissions", headers=other).status_code == 404


def test_auto_confirm_is_safe_twice(client, db, no_sampling):
    _, claim, w, _ = submitted(client, db)
    db.execute(update(Claim).where(Claim.id == claim["id"]).values(submitted_at=utcnow() - timedelta(hours=25)))
    db.flush()
    assert acceptance.auto_confirm_due(db_session=db) >= 1
    assert acceptance.auto_confirm_due(db_session=db) == 0
    assert client.get(f"/v1/claims/{claim['id']}", headers=w).json()["state"] == "paid"
    assert ledger.check(db) == []


def test_sampling_probability_rises_with_risk():
    base = get_settings().spot_check_base_rate
    assert acceptance.sampling_probability(0, []) == pytest.approx(base)
    assert base < acceptance.sampling_probability(40, []) < acceptance.sampling_probability(80, []) < 1
    assert acceptance.sampling_probability(0, ["duplicate_evidence"]) == 1.0


def test_close_returns_unused_escrow(client, db):
    task, claim, w, m = claimed(client, db, slots=3)
    before = _wallet(client, m)
    r = client.post(f"/v1/tasks/{task['id']}/close", headers=m)
    assert r.status_code == 200
    after = _wallet(client, m)
    per_slot = REWARD + COMMISSION
    assert after["merchant_escrow"] == per_slot  # one claim still open keeps its slot's money
    assert after["merchant_available"] == before["merchant_available"] + 2 * per_slot


def test_publish_needs_security_deposit_and_funds(client, db):
    from tests.fieldwork import task_body

    _, m = auth_for(client, db, "merchant")
    tid = client.post("/v1/tasks", json=task_body(), headers=m).json()["id"]
    r = client.post(f"/v1/tasks/{tid}/publish", headers=m)
    assert r.status_code == 409 and r.json()["code"] == "security_deposit_required"
    client.post("/v1/me/deposits", json={"amount_fen": 10_000, "purpose": "security_deposit"}, headers=m)
    r = client.post(f"/v1/tasks/{tid}/publish", headers=m)
    assert r.status_code == 409 and r.json()["code"] == "insufficient_funds"


def test_rating_and_merchant_view_of_worker(client, db, no_sampling):
    _, claim, w, m = submitted(client, db)
    early = client.post(f"/v1/submissions/{claim['id']}/rating", json={"stars": 5}, headers=m)
    assert early.status_code == 409 and early.json()["code"] == "not_ratable"
    client.post(f"/v1/submissions/{claim['id']}/confirm", headers=m)
    r = client.post(f"/v1/submissions/{claim['id']}/rating", json={"stars": 4, "comment": "tidy photos"}, headers=m)
    assert r.status_code == 201 and r.json()["stars"] == 4
    assert client.post(f"/v1/submissions/{claim['id']}/rating", json={"stars": 1}, headers=m).json()["code"] == \
        "already_rated"
    assert client.post(f"/v1/submissions/{claim['id']}/rating", json={"stars": 9}, headers=m).status_code == 422
    worker_id = claim["worker_id"]
    view = client.get(f"/v1/workers/{worker_id}", headers=m).json()
    assert view["rating_avg"] == 4.0 and view["credit_score"] == 101 and view["claims_by_state"] == {"paid": 1}
    _, stranger = auth_for(client, db, "merchant")
    assert client.get(f"/v1/workers/{worker_id}", headers=stranger).status_code == 404
    _, other_worker = auth_for(client, db, "worker")
    assert client.get(f"/v1/workers/{worker_id}", headers=other_worker).status_code == 404
    _, stranger_m = auth_for(client, db, "merchant")
    assert client.post(f"/v1/submissions/{claim['id']}/rating", json={"stars": 3}, headers=stranger_m).status_code == 404


def test_reasons_as_long_as_the_api_allows_are_recorded_whole(client, db):
    """A rejection of 500 characters (its code prefixed in the audit row) and an appeal of 1,000 are recorded
    whole, not refused by the audit column (varchar(500) before migration 0021)."""
    from tasks.models import ClaimEvent

    _, claim, w, m = submitted(client, db)
    long_reject, long_appeal = "照" * 500, "申" * 1000
    r = client.post(f"/v1/submissions/{claim['id']}/reject",
                    json={"reason_code": "work_not_done", "reason": long_reject}, headers=m)
    assert r.status_code == 200 and r.json()["state"] == "rejected", r.text
    a = client.post(f"/v1/claims/{claim['id']}/appeals", json={"reason": long_appeal}, headers=w)
    assert a.status_code == 201, a.text
    reasons = db.scalars(select(ClaimEvent.reason).where(ClaimEvent.claim_id == claim["id"])).all()
    assert f"work_not_done: {long_reject}" in reasons and any(long_appeal in (x or "") for x in reasons)


def _submitted_without_checkout(client, db, stayed_s: int = 0, **task):
    """A claim checked in ``stayed_s`` seconds before it is submitted (the fix's arrival moved back), no check-out."""
    from checkin.models import Checkin

    _, claim, w, _ = claimed(client, db, evidence={"photos_min": 0, "video": False}, **task)
    assert client.post(f"/v1/claims/{claim['id']}/checkins", json=fix(STORE[0] + 0.0003, STORE[1]),
                       headers=w).status_code == 201
    db.execute(update(Checkin).where(Checkin.claim_id == claim["id"])
               .values(server_time=Checkin.server_time - timedelta(seconds=stayed_s)))
    db.commit()
    risk = db.scalar(select(Claim.risk_score).where(Claim.id == claim["id"]))
    r = client.post(f"/v1/claims/{claim['id']}/submit", headers=w)
    assert r.status_code == 200, r.text
    after = db.get(Claim, claim["id"])
    db.refresh(after)
    return after, risk


def test_a_minimum_stay_without_a_check_out_is_a_signal_on_the_claim(client, db):
    """A task asking for an hour on site, submitted right after the check-in without a check-out: the stay is
    unverified and short (it was paid with no signal at all before); without a minimum stay nothing changes."""
    s = get_checkin_settings()
    claim, risk = _submitted_without_checkout(client, db, min_dwell_s=3600)
    assert {"no_checkout", "short_dwell"} <= set(claim.flags)
    assert claim.risk_score == min(100, risk + s.weight_no_checkout + s.weight_short_dwell)
    for over in ({}, {"min_dwell_s": 0}):  # no minimum stay asked for (0 says the same)
        plain, plain_risk = _submitted_without_checkout(client, db, **over)
        assert not {"no_checkout", "short_dwell"} & set(plain.flags) and plain.risk_score == plain_risk


def test_a_minimum_stay_kept_before_submitting_is_only_unverified_and_weighed_once(client, db):
    """Submitted two minutes after the check-in on a task asking for one: only no_checkout; sent back for changes
    and submitted again, the claim's signal is not weighed twice."""
    from tasks.hooks import run_submit_checks
    from tasks.models import Task

    claim, risk = _submitted_without_checkout(client, db, stayed_s=120, min_dwell_s=60)
    assert "no_checkout" in claim.flags and "short_dwell" not in claim.flags
    assert claim.risk_score == min(100, risk + get_checkin_settings().weight_no_checkout)
    weighed = claim.risk_score
    run_submit_checks(db, claim, db.get(Task, claim.task_id))
    assert claim.risk_score == weighed and claim.flags.count("no_checkout") == 1


def test_a_page_of_spot_checks_costs_the_same_statements_as_one_and_shows_each_the_same(client, db, no_sampling):
    """tasks.reviews.spot_check_details reads a page of the queue in a statement per part (claims, their fixes,
    files, matches: tasks.hooks.review_details), not one per part and check; each check reads as it does alone."""
    from sqlalchemy import event

    from tasks import reviews
    from tasks.models import SpotCheck

    ids = []
    for _ in range(3):
        _, claim, _, m = submitted(client, db, mock_location=True)
        assert client.post(f"/v1/submissions/{claim['id']}/confirm", headers=m).json()["state"] == "spot_check"
        ids.append(claim["id"])
    checks = list(db.scalars(select(SpotCheck).where(SpotCheck.claim_id.in_(ids)).order_by(SpotCheck.id)))
    engine, counted = db.get_bind().engine, []

    def count(*_args, **_kw):
        counted.append(1)

    def statements(page):
        counted.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            return reviews.spot_check_details(db_session=db, checks=page), len(counted)
        finally:
            event.remove(engine, "before_cursor_execute", count)

    alone = [statements([c]) for c in checks]
    page, n = statements(checks)
    assert n == alone[0][1] and all(k == n for _, k in alone), (n, [k for _, k in alone])
    assert page == [one[0][0] for one in alone]
    assert all(d["checkins"] and "mock_location" in d["checkins"][0]["reasons"] for d in page)
