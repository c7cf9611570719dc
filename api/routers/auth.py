"""Registration and tokens."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from accounts import service as accounts
from accounts.schemas import RefreshRequest, TokenPair, UserCreate, UserRead
from api.deps import DbSession, client_ip
from api.ratelimit import limit_auth
from api.idempotent import IdempotentRun
from api.views import user_read

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post("/register", status_code=201, response_model=UserRead)
def register(body: UserCreate, idem: IdempotentRun, request: Request):
    """Create a worker or merchant account (limited per IP and in total)."""
    limit_auth("register", client_ip(request))
    return idem.for_anonymous(body.username).run(
        None, lambda db: user_read(accounts.create(db_session=db, **body.model_dump())), status_code=201)


@router.post("/token", response_model=TokenPair)
def token(form: Annotated[OAuth2PasswordRequestForm, Depends()], db_session: DbSession, request: Request) -> TokenPair:
    """OAuth2 password grant: a short-lived access token and a rotating refresh token (limited per IP)."""
    limit_auth("login", client_ip(request))
    return accounts.login(db_session=db_session, username=form.username, password=form.password,
                          ip=client_ip(request))


@router.post("/refresh", response_model=TokenPair)
def refresh(body: RefreshRequest, db_session: DbSession) -> TokenPair:
    """Exchange a refresh token for a new pair (the old one stops working)."""
    return accounts.refresh(db_session=db_session, refresh_token=body.refresh_token)
