"""Password hashing (argon2id) and JWT access tokens (HS256 pinned, iss/aud/exp checked)."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from accounts.errors import InvalidToken
from core.config import get_settings
from core.errors import RateLimited
from core.models import utcnow

ALGORITHM = "HS256"  # pinned: tokens claiming any other algorithm (incl. "none") are refused
# OWASP's floor for argon2id (19 MiB, 2 passes); only a simulation may go below it, never prod.
MIN_MEMORY_KIB, MIN_TIME_COST = 19 * 1024, 2


@lru_cache
def _hasher() -> PasswordHasher:
    """argon2id; defaults are the library's RFC 9106 low-memory profile (64 MiB, 3 passes)."""
    s = get_settings()
    if s.env == "prod" and (s.argon2_memory_kib < MIN_MEMORY_KIB or s.argon2_time_cost < MIN_TIME_COST):
        raise RuntimeError("argon2 parameters below the OWASP minimum are refused in prod")
    return PasswordHasher(time_cost=s.argon2_time_cost, memory_cost=s.argon2_memory_kib, parallelism=4)


_argon2_lock = threading.Lock()
_argon2_slots: dict[int, threading.BoundedSemaphore] = {}


@contextmanager
def _argon2_slot() -> Iterator[None]:
    """At most ``argon2_concurrency`` argon2 calls at once per process (each holds argon2_memory_kib)."""
    s = get_settings()
    with _argon2_lock:
        slots = _argon2_slots.setdefault(s.argon2_concurrency, threading.BoundedSemaphore(s.argon2_concurrency))
    if not slots.acquire(timeout=s.argon2_wait_s):
        raise RateLimited("The server is busy with sign-ins; try again in a few seconds.", code="server_busy",
                          retry_after_s=5)
    try:
        yield
    finally:
        slots.release()


@lru_cache
def _dummy_hash() -> str:
    # Verifying against a dummy hash for unknown users keeps login timing uniform.
    return _hasher().hash("dummy-password-for-timing")


def hash_password(password: str) -> str:
    """argon2id hash of a password."""
    with _argon2_slot():
        return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when the password matches; constant work for unknown users."""
    stored = password_hash or _dummy_hash()
    try:
        with _argon2_slot():
            return _hasher().verify(stored, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


@lru_cache
def _secret() -> str:
    configured = get_settings().jwt_secret
    if configured:
        return configured
    if get_settings().env == "prod":  # also refused by Settings; never a per-install key in production
        raise RuntimeError("FIELDPROOF_JWT_SECRET must be configured in prod")
    # Dev/test: a random key per installation, kept under .data (never committed).
    path = Path(get_settings().data_dir) / "jwt.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def derived_key(purpose: str) -> bytes:
    """A key for ``purpose`` derived from the deployment's secret (HMAC-SHA256), so one configured secret
    keys radio hashes and capture nonces without any of them revealing the JWT key or each other."""
    return hmac.new(_secret().encode(), b"fieldproof:" + purpose.encode(), hashlib.sha256).digest()


def create_access_token(user_id: int, role: str, login_id: str | None = None) -> str:
    """A short-lived signed access token; ``login_id`` (claim ``sid``) names the login it belongs to, so ending
    the login (refresh-token reuse, freezing) ends its access tokens at once, not when they expire."""
    s = get_settings()
    now = utcnow()
    claims = {"sub": str(user_id), "role": role, "typ": "access", "iss": s.jwt_issuer, "aud": s.jwt_audience,
              "iat": now, "exp": now + timedelta(seconds=s.access_token_ttl_s), "jti": secrets.token_hex(8)}
    if login_id:
        claims["sid"] = login_id
    return jwt.encode(claims, _secret(), algorithm=ALGORITHM)


def decode_access_token(token: str) -> int:
    """The user id of a valid access token; raises InvalidToken otherwise."""
    return decode_access(token)[0]


def decode_access(token: str) -> tuple[int, str | None]:
    """The user id and login id of a valid access token; raises InvalidToken otherwise."""
    s = get_settings()
    user_id, sid, exp = _verified(token, _secret(), s.jwt_audience, s.jwt_issuer)
    if exp is None or exp <= utcnow().timestamp():
        raise InvalidToken("The access token has expired.", code="token_expired")
    return user_id, sid


# A phone sends the same access token with every request until it expires (15 minutes): checking its signature and
# claims again each time cost ~65 µs of a check-in's ~2.5 ms of API CPU (pyjwt checks the base64 alphabet character
# by character). So a token that passed is remembered with what it says, keyed by everything the check depends on
# (the secret, audience and issuer too). Only passes are kept (lru_cache keeps no exceptions), expiry is checked
# against the service clock on every use, and a login ended early is still refused where it was (api.deps, the
# session check), since that never depended on the signature. Bounded: 4,096 tokens (~2 MB).
@lru_cache(maxsize=4096)
def _verified(token: str, secret: str, audience: str, issuer: str) -> tuple[int, str | None, float | None]:
    try:
        # Time claims are checked by decode_access against the service clock (core.clock), not pyjwt's real
        # clock, so a simulated day's tokens expire on simulated time.
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], audience=audience, issuer=issuer,
                            options={"require": ["exp", "iss", "aud", "sub"], "verify_exp": False,
                                     "verify_iat": False, "verify_nbf": False})
    except jwt.PyJWTError:
        raise InvalidToken()
    if claims.get("typ") != "access" or not str(claims["sub"]).isdigit():
        raise InvalidToken()
    exp = claims["exp"]
    sid = claims.get("sid")
    return int(claims["sub"]), sid if isinstance(sid, str) else None, exp if isinstance(exp, (int, float)) else None


def new_refresh_token() -> tuple[str, str]:
    """A random refresh token and its sha256 (only the hash is stored)."""
    token = secrets.token_urlsafe(32)
    return token, sha256_hex(token)


def sha256_hex(value: str) -> str:
    """Hex sha256 of a string."""
    return hashlib.sha256(value.encode()).hexdigest()
