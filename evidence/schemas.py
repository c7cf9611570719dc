"""Evidence responses."""
from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class MatchRead(BaseModel):
    """A duplicate found for a file."""

    matched_evidence_id: int
    distance: int
    method: str


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
