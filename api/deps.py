"""Request-scoped dependencies: the request's one DB session, the current user, roles, the client's address."""
from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime
from typing import Annotated, Any, TypeVar

import anyio
import psycopg
from fastapi import Depends, Path, Request
from fastapi.security import OAuth2PasswordBearer
from pydantic import BeforeValidator
from sqlalchemy.orm import Session

from accounts import service as accounts
from accounts.models import User
from accounts.errors import InvalidToken
from accounts.security import decode_access
from api.middleware import ACCESS
from core import flow, replica
from core.bounds import BIGINT_MAX
from core.db import new_session
from core.flow import Flow
from core.models import utcnow


def _digits(value: Any) -> Any:
    """A path id as written: ASCII digits only. Pydantic would also read "+12", "1_2", "12.0" or " 12" as 12, and an
    idempotency key is scoped by the id as written (api.idempotent.route_of): one spelling per id."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("an id is written in digits only")
    return value


# Every id in a path is a positive bigint: a larger number is a 422 here, never an overflow in PostgreSQL.
Id = Annotated[int, BeforeValidator(_digits), Path(ge=1, le=BIGINT_MAX)]
T = TypeVar("T")
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)


async def get_session_factory() -> Callable[[], Session]:
    """Makes the request's session (tests override this to join their transaction). Async: a sync dependency
    would cost a thread hop for nothing."""
    return new_session


SessionFactory = Annotated[Callable[[], Session], Depends(get_session_factory)]


async def get_db(request: Request, factory: SessionFactory) -> AsyncIterator[Session]:
    """One session per request, authentication included (it connects on first use). A write's unit of work
    (api.idempotent) runs on this same session, so a request holds at most one pooled connection.

    A session keeps its connection between the request's thread hops (authentication, then the handler), so
    the number of requests holding one is bounded here, on the event loop, by the pool's size: a request never
    waits for a connection while holding a thread another request needs to give its connection back."""
    limiter: anyio.CapacityLimiter | None = getattr(request.app.state, "db_sessions", None)
    session = factory()
    if limiter is not None:  # on behalf of the session: set-up and tear-down may run in different tasks
        await limiter.acquire_on_behalf_of(session)
    try:
        yield session
    finally:
        try:
            if session.in_transaction():  # an open transaction ends with a ROLLBACK round trip: off the loop
                with anyio.CancelScope(shield=True):  # a client that went away must not leak the connection
                    await anyio.to_thread.run_sync(session.close)
            else:
                session.close()
        finally:
            if limiter is not None:
                limiter.release_on_behalf_of(session)


DbSession = Annotated[Session, Depends(get_db)]


async def get_flow_runner(request: Request) -> Callable[[Flow[T]], Awaitable[T]]:
    """Runs a pipelined flow (core.flow) in one transaction on a connection of the app's async pool, on the event
    loop: the write path without thread hops or an ORM session (tests override this to join their transaction)."""
    pool = request.app.state.flow_pool

    async def run(f: Flow[T]) -> T:
        try:
            async with pool.connection() as conn:
                return await flow.run_in_transaction(conn, f)
        except psycopg.OperationalError as exc:
            if exc.sqlstate is None:  # the connection itself failed (server restarted): drop its dead siblings now,
                await pool.check()    # so this request is the only one that hears 503 (api.errors)
            raise

    return run


FlowRunner = Annotated[Callable[[Flow[Any]], Awaitable[Any]], Depends(get_flow_runner)]


async def access_claims(request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
                        ) -> tuple[int, str | None]:
    """The bearer token's verified (user id, login id), without the database. The edge middleware verified the
    token already and counted the request against the user's rate limit; this only reads its result."""
    if not token:
        raise InvalidToken("Authentication required: send 'Authorization: Bearer <token>'.", code="unauthenticated")
    access = getattr(request.state, ACCESS, None)
    if isinstance(access, InvalidToken):
        raise access
    return access if access is not None else decode_access(token)


AccessClaims = Annotated[tuple[int, str | None], Depends(access_claims)]


def current_user(db_session: DbSession, access: AccessClaims) -> User:
    """The authenticated, non-frozen user, read in the request's session and transaction."""
    return accounts.authenticate_claims(db_session=db_session, user_id=access[0], login_id=access[1])


CurrentUser = Annotated[User, Depends(current_user)]


def role(*roles: str) -> Callable[[User], User]:
    """Dependency factory: the current user, who must have one of ``roles``."""

    async def _dep(user: CurrentUser) -> User:
        accounts.require_role(user, *roles)
        return user

    return _dep


Worker = Annotated[User, Depends(role("worker"))]
Merchant = Annotated[User, Depends(role("merchant"))]
Ops = Annotated[User, Depends(role("ops"))]
MerchantOrOps = Annotated[User, Depends(role("merchant", "ops"))]  # a merchant's own task's data; ops any task's


def read_db(query_class: str) -> Callable[..., Iterator[Session]]:
    """Dependency factory: where a read-only view of ``query_class`` reads: the streaming replica when it is fresh
    enough for that class (core.replica, settings replica_max_lag_s), else the request's own primary session.
    Authentication always reads the primary (a freeze or a revoked login counts at once)."""

    def _dep(db_session: DbSession, user: CurrentUser) -> Iterator[Session]:
        session = replica.read_session(db_session, query_class)
        if session is None:
            yield db_session
            return
        # Authentication is done: end its transaction, so the primary connection goes back to the pool while the
        # replica works (expire_on_commit=False keeps the user loaded).
        db_session.commit()
        try:
            yield session
        finally:
            session.close()

    return _dep


# Read classes (README, Scale-out). Everything else, above all what a caller reads right after writing it (own
# claims, wallet, progress, submissions), reads the primary through DbSession.
HeatmapReadDb = Annotated[Session, Depends(read_db("heatmap"))]
StatsReadDb = Annotated[Session, Depends(read_db("stats"))]
HallReadDb = Annotated[Session, Depends(read_db("hall"))]
StatementReadDb = Annotated[Session, Depends(read_db("statement"))]


def client_ip(request: Request) -> str | None:
    """The peer address if it is an IP (a reverse proxy in front would set it via --proxy-headers)."""
    host = request.client.host if request.client else None
    try:
        return str(ipaddress.ip_address(host)) if host else None
    except ValueError:
        return None


def received_at(request: Request) -> datetime:
    """When the edge middleware saw the request arrive (now, where it did not run)."""
    return getattr(request.state, "received_at", None) or utcnow()
