"""What ``checkin`` tells ``tasks`` (and, through it, ``evidence``) at start-up: see ``tasks.hooks``."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from checkin.models import Checkin, of_claim
from tasks import hooks
from tasks.models import Claim


def _of_claim(db_session: Session, claim_id: int) -> list | None:
    """of_claim's terms for a claim (its creation time read first), or None when there is no such claim."""
    claimed_at = db_session.scalar(select(Claim.claimed_at).where(Claim.id == claim_id))
    return None if claimed_at is None else of_claim(claim_id, claimed_at)


def claim_fix(db_session: Session, claim_id: int) -> hooks.ClaimFix | None:
    """The claim's check-in fix (kind 'in'), or None before the worker checked in."""
    terms = _of_claim(db_session, claim_id)
    fix = None if terms is None else db_session.scalar(select(Checkin).where(*terms, Checkin.kind == "in"))
    return None if fix is None else hooks.ClaimFix(lat=fix.lat, lon=fix.lon, client_time=fix.client_time)


def review_checkins(db_session: Session, claim_id: int) -> list[dict[str, Any]]:
    """The claim's fixes with their verdicts and reasons, for the ops spot-check view."""
    terms = _of_claim(db_session, claim_id)
    fixes = [] if terms is None else db_session.scalars(select(Checkin).where(*terms).order_by(Checkin.id)).all()
    return [{"id": f.id, "kind": f.kind, "lat": f.lat, "lon": f.lon, "verdict": f.verdict,
             "distance_m": f.distance_m, "reasons": f.reasons, "signals": f.signals} for f in fixes]


def register() -> None:
    """Fill checkin's slots in ``tasks.hooks``."""
    hooks.register_claim_fix(claim_fix)
    hooks.register_review_detail("checkins", review_checkins)
