"""Beat jobs that touch many merchants, tasks or claims: one transaction per item."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import Session

from core.logging import get_logger

log = get_logger("core.batch")
T = TypeVar("T")


def each_in_own_transaction(db_session: Session, ids: Iterable[int], fn: Callable[[Session, int], T], *,
                            what: str) -> list[T]:
    """Run ``fn(db_session, id)`` and commit, per id; an item that fails is rolled back, logged and skipped.

    One bad item (a task whose money no longer adds up, a row another host holds) must never block the
    rest of a sweep, and never roll back the items already done.
    """
    results: list[T] = []
    for item_id in ids:
        try:
            result = fn(db_session, item_id)
            db_session.commit()
        except Exception as exc:  # logged with its id; the next run of the sweep tries it again
            db_session.rollback()
            log.error(f"{what}_failed", id=item_id, error=f"{type(exc).__name__}: {exc}"[:500])
            continue
        results.append(result)
    return results


def sweep(db_session: Session, ids: Select, fn: Callable[[Session, int], bool], *, what: str) -> int:
    """Read the ids a sweep is due for, end that read, then ``fn`` each in its own transaction; returns how
    many ``fn`` acted on (it re-checks its item under a lock and returns False when another host got there)."""
    due = db_session.scalars(ids).all()
    db_session.commit()
    return sum(each_in_own_transaction(db_session, due, fn, what=what))
