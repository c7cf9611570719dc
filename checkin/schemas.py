"""Check-in request and response bodies."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from core.bounds import BoundedDatetime, Text
from geo.radio import normalise_bssid


class WifiSeen(BaseModel):
    """One access point in the phone's Wi-Fi scan (kept only as a keyed hash)."""

    bssid: str = Field(min_length=12, max_length=17)
    rssi: int | None = Field(default=None, ge=-130, le=0)

    @field_validator("bssid")
    @classmethod
    def _mac(cls, v: str) -> str:
        return normalise_bssid(v)


class CellSeen(BaseModel):
    """One cell in the phone's scan: its global identity (kept only as a keyed hash)."""

    mcc: int = Field(ge=0, le=999)
    mnc: int = Field(ge=0, le=999)
    tac: int = Field(ge=0, le=2**32 - 1)
    cid: int = Field(ge=0, le=2**40)
    rssi: int | None = Field(default=None, ge=-160, le=0)


class CheckinCreate(BaseModel):
    """A fix as the phone reports it; coordinates in ``crs`` (converted to WGS-84 on arrival)."""

    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)
    crs: Literal["wgs84", "gcj02", "bd09"] = "wgs84"
    accuracy_m: float = Field(ge=0, le=100_000, allow_inf_nan=False)
    client_time: BoundedDatetime
    device_id: Text = Field(min_length=4, max_length=128)
    provider: str = Field(default="gps", max_length=20, pattern=r"^[a-z0-9_\-]+$")
    platform: Literal["android", "ios", "browser", "amap", "tencent", "baidu", "other"] | None = None
    mock_location: bool | None = None
    altitude: float | None = Field(default=None, ge=-1_000, le=100_000, allow_inf_nan=False)
    speed: float | None = Field(default=None, ge=0, le=100_000, allow_inf_nan=False)
    bearing: float | None = Field(default=None, ge=0, le=360, allow_inf_nan=False)
    # The phone's clock when it sent this (lets us tell a queued upload from a wrong clock).
    sent_at: BoundedDatetime | None = None
    # The radio scan taken with the fix (native apps; a browser cannot scan): hashed on arrival, never stored raw.
    wifi: list[WifiSeen] = Field(default_factory=list, max_length=50)
    cells: list[CellSeen] = Field(default_factory=list, max_length=20)


class SignalRead(BaseModel):
    """One risk signal with its reason code."""

    code: str
    weight: int
    detail: str


class CheckinRead(BaseModel):
    """The verdict on a fix and every risk signal behind its score."""

    id: int
    claim_id: int
    kind: str
    verdict: Literal["inside", "uncertain", "outside"]
    distance_m: float
    accuracy_95_m: float
    risk_score: int
    reasons: list[str]
    signals: list[SignalRead]
    remark: str | None
    lat: float
    lon: float
    crs: str
    client_time: datetime
    server_time: datetime
    dwell_s: int | None = None
    # For the in-app camera (check-in only): stamp this on photos and send it back as the capture receipt.
    capture_nonce: str | None = None
    capture_nonce_expires_at: datetime | None = None
