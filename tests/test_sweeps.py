"""Beat sweeps: items that always fail cannot starve the others."""
from __future__ import annotations

from sqlalchemy import delete, select

from core import jobs
from core.batch import sweep
from core.db import session_scope


def test_items_that_always_fail_do_not_starve_the_rest():
    """Page size 3, the first 3 items always fail: the same run goes on to the next page."""
    with session_scope() as db:
        ids = [jobs.add(db, "test.sweep_item", n=i).id for i in range(5)]
        db.commit()
    broken, seen = set(ids[:3]), []

    def act(db_session, item_id: int) -> bool:
        seen.append(item_id)
        if item_id in broken:
            raise RuntimeError("this item's money does not add up")
        return True

    try:
        due = select(jobs.Job.id).where(jobs.Job.id.in_(ids)).order_by(jobs.Job.id).limit(3)
        with session_scope() as db:
            assert sweep(db, due, act, what="test_sweep") == 2
        assert seen == ids  # every item was tried once, the failing ones first
    finally:
        with session_scope() as db:
            db.execute(delete(jobs.Job).where(jobs.Job.id.in_(ids)))
            db.commit()
