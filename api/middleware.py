"""ASGI middleware: request-size caps, per-IP rate limit, Prometheus request metrics."""
from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from accounts.errors import InvalidToken
from accounts.security import decode_access
from api.ratelimit import limit_request
from core.config import get_settings
from core.errors import InvalidInput, RateLimited, TooLarge
from core.models import utcnow

REQUESTS = Counter("fieldproof_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("fieldproof_http_request_seconds", "HTTP request latency", ["method", "route"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
UPLOAD_SUFFIXES = ("/evidence",)
UNLIMITED_PATHS = ("/healthz", "/metrics")
# PostgreSQL text cannot hold NUL; no field of ours means it. Refused at the edge in the path, the query string,
# JSON bodies (the escape \u0000) and form bodies (%00); multipart file contents are binary and left alone.
NUL_IN_BODY = {b"application/json": b"\\u0000", b"application/x-www-form-urlencoded": b"%00"}


ACCESS = "access_claims"


def _access_claims(scope: Scope) -> tuple[int, str | None] | InvalidToken | None:
    """The bearer token's (user id, login id), verified once per request and kept in the request state for
    authentication (api.deps); the refusal if it is invalid; None without a bearer token."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token:
                return None
            try:
                found = decode_access(token.strip())
            except InvalidToken as exc:
                found = exc
            scope["state"][ACCESS] = found
            return found
    return None


def _nul_error() -> InvalidInput:
    return InvalidInput("Text must not contain NUL characters.", code="nul_in_input")


def _body_nul_marker(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return NUL_IN_BODY.get(value.split(b";")[0].strip().lower())
    return None


class EdgeMiddleware:
    """Caps body size (Content-Length and streamed), limits per IP, records metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        # When the request reached us, before any queueing in this process: check-ins date their fix by it.
        scope.setdefault("state", {})["received_at"] = utcnow()
        settings = get_settings()
        cap = settings.max_upload_bytes if path.endswith(UPLOAD_SUFFIXES) else settings.max_json_body_bytes
        started = time.perf_counter()
        status = {"code": 500}
        try:
            self._check_length(scope, cap)
            if "\x00" in path or b"%00" in scope.get("query_string", b"") or b"\x00" in scope.get("query_string", b""):
                raise _nul_error()
            if path not in UNLIMITED_PATHS:
                # Both counters (IP, and the user a valid token names) in one Redis round trip on the loop.
                access = _access_claims(scope)
                await limit_request(scope["client"][0] if scope.get("client") else None,
                                    access[0] if isinstance(access, tuple) else None)
        except (TooLarge, RateLimited, InvalidInput) as exc:
            return await error_response(exc)(scope, receive, send)

        seen = 0
        state = {"started": False, "rejected": False}
        marker, tail = _body_nul_marker(scope), b""

        async def limited_receive() -> Message:
            nonlocal seen, tail
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                seen += len(chunk)
                refusal = None
                if seen > cap:
                    refusal = TooLarge(f"The request body exceeds {cap} bytes.")
                elif marker and marker in (tail + chunk).lower():
                    refusal = _nul_error()
                tail = chunk[-len(marker):] if marker else b""
                if refusal is not None and not state["started"]:
                    # Answer ourselves and tell the app the client went away.
                    state["rejected"] = True
                    await error_response(refusal)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            if state["rejected"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except Exception:
            if not state["rejected"]:
                raise
        finally:
            if state["rejected"]:
                status["code"] = 413 if seen > cap else 422
            route = scope.get("route")
            label = getattr(route, "path", "unmatched")
            REQUESTS.labels(scope["method"], label, str(status["code"])).inc()
            LATENCY.labels(scope["method"], label).observe(time.perf_counter() - started)

    @staticmethod
    def _check_length(scope: Scope, cap: int) -> None:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise TooLarge("Invalid Content-Length.", code="invalid_content_length")
                if length > cap:
                    raise TooLarge(f"The request body is {length} bytes; the limit here is {cap}.")
