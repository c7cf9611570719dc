"""Evidence through the API and the processing job on real PostGIS: duplicates across workers, EXIF, auth."""
from __future__ import annotations

import io
from pathlib import Path

from PIL import Image
from sqlalchemy import select

from core import jobs
from evidence.models import Evidence
from tasks.models import Claim
from tests.evidence_transforms import jpeg, watermark_band
from tests.fieldwork import STORE, claimed, fix
from tests.helpers import auth_for

PHOTOS = Path(__file__).parent / "data" / "photos"


def checked_in(client, db):
    task, claim, w, m = claimed(client, db)
    r = client.post(f"/v1/claims/{claim['id']}/checkins", json=fix(STORE[0] + 0.0003, STORE[1]), headers=w)
    assert r.status_code == 201, r.text
    return task, claim, w, m


def upload(client, claim, headers, data: bytes, name="photo.jpg", key=None):
    h = dict(headers, **({"Idempotency-Key": key} if key else {}))
    return client.post(f"/v1/claims/{claim['id']}/evidence", files={"file": (name, data, "image/jpeg")}, headers=h)


def process_all(db):
    """Run every pending evidence job in the test's transaction (what the Celery worker does)."""
    for job in db.scalars(select(jobs.Job).where(jobs.Job.kind == "evidence.process", jobs.Job.state == "pending")):
        jobs.run(db_session=db, job_id=job.id)


def test_duplicate_across_two_workers_flags_the_later_claim_and_notes_the_earlier(client, db):
    _, c1, w1, _ = checked_in(client, db)
    _, c2, w2, _ = checked_in(client, db)
    original = (PHOTOS / "chelsea.jpg").read_bytes()
    assert upload(client, c1, w1, original).status_code == 201
    process_all(db)
    stamped = jpeg(watermark_band(Image.open(io.BytesIO(original))))
    r = upload(client, c2, w2, stamped)
    assert r.status_code == 201 and r.json()["state"] == "received"
    process_all(db)
    ev2 = client.get(f"/v1/evidence/{r.json()['id']}", headers=w2).json()
    assert ev2["state"] == "processed" and "duplicate_evidence" in ev2["reasons"]
    assert ev2["matches"] and ev2["matches"][0]["method"].startswith("phash")
    assert "duplicate_evidence" in db.get(Claim, c2["id"]).flags
    # The worker whose photo was reused later is not flagged: the earlier claim only carries a note.
    first = db.get(Claim, c1["id"])
    assert "duplicate_evidence" not in first.flags and "evidence_reused_later" in first.flags
    ev1 = client.get(f"/v1/claims/{c1['id']}/evidence", headers=w1).json()[0]
    assert ev1["matches"][0]["matched_evidence_id"] == ev2["id"]
    assert "evidence_reused_later" in ev1["reasons"] and "duplicate_evidence" not in ev1["reasons"]


def test_exact_repeat_is_its_own_reason_and_distinct_photos_are_clean(client, db):
    _, c1, w1, _ = checked_in(client, db)
    _, c2, w2, _ = checked_in(client, db)
    data = (PHOTOS / "rocket.jpg").read_bytes()
    upload(client, c1, w1, data)
    upload(client, c1, w1, (PHOTOS / "camera.jpg").read_bytes())
    r = upload(client, c2, w2, data)
    process_all(db)
    assert "exact_duplicate_evidence" in client.get(f"/v1/evidence/{r.json()['id']}", headers=w2).json()["reasons"]
    clean = [e for e in client.get(f"/v1/claims/{c1['id']}/evidence", headers=w1).json() if e["sha256"] != r.json()["sha256"]]
    assert clean[0]["matches"] == [] and not any("duplicate" in x for x in clean[0]["reasons"])
    # the shipped photos say they were taken on 2026-11-20: not during this visit
    assert "exif_time_mismatch" in clean[0]["reasons"]


def test_served_copy_has_no_exif_gps_and_api_hides_gps(client, db):
    _, claim, w, m = checked_in(client, db)
    r = upload(client, claim, w, (PHOTOS / "coffee.jpg").read_bytes())
    assert "gps" not in (r.json()["exif"] or {}) and r.json()["exif"]["make"] == "FieldproofTestCam"
    img = client.get(f"/v1/evidence/{r.json()['id']}/image?size=thumb", headers=m)
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    served = Image.open(io.BytesIO(img.content))
    assert not served.getexif() and b"FieldproofTestCam" not in img.content and max(served.size) == 320
    stored = db.get(Evidence, r.json()["id"])
    assert stored.exif["gps"]["lat"] > 39  # kept privately for the EXIF-vs-check-in comparison


def test_exif_far_from_checkin_is_a_reason(client, db):
    _, claim, w, _ = checked_in(client, db)
    img = Image.open(PHOTOS / "astronaut.jpg")
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (31.0, 13.0, 0.0), 3: "E", 4: (121.0, 28.0, 0.0)}  # Shanghai
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    r = upload(client, claim, w, buf.getvalue())
    process_all(db)
    assert "exif_gps_far" in client.get(f"/v1/evidence/{r.json()['id']}", headers=w).json()["reasons"]


def test_malformed_uploads_are_4xx_with_codes(client, db):
    _, claim, w, _ = checked_in(client, db)
    good = (PHOTOS / "camera.jpg").read_bytes()
    cases = {"empty_file": b"", "truncated_image": good[:3000], "polyglot_file": good + b"PK\x03\x04" + b"\0" * 100,
             "unsupported_media_type": b"<html><script>alert(1)</script></html>"}
    for code, data in cases.items():
        r = upload(client, claim, w, data)
        assert 400 <= r.status_code < 500 and r.json()["code"] == code, (code, r.text)


def test_png_named_jpg_accepted_and_idempotent_upload(client, db):
    _, claim, w, _ = checked_in(client, db)
    buf = io.BytesIO()
    Image.open(PHOTOS / "camera.jpg").save(buf, "PNG")
    a = upload(client, claim, w, buf.getvalue(), name="looks.jpg", key="up-1")
    b = upload(client, claim, w, buf.getvalue(), name="looks.jpg", key="up-1")
    assert a.status_code == b.status_code == 201 and a.json() == b.json() and a.json()["mime"] == "image/png"
    assert len(client.get(f"/v1/claims/{claim['id']}/evidence", headers=w).json()) == 1


def test_evidence_authorisation(client, db):
    _, claim, w, m = checked_in(client, db)
    r = upload(client, claim, w, (PHOTOS / "camera.jpg").read_bytes())
    _, other_worker = auth_for(client, db, "worker")
    _, other_merchant = auth_for(client, db, "merchant")
    eid = r.json()["id"]
    for headers in (other_worker, other_merchant):
        assert client.get(f"/v1/evidence/{eid}", headers=headers).status_code == 404
        assert client.get(f"/v1/evidence/{eid}/image", headers=headers).status_code == 404
        assert client.get(f"/v1/claims/{claim['id']}/evidence", headers=headers).status_code == 404
    assert upload(client, claim, other_worker, (PHOTOS / "rocket.jpg").read_bytes()).status_code == 404
    assert client.get(f"/v1/evidence/{eid}", headers=m).status_code == 200


def test_submit_with_photo_then_merchant_sees_it(client, db):
    _, claim, w, m = checked_in(client, db)
    upload(client, claim, w, (PHOTOS / "grass.jpg").read_bytes())
    assert client.post(f"/v1/claims/{claim['id']}/submit", headers=w).json()["state"] == "submitted"
    subs = client.get(f"/v1/tasks/{claim['task_id']}/submissions", headers=m).json()
    assert [s["id"] for s in subs] == [claim["id"]]
    late = upload(client, claim, w, (PHOTOS / "rocket.jpg").read_bytes())
    assert late.status_code == 409 and late.json()["code"] == "evidence_not_accepted"


def test_a_claim_whose_photo_is_not_checked_yet_is_never_paid_unseen(client, db, monkeypatch):
    """The merchant confirms before the duplicate search has run (a backlog): refused with 409 evidence_processing
    (Retry-After), and beat's auto-confirmation waits too. Checks stuck past evidence_check_wait_s: confirming
    sends the claim to a spot check (stratum 'unchecked', p = 1) instead of paying it, whatever the dice say.
    Once checked, claims are sampled as before."""
    from datetime import timedelta

    from sqlalchemy import update

    from core.config import get_settings
    from core.models import utcnow
    from tasks import acceptance
    from tasks.models import SpotCheck

    monkeypatch.setattr(get_settings(), "spot_check_base_rate", 0.0)
    _, claim, w, m = checked_in(client, db)
    photo = upload(client, claim, w, (PHOTOS / "coffee.jpg").read_bytes()).json()
    assert client.post(f"/v1/claims/{claim['id']}/submit", headers=w).status_code == 200
    r = client.post(f"/v1/submissions/{claim['id']}/confirm", headers=m)
    assert r.status_code == 409 and r.json()["code"] == "evidence_processing" and r.headers["Retry-After"]
    db.execute(update(Claim).where(Claim.id == claim["id"]).values(submitted_at=utcnow() - timedelta(days=2)))
    assert acceptance._auto_confirm_one(db, claim["id"]) is False  # due, but its photo is not checked yet
    acceptance.auto_confirm_due(db_session=db)  # the whole sweep leaves it for a later run too
    assert db.get(Claim, claim["id"]).state == "submitted"

    wait = get_settings().evidence_check_wait_s
    db.execute(update(Evidence).where(Evidence.id == photo["id"]).values(
        created_at=utcnow() - timedelta(seconds=wait + 60)))
    r = client.post(f"/v1/submissions/{claim['id']}/confirm", headers=m)
    assert r.status_code == 200 and r.json()["state"] == "spot_check", r.text
    _, ops = auth_for(client, db, "ops")
    check = next(c for c in client.get("/v1/spot-checks", headers=ops).json() if c["claim_id"] == claim["id"])
    assert check["stratum"] == "unchecked" and check["probability"] == 1.0

    _, other, w2, m2 = checked_in(client, db)
    assert upload(client, other, w2, (PHOTOS / "rocket.jpg").read_bytes()).status_code == 201
    process_all(db)
    assert client.post(f"/v1/claims/{other['id']}/submit", headers=w2).status_code == 200
    assert client.post(f"/v1/submissions/{other['id']}/confirm", headers=m2).status_code == 200
    sampled = db.scalar(select(SpotCheck).where(SpotCheck.claim_id == other["id"]))
    assert sampled.stratum != "unchecked"  # drawn on its flags and risk score alone


def test_a_withdrawn_file_is_not_served_to_a_merchant_through_a_duplicate_match(client, db):
    """A file its worker withdrew is shown to its worker and ops only, also as the other side of a match."""
    _, c1, w1, _ = checked_in(client, db)
    _, c2, w2, m2 = checked_in(client, db)
    original = (PHOTOS / "chelsea.jpg").read_bytes()
    first = upload(client, c1, w1, original).json()
    process_all(db)
    assert client.post(f"/v1/evidence/{first['id']}/withdraw", headers=w1).status_code == 200
    copy = upload(client, c2, w2, jpeg(watermark_band(Image.open(io.BytesIO(original))))).json()
    process_all(db)
    assert "duplicate_evidence" in client.get(f"/v1/evidence/{copy['id']}", headers=w2).json()["reasons"]
    path = f"/v1/evidence/{copy['id']}/matches/{first['id']}/image"
    assert client.get(path, headers=m2).status_code == 404
    _, ops = auth_for(client, db, "ops")
    assert client.get(path, headers=ops).status_code == 200


def test_beat_sends_a_claim_whose_checks_are_stuck_to_a_spot_check_not_to_payment(client, db, monkeypatch):
    """tasks.acceptance._auto_confirm_one reads the claim's lock and its files' checks in one statement: a file still
    being checked leaves the claim for a later run; one stuck past evidence_check_wait_s sends it to a spot check
    (stratum 'unchecked', p = 1), never to payment."""
    from datetime import timedelta

    from sqlalchemy import event, update

    from core.config import get_settings
    from core.models import utcnow
    from tasks import acceptance
    from tasks.models import SpotCheck

    monkeypatch.setattr(get_settings(), "spot_check_base_rate", 0.0)
    _, claim, w, _ = checked_in(client, db)
    photo = upload(client, claim, w, (PHOTOS / "coffee.jpg").read_bytes()).json()
    assert client.post(f"/v1/claims/{claim['id']}/submit", headers=w).status_code == 200
    db.execute(update(Claim).where(Claim.id == claim["id"]).values(submitted_at=utcnow() - timedelta(days=2)))
    engine, counted = db.get_bind().engine, []

    def count(*_args, **_kw):
        counted.append(1)

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert acceptance._auto_confirm_one(db, claim["id"]) is False
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(counted) == 1  # the lock and both checks
    db.execute(update(Evidence).where(Evidence.id == photo["id"]).values(
        created_at=utcnow() - timedelta(seconds=get_settings().evidence_check_wait_s + 60)))
    assert acceptance._auto_confirm_one(db, claim["id"]) is True
    assert db.get(Claim, claim["id"]).state == "spot_check"
    check = db.scalar(select(SpotCheck).where(SpotCheck.claim_id == claim["id"]))
    assert check.stratum == "unchecked" and check.probability == 1.0
