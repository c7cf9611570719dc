"""Evidence responses."""
from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, computed_field, field_validator

# Camera serial and image id are kept for the same-capture rule (evidence.capture) but are device identifiers:
# never shown to anyone.
PRIVATE_EXIF = ("serial", "unique_id")
SAME_SCENE_PREFIX = "scene:"  # evidence_match.method of a same-scene pair (evidence.pairs)


class MatchRead(BaseModel):
    """A duplicate found for a file."""

    matched_evidence_id: int
    distance: int
    method: str

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

    @field_validator("exif")
    @classmethod
    def _private_exif_dropped(cls, exif: dict | None) -> dict | None:
        return {k: v for k, v in exif.items() if k not in PRIVATE_EXIF} or None if exif else exif
