"""Capture receipts on uploads: was this photo taken with the in-app camera, for this claim, in time?

A receipt is the nonce the server issued to the claim (tasks.capture) that the camera stamped visibly on the
photo, and the phone's capture time. Verified here: issued for this claim by this server, not expired, used
once (decided under the claim's row lock the upload holds, with a unique index behind it), the capture time
inside the nonce's life, and the photo's own EXIF time, when it has one, close to it. Tasks that allow gallery
photos take a photo without (or with a bad) receipt with a reason code and lower trust; others refuse it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import InvalidInput
from evidence.models import Evidence
from evidence.schemas import CaptureReceipt
from tasks import capture

# A camera's EXIF clock without an offset is local time (China: UTC+8); with one it must agree within minutes.
EXIF_SLACK_S = 10 * 60
CST_OFFSET_S = 8 * 3600
# What a claim's risk score is raised to: a gallery photo a little (sampling odds), a bad receipt like a
# single strong signal (it also forces a spot check: the reason is hard).
WEIGHT_NO_RECEIPT = 15
WEIGHT_INVALID_RECEIPT = 45


class CaptureReceiptRequired(InvalidInput):
    code = "capture_receipt_required"
    detail = "This task accepts only photos taken with the in-app camera after check-in."


@dataclass
class Outcome:
    """What the receipt (or its absence) means for one upload."""

    verified: bool = False
    captured_at: datetime | None = None
    nonce_sha256: str | None = None
    reasons: list[str] = field(default_factory=list)
    weight: int = 0


def _exif_agrees(exif: dict | None, captured_at: datetime) -> bool:
    taken = (exif or {}).get("capture_time")
    if not taken:
        return True
    t = datetime.fromisoformat(taken)
    if t.tzinfo is not None:
        return abs((t - captured_at).total_seconds()) <= EXIF_SLACK_S
    naive = captured_at.replace(tzinfo=None)
    return any(abs((t - naive - timedelta(seconds=off)).total_seconds()) <= EXIF_SLACK_S for off in (0, CST_OFFSET_S))


def _verify(db_session: Session, claim_id: int, receipt: CaptureReceipt, exif: dict | None,
            now: datetime) -> Outcome:
    nonce = capture.verify(receipt.nonce, claim_id, now)
    capture.check_capture_time(nonce, receipt.captured_at, now)
    if not _exif_agrees(exif, receipt.captured_at):
        raise capture.CaptureReceiptInvalid("The photo's own (EXIF) time disagrees with its capture receipt.",
                                            why="exif_time")
    digest = capture.digest(receipt.nonce)
    if db_session.scalar(select(Evidence.id).where(Evidence.capture_nonce_sha256 == digest)) is not None:
        raise capture.CaptureReceiptInvalid("This capture nonce was already used for another photo.", why="reused")
    return Outcome(True, receipt.captured_at, digest)


def check(db_session: Session, *, claim_id: int, allow_gallery: bool, receipt: CaptureReceipt | None,
          exif: dict | None, now: datetime) -> Outcome:
    """The receipt's verdict; raises on a task that refuses gallery photos. Call under the claim's row lock."""
    if receipt is None:
        if not allow_gallery:
            raise CaptureReceiptRequired()
        return Outcome(reasons=["no_capture_receipt"], weight=WEIGHT_NO_RECEIPT)
    try:
        return _verify(db_session, claim_id, receipt, exif, now)
    except capture.CaptureReceiptInvalid:
        if not allow_gallery:
            raise
        return Outcome(reasons=["capture_receipt_invalid"], weight=WEIGHT_INVALID_RECEIPT)
