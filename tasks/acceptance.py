"""Acceptance: submit, merchant confirm/reject/request changes, auto-confirm, spot checks, payment.

Every step is a guarded claim transition with its audit row; money moves in the same transaction.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from accounts.models import User
from accounts.service import require_role
from core import clock, reasons
from core.batch import sweep
from core.config import get_settings
from core.errors import Conflict, InvalidInput
from core.models import utcnow
from ledger import service as ledger
from tasks import claims, credit, hooks
from tasks import service as task_service
from tasks.errors import ClaimNotFound, EvidencePending
from tasks.models import Claim, Rating, SpotCheck, Task

# Flags that always send a claim to a spot check, whatever the dice say: the registry's hard codes.
ALWAYS_SAMPLE = reasons.FORCES_SPOT_CHECK


def submit(*, db_session: Session, worker: User, claim_id: int) -> Claim:
    """The worker submits a checked-in claim whose evidence meets the task's requirements."""
    found = claims.get_own(db_session=db_session, worker=worker, claim_id=claim_id, for_update=True)
    # The evidence requirements (and any other precondition) are registered by the packages that know them.
    hooks.run_submit_checks(db_session, found, db_session.get(Task, found.task_id))
    claim = claims.transition(db_session, claim_id, ("checked_in", "changes_requested"), "submitted",
                              actor_id=worker.id, submitted_at=utcnow())
    db_session.commit()
    return claim


def _merchant_claim(db_session: Session, merchant: User, claim_id: int) -> tuple[Claim, Task]:
    require_role(merchant, "merchant")
    found = claims.get_for(db_session=db_session, user=merchant, claim_id=claim_id, for_update=True)
    return found, db_session.get(Task, found.task_id)


def confirm(*, db_session: Session, merchant: User, claim_id: int) -> Claim:
    """The merchant confirms the work; then it is sampled for a spot check or accepted and paid. Not while its
    files are still being checked (409 evidence_processing): the verdicts are what the merchant confirms on."""
    found, task = _merchant_claim(db_session, merchant, claim_id)
    running, unchecked = _evidence_checks(db_session, claim_id)
    if running:
        raise EvidencePending(retry_after_s=10)
    claim = claims.transition(db_session, claim_id, ("submitted",), "confirmed", actor_id=merchant.id,
                              confirmed_at=utcnow())
    claim = _after_confirmation(db_session, claim, task, actor_id=merchant.id, unchecked=unchecked)
    db_session.commit()
    return claim


def reject(*, db_session: Session, merchant: User, claim_id: int, reason_code: str, reason: str) -> Claim:
    """The merchant rejects with a reason code and text the worker sees (the worker may appeal)."""
    if not reason.strip():
        raise InvalidInput("A rejection needs a reason.", code="reason_required")
    found, task = _merchant_claim(db_session, merchant, claim_id)
    claim = claims.transition(db_session, claim_id, ("submitted",), "rejected", actor_id=merchant.id,
                              reason=f"{reason_code}: {reason}", data={"reason_code": reason_code},
                              resolved_at=utcnow())
    db_session.commit()
    return claim


def request_changes(*, db_session: Session, merchant: User, claim_id: int, reason: str) -> Claim:
    """Send the claim back to the worker once, with a deadline to resubmit."""
    found, task = _merchant_claim(db_session, merchant, claim_id)
    if found.changes_requested:
        raise Conflict("Changes were already requested once for this claim; confirm or reject it.",
                       code="changes_already_requested")
    deadline = utcnow() + timedelta(seconds=get_settings().changes_deadline_s)
    claim = claims.transition(db_session, claim_id, ("submitted",), "changes_requested", actor_id=merchant.id,
                              reason=reason, changes_requested=True, expires_at=deadline)
    db_session.commit()
    return claim


def auto_confirm_due(*, db_session: Session, limit: int = 500) -> int:
    """Confirm claims the merchant left alone too long; safe to run twice and on several hosts.

    One transaction per claim: paying locks the task, the merchant's escrow and the platform account, and
    holding those across many claims (in claim order, not lock order) deadlocked with merchants confirming
    their own submissions at the same time (found by `fieldproof simulate`). A claim that fails is logged
    and skipped, never blocking the others.
    """
    cutoff = utcnow() - timedelta(seconds=get_settings().auto_confirm_after_s)
    # Claims whose files are still being checked are left for a later run in the query itself: read and skipped
    # one by one, a backlog of them cost every run ~1.5 ms each (a simulated day's evidence backlog: 0.8 s a run).
    due = (select(Claim.id).where(Claim.state == "submitted", Claim.submitted_at < cutoff,
                                  ~hooks.unchecked_evidence(Claim.id, _checks_since()))
           .order_by(Claim.id).limit(limit))
    return sweep(db_session, due, _auto_confirm_one, what="auto_confirm_claim")


def _auto_confirm_one(db_session: Session, claim_id: int) -> bool:
    # The claim's lock and its files' checks in one statement (the checks read with the statement's snapshot,
    # taken as the lock is: SKIP LOCKED never waits).
    locked = db_session.execute(select(Claim.id, *_check_columns(Claim.id))
                                .where(Claim.id == claim_id, Claim.state == "submitted")
                                .with_for_update(of=Claim, skip_locked=True)).first()
    if locked is None:  # the merchant or another beat host got there first
        return False
    _, running, unchecked = locked
    if running:  # confirmed by a later run, once its files are checked
        return False
    claim = claims.transition(db_session, claim_id, ("submitted",), "confirmed", actor_id=None,
                              reason="auto-confirmed: no merchant action in time", confirmed_at=utcnow())
    _after_confirmation(db_session, claim, db_session.get(Task, claim.task_id), actor_id=None, unchecked=unchecked)
    return True


def _checks_since() -> datetime:
    """Files that arrived after this and are not checked yet are still being checked; older ones count as stuck.
    Machine time, like a job's lease: how long checks take depends on the workers, not on a simulated clock."""
    return utcnow() - clock.machine_seconds(get_settings().evidence_check_wait_s)


def _evidence_checks(db_session: Session, claim_id: int) -> tuple[bool, bool]:
    """Whether some of the claim's files are still being checked (not for long enough to call the checks stuck),
    and whether any is unchecked at all (stuck ones too), in one statement."""
    running, unchecked = db_session.execute(select(*_check_columns(claim_id))).one()
    return bool(running), bool(unchecked)


def _check_columns(claim_id) -> tuple:
    """``_evidence_checks``' two answers as columns, for a claim id or a claim id column."""
    return hooks.unchecked_evidence(claim_id, _checks_since()), hooks.unchecked_evidence(claim_id)


def sampling_probability(risk_score: int, flags: list[str]) -> float:
    """Base rate raised linearly by the risk score; always 1 for the hard flags."""
    if ALWAYS_SAMPLE & set(flags):
        return 1.0
    base = get_settings().spot_check_base_rate
    return min(1.0, base + (1.0 - base) * risk_score / 100)


def _draw(claim_id: int) -> float:
    """A reproducible uniform draw per claim (so a retried confirmation samples the same way)."""
    seed = f"{get_settings().spot_check_seed}:{claim_id}".encode()
    return int.from_bytes(hashlib.sha256(seed).digest()[:8], "big") / 2**64


def _after_confirmation(db_session: Session, claim: Claim, task: Task, *, actor_id: int | None,
                        unchecked: bool) -> Claim:
    # ``unchecked``: a file whose duplicate search has not finished (only past evidence_check_wait_s: stuck, or a
    # job that failed for good) could still prove a re-used photo (a hard flag): the claim is never paid unseen.
    # Ops decide.
    p = 1.0 if unchecked else sampling_probability(claim.risk_score, claim.flags)
    draw = _draw(claim.id)
    stratum = _stratum(claim, unchecked)
    if draw < p:
        db_session.add(SpotCheck(claim_id=claim.id, probability=p, stratum=stratum, state="open"))
        data = {"probability": p, "draw": draw, "stratum": stratum} | ({"unchecked_evidence": unchecked}
                                                                       if unchecked else {})
        return claims.transition(db_session, claim.id, ("confirmed",), "spot_check", actor_id=actor_id, data=data)
    db_session.add(SpotCheck(claim_id=claim.id, probability=p, stratum=stratum, state="not_sampled"))
    return accept(db_session, claim, task, actor_id=actor_id, reason=f"not sampled (p={p:.3f})")


def _stratum(claim: Claim, unchecked: bool = False) -> str:
    if ALWAYS_SAMPLE & set(claim.flags):
        return "flagged"
    if unchecked:
        return "unchecked"
    return "high_risk" if claim.risk_score >= 50 else "low_risk" if claim.risk_score > 0 else "clean"


def accept(db_session: Session, claim: Claim, task: Task, *, actor_id: int | None, reason: str,
           from_states: tuple[str, ...] = ("confirmed",)) -> Claim:
    """Accept and pay the worker from escrow, in the caller's transaction (exactly once per claim)."""
    claim = claims.transition(db_session, claim.id, from_states, "accepted", actor_id=actor_id, reason=reason,
                              resolved_at=utcnow())
    commission = ledger.commission_for(task.reward_fen, task.commission_bp)
    # Task row first, then the ledger accounts: the order close/settle/review take them in, so paying a claim
    # while its task closes cannot deadlock.
    task_service.adjust_escrow(db_session, task, -(task.reward_fen + commission))
    ledger.pay_claim(db_session, merchant_id=task.merchant_id, worker_id=claim.worker_id, claim_id=claim.id,
                     reward_fen=task.reward_fen, commission_fen=commission)
    credit.adjust(db_session, claim.worker_id, credit.ON_ACCEPTED, "accepted", claim.id)
    return claims.transition(db_session, claim.id, ("accepted",), "paid", actor_id=actor_id,
                             data={"reward_fen": task.reward_fen, "commission_fen": commission})


def rate(*, db_session: Session, merchant: User, claim_id: int, stars: int, comment: str) -> Rating:
    """The merchant rates accepted work once (1-5)."""
    found, _ = _merchant_claim(db_session, merchant, claim_id)
    if found.state not in ("accepted", "paid"):
        raise Conflict(f"Only accepted work can be rated; this claim is {found.state}.", code="not_ratable")
    if db_session.scalar(select(Rating.id).where(Rating.claim_id == claim_id)) is not None:
        raise Conflict("This claim is already rated.", code="already_rated")
    row = Rating(claim_id=claim_id, merchant_id=merchant.id, worker_id=found.worker_id, stars=stars, comment=comment)
    db_session.add(row)
    db_session.commit()
    return row


def ratings_of(db_session: Session, claim_ids: list[int]) -> dict[int, Rating]:
    """The ratings given to these claims, by claim id (callers have already checked who may see the claims)."""
    if not claim_ids:
        return {}
    return {r.claim_id: r for r in db_session.scalars(select(Rating).where(Rating.claim_id.in_(claim_ids)))}


def may_see_worker(*, db_session: Session, viewer: User, worker_id: int) -> bool:
    """Who sees a worker's profile: the worker, ops and admins, and merchants the worker has claimed tasks of."""
    if viewer.role == "worker":
        return viewer.id == worker_id
    if viewer.role == "merchant":
        return bool(db_session.scalar(select(func.count()).select_from(Claim).join(Task, Task.id == Claim.task_id)
                                      .where(Claim.worker_id == worker_id, Task.merchant_id == viewer.id)))
    return True


def worker_profile(*, db_session: Session, viewer: User, worker_id: int) -> dict:
    """What the worker, a merchant who has worked with them, or ops sees: credit, ratings, track record."""
    if not may_see_worker(db_session=db_session, viewer=viewer, worker_id=worker_id):
        # Not found rather than forbidden: nobody learns which ids are workers.
        detail = "No such worker among your tasks' claims." if viewer.role == "merchant" else "No such worker."
        raise ClaimNotFound(detail, code="worker_not_found")
    avg, n = db_session.execute(select(func.avg(Rating.stars), func.count()).where(Rating.worker_id == worker_id)).one()
    states = dict(db_session.execute(select(Claim.state, func.count()).where(Claim.worker_id == worker_id)
                                     .group_by(Claim.state)).all())
    # The display name the worker chose, never the username, phone or devices (other people's identifiers).
    # Accounts registered without one have their username as display name (accounts.create): not for merchants.
    name, username = db_session.execute(select(User.display_name, User.username)
                                        .where(User.id == worker_id)).first() or ("", None)
    if viewer.role == "merchant" and name == username:
        name = ""
    return {"worker_id": worker_id, "display_name": name, "credit_score": claims.credit_of(db_session, worker_id),
            "credit_formula": credit.FORMULA, "rating_avg": None if avg is None else round(float(avg), 2),
            "ratings": n, "claims_by_state": states}
