"""Issue 15: uploads stream into the store (hashed and capped on the way, nothing left behind on refusal),
Idempotency-Key replays of streamed uploads, and the single decode whose working image processing hashes."""
from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image
from starlette.requests import Request

from core.config import get_settings
from evidence.errors import FileTooLarge
from evidence.hashing import grey_file, hash_image
from evidence.intake import inspect_upload
from evidence.models import Evidence
from evidence.storage import INCOMING, LocalBlobStore, get_store, working_image_key
from tests.test_evidence_api import PHOTOS, checked_in, process_all, upload

URL = "/v1/claims/{}/evidence"


@pytest.fixture
def store_dir(tmp_path, monkeypatch):
    """A store of this test's own, so what is left in it is this test's doing."""
    monkeypatch.setattr(get_settings(), "evidence_dir", tmp_path)
    return tmp_path


def files_in(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def leftovers(root) -> list[str]:
    return [p for p in files_in(root) if p.startswith(INCOMING)]


def test_staged_blob_over_the_cap_is_refused_and_removed(tmp_path):
    staged = LocalBlobStore(tmp_path).stage(max_bytes=10)
    staged.write(b"0123456789")
    with pytest.raises(FileTooLarge) as exc:
        staged.write(b"x")
    assert exc.value.code == "file_too_large"
    assert files_in(tmp_path) == []


def test_staged_blob_is_filed_under_its_sha256(tmp_path):
    import hashlib

    store = LocalBlobStore(tmp_path)
    staged = store.stage(max_bytes=100)
    staged.write(b"abc")
    staged.write(b"def")
    assert staged.finish() == hashlib.sha256(b"abcdef").hexdigest()
    staged.keep()
    assert store.get(staged.sha256) == b"abcdef" and leftovers(tmp_path) == []
    again = store.stage(max_bytes=100)  # the same content again: the stored blob stays, the copy goes
    again.write(b"abcdef")
    again.keep()
    assert store.get(staged.sha256) == b"abcdef" and leftovers(tmp_path) == []


def test_upload_over_the_cap_is_refused_as_before_and_leaves_nothing(client, db, store_dir, monkeypatch):
    data = (PHOTOS / "camera.jpg").read_bytes()
    monkeypatch.setattr(get_settings(), "max_upload_bytes", len(data) // 2)
    _, claim, w, _ = checked_in(client, db)
    r = upload(client, claim, w, data)  # with Content-Length: refused at the edge
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large", r.text

    def chunks():  # no Content-Length: refused while it streams, after part of the file was written
        boundary = b"b0undary"
        yield b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
        for i in range(0, len(data), 8192):
            yield data[i:i + 8192]
        yield b"\r\n--" + boundary + b"--\r\n"

    r = client.post(URL.format(claim["id"]), content=chunks(),
                    headers=dict(w, **{"Content-Type": "multipart/form-data; boundary=b0undary"}))
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large", r.text
    assert files_in(store_dir) == []


def test_refused_and_repeated_uploads_leave_no_temp_file(client, db, store_dir):
    _, claim, w, _ = checked_in(client, db)
    good = (PHOTOS / "camera.jpg").read_bytes()
    for bad in (good[:3000], good + b"PK\x03\x04" + b"\0" * 100, b""):
        assert upload(client, claim, w, bad).status_code == 422
    assert files_in(store_dir) == []
    first = upload(client, claim, w, good)
    again = upload(client, claim, w, good)  # the same file on the same claim: the same evidence, one blob
    assert first.status_code == again.status_code == 201 and first.json()["id"] == again.json()["id"]
    sha = first.json()["sha256"]
    assert leftovers(store_dir) == []
    assert get_store().get(sha) == good and get_store().exists(working_image_key(sha))


def test_malformed_forms_are_4xx_with_codes(client, db, store_dir):
    _, claim, w, _ = checked_in(client, db)
    url = URL.format(claim["id"])
    photo = (PHOTOS / "camera.jpg").read_bytes()
    r = client.post(url, json={"file": "x"}, headers=w)
    assert r.status_code == 422 and r.json()["code"] == "validation_error"
    r = client.post(url, data={"note": "no file"}, files={"other": ("a.jpg", photo)}, headers=w)
    assert r.status_code == 422 and r.json()["code"] == "validation_error"
    r = client.post(url, files=[("file", ("a.jpg", photo)), ("file", ("b.jpg", photo))], headers=w)
    assert r.status_code == 422 and r.json()["code"] == "malformed_multipart"
    r = client.post(url, content=b"--x\r\nnot a part", headers=dict(w, **{"Content-Type": "multipart/form-data"}))
    assert r.status_code == 422 and r.json()["code"] == "malformed_multipart"
    r = client.post(url, content=b"--x\r\nContent-Disposition: form-data; filename=\"a\"\r\n\r\nab\r\n--x--\r\n",
                    headers=dict(w, **{"Content-Type": "multipart/form-data; boundary=x"}))
    assert r.status_code == 422 and r.json()["code"] == "malformed_multipart"
    assert files_in(store_dir) == []


def test_replay_with_the_same_key_returns_the_first_result(client, db, store_dir):
    _, claim, w, _ = checked_in(client, db)
    photo, other = (PHOTOS / "rocket.jpg").read_bytes(), (PHOTOS / "coffee.jpg").read_bytes()
    first = upload(client, claim, w, photo, key="k-stream-1")
    process_all(db)  # the evidence changes after the first answer: a replay still returns that answer
    replay = upload(client, claim, w, photo, key="k-stream-1")
    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json() and replay.headers.get("Idempotent-Replayed") == "true"
    reused = upload(client, claim, w, other, key="k-stream-1")
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"
    assert len(client.get(f"/v1/claims/{claim['id']}/evidence", headers=w).json()) == 1
    assert leftovers(store_dir) == []


def test_a_record_stored_under_the_earlier_digest_is_still_replayed(client, db, store_dir):
    """An upload's digest takes its file by the SHA-256 taken as it arrived (no second read). A record stored by
    the release before (the file's bytes hashed into the digest) is replayed within its TTL all the same, and
    another file under that key is still refused."""
    import hashlib

    from sqlalchemy import text

    _, claim, w, _ = checked_in(client, db)
    photo, other = (PHOTOS / "rocket.jpg").read_bytes(), (PHOTOS / "coffee.jpg").read_bytes()
    first = upload(client, claim, w, photo, key="k-earlier-1")
    assert first.status_code == 201
    stored = db.execute(text("SELECT body_sha256 FROM idempotency_record WHERE key = 'k-earlier-1'")).scalar_one()
    assert stored == hashlib.sha256(b"file\0file sha256 " + hashlib.sha256(photo).hexdigest().encode() +
                                    b"\0").hexdigest()
    earlier = hashlib.sha256(b"file\0" + photo + b"\0").hexdigest()  # how the release before hashed this form
    db.execute(text("UPDATE idempotency_record SET body_sha256 = :d WHERE key = 'k-earlier-1'"), {"d": earlier})
    replay = upload(client, claim, w, photo, key="k-earlier-1")
    assert replay.status_code == 201 and replay.json() == first.json(), replay.text
    assert replay.headers.get("Idempotent-Replayed") == "true"
    reused = upload(client, claim, w, other, key="k-earlier-1")
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"
    assert leftovers(store_dir) == []


def _form_request(chunks: list[bytes]) -> Request:
    """A multipart request (boundary B) whose body arrives as ``chunks``, one receive() each."""
    chunks = list(chunks)

    async def receive():
        return {"type": "http.request", "body": chunks.pop(0) if chunks else b"", "more_body": len(chunks) > 0}

    return Request({"type": "http", "method": "POST", "path": "/", "query_string": b"",
                    "headers": [(b"content-type", b"multipart/form-data; boundary=B")]}, receive)


def test_streamed_digest_is_the_form_digest(tmp_path):
    """Replays recorded by either path compare equal: the streamed form hashes as api.idempotent hashes forms."""
    from api.idempotent import _digest
    from api.uploads import receive_form

    body = (b"--B\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
            b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n" + b"\xff" * 70_000 +
            b"\r\n--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nfirst\r\n--B--\r\n")

    def request() -> Request:
        return _form_request([body[i:i + 4096] for i in range(0, len(body), 4096)])

    store = LocalBlobStore(tmp_path)
    form = asyncio.run(receive_form(request(), file_field="file", stage=lambda: store.stage(10**6)))
    assert form.file.size == 70_000 and [n for n, _ in form.fields] == ["note", "a"]
    assert form.digest("file") == asyncio.run(_digest(request()))
    form.discard()
    assert files_in(tmp_path) == []


def test_a_body_in_small_pieces_is_written_in_batches(tmp_path, monkeypatch):
    """A weak signal delivers the body a few KiB at a time: the file is still hashed and written a batch at a
    time (one worker-thread hand-off each), and no more than a batch plus one piece is ever held."""
    import hashlib

    from api import uploads

    data = bytes(range(256)) * 4000 + b"tail"  # 1,024,004 bytes: 3 full batches and a rest
    body = (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n" + data +
            b"\r\n--B--\r\n")
    writes, hand_offs = [], []
    store = LocalBlobStore(tmp_path)

    def stage():
        staged = store.stage(10**7)
        real = staged.write
        staged.write = lambda chunk: (writes.append(len(chunk)), real(chunk))[1]
        return staged

    real_hand_off = uploads.run_in_threadpool
    monkeypatch.setattr(uploads, "run_in_threadpool", lambda fn, *a: (hand_offs.append(fn), real_hand_off(fn, *a))[1])
    request = _form_request([body[i:i + 1500] for i in range(0, len(body), 1500)])
    form = asyncio.run(uploads.receive_form(request, file_field="file", stage=stage))
    assert form.file.sha256 == hashlib.sha256(data).hexdigest() and form.file.size == len(data)
    assert sum(writes) == len(data) and len(writes) == 4, writes  # 684 pieces, 4 writes
    assert len(hand_offs) == 4
    assert max(writes) <= uploads.WRITE_BATCH + 1500
    form.discard()
    assert files_in(tmp_path) == []


def test_a_body_without_its_closing_boundary_is_malformed(tmp_path):
    """A body that stops cleanly after some file data (no closing boundary) is refused, not kept as a shorter
    file (python-multipart's finalize() does not check), and its spool file removed."""
    from api.uploads import MalformedMultipart, receive_form

    head = b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n" + b"\xff" * 5000
    complete = (head + b"\r\n--B--\r\n", head + b"\r\n--B--", head + b"\r\n--B--\r\nan epilogue")
    for body in (head, head + b"\r\n--B\r\n", head + b"\r\n--B", head + b"\r\n--B-", *complete):
        request = _form_request([body[i:i + 7] for i in range(0, len(body), 7)])
        store = LocalBlobStore(tmp_path)
        if body in complete:
            form = asyncio.run(receive_form(request, file_field="file", stage=lambda: store.stage(10**6)))
            assert form.file.size == 5000
            form.discard()
        else:
            with pytest.raises(MalformedMultipart):
                asyncio.run(receive_form(request, file_field="file", stage=lambda: store.stage(10**6)))
        assert files_in(tmp_path) == []


def test_working_image_gives_the_hashes_of_its_original():
    """Processing hashes the greyscale image intake's decode made: the same hashes as decoding the original."""
    buf = io.BytesIO()
    Image.open(PHOTOS / "chelsea.jpg").rotate(90, expand=True).save(buf, "PNG")
    rotated_exif = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated: the working image is upright like the hashes
    Image.open(PHOTOS / "coffee.jpg").save(rotated_exif, "JPEG", exif=exif)
    for data in [p.read_bytes() for p in sorted(PHOTOS.glob("*.jpg"))] + [buf.getvalue(), rotated_exif.getvalue()]:
        info = inspect_upload(data, max_bytes=25 << 20, max_pixels=50_000_000)
        ours, theirs = hash_image(grey_file(info.grey), with_variants=True), hash_image(data, with_variants=True)
        assert (ours.phash, ours.dhash, ours.texture, ours.variants) == \
            (theirs.phash, theirs.dhash, theirs.texture, theirs.variants)


def test_processing_hashes_the_working_image_not_the_original(client, db, store_dir):
    _, claim, w, _ = checked_in(client, db)
    data = (PHOTOS / "grass.jpg").read_bytes()
    ev = upload(client, claim, w, data).json()
    # Make the stored original unreadable: processing must not need it.
    get_store()._path(ev["sha256"]).write_bytes(b"gone")
    process_all(db)
    stored = db.get(Evidence, ev["id"])
    assert stored.state == "processed"
    assert stored.hashes["frames"] == [hash_image(data).to_dict()]


def test_dihedral_variants_equal_hashing_each_transposed_image():
    """The variants come from two resizes per region, not eight, and every hash of a file from one DCT and one
    bit packing over all its regions: bit for bit what imagehash gives for each region (pHash and dHash) and
    rotation/mirror, on the shipped photos, their transformed copies and images of random sizes and kinds."""
    import imagehash
    import numpy as np

    from evidence.hashing import DIHEDRAL, load_grey, regions, to_int
    from tests.evidence_transforms import TRANSFORMS, jpeg

    greys = [load_grey(p.read_bytes()) for p in sorted(PHOTOS.glob("*.jpg"))]
    greys += [load_grey(jpeg(f(Image.open(PHOTOS / "chelsea.jpg")))) for f in TRANSFORMS.values()]
    rng = np.random.default_rng(15)
    for i in range(60):
        w, h = int(rng.integers(16, 520)), int(rng.integers(16, 520))
        noise = rng.integers(0, 256, (h, w), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(noise[:6, :8]).resize((w, h), Image.Resampling.BICUBIC))
        greys.append(Image.fromarray(noise if i % 2 else smooth, "L"))
    for grey in greys:
        parts = regions(grey)
        expected = [{k: to_int(imagehash.phash(im if t is None else im.transpose(t))) for k, im in parts.items()}
                    for t in DIHEDRAL]
        hashed = hash_image(grey, with_variants=True)
        assert hashed.variants == expected and hashed.phash == expected[0]  # the identity is imagehash.phash too
        assert hashed.dhash == {k: to_int(imagehash.dhash(im)) for k, im in parts.items()}
        assert hashed.texture == float(np.asarray(parts["c64"].resize((64, 64)), dtype=np.float32).std())


def test_uploads_abandoned_by_a_crash_are_swept_and_live_ones_kept(store_dir):
    """A partial upload whose process died stays in incoming/ until the beat sweep removes it; one still
    arriving (recent mtime) and stored evidence are left alone."""
    import os
    import time

    from evidence.service import ABANDONED_UPLOAD_S, sweep_abandoned_uploads
    from workers.schedule import BEAT_SCHEDULE

    store = get_store()
    store.put("ab" * 32, b"kept evidence")
    dead, live = store.stage(max_bytes=1000), store.stage(max_bytes=1000)
    dead.write(b"half a photo")
    live.write(b"still coming")
    old = time.time() - ABANDONED_UPLOAD_S - 60
    os.utime(dead.path, (old, old))
    assert sweep_abandoned_uploads() == 1
    assert not dead.path.exists() and live.path.exists() and store.exists("ab" * 32)
    assert BEAT_SCHEDULE["sweep-abandoned-uploads"]["task"] == "fieldproof.sweep_abandoned_uploads"
    live.discard()
