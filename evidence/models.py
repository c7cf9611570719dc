"""Evidence files, their hashes and the near-duplicate matches found between them."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (BigInteger, CheckConstraint, DateTime, Float, ForeignKey, Index, Integer, String,
                        UniqueConstraint, text)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base, created_at, pk


class Evidence(Base):
    """One uploaded photo or video for a claim. Bytes live in the blob store under ``sha256``."""

    __tablename__ = "evidence"
    __table_args__ = (
        CheckConstraint("kind IN ('image','video')", name="kind"),
        CheckConstraint("state IN ('received','processed','failed')", name="state"),
        UniqueConstraint("claim_id", "sha256", name="uq_evidence_claim_sha256"),
        Index("ix_evidence_sha256", "sha256"),
        Index("ix_evidence_state_created_at", "state", "created_at"),
        Index("uq_evidence_capture_nonce", "capture_nonce_sha256", unique=True,
              postgresql_where=text("capture_nonce_sha256 IS NOT NULL")),
    )

    id: Mapped[int] = pk()
    claim_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("claim.id"), nullable=False, index=True)
    worker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("app_user.id"), nullable=False, index=True)
    task_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("task.id"), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    kind: Mapped[str] = mapped_column(String(5), nullable=False)
    mime: Mapped[str] = mapped_column(String(40), nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    duration_s: Mapped[float | None] = mapped_column(Float)
    exif: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # Perceptual hashes (64-bit, stored signed) of the full image and its robust variants.
    phash: Mapped[int | None] = mapped_column(BigInteger)
    dhash: Mapped[int | None] = mapped_column(BigInteger)
    hashes: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    state: Mapped[str] = mapped_column(String(10), nullable=False, default="received")
    reasons: Mapped[list[str]] = mapped_column(ARRAY(String(40)), nullable=False, default=list)
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = created_at()
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The in-app camera's receipt (evidence.capture): verified or not, the phone's capture time, and the SHA-256
    # of the nonce it stamped (unique: a nonce is used once).
    capture_verified: Mapped[bool] = mapped_column(nullable=False, default=False, server_default="false")
    captured_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    capture_nonce_sha256: Mapped[str | None] = mapped_column(String(64))
    # Set when the worker removes the file before submitting: it no longer counts or shows, but stays in the
    # duplicate index (a re-used photo cannot be laundered by deleting it) and in ops' view.
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class EvidenceMatch(Base):
    """A near-duplicate found between two evidence files of different claims."""

    __tablename__ = "evidence_match"
    __table_args__ = (UniqueConstraint("evidence_id", "matched_evidence_id", name="uq_evidence_match_pair"),)

    id: Mapped[int] = pk()
    evidence_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("evidence.id"), nullable=False, index=True)
    matched_evidence_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("evidence.id"), nullable=False,
                                                     index=True)
    distance: Mapped[int] = mapped_column(Integer, nullable=False)
    method: Mapped[str] = mapped_column(String(30), nullable=False)
    created_at: Mapped[datetime] = created_at()


class EvidenceHash(Base):
    """One searchable pHash of an evidence file (every region of every frame); feeds the duplicate index."""

    __tablename__ = "evidence_hash"

    id: Mapped[int] = pk()
    evidence_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("evidence.id"), nullable=False, index=True)
    phash: Mapped[int] = mapped_column(BigInteger, nullable=False)
