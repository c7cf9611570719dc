"""Users: who am I, and ops freezing accounts."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from accounts import service as accounts
from accounts.schemas import FreezeRequest, RealNameUpdate, UserRead
from api.deps import CurrentUser, DbSession, Id, Ops
from api.idempotent import IdempotentRun
from api.views import user_read

router = APIRouter(prefix="/v1", tags=["users"])


@router.get("/me", response_model=UserRead)
def me(user: CurrentUser) -> UserRead:
    """The caller's own account."""
    return user_read(user)


@router.get("/users", response_model=list[UserRead])
def search_users(ops: Ops, db_session: DbSession, q: Annotated[str, Query(min_length=1, max_length=64)],
                 limit: Annotated[int, Query(ge=1, le=50)] = 20):
    """Find accounts by username or display name (ops), e.g. to freeze one."""
    return [user_read(u) for u in accounts.search(db_session=db_session, actor=ops, q=q.strip() or q, limit=limit)]


@router.post("/users/{user_id}/freeze", response_model=UserRead)
def freeze(user_id: Id, body: FreezeRequest, actor: Ops, idem: IdempotentRun):
    """Freeze or unfreeze an account (ops)."""
    return idem.run(actor.id, lambda db: user_read(accounts.freeze(
        db_session=db, actor=actor, user_id=user_id, reason=body.reason, frozen=body.frozen)))


@router.post("/users/{user_id}/real-name", response_model=UserRead)
def real_name(user_id: Id, body: RealNameUpdate, actor: Ops, idem: IdempotentRun):
    """Record a real-name check result (needed before a worker can withdraw)."""
    return idem.run(actor.id, lambda db: user_read(accounts.set_real_name(
        db_session=db, actor=actor, user_id=user_id, verified=body.verified)))
