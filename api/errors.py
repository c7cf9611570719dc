"""One table mapping domain error classes to HTTP statuses, registered in a loop."""
from __future__ import annotations

import time

import psycopg
import redis
from psycopg_pool import PoolTimeout
from fastapi import FastAPI, Request
from sqlalchemy import exc as sa_exc
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core import errors as e
from core.logging import get_logger

log = get_logger("api.errors")

# Most specific first: the first class in this table that matches wins.
STATUS_BY_ERROR: dict[type[e.FieldproofError], int] = {
    e.Unauthenticated: 401,
    e.Forbidden: 403,
    e.NotFound: 404,
    e.Conflict: 409,
    e.TooLarge: 413,
    e.UnsupportedMedia: 415,
    e.InvalidInput: 422,
    e.RateLimited: 429,
    e.ServiceUnavailable: 503,
    e.FieldproofError: 400,
}


def status_for(exc: e.FieldproofError) -> int:
    """The HTTP status of a domain error."""
    for cls, status in STATUS_BY_ERROR.items():
        if isinstance(exc, cls):
            return status
    return 400


def error_response(exc: e.FieldproofError) -> JSONResponse:
    """The JSON response for a domain error."""
    headers = {}
    if isinstance(exc, e.Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    if "retry_after_s" in exc.extra:
        headers["Retry-After"] = str(exc.extra["retry_after_s"])
    return JSONResponse(exc.to_dict(), status_code=status_for(exc), headers=headers)


async def _domain(request: Request, exc: e.FieldproofError) -> JSONResponse:
    return error_response(exc)


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
              for err in exc.errors()]
    first = errors[0] if errors else {"loc": [], "msg": "invalid"}
    where = ".".join(str(p) for p in first["loc"][1:] or first["loc"])
    return JSONResponse({"code": "validation_error", "detail": f"{where}: {first['msg']}", "errors": errors},
                        status_code=422)


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthenticated", 403: "forbidden"}
    code = codes.get(exc.status_code, f"http_{exc.status_code}")
    return JSONResponse({"code": code, "detail": str(exc.detail)}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


# ---- dependencies down: 503 with Retry-After, one log line per outage (not a traceback per request) ----
RETRY_AFTER_S = 5
# Errors closer together than this belong to one outage and are logged once.
OUTAGE_GAP_S = 60.0
_last_failure: dict[str, float] = {}
# SQLSTATE classes meaning "the server is going away or not there yet" (08 connection, 57P operator action).
_CONNECTION_STATES = ("08", "57P")


def _dependency_down(which: str, exc: Exception) -> JSONResponse:
    now = time.monotonic()
    if now - _last_failure.get(which, -OUTAGE_GAP_S * 2) > OUTAGE_GAP_S:
        log.error("dependency_unavailable", dependency=which, error=f"{type(exc).__name__}: {exc}"[:300])
    _last_failure[which] = now
    return error_response(e.ServiceUnavailable(retry_after_s=RETRY_AFTER_S, dependency=which))


async def _database(request: Request, exc: sa_exc.DBAPIError | psycopg.OperationalError) -> JSONResponse:
    """SQLAlchemy's wrapped errors (sessions) and psycopg's own (the pipelined write path, core.flow) alike."""
    orig = getattr(exc, "orig", exc)
    state = getattr(orig, "sqlstate", None) or ""
    # No SQLSTATE on a psycopg OperationalError means the connection itself failed (refused, reset, closed).
    lost = getattr(exc, "connection_invalidated", False) or (not state and type(orig) is psycopg.OperationalError)
    if lost or state.startswith(_CONNECTION_STATES):
        return _dependency_down("postgresql", exc)
    if state.startswith("40") or state.startswith("55P03") or state == "57014":
        # Serialization failure, deadlock, lock or statement timeout: the transaction was rolled back whole.
        return error_response(e.ServiceUnavailable("The database is busy and rolled this request back; retry.",
                                                   retry_after_s=1, dependency="postgresql"))
    return await _unexpected(request, exc)


async def _pool_timeout(request: Request, exc: sa_exc.TimeoutError | PoolTimeout) -> JSONResponse:
    return _dependency_down("postgresql", exc)


async def _redis(request: Request, exc: redis.RedisError) -> JSONResponse:
    return _dependency_down("redis", exc)


# --- database refusals (issue 13) -------------------------------------------------------------------------
# A value the edge let through but PostgreSQL refuses is the caller's input, not a fault of ours: a 4xx, so a
# future gap in the edge bounds shows up as a clear refusal instead of a 500. The text never echoes SQL.
# SQLSTATE class 23 (integrity): foreign key -> 404 (the thing referred to does not exist), unique -> 409,
# check / not null -> 422. Class 22 (data exception: out of range, bad datetime, NUL in text) -> 422.
INTEGRITY_BY_SQLSTATE: dict[str, tuple[int, str, str]] = {
    "23503": (404, "referenced_not_found", "Something this request refers to does not exist."),
    "23505": (409, "already_exists", "This already exists."),
    "23514": (422, "invalid_value", "A value is outside what is allowed."),
    "23502": (422, "missing_value", "A required value is missing."),
}


def _sqlstate(exc: Exception) -> str:
    return str(getattr(getattr(exc, "orig", exc), "sqlstate", "") or "")


async def _integrity(request: Request, exc: IntegrityError | psycopg.IntegrityError) -> JSONResponse:
    status, code, detail = INTEGRITY_BY_SQLSTATE.get(_sqlstate(exc), (409, "conflict", "This conflicts with stored data."))
    log.warning("integrity_error_at_edge", path=request.url.path, sqlstate=_sqlstate(exc))
    return JSONResponse({"code": code, "detail": detail}, status_code=status)


async def _data(request: Request, exc: DataError | psycopg.DataError) -> JSONResponse:
    log.warning("data_error_at_edge", path=request.url.path, sqlstate=_sqlstate(exc))
    return JSONResponse({"code": "invalid_value", "detail": "A value is out of range or malformed."},
                        status_code=422)
# --- end database refusals ---------------------------------------------------------------------------------


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", path=request.url.path)
    return JSONResponse({"code": "internal_error", "detail": "An internal error occurred."}, status_code=500)


def register(app: FastAPI) -> None:
    """Install the handlers on the app."""
    app.add_exception_handler(e.FieldproofError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(sa_exc.OperationalError, _database)
    app.add_exception_handler(sa_exc.TimeoutError, _pool_timeout)
    app.add_exception_handler(redis.ConnectionError, _redis)
    app.add_exception_handler(redis.TimeoutError, _redis)
    app.add_exception_handler(IntegrityError, _integrity)
    app.add_exception_handler(DataError, _data)
    # The same for psycopg's errors, raised unwrapped by the pipelined write path (core.flow).
    app.add_exception_handler(psycopg.OperationalError, _database)
    app.add_exception_handler(PoolTimeout, _pool_timeout)
    app.add_exception_handler(psycopg.IntegrityError, _integrity)
    app.add_exception_handler(psycopg.DataError, _data)
    app.add_exception_handler(Exception, _unexpected)
