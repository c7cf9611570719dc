"""Thin Celery tasks: each names itself, its queue and retry policy, then calls one service."""
from __future__ import annotations

from core import idempotency, jobs, partitions
from checkin import learning as radio_learning
from heatmap import service as heatmap
from evidence import service as evidence_service  # also registers the evidence.process job handler
from ledger import withdrawals
from ledger.provider import get_provider
from tasks import acceptance, claims
from tasks import service as tasks_service
from core.db import session_scope
from core.logging import get_logger
from workers import broker
from workers.celery_app import app
from workers.queues import queue_for_job

log = get_logger("workers")


# Retry countdowns stay under the broker's visibility timeout (150 s), or Redis would redeliver the waiting
# retry message as well and the retries would multiply.
RETRY_BACKOFF_MAX_S = 60


@app.task(name="fieldproof.run_job", queue="default", acks_late=True, max_retries=5,
          autoretry_for=(Exception,), retry_backoff=True, retry_backoff_max=RETRY_BACKOFF_MAX_S, retry_jitter=True)
def run_job(job_id: int) -> str:
    """Perform one durable job (idempotent: a second delivery finds it done); sent to its kind's queue."""
    with session_scope() as db:
        return jobs.run(db_session=db, job_id=job_id)


@app.task(name="fieldproof.sweep_unfinished_jobs", queue="maintenance", acks_late=True)
def sweep_unfinished_jobs() -> int:
    """Re-enqueue jobs whose message was lost (Redis flushed, worker died)."""
    return len(resend_lost_jobs())


def resend_lost_jobs() -> list[int]:
    """Re-send the pending jobs past their lease whose message no longer waits in the broker; returns their ids.
    The broker is read first: a message taken after that read belongs to a job that runs (a copy sent anyway
    finds it done), and a job added after it is not yet past its lease."""
    waiting = broker.waiting_jobs()
    with session_scope() as db:
        due = jobs.due_for_retry(db_session=db, queued=waiting)
    for n, (job_id, kind) in enumerate(due):
        try:
            send_job(job_id, kind)
        except Exception:  # noqa: BLE001 - the broker went away: what was not sent is due again at the next sweep
            unsent = [j for j, _ in due[n:]]
            with session_scope() as db:
                jobs.lease_lapsed(db_session=db, job_ids=unsent)
            log.warning("requeue_failed", sent=n, unsent=len(unsent))
            due = due[:n]
            break
    if due:
        log.info("requeued_jobs", count=len(due), still_queued=len(waiting))
    return [job_id for job_id, _ in due]


@app.task(name="fieldproof.purge_idempotency_records", queue="maintenance", acks_late=True)
def purge_idempotency_records() -> int:
    """Delete idempotency records older than their retention."""
    with session_scope() as db:
        return idempotency.purge_expired(db_session=db)


# A nudge is published by the process that recorded the job (a request, a job, a beat task), after its commit: one
# retry (a connection the broker dropped is made again), then it gives up; the sweeper re-sends what a nudge did not
# (its own sends keep Celery's default retries).
NUDGE_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def send_job(job_id: int, kind: str, retry_policy: dict | None = None) -> None:
    """Send ``run_job`` for one job to the queue of its kind (evidence jobs to the evidence workers)."""
    run_job.apply_async((job_id,), queue=queue_for_job(kind), **({"retry_policy": retry_policy} if retry_policy
                                                                  else {}))


def enqueue_job(job_id: int, kind: str) -> None:
    """Nudge a worker after the job row committed; if this fails the sweeper catches it."""
    try:
        send_job(job_id, kind, NUDGE_RETRY)
    except Exception:  # the DB row is the truth; a lost nudge is only a delay
        log.warning("enqueue_failed", job_id=job_id)


# Jobs recorded by a job, a beat task or a sweep are nudged after their commit from this process too.
jobs.set_dispatcher(enqueue_job)


@app.task(name="fieldproof.expire_stale_claims", queue="maintenance", acks_late=True)
def expire_stale_claims() -> int:
    """Release claims never checked in; the guarded UPDATE makes a second run a no-op."""
    with session_scope() as db:
        return claims.expire_stale(db_session=db)


@app.task(name="fieldproof.auto_confirm", queue="maintenance", acks_late=True)
def auto_confirm() -> int:
    """Confirm claims merchants left alone; row locks make concurrent runs on several hosts safe."""
    with session_scope() as db:
        return acceptance.auto_confirm_due(db_session=db)


@app.task(name="fieldproof.execute_payout", queue="money", acks_late=True, max_retries=10,
          autoretry_for=(Exception,), retry_backoff=True, retry_backoff_max=RETRY_BACKOFF_MAX_S)
def execute_payout(withdrawal_id: int) -> str:
    """Pay one withdrawal; a redelivery after a crash reuses the provider key, so it pays once."""
    with session_scope() as db:
        return withdrawals.execute_payout(db_session=db, withdrawal_id=withdrawal_id, provider=get_provider(db)).state


@app.task(name="fieldproof.sweep_payouts", queue="maintenance", acks_late=True)
def sweep_payouts() -> int:
    """Enqueue approved payouts and ones stuck mid-payment."""
    with session_scope() as db:
        ids = withdrawals.payouts_due(db_session=db)
    for wid in ids:
        execute_payout.delay(wid)
    return len(ids)


@app.task(name="fieldproof.settle_ended_tasks", queue="maintenance", acks_late=True)
def settle_ended_tasks() -> int:
    """Close tasks whose window is over and return their unused escrow; give back what closed tasks held for
    claims that can no longer be paid."""
    with session_scope() as db:
        closed = tasks_service.settle_ended(db_session=db)
        tasks_service.release_reserves(db_session=db)
        return closed


@app.task(name="fieldproof.sweep_abandoned_uploads", queue="maintenance", acks_late=True)
def sweep_abandoned_uploads() -> int:
    """Remove partial uploads a crashed API process left in the evidence store."""
    return evidence_service.sweep_abandoned_uploads()


@app.task(name="fieldproof.roll_up_heatmap", queue="maintenance", acks_late=True)
def roll_up_heatmap() -> int:
    """Fold new check-ins and claim outcomes into the heatmap tables (watermark row locks: safe twice)."""
    with session_scope() as db:
        return heatmap.catch_up(db_session=db)


@app.task(name="fieldproof.learn_radio", queue="maintenance", acks_late=True)
def learn_radio() -> int:
    """Learn site radio fingerprints from new accepted check-ins (advisory lock: one run at a time)."""
    with session_scope() as db:
        return radio_learning.learn(db_session=db)


@app.task(name="fieldproof.maintain_partitions", queue="maintenance", acks_late=True)
def maintain_partitions() -> dict:
    """Create the coming months' partitions and drop those past retention (an advisory lock per table: safe twice)."""
    with session_scope() as db:
        return partitions.maintain(db_session=db)
