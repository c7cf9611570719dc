"""The worker's own flows behind the phone page: a task is done once, files are withdrawn before submitting,
a claim's timeline says why (reasons, deadline, appeal, amount paid), credit changes carry their reasons.
The guards are also proven with requests released together at one barrier against a real server."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.config import get_settings
from evidence.models import Evidence
from tasks.models import Claim, Task
from tests.fieldwork import STORE, claimed, fix, publish_approved, task_body
from tests.helpers import PASSWORD, auth_for, unique
from tests.live import release_together

PHOTOS = Path(__file__).parent / "data" / "photos"
LIMITS = {"FIELDPROOF_RATE_LIMIT_PER_MINUTE_USER": "100000", "FIELDPROOF_RATE_LIMIT_PER_MINUTE_IP": "100000",
          "FIELDPROOF_LOGIN_PER_IP_PER_MINUTE": "100000", "FIELDPROOF_LOGIN_PER_MINUTE_TOTAL": "100000",
          "FIELDPROOF_SPOT_CHECK_BASE_RATE": "0"}


@pytest.fixture
def no_sampling(monkeypatch):
    monkeypatch.setattr(get_settings(), "spot_check_base_rate", 0.0)


def _upload(client, claim_id: int, headers: dict, name: str):
    data = (PHOTOS / name).read_bytes()
    return client.post(f"/v1/claims/{claim_id}/evidence", files={"file": (name, data, "image/jpeg")}, headers=headers)


def _checked_in(client, db, **task_over):
    task, claim, w, m = claimed(client, db, **task_over)
    r = client.post(f"/v1/claims/{claim['id']}/checkins", json=fix(STORE[0] + 0.0003, STORE[1]), headers=w)
    assert r.status_code == 201, r.text
    return task, claim, w, m


def _paid(client, db, **task_over):
    task, claim, w, m = _checked_in(client, db, evidence={"photos_min": 0, "video": False}, **task_over)
    assert client.post(f"/v1/claims/{claim['id']}/submit", headers=w).status_code == 200
    r = client.post(f"/v1/submissions/{claim['id']}/confirm", headers=m)
    assert r.status_code == 200 and r.json()["state"] == "paid", r.text
    return task, claim, w, m


# ---- a task is done once -------------------------------------------------------------------------------------
def test_a_paid_task_cannot_be_claimed_again_even_with_slots_left(client, db, no_sampling):
    task, claim, w, _ = _paid(client, db, slots=3)
    again = client.post(f"/v1/tasks/{task['id']}/claims", headers=w)
    assert again.status_code == 409 and again.json()["code"] == "task_already_done", again.text
    assert db.scalar(select(Task.slots_taken).where(Task.id == task["id"])) == 1
    _, other = auth_for(client, db, "worker")
    assert client.post(f"/v1/tasks/{task['id']}/claims", headers=other).status_code == 201


def test_a_cancelled_claim_can_be_claimed_again(client, db):
    task, claim, w, _ = claimed(client, db)
    assert client.post(f"/v1/claims/{claim['id']}/cancel", headers=w).json()["state"] == "cancelled"
    assert client.post(f"/v1/tasks/{task['id']}/claims", headers=w).status_code == 201


def test_a_rejected_worker_appeals_rather_than_claims_again(client, db):
    task, claim, w, m = _checked_in(client, db, evidence={"photos_min": 0, "video": False})
    client.post(f"/v1/claims/{claim['id']}/submit", headers=w)
    r = client.post(f"/v1/submissions/{claim['id']}/reject", json={"reason_code": "work_not_done",
                                                                  "reason": "门头照片不是本店"}, headers=m)
    assert r.json()["state"] == "rejected"
    again = client.post(f"/v1/tasks/{task['id']}/claims", headers=w)
    assert again.status_code == 409 and again.json()["code"] == "task_already_done"


# ---- withdrawing files before submitting --------------------------------------------------------------------
def test_withdrawn_photo_leaves_the_list_and_the_count_and_can_come_back(client, db):
    _, claim, w, m = _checked_in(client, db, evidence={"photos_min": 2, "video": False})
    a = _upload(client, claim["id"], w, "coffee.jpg").json()
    b = _upload(client, claim["id"], w, "brick.jpg").json()
    assert [e["id"] for e in client.get(f"/v1/claims/{claim['id']}/evidence", headers=w).json()] == [a["id"], b["id"]]
    r = client.post(f"/v1/evidence/{a['id']}/withdraw", headers=dict(w, **{"Idempotency-Key": "wd-1"}))
    assert r.status_code == 200 and r.json()["withdrawn_at"], r.text
    again = client.post(f"/v1/evidence/{a['id']}/withdraw", headers=dict(w, **{"Idempotency-Key": "wd-1"}))
    assert again.status_code == 200 and again.json() == r.json()
    assert [e["id"] for e in client.get(f"/v1/claims/{claim['id']}/evidence", headers=w).json()] == [b["id"]]
    assert client.get(f"/v1/evidence/{a['id']}", headers=m).status_code == 404  # merchant: gone
    assert client.get(f"/v1/evidence/{a['id']}", headers=w).status_code == 200  # its worker still may look
    short = client.post(f"/v1/claims/{claim['id']}/submit", headers=w)
    assert short.status_code == 409 and short.json()["code"] == "evidence_incomplete"
    back = _upload(client, claim["id"], w, "coffee.jpg")  # the same file again: the same evidence, counted again
    assert back.status_code == 201 and back.json()["id"] == a["id"] and back.json()["withdrawn_at"] is None
    assert client.post(f"/v1/claims/{claim['id']}/submit", headers=w).json()["state"] == "submitted"
    late = client.post(f"/v1/evidence/{b['id']}/withdraw", headers=w)
    assert late.status_code == 409 and late.json()["code"] == "evidence_locked"


def test_only_the_worker_withdraws_their_own_files(client, db):
    _, claim, w, m = _checked_in(client, db)
    ev = _upload(client, claim["id"], w, "coffee.jpg").json()
    _, stranger = auth_for(client, db, "worker")
    r = client.post(f"/v1/evidence/{ev['id']}/withdraw", headers=stranger)
    assert r.status_code == 404 and r.json()["code"] == "evidence_not_found"
    assert client.post(f"/v1/evidence/{ev['id']}/withdraw", headers=m).status_code == 403
    assert db.scalar(select(Evidence.withdrawn_at).where(Evidence.id == ev["id"])) is None


# ---- why: the claim's timeline and the worker's credit ------------------------------------------------------
def test_timeline_shows_rejection_reason_appeal_and_payment(client, db):
    task, claim, w, m = _checked_in(client, db, evidence={"photos_min": 0, "video": False})
    client.post(f"/v1/claims/{claim['id']}/submit", headers=w)
    client.post(f"/v1/submissions/{claim['id']}/request-changes", json={"reason": "请补拍门头"}, headers=m)
    t = client.get(f"/v1/claims/{claim['id']}/timeline", headers=w).json()
    assert t["state"] == "changes_requested" and t["deadline"]
    assert t["events"][-1]["reason"] == "请补拍门头" and t["events"][-1]["by"] == "merchant"
    client.post(f"/v1/claims/{claim['id']}/submit", headers=w)
    client.post(f"/v1/submissions/{claim['id']}/reject", json={"reason_code": "evidence_insufficient",
                                                              "reason": "照片模糊"}, headers=m)
    t = client.get(f"/v1/claims/{claim['id']}/timeline", headers=w).json()
    assert t["deadline"] is None and t["events"][-1]["reason_code"] == "evidence_insufficient"
    assert "照片模糊" in t["events"][-1]["reason"]
    appeal = client.post(f"/v1/claims/{claim['id']}/appeals", json={"reason": "照片清楚"}, headers=w).json()
    _, ops = auth_for(client, db, "ops")
    client.post(f"/v1/appeals/{appeal['id']}/decision", json={"decision": "overturn", "reason": "照片可以"},
                headers=ops)
    t = client.get(f"/v1/claims/{claim['id']}/timeline", headers=w).json()
    assert t["state"] == "paid" and t["paid_fen"] == task["reward_fen"]
    assert t["appeals"][0]["state"] == "overturned" and t["appeals"][0]["decision_reason"] == "照片可以"
    assert t["credit"] == [{"delta": 1, "reason": "accepted", "at": t["credit"][0]["at"], "claim_id": None}]
    merchant_view = client.get(f"/v1/claims/{claim['id']}/timeline", headers=m).json()
    assert merchant_view["credit"] == [] and "actor_id" not in merchant_view["events"][0]
    _, stranger = auth_for(client, db, "worker")
    assert client.get(f"/v1/claims/{claim['id']}/timeline", headers=stranger).status_code == 404


def test_failed_spot_check_says_why_and_shows_in_credit(client, db, monkeypatch):
    monkeypatch.setattr(get_settings(), "spot_check_base_rate", 1.0)
    _, claim, w, m = _checked_in(client, db, evidence={"photos_min": 0, "video": False})
    client.post(f"/v1/claims/{claim['id']}/submit", headers=w)
    assert client.post(f"/v1/submissions/{claim['id']}/confirm", headers=m).json()["state"] == "spot_check"
    _, ops = auth_for(client, db, "ops")
    check = next(c for c in client.get("/v1/spot-checks", headers=ops).json() if c["claim"]["id"] == claim["id"])
    client.post(f"/v1/spot-checks/{check['id']}/verdict", json={"verdict": "fail", "reason": "店已关门"}, headers=ops)
    t = client.get(f"/v1/claims/{claim['id']}/timeline", headers=w).json()
    assert t["state"] == "closed" and t["spot_check"] == {"state": "failed", "reason": "店已关门",
                                                          "decided_at": t["spot_check"]["decided_at"]}
    assert [c["delta"] for c in t["credit"]] == [-5]
    mine = client.get("/v1/me/credit", headers=w).json()
    assert mine["score"] == 95 and mine["events"][0]["reason"] == "spot check failed"
    assert mine["events"][0]["claim_id"] == claim["id"]


# ---- the same guards with requests released together ---------------------------------------------------------
@pytest.fixture(scope="module")
def server(test_database):
    from tests.live import live_server

    with live_server("workerflows", LIMITS) as srv:
        yield srv


def _login(server, role: str) -> dict:
    from accounts import service as accounts

    name = unique(f"wf_{role}")
    with server.session() as s:
        accounts.create(db_session=s, username=name, password=PASSWORD, role=role, self_service=False)
    with server.http() as c:
        r = c.post("/v1/auth/token", data={"username": name, "password": PASSWORD})
        return {"Authorization": f"Bearer {r.json()['access_token']}"}


_spot = iter(range(1, 1000))


def _live_checked_in(server, photos_min: int, slots: int = 3) -> tuple[dict, int, dict, dict]:
    m, ops, w = _login(server, "merchant"), _login(server, "ops"), _login(server, "worker")
    with server.http() as c:
        for purpose, amount in (("security_deposit", 10_000), ("available", 1_000_000)):
            assert c.post("/v1/me/deposits", json={"amount_fen": amount, "purpose": purpose}, headers=m).is_success
        task = publish_approved(c, task_body(slots=slots, evidence={"photos_min": photos_min, "video": False}), m, ops)
        claim_id = c.post(f"/v1/tasks/{task['id']}/claims", headers=w).json()["id"]
        here = (STORE[0] + 0.0003, STORE[1] + 0.00001 * next(_spot))  # a fresh spot: no exact repeats flagged
        r = c.post(f"/v1/claims/{claim_id}/checkins", json=fix(*here), headers=w)
        assert r.status_code == 201, r.text
    return task, claim_id, w, m


def test_parallel_reclaims_of_a_paid_task_all_refused(server):
    task, claim_id, w, m = _live_checked_in(server, photos_min=0, slots=5)
    with server.http() as c:
        assert c.post(f"/v1/claims/{claim_id}/submit", headers=w).status_code == 200
        assert c.post(f"/v1/submissions/{claim_id}/confirm", headers=m).json()["state"] == "paid"
    results = release_together(server, 8, lambda c, i: c.post(f"/v1/tasks/{task['id']}/claims", headers=w))
    assert [r.status_code for r in results] == [409] * 8, [getattr(r, "text", r) for r in results]
    assert {r.json()["code"] for r in results} == {"task_already_done"}
    with server.session() as s:
        assert s.scalar(select(Task.slots_taken).where(Task.id == task["id"])) == 1
        assert s.scalar(select(func.count()).where(Claim.task_id == task["id"])) == 1


def test_reclaims_racing_the_payment_never_add_a_claim(server):
    task, claim_id, w, m = _live_checked_in(server, photos_min=0, slots=5)
    with server.http() as c:
        assert c.post(f"/v1/claims/{claim_id}/submit", headers=w).status_code == 200

    def go(c, i):  # one confirmation (active → paid) released with seven claims by the same worker
        if i == 0:
            return c.post(f"/v1/submissions/{claim_id}/confirm", headers=m)
        return c.post(f"/v1/tasks/{task['id']}/claims", headers=w)

    results = release_together(server, 8, go)
    assert results[0].json()["state"] == "paid", results[0].text
    assert {r.json()["code"] for r in results[1:]} <= {"already_claimed", "task_already_done"}
    with server.session() as s:
        assert s.scalar(select(func.count()).where(Claim.task_id == task["id"])) == 1
        assert s.scalar(select(Task.slots_taken).where(Task.id == task["id"])) == 1


def test_withdraw_racing_submit_never_leaves_a_submission_short(server):
    _, claim_id, w, _ = _live_checked_in(server, photos_min=2)
    with server.http() as c:
        ids = [_upload(c, claim_id, w, name).json()["id"] for name in ("coffee.jpg", "brick.jpg")]

    def go(c, i):  # a submit and withdrawals of both photos, together
        return c.post(f"/v1/claims/{claim_id}/submit", headers=w) if i == 0 else \
            c.post(f"/v1/evidence/{ids[i - 1]}/withdraw", headers=w)

    results = release_together(server, 3, go)
    with server.session() as s:
        state = s.scalar(select(Claim.state).where(Claim.id == claim_id))
        live = s.scalar(select(func.count()).where(Evidence.claim_id == claim_id, Evidence.withdrawn_at.is_(None)))
    if results[0].status_code == 200:
        assert state == "submitted" and live == 2
        assert {r.json()["code"] for r in results[1:] if r.status_code != 200} == {"evidence_locked"}
    else:
        assert results[0].json()["code"] == "evidence_incomplete" and state == "checked_in" and live < 2
