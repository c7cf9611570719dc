"""Request-scoped dependencies: the DB session, the unit of work, the current user, rate limits."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from accounts import service as accounts
from accounts.models import User
from api.ratelimit import limit_user
from core.bounds import BIGINT_MAX
from core.db import UnitOfWork, new_session
from core.models import utcnow

# Every id in a path is a positive bigint: a larger number is a 422 here, never an overflow in PostgreSQL.
Id = Annotated[int, Path(ge=1, le=BIGINT_MAX)]
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)


def get_db() -> Iterator[Session]:
    """One session per request; services commit, this closes."""
    session = new_session()
    try:
        yield session
    finally:
        session.close()


def get_uow_factory() -> Callable[[], UnitOfWork]:
    """Makes units of work (tests override this to join their transaction)."""
    return UnitOfWork


DbSession = Annotated[Session, Depends(get_db)]
UowFactory = Annotated[Callable[[], UnitOfWork], Depends(get_uow_factory)]


def current_user(db_session: DbSession, token: Annotated[str | None, Depends(oauth2_scheme)]) -> User:
    """The authenticated, non-frozen user; also applies the per-user rate limit."""
    if not token:
        from accounts.errors import InvalidToken

        raise InvalidToken("Authentication required: send 'Authorization: Bearer <token>'.", code="unauthenticated")
    user = accounts.authenticate(db_session=db_session, access_token=token)
    # End the read transaction so this request holds no pooled connection while a unit of work runs:
    # otherwise every busy thread would hold one connection and wait for a second.
    db_session.commit()
    limit_user(user.id)
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def role(*roles: str) -> Callable[[User], User]:
    """Dependency factory: the current user, who must have one of ``roles``."""

    def _dep(user: CurrentUser) -> User:
        accounts.require_role(user, *roles)
        return user

    return _dep


Worker = Annotated[User, Depends(role("worker"))]
Merchant = Annotated[User, Depends(role("merchant"))]
Ops = Annotated[User, Depends(role("ops"))]


def client_ip(request: Request) -> str | None:
    """The peer address if it is an IP (a reverse proxy in front would set it via --proxy-headers)."""
    import ipaddress

    host = request.client.host if request.client else None
    try:
        return str(ipaddress.ip_address(host)) if host else None
    except ValueError:
        return None


def received_at(request: Request) -> datetime:
    """When the edge middleware saw the request arrive (now, where it did not run)."""
    return getattr(request.state, "received_at", None) or utcnow()
