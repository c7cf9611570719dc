"""Durable background jobs: a DB row is the truth, Redis only carries the nudge.

Work is recorded as a ``job`` row in the same transaction as the change that needs it
(an outbox). After commit the caller enqueues the Celery task; if Redis loses the
message, or a worker dies, the sweeper finds rows still ``pending`` past their lease
and enqueues them again. Handlers must be idempotent.
"""
from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from sqlalchemy import (BigInteger, DateTime, Integer, Interval, String, any_, bindparam, event, func, literal, select,
                        update)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
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

    id: Mapped[int] = pk()
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str | None] = mapped_column(String(2000))
    leased_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
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


# run()'s statements, built once (building them per delivery was most of its own cost). Plain columns, no ORM
# entity: a delivery's bookkeeping never loads a Job into the session the handler works in.
_JOB_ID = bindparam("job_id", type_=BigInteger)
_COUNT_ATTEMPT = (update(Job).where(Job.id == select(Job.id).where(Job.id == _JOB_ID, Job.state == "pending")
                                    .with_for_update(skip_locked=True).scalar_subquery())
                  .values(attempts=Job.attempts + 1).returning(Job.attempts)
                  .execution_options(synchronize_session=False))
_STATE = select(Job.state).where(Job.id == _JOB_ID)
_GIVE_UP = update(Job).where(Job.id == _JOB_ID).values(
    state="failed", last_error=f"gave up: {MAX_ATTEMPTS} attempts ended without a result (worker lost)",
).execution_options(synchronize_session=False)
_TAKE = select(Job.kind, Job.payload).where(Job.id == _JOB_ID, Job.state == "pending").with_for_update(skip_locked=True)
_DONE = (update(Job).where(Job.id == _JOB_ID)
         .values(state="done", finished_at=bindparam("at", type_=DateTime(timezone=True)))
         .execution_options(synchronize_session=False))


def run(*, db_session: Session, job_id: int) -> str:
    """Perform one job if still pending; safe to call twice or concurrently.

    The attempt is counted and committed before the work starts, so a worker lost mid-job (hard time limit,
    out of memory, host gone: its transaction never commits) still uses one up, and a job that kills every
    worker that takes it gives up after MAX_ATTEMPTS instead of being retried forever."""
    key = {"job_id": job_id}
    counted = db_session.execute(_COUNT_ATTEMPT, key).scalar()
    if counted is None:
        db_session.rollback()
        state = db_session.execute(_STATE, key).scalar()
        return "busy_or_missing" if state in (None, "pending") else state
    if counted > MAX_ATTEMPTS:
        db_session.execute(_GIVE_UP, key)
        db_session.commit()
        return "failed"
    db_session.commit()
    job = db_session.execute(_TAKE, key).one_or_none()
    if job is None:  # another delivery took it between the two statements; it runs it
        db_session.rollback()
        return "busy_or_missing"
    try:
        HANDLERS[job.kind](db_session=db_session, **job.payload)
    except Exception as exc:  # recorded on the row; the sweeper retries until MAX_ATTEMPTS
        db_session.rollback()
        _record_failure(db_session, job_id, exc)
        raise
    db_session.execute(_DONE, {**key, "at": utcnow()})
    db_session.commit()
    return "done"


def _record_failure(db_session: Session, job_id: int, exc: Exception) -> None:
    job = db_session.get(Job, job_id)
    job.last_error = f"{type(exc).__name__}: {exc}"[:2000]
    if job.attempts >= MAX_ATTEMPTS:
        job.state = "failed"
    db_session.commit()


def lease_lapsed(*, db_session: Session, job_ids: list[int]) -> None:
    """End the leases ``due_for_retry`` just gave jobs it then could not send (the broker went away): they are due
    again at the next sweep instead of after a lease as long as their age (up to MAX_RESEND_LEASE_S)."""
    if job_ids:
        db_session.execute(update(Job).where(Job.id.in_(job_ids), Job.state == "pending")
                           .values(leased_until=utcnow()).execution_options(synchronize_session=False))
        db_session.commit()


def due_for_retry(*, db_session: Session, limit: int = 500, queued: Collection[int] = ()) -> list[tuple[int, str]]:
    """Pending jobs whose lease expired: lease them again and return their ids and kinds. ``queued``: jobs whose
    message the caller saw still waiting in the broker (workers.broker): only delayed, not lost, so not re-sent.

    The new lease is the job's age, at least the lease and at most MAX_RESEND_LEASE_S: a job still pending after
    2 minutes is sent again at most once in the next 2 minutes, so a queue is re-sent about log2(wait / lease)
    times, then every 10 minutes, however long it is. With a plain 30 s lease a backlog longer than 30 s was re-sent
    whole every sweep: the queue filled with duplicates that each cost a delivery (found by `fieldproof simulate`,
    whose evidence queue waited minutes). The cap bounds how long a re-send lost in turn (Redis flushed again)
    waits. The age is on the service clock (``created_at`` is set by the ORM from ``utcnow``, as ``add`` does)."""
    now = utcnow()
    at = literal(now, DateTime(timezone=True))
    lease = func.least(func.greatest(literal(clock.machine_seconds(lease_s()), Interval()), at - Job.created_at),
                       literal(clock.machine_seconds(MAX_RESEND_LEASE_S), Interval()))
    due = select(Job.id).where(Job.state == "pending", Job.leased_until < now)
    if queued:
        due = due.where(~(Job.id == any_(bindparam("queued", list(queued), type_=ARRAY(BigInteger)))))
    rows = db_session.execute(
        update(Job).where(Job.id.in_(due.order_by(Job.id).limit(limit).with_for_update(skip_locked=True)))
        .values(leased_until=at + lease).returning(Job.id, Job.kind)).all()
    db_session.commit()
    return [(job_id, kind) for job_id, kind in rows]
