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


def sweep(db_session: Session, ids: Select, fn: Callable[[Session, int], bool], *, what: str,
          max_pages: int | None = 10, every_page: bool = False) -> int:
    """Read the ids a sweep is due for (``ids`` selects the id column, ordered by it, with a limit), end that
    read, then ``fn`` each in its own transaction; returns how many ``fn`` acted on (it re-checks its item under
    a lock and returns False when another host got there).

    A page with failures is followed by the next page (ids after it) in the same run, up to ``max_pages``:
    items that fail every time would otherwise fill the first page of every run and starve the rest. With
    ``every_page`` every page follows, failures or not: for sweeps whose items can stay due without failing (a
    closed task still holding what its claims need), which would fill the first page just the same.
    ``max_pages`` None: no bound."""
    id_column, after, acted, pages = ids.selected_columns[0], None, 0, 0
    while max_pages is None or pages < max_pages:
        pages += 1
        due = db_session.scalars(ids if after is None else ids.where(id_column > after)).all()
        db_session.commit()
        if not due:
            break
        done = each_in_own_transaction(db_session, due, fn, what=what)
        acted += sum(done)
        if len(done) == len(due) and not every_page:  # no failure: the rest waits for the next run, as always
            break
        after = due[-1]
    return acted
