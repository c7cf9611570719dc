"""Conversions from domain objects to response schemas."""
from __future__ import annotations

from datetime import datetime

from geoalchemy2.elements import WKBElement
from geoalchemy2.shape import to_shape

from accounts.models import User
from accounts.schemas import UserRead
from checkin.schemas import CheckinRead
from checkin.signals import for_viewer
from geo import crs as geocrs
from geo.geojson import fence_geojson, fence_geojson_of_wkb
from tasks.schemas import ClaimRead, EvidenceRequirements, RatingRead, SubmissionRead, TaskRead


def user_read(user: User) -> UserRead:
    """A user as the API shows it."""
    return UserRead(id=user.id, username=user.username, role=user.role, display_name=user.display_name,
                    real_name_verified=user.real_name_verified, frozen=user.frozen_at is not None,
                    created_at=user.created_at)


def _geofence(fence, crs: str) -> dict:
    """The stored fence in ``crs``: cached by its bytes (the hall shows the same fences again and again)."""
    if isinstance(fence, WKBElement):
        return fence_geojson_of_wkb(fence.data, crs)
    return fence_geojson(to_shape(fence), crs)


def task_read(task, crs: str = "wgs84", distance_m: float | None = None):
    """A task with its fence and centre in the caller's crs."""
    center = to_shape(task.center)
    clat, clon = geocrs.from_wgs84(center.y, center.x, crs)
    return TaskRead(id=task.id, merchant_id=task.merchant_id, title=task.title, description=task.description,
                    type=task.type, state=task.state, reward_fen=task.reward_fen, slots=task.slots,
                    slots_taken=task.slots_taken, starts_at=task.starts_at, ends_at=task.ends_at, crs=crs,
                    center=[clon, clat], radius_m=task.radius_m, geofence=_geofence(task.fence, crs),
                    hard_fence=task.hard_fence,
                    evidence=EvidenceRequirements(photos_min=task.photos_min, video=task.video_required,
                                                  allow_gallery=task.allow_gallery,
                                                  fresh_angle=task.fresh_angle),
                    pinned_bssids=len(task.radio_pins or []),
                    min_credit=task.min_credit, min_dwell_s=task.min_dwell_s, review_reason=task.review_reason,
                    premium=task.premium,
                    distance_m=None if distance_m is None else round(distance_m, 1))


def claim_read(claim):
    """A claim as the API shows it."""
    return ClaimRead.model_validate(claim, from_attributes=True)


def submission_read(claim, rating=None) -> SubmissionRead:
    """A claim in the merchant's queue with its rating."""
    return SubmissionRead(**claim_read(claim).model_dump(),
                          rating=None if rating is None else RatingRead.model_validate(rating, from_attributes=True))


def checkin_read(row, crs: str | None = None, dwell_s: int | None = None, viewer_role: str = "worker",
                 nonce: tuple[str, datetime] | None = None):
    """A fix's verdict; coordinates in the crs the phone sent (or the one asked for); signal details
    without other people's identifiers unless the viewer is ops."""
    out_crs = crs or row.raw_crs
    lat, lon = geocrs.from_wgs84(row.lat, row.lon, out_crs)
    return CheckinRead(id=row.id, claim_id=row.claim_id, kind=row.kind, verdict=row.verdict,
                       distance_m=round(row.distance_m, 1), accuracy_95_m=round(row.accuracy_95_m, 1),
                       risk_score=row.risk_score, reasons=row.reasons, signals=for_viewer(row.signals, viewer_role),
                       remark=row.remark,
                       lat=lat, lon=lon, crs=out_crs, client_time=row.client_time, server_time=row.server_time,
                       dwell_s=dwell_s, capture_nonce=nonce[0] if nonce else None,
                       capture_nonce_expires_at=nonce[1] if nonce else None)
