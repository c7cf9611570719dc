"""Users and refresh tokens."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, String, false
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base, created_at, pk

ROLES = ("worker", "merchant", "ops", "admin")


class User(Base):
    """A person or organisation using Fieldproof, with exactly one role."""

    __tablename__ = "app_user"
    __table_args__ = (CheckConstraint("role IN ('worker','merchant','ops','admin')", name="role"),)

    id: Mapped[int] = pk()
    username: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(200), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    display_name: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    real_name_verified: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    frozen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    frozen_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = created_at()


class RefreshToken(Base):
    """A rotating refresh token; only its hash is stored. Reuse of a rotated token revokes the family."""

    __tablename__ = "refresh_token"

    id: Mapped[int] = pk()
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("app_user.id"), nullable=False, index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    family: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at()
