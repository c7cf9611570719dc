"""Tasks, claims, their audit trails and worker credit."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from geoalchemy2 import Geography
from sqlalchemy import (BigInteger, Boolean, CheckConstraint, DateTime, Float, ForeignKey, Index, Integer, String,
                        Text, func, text)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base, created_at, pk, utcnow

TASK_TYPES = ("store_visit", "flyer_run", "poster", "signup_drive", "shelf_audit", "other_offline")
TASK_STATES = ("draft", "pending_review", "published", "rejected", "paused", "closed")
CLAIM_STATES = ("claimed", "checked_in", "submitted", "changes_requested", "confirmed", "spot_check", "accepted",
                "paid", "rejected", "appealed", "closed", "expired", "cancelled")
# A worker holds at most one claim per task in these states.
ACTIVE_CLAIM_STATES = ("claimed", "checked_in", "submitted", "changes_requested", "confirmed", "spot_check")
# A rejected claim, or one closed by a failed spot check, may be appealed this long after it was resolved, once.
APPEAL_WINDOW = timedelta(days=7)
# A worker who reached one of these on a task has done it (paid, or judged and possibly appealed): no second claim.
DONE_CLAIM_STATES = ("accepted", "paid", "rejected", "appealed", "closed")


def in_list(column: str, values: tuple[str, ...]) -> str:
    """SQL text `column IN (...)` with literal values (constraints, partial-index predicates)."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Task(Base):
    """A piece of offline work at a place, with a geofence, reward and slots."""

    __tablename__ = "task"
    __table_args__ = (
        CheckConstraint(in_list("type", TASK_TYPES), name="type"),
        CheckConstraint(in_list("state", TASK_STATES), name="state"),
        CheckConstraint("reward_fen > 0", name="reward_positive"),
        CheckConstraint("slots > 0 AND slots_taken >= 0 AND slots_taken <= slots", name="slots"),
        CheckConstraint("ends_at > starts_at", name="window"),
        CheckConstraint("escrow_fen >= 0", name="escrow_not_negative"),
        Index("ix_task_fence", "fence", postgresql_using="gist"),
        # KNN for the task hall: only rows a worker can claim are in this index.
        Index("ix_task_open_center", "center", postgresql_using="gist",
              postgresql_where=text("state = 'published' AND slots_taken < slots")),
    )

    id: Mapped[int] = pk()
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("app_user.id"), nullable=False, index=True)
    title: Mapped[str] = mapped_column(String(120), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    state: Mapped[str] = mapped_column(String(20), nullable=False, default="draft")
    reward_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    slots: Mapped[int] = mapped_column(Integer, nullable=False)
    slots_taken: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # WGS-84 always; geography so distances are metres on the spheroid.
    fence: Mapped[Any] = mapped_column(Geography("GEOMETRY", srid=4326, spatial_index=False), nullable=False)
    center: Mapped[Any] = mapped_column(Geography("POINT", srid=4326, spatial_index=False), nullable=False)
    fence_kind: Mapped[str] = mapped_column(String(10), nullable=False)
    radius_m: Mapped[float | None] = mapped_column(Float)
    area_m2: Mapped[float] = mapped_column(Float, nullable=False)
    hard_fence: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    photos_min: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    video_required: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Photos without an in-app capture receipt (from the gallery) are accepted with lower trust; False refuses them.
    allow_gallery: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True, server_default="true")
    # Wi-Fi the merchant pinned (DingTalk-style), as keyed hashes (geo.radio): never the raw BSSIDs.
    radio_pins: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), nullable=False, default=list,
                                                  server_default="{}")
    # The merchant wants a new photo, not another of the same view: a same-scene photo counts against the claim.
    fresh_angle: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default="false")
    min_credit: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    min_dwell_s: Mapped[int | None] = mapped_column(Integer)
    # Platform commission in basis points (500 = 5 %), fixed when the task is published.
    commission_bp: Mapped[int] = mapped_column(Integer, nullable=False, default=500, server_default="500")
    # This task's share of the merchant's escrow account (held − paid − released), kept with each posting.
    escrow_fen: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")
    # Premium tasks are shown to and claimable by workers at or above the premium credit only.
    premium: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default="false")
    review_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = created_at()
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TaskEvent(Base):
    """Audit row for every task state change."""

    __tablename__ = "task_event"

    id: Mapped[int] = pk()
    task_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("task.id"), nullable=False, index=True)
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20), nullable=False)
    actor_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("app_user.id"))
    reason: Mapped[str | None] = mapped_column(String(500))
    at: Mapped[datetime] = created_at()


class Claim(Base):
    """A worker's hold on one slot of a task, and its lifecycle."""

    __tablename__ = "claim"
    __table_args__ = (
        CheckConstraint(in_list("state", CLAIM_STATES), name="state"),
        Index("uq_claim_active_per_worker", "task_id", "worker_id", unique=True,
              postgresql_where=text(in_list("state", ACTIVE_CLAIM_STATES))),
        Index("ix_claim_state_expires_at", "state", "expires_at"),
    )

    id: Mapped[int] = pk()
    task_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("task.id"), nullable=False, index=True)
    worker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("app_user.id"), nullable=False, index=True)
    state: Mapped[str] = mapped_column(String(20), nullable=False, default="claimed")
    claimed_at: Mapped[datetime] = created_at()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    checked_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    checked_out_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dwell_s: Mapped[int | None] = mapped_column(Integer)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    changes_requested: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default="false")
    risk_score: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    flags: Mapped[list[str]] = mapped_column(ARRAY(String(40)), nullable=False, default=list)


class ClaimEvent(Base):
    """Audit row for every claim state change."""

    __tablename__ = "claim_event"
    # Monthly partitions (core.partitions, migration 0014_partitions): the key is in the primary key, as PostgreSQL requires.
    __table_args__ = ({"postgresql_partition_by": "RANGE (at)"},)

    id: Mapped[int] = pk()
    claim_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("claim.id"), nullable=False, index=True)
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20), nullable=False)
    actor_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("app_user.id"))
    reason: Mapped[str | None] = mapped_column(Text)  # migration 0021: whole appeal and verdict texts
    data: Mapped[dict | None] = mapped_column(JSONB)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, server_default=func.now(),
                                         nullable=False, primary_key=True)

    # Known by id alone (one sequence feeds every partition).
    __mapper_args__ = {"primary_key": [id]}


class CreditEvent(Base):
    """One change to a worker's credit, with its reason; the score is derived from these with decay."""

    __tablename__ = "credit_event"

    id: Mapped[int] = pk()
    worker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("app_user.id"), nullable=False, index=True)
    delta: Mapped[int] = mapped_column(Integer, nullable=False)
    reason: Mapped[str] = mapped_column(String(100), nullable=False)
    claim_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("claim.id"))
    at: Mapped[datetime] = created_at()


class MerchantTerms(Base):
    """Per-merchant terms: member merchants get their own commission rate."""

    __tablename__ = "merchant_terms"

    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("app_user.id"), primary_key=True)
    commission_bp: Mapped[int] = mapped_column(Integer, nullable=False)
    note: Mapped[str] = mapped_column(String(200), nullable=False, default="")


class SpotCheck(Base):
    """The sampling decision for a confirmed claim and, if sampled, ops' verdict."""

    __tablename__ = "spot_check"
    __table_args__ = (CheckConstraint("state IN ('not_sampled','open','passed','failed')", name="state"),)

    id: Mapped[int] = pk()
    claim_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("claim.id"), nullable=False, unique=True)
    probability: Mapped[float] = mapped_column(Float, nullable=False)
    stratum: Mapped[str] = mapped_column(String(20), nullable=False)
    state: Mapped[str] = mapped_column(String(12), nullable=False)
    reviewer_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("app_user.id"))
    verdict_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = created_at()
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Appeal(Base):
    """A worker's appeal against a rejection or a failed spot check."""

    __tablename__ = "appeal"
    __table_args__ = (CheckConstraint("state IN ('open','overturned','denied','upheld','dismissed')", name="state"),
                      CheckConstraint("kind IN ('appeal','complaint')", name="kind"))

    id: Mapped[int] = pk()
    # 'appeal': a worker contests a rejection or failed spot check; 'complaint': a merchant reports a worker.
    kind: Mapped[str] = mapped_column(String(10), nullable=False, default="appeal", server_default="appeal")
    filed_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("app_user.id"))
    claim_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("claim.id"), nullable=False, index=True)
    worker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("app_user.id"), nullable=False)
    from_state: Mapped[str] = mapped_column(String(20), nullable=False)
    reason: Mapped[str] = mapped_column(String(1000), nullable=False)
    state: Mapped[str] = mapped_column(String(12), nullable=False)
    decided_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("app_user.id"))
    decision_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = created_at()
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Rating(Base):
    """A merchant's 1-5 rating of accepted work."""

    __tablename__ = "rating"
    __table_args__ = (CheckConstraint("stars BETWEEN 1 AND 5", name="stars"),)

    id: Mapped[int] = pk()
    claim_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("claim.id"), nullable=False, unique=True)
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("app_user.id"), nullable=False)
    worker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("app_user.id"), nullable=False, index=True)
    stars: Mapped[int] = mapped_column(Integer, nullable=False)
    comment: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    created_at: Mapped[datetime] = created_at()
