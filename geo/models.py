"""Heatmap roll-ups: per H3 cell and hour, maintained incrementally from check-ins."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, DateTime, Float, Index, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base


class HeatCellHour(Base):
    """Counts for one cell at one resolution in one hour."""

    __tablename__ = "heat_cell_hour"
    __table_args__ = (Index("ix_heat_cell_hour_res_hour", "res", "hour"),)

    res: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    cell: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    lat: Mapped[float] = mapped_column(Float, nullable=False)  # cell centre, for viewport filtering
    lon: Mapped[float] = mapped_column(Float, nullable=False)
    checkins: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    spoof_flags: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    duplicate_flags: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class HeatCellWorkerDay(Base):
    """Which workers were in a cell on a day: distinct-worker counts and k-anonymity suppression."""

    __tablename__ = "heat_cell_worker_day"

    res: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    cell: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    worker_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class RollupState(Base):
    """How far a roll-up has read its source (a watermark on the source's id)."""

    __tablename__ = "rollup_state"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
