"""Read routing to the streaming replica: per read class, the replica when it is fresh enough, else the primary.

Freshness is measured per read, in two round trips on connections the read holds anyway: the primary's WAL
position (``pg_current_wal_lsn()``, on the request's own primary session, after authentication) and the
replica's replay position. A replica that has replayed past that position holds everything committed before the
request began, the caller's own writes included: lag 0. Behind it, the lag is the age of the newest transaction
it has replayed, on the primary's clock alone: the primary's ``clock_timestamp()`` read with its WAL position, minus
``pg_last_xact_replay_timestamp()`` (that transaction's commit time, also stamped by the primary), never below 0.
The replica's own clock takes no part, so skew between the hosts does not move it. Paused or slow replay makes it
grow. Each class accepts at most ``replica_max_lag_s[class]`` seconds (bound 0: only a caught-up replica); more, or
a replica that does not answer, reads the primary.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core.config import get_settings
from core.db import AppSession, get_engine, get_replica_engine

log = logging.getLogger(__name__)

LAG_SECONDS = Gauge("fieldproof_replica_lag_seconds", "Replica staleness at the last read routed (0: caught up)")
LAG_BYTES = Gauge("fieldproof_replica_lag_bytes", "WAL the replica had not replayed at the last read routed")
READS = Counter("fieldproof_db_reads_total", "Read-class requests by where they read",
                ["query_class", "target", "reason"])

_REPLICA_SQL = text("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp(), "
                    "pg_is_in_recovery() AND pg_is_wal_replay_paused()")
# The primary's WAL position and its clock at that moment (clock_timestamp(): now() is the transaction's start).
_PRIMARY_SQL = text("SELECT pg_current_wal_lsn()::text, clock_timestamp()")
# After a failure, reads go to the primary until this monotonic time.
_down_until = 0.0


def lsn(value: str) -> int:
    """A PostgreSQL LSN ('16/B374D848') as a byte position."""
    high, low = value.split("/")
    return (int(high, 16) << 32) + int(low, 16)


@dataclass(frozen=True)
class Position:
    """The primary's WAL position and the primary's time when it was read."""

    lsn: str
    at: datetime

    @classmethod
    def read(cls, primary: Session) -> "Position":
        """Read on the primary (the request's own session)."""
        lsn_text, at = primary.execute(_PRIMARY_SQL).one()
        return cls(lsn_text, at)


@dataclass(frozen=True)
class Lag:
    """How far the replica is behind the primary position read just before."""

    seconds: float
    bytes: int
    paused: bool

    @classmethod
    def measure(cls, primary: Position, replica: Session) -> "Lag":
        """Compare the replica's replay position with the ``primary`` position (read on the primary first)."""
        recovering, replayed, replayed_commit_at, paused = replica.execute(_REPLICA_SQL).one()
        if not recovering:  # a URL pointing at a primary: nothing to lag behind
            return cls(0.0, 0, False)
        behind = max(0, lsn(primary.lsn) - lsn(replayed)) if replayed else None
        if behind == 0:
            return cls(0.0, 0, bool(paused))
        # Behind (or not yet replaying): as stale as the newest transaction it has replayed, by the primary's clock
        # (a commit time later than the primary's reading means that clock stepped back: 0, not negative).
        age_s = (math.inf if replayed_commit_at is None
                 else max(0.0, (primary.at - replayed_commit_at).total_seconds()))
        return cls(age_s, behind if behind is not None else -1, bool(paused))

    def within(self, bound_s: float) -> bool:
        """Fresh enough for a class bound to ``bound_s`` seconds; bound 0 takes only a caught-up replica (its own
        writes included), whatever the seconds say."""
        return self.seconds <= bound_s and (bound_s > 0 or self.bytes == 0)

    def as_dict(self) -> dict:
        """JSON-friendly (health checks)."""
        return {"lag_s": round(self.seconds, 3) if math.isfinite(self.seconds) else None, "lag_bytes": self.bytes,
                "replay_paused": self.paused}


def read_session(primary: Session, query_class: str) -> Session | None:
    """A replica session fresh enough for ``query_class``, or None: read on ``primary``. The caller closes it."""
    global _down_until
    engine = get_replica_engine()
    bound = get_settings().replica_max_lag_s.get(query_class)
    if engine is None or bound is None:
        return None
    if time.monotonic() < _down_until:
        READS.labels(query_class, "primary", "replica_down").inc()
        return None
    position = Position.read(primary)
    replica = AppSession(bind=engine, expire_on_commit=False)
    try:
        lag = Lag.measure(position, replica)
    except DBAPIError as exc:
        replica.close()
        _down_until = time.monotonic() + get_settings().replica_retry_s
        log.warning("replica unreachable, reading the primary for %.0f s: %s", get_settings().replica_retry_s,
                    str(exc).splitlines()[0])
        READS.labels(query_class, "primary", "replica_down").inc()
        return None
    LAG_SECONDS.set(lag.seconds if math.isfinite(lag.seconds) else -1)
    LAG_BYTES.set(lag.bytes)
    if not lag.within(bound):
        replica.close()
        READS.labels(query_class, "primary", "replica_lagging").inc()
        return None
    READS.labels(query_class, "replica", "fresh").inc()
    return replica


def status() -> dict | None:
    """The replica's lag for /healthz (None when no replica is configured); raises when it does not answer."""
    engine = get_replica_engine()
    if engine is None:
        return None
    with Session(get_engine()) as primary, Session(engine) as replica:
        lag = Lag.measure(Position.read(primary), replica)
    return lag.as_dict()
