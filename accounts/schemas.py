"""Account request and response bodies."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class UserCreate(BaseModel):
    """Self-registration body."""

    username: str = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    password: str = Field(min_length=1, max_length=256)
    role: Literal["worker", "merchant"]
    display_name: str = Field(default="", max_length=100)


class UserRead(BaseModel):
    """A user as others may see them."""

    id: int
    username: str
    role: str
    display_name: str
    real_name_verified: bool
    frozen: bool
    created_at: datetime


class TokenPair(BaseModel):
    """OAuth2 bearer token response with a rotating refresh token."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int
    refresh_token: str


class RefreshRequest(BaseModel):
    """Body of POST /v1/auth/refresh."""

    refresh_token: str = Field(min_length=10, max_length=200)


class FreezeRequest(BaseModel):
    """Body of POST /v1/users/{id}/freeze."""

    reason: str = Field(min_length=1, max_length=500)
    frozen: bool = True


class RealNameUpdate(BaseModel):
    """Outcome of a real-name check."""

    verified: bool
