"""Same capture vs same scene through the API and the processing job on real PostGIS: a photo of the same
storefront on another day is a note, not a duplicate; a task asking for a fresh angle counts it; cropped and
screenshotted re-uses are still duplicates."""
from __future__ import annotations

import io
import json
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from PIL import Image
from sqlalchemy import select

from accounts import service as accounts
from core import jobs
from evidence import pairs
from evidence import service as evidence_service  # noqa: F401  (registers the evidence.process job handler)
from evidence.models import Evidence, EvidenceMatch
from sim import photos
from tasks.models import Claim
from tests.evidence_transforms import TRANSFORMS, jpeg
from tests.fieldwork import STORE, claimed, fix, now, publish_approved, task_body
from tests.helpers import PASSWORD, auth_for, unique
from tests.test_evidence_api import process_all, upload

CST = timezone(timedelta(hours=8))


def _visit(client, db, **task_over):
    task, claim, w, m = claimed(client, db, **task_over)
    r = client.post(f"/v1/claims/{claim['id']}/checkins", json=fix(STORE[0] + 0.0003, STORE[1]), headers=w)
    assert r.status_code == 201, r.text
    return task, claim, w, m


def _shot(seed: int, visit: int, minutes_ago: float, camera: tuple[str, str, str]) -> bytes:
    """The shop's front as one visitor photographs it (EXIF: capture time within this visit, own camera)."""
    taken = (datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)).astimezone(CST)
    return photos.camera_jpeg(photos.storefront(seed, visit), taken, camera=camera)


def _evidence(client, headers, evidence_id):
    return client.get(f"/v1/evidence/{evidence_id}", headers=headers).json()


def test_same_storefront_by_another_worker_and_camera_is_a_note_not_a_duplicate(client, db):
    _, c1, w1, _ = _visit(client, db)
    _, c2, w2, m2 = _visit(client, db)
    assert upload(client, c1, w1, _shot(4242, 1, 100, ("Xiaomi", "Redmi Note 12", "SN-A"))).status_code == 201
    process_all(db)
    risk_before = db.get(Claim, c2["id"]).risk_score
    r = upload(client, c2, w2, _shot(4242, 2, 5, ("HUAWEI", "nova 11", "SN-B")))
    process_all(db)
    ev2 = _evidence(client, w2, r.json()["id"])
    assert "same_scene" in ev2["reasons"] and not any("duplicate" in x for x in ev2["reasons"])
    assert [m["verdict"] for m in ev2["matches"]] == ["same_scene"] and ev2["matches"][0]["method"].startswith("scene:")
    claim2, claim1 = db.get(Claim, c2["id"]), db.get(Claim, c1["id"])
    assert "duplicate_evidence" not in claim2.flags and "same_scene" not in claim2.flags
    assert claim2.risk_score == risk_before
    assert "evidence_reused_later" not in claim1.flags
    assert "serial" not in (ev2["exif"] or {})  # a device identifier: kept for the rule, never shown
    # The other merchant's photo of the place is no evidence against this claim: not shown to this merchant.
    other = client.get(f"/v1/evidence/{ev2['id']}/matches/{ev2['matches'][0]['matched_evidence_id']}/image", headers=m2)
    assert other.status_code == 404
    _, ops = auth_for(client, db, "ops")
    assert client.get(f"/v1/evidence/{ev2['id']}/matches/{ev2['matches'][0]['matched_evidence_id']}/image",
                      headers=ops).status_code == 200


def test_a_task_asking_for_a_fresh_angle_counts_same_scene_against_the_claim(client, db):
    _, c1, w1, _ = _visit(client, db)
    task, c2, w2, _ = _visit(client, db, evidence={"photos_min": 1, "video": False, "fresh_angle": True})
    assert task["evidence"]["fresh_angle"] is True
    upload(client, c1, w1, _shot(777, 1, 90, ("OPPO", "Reno10", "SN-C")))
    process_all(db)
    before = db.get(Claim, c2["id"]).risk_score
    upload(client, c2, w2, _shot(777, 2, 3, ("vivo", "S17", "SN-D")))
    upload(client, c2, w2, _shot(777, 3, 2, ("vivo", "S17", "SN-D")))  # a second such photo weighs nothing more
    process_all(db)
    claim2 = db.get(Claim, c2["id"])
    assert "same_scene" in claim2.flags and "duplicate_evidence" not in claim2.flags
    assert claim2.risk_score == min(100, before + 25)


def test_cropped_and_screenshotted_reuses_are_still_duplicates(client, db):
    _, c1, w1, _ = _visit(client, db)
    original = _shot(31337, 1, 60, ("HONOR", "X50", "SN-E"))
    upload(client, c1, w1, original)
    process_all(db)
    img = Image.open(io.BytesIO(original))
    for how in ("crop5", "screenshot_letterbox", "screenshot_statusbar", "screenshot_rounded"):
        _, c, w, _ = _visit(client, db)
        r = upload(client, c, w, jpeg(TRANSFORMS[how](img)))
        process_all(db)
        ev = _evidence(client, w, r.json()["id"])
        assert "duplicate_evidence" in ev["reasons"], (how, ev)
        assert "duplicate_evidence" in db.get(Claim, c["id"]).flags, how
        assert ev["matches"] and all(m["verdict"] == "same_capture" for m in ev["matches"]), how


def test_pixels_go_first_to_pairs_only_pixels_can_decide(client, db, monkeypatch):
    """A much-photographed place: with room for one pixel check, it goes to the EXIF-less copy (only pixels can
    clear it); the EXIF-carrying shot is decided by EXIF. Spent the other way, the copy would fall back to the
    hash rule and flag an honest photo."""
    monkeypatch.setattr(pairs, "MAX_PIXEL_CHECKS", 1)
    _, c1, w1, _ = _visit(client, db)
    first = _shot(5151, 1, 100, ("OPPO", "Reno10", "SN-F"))
    upload(client, c1, w1, first)
    _, c2, w2, _ = _visit(client, db)
    upload(client, c2, w2, jpeg(TRANSFORMS["crop5"](Image.open(io.BytesIO(first)))))  # someone re-used it, EXIF gone
    process_all(db)
    _, c3, w3, _ = _visit(client, db)
    r = upload(client, c3, w3, _shot(5151, 2, 5, ("vivo", "S17", "SN-G")))
    process_all(db)
    ev = _evidence(client, w3, r.json()["id"])
    assert len(ev["matches"]) == 2 and {m["verdict"] for m in ev["matches"]} == {"same_scene"}, ev["matches"]
    assert "duplicate_evidence" not in db.get(Claim, c3["id"]).flags


def _shot_and_its_copy(client, db, scene: int, seed: int, camera: tuple[str, str, str], transform: str) -> dict:
    """One visitor's shot of a shop (its own claim), then a re-user's EXIF-less copy of it (``transform``) on
    another claim, both processed: the copy is flagged. Returns the copy's claim."""
    _, c1, w1, _ = _visit(client, db)
    first = _shot(scene, seed, 100, camera)
    upload(client, c1, w1, first)
    _, c2, w2, _ = _visit(client, db)
    upload(client, c2, w2, photos.reuse(first, transform))
    process_all(db)
    assert "duplicate_evidence" in db.get(Claim, c2["id"]).flags
    return c2


@pytest.mark.parametrize("receipt", [True, False])
def test_a_copy_of_another_visitors_photo_is_not_the_source_of_a_new_shot(client, db, receipt):
    """xidan-0081 in the 2026-11-29 22:33Z simulated day (seeds as sim.agents makes them): w0186's shot, w0049's
    EXIF-less screenshot of it on another claim, then w0148's own shot through the in-app camera. The new shot
    shares 0.967 of its fine detail with the screenshot (0.954 with the shot itself), past the receipt's 0.95: by
    pixels alone a copy. It is another exposure than the photo the screenshot was made from (EXIF, receipt), so it
    is another exposure than the screenshot too; the screenshot stays the duplicate. Without a receipt EXIF alone
    (which anyone can rewrite) does not clear it: the pixels decide, and 0.967 (0.954 with the photo itself, past
    EXIF's 0.95) is a copy."""
    xidan = zlib.crc32(b"xidan-0081")
    c2 = _shot_and_its_copy(client, db, xidan, 700_207_002, ("Xiaomi", "Redmi Note 12", "SN-186"), "screenshot")
    task, c3, w3, _ = claimed(client, db)
    ci = client.post(f"/v1/claims/{c3['id']}/checkins", json=fix(STORE[0] + 0.0003, STORE[1]), headers=w3).json()
    shot = _shot(xidan, 700_169_005, 0, ("Apple", "iPhone 13", "SN-148"))
    form = {"capture_receipt": json.dumps({"nonce": ci["capture_nonce"], "captured_at": now().isoformat()})}
    r = client.post(f"/v1/claims/{c3['id']}/evidence", files={"file": ("p.jpg", shot, "image/jpeg")}, headers=w3,
                    data=form if receipt else {})
    assert r.status_code == 201 and r.json()["capture_verified"] is receipt, r.text
    process_all(db)
    verdicts = {m["verdict"] for m in _evidence(client, w3, r.json()["id"])["matches"]}
    assert "duplicate_evidence" in db.get(Claim, c2["id"]).flags
    if receipt:
        assert verdicts == {"same_scene"} and "duplicate_evidence" not in db.get(Claim, c3["id"]).flags
    else:
        assert "same_capture" in verdicts and "duplicate_evidence" in db.get(Claim, c3["id"]).flags


def test_a_gallery_shot_is_not_a_copy_of_a_screenshot_of_another_visitors_shot(client, db):
    """guomao-0091 in the 2026-11-30 02:37Z simulated day (seeds as sim.agents makes them): w0183's shot (evidence
    197), w0059's EXIF-less status-bar screenshot of it on another claim (366), then w0163's own shot from the
    gallery, without a receipt (1869). The shot shares 0.869 of its fine detail with the small screenshot, by pixels
    alone a copy, but only 0.592 with the photo the screenshot was made from: clearly another exposure than that
    photo (pixels, not EXIF), so another exposure than its copy too. The screenshot stays the duplicate."""
    guomao = zlib.crc32(b"guomao-0091")
    c2 = _shot_and_its_copy(client, db, guomao, 700_204_001, ("Apple", "iPhone 13", "SN00700204"),
                            "screenshot_statusbar")
    _, c3, w3, _ = _visit(client, db)
    r = upload(client, c3, w3, _shot(guomao, 700_184_007, 0, ("HONOR", "X50", "SN00700184")))
    assert r.status_code == 201 and r.json()["capture_verified"] is False, r.text
    process_all(db)
    verdicts = {m["verdict"] for m in _evidence(client, w3, r.json()["id"])["matches"]}
    assert verdicts == {"same_scene"} and "duplicate_evidence" not in db.get(Claim, c3["id"]).flags
    assert "duplicate_evidence" in db.get(Claim, c2["id"]).flags


def test_a_stored_files_keypoints_are_found_once_per_process_and_decide_the_same(client, db, monkeypatch):
    """evidence.pairs.kept_photo: the third photo of a shop is compared with the two before it without loading
    either again (the second's Photo was kept when it was the new file); with nothing kept, the same verdicts.
    Bounded: an LRU of KEPT_PHOTOS."""
    from evidence import pairs

    def third_visit_verdicts(seed: int) -> list[str]:
        for n in range(3):
            _, c, w, _ = _visit(client, db)
            r = upload(client, c, w, _shot(seed, n + 1, 100 - 40 * n, ("Xiaomi", "Redmi Note 12", f"SN-{n}")))
            process_all(db)
        return sorted(m["verdict"] for m in _evidence(client, w, r.json()["id"])["matches"])

    kept_photo = pairs.kept_photo
    assert kept_photo.cache_info().maxsize == pairs.KEPT_PHOTOS
    kept_photo.cache_clear()
    kept = third_visit_verdicts(5151)
    assert kept_photo.cache_info().hits >= 2, kept_photo.cache_info()
    # The LRU keeps Photos only: the working image a job handed over is taken off every key it keeps.
    import gc
    keys = [k for k in gc.get_objects() if isinstance(k, pairs._Kept)]
    assert keys and all(k.grey is None for k in keys)
    # Nothing kept: every stored file loaded and its keypoints found again.
    monkeypatch.setattr(pairs, "kept_photo", pairs.load_photo)
    kept_photo.cache_clear()
    assert third_visit_verdicts(5252) == kept == ["same_scene", "same_scene"]
    assert kept_photo.cache_info().hits == 0 and kept_photo.cache_info().currsize == 0


def _shop_photos(client, db, seed: int, count: int, after=None) -> tuple[list[int], dict]:
    """``count`` visitors' photos of one shop, each from its own claim, uploaded and processed in turn (``after(n)``
    after the n-th); their evidence ids and the last visitor's headers."""
    uploaded, w = [], {}
    for n in range(count):
        _, c, w, _ = _visit(client, db)
        r = upload(client, c, w, _shot(seed, n + 1, 100 - 40 * n, ("Xiaomi", "Redmi Note 12", f"SN-{n}")))
        uploaded.append(r.json()["id"])
        process_all(db)
        if after is not None:
            after(n)
    return uploaded, w


def test_keypoints_are_found_once_in_the_services_life_and_read_back_by_any_process(client, db, monkeypatch):
    """evidence.pairs.kept_photo beyond one process's LRU: a file's keypoints, once found, are kept in the store
    (pairs.features_key) and read back, so a process that has not kept the file (another worker, or this one
    after the LRU let it go) runs ORB only for the new file and decides as if it had found them itself."""
    from evidence import features
    from evidence.storage import get_store

    found = []
    orb = features.keypoints
    monkeypatch.setattr(features, "keypoints", lambda grey: found.append(grey.shape) or orb(grey))

    def after(n: int) -> None:
        if n == 1:
            assert len(found) == 2  # the second photo and the first (compared with it): each found once
            pairs.kept_photo.cache_clear()  # as another process sees it, or this one once the LRU let both go
            found.clear()

    uploaded, w = _shop_photos(client, db, 5353, 3, after)
    assert len(found) == 1, found  # only the third photo's own: the two stored files' came from the store
    store = get_store()
    assert all(store.exists(pairs.features_key(db.get(Evidence, i).sha256)) for i in uploaded)
    verdicts = sorted(m["verdict"] for m in _evidence(client, w, uploaded[-1])["matches"])
    assert verdicts == ["same_scene", "same_scene"]


def test_a_damaged_keypoint_file_is_replaced_by_the_process_that_finds_it(client, db):
    """A keypoint file that is not one of its photo (cut short, another format) costs ORB once: the process that
    reads it finds the keypoints again and writes them over it, so the next reader gets them."""
    from evidence.features import Photo
    from evidence.hashing import load_grey
    from evidence.storage import get_store, working_image_bytes

    store, damaged = get_store(), []

    def after(n: int) -> None:
        if n == 0:  # the first photo, just processed: its keypoints file made damaged, and no process keeps it
            sha = db.scalar(select(Evidence.sha256).order_by(Evidence.id.desc()).limit(1))
            store.put(pairs.features_key(sha), b"not a features file", replace=True)
            damaged.append(sha)
            pairs.kept_photo.cache_clear()

    uploaded, w = _shop_photos(client, db, 5555, 2, after)
    sha = damaged[0]
    assert db.get(Evidence, uploaded[0]).sha256 == sha
    grey = load_grey(working_image_bytes(sha))
    assert Photo.with_features(grey, store.get(pairs.features_key(sha))) is not None  # a real features file again
    assert [m["verdict"] for m in _evidence(client, w, uploaded[-1])["matches"]] == ["same_scene"]


def test_a_store_that_cannot_keep_or_serve_keypoints_costs_orb_not_the_job(client, db, monkeypatch):
    """The features file is a cache: when the store fails to read or write it, the file is compared all the same
    (its keypoints found again) and decided as before."""
    from evidence.storage import get_store

    store_type = type(get_store())
    real_get, real_put, real_exists = store_type.get, store_type.put, store_type.exists

    def get(self, key):
        if "-orb-" in key:
            raise OSError("store unavailable")
        return real_get(self, key)

    def put(self, key, data, **kw):
        if "-orb-" in key:
            raise OSError("store unavailable")
        return real_put(self, key, data, **kw)

    monkeypatch.setattr(store_type, "get", get)
    monkeypatch.setattr(store_type, "put", put)
    monkeypatch.setattr(store_type, "exists", lambda self, key: "-orb-" in key or real_exists(self, key))
    pairs.kept_photo.cache_clear()
    uploaded, w = _shop_photos(client, db, 5454, 2)
    assert db.get(Evidence, uploaded[-1]).state == "processed"
    assert [m["verdict"] for m in _evidence(client, w, uploaded[-1])["matches"]] == ["same_scene"]


# ---- the fresh-angle weight is added once per claim, however many of its photos are processed at once ----------

LIMITS = {"FIELDPROOF_RATE_LIMIT_PER_MINUTE_USER": "100000", "FIELDPROOF_RATE_LIMIT_PER_MINUTE_IP": "100000",
          "FIELDPROOF_LOGIN_PER_IP_PER_MINUTE": "100000", "FIELDPROOF_LOGIN_PER_MINUTE_TOTAL": "100000"}


@pytest.fixture(scope="module")
def server(test_database):
    from tests.live import live_server

    with live_server("samescene", LIMITS) as srv:
        yield srv


def _headers(server, role: str) -> dict:
    with server.session() as s:
        user = accounts.create(db_session=s, username=unique(f"ss_{role}"), password=PASSWORD, role=role,
                               self_service=False)
    with server.http() as c:
        r = c.post("/v1/auth/token", data={"username": user.username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _checked_in_claim(server, merchant: dict, ops: dict, **task_over) -> tuple[dict, dict]:
    worker = _headers(server, "worker")
    with server.http() as c:
        task = publish_approved(c, task_body(**task_over), merchant, ops)
        claim = c.post(f"/v1/tasks/{task['id']}/claims", headers=worker).json()
        r = c.post(f"/v1/claims/{claim['id']}/checkins", json=fix(STORE[0] + 0.0003, STORE[1]), headers=worker)
        assert r.status_code == 201, r.text
    return claim, worker


def _upload(server, claim: dict, worker: dict, data: bytes) -> int:
    with server.http() as c:
        r = c.post(f"/v1/claims/{claim['id']}/evidence", files={"file": ("p.jpg", data, "image/jpeg")}, headers=worker)
        assert r.status_code == 201, r.text
        return r.json()["id"]


def _job_of(server, evidence_id: int) -> int:
    with server.session() as s:
        return s.scalar(select(jobs.Job.id).where(jobs.Job.kind == "evidence.process",
                                                  jobs.Job.payload["evidence_id"].as_integer() == evidence_id))


def _funded_merchant(server) -> tuple[dict, dict]:
    merchant, ops = _headers(server, "merchant"), _headers(server, "ops")
    with server.http() as c:
        for purpose, amount in (("security_deposit", 10_000), ("available", 1_000_000)):
            assert c.post("/v1/me/deposits", json={"amount_fen": amount, "purpose": purpose},
                          headers=merchant).status_code == 201
    return merchant, ops


def _run_at_one_barrier(server, job_ids: list[int]) -> list[str]:
    """Each job in its own session and thread, released together."""
    barrier = threading.Barrier(len(job_ids))

    def run(job_id: int) -> str:
        with server.session() as s:
            s.execute(select(1))  # connected before the barrier
            barrier.wait(timeout=60)
            return jobs.run(db_session=s, job_id=job_id)

    with ThreadPoolExecutor(len(job_ids)) as pool:
        return list(pool.map(run, job_ids))


def test_parallel_processing_adds_the_fresh_angle_weight_once(server):
    merchant, ops = _funded_merchant(server)
    first, w1 = _checked_in_claim(server, merchant, ops)
    ref = _upload(server, first, w1, _shot(9090, 1, 100, ("Xiaomi", "Redmi Note 12", "SN-P")))
    with server.session() as s:
        assert jobs.run(db_session=s, job_id=_job_of(server, ref)) == "done"
    claim, w2 = _checked_in_claim(server, merchant, ops, evidence={"photos_min": 1, "video": False, "fresh_angle": True})
    ids = [_upload(server, claim, w2, _shot(9090, v, 10 - v, ("vivo", "S17", "SN-Q"))) for v in (2, 3, 4, 5)]
    job_ids = [_job_of(server, i) for i in ids]
    with server.session() as s:
        before = s.get(Claim, claim["id"]).risk_score
    assert _run_at_one_barrier(server, job_ids) == ["done"] * len(job_ids)
    with server.session() as s:
        after = s.get(Claim, claim["id"])
        assert after.risk_score == min(100, before + 25) and "same_scene" in after.flags
        reasons = s.scalars(select(Evidence.reasons).where(Evidence.id.in_(ids))).all()
    assert all("same_scene" in r and "duplicate_evidence" not in r for r in reasons), reasons


def test_copies_processed_at_once_pair_each_other_exactly_once(server):
    """Four claims' copies of one photo (the original, resized, cropped, a WeChat re-encode; no EXIF, so pixels
    decide) processed at one barrier: the pixel checks of the files processed before run outside the duplicate
    search lock, yet each of the 6 pairs is found once, by the later of its two (12 match rows: both ways), and
    the three later copies are duplicates."""
    merchant, ops = _funded_merchant(server)
    original = photos.storefront(7171, 1)
    copies = [jpeg(original), jpeg(TRANSFORMS["resize"](original)), jpeg(TRANSFORMS["crop_centre"](original)),
              jpeg(TRANSFORMS["wechat"](original))]
    ids = []
    for data in copies:
        claim, worker = _checked_in_claim(server, merchant, ops)
        ids.append(_upload(server, claim, worker, data))
    job_ids = [_job_of(server, i) for i in ids]
    assert _run_at_one_barrier(server, job_ids) == ["done"] * len(job_ids)
    with server.session() as s:
        rows = s.execute(select(EvidenceMatch.evidence_id, EvidenceMatch.matched_evidence_id)
                         .where(EvidenceMatch.evidence_id.in_(ids))).all()
        reasons = dict(s.execute(select(Evidence.id, Evidence.reasons).where(Evidence.id.in_(ids))).all())
    assert sorted(rows) == sorted((a, b) for a in ids for b in ids if a != b)
    dup = [i for i in ids if "duplicate_evidence" in reasons[i]]
    assert len(dup) == 3 and all("evidence_reused_later" in reasons[i] for i in ids if i not in dup), reasons


def test_a_copy_processed_between_the_rounds_is_found_under_the_lock(server, monkeypatch):
    """The window the two rounds open: the original's job runs to completion after the copy's first round (which
    so cannot see it) and before the copy's job takes the lock. The copy's round under the lock finds it, once,
    and the copy is the duplicate."""
    merchant, ops = _funded_merchant(server)
    # Another shop's photo processed first, so the copy's first round searches an index with hashes in it and its
    # round under the lock searches only the hashes added since (pairs.Finder.searched).
    claim, worker = _checked_in_claim(server, merchant, ops)
    with server.session() as s:
        job = _job_of(server, _upload(server, claim, worker, jpeg(photos.storefront(7373, 1))))
        assert jobs.run(db_session=s, job_id=job) == "done"
    original = photos.storefront(7272, 1)
    ids = []
    for data in (jpeg(original), jpeg(TRANSFORMS["resize"](original))):
        claim, worker = _checked_in_claim(server, merchant, ops)
        ids.append(_upload(server, claim, worker, data))
    first_id, copy_id = ids
    first_job, copy_job = _job_of(server, first_id), _job_of(server, copy_id)
    real_find, rounds, searched = pairs.Finder.find, [], []

    def find(self, db_session):
        found = real_find(self, db_session)
        if self.ev.id == copy_id:
            searched.append(self.searched[1])
            rounds.append([p.other_id for p in found])
            if len(rounds) == 1:  # between the copy's first round and its lock: the original is processed
                with ThreadPoolExecutor(1) as pool, server.session() as s:
                    assert pool.submit(jobs.run, db_session=s, job_id=first_job).result() == "done"
        return found

    monkeypatch.setattr(pairs.Finder, "find", find)
    with server.session() as s:
        assert jobs.run(db_session=s, job_id=copy_job) == "done"
    assert rounds == [[], [first_id]]
    assert searched[0] < searched[1], searched  # the second round started where the first stopped
    with server.session() as s:
        rows = s.execute(select(EvidenceMatch.evidence_id, EvidenceMatch.matched_evidence_id)
                         .where(EvidenceMatch.evidence_id.in_(ids))).all()
        reasons = dict(s.execute(select(Evidence.id, Evidence.reasons).where(Evidence.id.in_(ids))).all())
    assert sorted(rows) == sorted([(first_id, copy_id), (copy_id, first_id)])
    assert "duplicate_evidence" in reasons[copy_id] and "evidence_reused_later" in reasons[first_id], reasons


def test_a_processor_that_stops_holding_the_lock_does_not_stall_the_others(server, monkeypatch):
    """A worker frozen (or cut off) while it holds the duplicate-search lock, its connection still open: every other
    processor waited on the lock for as long as it stayed frozen (a probe: 3 minutes, until it was resumed). Now its
    session ends once it has been idle in the job's transaction for evidence_idle_in_transaction_s, the lock goes
    with it, and the next file is processed while the frozen one still sleeps; the frozen file's job failed, and is
    done on its retry."""
    from core.config import get_settings

    monkeypatch.setattr(get_settings(), "evidence_idle_in_transaction_s", 2.0)
    merchant, ops = _funded_merchant(server)
    ids = []
    for seed in (7474, 7575):
        claim, worker = _checked_in_claim(server, merchant, ops)
        ids.append(_upload(server, claim, worker, jpeg(photos.storefront(seed, 1))))
    frozen_id, next_id = ids
    holding, woke = threading.Event(), threading.Event()
    real_record = evidence_service._record_matches

    def record(db_session, ev, found):
        if ev.id == frozen_id:  # under the lock, between two statements: the process stops here
            holding.set()
            threading.Event().wait(20)
            woke.set()
        return real_record(db_session, ev, found)

    monkeypatch.setattr(evidence_service, "_record_matches", record)

    def run(evidence_id: int) -> str:
        with server.session() as s:
            try:
                return jobs.run(db_session=s, job_id=_job_of(server, evidence_id))
            except Exception as exc:  # noqa: BLE001 - the frozen one's session was ended under it
                return type(exc).__name__

    with ThreadPoolExecutor(2) as pool:
        frozen = pool.submit(run, frozen_id)
        assert holding.wait(60), "the first job never took the lock"
        assert pool.submit(run, next_id).result(timeout=60) == "done"
        assert not woke.is_set(), "the next file waited for the frozen processor to wake"
        assert frozen.result(timeout=60) != "done"
    with server.session() as s:
        states = dict(s.execute(select(Evidence.id, Evidence.state).where(Evidence.id.in_(ids))).all())
        assert states == {frozen_id: "received", next_id: "processed"}
        failed = s.get(jobs.Job, _job_of(server, frozen_id))
        assert failed.state == "pending" and "idle" in (failed.last_error or ""), failed.last_error
        s.execute(jobs.Job.__table__.update().where(jobs.Job.id == failed.id).values(leased_until=None))
        s.commit()
    monkeypatch.setattr(evidence_service, "_record_matches", real_record)
    assert run(frozen_id) == "done"
