"""`fieldproof evidence rehash`: stored photos' hashes brought up to the current hashing, on real PostGIS."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

from PIL import Image
from sqlalchemy import select, update

from evidence import rehash
from evidence.hashing import ImageHashes, to_signed
from evidence.models import Evidence, EvidenceHash, EvidenceMatch
from tests.evidence_transforms import jpeg, watermark_band
from tests.test_evidence_api import PHOTOS, checked_in, process_all, upload

STALE = 0x0123456789ABCDEF  # a hash no photo here comes near: what an older hashing could have stored


def _stored(client, db, data: bytes) -> Evidence:
    _, claim, w, _ = checked_in(client, db)
    r = upload(client, claim, w, data)
    assert r.status_code == 201, r.text
    process_all(db)
    return db.get(Evidence, r.json()["id"])


def _make_stale(db, ev: Evidence) -> None:
    """As if hashed by an older hashing: other hashes in ``hashes`` and in the index's rows (the full frame's
    texture kept, so the comparison runs on hashes, not on the low-texture rule)."""
    old = ImageHashes.from_dict(ev.hashes["frames"][0])
    ev.hashes = {"frames": [ImageHashes({k: STALE ^ i for i, k in enumerate(old.phash)},
                                        {k: STALE for k in old.dhash}, old.texture).to_dict()]}
    db.execute(update(EvidenceHash).where(EvidenceHash.evidence_id == ev.id).values(phash=to_signed(STALE)))
    db.commit()


def test_rehash_replaces_stale_hashes_so_a_later_copy_is_caught_and_a_second_run_changes_nothing(client, db):
    original = (PHOTOS / "chelsea.jpg").read_bytes()
    ev = _stored(client, db, original)
    current = ev.hashes
    _make_stale(db, ev)
    # With the stale hashes, a re-use of the photo is not found.
    copy = jpeg(watermark_band(Image.open(io.BytesIO(original))))
    first = _stored(client, db, copy)
    assert "duplicate_evidence" not in first.reasons

    done = list(rehash.rehash_all(db, after_id=ev.id - 1))
    assert sum(p.changed for p in done) == 1 and not any(p.failed for p in done)  # the copy's own are current
    db.expire_all()
    assert db.get(Evidence, ev.id).hashes == current
    rows = set(db.scalars(select(EvidenceHash.phash).where(EvidenceHash.evidence_id == ev.id)))
    assert rows == {to_signed(int(h, 16)) for h in current["frames"][0]["phash"].values()}
    # Now a re-use of it is caught against the original (the index is built from the replaced rows).
    second = _stored(client, db, jpeg(watermark_band(Image.open(io.BytesIO(original))), 80))
    assert "duplicate_evidence" in second.reasons
    assert ev.id in set(db.scalars(select(EvidenceMatch.matched_evidence_id)
                                   .where(EvidenceMatch.evidence_id == second.id)))
    assert sum(p.changed for p in rehash.rehash_all(db, after_id=ev.id - 1)) == 0


def test_rehash_names_files_it_cannot_read_and_goes_on(client, db):
    unreadable = _stored(client, db, (PHOTOS / "chelsea.jpg").read_bytes())
    fine = _stored(client, db, sorted(PHOTOS.glob("*.jpg"))[1].read_bytes())
    _make_stale(db, fine)
    unreadable.sha256 = "0" * 64  # nothing stored under it
    db.commit()
    done = list(rehash.rehash_all(db, after_id=unreadable.id - 1, batch=1))
    assert [p.checked for p in done] == [1, 1]
    assert [p.failed for p in done] == [[unreadable.id], []] and [p.changed for p in done] == [0, 1]
    assert rehash.remaining(db, done[-1].last_id) == 0


def test_rehash_command_reports_progress_and_a_json_summary(connection):
    env = dict(os.environ)  # the test database (conftest)
    out = subprocess.run([sys.executable, "-m", "api.cli", "evidence", "rehash", "--after-id", str(2**62)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == {"checked": 0, "changed": 0, "failed": [], "last_id": 2**62}
    bad = subprocess.run([sys.executable, "-m", "api.cli", "evidence", "rehash", "--batch", "0"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and "at least 1" in bad.stderr
