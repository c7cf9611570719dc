"""The evidence flow through the API on both stores (local directory, real S3 server): upload, processing,
duplicates, served copies, and nothing left behind by refused uploads."""
from __future__ import annotations

import io

from PIL import Image

from evidence import pairs
from evidence.storage import get_store, working_image_key
from tests.evidence_transforms import jpeg, watermark_band
from tests.test_evidence_api import PHOTOS, checked_in, process_all, upload


def test_upload_process_and_duplicates_on_either_store(client, db, any_store, monkeypatch):
    pairs.kept_photo.cache_clear()  # so the stored file's keypoints are found here, and kept in this store
    _, c1, w1, _ = checked_in(client, db)
    _, c2, w2, m2 = checked_in(client, db)
    original = (PHOTOS / "chelsea.jpg").read_bytes()
    first = upload(client, c1, w1, original).json()
    # Processing reads what is stored without asking first (storage.get_if_stored: one GET, not a HEAD and a GET).
    asked = _existence_checks(monkeypatch)
    process_all(db)
    stamped = jpeg(watermark_band(Image.open(io.BytesIO(original))))
    second = upload(client, c2, w2, stamped).json()
    asked.clear()  # (an S3 upload asks whether its bytes are stored already: one HEAD per upload)
    read = _reads(monkeypatch)
    process_all(db)
    assert asked == []
    # The new file's working image is read once in its job: hashing and its pixel check share it.
    assert read.count(working_image_key(second["sha256"])) == 1, read
    assert read.count(working_image_key(first["sha256"])) == 1, read
    ev2 = client.get(f"/v1/evidence/{second['id']}", headers=w2).json()
    assert ev2["state"] == "processed" and "duplicate_evidence" in ev2["reasons"]
    assert ev2["matches"][0]["matched_evidence_id"] == first["id"]
    store = get_store()
    assert store.get(first["sha256"]) == original
    stored = set(any_store.stored())
    orb = {key for key in stored if "-orb-" in key}
    assert stored - orb == {first["sha256"], working_image_key(first["sha256"]),
                            second["sha256"], working_image_key(second["sha256"])}
    # The keypoints of the stored file the pixels were checked against (and the new file's, when the hashes matched
    # it upright) are kept beside them.
    assert pairs.features_key(first["sha256"]) in orb <= {pairs.features_key(x["sha256"]) for x in (first, second)}
    assert any_store.spooled() == []


def _reads(monkeypatch) -> list[str]:
    """The keys read from the store from now on."""
    read, store_type = [], type(get_store())
    monkeypatch.setattr(store_type, "get", lambda self, key, real=store_type.get: read.append(key) or
                        real(self, key))
    return read


def _existence_checks(monkeypatch) -> list[str]:
    """The keys the store is asked ``exists`` about from now on."""
    asked, store_type = [], type(get_store())
    monkeypatch.setattr(store_type, "exists", lambda self, key, real=store_type.exists: asked.append(key) or
                        real(self, key))
    return asked


def test_served_copies_are_stripped_made_once_and_stored(client, db, any_store, monkeypatch):
    _, claim, w, _ = checked_in(client, db)
    data = (PHOTOS / "camera.jpg").read_bytes()
    assert Image.open(io.BytesIO(data)).getexif()  # the original carries camera metadata
    ev = upload(client, claim, w, data).json()
    asked = _existence_checks(monkeypatch)  # a served copy is read, or made, without asking first
    thumb = client.get(f"/v1/evidence/{ev['id']}/image?size=thumb", headers=w)
    assert thumb.status_code == 200 and not Image.open(io.BytesIO(thumb.content)).getexif()
    key = f"{ev['sha256']}-preview-320"
    assert key in any_store.stored() and get_store().get(key) == thumb.content
    again = client.get(f"/v1/evidence/{ev['id']}/image?size=thumb", headers=w)
    assert again.content == thumb.content and asked == []


def test_refused_uploads_leave_nothing_in_either_store(client, db, any_store):
    _, claim, w, _ = checked_in(client, db)
    good = (PHOTOS / "camera.jpg").read_bytes()
    for bad in (good[:3000], good + b"PK\x03\x04" + b"\0" * 100, b""):
        assert upload(client, claim, w, bad).status_code == 422
    assert any_store.stored() == [] and any_store.spooled() == []


def test_processing_reads_the_working_image_from_s3(client, db, s3_store):
    """The worker hashes what the store holds, not a file on the API's disk: with the original's object
    overwritten by junk, processing still succeeds from the working image the API stored in S3."""
    from evidence.hashing import hash_image
    from evidence.models import Evidence

    _, claim, w, _ = checked_in(client, db)
    data = (PHOTOS / "grass.jpg").read_bytes()
    ev = upload(client, claim, w, data).json()
    get_store().put(ev["sha256"], b"gone")  # S3 overwrites: the original is unreadable now
    process_all(db)
    stored = db.get(Evidence, ev["id"])
    assert stored.state == "processed" and stored.hashes["frames"] == [hash_image(data).to_dict()]


def test_api_start_sweeps_its_own_hosts_spool(app, any_store):
    """With S3 the beat sweep runs on a worker host; the API host's leftovers go when its process starts."""
    import os
    import time

    from fastapi.testclient import TestClient

    spool = any_store.root / "incoming"
    spool.mkdir(parents=True, exist_ok=True)
    dead, live = spool / "up-dead", spool / "up-live"
    dead.write_bytes(b"half a photo")
    live.write_bytes(b"still coming")
    old = time.time() - 7 * 3600
    os.utime(dead, (old, old))
    with TestClient(app):
        pass
    assert any_store.spooled() == ["up-live"]


def test_upload_while_s3_is_down_is_a_503_and_leaves_nothing(client, db, s3_store, monkeypatch):
    from core.config import get_settings
    from core.localservices import free_port

    _, claim, w, _ = checked_in(client, db)
    live_endpoint = get_settings().s3_endpoint_url
    monkeypatch.setattr(get_settings(), "s3_endpoint_url", f"http://127.0.0.1:{free_port()}")  # nothing listens
    r = upload(client, claim, w, (PHOTOS / "camera.jpg").read_bytes(), key="k-s3-down")
    assert r.status_code == 503 and r.json()["code"] == "evidence_store_unavailable", r.text
    assert int(r.headers["Retry-After"]) > 0
    assert s3_store.spooled() == []
    monkeypatch.setattr(get_settings(), "s3_endpoint_url", live_endpoint)  # back: the phone's retry goes through
    again = upload(client, claim, w, (PHOTOS / "camera.jpg").read_bytes(), key="k-s3-down")
    assert again.status_code == 201, again.text
