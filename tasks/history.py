"""What happened to a claim, as its worker (or the task's merchant, or ops) may read it: every state change with
its reason, the appeals, the spot check's outcome and the credit it moved; and a worker's recent credit changes."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.models import User
from accounts.service import require_role
from tasks import claims, credit
from tasks.models import Appeal, Claim, ClaimEvent, CreditEvent, SpotCheck

# Until when the worker can still act on a claim in these states (check in / resubmit): its expires_at.
DEADLINE_STATES = ("claimed", "changes_requested")


def _events(db_session: Session, claim_id: int) -> list[dict]:
    # The actor's role, never their id: a worker learns "the merchant rejected", not who at the merchant did.
    rows = db_session.execute(select(ClaimEvent, User.role).outerjoin(User, User.id == ClaimEvent.actor_id)
                              .where(ClaimEvent.claim_id == claim_id).order_by(ClaimEvent.id)).all()
    out = []
    for ev, role in rows:
        data = ev.data or {}  # sampling draws stay out: only the reason code and the amount paid are shown
        out.append({"from_state": ev.from_state, "to_state": ev.to_state, "at": ev.at, "by": role or "system",
                    "reason": ev.reason, "reason_code": data.get("reason_code"), "reward_fen": data.get("reward_fen")})
    return out


def _appeals(db_session: Session, claim_id: int) -> list[dict]:
    rows = db_session.scalars(select(Appeal).where(Appeal.claim_id == claim_id).order_by(Appeal.id))
    return [{"id": a.id, "kind": a.kind, "state": a.state, "reason": a.reason, "decision_reason": a.decision_reason,
             "created_at": a.created_at, "decided_at": a.decided_at} for a in rows]


def _spot_check(db_session: Session, claim_id: int) -> dict | None:
    row = db_session.scalar(select(SpotCheck).where(SpotCheck.claim_id == claim_id))
    if row is None or row.state == "not_sampled":
        return None
    return {"state": row.state, "reason": row.verdict_reason, "decided_at": row.decided_at}


def _credit(db_session: Session, claim: Claim, viewer: User) -> list[dict]:
    if viewer.role not in ("ops", "admin") and viewer.id != claim.worker_id:
        return []  # the worker's credit is theirs (merchants see the score on the worker's profile)
    rows = db_session.scalars(select(CreditEvent).where(CreditEvent.claim_id == claim.id).order_by(CreditEvent.id))
    return [{"delta": r.delta, "reason": r.reason, "at": r.at} for r in rows]


def timeline(*, db_session: Session, user: User, claim_id: int) -> dict:
    """A claim's history with reasons, appeals, spot check, credit changes, deadline and the amount paid."""
    found = claims.get_for(db_session=db_session, user=user, claim_id=claim_id)
    events = _events(db_session, claim_id)
    paid = [e["reward_fen"] for e in events if e["to_state"] == "paid" and e["reward_fen"] is not None]
    return {"claim_id": found.id, "state": found.state, "events": events, "appeals": _appeals(db_session, claim_id),
            "spot_check": _spot_check(db_session, claim_id), "credit": _credit(db_session, found, user),
            "deadline": found.expires_at if found.state in DEADLINE_STATES else None,
            "paid_fen": paid[-1] if paid else None, "resolved_at": found.resolved_at}


def credit_changes(*, db_session: Session, worker: User, limit: int = 20) -> dict:
    """The worker's score, its formula and the latest changes with their reasons and claims."""
    require_role(worker, "worker")
    rows = db_session.scalars(select(CreditEvent).where(CreditEvent.worker_id == worker.id)
                              .order_by(CreditEvent.id.desc()).limit(limit))
    return {"score": credit.score(db_session, worker.id), "formula": credit.FORMULA,
            "events": [{"delta": r.delta, "reason": r.reason, "claim_id": r.claim_id, "at": r.at} for r in rows]}
