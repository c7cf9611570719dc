"""Evidence responses."""
from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


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
