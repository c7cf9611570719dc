"""upload_to_verdict: p95 seconds from a photo upload's first byte to its processed verdict, at 10 uploads/s.

A real API (2 uvicorn processes) and a real Celery worker (the `fieldproof worker` queues) run against the bench
database; 12 MP JPEG scenes, each distinct, are posted open-loop at 10 per second by worker accounts holding
checked-in claims; the verdict time is the evidence row's processed_at (set when the worker has hashed it,
checked its EXIF and searched the duplicate index) minus the moment the upload started. No baseline: the goal is absolute (p95 <= 2 s).
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import uuid

import httpx
import numpy as np
from PIL import Image, ImageDraw
from sqlalchemy import text

from accounts.security import create_access_token
from bench.bench_checkin import _seed
from bench.common import figure, pct, scale, server, use_bench_database
from core.db import get_engine

RATE_PER_S = 10.0


def scene(seed: int, size: tuple[int, int] = (4000, 3000)) -> bytes:
    """A distinct, photo-like 12 MP JPEG: smooth colour fields, shapes and sensor noise."""
    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
    draw = ImageDraw.Draw(base)
    for _ in range(40):
        x, y = int(rng.integers(0, size[0])), int(rng.integers(0, size[1]))
        w, h = int(rng.integers(80, 900)), int(rng.integers(80, 900))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x, y, x + w, y + h), fill=colour)
    pixels = np.asarray(base, dtype=np.int16) + rng.normal(0, 6, (size[1], size[0], 3)).astype(np.int16)
    out = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(out, "JPEG", quality=88)
    return out.getvalue()


def _checked_in_claims(n: int) -> list[tuple[int, int]]:
    claims = _seed(n)
    with get_engine().begin() as conn:
        conn.execute(text("UPDATE claim SET state = 'checked_in', checked_in_at = now() WHERE id = ANY(:ids)"),
                     {"ids": [c for c, _ in claims]})
    return claims


def _worker_process() -> subprocess.Popen:
    env = {**os.environ, "FIELDPROOF_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "workers.celery_app:app", "worker",
                             "-Q", "default,evidence,maintenance", "--concurrency", "2", "--loglevel", "WARNING",
                             "--without-gossip", "--without-mingle", "--without-heartbeat"], env=env)


def _one(base: str, claim_id: int, token: str, photo: bytes, started: dict[int, float], errors: list[str]) -> None:
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
    t0 = time.time()
    with httpx.Client(base_url=base, timeout=60) as client:
        r = client.post(f"/v1/claims/{claim_id}/evidence", headers=headers,
                        files={"file": ("photo.jpg", photo, "image/jpeg")})
    if r.status_code != 201:
        errors.append(f"upload {r.status_code}: {r.text[:200]}")
        return
    started[r.json()["id"]] = t0


def _verdict_times(started: dict[int, float], timeout_s: float = 300) -> list[float]:
    """Seconds from each upload's first byte to its processed_at, read from the database once all are done
    (polling every upload over HTTP would load the API more than the uploads do)."""
    deadline = time.time() + timeout_s
    with get_engine().connect() as conn:
        while True:
            rows = conn.execute(text("SELECT id, extract(epoch FROM processed_at) FROM evidence "
                                     "WHERE id = ANY(:ids) AND processed_at IS NOT NULL"),
                                {"ids": list(started)}).all()
            conn.rollback()
            if len(rows) == len(started) or time.time() > deadline:
                return [float(done) - started[eid] for eid, done in rows]
            time.sleep(0.5)


def run() -> dict:
    """Post uploads at 10/s to a live API and worker; p95 of upload-to-verdict seconds."""
    use_bench_database()

    n = max(30, int(200 * scale()))
    photos = [scene(seed) for seed in range(n)]
    claims = _checked_in_claims(n)
    started: dict[int, float] = {}
    errors: list[str] = []
    worker = _worker_process()
    try:
        with server("api.app:app") as base:
            time.sleep(3)  # the worker connects to the broker
            threads = []
            t0 = time.perf_counter()
            for i, ((claim_id, worker_id), photo) in enumerate(zip(claims, photos)):
                time.sleep(max(0.0, t0 + i / RATE_PER_S - time.perf_counter()))
                t = threading.Thread(target=_one, args=(base, claim_id, create_access_token(worker_id, "worker"),
                                                       photo, started, errors))
                t.start()
                threads.append(t)
            for t in threads:
                t.join()
            latencies = _verdict_times(started)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    if errors:
        print(f"[bench_upload] {len(errors)} failed: {errors[:3]}", file=sys.stderr)
    value = pct(latencies, 95) if latencies else float("inf")
    return {"upload_to_verdict": figure(value, "s", None, False, f"p95 <= 2 s at {RATE_PER_S:g} uploads/s "
                                        f"({len(latencies)}/{n} processed)", at_most=2.0)}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
