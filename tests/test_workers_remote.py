"""Workers on other hosts (issue 18): a real Celery worker with a different local evidence directory, sharing
only PostgreSQL, Redis and the S3 store with the API, processes uploads to their verdicts; every task is sent
to its own queue (inspected on the real broker)."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import contextmanager

from PIL import Image

from core.redis import get_redis
from tests.evidence_transforms import jpeg, watermark_band
from tests.fieldwork import STORE, claimed, fix
from tests.helpers import wait_until
from tests.live import live_server
from tests.test_evidence_api import PHOTOS


@contextmanager
def remote_worker(env: dict, queues: str, log_path):
    """`fieldproof worker --queues ...` as another host would run it (its own environment)."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "api.cli", "worker", "--queues", queues, "--concurrency", "1"],
                                env=env, stdout=log, stderr=log)
        try:
            yield proc
        finally:
            proc.terminate()  # Celery's warm shutdown: the task in hand finishes first
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _checked_in(http, db):
    _, claim, w, m = claimed(http, db)
    r = http.post(f"/v1/claims/{claim['id']}/checkins", json=fix(STORE[0] + 0.0003, STORE[1]), headers=w)
    assert r.status_code == 201, r.text
    return claim, w, m


def _verdict(http, evidence_id: int, headers: dict) -> dict:
    box: dict = {}

    def processed() -> bool:
        box.update(http.get(f"/v1/evidence/{evidence_id}", headers=headers).json())
        return box.get("state") == "processed"
    # Generous: a cold worker imports the domain and boto3 on a 2-core machine shared with other tests.
    assert wait_until(processed, timeout=90, interval=0.3), box
    return box


def test_worker_on_another_host_processes_uploads_from_s3(s3_server, tmp_path):
    prefix = "remote/"
    api_dir, worker_dir = tmp_path / "api-host", tmp_path / "worker-host"
    api_env = {**s3_server.env(prefix), "FIELDPROOF_EVIDENCE_DIR": str(api_dir)}
    with live_server("s3w", extra_env=api_env, log_path=tmp_path / "api.log") as server:
        worker_env = {**server.env, **s3_server.env(prefix), "FIELDPROOF_EVIDENCE_DIR": str(worker_dir)}
        with remote_worker(worker_env, "evidence", tmp_path / "worker.log"), server.http() as http, \
                server.session() as db:
            c1, w1, _ = _checked_in(http, db)
            c2, w2, m2 = _checked_in(http, db)
            original = (PHOTOS / "chelsea.jpg").read_bytes()
            r1 = http.post(f"/v1/claims/{c1['id']}/evidence", files={"file": ("a.jpg", original)}, headers=w1)
            assert r1.status_code == 201, r1.text
            first = _verdict(http, r1.json()["id"], w1)
            stamped = jpeg(watermark_band(Image.open(io.BytesIO(original))))
            r2 = http.post(f"/v1/claims/{c2['id']}/evidence", files={"file": ("b.jpg", stamped)}, headers=w2)
            assert r2.status_code == 201, r2.text
            second = _verdict(http, r2.json()["id"], w2)
            # Served copies come from S3 too, without the camera's metadata.
            thumb = http.get(f"/v1/evidence/{second['id']}/image?size=thumb", headers=m2)
            assert thumb.status_code == 200, thumb.text
    assert first["reasons"] == [] or "duplicate_evidence" not in first["reasons"]
    assert "duplicate_evidence" in second["reasons"], second
    assert second["matches"][0]["matched_evidence_id"] == first["id"]
    assert not Image.open(io.BytesIO(thumb.content)).getexif()
    stored = s3_server.keys(prefix)
    for ev in (first, second):
        assert {ev["sha256"], f"{ev['sha256']}-grey"} <= set(stored)
    assert any("-preview-" in k for k in stored)
    # Neither host kept evidence on its own disk: the API only spooled the uploads, the worker wrote nothing.
    assert [p for p in api_dir.rglob("*") if p.is_file()] == []
    assert not worker_dir.exists() or [p for p in worker_dir.rglob("*") if p.is_file()] == []


def _queued(queue: str) -> list[str]:
    """Task names waiting on ``queue`` in the real broker (kombu's Redis transport keeps a list per queue)."""
    import json

    return [json.loads(m)["headers"]["task"] for m in get_redis().lrange(queue, 0, -1)]


def test_every_task_goes_to_its_own_queue():
    """No worker runs here: each message stays on the queue it was sent to, where the broker shows it."""
    from workers import tasks
    from workers.celery_app import app
    from workers.queues import QUEUES
    from workers.schedule import BEAT_SCHEDULE

    for q in QUEUES:
        get_redis().delete(q)
    tasks.send_job(10**9, "evidence.process")
    tasks.send_job(10**9 + 1, "some.other_kind")
    tasks.execute_payout.delay(10**9)
    beat_tasks = {entry["task"] for entry in BEAT_SCHEDULE.values()}
    for name in sorted(beat_tasks):
        app.tasks[name].delay()
    try:
        assert _queued("evidence") == ["fieldproof.run_job"]
        assert _queued("default") == ["fieldproof.run_job"]
        assert _queued("money") == ["fieldproof.execute_payout"]
        assert sorted(_queued("maintenance")) == sorted(beat_tasks)
        # Beat sends with the queue its schedule names: the same as the task's own.
        assert all(entry["options"]["queue"] == app.tasks[entry["task"]].queue for entry in BEAT_SCHEDULE.values())
        assert {t.queue for name, t in app.tasks.items() if name.startswith("fieldproof.")} <= set(QUEUES)
    finally:
        for q in QUEUES:
            get_redis().delete(q)


def test_queue_groups_and_the_worker_command():
    import pytest

    from api.supervise import worker_commands
    from workers.queues import parse_groups, parse_queues

    assert worker_commands("") == [["worker"]]
    assert worker_commands("evidence; money,maintenance,default") == [
        ["worker", "--queues", "evidence"], ["worker", "--queues", "money,maintenance,default"]]
    assert parse_queues("") == ["evidence", "money", "maintenance", "default"]
    with pytest.raises(ValueError, match="no worker would consume default"):
        parse_groups("evidence;money,maintenance")
    with pytest.raises(ValueError, match="unknown queue"):
        parse_queues("evidence,videos")
    bad = subprocess.run([sys.executable, "-m", "api.cli", "worker", "--queues", "videos"], capture_output=True,
                         text=True, env=os.environ)
    assert bad.returncode == 2 and "unknown queue videos" in bad.stderr
