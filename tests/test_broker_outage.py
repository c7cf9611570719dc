"""A broker that stops answering (its process frozen, its socket still open) does not hold the phone's requests.

A probe froze Redis with SIGSTOP: each upload then waited, after its commit, for as long as Redis stayed frozen
(25 s, 72 s), because the job's nudge was published in the request with no socket timeout. The upload is durable
before the nudge (the job row is the truth; the sweeper re-sends a lost nudge), so it must be answered while Redis
is still frozen. Runs its own redis-server, so the test session's Redis is never stopped.
"""
from __future__ import annotations

import os
import signal
import threading

from sqlalchemy import select

from core import jobs
from evidence.models import Evidence
from sim import photos
from tests.evidence_transforms import jpeg
from tests.helpers import own_redis
from tests.live import live_server
from tests.test_evidence_same_scene import LIMITS, _checked_in_claim, _funded_merchant, _upload

FROZEN_S = 60  # Redis stays frozen this long at most: an upload answered only after it would have waited for it


def test_an_upload_is_answered_while_the_broker_is_frozen_and_its_job_is_kept(test_database, tmp_path):
    with own_redis(tmp_path) as (proc, _, port):
        with live_server("brokerfreeze", {**LIMITS, "FIELDPROOF_REDIS_URL": f"redis://127.0.0.1:{port}/0"}) as srv:
            merchant, ops = _funded_merchant(srv)
            (first, w1), (second, w2) = (_checked_in_claim(srv, merchant, ops) for _ in range(2))
            _upload(srv, first, w1, jpeg(photos.storefront(7676, 1)))  # the API's broker connection is made
            resumed = threading.Event()

            def resume() -> None:
                resumed.set()
                os.kill(proc.pid, signal.SIGCONT)

            os.kill(proc.pid, signal.SIGSTOP)
            timer = threading.Timer(FROZEN_S, resume)
            timer.start()
            try:
                evidence_id = _upload(srv, second, w2, jpeg(photos.storefront(7777, 1)))
                answered_while_frozen = not resumed.is_set()
            finally:
                timer.cancel()
                os.kill(proc.pid, signal.SIGCONT)
            assert answered_while_frozen, "the upload waited for the frozen broker"
            with srv.session() as s:
                assert s.get(Evidence, evidence_id).state == "received"
                job = s.scalar(select(jobs.Job).where(jobs.Job.kind == "evidence.process",
                                                      jobs.Job.payload["evidence_id"].as_integer() == evidence_id))
                assert job is not None and job.state == "pending"  # the sweeper sends it if the nudge was lost
