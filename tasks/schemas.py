"""Task and claim bodies."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from core.bounds import BoundedDatetime
from geo.radio import normalise_bssid
from tasks.models import TASK_TYPES

TaskType = Literal[TASK_TYPES]  # type: ignore[valid-type]
Crs = Literal["wgs84", "gcj02", "bd09"]


class EvidenceRequirements(BaseModel):
    """What a submission must include."""

    photos_min: int = Field(default=1, ge=0, le=20)
    video: bool = False
    # Photos picked from the gallery (no in-app capture receipt) are accepted with lower trust; False refuses them.
    allow_gallery: bool = True
    # Another photo of a view already submitted (same_scene) counts against the claim (a soft signal) instead of
    # being a note: for merchants who pay for a fresh angle each time.
    fresh_angle: bool = False


class CaptureNonceRead(BaseModel):
    """A nonce for the in-app camera to stamp on a photo (see tasks.capture)."""

    capture_nonce: str
    capture_nonce_expires_at: datetime


class TaskCreate(BaseModel):
    """A merchant's new task (a draft until published and approved)."""

    title: str = Field(min_length=2, max_length=120)
    description: str = Field(default="", max_length=4000)
    type: TaskType
    reward_fen: int = Field(gt=0, le=10_000_000)
    slots: int = Field(gt=0, le=10_000)
    starts_at: BoundedDatetime
    ends_at: BoundedDatetime
    crs: Crs = "wgs84"
    geofence: dict[str, Any]
    hard_fence: bool = True
    evidence: EvidenceRequirements = EvidenceRequirements()
    # Wi-Fi the site is known to have (DingTalk-style attendance): kept as keyed hashes only, never shown back.
    pinned_bssids: list[str] = Field(default_factory=list, max_length=20)
    min_credit: int = Field(default=0, ge=0, le=1000)
    min_dwell_s: int | None = Field(default=None, ge=0, le=86_400)
    premium: bool = False


    @field_validator("pinned_bssids")
    @classmethod
    def _macs(cls, v: list[str]) -> list[str]:
        return sorted({normalise_bssid(x) for x in v})


class TaskRead(BaseModel):
    """A task as its merchant, ops or a worker sees it; coordinates in the requested crs."""

    id: int
    merchant_id: int
    title: str
    description: str
    type: str
    state: str
    reward_fen: int
    slots: int
    slots_taken: int
    starts_at: datetime
    ends_at: datetime
    crs: str
    center: list[float]
    radius_m: float | None
    geofence: dict[str, Any]
    hard_fence: bool
    evidence: EvidenceRequirements
    pinned_bssids: int = 0  # how many BSSIDs are pinned (their values are not kept)
    min_credit: int
    min_dwell_s: int | None
    review_reason: str | None
    premium: bool = False
    distance_m: float | None = None


class ReviewDecision(BaseModel):
    """Ops' decision on a task awaiting review."""

    decision: Literal["approve", "reject"]
    reason: str = Field(default="", max_length=500)


class ClaimRead(BaseModel):
    """A claim as its worker (or the task's merchant, or ops) sees it."""

    id: int
    task_id: int
    worker_id: int
    state: str
    claimed_at: datetime
    expires_at: datetime
    checked_in_at: datetime | None
    checked_out_at: datetime | None
    dwell_s: int | None
    submitted_at: datetime | None = None
    confirmed_at: datetime | None = None
    risk_score: int
    flags: list[str]


class TaskProgress(BaseModel):
    """Counts of a task's claims by state."""

    task_id: int
    slots: int
    slots_taken: int
    by_state: dict[str, int]


class RejectRequest(BaseModel):
    """A merchant's rejection: a reason code and text the worker sees."""

    reason_code: Literal["not_at_location", "evidence_insufficient", "evidence_fake", "work_not_done",
                         "other"] = "other"
    reason: str = Field(min_length=1, max_length=500)


class ChangesRequest(BaseModel):
    """What the worker must fix before resubmitting."""

    reason: str = Field(min_length=1, max_length=500)


class SpotCheckVerdict(BaseModel):
    """Ops' verdict on a sampled claim."""

    verdict: Literal["pass", "fail"]
    reason: str = Field(default="", max_length=500)


class SpotCheckRead(BaseModel):
    """A spot check with what ops need to decide."""

    id: int
    claim_id: int
    probability: float
    stratum: str
    state: str
    verdict_reason: str | None
    claim: ClaimRead | None = None
    checkins: list[dict] = []
    evidence: list[dict] = []


class AppealCreate(BaseModel):
    """The worker's case."""

    reason: str = Field(min_length=1, max_length=1000)


class AppealDecision(BaseModel):
    """Ops' decision on an appeal."""

    decision: Literal["overturn", "deny"]
    reason: str = Field(min_length=1, max_length=500)


class AppealRead(BaseModel):
    """An appeal (by a worker) or a complaint (by a merchant)."""

    id: int
    kind: str = "appeal"
    claim_id: int
    worker_id: int
    from_state: str
    reason: str
    state: str
    decision_reason: str | None
    created_at: datetime


class RatingCreate(BaseModel):
    """A merchant's rating of accepted work."""

    stars: int = Field(ge=1, le=5)
    comment: str = Field(default="", max_length=500)


class RatingRead(BaseModel):
    """A stored rating."""

    id: int
    claim_id: int
    worker_id: int
    stars: int
    comment: str
    created_at: datetime


class SubmissionRead(ClaimRead):
    """A claim in the merchant's queue, with the rating the merchant gave it (if any)."""

    rating: RatingRead | None = None


class MerchantTermsUpdate(BaseModel):
    """Ops set a member merchant's commission rate."""

    commission_bp: int = Field(ge=0, le=3000)
    note: str = Field(default="", max_length=200)


class ForfeitRequest(BaseModel):
    """Ops forfeit (part of) a merchant's security deposit."""

    amount_fen: int = Field(gt=0, le=100_000_000)
    reason: str = Field(min_length=1, max_length=500)


class ComplaintDecision(BaseModel):
    """Ops' decision on a merchant's complaint."""

    decision: Literal["uphold", "dismiss"]
    reason: str = Field(min_length=1, max_length=500)


class ClaimEventRead(BaseModel):
    """One state change of a claim: who (by role), when, why; ``reward_fen`` on the payment."""

    from_state: str | None
    to_state: str
    at: datetime
    by: str
    reason: str | None
    reason_code: str | None
    reward_fen: int | None


class TimelineAppeal(BaseModel):
    """An appeal or complaint on the claim and its decision."""

    id: int
    kind: str
    state: str
    reason: str
    decision_reason: str | None
    created_at: datetime
    decided_at: datetime | None


class TimelineSpotCheck(BaseModel):
    """The outcome of a spot check the claim was sampled for."""

    state: str
    reason: str | None
    decided_at: datetime | None


class CreditChange(BaseModel):
    """One change of the worker's credit and why."""

    delta: int
    reason: str
    at: datetime
    claim_id: int | None = None


class ClaimTimeline(BaseModel):
    """What happened to a claim: changes with reasons, appeals, spot check, credit, deadline, amount paid."""

    claim_id: int
    state: str
    events: list[ClaimEventRead]
    appeals: list[TimelineAppeal]
    spot_check: TimelineSpotCheck | None
    credit: list[CreditChange]
    deadline: datetime | None
    paid_fen: int | None
    resolved_at: datetime | None


class CreditChanges(BaseModel):
    """The worker's credit, its formula and the latest changes."""

    score: int
    formula: str
    events: list[CreditChange]
