"""Small helpers shared by API tests (no fixtures with data: each test makes its own)."""
from __future__ import annotations

import itertools
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace

from accounts import service as accounts

PASSWORD = "correct horse battery"
_counter = itertools.count(1)
_RUN = secrets.token_hex(3)


def unique(prefix: str) -> str:
    """A username unique within the test session."""
    return f"{prefix}_{next(_counter)}_{_RUN}"


def make_user(db, role: str = "worker", username: str | None = None):
    """Create a user directly through the service."""
    return accounts.create(db_session=db, username=username or unique(role), password=PASSWORD, role=role,
                           self_service=False)


def login(client, username: str, password: str = PASSWORD) -> dict:
    """Authorization headers for a user."""
    resp = client.post("/v1/auth/token", data={"username": username, "password": password})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def auth_for(client, db, role: str = "worker"):
    """A new user of ``role`` and its auth headers."""
    user = make_user(db, role)
    return user, login(client, user.username)


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds have passed; returns whether it became true."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def freeze_rate_limit_clock(monkeypatch) -> float:
    """Pin the clock api.ratelimit reads to the middle of a window (of a minute and of an hour), so a test's
    requests all count in one window whatever the wall clock's minute does meanwhile. Returns that time."""
    now = time.time()
    pinned = now - now % 3600 + 1830  # 30 s into a minute, 30 min 30 s into an hour
    monkeypatch.setattr("api.ratelimit.time", SimpleNamespace(time=lambda: pinned))
    return pinned


# The check-in measure's history reads as SQL before migration 0019 (fieldproof_recent_fixes and
# fieldproof_device_accounts answer the same; tests compare them and what each reads).
RECENT_FIXES_SQL = """SELECT coalesce(json_agg(r ORDER BY r.client_time DESC), '[]')
    FROM (SELECT lat, lon, accuracy_m, client_time, altitude, speed, bearing, worker_id FROM checkin
           WHERE worker_id = :w AND server_time BETWEEN :since AND :until
           ORDER BY client_time DESC LIMIT :n) r"""
DEVICE_ACCOUNTS_SQL = """SELECT count(*) FROM (SELECT DISTINCT worker_id FROM checkin WHERE device_id = :device
    AND server_time BETWEEN :since AND :until AND worker_id <> :w LIMIT :cap) x"""


@contextmanager
def own_redis(folder) -> Iterator[tuple[subprocess.Popen, object, int]]:
    """A redis-server of the test's own on a free port (nothing saved, files under ``folder``), answering before this
    yields (process, client, port); stopped after (a test may shut it down, or freeze it, itself)."""
    import redis as redis_lib

    from core.localservices import free_port

    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(folder)], stdout=subprocess.DEVNULL)
    client = redis_lib.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)

    def answers() -> bool:
        try:
            return client.ping()
        except redis_lib.ConnectionError:
            return False

    try:
        assert wait_until(answers, timeout=10), "redis-server did not start"
        yield proc, client, port
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=10)
