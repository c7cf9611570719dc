"""Every claim action against every claim state: exactly the lifecycle's arrows are allowed."""
from __future__ import annotations

import pytest
from sqlalchemy import delete, update

from core.errors import FieldproofError
from tasks import acceptance, claims, reviews
from tasks.models import Appeal, CLAIM_STATES, Claim, SpotCheck
from tests.fieldwork import claimed

# action -> states it may start from (the arrows of the lifecycle in DESIGN.md)
ALLOWED = {
    "cancel": {"claimed"},
    "submit": {"checked_in", "changes_requested"},
    "confirm": {"submitted"},
    "reject": {"submitted"},
    "request_changes": {"submitted"},
    "appeal": {"rejected", "closed"},
    "spot_check_pass": {"spot_check"},
}


def _act(action, db, claim_id, worker, merchant, ops):
    if action == "cancel":
        claims.cancel(db_session=db, worker=worker, claim_id=claim_id)
    elif action == "submit":
        acceptance.submit(db_session=db, worker=worker, claim_id=claim_id)
    elif action == "confirm":
        acceptance.confirm(db_session=db, merchant=merchant, claim_id=claim_id)
    elif action == "reject":
        acceptance.reject(db_session=db, merchant=merchant, claim_id=claim_id, reason_code="other", reason="r")
    elif action == "request_changes":
        acceptance.request_changes(db_session=db, merchant=merchant, claim_id=claim_id, reason="r")
    elif action == "appeal":
        reviews.appeal(db_session=db, worker=worker, claim_id=claim_id, reason="r")
    elif action == "spot_check_pass":
        check = SpotCheck(claim_id=claim_id, probability=1.0, stratum="flagged", state="open")
        db.add(check)
        db.flush()
        reviews.spot_check_verdict(db_session=db, ops=ops, spot_check_id=check.id, passed=True, reason="ok")


@pytest.mark.parametrize("action", sorted(ALLOWED))
def test_action_allowed_exactly_from_its_states(client, db, action):
    from accounts.models import User
    from tests.helpers import make_user

    task, claim, _, _ = claimed(client, db, evidence={"photos_min": 0, "video": False}, slots=2)
    worker = db.get(User, claim["worker_id"])
    merchant = db.get(User, task["merchant_id"])
    ops = make_user(db, "ops")
    for state in CLAIM_STATES:
        # Services commit (inside the test's transaction), so each round resets the claim by hand.
        db.execute(delete(SpotCheck).where(SpotCheck.claim_id == claim["id"]))
        db.execute(delete(Appeal).where(Appeal.claim_id == claim["id"]))  # a claim is appealed once
        db.execute(update(Claim).where(Claim.id == claim["id"]).values(state=state, changes_requested=False,
                                                                      resolved_at=None))
        try:
            _act(action, db, claim["id"], worker, merchant, ops)
            ok = True
        except FieldproofError as exc:
            assert exc.code in ("invalid_transition", "already_checked_in"), (action, state, exc.code)
            ok = False
        assert ok == (state in ALLOWED[action]), (action, state)
        db.expire_all()
