"""Ops' side of acceptance: the spot-check queue and verdicts, appeals and their decisions."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from accounts.models import User
from accounts.service import require_role
from core.errors import Conflict, NotFound
from core.models import utcnow
from tasks import claims, credit, hooks
from tasks.acceptance import accept
from tasks.models import APPEAL_WINDOW, Appeal, Claim, SpotCheck, Task


def _lock_open(db_session: Session, stmt, noun: str, code: str):
    """The item to decide, row-locked: 404 if missing, 409 if already decided."""
    row = db_session.scalar(stmt.with_for_update())
    if row is None:
        raise NotFound(f"No such {noun}.", code=f"{code}_not_found")
    if row.state != "open":
        raise Conflict(f"This {noun} is already {row.state}.", code=f"{code}_decided")
    return row


def open_spot_checks(*, db_session: Session, ops: User, limit: int = 50) -> list[SpotCheck]:
    """Sampled claims waiting for ops, oldest first."""
    require_role(ops, "ops")
    return list(db_session.scalars(select(SpotCheck).where(SpotCheck.state == "open")
                                   .order_by(SpotCheck.id).limit(limit)))


def spot_check_verdict(*, db_session: Session, ops: User, spot_check_id: int, passed: bool, reason: str) -> SpotCheck:
    """Pass (accept and pay) or fail (close, credit −5) a sampled claim."""
    require_role(ops, "ops")
    check = _lock_open(db_session, select(SpotCheck).where(SpotCheck.id == spot_check_id), "spot check", "spot_check")
    claim = db_session.get(Claim, check.claim_id)
    task = db_session.get(Task, claim.task_id)
    if passed:
        accept(db_session, claim, task, actor_id=ops.id, reason=f"spot check passed: {reason}",
               from_states=("spot_check",))
    else:
        claims.transition(db_session, claim.id, ("spot_check",), "closed", actor_id=ops.id,
                          reason=f"spot check failed: {reason}", resolved_at=utcnow())
        credit.adjust(db_session, claim.worker_id, credit.ON_VIOLATION, "spot check failed", claim.id)
    check.state, check.reviewer_id = ("passed" if passed else "failed"), ops.id
    check.verdict_reason, check.decided_at = reason, utcnow()
    db_session.commit()
    return check


def sampling_report(*, db_session: Session, ops: User) -> list[dict]:
    """Per stratum: claims confirmed, sampled, failed — to tune the base rate."""
    require_role(ops, "ops")
    rows = db_session.execute(select(SpotCheck.stratum, SpotCheck.state, func.count())
                              .group_by(SpotCheck.stratum, SpotCheck.state)).all()
    out: dict[str, dict] = {}
    for stratum, state, n in rows:
        r = out.setdefault(stratum, {"stratum": stratum, "confirmed": 0, "sampled": 0, "failed": 0, "passed": 0})
        r["confirmed"] += n
        if state != "not_sampled":
            r["sampled"] += n
        if state in ("failed", "passed"):
            r[state] += n
    for r in out.values():
        r["sampling_rate"] = round(r["sampled"] / r["confirmed"], 4) if r["confirmed"] else 0.0
        decided = r["failed"] + r["passed"]
        r["fraud_rate"] = round(r["failed"] / decided, 4) if decided else None
    return sorted(out.values(), key=lambda r: r["stratum"])


def appeal(*, db_session: Session, worker: User, claim_id: int, reason: str) -> Appeal:
    """The worker appeals a rejection or failed spot check within the window."""
    found = claims.get_own(db_session=db_session, worker=worker, claim_id=claim_id, for_update=True)
    if found.resolved_at and utcnow() - found.resolved_at > APPEAL_WINDOW:
        raise Conflict("The appeal window of 7 days has passed.", code="appeal_window_closed")
    # Once per claim (decided under the claim's row lock): a denied appeal leaves the claim closed, not appealable.
    if db_session.scalar(select(Appeal.id).where(Appeal.claim_id == claim_id, Appeal.kind == "appeal")) is not None:
        raise Conflict("This claim was appealed already; an appeal is decided once.", code="already_appealed")
    prior = found.state
    claims.transition(db_session, claim_id, ("rejected", "closed"), "appealed", actor_id=worker.id, reason=reason)
    row = Appeal(kind="appeal", claim_id=claim_id, worker_id=worker.id, filed_by=worker.id, from_state=prior,
                 reason=reason, state="open")
    db_session.add(row)
    db_session.commit()
    return row


def open_appeals(*, db_session: Session, ops: User, limit: int = 50) -> list[Appeal]:
    """Appeals waiting for ops."""
    require_role(ops, "ops")
    return list(db_session.scalars(select(Appeal).where(Appeal.state == "open").order_by(Appeal.id).limit(limit)))


def decide_appeal(*, db_session: Session, ops: User, appeal_id: int, overturn: bool, reason: str) -> Appeal:
    """Overturn (accept and pay) or uphold (close) an appeal; the money follows the decision."""
    require_role(ops, "ops")
    row = _lock_open(db_session, select(Appeal).where(Appeal.id == appeal_id, Appeal.kind == "appeal"), "appeal",
                     "appeal")
    claim = db_session.get(Claim, row.claim_id)
    if overturn:
        accept(db_session, claim, db_session.get(Task, claim.task_id), actor_id=ops.id,
               reason=f"appeal upheld for the worker: {reason}", from_states=("appealed",))
    else:
        claims.transition(db_session, claim.id, ("appealed",), "closed", actor_id=ops.id,
                          reason=f"appeal denied: {reason}")
    row.state, row.decided_by, row.decision_reason, row.decided_at = (
        "overturned" if overturn else "denied"), ops.id, reason, utcnow()
    db_session.commit()
    return row


def spot_check_detail(*, db_session: Session, check: SpotCheck) -> dict:
    """A spot check with the claim, its fixes (with reasons) and evidence (with matches) for ops."""
    return spot_check_details(db_session=db_session, checks=[check])[0]


def spot_check_details(*, db_session: Session, checks: list[SpotCheck]) -> list[dict]:
    """``spot_check_detail`` of each check, in order: a page of the queue in a statement per part (claims, fixes,
    files, matches), not one per part and check."""
    ids = [c.claim_id for c in checks]
    claims_by_id = {c.id: c for c in db_session.scalars(select(Claim).where(Claim.id.in_(ids)))} if ids else {}
    # "checkins" and "evidence": sections registered by checkin and evidence (tasks.hooks).
    sections = hooks.review_details(db_session, ids) if ids else {}
    return [{"id": check.id, "claim_id": check.claim_id, "probability": check.probability,
             "stratum": check.stratum, "state": check.state, "verdict_reason": check.verdict_reason,
             "claim": {c.key: getattr(claims_by_id[check.claim_id], c.key) for c in Claim.__table__.columns},
             **sections[check.claim_id]} for check in checks]


def complain(*, db_session: Session, merchant: User, claim_id: int, reason: str) -> Appeal:
    """A merchant reports a worker about one of its task's claims; ops decide."""
    require_role(merchant, "merchant")
    found = claims.get_for(db_session=db_session, user=merchant, claim_id=claim_id)
    row = Appeal(kind="complaint", claim_id=claim_id, worker_id=found.worker_id, filed_by=merchant.id,
                 from_state=found.state, reason=reason, state="open")
    db_session.add(row)
    db_session.commit()
    return row


def decide_complaint(*, db_session: Session, ops: User, appeal_id: int, uphold: bool, reason: str) -> Appeal:
    """Uphold (a violation: credit −5, decaying) or dismiss a merchant's complaint."""
    require_role(ops, "ops")
    row = _lock_open(db_session, select(Appeal).where(Appeal.id == appeal_id, Appeal.kind == "complaint"),
                     "complaint", "complaint")
    if uphold:
        credit.adjust(db_session, row.worker_id, credit.ON_VIOLATION, "complaint upheld", row.claim_id)
    row.state, row.decided_by, row.decision_reason, row.decided_at = (
        "upheld" if uphold else "dismissed"), ops.id, reason, utcnow()
    db_session.commit()
    return row


def stats_by_type(*, db_session: Session, ops: User, since, until) -> list[dict]:
    """Per task type: claims and how they ended, with acceptance, rejection and spot-check failure rates."""
    require_role(ops, "ops")
    rows = db_session.execute(select(Task.type, Claim.state, func.count()).join(Task, Task.id == Claim.task_id)
                              .where(Claim.claimed_at >= since, Claim.claimed_at < until)
                              .group_by(Task.type, Claim.state)).all()
    failed = dict(db_session.execute(
        select(Task.type, func.count()).select_from(SpotCheck).join(Claim, Claim.id == SpotCheck.claim_id)
        .join(Task, Task.id == Claim.task_id).where(SpotCheck.state == "failed", Claim.claimed_at >= since,
                                                    Claim.claimed_at < until).group_by(Task.type)).all())
    out: dict[str, dict] = {}
    for kind, state, n in rows:
        r = out.setdefault(kind, {"type": kind, "claims": 0, "by_state": {}})
        r["claims"] += n
        r["by_state"][state] = n
    for kind, r in out.items():
        done = sum(r["by_state"].get(s, 0) for s in ("accepted", "paid", "rejected", "closed"))
        paid = r["by_state"].get("paid", 0) + r["by_state"].get("accepted", 0)
        r["acceptance_rate"] = round(paid / done, 4) if done else None
        r["rejection_rate"] = round(r["by_state"].get("rejected", 0) / done, 4) if done else None
        r["spot_check_failures"] = failed.get(kind, 0)
    return sorted(out.values(), key=lambda r: r["type"])
