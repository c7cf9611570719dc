"""Heatmap roll-ups: per H3 cell and hour, and per cell and UTC day, maintained incrementally."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, DateTime, Float, Index, Integer, SmallInteger, String, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base


def _count() -> Mapped[int]:
    return mapped_column(Integer, nullable=False, default=0, server_default="0")


class _CellMetrics:
    """The additive measures kept for a cell over a period, and its distinct-worker count."""

    res: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    cell: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    lat: Mapped[float] = mapped_column(Float, nullable=False)  # cell centre, for viewport filtering
    lon: Mapped[float] = mapped_column(Float, nullable=False)
    checkins: Mapped[int] = _count()
    spoof_flags: Mapped[int] = _count()
    duplicate_flags: Mapped[int] = _count()
    completions: Mapped[int] = _count()
    rejections: Mapped[int] = _count()
    spot_check_failures: Mapped[int] = _count()
    # Distinct workers seen in the cell in this period (exact: kept from the worker sets below).
    workers: Mapped[int] = _count()
    # Check-out dwell times as a histogram over geo.dwell.EDGES_S: medians are not additive, histograms are.
    dwell_hist: Mapped[list[int]] = mapped_column(ARRAY(Integer), nullable=False, server_default=text("'{}'"))


class HeatCellHour(_CellMetrics, Base):
    """Measures for one cell at one resolution in one hour."""

    __tablename__ = "heat_cell_hour"
    # Monthly partitions (core.partitions, migration 0014_partitions); the primary key already holds the key.
    __table_args__ = (Index("ix_heat_cell_hour_res_hour", "res", "hour"), {"postgresql_partition_by": "RANGE (hour)"})

    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)


class HeatCellDay(_CellMetrics, Base):
    """Measures for one cell at one resolution on one UTC day (long ranges read these, not hours)."""

    __tablename__ = "heat_cell_day"
    __table_args__ = (Index("ix_heat_cell_day_res_day", "res", "day"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)


class HeatCellWorkerHour(Base):
    """Which workers were in a cell in an hour: only recent hours are kept, to count new workers exactly."""

    __tablename__ = "heat_cell_worker_hour"
    __table_args__ = (Index("ix_heat_cell_worker_hour_hour", "hour"),)

    res: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    cell: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    worker_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class HeatCellWorkerDay(Base):
    """Which workers were in a cell on a day: only recent days are kept, to count new workers exactly."""

    __tablename__ = "heat_cell_worker_day"
    __table_args__ = (Index("ix_heat_cell_worker_day_day", "day"),)

    res: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    cell: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    worker_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class RollupState(Base):
    """How far a roll-up has read its source (a watermark on the source's id)."""

    __tablename__ = "rollup_state"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
