"""What ``checkin`` tells ``tasks`` (and, through it, ``evidence``) at start-up: see ``tasks.hooks``."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from checkin.models import Checkin, of_claim
from tasks import hooks


def claim_fix(db_session: Session, claim_id: int) -> hooks.ClaimFix | None:
    """The claim's check-in fix (kind 'in'), or None before the worker checked in."""
    fix = db_session.scalar(select(Checkin).where(*of_claim(claim_id), Checkin.kind == "in"))
    return None if fix is None else hooks.ClaimFix(lat=fix.lat, lon=fix.lon, client_time=fix.client_time)


def review_checkins(db_session: Session, claim_id: int) -> list[dict[str, Any]]:
    """The claim's fixes with their verdicts and reasons, for the ops spot-check view."""
    fixes = db_session.scalars(select(Checkin).where(*of_claim(claim_id)).order_by(Checkin.id)).all()
    return [{"id": f.id, "kind": f.kind, "lat": f.lat, "lon": f.lon, "verdict": f.verdict,
             "distance_m": f.distance_m, "reasons": f.reasons, "signals": f.signals} for f in fixes]


def register() -> None:
    """Fill checkin's slots in ``tasks.hooks``."""
    hooks.register_claim_fix(claim_fix)
    hooks.register_review_detail("checkins", review_checkins)
