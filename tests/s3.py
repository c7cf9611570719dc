"""A real S3-compatible server for tests: moto's stand-alone server (`moto_server`, an HTTP server speaking the
S3 REST protocol) on a free loopback port, and a fixture running a test against either evidence backend.

Import the fixtures a test module needs: ``from tests.s3 import any_store, s3_server, s3_store  # noqa: F401``.
"""
from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from core.config import get_settings
from core.localservices import free_port
from tests.helpers import wait_until

BUCKET = "fieldproof-test"


@dataclass
class S3Server:
    endpoint: str
    client: object = None  # a boto3 S3 client of the test's own
    bucket: str = BUCKET

    def env(self, prefix: str) -> dict[str, str]:
        """FIELDPROOF_* variables pointing a process (API, worker) at this server under ``prefix``."""
        return {"FIELDPROOF_EVIDENCE_STORE": "s3", "FIELDPROOF_S3_ENDPOINT_URL": self.endpoint,
                "FIELDPROOF_S3_BUCKET": self.bucket, "FIELDPROOF_S3_PREFIX": prefix,
                "FIELDPROOF_S3_REGION": "us-east-1", "FIELDPROOF_S3_ADDRESSING_STYLE": "path",
                "FIELDPROOF_S3_ACCESS_KEY_ID": "test", "FIELDPROOF_S3_SECRET_ACCESS_KEY": "test-secret"}

    def use(self, monkeypatch, prefix: str) -> None:
        """Point this process's settings at the server (the store is rebuilt for the new settings)."""
        s = get_settings()
        for name, value in self.env(prefix).items():
            monkeypatch.setattr(s, name.removeprefix("FIELDPROOF_").lower(), value)

    def keys(self, prefix: str) -> list[str]:
        """Every object under ``prefix``, names without it."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"][len(prefix):] for page in pages for o in page.get("Contents", []))


def _moto_server() -> list[str]:
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "moto.server"]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """moto_server on a free port for the whole session, with the test bucket."""
    port = free_port()
    log = (tmp_path_factory.mktemp("s3") / "moto.log").open("wb")
    proc = subprocess.Popen([*_moto_server(), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    server = S3Server(f"http://127.0.0.1:{port}")

    def up() -> bool:
        try:
            return httpx.get(server.endpoint, timeout=1).status_code < 500
        except httpx.TransportError:
            return proc.poll() is not None  # stop waiting: it died
    try:
        assert wait_until(up, timeout=60) and proc.poll() is None, "moto_server did not start"
        from evidence.storage_s3 import S3BlobStore  # lazy: boto3 only where S3 is tested

        admin = S3BlobStore(BUCKET, "", server.endpoint, "us-east-1", "path", "test", "test-secret", 5, 1,
                            tmp_path_factory.mktemp("spool"))
        admin.create_bucket()
        server.client = admin.client
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@dataclass
class StoreUnderTest:
    kind: str  # "local" | "s3"
    root: Path  # evidence_dir: the local store, or (s3) only the spool of uploads arriving
    prefix: str = ""
    server: S3Server | None = None

    def stored(self) -> list[str]:
        """Keys of every stored blob (spool files excluded)."""
        if self.server is not None:
            return self.server.keys(self.prefix)
        return sorted(p.name for p in self.root.rglob("*") if p.is_file() and p.parent.name != "incoming")

    def spooled(self) -> list[str]:
        """Spool files of uploads still arriving (or left behind)."""
        return sorted(p.name for p in (self.root / "incoming").glob("*"))


@pytest.fixture
def s3_store(s3_server, tmp_path, monkeypatch) -> StoreUnderTest:
    """The evidence store on the S3 server, under a prefix of this test's own (so what is left is its doing)."""
    monkeypatch.setattr(get_settings(), "evidence_dir", tmp_path)
    prefix = f"t-{secrets.token_hex(4)}/"
    s3_server.use(monkeypatch, prefix)
    return StoreUnderTest("s3", tmp_path, prefix, s3_server)


@pytest.fixture(params=["local", "s3"])
def any_store(request, tmp_path, monkeypatch) -> StoreUnderTest:
    """The test runs once on the local directory store and once on the S3 server, each empty at the start."""
    if request.param == "s3":
        return request.getfixturevalue("s3_store")
    monkeypatch.setattr(get_settings(), "evidence_dir", tmp_path)
    monkeypatch.setattr(get_settings(), "evidence_store", "local")
    return StoreUnderTest("local", tmp_path)
