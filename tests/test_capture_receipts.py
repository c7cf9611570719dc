"""Capture receipts: the check-in's nonce stamped by the in-app camera, verified on upload (issue 17 part 1)."""
from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from core.reasons import REASONS
from evidence.models import Evidence
from tasks import capture
from tasks.models import Claim
from tests.fieldwork import STORE, claimed, fix, now

PHOTOS = Path(__file__).parent / "data" / "photos"


def _photo(seed: int) -> bytes:
    """A small, distinct JPEG without EXIF (what the in-app camera's canvas produces)."""
    img = Image.new("RGB", (64, 48), (seed * 37 % 256, seed * 91 % 256, seed * 13 % 256))
    img.putpixel((seed % 64, seed % 48), (255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _checked_in(client, db, **task_over):
    task, claim, w, m = claimed(client, db, **task_over)
    r = client.post(f"/v1/claims/{claim['id']}/checkins", json=fix(lat=STORE[0] + 0.0002), headers=w)  # ~20 m in
    assert r.status_code == 201, r.text
    return claim["id"], r.json(), w


def _upload(client, claim_id, headers, data, receipt=None):
    extra = {"data": {"capture_receipt": json.dumps(receipt)}} if receipt is not None else {}
    return client.post(f"/v1/claims/{claim_id}/evidence", files={"file": ("p.jpg", data, "image/jpeg")},
                       headers=headers, **extra)


def _receipt(nonce: str, at=None) -> dict:
    return {"nonce": nonce, "captured_at": (at or now()).isoformat()}


def test_check_in_issues_a_nonce_and_a_receipted_photo_verifies(client, db):
    claim_id, ci, w = _checked_in(client, db)
    assert ci["capture_nonce"] and ci["capture_nonce_expires_at"]
    r = _upload(client, claim_id, w, _photo(1), _receipt(ci["capture_nonce"]))
    assert r.status_code == 201, r.text
    assert r.json()["capture_verified"] is True and "no_capture_receipt" not in r.json()["reasons"]
    stored = db.scalar(select(Evidence).where(Evidence.id == r.json()["id"]))
    assert stored.capture_nonce_sha256 == capture.digest(ci["capture_nonce"])  # the nonce itself is not kept


def test_a_gallery_photo_is_accepted_with_lower_trust_where_the_task_allows_it(client, db):
    claim_id, _, w = _checked_in(client, db)
    r = _upload(client, claim_id, w, _photo(2))
    assert r.status_code == 201 and r.json()["capture_verified"] is False
    assert r.json()["reasons"] == ["no_capture_receipt"]
    c = db.get(Claim, claim_id)
    db.refresh(c)
    assert "no_capture_receipt" in c.flags and 0 < c.risk_score < 25  # lower trust, not a flag
    assert REASONS["no_capture_receipt"].severity == "soft"


def test_a_camera_only_task_refuses_gallery_photos(client, db):
    claim_id, _, w = _checked_in(client, db, evidence={"photos_min": 1, "video": False, "allow_gallery": False})
    r = _upload(client, claim_id, w, _photo(3))
    assert r.status_code == 422 and r.json()["code"] == "capture_receipt_required"


def test_a_reused_nonce_is_refused_on_a_camera_only_task(client, db):
    claim_id, ci, w = _checked_in(client, db, evidence={"photos_min": 1, "video": False, "allow_gallery": False})
    assert _upload(client, claim_id, w, _photo(4), _receipt(ci["capture_nonce"])).status_code == 201
    r = _upload(client, claim_id, w, _photo(5), _receipt(ci["capture_nonce"]))
    assert r.status_code == 422 and r.json()["code"] == "capture_receipt_invalid" and r.json()["why"] == "reused"
    # The same file again (a phone's retry) is the same evidence, not a reuse.
    again = _upload(client, claim_id, w, _photo(4), _receipt(ci["capture_nonce"]))
    assert again.status_code == 201 and again.json()["capture_verified"] is True


def _respellings(nonce: str) -> list[str]:
    """Other spellings of one nonce that decode to the same bytes: base64 padding, and the last character's
    low bits (54 characters carry 40 bytes: its last 4 bits are unused)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    i = alphabet.index(nonce[-1])
    return [nonce + "=", nonce + "==", nonce[:-1] + alphabet[i ^ 1]]


def test_a_nonce_spelled_another_way_is_still_the_same_nonce(client, db):
    """Single use holds for the nonce, not its spelling: a padded or bit-twiddled copy is refused, never a second
    verified photo (it was accepted: the unique index is on the digest of the text as sent)."""
    claim_id, ci, w = _checked_in(client, db, evidence={"photos_min": 1, "video": False, "allow_gallery": False})
    assert _upload(client, claim_id, w, _photo(40), _receipt(ci["capture_nonce"])).status_code == 201
    for k, other in enumerate(_respellings(ci["capture_nonce"])):
        r = _upload(client, claim_id, w, _photo(41 + k), _receipt(other))
        assert r.status_code == 422 and r.json()["code"] == "capture_receipt_invalid", r.text
    verified = db.scalar(select(func.count()).select_from(Evidence).where(Evidence.claim_id == claim_id,
                                                                          Evidence.capture_verified))
    assert verified == 1


def test_another_claims_nonce_is_refused(client, db):
    claim_a, ci_a, w = _checked_in(client, db, evidence={"photos_min": 1, "video": False, "allow_gallery": False})
    claim_b, _, w_b = _checked_in(client, db, evidence={"photos_min": 1, "video": False, "allow_gallery": False})
    r = _upload(client, claim_b, w_b, _photo(6), _receipt(ci_a["capture_nonce"]))
    assert r.status_code == 422 and r.json()["why"] == "other_claim"


def test_a_forged_nonce_is_refused(client, db):
    claim_id, ci, w = _checked_in(client, db, evidence={"photos_min": 1, "video": False, "allow_gallery": False})
    nonce = ci["capture_nonce"]
    forged = nonce[:-3] + ("AAA" if nonce[-3:] != "AAA" else "BBB")
    for bad in (forged, "not-a-nonce!!", "x" * 64):
        r = _upload(client, claim_id, w, _photo(7), _receipt(bad))
        assert r.status_code == 422 and r.json()["code"] == "capture_receipt_invalid", r.text
        assert r.json()["why"] == "forged"
    r = client.post(f"/v1/claims/{claim_id}/evidence", files={"file": ("p.jpg", _photo(7), "image/jpeg")},
                    data={"capture_receipt": "{not json"}, headers=w)
    assert r.status_code == 422 and r.json()["why"] == "malformed"


def test_an_expired_nonce_is_refused_and_a_fresh_one_can_be_had(client, db):
    claim_id, _, w = _checked_in(client, db, evidence={"photos_min": 1, "video": False, "allow_gallery": False})
    old, _ = capture.issue(claim_id, now() - timedelta(seconds=capture.TTL_S + capture.UPLOAD_GRACE_S + 60))
    r = _upload(client, claim_id, w, _photo(8), _receipt(old, now() - timedelta(hours=1)))
    assert r.status_code == 422 and r.json()["why"] == "expired"
    fresh = client.post(f"/v1/claims/{claim_id}/capture-nonces", headers=w)
    assert fresh.status_code == 201, fresh.text
    r = _upload(client, claim_id, w, _photo(8), _receipt(fresh.json()["capture_nonce"]))
    assert r.status_code == 201 and r.json()["capture_verified"] is True


def test_a_capture_time_outside_the_nonces_life_is_invalid_but_accepted_with_a_hard_reason_on_gallery_tasks(
        client, db):
    claim_id, ci, w = _checked_in(client, db)
    r = _upload(client, claim_id, w, _photo(9), _receipt(ci["capture_nonce"], now() - timedelta(hours=3)))
    assert r.status_code == 201 and r.json()["capture_verified"] is False
    assert r.json()["reasons"] == ["capture_receipt_invalid"]
    c = db.get(Claim, claim_id)
    db.refresh(c)
    assert "capture_receipt_invalid" in c.flags and REASONS["capture_receipt_invalid"].forces_spot_check


def test_exif_time_far_from_the_receipt_is_invalid(client, db):
    claim_id, ci, w = _checked_in(client, db, evidence={"photos_min": 1, "video": False, "allow_gallery": False})
    old_photo = (PHOTOS / "coffee.jpg").read_bytes()  # a real camera file, EXIF dated long ago
    r = _upload(client, claim_id, w, old_photo, _receipt(ci["capture_nonce"]))
    assert r.status_code == 422 and r.json()["why"] == "exif_time", r.text


def test_nonces_are_only_for_the_workers_own_checked_in_claim(client, db):
    task, claim, w, m = claimed(client, db)
    r = client.post(f"/v1/claims/{claim['id']}/capture-nonces", headers=w)
    assert r.status_code == 409 and r.json()["code"] == "evidence_not_accepted"  # not checked in yet
    assert client.post(f"/v1/claims/{claim['id']}/capture-nonces", headers=m).status_code in (403, 404)


@pytest.fixture(scope="module")
def server(test_database):
    from tests.live import live_server

    with live_server("capture", {"FIELDPROOF_RATE_LIMIT_PER_MINUTE_USER": "100000",
                                 "FIELDPROOF_RATE_LIMIT_PER_MINUTE_IP": "100000"}) as srv:
        yield srv


def test_parallel_uploads_with_one_nonce_verify_once(server):
    """Eight different photos stamped with one nonce, released together: exactly one carries a verified receipt."""
    from tests.test_guards_parallel import _checked_in_claims, _token, _users
    from tests.live import release_together

    headers = _token(server, _users(server, "worker", 1)[0])
    claim_id = _checked_in_claims(server, headers, 1)[0]
    with server.http() as c:
        nonce = c.post(f"/v1/claims/{claim_id}/capture-nonces", headers=headers).json()["capture_nonce"]
    photos = [_photo(20 + i) for i in range(8)]
    results = release_together(server, 8, lambda c, i: _upload(c, claim_id, headers, photos[i], _receipt(nonce)))
    assert all(not isinstance(r, Exception) and r.status_code == 201 for r in results), results
    assert sum(r.json()["capture_verified"] for r in results) == 1
    assert sorted(r.json()["reasons"] == ["capture_receipt_invalid"] for r in results) == [False] + [True] * 7
