"""What the merchant console reads: worker profiles (display name, never identifiers), duplicates traced only to the
merchant's own claims, ratings on the queue, and the statement CSV a Chinese spreadsheet opens as it should."""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from core import jobs
from core.config import get_settings
from geo.crs import from_wgs84
from tests.fieldwork import STORE, claimed, fix, funded_merchant, published_task
from tests.helpers import auth_for, login, unique

PHOTO = (Path(__file__).parent / "data" / "photos" / "coffee.jpg").read_bytes()


@pytest.fixture
def no_sampling(monkeypatch):
    monkeypatch.setattr(get_settings(), "spot_check_base_rate", 0.0)


def _process(db):
    for job in db.scalars(select(jobs.Job).where(jobs.Job.kind == "evidence.process", jobs.Job.state == "pending")):
        jobs.run(db_session=db, job_id=job.id)


def _submitted_with_photo(client, db, merchant_headers=None):
    """A claim with a photo, submitted, on a task of ``merchant_headers`` (or a new merchant's)."""
    over = {} if merchant_headers is None else {"merchant_headers": merchant_headers}
    task, m = published_task(client, db, slots=3, **over)
    worker, w = auth_for(client, db, "worker")
    claim = client.post(f"/v1/tasks/{task['id']}/claims", headers=w).json()
    assert client.post(f"/v1/claims/{claim['id']}/checkins", json=fix(STORE[0] + 0.0003, STORE[1]),
                       headers=w).status_code == 201
    r = client.post(f"/v1/claims/{claim['id']}/evidence", files={"file": ("p.jpg", PHOTO, "image/jpeg")}, headers=w)
    assert r.status_code == 201, r.text
    _process(db)
    assert client.post(f"/v1/claims/{claim['id']}/submit", headers=w).status_code == 200
    return task, claim, worker, w, m


def test_worker_profile_shows_display_name_to_merchants_who_worked_with_them_only(client, db):
    _, claim, _, m = claimed(client, db)
    worker_id = claim["worker_id"]
    view = client.get(f"/v1/workers/{worker_id}", headers=m)
    assert view.status_code == 200
    body = view.json()
    assert set(body) == {"worker_id", "display_name", "credit_score", "credit_formula", "rating_avg", "ratings",
                         "claims_by_state"}  # no username, phone or device: other people's identifiers
    _, stranger = funded_merchant(client, db)
    r = client.get(f"/v1/workers/{worker_id}", headers=stranger)
    assert r.status_code == 404 and r.json()["code"] == "worker_not_found"


def test_worker_profile_display_name_is_the_chosen_one(client, db):
    username = unique("named_worker")
    r = client.post("/v1/auth/register", json={"username": username, "password": "long enough 123", "role": "worker",
                                               "display_name": "小王"})
    assert r.status_code == 201, r.text
    w = login(client, username, "long enough 123")
    _, claim, _, m = claimed(client, db, worker_headers=w)
    body = client.get(f"/v1/workers/{claim['worker_id']}", headers=m).json()
    assert body["display_name"] == "小王" and username not in str(body)


def test_worker_profile_without_a_chosen_name_does_not_show_the_username(client, db):
    """Accounts registered without a display name get their username as one (accounts.create): a merchant must
    still not learn it from the profile (the page shows its own words for an unnamed worker)."""
    username = unique("unnamed_worker")
    r = client.post("/v1/auth/register", json={"username": username, "password": "long enough 123", "role": "worker"})
    assert r.status_code == 201, r.text
    w = login(client, username, "long enough 123")
    _, claim, _, m = claimed(client, db, worker_headers=w)
    body = client.get(f"/v1/workers/{claim['worker_id']}", headers=m).json()
    assert body["display_name"] == "" and username not in str(body), body
    # The worker and ops still see the name the account goes by.
    assert client.get(f"/v1/workers/{claim['worker_id']}", headers=w).json()["display_name"] == username


def test_duplicate_names_the_merchants_own_claim_and_hides_another_merchants(client, db):
    task_a, claim_a, _, _, m = _submitted_with_photo(client, db)
    # The same merchant's second task gets the same photo: traced to the first claim, with its task.
    task_b, claim_b, _, _, _ = _submitted_with_photo(client, db, merchant_headers=m)
    ev = client.get(f"/v1/claims/{claim_b['id']}/evidence", headers=m).json()[0]
    own = [x for x in ev["matches"] if x["claim_id"] == claim_a["id"]]
    assert own and own[0]["own"] is True and own[0]["task_id"] == task_a["id"]
    assert own[0]["task_title"] == task_a["title"]
    # Another merchant's claim reuses it: that merchant learns nothing about ours, and we nothing about theirs.
    _, claim_c, _, _, m2 = _submitted_with_photo(client, db)
    theirs = client.get(f"/v1/claims/{claim_c['id']}/evidence", headers=m2).json()[0]["matches"]
    assert theirs and all(x["own"] is False and x["claim_id"] is None and x["task_id"] is None
                          and x["task_title"] is None for x in theirs)
    ours = client.get(f"/v1/claims/{claim_b['id']}/evidence", headers=m).json()[0]["matches"]
    assert {x["claim_id"] for x in ours if x["own"]} <= {claim_a["id"]}
    assert task_b["id"] != task_a["id"]


def test_queue_carries_the_rating_once_given(client, db, no_sampling):
    task, claim, w, m = claimed(client, db, evidence={"photos_min": 0, "video": False}, slots=2)
    client.post(f"/v1/claims/{claim['id']}/checkins", json=fix(STORE[0] + 0.0003, STORE[1]), headers=w)
    client.post(f"/v1/claims/{claim['id']}/submit", headers=w)
    assert client.post(f"/v1/submissions/{claim['id']}/confirm", headers=m).status_code == 200
    before = client.get(f"/v1/tasks/{task['id']}/submissions?state=", headers=m).json()
    assert before[0]["rating"] is None
    r = client.post(f"/v1/submissions/{claim['id']}/rating", json={"stars": 4, "comment": "照片清楚"}, headers=m)
    assert r.status_code == 201
    after = client.get(f"/v1/tasks/{task['id']}/submissions?state=", headers=m).json()
    assert after[0]["rating"]["stars"] == 4 and after[0]["rating"]["comment"] == "照片清楚"
    _, stranger = funded_merchant(client, db)
    assert client.get(f"/v1/tasks/{task['id']}/submissions?state=", headers=stranger).status_code == 404


def test_statement_csv_has_local_times_yuan_memos_and_a_bom(client, db, no_sampling):
    task, claim, w, m = claimed(client, db, evidence={"photos_min": 0, "video": False}, slots=2, title="门店拜访")
    client.post(f"/v1/claims/{claim['id']}/checkins", json=fix(STORE[0] + 0.0003, STORE[1]), headers=w)
    client.post(f"/v1/claims/{claim['id']}/submit", headers=w)
    client.post(f"/v1/submissions/{claim['id']}/confirm", headers=m)
    r = client.get("/v1/me/statement.csv", headers=m)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][:6] == ["时间", "账户", "类型", "金额（元）", "余额（元）", "说明"]
    body = rows[1:]
    assert body and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row[0]) for row in body)
    assert all(re.fullmatch(r"-?\d+\.\d\d", row[3]) and re.fullmatch(r"-?\d+\.\d\d", row[4]) for row in body)
    assert all(row[5].strip() for row in body)  # every memo says what the posting was for
    assert all(int(row[8]) == round(float(row[3]) * 100) for row in body)  # fen kept for tooling
    hold = next(row for row in body if row[2] == "冻结任务预算")
    assert f"#{task['id']}「门店拜访」" in hold[5] and hold[3] == "-31.50"  # 2 × (15.00 + 0.75)
    payout = next(row for row in body if row[2] == "验收付款")
    assert f"#{claim['id']}" in payout[5] and payout[3] == "-15.75"
    assert any(row[1] == "保证金" and "保证金" in row[5] for row in body)
    en = list(csv.reader(io.StringIO(client.get("/v1/me/statement.csv?lang=en", headers=m).content
                                     .decode("utf-8-sig"))))
    assert en[0][:4] == ["time", "account", "kind", "amount_yuan"] and len(en) == len(rows)
    assert client.get("/v1/me/statement.csv?lang=fr", headers=m).status_code == 422


def test_coordinate_entry_converts_gcj02_to_wgs84(client, db):
    _, m = auth_for(client, db, "merchant")
    gl, go = from_wgs84(STORE[0], STORE[1], "gcj02")
    r = client.get(f"/v1/coords/convert?lat={gl}&lon={go}&src=gcj02&dst=wgs84", headers=m)
    assert r.status_code == 200
    assert abs(r.json()["lat"] - STORE[0]) < 1e-6 and abs(r.json()["lon"] - STORE[1]) < 1e-6
    assert client.get("/v1/coords/convert?lat=91&lon=0", headers=m).status_code == 422
    assert client.get("/v1/coords/convert?lat=1&lon=1&src=utm", headers=m).status_code == 422
    assert client.get(f"/v1/coords/convert?lat={gl}&lon={go}").status_code == 401


def test_ops_read_any_tasks_progress_and_submissions_other_merchants_and_workers_do_not(client, db):
    task, claim, w, m = claimed(client, db)
    _, ops = auth_for(client, db, "ops")
    _, other = auth_for(client, db, "merchant")
    progress = client.get(f"/v1/tasks/{task['id']}/progress", headers=ops)
    assert progress.status_code == 200 and progress.json()["by_state"] == {"claimed": 1}, progress.text
    queue = client.get(f"/v1/tasks/{task['id']}/submissions?state=claimed", headers=ops)
    assert queue.status_code == 200 and [c["id"] for c in queue.json()] == [claim["id"]], queue.text
    assert client.get(f"/v1/tasks/{task['id']}/progress", headers=m).status_code == 200
    for path in (f"/v1/tasks/{task['id']}/progress", f"/v1/tasks/{task['id']}/submissions"):
        assert client.get(path, headers=other).status_code == 404
        assert client.get(path, headers=w).status_code == 403


def test_a_files_traced_duplicates_are_one_statement_and_each_viewer_traces_only_what_it_may_read(client, db):
    """evidence.service.matched_claims reads every match's claim and task in one statement (it read two or three
    per match), with claims.get_for's rule in SQL (claims.readable_by): the task's merchant, the claim's worker,
    ops; nobody else."""
    from sqlalchemy import event

    from accounts.models import User
    from evidence import service as evidence_service
    from evidence.models import Evidence
    from tasks.models import Task
    from tests.helpers import make_user

    task_a, claim_a, worker_a, _, m = _submitted_with_photo(client, db)
    task_b, claim_b, _, _, _ = _submitted_with_photo(client, db, merchant_headers=m)
    _, claim_c, worker_c, _, _ = _submitted_with_photo(client, db)  # another merchant's task
    file_of = {c["id"]: db.scalar(select(Evidence.id).where(Evidence.claim_id == c["id"]))
               for c in (claim_a, claim_b, claim_c)}
    matched = [file_of[claim_a["id"]], file_of[claim_b["id"]]]
    merchant_a = db.get(User, task_a["merchant_id"])
    other_merchant = db.get(User, db.get(Task, claim_c["task_id"]).merchant_id)
    ops = make_user(db, "ops")
    viewers = (("merchant_a", merchant_a), ("ops", ops), ("worker_a", worker_a), ("worker_c", worker_c),
               ("merchant_c", other_merchant))
    assert all(user.role and user.id for _, user in viewers)  # loaded before counting
    statements = []
    engine = db.get_bind().engine

    def count(*_args, **_kw):
        statements.append(1)

    event.listen(engine, "before_cursor_execute", count)
    try:
        by_viewer = {name: evidence_service.matched_claims(db_session=db, user=user, matched_ids=matched)
                     for name, user in viewers}
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 5  # one per read, whatever the number of matches
    both = {file_of[claim_a["id"]]: (claim_a["id"], task_a["id"], task_a["title"]),
            file_of[claim_b["id"]]: (claim_b["id"], task_b["id"], task_b["title"])}
    assert {k: tuple(v) for k, v in by_viewer["merchant_a"].items()} == both
    assert {k: tuple(v) for k, v in by_viewer["ops"].items()} == both
    assert {k: tuple(v) for k, v in by_viewer["worker_a"].items()} == {
        file_of[claim_a["id"]]: both[file_of[claim_a["id"]]]}
    assert by_viewer["worker_c"] == {} and by_viewer["merchant_c"] == {}
