"""The evidence store's contract, on both backends: the local directory and a real S3 server (moto_server)."""
from __future__ import annotations

import hashlib
import os
import time

import pytest

from core.config import get_settings
from evidence.errors import FileTooLarge
from evidence.storage import get_if_stored, get_store


def test_put_get_exists_and_missing(any_store):
    store = get_store()
    assert not store.exists("ab" * 32)
    with pytest.raises(FileNotFoundError):
        store.get("ab" * 32)
    store.put("ab" * 32, b"bytes")
    store.put("ab" * 32, b"bytes")  # content-addressed: a second write changes nothing
    assert store.exists("ab" * 32) and store.get("ab" * 32) == b"bytes"
    assert any_store.stored() == ["ab" * 32]
    assert get_if_stored(store, "ab" * 32) == b"bytes" and get_if_stored(store, "cd" * 32) is None
    store.put("ab" * 32 + "-orb-1", b"damaged")
    store.put("ab" * 32 + "-orb-1", b"found again", replace=True)  # a derived file found damaged is written over
    assert store.get("ab" * 32 + "-orb-1") == b"found again"


@pytest.mark.parametrize("key", ["", "../etc/passwd", "AB" * 32, "-x", "a/b", "ab\x00"])
def test_keys_not_made_by_us_are_refused(any_store, key):
    with pytest.raises(ValueError):
        get_store().exists(key)


def test_staged_upload_is_stored_under_its_hash_and_leaves_no_spool(any_store):
    store = get_store()
    staged = store.stage(max_bytes=100)
    staged.write(b"abc")
    staged.write(b"def")
    assert staged.finish() == hashlib.sha256(b"abcdef").hexdigest()
    staged.keep()
    assert store.get(staged.sha256) == b"abcdef"
    again = store.stage(max_bytes=100)  # the same content again: the stored blob stays, the copy goes
    again.write(b"abcdef")
    again.keep()
    assert any_store.stored() == [staged.sha256] and any_store.spooled() == []


def test_over_the_cap_and_discarded_uploads_leave_nothing(any_store):
    store = get_store()
    staged = store.stage(max_bytes=10)
    staged.write(b"0123456789")
    with pytest.raises(FileTooLarge):
        staged.write(b"x")
    dropped = store.stage(max_bytes=10)
    dropped.write(b"abc")
    dropped.discard()
    assert any_store.stored() == [] and any_store.spooled() == []


def test_large_upload_goes_to_s3_as_a_multipart_upload(s3_store, monkeypatch):
    """Above one part (5 MiB here) the file is sent in parts read from the spool file, not held whole: S3 gives a
    multipart object an ETag ending in "-<parts>"."""
    monkeypatch.setattr(get_settings(), "s3_part_mib", 5)
    store = get_store()
    data = os.urandom(12 * 2**20)
    staged = store.stage(max_bytes=len(data))
    for i in range(0, len(data), 256 * 1024):
        staged.write(data[i:i + 256 * 1024])
    staged.keep()
    head = store.client.head_object(Bucket=store.bucket, Key=store.object_key(staged.sha256))
    assert head["ETag"].strip('"').endswith("-3") and head["ContentLength"] == len(data)
    assert store.get(staged.sha256) == data and s3_store.spooled() == []


def test_sweep_removes_abandoned_uploads_only(any_store):
    """A spool file whose process died goes after the cut-off; one still arriving and stored blobs stay. On S3 a
    multipart upload a crashed API left unfinished is aborted too."""
    store = get_store()
    store.put("cd" * 32, b"kept evidence")
    dead, live = store.stage(max_bytes=1000), store.stage(max_bytes=1000)
    dead.write(b"half a photo")
    live.write(b"still coming")
    old = time.time() - 7200
    os.utime(dead.path, (old, old))
    expected = 1
    if any_store.kind == "s3":
        # moto dates every multipart upload in 2010, so this one counts as abandoned (real S3 gives its age).
        store.client.create_multipart_upload(Bucket=store.bucket, Key=store.object_key("ef" * 32))
        expected = 2
    assert store.sweep_incoming(3600) == expected
    assert not dead.path.exists() and live.path.exists() and store.exists("cd" * 32)
    if any_store.kind == "s3":
        left = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=any_store.prefix)
        assert left.get("Uploads", []) == []
    live.discard()


def test_s3_outage_is_a_503_error_not_a_crash(s3_store, monkeypatch):
    """An unreachable object store raises the 503 domain error (phones retry; Celery retries the job)."""
    from core.errors import ServiceUnavailable
    from core.localservices import free_port

    monkeypatch.setattr(get_settings(), "s3_endpoint_url", f"http://127.0.0.1:{free_port()}")  # nothing listens
    with pytest.raises(ServiceUnavailable) as exc:
        get_store().exists("ab" * 32)
    assert exc.value.code == "evidence_store_unavailable"


def test_s3_store_needs_a_bucket():
    from pydantic import ValidationError

    from core.config import Settings

    with pytest.raises(ValidationError, match="FIELDPROOF_S3_BUCKET"):
        Settings(evidence_store="s3", s3_bucket="")


def test_a_stored_file_and_its_new_directories_are_durable_before_put_returns(tmp_path, monkeypatch):
    """The file is fsynced, and so is every directory entry that names it: the key's directory (the rename) and
    the parent of each fan-out directory the put made. A crash after the upload was acknowledged loses nothing."""
    from evidence.storage import LocalBlobStore

    synced: list[str] = []
    real = os.fsync

    def record(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    store = LocalBlobStore(tmp_path / "store")
    key = hashlib.sha256(b"one").hexdigest()
    store.put(key, b"one")
    root = tmp_path / "store"
    where = root / key[:2] / key[2:4]
    assert {str(where), str(root / key[:2]), str(root), str(tmp_path)} <= set(synced)
    synced.clear()
    other = key[:4] + hashlib.sha256(b"two").hexdigest()[4:]  # same fan-out directories: only the rename's
    store.put(other, b"two")
    assert str(where) in synced and str(root) not in synced
    staged = store.stage(1 << 20)
    staged.write(b"three")
    synced.clear()
    staged.keep()
    assert str(root / staged.sha256[:2] / staged.sha256[2:4]) in synced
