"""Engine, sessions and the unit of work: one owner per session and per transaction."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import psycopg
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from core import flow
from core import jobs  # noqa: F401  (registers the after-commit job dispatch on every session)
from core.config import get_settings
from core.localscale import Bouncer
from core.localservices import LocalServices


def database_url() -> str:
    """The SQLAlchemy URL of the primary: FIELDPROOF_DATABASE_URL, else the project-local cluster's."""
    settings = get_settings()
    return _psycopg(settings.database_url or _local_url(settings.database_name))


def _psycopg(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL as the libpq URL psycopg connects with directly (no ``+psycopg`` driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _local_url(dbname: str) -> str:
    return LocalServices.from_settings().database_url(dbname)


def _on_local_port(key: str) -> str:
    """The primary's URL (same database and credentials) on a local port: the standby's or the bouncer's."""
    url = make_url(database_url()).set(host="127.0.0.1", port=LocalServices.from_settings().port(key))
    return url.render_as_string(hide_password=False)


def pgbouncer_url() -> str:
    """The PgBouncer the API and workers connect through: FIELDPROOF_PGBOUNCER_URL, else the local bouncer when
    FIELDPROOF_PGBOUNCER is set; empty for none (they connect to the primary directly)."""
    settings = get_settings()
    if settings.pgbouncer_url:
        return _psycopg(settings.pgbouncer_url)
    return _on_local_port("pgbouncer_port") if settings.pgbouncer else ""


def replica_url() -> str:
    """The streaming replica's URL: FIELDPROOF_REPLICA_URL, else the local standby when FIELDPROOF_REPLICA is
    set; empty for none (every read uses the primary)."""
    settings = get_settings()
    if settings.replica_url:
        return _psycopg(settings.replica_url)
    return _on_local_port("replica_port") if settings.replica else ""


def _bouncer_prepares() -> bool:
    settings = get_settings()
    if settings.pgbouncer_prepared_statements is not None:
        return settings.pgbouncer_prepared_statements
    return not settings.pgbouncer_url and Bouncer(LocalServices.from_settings()).prepared_statements()


def _connect_args() -> dict:
    if not pgbouncer_url():
        return {"options": "-c synchronous_commit=on"}
    # Behind a bouncer the server connection sets synchronous_commit itself (core.localscale's connect_query;
    # configure an external bouncer alike). A bouncer that does not follow prepared statements (older than 1.21,
    # or max_prepared_statements = 0) hands the next transaction another server connection, where psycopg's
    # prepared "_pg3_N" does not exist: never prepare. The local one is >= 1.21 (core.pgbouncer_build) and asked.
    return {} if _bouncer_prepares() else {"prepare_threshold": None}


@lru_cache
def get_engine() -> Engine:
    """The process-wide engine (pool sized by settings: see api_threads in core.config)."""
    # synchronous_commit is asked for per connection too, so an external server configured without it
    # still acknowledges only what is on disk.
    # No pre-ping: it cost a round trip on every checkout. A connection the server dropped (restart, failover)
    # fails its first statement instead; SQLAlchemy then invalidates every pooled connection older than that
    # moment, so one request per process sees 503 + Retry-After (api.errors) and the pool is fresh again.
    # Through PgBouncer (pgbouncer_url) when one is configured.
    settings = get_settings()
    return create_engine(pgbouncer_url() or database_url(), pool_size=settings.db_pool_size,
                         max_overflow=settings.db_max_overflow, pool_timeout=settings.db_pool_timeout_s,
                         pool_pre_ping=False, pool_recycle=1800, connect_args=_connect_args())


def _flow_connect_args() -> dict:
    """The engine's connection options, plus generic plans for the flow's prepared statements: left to itself
    PostgreSQL keeps planning the check-in's measure per call (its custom plans fold away the branches a null IP
    or an empty radio scan skip, so they always look cheaper), ~0.6 ms of planning a check-in. A bouncer passes no
    startup options: behind one, PostgreSQL chooses (set plan_cache_mode on its database or role instead)."""
    args = _connect_args()
    if "options" in args:
        args = {**args, "options": args["options"] + " -c plan_cache_mode=force_generic_plan"}
    return args


async def open_flow_pool() -> AsyncConnectionPool:
    """The async pool of the pipelined write path (core.flow), opened on the running event loop: the same server,
    bouncer and connection options as the engine; two connections at first, growing to db_flow_pool_size while
    requests wait; no check on checkout (a dropped connection fails its request with a 503 and the pool replaces
    it)."""
    settings = get_settings()
    prepares = not pgbouncer_url() or _bouncer_prepares()

    async def configure(conn) -> None:
        if prepares:  # the flow's own named statements (psycopg's are off: its ROLLBACK would drop them all)
            flow.prepare_on(conn)

    pool = AsyncConnectionPool(libpq_url(pgbouncer_url() or database_url()),
                               min_size=min(2, settings.db_flow_pool_size), max_size=settings.db_flow_pool_size,
                               timeout=settings.db_flow_pool_timeout_s,
                               kwargs={**_flow_connect_args(), "prepare_threshold": None}, configure=configure,
                               open=False, name="flow")
    await pool.open()
    return pool


@lru_cache
def get_replica_engine() -> Engine | None:
    """The read replica's engine, or None when no replica is configured (core.replica decides per read)."""
    url = replica_url()
    if not url:
        return None
    # A short connect timeout: a replica that does not answer costs a read this long once, then core.replica
    # sends reads to the primary for replica_retry_s.
    settings = get_settings()
    return create_engine(url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow,
                         pool_timeout=settings.db_pool_timeout_s, pool_pre_ping=False, pool_recycle=1800,
                         connect_args={"connect_timeout": 2})


# Set in a session's info while a unit of work owns its transaction.
IN_UNIT_OF_WORK = "in_unit_of_work"


class AppSession(Session):
    """A session whose ``commit()`` only flushes while a unit of work owns its transaction.

    Services end their verbs with ``commit()`` so that each is atomic on its own (CLI, jobs). Inside a unit of
    work (an idempotent API request: the change and its stored response must commit together) the same call
    flushes, and the unit of work commits once: no savepoint round trips, one transaction per request.
    """

    def commit(self) -> None:
        if self.info.get(IN_UNIT_OF_WORK):
            self.flush()
            return
        super().commit()


@lru_cache
def _sessionmaker() -> sessionmaker[AppSession]:
    return sessionmaker(bind=get_engine(), class_=AppSession, expire_on_commit=False)


def new_session() -> AppSession:
    """A fresh session (connects on first use); the caller owns it and must close it."""
    return _sessionmaker()()


def driver_connection(session: Session) -> psycopg.Connection:
    """The psycopg connection under ``session``, inside the session's transaction (begun if need be): where a
    pipelined flow (core.flow) runs in-process."""
    return session.connection().connection.driver_connection


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session for one job or command; the service inside commits, this closes."""
    session = new_session()
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


class UnitOfWork:
    """One transaction around everything done on ``session``: services' ``commit()`` only flushes inside it.

    ``UnitOfWork(session)`` adopts a request's session (authentication already ran on it, in the same
    transaction); ``UnitOfWork()`` makes its own. ``commit()`` commits once; leaving without it rolls back.
    Jobs recorded inside are dispatched by the session's after-commit hook (core.jobs), i.e. only after this
    commit.
    """

    def __init__(self, session: Session | None = None) -> None:
        self._owned = session is None
        self.session: Session = session if session is not None else new_session()

    def __enter__(self) -> "UnitOfWork":
        self.session.info[IN_UNIT_OF_WORK] = True
        return self

    def commit(self) -> None:
        """Flush and commit the transaction."""
        self.session.info.pop(IN_UNIT_OF_WORK, None)
        self.session.commit()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.session.info.pop(IN_UNIT_OF_WORK, None)
        try:
            if exc_type is not None or self.session.in_transaction():
                self.session.rollback()
        finally:
            if self._owned:
                self.session.close()
