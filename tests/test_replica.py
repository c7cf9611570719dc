"""The streaming read replica against a real standby of the local cluster (pg_basebackup -R, `db up --replica`).

Rows here are committed (the standby only sees commits), so they live in databases of their own, dropped at the end.
"""
from __future__ import annotations

import json
import time

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core import localservices, replica
from core.config import get_settings
from core.db import database_url, get_replica_engine
from core.localscale import STANDBY_MAX_KEPT_WAL, STANDBY_SLOT, Standby, on_local_cluster
from tests.helpers import wait_until

pytestmark = pytest.mark.skipif(not on_local_cluster(database_url()),
                                reason="the standby is copied from the local cluster")


@pytest.fixture(scope="session")
def standby(test_database) -> Standby:
    """The local standby, started once (left running for the next run; `fieldproof db down` stops it)."""
    node = Standby(localservices.LocalServices.from_settings())
    node.up()
    return node


@pytest.fixture(scope="module")
def probe_db(standby):
    """A scratch database with one table, on the primary (and so on the standby): (primary URL, replica URL)."""
    base, name = database_url().rsplit("/", 1)
    scratch = f"{name}_replica_probe"
    admin = create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{scratch}"'))
    primary_url = f"{base}/{scratch}"
    with create_engine(primary_url).begin() as conn:
        conn.execute(text("CREATE TABLE probe (id bigserial PRIMARY KEY, note text NOT NULL)"))
    replica_url = _on_port(primary_url, standby.port)
    # A standby just started may still be replaying what it missed: the tests begin once it has the table.
    assert wait_until(lambda: _has_probe(replica_url), timeout=120)
    yield primary_url, replica_url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def routing(monkeypatch, probe_db):
    """Replica reads on (FIELDPROOF_REPLICA_URL: the probe database on the standby), per-class bounds given by the
    test; yields a primary session factory. Settings and engines are rebuilt after."""
    primary_url, replica_url = probe_db
    primary = create_engine(primary_url)

    def configure(**bounds: float):
        monkeypatch.setenv("FIELDPROOF_REPLICA_URL", replica_url)
        monkeypatch.setenv("FIELDPROOF_REPLICA_RETRY_S", "0")
        monkeypatch.setenv("FIELDPROOF_REPLICA_MAX_LAG_S", json.dumps(bounds))
        _reset()
        return lambda: Session(primary)

    yield configure
    if get_replica_engine() is not None:
        get_replica_engine().dispose()
    monkeypatch.undo()
    _reset()
    primary.dispose()


def _has_probe(url: str) -> bool:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT to_regclass('probe') IS NOT NULL")).scalar_one()
    except DBAPIError:  # the database itself not replayed yet
        return False
    finally:
        engine.dispose()


def _on_port(url: str, port: int) -> str:
    return make_url(url).set(port=port).render_as_string(hide_password=False)


def _reset() -> None:
    get_settings.cache_clear()
    get_replica_engine.cache_clear()
    replica._down_until = 0.0


def _write(session_factory, note: str) -> None:
    with session_factory() as s:
        s.execute(text("INSERT INTO probe (note) VALUES (:n)"), {"n": note})
        s.commit()


def _choose(session_factory, query_class: str):
    """(where the read went, whether it saw every probe note) for one routed read."""
    with session_factory() as primary:
        chosen = replica.read_session(primary, query_class)
        target = chosen if chosen is not None else primary
        try:
            where = "replica" if target.execute(text("SELECT pg_is_in_recovery()")).scalar_one() else "primary"
            return where, {n for n, in target.execute(text("SELECT note FROM probe"))}
        finally:
            if chosen is not None:
                chosen.close()


def _reads(query_class: str, target: str, reason: str) -> float:
    return REGISTRY.get_sample_value("fieldproof_db_reads_total",
                                     {"query_class": query_class, "target": target, "reason": reason}) or 0.0


def _set_replay(standby: Standby, paused: bool) -> None:
    url = _on_port(database_url().rsplit("/", 1)[0] + "/postgres", standby.port)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()"))
    engine.dispose()


def test_a_write_on_the_primary_becomes_visible_on_the_read_only_replica(routing, probe_db):
    primary = routing(hall=3600)
    _write(primary, "visible-1")
    replica_engine = get_replica_engine()

    def seen() -> bool:
        with replica_engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM probe WHERE note = 'visible-1'")).scalar_one() == 1

    assert wait_until(seen, timeout=60)
    with replica_engine.connect() as conn, pytest.raises(DBAPIError, match="read-only"):
        conn.execute(text("INSERT INTO probe (note) VALUES ('no')"))


def test_a_caught_up_replica_serves_even_the_read_your_writes_class(routing):
    primary = routing(statement=0, hall=5)
    _write(primary, "own-write")
    # Bound 0: only a replica that replayed everything the primary had when the read began (the caller's own
    # write included); once it has caught up, both classes read it and see the write.
    assert wait_until(lambda: _choose(primary, "statement")[0] == "replica", timeout=60)
    where, notes = _choose(primary, "hall")
    assert where == "replica" and "own-write" in notes
    assert _choose(primary, "unlisted_class")[0] == "primary"  # a class without a bound never reads the replica


def test_paused_replay_sends_each_class_to_the_primary_past_its_bound(routing, standby):
    primary = routing(statement=0, stats=0.3, heatmap=3600)
    _write(primary, "before-pause")
    assert wait_until(lambda: _choose(primary, "statement")[0] == "replica", timeout=60)
    _set_replay(standby, paused=True)
    try:
        _write(primary, "while-paused")
        lagging_before = _reads("statement", "primary", "replica_lagging")
        where, notes = _choose(primary, "statement")
        assert (where, "while-paused" in notes) == ("primary", True)  # own writes: never the stale replica
        assert _reads("statement", "primary", "replica_lagging") == lagging_before + 1
        where, notes = _choose(primary, "heatmap")  # within its hour: the replica, without the new row
        assert (where, "while-paused" in notes) == ("replica", False)
        # The lag grows while replay stays paused; past 0.3 s the stats class leaves the replica.
        assert wait_until(lambda: _choose(primary, "stats")[0] == "primary", timeout=60)
        assert replica.LAG_BYTES._value.get() > 0 and replica.LAG_SECONDS._value.get() > 0.3
    finally:
        _set_replay(standby, paused=False)
    # Resumed: it catches up, and even the read-your-writes class reads it again, seeing the row.
    def caught_up() -> bool:
        where, notes = _choose(primary, "statement")
        return where == "replica" and "while-paused" in notes

    assert wait_until(caught_up, timeout=60)


def test_a_stopped_replica_sends_reads_to_the_primary_and_is_used_again_once_back(routing, standby):
    primary = routing(hall=3600)
    assert wait_until(lambda: _choose(primary, "hall")[0] == "replica", timeout=60)
    standby.down()
    try:
        down_before = _reads("hall", "primary", "replica_down")
        where, _ = _choose(primary, "hall")
        assert where == "primary" and _reads("hall", "primary", "replica_down") == down_before + 1
        with pytest.raises(DBAPIError):
            replica.status()
    finally:
        standby.up()
    assert wait_until(lambda: _choose(primary, "hall")[0] == "replica", timeout=60)
    assert replica.status()["lag_bytes"] >= 0


def test_lag_is_timed_on_the_primarys_clock_alone(routing, standby, monkeypatch):
    """With replay paused, the lag is the primary's time (read with its WAL position) minus the commit time of the
    newest replayed transaction: the replica's clock takes no part, so a skewed host cannot make it look stale or
    fresh. A primary time shifted by 30 s (as if its clock were off) shifts the lag by exactly 30 s."""
    from datetime import timedelta

    primary = routing(statement=0, heatmap=3600)
    _write(primary, "before-skew")
    assert wait_until(lambda: _choose(primary, "statement")[0] == "replica", timeout=60)
    _set_replay(standby, paused=True)
    try:
        _write(primary, "while-paused-skew")
        with primary() as p:
            position = replica.Position.read(p)
        with Session(get_replica_engine()) as r:
            replayed_at = r.execute(text("SELECT pg_last_xact_replay_timestamp()")).scalar_one()
            lag = replica.Lag.measure(position, r)
            assert lag.bytes > 0 and lag.paused
            assert lag.seconds == pytest.approx((position.at - replayed_at).total_seconds(), abs=1e-6)
            # The replica's clock moves on; the lag against the same primary reading does not.
            time.sleep(0.5)
            assert replica.Lag.measure(position, r).seconds == pytest.approx(lag.seconds, abs=1e-6)
            ahead = replica.Lag.measure(replica.Position(position.lsn, position.at + timedelta(seconds=30)), r)
            assert ahead.seconds == pytest.approx(lag.seconds + 30, abs=1e-6)
            # A primary reading before the replayed commit (its clock stepped back): 0 s, still behind in bytes,
            # and so still not fresh enough for the read-your-writes class.
            back = replica.Lag.measure(replica.Position(position.lsn, replayed_at - timedelta(seconds=30)), r)
            assert (back.seconds, back.bytes > 0, back.within(0), back.within(5)) == (0.0, True, False, True)
        # Routing takes the same reading from the primary: two hours on the primary's clock are two hours of lag.
        assert _choose(primary, "heatmap")[0] == "replica"
        monkeypatch.setattr(replica, "_PRIMARY_SQL", text(
            "SELECT pg_current_wal_lsn()::text, clock_timestamp() + interval '2 hours'"))
        assert _choose(primary, "heatmap")[0] == "primary"
        monkeypatch.setattr(replica, "_PRIMARY_SQL", text(
            "SELECT pg_current_wal_lsn()::text, clock_timestamp() - interval '2 hours'"))
        assert _choose(primary, "statement")[0] == "primary"  # 0 s of lag, but behind: not the stale replica
    finally:
        _set_replay(standby, paused=False)


def test_the_standby_streams_through_a_slot_and_is_copied_again_when_its_wal_is_gone(standby, probe_db):
    """The primary keeps the standby's unreceived WAL in a slot (bounded by max_slot_wal_keep_size), so a stopped or
    slow standby resumes; one whose slot is gone (or 'lost' past the bound) would wait forever for removed WAL
    segments, so `up` copies the primary again."""
    primary_url, replica_url = probe_db
    admin = create_engine(primary_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")

    def slot() -> tuple | None:
        with admin.connect() as conn:
            return conn.execute(text("SELECT active, wal_status FROM pg_replication_slots WHERE slot_name = :s"),
                                {"s": STANDBY_SLOT}).first()

    try:
        assert wait_until(lambda: (slot() or (False,))[0], timeout=30), slot()
        with admin.connect() as conn:
            assert conn.execute(text("SHOW max_slot_wal_keep_size")).scalar_one() == STANDBY_MAX_KEPT_WAL
        standby.down()
        with admin.connect() as conn:  # as if the slot had been lost: the standby's next WAL is not kept
            conn.execute(text("SELECT pg_drop_replication_slot(:s)"), {"s": STANDBY_SLOT})
        standby.up()
        assert wait_until(lambda: (slot() or (False,))[0], timeout=30), slot()
        with create_engine(primary_url).begin() as conn:
            conn.execute(text("INSERT INTO probe (note) VALUES ('after the copy')"))
        replica_engine = create_engine(replica_url)
        assert wait_until(lambda: _count(replica_engine, "after the copy"), timeout=60)
        replica_engine.dispose()
    finally:
        standby.up()
        admin.dispose()


def _count(engine, note: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM probe WHERE note = :n"), {"n": note}).scalar_one()
