"""What ``evidence`` tells ``tasks`` at start-up: the submit precondition and the spot-check section."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from evidence.models import Evidence, EvidenceMatch
from tasks import hooks
from tasks.errors import EvidenceIncomplete


def evidence_counts(db_session: Session, claim_id: int) -> tuple[int, int]:
    """(photos, videos) uploaded for a claim and not withdrawn."""
    rows = dict(db_session.execute(select(Evidence.kind, func.count())
                                   .where(Evidence.claim_id == claim_id, Evidence.withdrawn_at.is_(None))
                                   .group_by(Evidence.kind)).all())
    return rows.get("image", 0), rows.get("video", 0)


def check_requirements(db_session: Session, claim, task) -> None:
    """Raise ``EvidenceIncomplete`` unless the claim has the photos (and video) its task asks for."""
    photos, videos = evidence_counts(db_session, claim.id)
    if photos < task.photos_min or (task.video_required and videos < 1):
        raise EvidenceIncomplete(f"Needs {task.photos_min} photo(s)" + (" and a video" if task.video_required else "")
                                 + f"; you have {photos} photo(s) and {videos} video(s).")


def unchecked_evidence(claim_id: Any, arrived_after: datetime | None = None) -> Any:
    """SQL: the claim (an id or a claim id column) has files (not withdrawn) whose processing has not finished (no
    duplicate verdict yet), arrived after ``arrived_after`` when given (ix_evidence_claim_id finds them)."""
    terms = [Evidence.claim_id == claim_id, Evidence.withdrawn_at.is_(None), Evidence.state != "processed"]
    if arrived_after is not None:
        terms.append(Evidence.created_at > arrived_after)
    return select(Evidence.id).where(*terms).exists()


def review_evidence(db_session: Session, claim_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The claims' files with their reasons and near-duplicate matches, for the ops spot-check view: a page of
    claims in two statements (every file, then every file's matches)."""
    files = db_session.scalars(select(Evidence).where(Evidence.claim_id.in_(claim_ids))
                               .order_by(Evidence.claim_id, Evidence.id)).all()
    matches: dict[int, list[dict[str, Any]]] = {ev.id: [] for ev in files}
    if files:
        for m in db_session.scalars(select(EvidenceMatch).where(EvidenceMatch.evidence_id.in_(list(matches)))
                                    .order_by(EvidenceMatch.evidence_id, EvidenceMatch.id)):
            matches[m.evidence_id].append({"matched_evidence_id": m.matched_evidence_id, "distance": m.distance,
                                           "method": m.method})
    out: dict[int, list[dict[str, Any]]] = {cid: [] for cid in claim_ids}
    for ev in files:
        out[ev.claim_id].append({"id": ev.id, "kind": ev.kind, "sha256": ev.sha256, "reasons": ev.reasons,
                                 "matches": matches[ev.id], "withdrawn": ev.withdrawn_at is not None})
    return out


def register() -> None:
    """Fill evidence's slots in ``tasks.hooks``."""
    hooks.register_submit_check("evidence_requirements", check_requirements)
    hooks.register_review_detail("evidence", review_evidence)
    hooks.register_unchecked_evidence(unchecked_evidence)
