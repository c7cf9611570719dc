"""Content-addressed blob storage (keys are sha256 hex digests, optionally suffixed: ``<sha>-grey``, ``<sha>-orb-<v>``).

Two backends behind one interface: ``LocalBlobStore`` (a private directory, the embedded default) and
``evidence.storage_s3.S3BlobStore`` (any S3-compatible object store, for API and workers on several hosts).
An upload is always staged in a local spool file first (hashed and capped as it streams): intake must read it
(type sniffing, decoding, polyglot checks) before it is accepted, and only an accepted file is kept.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from core.config import get_settings
from evidence.errors import FileTooLarge

INCOMING = "incoming"  # uploads being received; a file left here by a crash is never referenced
_KEY_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyz-_.")


def check_key(key: str) -> str:
    """The key itself, or ValueError: keys are made by us from hashes, never taken from a request."""
    if not key or key[0] in "-_." or any(c not in _KEY_CHARS for c in key):
        raise ValueError("invalid blob key")
    return key


class StagedBlob:
    """An upload written to a local spool file as it arrives: sha256 and size computed and the size cap enforced
    while it streams; ``keep`` hands it to the store under its hash, ``discard`` removes it."""

    def __init__(self, spool: Path, max_bytes: int, commit: Callable[["StagedBlob"], None]) -> None:
        self.max_bytes, self._commit = max_bytes, commit
        spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(dir=spool, prefix="up-")
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._sha = hashlib.sha256()
        self.size = 0
        self.sha256 = ""
        self.kept = False

    def write(self, chunk: bytes) -> None:
        """Append a chunk; over the cap the partial file is removed and the upload refused."""
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self.discard()
            raise FileTooLarge(f"The file is over {self.max_bytes} bytes, the limit.")
        self._sha.update(chunk)
        self._file.write(chunk)

    def finish(self) -> str:
        """The whole file has arrived: close it (cheap, no disk wait: fine on an event loop); returns its sha256."""
        if not self._file.closed:
            self._file.close()
        self.sha256 = self._sha.hexdigest()
        return self.sha256

    def keep(self) -> None:
        """Store the upload under its sha256 (an identical blob already there is kept instead), durably before it
        returns (a committed row may refer to it then): waits for disk or network, so call it from a thread."""
        self.sha256 or self.finish()
        self._commit(self)
        self.kept = True
        self.path.unlink(missing_ok=True)  # the local backend moved it already; the S3 one copied it

    def discard(self) -> None:
        """Remove the spool file (nothing happens once it was kept)."""
        if not self._file.closed:
            self._file.close()
        if not self.kept:
            self.path.unlink(missing_ok=True)


class BlobStore(Protocol):
    """Where evidence bytes live; keys are content hashes, so writes are idempotent."""

    def put(self, key: str, data: bytes, *, replace: bool = False) -> None: ...  # replace: over a damaged blob

    def get(self, key: str) -> bytes: ...  # FileNotFoundError when the key holds nothing (every backend)

    def exists(self, key: str) -> bool: ...

    def stage(self, max_bytes: int) -> StagedBlob: ...

    def sweep_incoming(self, older_than_s: float) -> int: ...


def working_image_key(sha256: str) -> str:
    """Store key of the greyscale working image intake decoded from the original (what hashing reads)."""
    return f"{sha256}-grey"


def get_if_stored(store: BlobStore, key: str) -> bytes | None:
    """The blob's bytes, or None when the key holds nothing: one read, where ``exists`` then ``get`` would be two
    requests (a HEAD and a GET on S3) for every blob that is there. Only "no such key" is None: an outage, a
    missing bucket or an unreadable file raises (``exists`` read some of those as "absent")."""
    try:
        return store.get(key)
    except FileNotFoundError:
        return None


def working_image_bytes(sha256: str) -> bytes:
    """What hashing and the pixel checks read of a stored image: the working image intake kept, else (a file stored
    before working images were kept) the original."""
    store = get_store()
    kept = get_if_stored(store, working_image_key(sha256))
    return kept if kept is not None else store.get(sha256)


def sweep_spool(folder: Path, older_than_s: float) -> int:
    """Remove spool files that stopped growing more than ``older_than_s`` ago (their process died); returns how
    many. A file still being written is younger than that: its mtime moves with every chunk."""
    cutoff, removed = time.time() - older_than_s, 0
    for path in folder.glob("up-*") if folder.is_dir() else ():
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # kept or discarded meanwhile by the upload that owned it
            continue
    return removed


class LocalBlobStore:
    """Files under a private directory, fanned out by the first hex digits of the key."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        check_key(key)
        return self.root / key[:2] / key[2:4] / key

    def put(self, key: str, data: bytes, *, replace: bool = False) -> None:
        """Write atomically (temp file + rename); an existing blob is left as is unless ``replace`` (a derived file
        found damaged: keys are content hashes, so otherwise the same key holds the same bytes)."""
        path = self._path(key)
        if path.exists() and not replace:
            return
        created = self._make_dirs(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self._rename_durably(tmp, path, created)

    def get(self, key: str) -> bytes:
        """The blob's bytes."""
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        """Whether the blob is stored."""
        return self._path(key).exists()

    def stage(self, max_bytes: int) -> StagedBlob:
        """A new upload to stream into the store (spooled inside it, so keeping it is a rename)."""
        return StagedBlob(self.root / INCOMING, max_bytes, self._keep_staged)

    def _keep_staged(self, staged: StagedBlob) -> None:
        path = self._path(staged.sha256)
        if path.exists():
            return
        fd = os.open(staged.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._rename_durably(staged.path, path, self._make_dirs(path.parent))

    def _make_dirs(self, folder: Path) -> list[Path]:
        """The fan-out directories down to ``folder``, made where missing; those this call made, deepest last."""
        made = []
        for d in (folder.parent.parent, folder.parent, folder):  # the root, then its two levels of fan-out
            if not d.is_dir():
                d.mkdir(parents=True, exist_ok=True, mode=0o700)
                made.append(d)
        return made

    @staticmethod
    def _rename_durably(src: str | Path, path: Path, made: list[Path]) -> None:
        """Move a written (fsynced) file to its key and make the move itself durable: a rename, or a directory
        just made, lives in its parent directory's entries, which only an fsync of that directory puts on disk.
        Without it a crash after the upload was acknowledged could lose the file its committed row names."""
        os.replace(src, path)
        for d in [path.parent, *(m.parent for m in reversed(made))]:
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def sweep_incoming(self, older_than_s: float) -> int:
        """Remove uploads abandoned by a process that died while receiving them; returns how many."""
        return sweep_spool(self.root / INCOMING, older_than_s)


def get_store() -> BlobStore:
    """The configured store: FIELDPROOF_EVIDENCE_STORE=local (under FIELDPROOF_EVIDENCE_DIR) or s3."""
    s = get_settings()
    if s.evidence_store == "s3":
        return _s3_store(tuple(getattr(s, name) for name in S3_SETTINGS))
    return LocalBlobStore(s.evidence_dir)


# The settings an S3 store is built from, in the order S3BlobStore takes them.
S3_SETTINGS = ("s3_bucket", "s3_prefix", "s3_endpoint_url", "s3_region", "s3_addressing_style", "s3_access_key_id",
               "s3_secret_access_key", "s3_part_mib", "s3_upload_concurrency", "evidence_dir")


@lru_cache(maxsize=8)
def _s3_store(config: tuple) -> BlobStore:
    """One store (one boto3 client: thread-safe, costly to build) per configuration and process."""
    # lazy: boto3 takes a noticeable fraction of a second to import and only the S3 backend needs it
    from evidence.storage_s3 import S3BlobStore

    return S3BlobStore(*config)
