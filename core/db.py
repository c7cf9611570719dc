"""Engine, sessions and the unit of work: one owner per session and per transaction."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from core import jobs  # noqa: F401  (registers the after-commit job dispatch on every session)
from core.config import get_settings
from core.localservices import LocalServices


def database_url() -> str:
    """The SQLAlchemy URL: FIELDPROOF_DATABASE_URL, else the project-local cluster's."""
    settings = get_settings()
    url = settings.database_url or _local_url(settings.database_name)
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _local_url(dbname: str) -> str:
    return LocalServices.from_settings().database_url(dbname)


@lru_cache
def get_engine() -> Engine:
    """The process-wide engine (pool sized by settings: see api_threads in core.config)."""
    # synchronous_commit is asked for per connection too, so an external server configured without it
    # still acknowledges only what is on disk.
    # No pre-ping: it cost a round trip on every checkout. A connection the server dropped (restart, failover)
    # fails its first statement instead; SQLAlchemy then invalidates every pooled connection older than that
    # moment, so one request per process sees 503 + Retry-After (api.errors) and the pool is fresh again.
    settings = get_settings()
    return create_engine(database_url(), pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow,
                         pool_timeout=settings.db_pool_timeout_s, pool_pre_ping=False, pool_recycle=1800,
                         connect_args={"options": "-c synchronous_commit=on"})


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
