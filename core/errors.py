"""Domain error base: every error has a stable machine-readable ``code`` and a human ``detail``.

Services raise these; ``api/errors.py`` maps each class to an HTTP status in one table.
"""
from __future__ import annotations

from typing import Any


class FieldproofError(Exception):
    """Base for every error a caller may see; ``code`` is stable, ``detail`` is for humans."""

    code: str = "error"
    detail: str = "Something went wrong."

    def __init__(self, detail: str | None = None, *, code: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.detail
        if code:
            self.code = code
        self.extra = extra
        super().__init__(self.detail)

    def to_dict(self) -> dict[str, Any]:
        """The JSON body sent to clients."""
        return {"code": self.code, "detail": self.detail, **self.extra}


class InvalidInput(FieldproofError):
    """The request is well-formed but its values are not acceptable (HTTP 422)."""

    code = "invalid_input"
    detail = "The input is not valid."


class NotFound(FieldproofError):
    """The object does not exist or the caller may not see it (HTTP 404)."""

    code = "not_found"
    detail = "Not found."


class Forbidden(FieldproofError):
    """The caller is known but may not do this (HTTP 403)."""

    code = "forbidden"
    detail = "You may not do this."


class Unauthenticated(FieldproofError):
    """No valid credentials (HTTP 401)."""

    code = "unauthenticated"
    detail = "Authentication required."


class Conflict(FieldproofError):
    """The object's current state does not allow this (HTTP 409)."""

    code = "conflict"
    detail = "The current state does not allow this."


class TooLarge(FieldproofError):
    """The payload exceeds a size cap (HTTP 413)."""

    code = "payload_too_large"
    detail = "The payload is too large."


class UnsupportedMedia(FieldproofError):
    """The payload's real type is not accepted (HTTP 415)."""

    code = "unsupported_media_type"
    detail = "This kind of file is not accepted."


class RateLimited(FieldproofError):
    """Too many requests (HTTP 429)."""

    code = "rate_limited"
    detail = "Too many requests; slow down."


class ServiceUnavailable(FieldproofError):
    """A dependency (PostgreSQL, Redis) is unreachable or busy; nothing was done, retry later (HTTP 503)."""

    code = "service_unavailable"
    detail = ("The service is briefly unavailable and the request may not have been applied; retry shortly "
              "with the same Idempotency-Key.")
