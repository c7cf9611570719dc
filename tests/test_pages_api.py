"""Read endpoints added for the web pages: ops' task review queue and duplicate previews, with their authorisation."""
from __future__ import annotations

from pathlib import Path

from tests.fieldwork import funded_merchant, task_body
from tests.helpers import auth_for
from tests.test_evidence_api import checked_in, process_all, upload

PHOTOS = Path(__file__).parent / "data" / "photos"


def _pending_task(client, db, merchant_headers=None):
    if merchant_headers is None:
        _, merchant_headers = funded_merchant(client, db)
    r = client.post("/v1/tasks", json=task_body(title="review me"), headers=merchant_headers)
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    assert client.post(f"/v1/tasks/{tid}/publish", headers=merchant_headers).status_code == 200
    return tid, merchant_headers


def test_review_queue_lists_pending_tasks_for_ops_only(client, db):
    tid, merchant = _pending_task(client, db)
    _, ops = auth_for(client, db, "ops")
    _, worker = auth_for(client, db, "worker")
    r = client.get("/v1/tasks/review-queue", headers=ops)
    assert r.status_code == 200, r.text
    queued = {t["id"]: t for t in r.json()}
    assert tid in queued and queued[tid]["state"] == "pending_review"
    assert queued[tid]["geofence"]["type"] in ("Polygon", "MultiPolygon")
    for headers in (merchant, worker):
        r = client.get("/v1/tasks/review-queue", headers=headers)
        assert r.status_code == 403 and r.json()["code"] == "wrong_role", r.text
    assert client.get("/v1/tasks/review-queue").status_code == 401
    # Once decided, a task leaves the queue.
    assert client.post(f"/v1/tasks/{tid}/review", json={"decision": "approve"}, headers=ops).status_code == 200
    assert tid not in {t["id"] for t in client.get("/v1/tasks/review-queue", headers=ops).json()}


def _duplicate_pair(client, db):
    """Two workers on two merchants' tasks upload the same photo; returns both sides' ids and headers."""
    _, c1, w1, m1 = checked_in(client, db)
    _, c2, w2, m2 = checked_in(client, db)
    photo = (PHOTOS / "coffee.jpg").read_bytes()
    e1 = upload(client, c1, w1, photo).json()["id"]
    process_all(db)
    e2 = upload(client, c2, w2, photo).json()["id"]
    process_all(db)
    return e1, e2, (w1, m1), (w2, m2)


def test_match_image_for_the_merchant_judging_and_ops(client, db):
    e1, e2, (w1, m1), (w2, m2) = _duplicate_pair(client, db)
    _, ops = auth_for(client, db, "ops")
    # Merchant 2 judges e2 and may see the file it duplicates (on merchant 1's task), and vice versa.
    for headers, mine, other in ((m2, e2, e1), (m1, e1, e2), (ops, e2, e1)):
        r = client.get(f"/v1/evidence/{mine}/matches/{other}/image", headers=headers)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", r.text
        assert r.content[:2] == b"\xff\xd8"
    # Not through someone else's evidence, not for an id that is not a recorded match, never for workers.
    _, stranger = auth_for(client, db, "merchant")
    for headers, mine, other in ((stranger, e2, e1), (m2, e1, e2)):
        r = client.get(f"/v1/evidence/{mine}/matches/{other}/image", headers=headers)
        assert r.status_code == 404 and r.json()["code"] == "evidence_not_found", r.text  # not yours reads as missing
    r = client.get(f"/v1/evidence/{e2}/matches/{e2}/image", headers=m2)
    assert r.status_code == 404 and r.json()["code"] == "match_not_found"
    for headers, mine, other in ((w2, e2, e1), (w1, e1, e2)):
        r = client.get(f"/v1/evidence/{mine}/matches/{other}/image", headers=headers)
        assert r.status_code == 404 and r.json()["code"] == "match_not_found"


def test_reason_catalogue_gives_every_code_plain_words_in_both_languages(client):
    """The pages show no raw code: every reason in the registry comes with Chinese and English words."""
    from core.reasons import REASONS  # the registry the endpoint must mirror in full

    body = client.get("/v1/reasons").json()["reasons"]
    assert {r["code"] for r in body} == set(REASONS)
    dup = next(r for r in body if r["code"] == "duplicate_evidence")
    assert dup["zh"] == "照片与之前提交的照片重复" and dup["en"].startswith("photo re-used")
    assert all(r["zh"] and r["en"] and r["zh"] != r["code"] for r in body)
