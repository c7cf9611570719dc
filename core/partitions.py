"""Monthly range partitions of the big append-only tables: create ahead, drop behind (native partitioning).

Check-ins, claim audit rows and heatmap hour roll-ups are partitioned by month on their time column (migration
0012 converted the existing tables online). Each table has a DEFAULT partition so a write never fails for want of
a partition (a stopped beat, a simulated clock far ahead): this module creates the coming months ahead and, when
the default caught rows of a month being created, moves them into the new partition in the same transaction.
Retention detaches and drops whole months older than the table's setting (0 keeps everything).

Every change is one short transaction per partition under a lock timeout, so a long report query never queues
the write path behind a waiting ACCESS EXCLUSIVE lock: a partition that could not be locked is left for the next
run. Two runs at once serialise on an advisory lock per table, so running it twice (or on two hosts) is safe.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from core import clock
from core.logging import get_logger

log = get_logger("partitions")

# Partitioned table -> its partition key (a timestamptz column set by the server when the row is written).
PARTITIONED: dict[str, str] = {"checkin": "server_time", "claim_event": "at", "heat_cell_hour": "hour"}
# Names of partitions (not tables the models describe): <table>_pYYYYMM, <table>_legacy, <table>_default.
_PARTITION_NAME = re.compile(r"^(%s)_(p\d{6}|legacy|default)$" % "|".join(PARTITIONED))
LOCK_NOT_AVAILABLE = "55P03"
# ATTACH found a row of the new month in the default partition: written there after the move (by a write that
# was routed before the new month existed). Tried again next run, when the move takes it along.
DEFAULT_CAUGHT_MORE = "23514"
_BOUND = re.compile(r"FROM \((?:'([^']+)'|MINVALUE)\) TO \((?:'([^']+)'|MAXVALUE)\)")


class PartitionSettings(BaseSettings):
    """How far ahead months are created and how many are kept (env prefix FIELDPROOF_PARTITION_)."""

    model_config = SettingsConfigDict(env_prefix="FIELDPROOF_PARTITION_", extra="ignore")

    # Months created ahead of the current one: the beat runs every few hours, so three months of slack
    # survive a long outage of beat before rows start landing in the default partition.
    premake_months: int = 3
    # Whole months kept behind the current one; 0 keeps everything. Check-ins: two years (appeals and
    # disputes reach back a year; a second year for year-on-year ops views). Claim audit rows are the record of
    # money decisions: kept until someone decides otherwise. Hour roll-ups: only a range's ragged ends read
    # them (whole days come from heat_cell_day), so 13 months cover any range ops pick within a year.
    keep_months_checkin: int = 25
    keep_months_claim_event: int = 0
    keep_months_heat_cell_hour: int = 13
    # DDL waits at most this long for its lock, then gives up until the next run (see module docstring).
    lock_timeout_ms: int = 2000

    def keep_months(self, table: str) -> int:
        """Months kept for a partitioned table (0 = forever)."""
        return int(getattr(self, f"keep_months_{table}"))


@lru_cache
def get_partition_settings() -> PartitionSettings:
    """The process-wide partition settings."""
    return PartitionSettings()


@dataclass(frozen=True)
class Partition:
    """One attached partition and its range (None = unbounded: MINVALUE/MAXVALUE, or the default)."""

    name: str
    lo: datetime | None
    hi: datetime | None
    default: bool = False


def is_partition(name: str) -> bool:
    """Whether a table name is one of our partitions (not a table of its own; the schema test skips them)."""
    return bool(_PARTITION_NAME.match(name))


def month_start(at: datetime, plus: int = 0) -> datetime:
    """The first instant (UTC) of the month ``plus`` months after the one holding ``at``."""
    at = at.astimezone(timezone.utc)
    index = at.year * 12 + at.month - 1 + plus
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=timezone.utc)


def _stamp(raw: str | None) -> datetime | None:
    return None if raw is None else datetime.fromisoformat(raw).astimezone(timezone.utc)


def partitions(db_session: Session, table: str) -> list[Partition]:
    """The table's partitions with their ranges, oldest first (the default last)."""
    _check(table)
    db_session.execute(text("SET LOCAL TimeZone = 'UTC'"))  # bounds print in UTC, parsed as such
    rows = db_session.execute(text(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = CAST(:t AS regclass)"), {"t": table}).all()
    out = []
    for name, bound in rows:
        if bound == "DEFAULT":
            out.append(Partition(name, None, None, default=True))
            continue
        found = _BOUND.search(bound)
        out.append(Partition(name, _stamp(found.group(1)), _stamp(found.group(2))))
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    return sorted(out, key=lambda p: (p.default, p.lo or epoch))


def _check(table: str) -> None:
    if table not in PARTITIONED:  # names reach DDL text: only the fixed set above may
        raise ValueError(f"not a partitioned table: {table}")


def _gap(existing: list[Partition], lo: datetime, hi: datetime) -> tuple[datetime, datetime] | None:
    """The part of [lo, hi) no range partition covers yet (ranges are contiguous, so at most one piece)."""
    for p in existing:
        if p.default:
            continue
        if (p.lo is None or p.lo <= lo) and (p.hi is None or lo < p.hi):
            lo = p.hi if p.hi is not None else hi
        elif p.lo is not None and lo < p.lo < hi:
            hi = p.lo
    return (lo, hi) if lo < hi else None


def _lock(db_session: Session, table: str) -> None:
    """One maintainer per table at a time; DDL gives up after the lock timeout instead of queueing writes."""
    ms = int(get_partition_settings().lock_timeout_ms)
    db_session.execute(text(f"SET LOCAL lock_timeout = {ms}"))
    db_session.execute(text("SELECT pg_advisory_xact_lock(hashtext('partitions:' || :t))"), {"t": table})


def _deferred(db_session: Session, exc: OperationalError | IntegrityError, **where: str) -> None:
    """A lock timeout (or, for a new month, a row that reached the default meanwhile) leaves the change for the
    next run; anything else is a real failure."""
    db_session.rollback()
    if getattr(exc.orig, "sqlstate", None) not in (LOCK_NOT_AVAILABLE, DEFAULT_CAUGHT_MORE):
        raise exc
    log.warning("partition_change_deferred", **where)


def _create(db_session: Session, table: str, lo: datetime, hi: datetime) -> str:
    """Create [lo, hi) as a plain table, move in what the default caught for it, then ATTACH (see module doc)."""
    key, name = PARTITIONED[table], f"{table}_p{lo:%Y%m}"
    lo_s, hi_s = lo.isoformat(), hi.isoformat()
    # LIKE copies columns, defaults and CHECKs (ATTACH needs the parent's CHECKs by name); ATTACH then builds the
    # parent's indexes and keys on the new, still small table. ATTACH locks the parent only SHARE UPDATE
    # EXCLUSIVE (reads and writes go on); CREATE TABLE .. PARTITION OF would take ACCESS EXCLUSIVE.
    db_session.execute(text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                            "INCLUDING STORAGE)"))
    db_session.execute(text(f"WITH moved AS (DELETE FROM {table}_default WHERE {key} >= :lo AND {key} < :hi "
                            f"RETURNING *) INSERT INTO {name} SELECT * FROM moved"), {"lo": lo, "hi": hi})
    db_session.execute(text(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ('{lo_s}') TO ('{hi_s}')"))
    return name


def create_ahead(db_session: Session, table: str, now: datetime, months: int | None = None) -> list[str]:
    """Create the partitions of the current month and ``months`` ahead that are missing; returns their names."""
    _check(table)
    months = get_partition_settings().premake_months if months is None else months
    created = []
    for i in range(months + 1):
        lo, hi = month_start(now, i), month_start(now, i + 1)
        try:
            _lock(db_session, table)
            gap = _gap(partitions(db_session, table), lo, hi)
            if gap is not None:
                created.append(_create(db_session, table, *gap))
            db_session.commit()
        except (OperationalError, IntegrityError) as exc:
            _deferred(db_session, exc, table=table, month=f"{lo:%Y-%m}")
    return created


def drop_behind(db_session: Session, table: str, now: datetime, keep_months: int | None = None) -> list[str]:
    """Detach and drop range partitions wholly older than the kept months; returns their names."""
    _check(table)
    keep = get_partition_settings().keep_months(table) if keep_months is None else keep_months
    if keep <= 0:
        return []
    cutoff = month_start(now, -keep)
    dropped = []
    for p in partitions(db_session, table):
        if p.default or p.hi is None or p.hi > cutoff:
            continue
        try:
            _lock(db_session, table)
            db_session.execute(text(f"ALTER TABLE {table} DETACH PARTITION {p.name}"))
            db_session.execute(text(f"DROP TABLE {p.name}"))
            db_session.commit()
            dropped.append(p.name)
        except OperationalError as exc:
            _deferred(db_session, exc, table=table, partition=p.name)
    db_session.commit()
    return dropped


def maintain(*, db_session: Session, now: datetime | None = None) -> dict[str, dict[str, list[str]]]:
    """Create the coming months and apply retention on every partitioned table (the beat task's body)."""
    now = now or clock.now()  # rows are stamped on the service clock (simulated in `fieldproof simulate`)
    out = {}
    for table in PARTITIONED:
        out[table] = {"created": create_ahead(db_session, table, now),
                      "dropped": drop_behind(db_session, table, now)}
        if out[table]["created"] or out[table]["dropped"]:
            log.info("partitions_maintained", table=table, **out[table])
    return out
