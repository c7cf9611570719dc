"""Declarative base with a constraint naming convention, shared column helpers."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, MetaData, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core import clock

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
    """A creation timestamp: the service clock from the ORM, the database's ``now()`` for raw SQL."""
    return mapped_column(DateTime(timezone=True), default=utcnow, server_default=func.now(), nullable=False)


def utcnow() -> datetime:
    """Current time, aware, UTC, on the service clock (real unless a simulation configured one)."""
    return clock.now()
