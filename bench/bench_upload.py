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
from pathlib import Path

from bench.common import figure, pct, scale, server, use_bench_database

RATE_PER_S = 10.0
# Generating one 12 MP scene costs ~1.7 s of CPU: they are made once per seed and kept under .data (deterministic).
PHOTO_CACHE = Path(__file__).resolve().parent.parent / ".data" / "bench_photos"


def scene(seed: int, size: tuple[int, int] = (4000, 3000)) -> bytes:
    """A distinct, photo-like 12 MP JPEG: smooth colour fields, shapes and sensor noise."""
    import numpy as np
    from PIL import Image, ImageDraw

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


def cached_scene(seed: int) -> bytes:
    """scene(seed), from the cache when it was made before."""
    path = PHOTO_CACHE / f"scene-{seed}.jpg"
    if path.exists():
        return path.read_bytes()
    data = scene(seed)
    PHOTO_CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return data


def _forget_earlier_runs() -> None:
    """The scenes are the same every run: drop the bench database's earlier evidence, or every upload after the
    first run would be an exact duplicate of the last run's copy (other work than a distinct photo)."""
    from sqlalchemy import text

    from core.db import get_engine

    with get_engine().begin() as conn:
        conn.execute(text("DELETE FROM evidence_match"))
        conn.execute(text("DELETE FROM evidence_hash"))
        conn.execute(text("DELETE FROM evidence"))
        conn.execute(text("DELETE FROM job WHERE kind = 'evidence.process'"))


def _checked_in_claims(n: int) -> list[tuple[int, int]]:
    from sqlalchemy import text

    from bench.bench_checkin import _seed
    from core.db import get_engine

    claims = _seed(n)
    with get_engine().begin() as conn:
        conn.execute(text("UPDATE claim SET state = 'checked_in', checked_in_at = now() WHERE id = ANY(:ids)"),
                     {"ids": [c for c, _ in claims]})
    return claims


def _worker_process() -> subprocess.Popen:
    env = {**os.environ, "FIELDPROOF_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "workers.celery_app:app", "worker",
                             "-Q", "default,evidence,maintenance",
                             "--concurrency", os.environ.get("FIELDPROOF_BENCH_WORKER_CONCURRENCY", "2"), "--loglevel", "WARNING",
                             "--without-gossip", "--without-mingle", "--without-heartbeat"], env=env)


def _one(base: str, claim_id: int, token: str, photo: bytes, started: dict[int, float], responded: list[float],
         errors: list[str]) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
    t0 = time.time()
    with httpx.Client(base_url=base, timeout=60) as client:
        r = client.post(f"/v1/claims/{claim_id}/evidence", headers=headers,
                        files={"file": ("photo.jpg", photo, "image/jpeg")})
    if r.status_code != 201:
        errors.append(f"upload {r.status_code}: {r.text[:200]}")
        return
    responded.append(time.time() - t0)
    started[r.json()["id"]] = t0


def _tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) of a process, its live descendants and its reaped children."""
    tick = os.sysconf("SC_CLK_TCK")
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
            for task in Path(f"/proc/{pid}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


def _postmaster_pid() -> int | None:
    from core import localservices

    svc = localservices.LocalServices.from_settings()  # the project-local cluster, if it runs (else no figure)
    try:
        return int((svc.pg_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _verdict_times(started: dict[int, float], timeout_s: float = 300) -> list[float]:
    """Seconds from each upload's first byte to its processed_at, read from the database once all are done
    (polling every upload over HTTP would load the API more than the uploads do)."""
    from sqlalchemy import text

    from core.db import get_engine

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
    import resource

    from accounts.security import create_access_token

    rate = float(os.environ.get("FIELDPROOF_BENCH_UPLOAD_RATE", RATE_PER_S))
    n = int(os.environ.get("FIELDPROOF_BENCH_UPLOAD_N", max(30, int(200 * scale()))))
    photos = [cached_scene(seed) for seed in range(n)]
    _forget_earlier_runs()
    claims = _checked_in_claims(n)
    started: dict[int, float] = {}
    responded: list[float] = []
    errors: list[str] = []
    worker = _worker_process()
    postmaster = _postmaster_pid()
    try:
        with server("api.app:app") as base:
            time.sleep(3)  # the worker connects to the broker
            api_pid = _server_pid(base)
            cpu0 = {"api": _tree_cpu_s(api_pid) if api_pid else 0.0, "worker": _tree_cpu_s(worker.pid),
                    "postgres": _tree_cpu_s(postmaster) if postmaster else 0.0,
                    "client": sum(resource.getrusage(resource.RUSAGE_SELF)[:2])}
            threads = []
            t0 = time.perf_counter()
            for i, ((claim_id, worker_id), photo) in enumerate(zip(claims, photos)):
                time.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
                t = threading.Thread(target=_one, args=(base, claim_id, create_access_token(worker_id, "worker"),
                                                       photo, started, responded, errors))
                t.start()
                threads.append(t)
            for t in threads:
                t.join()
            latencies = _verdict_times(started)
            wall = time.perf_counter() - t0
            cpu = {"api": _tree_cpu_s(api_pid) if api_pid else 0.0, "worker": _tree_cpu_s(worker.pid),
                   "postgres": _tree_cpu_s(postmaster) if postmaster else 0.0,
                   "client": sum(resource.getrusage(resource.RUSAGE_SELF)[:2])}
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    if errors:
        print(f"[bench_upload] {len(errors)} failed: {errors[:3]}", file=sys.stderr)
    value = pct(latencies, 95) if latencies else float("inf")
    per_upload = {k: round((cpu[k] - cpu0[k]) / max(1, len(started)) * 1000, 1) for k in cpu}
    print(f"[bench_upload] rate {rate:g}/s n {n}: verdict p50 {pct(latencies, 50):.2f} s p95 {value:.2f} s "
          f"max {max(latencies):.2f} s; upload response p50 {pct(responded, 50):.2f} s p95 {pct(responded, 95):.2f} s; "
          f"all verdicts in {wall:.1f} s; CPU ms per upload {per_upload}; load {os.getloadavg()[0]:.1f}",
          file=sys.stderr)
    return {"upload_to_verdict": figure(value, "s", None, False, f"p95 <= 2 s at {rate:g} uploads/s "
                                        f"({len(latencies)}/{n} processed)", at_most=2.0)}


def _server_pid(base: str) -> int | None:
    """The uvicorn parent listening on the bench server's port (its workers are its children)."""
    port = base.rsplit(":", 1)[1]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"uvicorn" in cmd and port.encode() in cmd and b"--workers" in cmd:
                return int(proc.name)
    return None


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
