"""A real uvicorn server on its own throwaway database, for tests that need real concurrency or a browser.

The server commits, so it runs on a database of its own (created and migrated here, dropped at the end):
the rolled-back tests sharing the test database never see these rows.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from core.db import database_url
from core.localservices import free_port
from core.migrate import upgrade

T = TypeVar("T")


@dataclass
class Server:
    url: str
    engine: object
    env: dict
    proc: subprocess.Popen

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)


def _wait_until_up(url: str, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/app/config.json", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError("uvicorn did not start")


@contextmanager
def live_server(suffix: str, extra_env: dict | None = None, database: str | None = None,
                log_path=None) -> Iterator[Server]:
    """uvicorn on a free loopback port, on a fresh database ``<test db>_<suffix>`` (or the URL given);
    its output goes to ``log_path`` when given."""
    base, name = database_url().rsplit("/", 1)
    admin = None
    if database is None:
        db_name = f"{name}_{suffix}"
        admin = create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{db_name}"'))
        database = f"{base}/{db_name}"
        upgrade(database)
    env = {**os.environ, "FIELDPROOF_DATABASE_URL": database, "FIELDPROOF_LOG_LEVEL": "WARNING",
           "FIELDPROOF_HEATMAP_SETTLE_S": "0", **(extra_env or {})}
    port = free_port()
    out = open(log_path, "ab") if log_path else None
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.app:app", "--host", "127.0.0.1", "--port",
                             str(port), "--log-level", "warning"], env=env, stdout=out, stderr=out)
    engine = create_engine(database)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}", proc)
        yield Server(f"http://127.0.0.1:{port}", engine, env, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        engine.dispose()
        if out is not None:
            out.close()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
            admin.dispose()


def release_together(server: Server, n: int, request: Callable[[httpx.Client, int], T],
                     barrier: threading.Barrier | None = None) -> list[T]:
    """Run ``request(client, i)`` for i < n on n threads released at one barrier, each on its own
    already-connected HTTP connection; returns the results in order. ``barrier``: one shared with other calls
    (for n threads each), so requests to several servers leave together."""
    barrier = barrier or threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        try:
            with server.http() as client:
                client.get("/healthz")  # connect before the barrier, so the requests leave together
                barrier.wait(timeout=60)
                results[i] = request(client, i)
        except Exception as exc:  # surfaced by the caller's assertions
            barrier.abort()
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 180
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return results
