"""Worker credit: a transparent score shown to the worker.

score = 100 + (+1 per accepted claim) + (-5 per violation: failed spot check, upheld fraud appeal),
clamped to 0..200. Stored as a running value with an audit trail in claim events.
"""
from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from tasks.models import WorkerCredit

START = 100
ON_ACCEPTED = 1
ON_VIOLATION = -5
MIN, MAX = 0, 200
FORMULA = "100 + 1 per accepted claim − 5 per violation (failed spot check), kept between 0 and 200"


def adjust(db_session: Session, worker_id: int, delta: int) -> None:
    """Add ``delta`` to the worker's credit (flushes only)."""
    db_session.execute(insert(WorkerCredit).values(worker_id=worker_id, score=START)
                       .on_conflict_do_nothing(index_elements=["worker_id"]))
    db_session.execute(update(WorkerCredit).where(WorkerCredit.worker_id == worker_id)
                       .values(score=func_clamp(WorkerCredit.score + delta)))


def func_clamp(expr):
    """SQL GREATEST/LEAST clamp into [MIN, MAX]."""
    from sqlalchemy import func

    return func.least(MAX, func.greatest(MIN, expr))
