"""Engine, sessions and the unit of work: one owner per session and per transaction."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from core import jobs
from core.config import get_settings


def database_url() -> str:
    """The SQLAlchemy URL: FIELDPROOF_DATABASE_URL, else the project-local cluster's."""
    settings = get_settings()
    url = settings.database_url or _local_url(settings.database_name)
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _local_url(dbname: str) -> str:
    from core.localservices import LocalServices

    return LocalServices.from_settings().database_url(dbname)


@lru_cache
def get_engine() -> Engine:
    """The process-wide engine (pool sized for a 2-core API process)."""
    # synchronous_commit is asked for per connection too, so an external server configured without it
    # still acknowledges only what is on disk.
    return create_engine(database_url(), pool_size=20, max_overflow=20, pool_pre_ping=True,
                         connect_args={"options": "-c synchronous_commit=on"})


@lru_cache
def _sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


def new_session() -> Session:
    """A fresh session; the caller owns it and must close it."""
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
    """One outer transaction; services' own ``commit()`` only releases a savepoint inside it.

    Used where something must be written atomically with whatever the service did,
    e.g. the stored response of an idempotent request.
    """

    def __init__(self, engine: Engine | None = None, connection=None) -> None:
        self._engine = engine
        self._external = connection
        self.connection = None
        self.session: Session | None = None
        self._trans = None

    def __enter__(self) -> "UnitOfWork":
        if self._external is not None:
            # Tests: the caller's transaction is the outer one; the session's savepoint is ours.
            self.connection = self._external
        else:
            self.connection = (self._engine or get_engine()).connect()
            self._trans = self.connection.begin()
        self.session = Session(bind=self.connection, join_transaction_mode="create_savepoint",
                               expire_on_commit=False)
        self.session.info[jobs.OWNER_DISPATCHES] = True  # jobs go out after the outer commit, in commit()
        return self

    def commit(self) -> None:
        """Flush the session and commit the outer transaction."""
        assert self.session is not None
        self.session.flush()
        if self._trans is None:
            self.session.commit()
        else:
            self._trans.commit()
        jobs.dispatch_pending(self.session)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self._trans is None and self.session is not None:
                self.session.rollback()
            elif self._trans is not None and self._trans.is_active:
                self._trans.rollback()
        finally:
            if self.session is not None:
                self.session.close()
            if self._external is None and self.connection is not None:
                self.connection.close()
