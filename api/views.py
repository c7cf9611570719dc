"""Conversions from domain objects to response schemas."""
from __future__ import annotations

from accounts.models import User
from accounts.schemas import UserRead


def user_read(user: User) -> UserRead:
    """A user as the API shows it."""
    return UserRead(id=user.id, username=user.username, role=user.role, display_name=user.display_name,
                    real_name_verified=user.real_name_verified, frozen=user.frozen_at is not None,
                    created_at=user.created_at)
