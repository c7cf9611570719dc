"""What ``checkin`` tells ``tasks`` (and, through it, ``evidence``) at start-up: see ``tasks.hooks``."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from checkin import signals as sig
from checkin.models import Checkin, of_claim, of_claims
from checkin.settings import get_checkin_settings
from core.models import utcnow
from tasks import hooks
from tasks.models import Claim


def _of_claim(db_session: Session, claim_id: int) -> list | None:
    """of_claim's terms for a claim (its creation time read first), or None when there is no such claim."""
    claimed_at = db_session.scalar(select(Claim.claimed_at).where(Claim.id == claim_id))
    return None if claimed_at is None else of_claim(claim_id, claimed_at)


def claim_fix(db_session: Session, claim_id: int) -> hooks.ClaimFix | None:
    """The claim's check-in fix (kind 'in'), or None before the worker checked in."""
    terms = _of_claim(db_session, claim_id)
    # the three values, not the whole fix (its signals and radio scan are most of the row)
    fix = None if terms is None else db_session.execute(
        select(Checkin.lat, Checkin.lon, Checkin.client_time).where(*terms, Checkin.kind == "in")).first()
    return None if fix is None else hooks.ClaimFix(lat=fix.lat, lon=fix.lon, client_time=fix.client_time)


def review_checkins(db_session: Session, claim_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The claims' fixes with their verdicts and reasons, for the ops spot-check view: a page of claims in two
    statements (their creation times, then every fix)."""
    out: dict[int, list[dict[str, Any]]] = {cid: [] for cid in claim_ids}
    claimed = db_session.execute(select(Claim.id, Claim.claimed_at).where(Claim.id.in_(claim_ids))).all()
    if not claimed:
        return out
    terms = of_claims([cid for cid, _ in claimed], min(at for _, at in claimed))
    for f in db_session.scalars(select(Checkin).where(*terms).order_by(Checkin.id)):
        out[f.claim_id].append({"id": f.id, "kind": f.kind, "lat": f.lat, "lon": f.lon, "verdict": f.verdict,
                                "distance_m": f.distance_m, "reasons": f.reasons, "signals": f.signals})
    return out


def dwell_at_submit(db_session: Session, claim: Claim, task) -> None:
    """A task asking for a minimum stay (``min_dwell_s``) whose claim is submitted without a check-out: the stay is
    unverified (``no_checkout``: a check-out fix on site is what shows it), and short (``short_dwell``) if the
    submission came sooner after the check-in than the minimum (server times: the phone's clock has no say). Signals
    on the claim, never a refusal (a phone that lost signal at the door still gets paid after a look), each weighed
    once however often the claim is submitted. The claim is locked by the caller (tasks.acceptance.submit)."""
    if not task.min_dwell_s or claim.checked_out_at is not None:  # 0: no minimum stay asked for
        return
    terms = of_claim(claim.id, claim.claimed_at)
    arrived = db_session.scalar(select(Checkin.server_time).where(*terms, Checkin.kind == "in"))
    if arrived is None:  # not checked in: the transition refuses the submit
        return
    s = get_checkin_settings()
    # the submission stands in for the check-out: the check-out's own dwell rule says whether the stay was short
    found = [sig.Signal("no_checkout", s.weight_no_checkout, "submitted without a check-out"),
             *sig.evaluate_checkout(arrived, utcnow(), s, task.min_dwell_s)]
    new = [x for x in found if x.code not in claim.flags]
    if new:
        claim.risk_score = min(100, claim.risk_score + sum(x.weight for x in new))
        claim.flags = sorted(set(claim.flags) | {x.code for x in new})


def register() -> None:
    """Fill checkin's slots in ``tasks.hooks``."""
    hooks.register_submit_check("dwell", dwell_at_submit)
    hooks.register_claim_fix(claim_fix)
    hooks.register_review_detail("checkins", review_checkins)
