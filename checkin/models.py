"""Check-in and check-out fixes with their verdicts and risk signals."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from geoalchemy2 import Geography
from sqlalchemy import (BigInteger, CheckConstraint, ColumnElement, DateTime, Float, ForeignKey, Index, Integer, String,
                        text)
from sqlalchemy.dialects.postgresql import ARRAY, INET, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base, pk, utcnow

# A claim's fixes arrive after the claim was made. Bounding a lookup by claim in server_time (the partition key)
# lets PostgreSQL skip the months before it; the slack covers fixes stamped with an earlier arrival time than the
# claim's own clock (API hosts' clocks, tests that date a fix back).
CLAIM_FIX_SLACK = timedelta(days=7)
# A stored fix was stamped on arrival by an API host's clock, so it is ahead of this host's clock by no more than
# the hosts differ (the same slack as the check-in's history reads, checkin.service.HISTORY_CLOCK_SLACK). A week
# here put next month's partition (empty, made ahead) into every lookup in a month's last week: in the plan, each of
# its indexes' metapages is read again on every planning (an empty btree's is not cached).
FIX_CLOCK_SLACK = timedelta(minutes=5)


class Checkin(Base):
    """One fix a phone sent for a claim (kind 'in' or 'out'), stored in WGS-84 with the raw input kept."""

    __tablename__ = "checkin"
    __table_args__ = (
        CheckConstraint("kind IN ('in','out')", name="kind"),
        CheckConstraint("verdict IN ('inside','uncertain','outside')", name="verdict"),
        Index("ix_checkin_worker_client_time", "worker_id", "client_time"),
        Index("ix_checkin_device_id", "device_id", "worker_id"),
        Index("ix_checkin_ip_server_time", "ip", "server_time"),
        Index("ix_checkin_raw_coord_key", "raw_coord_key"),
        Index("ix_checkin_point", "point", postgresql_using="gist"),
        Index("ix_checkin_radio_pending", "id", postgresql_where=text("radio_learned = false")),
        Index("ix_checkin_task_radio", "task_id", "id", postgresql_where=text("radio_learned IS NOT NULL")),
        # Monthly partitions (core.partitions, migration 0014_partitions): the key is in the primary key, as PostgreSQL requires.
        {"postgresql_partition_by": "RANGE (server_time)"},
    )

    id: Mapped[int] = pk()
    claim_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("claim.id"), nullable=False, index=True)
    worker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("app_user.id"), nullable=False)
    task_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("task.id"), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(3), nullable=False)
    point: Mapped[Any] = mapped_column(Geography("POINT", srid=4326, spatial_index=False), nullable=False)
    lat: Mapped[float] = mapped_column(Float, nullable=False)
    lon: Mapped[float] = mapped_column(Float, nullable=False)
    raw_lat: Mapped[float] = mapped_column(Float, nullable=False)
    raw_lon: Mapped[float] = mapped_column(Float, nullable=False)
    raw_crs: Mapped[str] = mapped_column(String(8), nullable=False)
    # Reported coordinates at 6 decimals (~0.1 m): real GPS never repeats them exactly.
    raw_coord_key: Mapped[str] = mapped_column(String(40), nullable=False)
    accuracy_m: Mapped[float] = mapped_column(Float, nullable=False)
    accuracy_95_m: Mapped[float] = mapped_column(Float, nullable=False)
    provider: Mapped[str] = mapped_column(String(20), nullable=False)
    platform: Mapped[str | None] = mapped_column(String(20))
    mock_location: Mapped[bool | None] = mapped_column()
    altitude: Mapped[float | None] = mapped_column(Float)
    speed: Mapped[float | None] = mapped_column(Float)
    bearing: Mapped[float | None] = mapped_column(Float)
    device_id: Mapped[str] = mapped_column(String(128), nullable=False)
    ip: Mapped[str | None] = mapped_column(INET)
    client_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    server_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, primary_key=True)
    verdict: Mapped[str] = mapped_column(String(10), nullable=False)
    distance_m: Mapped[float] = mapped_column(Float, nullable=False)
    risk_score: Mapped[int] = mapped_column(Integer, nullable=False)
    reasons: Mapped[list[str]] = mapped_column(ARRAY(String(40)), nullable=False, default=list)
    signals: Mapped[list[dict]] = mapped_column(JSONB, nullable=False, default=list)
    remark: Mapped[str | None] = mapped_column(String(300))
    # H3 cell (resolution 9) of the WGS-84 point, computed at write time for the heatmap roll-ups.
    h3_r9: Mapped[int | None] = mapped_column(BigInteger)
    # Keyed hashes (geo.radio) of the Wi-Fi BSSIDs and cell ids the phone scanned; never the raw values.
    radio: Mapped[list[int] | None] = mapped_column(ARRAY(BigInteger))
    # None: nothing to learn (no scan, or not an accepted check-in); False: to be learned; True: learned.
    radio_learned: Mapped[bool | None] = mapped_column()

    # Rows are still known by id alone (one sequence feeds every partition), so session.get(Checkin, id) works.
    __mapper_args__ = {"primary_key": [id]}


def of_claim(claim_id: int, claimed_at: datetime) -> list[ColumnElement[bool]]:
    """WHERE terms for a claim's fixes: its id, and server_time from its creation (a week of slack) to now (a few
    minutes of slack). The bounds are values, not a subquery, so the planner itself leaves the other months out: a
    read-only request's session ends in a rollback, after which psycopg prepares the statement afresh, so no cached
    generic plan would do it."""
    return [Checkin.claim_id == claim_id, _since_claimed(claimed_at)]


def of_claims(claim_ids: list[int], earliest_claimed_at: datetime) -> list[ColumnElement[bool]]:
    """``of_claim`` for several claims at once: their ids, bounded from the earliest one's creation."""
    return [Checkin.claim_id.in_(claim_ids), _since_claimed(earliest_claimed_at)]


def _since_claimed(claimed_at: datetime) -> ColumnElement[bool]:
    return Checkin.server_time.between(claimed_at - CLAIM_FIX_SLACK, utcnow() + FIX_CLOCK_SLACK)


class RadioSite(Base):
    """How much a task's learned radio fingerprint rests on (see checkin.radio)."""

    __tablename__ = "radio_site"

    task_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("task.id"), primary_key=True)
    checkins: Mapped[int] = mapped_column(Integer, nullable=False)
    workers: Mapped[int] = mapped_column(Integer, nullable=False)
    hashes: Mapped[int] = mapped_column(Integer, nullable=False)  # hashes seen by radio_hash_min_workers or more
    # Those hashes, sorted: what a check-in's scan is matched against (its measure reads this row by key).
    counted: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), nullable=False, server_default="{}")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class RadioFingerprint(Base):
    """One keyed hash (Wi-Fi or cell) seen at a task's site, with how many distinct workers reported it."""

    __tablename__ = "radio_fingerprint"

    task_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("task.id"), primary_key=True)
    hash: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workers: Mapped[int] = mapped_column(Integer, nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
