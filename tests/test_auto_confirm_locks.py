"""Auto-confirm releases each claim's locks before the next (found by the simulator: it deadlocked with
merchants confirming at the same time while it held escrow/platform/task locks across many claims)."""
from __future__ import annotations

import threading

from sqlalchemy import select, text

from core.config import get_settings
from core.db import new_session
from tasks import acceptance
from tasks.models import Claim
from tests.helpers import wait_until
from tests.test_acceptance_concurrency import _cleanup, _committed_scenario


def test_a_blocked_claim_does_not_hold_back_the_ones_before_it(monkeypatch):
    monkeypatch.setattr(get_settings(), "spot_check_base_rate", 0.0)
    task_id, claim_ids, user_ids = _committed_scenario()
    blocker = new_session()
    try:
        # Someone else holds the last claim's worker row (as a concurrent payment would hold its accounts).
        blocker.execute(text("SELECT id FROM app_user WHERE id = :id FOR UPDATE"), {"id": user_ids[-1]})
        result = {}

        def run():
            s = new_session()
            try:
                result["n"] = acceptance.auto_confirm_due(db_session=s)
            finally:
                s.close()

        t = threading.Thread(target=run)
        t.start()
        def first_paid() -> bool:
            with new_session() as probe:
                return probe.scalar(select(Claim.state).where(Claim.id == claim_ids[0])) == "paid"

        assert wait_until(first_paid, timeout=20), \
            "the first claim's payment stayed uncommitted while a later claim was blocked"
        blocker.rollback()
        t.join(timeout=30)
        assert result["n"] == len(claim_ids)
    finally:
        blocker.rollback()
        blocker.close()
        _cleanup(task_id, claim_ids, user_ids)
