"""Celery against the real Redis broker and DB: a real worker process, no eager mode."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import delete

from core import jobs
from core.db import session_scope
from core.redis import get_redis

JOB_KIND = "test.touch_marker"


@jobs.handler(JOB_KIND)
def _touch(*, db_session, marker: str) -> None:
    get_redis().incr(marker)


@pytest.fixture
def worker_process():
    env = {**os.environ, "FIELDPROOF_TEST_JOB_HANDLERS": "tests.test_workers"}
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "tests.celery_test_app:app", "worker",
                             "-Q", "default,maintenance", "--concurrency", "1", "--pool", "solo",
                             "--loglevel", "WARNING"], env=env)
    yield proc
    proc.terminate()
    proc.wait(timeout=20)


def _committed_job(marker: str) -> int:
    with session_scope() as db:
        job = jobs.add(db, JOB_KIND, marker=marker)
        db.commit()
        return job.id


def _wait_for(predicate, timeout_s=30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_real_worker_runs_job_once_even_if_delivered_twice(worker_process):
    from workers.tasks import run_job

    marker = f"marker:{time.time_ns()}"
    job_id = _committed_job(marker)
    try:
        run_job.delay(job_id)
        run_job.delay(job_id)  # a duplicate delivery (e.g. the sweeper and the original nudge)
        assert _wait_for(lambda: get_redis().get(marker) is not None)
        time.sleep(1.0)
        assert int(get_redis().get(marker)) == 1
        with session_scope() as db:
            assert db.get(jobs.Job, job_id).state == "done"
    finally:
        with session_scope() as db:
            db.execute(delete(jobs.Job).where(jobs.Job.id == job_id))
            db.commit()


def test_sweeper_requeues_lost_jobs(worker_process):
    """The nudge was lost (never enqueued); the sweeper finds the pending row and it runs."""
    from workers.tasks import sweep_unfinished_jobs

    marker = f"marker:{time.time_ns()}"
    job_id = _committed_job(marker)
    try:
        with session_scope() as db:
            db.get(jobs.Job, job_id).leased_until = jobs.utcnow()
            db.commit()
        sweep_unfinished_jobs.delay()
        assert _wait_for(lambda: get_redis().get(marker) is not None)
    finally:
        with session_scope() as db:
            db.execute(delete(jobs.Job).where(jobs.Job.id == job_id))
            db.commit()
