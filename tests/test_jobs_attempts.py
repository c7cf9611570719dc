"""A job's attempts are counted even when the worker running it is lost, so retries are bounded."""
from __future__ import annotations

import pytest
from sqlalchemy import delete, select

from core import jobs
from core.db import session_scope

KILLER = "test.kills_its_worker"
FLAKY = "test.fails_then_works"
calls: list[str] = []


class WorkerLost(BaseException):
    """Stands for the worker process dying mid-job: nothing after it runs, its transaction never commits."""


@jobs.handler(KILLER)
def _kill(*, db_session, marker: str) -> None:
    calls.append(marker)
    raise WorkerLost()


@jobs.handler(FLAKY)
def _flaky(*, db_session, marker: str) -> None:
    calls.append(marker)
    if calls.count(marker) < 3:
        raise RuntimeError("provider timeout")


def _job(kind: str, marker: str) -> int:
    with session_scope() as db:
        job = jobs.add(db, kind, marker=marker)
        db.commit()
        return job.id


def _row(job_id: int) -> jobs.Job:
    with session_scope() as db:
        return db.scalar(select(jobs.Job).where(jobs.Job.id == job_id))


def test_a_job_that_kills_its_worker_gives_up_after_max_attempts():
    job_id = _job(KILLER, "killer")
    try:
        for n in range(1, jobs.MAX_ATTEMPTS + 1):
            with pytest.raises(WorkerLost), session_scope() as db:
                jobs.run(db_session=db, job_id=job_id)
            assert _row(job_id).attempts == n  # counted although the work never committed
        with session_scope() as db:
            assert jobs.run(db_session=db, job_id=job_id) == "failed"
        row = _row(job_id)
        assert row.state == "failed" and "worker lost" in row.last_error
        assert calls.count("killer") == jobs.MAX_ATTEMPTS  # not run again once given up
    finally:
        with session_scope() as db:
            db.execute(delete(jobs.Job).where(jobs.Job.id == job_id))
            db.commit()


def test_failures_count_once_each_and_a_later_success_finishes_the_job():
    job_id = _job(FLAKY, "flaky")
    try:
        for _ in range(2):
            with pytest.raises(RuntimeError), session_scope() as db:
                jobs.run(db_session=db, job_id=job_id)
        with session_scope() as db:
            assert jobs.run(db_session=db, job_id=job_id) == "done"
        row = _row(job_id)
        assert row.state == "done" and row.attempts == 3 and "provider timeout" in row.last_error
        with session_scope() as db:
            assert jobs.run(db_session=db, job_id=job_id) == "done"  # a redelivery changes nothing
        assert _row(job_id).attempts == 3
    finally:
        with session_scope() as db:
            db.execute(delete(jobs.Job).where(jobs.Job.id == job_id))
            db.commit()
