"""Account verbs: register, log in, refresh, freeze."""
from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import bindparam, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from accounts import lockout, passwords
from accounts.errors import (InvalidCredentials, InvalidToken, RoleNotAllowed, UserFrozen, UsernameTaken,
                             WeakPassword, WrongRole)
from accounts.models import ROLES, RefreshToken, User
from accounts.schemas import TokenPair
from accounts.security import (create_access_token, decode_access, hash_password, new_refresh_token,
                               sha256_hex, verify_password)
from core.config import get_settings
from core.errors import InvalidInput, NotFound
from core.flow import Stmt, sql
from core.models import utcnow

MIN_PASSWORD_LENGTH = passwords.MIN_LENGTH


def get(*, db_session: Session, user_id: int) -> User:
    """A user by id, or NotFound."""
    user = db_session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.", code="user_not_found")
    return user


def create(*, db_session: Session, username: str, password: str, role: str, display_name: str = "",
           self_service: bool = True) -> User:
    """Create a user; self-service registration may only make workers and merchants."""
    if role not in ROLES:
        raise InvalidInput(f"Unknown role {role!r}.", code="invalid_role")
    if self_service and role not in ("worker", "merchant"):
        raise RoleNotAllowed()
    reason = passwords.problem(password, username=username, display_name=display_name)
    if reason:
        raise WeakPassword(reason)
    user = User(username=username, password_hash=hash_password(password), role=role,
                display_name=display_name or username)
    db_session.add(user)
    try:
        db_session.flush()
    except IntegrityError:
        db_session.rollback()
        raise UsernameTaken()
    db_session.commit()
    return user


def login(*, db_session: Session, username: str, password: str, ip: str | None) -> TokenPair:
    """Check the password (with lock-out) and issue a token pair."""
    lockout.reserve_attempt(username, ip)  # counted before the check: parallel guesses cannot overtake it
    try:
        user = db_session.scalar(select(User).where(User.username == username))
        matches = verify_password(user.password_hash if user else None, password)
    except Exception:
        lockout.release_attempt(username, ip)
        raise
    if not matches:
        raise InvalidCredentials()
    lockout.record_success(username, ip)
    ensure_active(user)
    pair = _issue(db_session, user, family=secrets.token_hex(16))
    db_session.commit()
    return pair


def _issue(db_session: Session, user: User, *, family: str) -> TokenPair:
    token, digest = new_refresh_token()
    ttl = get_settings().refresh_token_ttl_s
    db_session.add(RefreshToken(user_id=user.id, token_sha256=digest, family=family,
                                expires_at=utcnow() + timedelta(seconds=ttl)))
    return TokenPair(access_token=create_access_token(user.id, user.role, login_id=family), refresh_token=token,
                     expires_in=get_settings().access_token_ttl_s)


def refresh(*, db_session: Session, refresh_token: str) -> TokenPair:
    """Rotate a refresh token; presenting a used one revokes its whole family (theft signal), unless it is a retry:
    within ``refresh_reuse_grace_s`` of its use and before any token issued since was used (the phone never got
    the first answer), it is answered with another new pair of the same login. Decided under the token's row lock,
    so parallel retries are answered one after the other."""
    row = db_session.scalar(select(RefreshToken).where(RefreshToken.token_sha256 == sha256_hex(refresh_token))
                            .with_for_update())
    now = utcnow()
    if row is None or row.revoked_at is not None or row.expires_at < now:
        raise InvalidToken("The refresh token is invalid or expired.")
    if row.used_at is not None and not _retried(db_session, row, now):
        db_session.execute(update(RefreshToken).where(RefreshToken.family == row.family)
                           .values(revoked_at=now))
        db_session.commit()
        raise InvalidToken("This refresh token was already used; all sessions of this login were ended.",
                           code="refresh_token_reused")
    row.used_at = row.used_at or now
    user = get(db_session=db_session, user_id=row.user_id)
    ensure_active(user)
    pair = _issue(db_session, user, family=row.family)
    db_session.commit()
    return pair


def _retried(db_session: Session, row: RefreshToken, now) -> bool:
    """A used token presented again soon, while no token issued after its use has been used: a lost answer."""
    if (now - row.used_at).total_seconds() > get_settings().refresh_reuse_grace_s:
        return False
    later_used = db_session.scalar(select(RefreshToken.id).where(
        RefreshToken.family == row.family, RefreshToken.created_at >= row.used_at,
        RefreshToken.used_at.is_not(None)).limit(1))
    return later_used is None


def authenticate(*, db_session: Session, access_token: str) -> User:
    """The active user behind an access token."""
    user_id, login_id = decode_access(access_token)
    return authenticate_claims(db_session=db_session, user_id=user_id, login_id=login_id)


# One round trip on every authenticated request: the user and whether this token's login was ended. Built once:
# only the two values change per request.
_AUTHENTICATE = select(User, select(RefreshToken.id).where(
    RefreshToken.family == bindparam("login_id"), RefreshToken.user_id == User.id,
    RefreshToken.revoked_at.is_not(None)).exists()).where(User.id == bindparam("user_id"))


def authenticate_claims(*, db_session: Session, user_id: int, login_id: str | None) -> User:
    """The active user named by a verified access token's claims (see accounts.security.decode_access)."""
    # A token without a login id (issued before logins had one) matches no family: never "ended".
    row = db_session.execute(_AUTHENTICATE, {"user_id": user_id, "login_id": login_id}).first()
    if row is None:
        raise InvalidToken()
    _refuse_ended(row[0], row[1])
    return row[0]


def _refuse_ended(user, login_ended: bool) -> None:
    ensure_active(user)  # a frozen user hears why (403), not that the login was ended
    if login_ended:
        raise InvalidToken("This login was ended; sign in again.", code="login_revoked")


# authenticate_claims for a pipelined flow (core.flow): the columns a request's checks read, not a loaded User.
_AUTHENTICATE_ROW = text("""
SELECT u.id, u.role, u.frozen_at, u.frozen_reason,
       EXISTS (SELECT 1 FROM refresh_token r
                WHERE r.family = :login_id AND r.user_id = u.id AND r.revoked_at IS NOT NULL) AS login_ended
  FROM app_user u WHERE u.id = :user_id""")


def authenticate_stmt(user_id: int, login_id: str | None) -> Stmt:
    """The statement whose rows ``authenticated`` judges."""
    return Stmt(sql(_AUTHENTICATE_ROW), {"user_id": user_id, "login_id": login_id}, one_row=True)


def authenticated(rows: list, *roles: str):
    """The active user (id, role, frozen_at, frozen_reason) from ``authenticate_stmt``'s rows, who must have one
    of ``roles``: the same refusals as ``authenticate_claims`` and ``require_role``."""
    if not rows:
        raise InvalidToken()
    _refuse_ended(rows[0], rows[0].login_ended)
    require_role(rows[0], *roles)
    return rows[0]


def ensure_active(user: User) -> None:
    """Frozen users are refused everywhere."""
    if user.frozen_at is not None:
        raise UserFrozen(f"This account is frozen: {user.frozen_reason or 'no reason given'}.")


def require_role(user: User, *roles: str) -> None:
    """Raise WrongRole unless the user has one of the roles (admin may act as ops)."""
    if user.role in roles or (user.role == "admin" and "ops" in roles):
        return
    raise WrongRole(f"This needs the role {' or '.join(roles)}; you are {user.role}.")


def freeze(*, db_session: Session, actor: User, user_id: int, reason: str, frozen: bool = True) -> User:
    """Freeze (or unfreeze) a user and revoke their refresh tokens."""
    require_role(actor, "ops")
    user = get(db_session=db_session, user_id=user_id)
    if user.role in ("ops", "admin") and actor.role != "admin":
        raise WrongRole("Only an admin can freeze ops or admin accounts.")
    user.frozen_at = utcnow() if frozen else None
    user.frozen_reason = reason if frozen else None
    if frozen:
        db_session.execute(update(RefreshToken).where(RefreshToken.user_id == user.id,
                                                      RefreshToken.revoked_at.is_(None)).values(revoked_at=utcnow()))
    db_session.commit()
    return user


def search(*, db_session: Session, actor: User, q: str, limit: int = 20) -> list[User]:
    """Users whose username or display name contains ``q`` (case-insensitive), exact username first (ops only)."""
    require_role(actor, "ops")
    pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    stmt = (select(User).where(or_(User.username.ilike(pattern, escape="\\"),
                                   User.display_name.ilike(pattern, escape="\\")))
            .order_by((func.lower(User.username) != q.lower()), User.username).limit(limit))
    return list(db_session.scalars(stmt))


def set_real_name(*, db_session: Session, actor: User, user_id: int, verified: bool) -> User:
    """Ops record the outcome of a real-name check (a provider integration would call this too)."""
    require_role(actor, "ops")
    user = get(db_session=db_session, user_id=user_id)
    user.real_name_verified = verified
    db_session.commit()
    return user
