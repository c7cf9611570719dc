"""Evidence responses."""
from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, Field, computed_field, field_validator

# Camera serial and image id are kept for the same-capture rule (evidence.sameness) but are device identifiers:
# never shown to anyone.
PRIVATE_EXIF = ("serial", "unique_id")
SAME_SCENE_PREFIX = "scene:"  # evidence_match.method of a same-scene pair (evidence.pairs)


class MatchRead(BaseModel):
    """A duplicate found for a file."""

    matched_evidence_id: int
    distance: int
    method: str
    # Where the other file is, only when the viewer may see that claim (own task, own claim, ops); else None.
    own: bool = False
    claim_id: int | None = None
    task_id: int | None = None
    task_title: str | None = None

    @computed_field
    @property
    def verdict(self) -> str:
        """'same_capture' (a duplicate: the same exposure re-used) or 'same_scene' (another photo of the place)."""
        return "same_scene" if self.method.startswith(SAME_SCENE_PREFIX) else "same_capture"


class EvidenceRead(BaseModel):
    """An uploaded file, its processing state, reasons and duplicates."""

    id: int
    claim_id: int
    kind: str
    mime: str
    sha256: str
    size_bytes: int
    width: int | None
    height: int | None
    state: str
    reasons: list[str]
    exif: dict | None
    created_at: datetime
    matches: list[MatchRead] = []
    withdrawn_at: datetime | None = None
    # True when the photo came with a valid in-app capture receipt (nonce of this claim, in time, used once).
    capture_verified: bool = False
    captured_at: datetime | None = None

    @field_validator("exif")
    @classmethod
    def _private_exif_dropped(cls, exif: dict | None) -> dict | None:
        return {k: v for k, v in exif.items() if k not in PRIVATE_EXIF} or None if exif else exif


class CaptureReceipt(BaseModel):
    """The in-app camera's receipt sent with a photo (multipart field ``capture_receipt``, JSON)."""

    nonce: str = Field(min_length=8, max_length=128)
    captured_at: AwareDatetime
