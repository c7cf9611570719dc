"""Idempotency keys: a phone's retried POST returns the first result and changes nothing.

A request runs inside one outer transaction that also stores its response, so the
business change and the stored response commit together or not at all. A
transaction-scoped advisory lock on (user, route, key) makes a concurrent duplicate
see 'in flight' (409) instead of running twice.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, String, delete, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, Session, mapped_column

from core import flow
from core.config import get_settings
from core.db import driver_connection
from core.errors import Conflict, InvalidInput
from core.flow import Stmt, sql
from core.models import Base, created_at, utcnow

MAX_KEY_LENGTH = 200


class IdempotencyKeyReused(InvalidInput):
    """Same key, different request body."""

    code = "idempotency_key_reused"
    detail = "This Idempotency-Key was already used with a different request."


class IdempotencyInFlight(Conflict):
    """The first request with this key has not finished."""

    code = "idempotency_in_flight"
    detail = "A request with this Idempotency-Key is still being processed; retry shortly."


class IdempotencyKeyInvalid(InvalidInput):
    """Key empty or too long."""

    code = "invalid_idempotency_key"
    detail = f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters."


class IdempotencyRecord(Base):
    """A finished request: the key per user and route, its body hash and stored response."""

    __tablename__ = "idempotency_record"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    route: Mapped[str] = mapped_column(String(300), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), primary_key=True)
    body_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    status_code: Mapped[int] = mapped_column(Integer, nullable=False)
    response: Mapped[Any] = mapped_column(JSONB, nullable=True)
    created_at: Mapped[datetime] = created_at()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)


@dataclass(frozen=True)
class StoredResponse:
    """A response to replay."""

    status_code: int
    body: Any


def body_hash(body: bytes) -> str:
    """sha256 of the raw request body (canonicalised when it is JSON)."""
    try:
        body = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):  # not JSON (UnicodeDecodeError is a ValueError), or nested too deep
        pass
    return hashlib.sha256(body).hexdigest()


def check_key(key: str) -> str:
    """Validate an Idempotency-Key header value."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise IdempotencyKeyInvalid()
    return key


_LOCK = text("SELECT pg_try_advisory_xact_lock(:k)")
# Read after the lock is held (a later statement, so a later snapshot): a first request that committed while we
# waited for nothing is seen here, never run twice.
_READ = text("SELECT body_sha256, status_code, response, expires_at FROM idempotency_record "
             "WHERE user_id = :user_id AND route = :route AND key = :key")
# One upsert, not merge(): merge would SELECT first. The row exists already only when it had expired.
_STORE = text("""
INSERT INTO idempotency_record (user_id, route, key, body_sha256, status_code, response, created_at, expires_at)
VALUES (:user_id, :route, :key, :digest, :status_code, CAST(:response AS jsonb), :now, :expires_at)
ON CONFLICT (user_id, route, key) DO UPDATE
   SET body_sha256 = excluded.body_sha256, status_code = excluded.status_code, response = excluded.response,
       expires_at = excluded.expires_at, created_at = excluded.created_at""")


def _lock_id(user_id: int, route: str, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{user_id}|{route}|{key}".encode()).digest()[:8], "big", signed=True)


def _decide(locked: bool, rec: Any, digest: str, earlier: Callable[[], str] | None = None) -> StoredResponse | None:
    """From the lock's answer and the stored record: the response to replay, None to run, or the refusal.
    ``earlier``: the same request's digest as an earlier release computed it, asked only when the stored one
    differs (a record stored before the digest changed is still replayed within its TTL)."""
    if not locked:
        raise IdempotencyInFlight()
    if rec is None or rec.expires_at < utcnow():
        return None
    if rec.body_sha256 != digest and (earlier is None or rec.body_sha256 != earlier()):
        raise IdempotencyKeyReused()
    return StoredResponse(rec.status_code, rec.response)


def _store_params(user_id: int, route: str, key: str, digest: str, status_code: int, body: Any) -> dict:
    now = utcnow()
    return {"user_id": user_id, "route": route, "key": key, "digest": digest, "status_code": status_code,
            "response": json.dumps(body), "now": now,
            "expires_at": now + timedelta(seconds=get_settings().idempotency_ttl_s)}


def acquire(db_session: Session, *, user_id: int, route: str, key: str, digest: str,
            earlier: Callable[[], str] | None = None) -> StoredResponse | None:
    """Lock the key for this transaction; return the stored response if the request already ran. The lock and the
    read go in one round trip (a pipelined batch, core.flow: PostgreSQL still runs the read after the lock is held,
    with its own snapshot); the read's answer counts only if the lock was taken."""
    lock_rows, read_rows = flow.run(driver_connection(db_session), _acquire_flow(user_id, route, key))
    locked = lock_rows[0][0]
    return _decide(locked, read_rows[0] if locked and read_rows else None, digest, earlier)


def _acquire_flow(user_id: int, route: str, key: str) -> flow.Flow[list[flow.Rows]]:
    return (yield flow.Batch(acquire_stmts(user_id=user_id, route=route, key=key)))


def store(db_session: Session, *, user_id: int, route: str, key: str, digest: str,
          status_code: int, body: Any) -> None:
    """Record the response in the same transaction as the work it describes."""
    db_session.execute(_STORE, _store_params(user_id, route, key, digest, status_code, body))


# The same three steps as statements for a pipelined flow (core.flow): the lock and the read go in the flow's
# first batch (PostgreSQL runs them in order, so the read's snapshot is taken after the lock is held), the store
# in the batch that writes the work it describes.
def acquire_stmts(*, user_id: int, route: str, key: str) -> list[Stmt]:
    """The lock and the read, in this order (see ``acquire``)."""
    return [Stmt(sql(_LOCK), {"k": _lock_id(user_id, route, key)}, one_row=True),
            Stmt(sql(_READ), {"user_id": user_id, "route": route, "key": key}, one_row=True)]


def acquired(lock_rows: list, read_rows: list, digest: str) -> StoredResponse | None:
    """``acquire``'s answer from the rows of ``acquire_stmts``."""
    return _decide(lock_rows[0][0], read_rows[0] if read_rows else None, digest)


def store_stmt(*, user_id: int, route: str, key: str, digest: str, status_code: int, body: Any) -> Stmt:
    """``store`` as a statement."""
    return Stmt(sql(_STORE), _store_params(user_id, route, key, digest, status_code, body), writes=True)


def purge_expired(*, db_session: Session) -> int:
    """Delete records past their 72 h life; returns how many."""
    res = db_session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at < utcnow()))
    db_session.commit()
    return res.rowcount or 0
