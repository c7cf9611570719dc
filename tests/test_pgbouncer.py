"""PgBouncer in transaction mode in front of the local cluster (`fieldproof db up --pgbouncer`), for real."""
from __future__ import annotations

import subprocess
import threading
from contextlib import ExitStack

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from accounts import service as accounts
from core import localservices
from core.config import get_settings
from core.db import _connect_args, database_url, get_engine, pgbouncer_url
from core.localscale import Bouncer, on_local_cluster
from tests.fieldwork import STORE, publish_approved, task_body
from tests.helpers import PASSWORD, unique, wait_until
from tests.live import live_server, release_together

POOL = 16  # the bouncer's default_pool_size (settings pgbouncer_pool_size)


pytestmark = pytest.mark.skipif(not on_local_cluster(database_url()),
                                reason="the bouncer fronts the local cluster")


@pytest.fixture(scope="session")
def bouncer(test_database) -> Bouncer:
    """The local bouncer, started once (installed from Debian when missing; skipped only if that fails)."""
    node = Bouncer(localservices.LocalServices.from_settings())
    try:
        node.up()
    except (SystemExit, subprocess.CalledProcessError) as exc:
        pytest.skip(f"PgBouncer could not be installed or started: {exc}")
    return node


@pytest.fixture
def via_bouncer(monkeypatch, bouncer):
    """Settings routing the engine through the local bouncer; restored after."""
    monkeypatch.setenv("FIELDPROOF_PGBOUNCER", "1")
    get_settings.cache_clear()
    yield pgbouncer_url()
    monkeypatch.undo()
    get_settings.cache_clear()


def _admin(bouncer: Bouncer, command: str) -> list[dict]:
    """A SHOW command on the bouncer's admin console (simple query protocol only: a client-side cursor)."""
    st = bouncer.svc.state()
    with psycopg.connect(host="127.0.0.1", port=bouncer.port, user="fieldproof", password=st["pg_password"],
                         dbname="pgbouncer", autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
        cur = conn.execute(command)
        return [dict(zip([d.name for d in cur.description], row)) for row in cur.fetchall()]


def _dsn(url: str) -> dict:
    u = make_url(url)
    return {"host": u.host, "port": u.port, "user": u.username, "password": u.password, "dbname": u.database}


def test_transaction_mode_and_statements_that_would_be_prepared_work_through_it(bouncer, via_bouncer):
    config = {row["key"]: row["value"] for row in _admin(bouncer, "SHOW CONFIG")}
    assert config["pool_mode"] == "transaction" and int(config["default_pool_size"]) == POOL
    args = _connect_args()
    dsn = _dsn(via_bouncer)
    # The hazard: a statement prepared on one server connection, run in a later transaction that the bouncer gives
    # another (here: the one it used is held by a second client; the bouncer reuses the last released first).
    outcomes = {}
    for name, prepare_threshold in (("psycopg default, prepared at once", 0),
                                    ("core.db's setting", args.get("prepare_threshold", 0))):
        a, b = psycopg.connect(**dsn, prepare_threshold=prepare_threshold), psycopg.connect(**dsn)
        try:
            a.execute("SELECT %s::int + 1", (1,))
            a.commit()
            b.execute("SELECT 1")  # b's open transaction now holds the server connection a used
            outcomes[name] = a.execute("SELECT %s::int + 1", (2,)).fetchone()[0]
        except psycopg.errors.InvalidSqlStatementName:
            outcomes[name] = "prepared statement lost"
        finally:
            a.close()
            b.close()
    if bouncer.prepared_statements():  # PgBouncer >= 1.21 follows them: both work, and psycopg may prepare
        assert "prepare_threshold" not in args and set(outcomes.values()) == {3}
    else:  # Debian 12's 1.18: psycopg must not prepare, and with core.db's setting it does not
        assert outcomes == {"psycopg default, prepared at once": "prepared statement lost", "core.db's setting": 3}


def test_the_engine_through_the_bouncer_runs_repeated_statements_durably(via_bouncer):
    get_engine.cache_clear()
    try:
        engine = get_engine()
        assert engine.url.port == make_url(via_bouncer).port
        # More executions than psycopg's prepare threshold (5), each its own transaction, from several pooled
        # connections at once: none may meet a prepared statement another server connection holds.
        for i in range(20):
            with engine.begin() as conn, engine.begin() as other:
                assert conn.execute(text("SELECT CAST(:x AS int) + 1"), {"x": i}).scalar_one() == i + 1
                assert other.execute(text("SELECT CAST(:x AS int) + 1"), {"x": i}).scalar_one() == i + 1
        with engine.connect() as conn:  # acknowledged means durable through the bouncer too
            assert conn.execute(text("SHOW synchronous_commit")).scalar_one() == "on"
        engine.dispose()
    finally:
        get_engine.cache_clear()


MARK = "fieldproof prepared-statement probe"
PROBE = text(f"SELECT pg_backend_pid(), CAST(:x AS int) + 1 /* {MARK} */")
# What the server connection holds prepared for PROBE (the mark comes as a parameter, so this does not match itself).
PREPARED_HERE = text("SELECT name FROM pg_prepared_statements WHERE NOT from_sql AND strpos(statement, :mark) > 0")


def _probe(engine: Engine, clients: int = 4, rounds: int = 12) -> tuple[list[list[int]], dict[int, list[str]]]:
    """``clients`` pooled connections (as API requests hold them) run PROBE once a round, each round one transaction
    per client, all open at once beside a holder that takes a server connection first, so each holds a server
    connection of its own; the commit order turns from round to round, so the bouncer (it reuses the last released
    first) hands each client other server connections. In the last round each client also asks its server which
    names it holds prepared for PROBE. Returns the backend each client met per round, and those names per backend."""
    holder, *conns = [engine.connect() for _ in range(clients + 1)]
    met: list[list[int]] = [[] for _ in conns]
    prepared: dict[int, list[str]] = {}
    try:
        for r in range(rounds):
            holder.execute(text("SELECT 1"))
            for k, conn in enumerate(conns):
                pid, answer = conn.execute(PROBE, {"x": r}).one()
                assert answer == r + 1
                met[k].append(pid)
                if r == rounds - 1:
                    prepared[pid] = list(conn.execute(PREPARED_HERE, {"mark": MARK}).scalars())
            order = [holder, *conns]
            for conn in order[r % len(order):] + order[:r % len(order)]:
                conn.commit()
    finally:
        for conn in (holder, *conns):
            conn.close()
    return met, prepared


def test_prepared_statements_work_through_the_bouncer_across_server_connections(bouncer, via_bouncer):
    if not bouncer.prepared_statements():
        pytest.skip(f"PgBouncer {bouncer.exe()} is older than 1.21 (the source build failed): nothing is prepared")
    assert int(bouncer.live_config()["max_prepared_statements"]) > 0
    get_engine.cache_clear()
    try:
        engine = get_engine()  # the API's engine: psycopg prepares as usual (core.db asks the bouncer)
        with engine.connect() as conn:
            threshold = conn.connection.driver_connection.prepare_threshold
        assert threshold is not None and "prepare_threshold" not in _connect_args()
        rounds = threshold + 8  # prepared from the (threshold + 1)th run on, then run prepared 7 more times
        met, prepared = _probe(engine, rounds=rounds)
        engine.dispose()
    finally:
        get_engine.cache_clear()
    # Each client ran its prepared statement on several server connections, without error and with the right answer ...
    assert all(len(set(pids[threshold:])) >= 2 for pids in met), met
    # ... and each server connection of the last round holds it prepared, under the bouncer's name for it (PostgreSQL's
    # own view: psycopg's "_pg3_N" never reaches the server): prepared, not merely sent unprepared.
    assert len(prepared) == len(met) and all(len(names) == 1 and names[0].startswith("PGBOUNCER_")
                                             for names in prepared.values()), prepared
    servers = [s for s in _admin(bouncer, "SHOW SERVERS") if s["database"] == make_url(via_bouncer).database]
    assert sum(s["prepared_statements"] for s in servers) >= len(prepared)


@pytest.fixture
def unprepared_bouncer(bouncer) -> Bouncer:
    """A second local bouncer like the first but with max_prepared_statements = 0: what 1.18 gives, on 1.21+."""
    if bouncer.max_prepared_statements() is None:
        pytest.skip(f"PgBouncer {bouncer.exe()} is older than 1.21: it has no max_prepared_statements")
    node = Bouncer(bouncer.svc, name="pgbouncer_unprepared", max_prepared_statements=0)
    node.up()
    yield node
    node.down()


def test_the_probe_fails_through_a_bouncer_that_does_not_follow_prepared_statements(unprepared_bouncer, test_database):
    # The control: the same probe, psycopg preparing as above, through a bouncer with max_prepared_statements = 0.
    assert unprepared_bouncer.live_config()["max_prepared_statements"] == "0"
    assert not unprepared_bouncer.prepared_statements()  # what core.db would ask: it would not prepare
    engine = create_engine(make_url(database_url()).set(port=unprepared_bouncer.port))
    try:
        with pytest.raises(DBAPIError, match="prepared statement"):
            _probe(engine)
    finally:
        engine.dispose()


def test_four_api_processes_share_the_bouncers_server_connections(bouncer, test_database):
    # Four API processes on one database, as behind a load balancer (four ports, so each surely gets its share:
    # uvicorn --workers leaves the spread to the kernel's accept), each with its own pool of 16.
    env = {"FIELDPROOF_PGBOUNCER": "1", "FIELDPROOF_DB_POOL_SIZE": str(POOL),
           "FIELDPROOF_RATE_LIMIT_PER_MINUTE_USER": "100000", "FIELDPROOF_RATE_LIMIT_PER_MINUTE_IP": "100000",
           "FIELDPROOF_LOGIN_PER_IP_PER_MINUTE": "100000", "FIELDPROOF_LOGIN_PER_MINUTE_TOTAL": "100000"}
    with ExitStack() as stack:
        first = stack.enter_context(live_server("pgbouncer", env))
        servers = [first] + [stack.enter_context(live_server("pgbouncer", env, database=first.env[
            "FIELDPROOF_DATABASE_URL"])) for _ in range(3)]
        worker, ops, merchant = (_login(first, role) for role in ("worker", "ops", "merchant"))
        _fund(first, merchant)
        with first.http() as c:
            publish_approved(c, task_body(), merchant, ops)
        snapshot, servers_seen, results = _burst(bouncer, servers, worker, per_process=12)
    assert snapshot["sv_active"] == POOL and snapshot["cl_waiting"] == 4 * 12 - POOL  # 48 requests in flight ...
    assert servers_seen <= POOL  # ... and PostgreSQL saw at most the bouncer's pool of server connections
    assert results == [200] * (4 * 12)


def _burst(bouncer: Bouncer, servers: list, worker: dict, per_process: int) -> tuple[dict, int, list]:
    """per_process task-hall requests to each server at once while the test holds the task table, so every
    request keeps its transaction (and a server connection) open until we let go: the counts are read while all
    are in flight. Returns the bouncer's pool row, PostgreSQL's connection count, and the status codes."""
    dbname = make_url(servers[0].env["FIELDPROOF_DATABASE_URL"]).database
    results: list = []
    # One barrier for all: each thread first asks /healthz, which reads the database through the bouncer; with a
    # barrier per server, one server's requests could fill the pool (held by the lock below) while another's /healthz
    # still waited for a server connection, so its requests never left (a loaded machine saw 40 of 48 in flight).
    barrier = threading.Barrier(len(servers) * per_process)
    with servers[0].engine.connect() as lock:
        lock.execute(text("LOCK TABLE task IN ACCESS EXCLUSIVE MODE"))
        runners = [threading.Thread(target=lambda srv=srv: results.extend(release_together(
            srv, per_process, lambda c, i: c.get("/v1/tasks/nearby", params={"lat": STORE[0], "lon": STORE[1]},
                                                 headers=worker).status_code, barrier))) for srv in servers]
        for runner in runners:
            runner.start()

        def pool() -> dict:
            return next(p for p in _admin(bouncer, "SHOW POOLS") if p["database"] == dbname)

        # All in flight: the pool's server connections busy with blocked requests, every other request queued.
        # The row that shows it is the one kept (a second read could race with a slow machine's timeouts).
        queued = len(servers) * per_process - POOL
        rows: list[dict] = []

        def all_in_flight() -> bool:
            rows.append(pool())
            return rows[-1]["sv_active"] == POOL and rows[-1]["cl_waiting"] == queued

        assert wait_until(all_in_flight, timeout=120), rows[-5:]
        snapshot = rows[-1]
        seen = lock.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND "
                                 "backend_type = 'client backend' AND pid <> pg_backend_pid()"),
                            {"d": dbname}).scalar_one()
        lock.rollback()
    for runner in runners:
        runner.join(180)
    return snapshot, seen, results


def _login(srv, role: str) -> dict:
    with srv.session() as s:
        user = accounts.create(db_session=s, username=unique(f"pb_{role}"), password=PASSWORD, role=role,
                               self_service=False)
    with srv.http() as c:
        r = c.post("/v1/auth/token", data={"username": user.username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _fund(srv, merchant: dict) -> None:
    with srv.http() as c:
        for purpose, amount in (("security_deposit", 10_000), ("available", 1_000_000)):
            r = c.post("/v1/me/deposits", json={"amount_fen": amount, "purpose": purpose}, headers=merchant)
            assert r.status_code == 201, r.text
