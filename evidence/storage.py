"""Content-addressed blob storage (sha256). Local disk by default; an S3-compatible backend
implements the same three methods."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol

from core.config import get_settings


class BlobStore(Protocol):
    """Where evidence bytes live; keys are content hashes, so writes are idempotent."""

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...


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


def get_store() -> BlobStore:
    """The configured store (local disk under FIELDPROOF_EVIDENCE_DIR)."""
    return LocalBlobStore(get_settings().evidence_dir)
