"""Test session: a real PostGIS and Redis, a fresh test database migrated once,
every test inside a transaction that is rolled back (SQLAlchemy's external-transaction recipe)."""
from __future__ import annotations

import os

# Configure before any project module caches settings or engines.
os.environ.setdefault("FIELDPROOF_ENV", "test")
os.environ.setdefault("FIELDPROOF_LOG_LEVEL", "WARNING")
# Roll-ups wait for in-flight transactions in production; a test commits before it rolls up.
os.environ.setdefault("FIELDPROOF_HEATMAP_SETTLE_S", "0")
os.environ.setdefault("FIELDPROOF_MAP_TILE_URL", "")  # no base-map tiles: tests have no internet (plain grid)
# argon2 at a test cost (8 MiB, 1 pass): the suite hashes hundreds of passwords; production's 64 MiB x 3
# would be most of its time. Hashes carry their own parameters, so verification is the same code path.
os.environ.setdefault("FIELDPROOF_ARGON2_MEMORY_KIB", "8192")
os.environ.setdefault("FIELDPROOF_ARGON2_TIME_COST", "1")
os.environ.setdefault("FIELDPROOF_EVIDENCE_DIR", __import__("tempfile").mkdtemp(prefix="fieldproof-evidence-"))

from core import localservices  # noqa: E402
from core.config import get_settings  # noqa: E402

# Parallel test sessions on one machine each take their own Redis DB (and FIELDPROOF_DATABASE_NAME).
TEST_REDIS_DB = int(os.environ.get("FIELDPROOF_TEST_REDIS_DB", "15"))


def _configure_test_servers() -> str:
    """Start local servers if needed; point settings at a separate test database. Returns the admin URL."""
    external = localservices.external()
    if not external:
        localservices.up()
    from core.db import database_url
    from core.redis import redis_url

    admin_url = database_url()
    base, name = admin_url.rsplit("/", 1)
    test_name = name if name.endswith("_test") else name + "_test"
    os.environ["FIELDPROOF_DATABASE_URL"] = f"{base}/{test_name}"
    os.environ["FIELDPROOF_REDIS_URL"] = redis_url().rsplit("/", 1)[0] + f"/{TEST_REDIS_DB}"
    get_settings.cache_clear()
    return f"{base}/postgres"


_ADMIN_URL = _configure_test_servers()

import pytest  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from core.db import AppSession, database_url, get_engine  # noqa: E402
from core.redis import get_redis  # noqa: E402
from api.hooks import register_domain_hooks  # noqa: E402

# The S3-compatible server and store fixtures (moto_server), for every test module that asks for them.
pytest_plugins = ["tests.s3"]

# Tests call domain services directly, as the app and the Celery worker do after their start-up registration.
register_domain_hooks()


def _recreate_test_database() -> None:
    test_url = database_url()
    name = test_url.rsplit("/", 1)[1]
    admin = create_engine(_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    from core.migrate import upgrade

    upgrade(test_url)


@pytest.fixture(scope="session", autouse=True)
def test_database():
    """A fresh database for this session, migrated once."""
    _recreate_test_database()
    yield
    get_engine().dispose()


@pytest.fixture(autouse=True)
def clean_redis():
    """Counters (rate limits, lock-outs) start from zero in every test."""
    get_redis().flushdb()
    yield


@pytest.fixture
def connection(test_database):
    """A connection in an outer transaction that is rolled back after the test."""
    conn = get_engine().connect()
    trans = conn.begin()
    yield conn
    trans.rollback()
    conn.close()


@pytest.fixture
def db(connection) -> Session:
    """A session joined to the test's transaction: service commits become savepoints."""
    session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    yield session
    session.close()


@pytest.fixture
def app(connection):
    """The real app whose sessions and units of work join the test's transaction."""
    import anyio

    from api import deps
    from api.app import create_app
    from core import flow

    application = create_app()

    # The request's one session joins the test's transaction; its commits release savepoints.
    def join_test_transaction() -> AppSession:
        return AppSession(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)

    async def factory():
        return join_test_transaction

    application.dependency_overrides[deps.get_session_factory] = factory

    # A pipelined flow (core.flow) runs on the test's connection too, in a savepoint, through the sync driver.
    async def flow_runner():
        async def run(f):
            def in_savepoint():
                with connection.begin_nested():
                    return flow.run(connection.connection.driver_connection, f)
            return await anyio.to_thread.run_sync(in_savepoint)
        return run

    application.dependency_overrides[deps.get_flow_runner] = flow_runner
    return application


@pytest.fixture
def client(app):
    """An HTTP client talking to the real app in-process."""
    from fastapi.testclient import TestClient

    # A documentation-range address (RFC 5737) so IP-based rules see a real IP.
    with TestClient(app, client=("192.0.2.10", 50000)) as c:
        yield c
