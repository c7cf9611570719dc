"""Declarative base with a constraint naming convention, shared column helpers."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, MetaData, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base for every table; tables are singular snake_case."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def pk() -> Mapped[int]:
    """A bigint identity primary key."""
    return mapped_column(BigInteger, primary_key=True, autoincrement=True)


def created_at() -> Mapped[datetime]:
    """A server-side creation timestamp."""
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def utcnow() -> datetime:
    """Current time, aware, UTC."""
    from datetime import timezone

    return datetime.now(timezone.utc)
