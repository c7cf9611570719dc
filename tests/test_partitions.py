"""Monthly partitions: the online conversion (up and down, rows kept and routed), maintenance ahead, retention behind,
and pruning of the check-in history reads."""
from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from checkin.service import _MEASURE
from core import partitions
from core.db import database_url
from core.migrate import alembic_config, upgrade
from tests.helpers import DEVICE_ACCOUNTS_SQL, RECENT_FIXES_SQL

UTC = timezone.utc
OLD = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)


def _fresh_database(suffix: str) -> str:
    """A new empty database beside the test database (DDL here never touches the shared one)."""
    base, name = database_url().rsplit("/", 1)
    admin = create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}_{suffix}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}_{suffix}"'))
    admin.dispose()
    return f"{base}/{name}_{suffix}"


def _seed(conn, at: datetime, n: int = 3) -> None:
    """Users, a task and a claim; n check-ins, n claim audit rows and n hour roll-ups at ``at`` + i days."""
    conn.execute(text("INSERT INTO app_user (id, username, password_hash, role, display_name) VALUES "
                      "(1, 'w', 'x', 'worker', 'w'), (2, 'm', 'x', 'merchant', 'm') ON CONFLICT DO NOTHING"))
    conn.execute(text(
        "INSERT INTO task (id, merchant_id, title, description, type, state, reward_fen, slots, slots_taken, starts_at,"
        " ends_at, fence, center, fence_kind, radius_m, area_m2, hard_fence, photos_min, video_required, min_credit)"
        " VALUES (1, 2, 't', '', 'store_visit', 'published', 100, 5, 1, '2020-01-01', '2040-01-01',"
        " ST_Buffer(ST_GeogFromText('POINT(116.4 39.9)'), 100), ST_GeogFromText('POINT(116.4 39.9)'), 'circle', 100,"
        " 31400, true, 1, false, 0) ON CONFLICT DO NOTHING"))
    conn.execute(text("INSERT INTO claim (id, task_id, worker_id, state, expires_at, risk_score, flags)"
                      " VALUES (1, 1, 1, 'claimed', '2040-01-01', 0, '{}') ON CONFLICT DO NOTHING"))
    for i in range(n):
        t = at + timedelta(days=i)
        conn.execute(text(
            "INSERT INTO checkin (claim_id, worker_id, task_id, kind, point, lat, lon, raw_lat, raw_lon, raw_crs,"
            " raw_coord_key, accuracy_m, accuracy_95_m, provider, device_id, client_time, server_time, verdict,"
            " distance_m, risk_score, reasons, signals) VALUES (1, 1, 1, 'in', ST_GeogFromText('POINT(116.4 39.9)'),"
            " 39.9, 116.4, 39.9, 116.4, 'wgs84', :k, 10, 16, 'gps', 'd', :t, :t, 'inside', 0, 0, '{}', '[]')"),
            {"t": t, "k": f"k{t.isoformat()}"})
        conn.execute(text("INSERT INTO claim_event (claim_id, from_state, to_state, at) "
                          "VALUES (1, 'claimed', 'checked_in', :t)"), {"t": t})
        conn.execute(text("INSERT INTO heat_cell_hour (res, cell, hour, lat, lon, checkins) "
                          "VALUES (9, :c, :h, 39.9, 116.4, 1)"), {"c": 600000 + i, "h": t.replace(minute=0)})


def _where(conn, table: str) -> dict[str, int]:
    """Rows per partition (or per table, before the conversion)."""
    return dict(conn.execute(text(f"SELECT tableoid::regclass::text, count(*) FROM {table} GROUP BY 1")).all())


def _ids(conn, table: str) -> list[int]:
    return list(conn.execute(text(f"SELECT id FROM {table} ORDER BY id")).scalars())


def test_migration_converts_tables_with_rows_online_and_back():
    url = _fresh_database("partmig")
    upgrade(url, "0011")
    engine = create_engine(url)
    with engine.begin() as conn:
        _seed(conn, OLD)
        before = {t: _ids(conn, t) for t in ("checkin", "claim_event")}
    upgrade(url, "0014_partitions")
    with engine.begin() as conn:
        for table in partitions.PARTITIONED:
            assert conn.execute(text("SELECT relkind FROM pg_class WHERE relname = :t"), {"t": table}).scalar() == "p"
            assert _where(conn, table) == {f"{table}_legacy": 3}  # attached in place, nothing copied or lost
        assert {t: _ids(conn, t) for t in before} == before
        uppers = [p.hi for p in partitions.partitions(Session(bind=conn), "checkin") if p.name == "checkin_legacy"]
        month_after = uppers[0] + timedelta(days=3)
        _seed(conn, month_after, n=1)
        _seed(conn, datetime(2031, 7, 1, tzinfo=UTC), n=1)  # beyond the months made ahead: the default catches it
        for table in partitions.PARTITIONED:
            assert _where(conn, table) == {f"{table}_legacy": 3, f"{table}_p{month_after:%Y%m}": 1,
                                           f"{table}_default": 1}
        # The same sequence goes on: new ids follow the old ones.
        assert min(_ids(conn, "checkin")[3:]) > max(before["checkin"])
    command.downgrade(alembic_config(url), "0011")
    with engine.begin() as conn:
        for table in partitions.PARTITIONED:
            assert _where(conn, table) == {table: 5}
        assert conn.execute(text("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'pk_checkin'")
                            ).scalar() == "PRIMARY KEY (id)"
        _seed(conn, OLD + timedelta(days=40), n=1)
    upgrade(url, "head")  # and up again, with the rows written in between
    with engine.begin() as conn:
        assert _where(conn, "claim_event") == {"claim_event_legacy": 6}
    engine.dispose()


@pytest.fixture(scope="module")
def partitioned_url():
    """A database migrated to head on its own: maintenance DDL runs there, inside rolled-back transactions."""
    url = _fresh_database("parts")
    upgrade(url, "head")
    yield url


@pytest.fixture
def pdb(partitioned_url):
    engine = create_engine(partitioned_url)
    conn = engine.connect()
    outer = conn.begin()
    session = Session(bind=conn, join_transaction_mode="create_savepoint")
    yield session
    session.close()
    outer.rollback()
    conn.close()
    engine.dispose()


def _names(db, table: str) -> list[str]:
    return [p.name for p in partitions.partitions(db, table)]


def test_maintenance_creates_coming_months_once(pdb):
    now = datetime(2031, 5, 10, 12, tzinfo=UTC)
    made = partitions.create_ahead(pdb, "checkin", now, months=2)
    assert made == ["checkin_p203105", "checkin_p203106", "checkin_p203107"]
    assert partitions.create_ahead(pdb, "checkin", now, months=2) == []
    assert partitions.create_ahead(pdb, "checkin", now + timedelta(days=31), months=2) == ["checkin_p203108"]
    names = _names(pdb, "checkin")
    assert names[-5:] == ["checkin_p203105", "checkin_p203106", "checkin_p203107", "checkin_p203108",
                          "checkin_default"]


def test_rows_the_default_caught_move_into_their_new_month(pdb):
    stray = datetime(2031, 6, 2, 5, tzinfo=UTC)
    pdb.execute(text("INSERT INTO heat_cell_hour (res, cell, hour, lat, lon, checkins) VALUES (9, 1, :h, 1, 1, 4)"),
                {"h": stray})
    assert _where(pdb, "heat_cell_hour") == {"heat_cell_hour_default": 1}
    assert partitions.create_ahead(pdb, "heat_cell_hour", stray, months=0) == ["heat_cell_hour_p203106"]
    assert _where(pdb, "heat_cell_hour") == {"heat_cell_hour_p203106": 1}
    assert pdb.execute(text("SELECT checkins FROM heat_cell_hour WHERE hour = :h"), {"h": stray}).scalar() == 4


def test_retention_drops_only_months_older_than_the_setting(pdb):
    partitions.create_ahead(pdb, "heat_cell_hour", datetime(2031, 1, 10, tzinfo=UTC), months=3)
    for at in (OLD, datetime(2031, 1, 20, tzinfo=UTC), datetime(2031, 2, 1, tzinfo=UTC),
               datetime(2031, 3, 31, 23, tzinfo=UTC)):
        pdb.execute(text("INSERT INTO heat_cell_hour (res, cell, hour, lat, lon) VALUES (9, 1, :h, 1, 1)"), {"h": at})
    assert partitions.drop_behind(pdb, "heat_cell_hour", datetime(2031, 3, 15, tzinfo=UTC), keep_months=0) == []
    before = partitions.partitions(pdb, "heat_cell_hour")
    dropped = partitions.drop_behind(pdb, "heat_cell_hour", datetime(2031, 3, 15, tzinfo=UTC), keep_months=1)
    cutoff = datetime(2031, 2, 1, tzinfo=UTC)
    assert dropped == [p.name for p in before if not p.default and p.hi <= cutoff]
    assert "heat_cell_hour_legacy" in dropped and "heat_cell_hour_p203101" in dropped
    assert _names(pdb, "heat_cell_hour") == ["heat_cell_hour_p203102", "heat_cell_hour_p203103",
                                             "heat_cell_hour_p203104", "heat_cell_hour_default"]
    hours = pdb.execute(text("SELECT hour FROM heat_cell_hour ORDER BY hour")).scalars().all()
    assert hours == [datetime(2031, 2, 1, tzinfo=UTC), datetime(2031, 3, 31, 23, tzinfo=UTC)]


def test_maintain_keeps_claim_audit_rows_by_default(pdb):
    far = datetime(2033, 9, 1, tzinfo=UTC)
    done = partitions.maintain(db_session=pdb, now=far)
    assert done["claim_event"]["dropped"] == []  # audit rows: retention 0 = kept
    assert "checkin_legacy" in done["checkin"]["dropped"] and "checkin_p203309" in done["checkin"]["created"]
    assert "heat_cell_hour_p203312" in done["heat_cell_hour"]["created"]
    again = partitions.maintain(db_session=pdb, now=far)
    assert all(not v["created"] and not v["dropped"] for v in again.values())


def test_beat_runs_maintenance_on_the_real_database():
    from workers.schedule import BEAT_SCHEDULE
    from workers.tasks import maintain_partitions

    assert BEAT_SCHEDULE["maintain-partitions"]["task"] == maintain_partitions.name
    # The migration already made the months ahead of today: the task finds nothing to do, twice.
    assert maintain_partitions() == maintain_partitions() == {t: {"created": [], "dropped": []}
                                                               for t in partitions.PARTITIONED}


def _measure_plan(db, server_time: datetime) -> str:
    params = {"claim_id": 1, "worker_id": 1, "lon": 116.4, "lat": 39.9, "recent_n": 4, "coord_key": "k",
              "fix_day": server_time.date(), "device_id": "d", "device_cap": 2, "ip": "192.0.2.1",
              "ip_since": server_time - timedelta(hours=1), "ip_rows": 500, "ip_enough": 8, "radio": "{}",
              "history_since": server_time - timedelta(days=92), "history_until": server_time + timedelta(minutes=5)}
    return "\n".join(db.execute(text("EXPLAIN " + _MEASURE.text), params).scalars())


def test_history_reads_skip_months_before_their_window(db):
    legacy_hi = next(p.hi for p in partitions.partitions(db, "checkin") if p.name == "checkin_legacy")
    now = _measure_plan(db, legacy_hi - timedelta(days=1))
    # The window's upper bound keeps the months made ahead and the default partition out of the plan.
    assert "checkin_legacy" in now and "checkin_default" not in now and f"checkin_p{legacy_hi:%Y%m}" not in now
    later = _measure_plan(db, legacy_hi + timedelta(days=130))  # the window starts 38 days after legacy_hi
    assert "checkin_legacy" not in later and f"checkin_p{legacy_hi:%Y%m}" not in later
    assert f"checkin_p{legacy_hi + timedelta(days=40):%Y%m}" in later


def test_the_shared_ip_count_reads_only_the_months_in_its_window(db):
    """fieldproof_ip_accounts (migration 0017) runs its own query, which the measure's EXPLAIN cannot show: the
    partitions it scanned, counted in this transaction's statistics, are the window's month and no other."""
    legacy_hi = next(p.hi for p in partitions.partitions(db, "checkin") if p.name == "checkin_legacy")
    scanned = text("SELECT relname FROM pg_stat_xact_user_tables WHERE relname LIKE 'checkin%' "
                   "AND coalesce(seq_scan, 0) + coalesce(idx_scan, 0) > 0")
    assert db.execute(scanned).scalars().all() == []
    for at, month in ((legacy_hi - timedelta(days=1), "checkin_legacy"),
                      (legacy_hi + timedelta(days=40), f"checkin_p{legacy_hi + timedelta(days=40):%Y%m}")):
        db.execute(text("SELECT fieldproof_ip_accounts(CAST('192.0.2.1' AS inet), :since, :until, 0, 500, 8)"),
                   {"since": at - timedelta(hours=1), "until": at + timedelta(minutes=5)})
        assert month in db.execute(scanned).scalars().all()
    assert sorted(db.execute(scanned).scalars()) == sorted(
        ["checkin_legacy", f"checkin_p{legacy_hi + timedelta(days=40):%Y%m}"])


# Fixes in bulk for the tests of what the history reads cost: worker, device and address per row given as SQL
# expressions of g (1..n), each :step before the last from :t back.
def _fixes(worker: str, device: str, ip: str) -> str:
    return f"""
        INSERT INTO checkin (claim_id, worker_id, task_id, kind, point, lat, lon, raw_lat, raw_lon, raw_crs,
                             raw_coord_key, accuracy_m, accuracy_95_m, provider, device_id, ip, client_time,
                             server_time, verdict, distance_m, risk_score, reasons, signals)
        SELECT 1, {worker}, 1, 'in', ST_GeogFromText('POINT(116.4 39.9)'), 39.9, 116.4, 39.9, 116.4, 'wgs84',
               'k' || g, 10, 16, 'gps', {device}, {ip}, :t - g * :step, :t - g * :step, 'inside', 0, 0, '{{}}', '[]'
          FROM generate_series(1, :n) g"""


@contextmanager
def _stale_statistics(suffix: str, *later: tuple[str, dict]):
    """A fresh database whose statistics were taken over 20,000 fixes of 20,000 workers on as many phones, none
    with an address; then ``later`` (SQL, params) adds fixes the statistics never see (autovacuum off). Yields
    (engine, now)."""
    url = _fresh_database(suffix)
    upgrade(url, "head")
    engine = create_engine(url, poolclass=NullPool)  # each connect() a new session: plans made afresh
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            _seed(conn, now - timedelta(days=3), n=1)
            for name in partitions.partitions(conn, "checkin"):
                conn.execute(text(f"ALTER TABLE {name.name} SET (autovacuum_enabled = false)"))
            conn.execute(text("SET LOCAL session_replication_role = replica"))  # worker ids without users
            conn.execute(text(_fixes("1000 + g", "'d' || g", "NULL")),
                         {"t": now - timedelta(days=2), "step": timedelta(seconds=1), "n": 20000})
            conn.execute(text("ANALYZE checkin"))
            for sql, params in later:
                conn.execute(text(sql), {"t": now, **params})
        yield engine, now
    finally:
        engine.dispose()


_TYPES = {"w": "bigint", "since": "timestamptz", "until": "timestamptz", "n": "integer", "device": "text",
          "cap": "integer"}


def _buffers(engine, sql: str, params: dict) -> int:
    """Shared buffers one execution of ``sql`` (with parameters) touches, prepared and planned generically as on the
    write path's pool (EXPLAIN of a statement with parameters would plan it for their values; EXECUTE takes them
    inline), in a new session; the first execution plans (and reads the catalogs), the second is counted."""
    names = list(dict.fromkeys(re.findall(r":(\w+)", sql)))
    body = re.sub(r":(\w+)", lambda m: f"${names.index(m.group(1)) + 1}", sql)
    args, values = ", ".join(["%s"] * len(names)), [params[n] for n in names]
    with engine.connect() as conn, psycopg.ClientCursor(conn.connection.driver_connection) as cur:
        cur.execute("SET plan_cache_mode = force_generic_plan")
        cur.execute(f"PREPARE q ({', '.join(_TYPES[n] for n in names)}) AS {body}")
        cur.execute(f"EXECUTE q ({args})", values)
        cur.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE q ({args})", values)
        plan = cur.fetchone()[0][0]["Plan"]
        return plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]


def test_the_shared_ip_count_reads_newest_first_whatever_the_statistics_say():
    """Migration 0018. The statistics of a fresh database say an address has few fixes (all seeded without one);
    then 3,000 fixes arrive from one carrier NAT address. Planned generically, as on the write path's pool, the
    count's query sorted every fix of the address in the hour before reading the first (Append + Sort: 134 buffers
    here, and a buffer a fix where they lie apart); the function's own ``enable_sort = off`` keeps the index walk
    that stops at the 8th account (4 buffers)."""
    nat = (_fixes("1000 + g", "'d' || g", "CAST('203.0.113.7' AS inet)"), {"step": timedelta(seconds=1), "n": 3000})
    with _stale_statistics("ipplan", nat) as (engine, now):
        count = "SELECT fieldproof_ip_accounts(CAST('203.0.113.7' AS inet), :since, :until, 0, 500, 8)"
        window = {"since": now - timedelta(hours=1), "until": now}
        ordered = _buffers(engine, count, window)
        with engine.begin() as conn:
            conn.execute(text("ALTER FUNCTION fieldproof_ip_accounts(inet, timestamptz, timestamptz, bigint, integer,"
                              " integer) RESET enable_sort"))
        sorted_first = _buffers(engine, count, window)
    assert sorted_first > 100, sorted_first  # the case is real: without it, every fix of the address is read
    assert ordered <= 10, ordered  # here 4: the index's descent and the page holding the newest fixes


def test_a_busy_workers_history_reads_stop_at_their_answer():
    """Migration 0019. A worker with 3,000 fixes in the window on their own phone, which one other account used
    once. Planned generically, the latest-fixes read sorted all 3,000 and the other-accounts count read all 3,000
    to drop the worker's own; now each reads a few index pages, with the same answers."""
    busy = (_fixes("7", "'phone-7'", "NULL"), {"step": timedelta(minutes=40), "n": 3000})
    other = (_fixes("8", "'phone-7'", "NULL"), {"step": timedelta(days=1), "n": 1})
    with _stale_statistics("busy", busy, other) as (engine, now):
        window = {"since": now - timedelta(days=92), "until": now + timedelta(minutes=5), "w": 7}
        reads = {}
        for name, old, new, params in (
                ("recent", RECENT_FIXES_SQL, "SELECT fieldproof_recent_fixes(:w, :since, :until, :n)", {"n": 4}),
                ("devices", DEVICE_ACCOUNTS_SQL,
                 "SELECT fieldproof_device_accounts(:device, :since, :until, :w, :cap)", {"device": "phone-7",
                                                                                          "cap": 2})):
            with engine.connect() as conn:
                assert conn.execute(text(new), {**window, **params}).scalar_one() == \
                    conn.execute(text(old), {**window, **params}).scalar_one()
            reads[name] = (_buffers(engine, old, {**window, **params}), _buffers(engine, new, {**window, **params}))
    for name, (before, now_) in reads.items():
        assert before > 50, (name, reads)  # the worker's whole history, before (here 132 and 93)
        assert now_ <= 20, (name, reads)  # a few index descents (one per month in the window): here 3 and 8


def test_a_row_the_default_catches_while_its_month_is_made_defers_that_month_not_the_run():
    """A write into the default partition between the move and the ATTACH (its month had no partition yet) made
    ATTACH fail with a check violation, which escaped maintain(): the run stopped and skipped the other tables.
    Now that month waits for the next run (nothing lost), and the next run moves both rows."""
    from sqlalchemy import event

    url = _fresh_database("partrace")
    upgrade(url, "head")
    engine, other = create_engine(url), create_engine(url, isolation_level="AUTOCOMMIT")
    month = datetime(2032, 3, 5, tzinfo=UTC)
    insert = text("INSERT INTO heat_cell_hour (res, cell, hour, lat, lon, checkins) VALUES (9, :c, :h, 1, 1, 1)")
    with other.connect() as conn:
        conn.execute(insert, {"c": 1, "h": month})
    fired = []

    @event.listens_for(engine, "after_cursor_execute")
    def _write_meanwhile(conn, cursor, statement, *args):  # another session's write lands in between, committed
        if statement.startswith("WITH moved AS (DELETE FROM heat_cell_hour_default") and not fired:
            fired.append(True)
            with other.connect() as c:
                c.execute(insert, {"c": 2, "h": month + timedelta(hours=1)})

    try:
        with Session(engine) as db:
            assert partitions.create_ahead(db, "heat_cell_hour", month, months=0) == []  # deferred, not raised
            assert fired
            assert partitions.create_ahead(db, "heat_cell_hour", month, months=0) == ["heat_cell_hour_p203203"]
            assert _where(db, "heat_cell_hour") == {"heat_cell_hour_p203203": 2}
    finally:
        engine.dispose()
        other.dispose()


def test_a_claims_fixes_leave_next_months_partition_out_in_a_months_last_week(db, monkeypatch):
    """of_claim reads up to now plus a few minutes: in a month's last days the month made ahead (empty) stays out of
    the plan (a week of slack put it in: each of its btree indexes' metapages read on every planning)."""
    from sqlalchemy import select

    from checkin import models

    legacy_hi = next(p.hi for p in partitions.partitions(db, "checkin") if p.name == "checkin_legacy")
    month, following = partitions.month_start(legacy_hi, 1), partitions.month_start(legacy_hi, 2)
    now = following - timedelta(days=2)
    monkeypatch.setattr(models, "utcnow", lambda: now)
    stmt = select(models.Checkin.id).where(*models.of_claim(1, now - timedelta(days=1)))
    compiled = stmt.compile(dialect=db.get_bind().dialect)
    plan = "\n".join(r[0] for r in db.connection().exec_driver_sql("EXPLAIN " + str(compiled), compiled.params))
    assert f"checkin_p{month:%Y%m}" in plan
    assert f"checkin_p{following:%Y%m}" not in plan and "checkin_default" not in plan, plan
