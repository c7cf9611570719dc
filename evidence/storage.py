"""Content-addressed blob storage (sha256). Local disk by default; an S3-compatible backend
implements the same methods (staging would be a multipart upload named by its hash once complete)."""
from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Protocol

from core.config import get_settings
from evidence.errors import FileTooLarge

INCOMING = "incoming"  # uploads being received; a file left here by a crash is never referenced


class StagedBlob:
    """An upload written into the store as it arrives: sha256 and size computed and the size cap enforced while
    it streams; a temp file until ``keep`` files it under its hash, removed by ``discard``."""

    def __init__(self, store: "LocalBlobStore", max_bytes: int) -> None:
        self.store, self.max_bytes = store, max_bytes
        folder = store.root / INCOMING
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(dir=folder, prefix="up-")
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
        """File the upload under its sha256 (an identical blob already there is kept instead). Waits for the
        disk (fsync: durable before a committed row can refer to it), so call it from a worker thread."""
        path = self.store._path(self.sha256 or self.finish())
        if path.exists():
            self.discard()
        else:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.replace(self.path, path)
        self.kept = True

    def discard(self) -> None:
        """Remove the temp file (nothing happens once it was kept)."""
        if not self._file.closed:
            self._file.close()
        if not self.kept:
            self.path.unlink(missing_ok=True)


class BlobStore(Protocol):
    """Where evidence bytes live; keys are content hashes, so writes are idempotent."""

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def stage(self, max_bytes: int) -> StagedBlob: ...

    def sweep_incoming(self, older_than_s: float) -> int: ...


class LocalBlobStore:
    """Files under a private directory, fanned out by the first hex digits of the key."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if not key or any(c not in "0123456789abcdef-_.abcdefghijklmnopqrstuvwxyz" for c in key):
            raise ValueError("invalid blob key")
        return self.root / key[:2] / key[2:4] / key

    def put(self, key: str, data: bytes) -> None:
        """Write atomically (temp file + rename); an existing blob is left as is."""
        path = self._path(key)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def get(self, key: str) -> bytes:
        """The blob's bytes."""
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        """Whether the blob is stored."""
        return self._path(key).exists()

    def stage(self, max_bytes: int) -> StagedBlob:
        """A new upload to stream into the store."""
        return StagedBlob(self, max_bytes)

    def sweep_incoming(self, older_than_s: float) -> int:
        """Remove uploads that stopped being received more than ``older_than_s`` ago (their process died);
        returns how many. A file still being written is younger than that: its mtime moves with every chunk."""
        folder, cutoff, removed = self.root / INCOMING, time.time() - older_than_s, 0
        for path in folder.glob("up-*") if folder.is_dir() else ():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # kept or discarded meanwhile by the upload that owned it
                continue
        return removed


def get_store() -> BlobStore:
    """The configured store (local disk under FIELDPROOF_EVIDENCE_DIR)."""
    return LocalBlobStore(get_settings().evidence_dir)
