"""Durable background jobs: a DB row is the truth, Redis only carries the nudge.

Work is recorded as a ``job`` row in the same transaction as the change that needs it
(an outbox). After commit the caller enqueues the Celery task; if Redis loses the
message, or a worker dies, the sweeper finds rows still ``pending`` past their lease
and enqueues them again. Handlers must be idempotent.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Index, Integer, String, event, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, Session, mapped_column

from core import clock
from core.config import get_settings
from core.models import Base, created_at, pk, utcnow


def lease_s() -> float:
    """How long a handed-out job may stay pending before the sweeper re-enqueues it (see core.config)."""
    return get_settings().job_lease_s


MAX_ATTEMPTS = 10
# The longest a re-sent job is leased (core.jobs.due_for_retry): a re-send lost in turn waits at most this.
MAX_RESEND_LEASE_S = 600.0


class Job(Base):
    """One unit of background work and its state."""

    __tablename__ = "job"
    __table_args__ = (Index("ix_job_kind_started", "kind", "id", postgresql_where=text("started_at IS NOT NULL")),)

    id: Mapped[int] = pk()
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str | None] = mapped_column(String(2000))
    leased_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When a worker last took it (counted an attempt): the sweeper's view of how far its kind's queue has got.
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


HANDLERS: dict[str, Callable[..., None]] = {}


def handler(kind: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register the service function that performs jobs of ``kind``."""

    def deco(fn: Callable[..., None]) -> Callable[..., None]:
        HANDLERS[kind] = fn
        return fn

    return deco


_dispatcher: list[Callable[[int, str], None]] = []


def set_dispatcher(fn: Callable[[int, str], None]) -> None:
    """How to nudge a worker about a committed job, given its id and kind (the kind picks the Celery queue; the
    Celery wiring registers itself here)."""
    _dispatcher[:] = [fn]


def add(db_session: Session, kind: str, **payload: Any) -> Job:
    """Record a job in the caller's transaction (flushes, does not commit); dispatched after commit."""
    job = Job(kind=kind, payload=payload, leased_until=utcnow() + clock.machine_seconds(lease_s()))
    db_session.add(job)
    db_session.flush()
    db_session.info.setdefault("pending_jobs", []).append((job.id, kind))
    return job


def dispatch_pending(db_session: Session) -> None:
    """After the outer commit: nudge workers about the jobs this session recorded."""
    for job_id, kind in db_session.info.pop("pending_jobs", []):
        for fn in _dispatcher:
            fn(job_id, kind)


# Jobs go out right after the commit that made them visible, whichever process it is in (API, Celery worker,
# beat, CLI), so a job added by a job starts at once instead of waiting for the sweeper. Inside a unit of work
# a service's commit() only flushes (core.db.AppSession), so this fires once, after the unit of work commits.
@event.listens_for(Session, "after_commit")
def _dispatch_after_commit(db_session: Session) -> None:
    dispatch_pending(db_session)


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(db_session: Session) -> None:
    db_session.info.pop("pending_jobs", None)


def run(*, db_session: Session, job_id: int) -> str:
    """Perform one job if still pending; safe to call twice or concurrently.

    The attempt is counted and committed before the work starts, so a worker lost mid-job (hard time limit,
    out of memory, host gone: its transaction never commits) still uses one up, and a job that kills every
    worker that takes it gives up after MAX_ATTEMPTS instead of being retried forever."""
    counted = db_session.execute(
        update(Job).where(Job.id == select(Job.id).where(Job.id == job_id, Job.state == "pending")
                          .with_for_update(skip_locked=True).scalar_subquery())
        .values(attempts=Job.attempts + 1, started_at=utcnow()).returning(Job.attempts)).scalar()
    if counted is None:
        db_session.rollback()
        state = db_session.scalar(select(Job.state).where(Job.id == job_id))
        return "busy_or_missing" if state in (None, "pending") else state
    if counted > MAX_ATTEMPTS:
        db_session.execute(update(Job).where(Job.id == job_id).values(
            state="failed", last_error=f"gave up: {MAX_ATTEMPTS} attempts ended without a result (worker lost)"))
        db_session.commit()
        return "failed"
    db_session.commit()
    job = db_session.scalar(select(Job).where(Job.id == job_id, Job.state == "pending")
                            .with_for_update(skip_locked=True))
    if job is None:  # another delivery took it between the two statements; it runs it
        db_session.rollback()
        return "busy_or_missing"
    try:
        HANDLERS[job.kind](db_session=db_session, **job.payload)
    except Exception as exc:  # recorded on the row; the sweeper retries until MAX_ATTEMPTS
        db_session.rollback()
        _record_failure(db_session, job_id, exc)
        raise
    job.state, job.finished_at = "done", utcnow()
    db_session.commit()
    return "done"


def _record_failure(db_session: Session, job_id: int, exc: Exception) -> None:
    job = db_session.get(Job, job_id)
    job.last_error = f"{type(exc).__name__}: {exc}"[:2000]
    if job.attempts >= MAX_ATTEMPTS:
        job.state = "failed"
    db_session.commit()


def due_for_retry(*, db_session: Session, limit: int = 500) -> list[tuple[int, str]]:
    """Pending jobs whose lease expired and whose message is lost: lease them again and return their ids and kinds.

    A kind's queue is first in, first out, so a pending job never taken is still on it, waiting its turn, while
    workers keep taking the jobs before it. It is lost only if a later job of its kind was taken (its message was
    passed by: Redis lost it) or nothing of its kind has been taken for a lease (workers down, Redis flushed, or one
    job running longer than a lease); a job taken before (attempts) and pending again lost its worker. Only those
    are re-sent: under a backlog longer than the lease the sweeper re-sent most of the queue, once or twice a job
    (6,720 redundant deliveries in a simulated day of 3,380 uploads, migration 0021). A job sent out of id order
    (two commits crossing) can still be re-sent once, harmlessly.

    The new lease is the job's age, at least the lease and at most MAX_RESEND_LEASE_S: a job re-sent and still
    pending is re-sent about log2(wait / lease) times, then every 10 minutes. The cap bounds how long a re-send lost
    in turn (Redis flushed again) waits. Times are on the service clock (``created_at`` and ``started_at`` are set
    from ``utcnow``)."""
    now = utcnow()
    lease = clock.machine_seconds(lease_s())
    rows = db_session.execute(_DUE, {
        "now": now, "stalled": now - lease, "lease": lease, "cap": clock.machine_seconds(MAX_RESEND_LEASE_S),
        "limit": limit}).all()
    db_session.commit()
    return [(job_id, kind) for job_id, kind in rows]


# The newest job taken of each kind with jobs pending (one probe of ix_job_kind_started per kind), then the
# pending jobs past their lease that it shows lost.
_DUE = text("""
WITH front AS MATERIALIZED (
    SELECT k.kind, f.id, f.started_at
    FROM (SELECT DISTINCT kind FROM job WHERE state = 'pending') k
    LEFT JOIN LATERAL (SELECT id, started_at FROM job WHERE kind = k.kind AND started_at IS NOT NULL
                       ORDER BY id DESC LIMIT 1) f ON true),
due AS (
    SELECT j.id FROM job j JOIN front USING (kind)
    WHERE j.state = 'pending' AND j.leased_until < :now
      AND (j.attempts > 0 OR front.id IS NULL OR j.id < front.id OR front.started_at < :stalled)
    ORDER BY j.id LIMIT :limit FOR UPDATE OF j SKIP LOCKED)
UPDATE job SET leased_until = CAST(:now AS timestamptz) + least(greatest(CAST(:lease AS interval),
                                                                          CAST(:now AS timestamptz) - created_at),
                                                                 CAST(:cap AS interval))
WHERE id IN (SELECT id FROM due)
RETURNING id, kind""")
