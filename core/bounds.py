"""Bounds every input must keep, so no value can reach the database or a later read and fail there.

PostgreSQL's ``bigint`` stops at 2^63 - 1 and Python's ``datetime`` at year 9999 (a year-9999 time with a
negative offset is already past it in UTC, and a stored one breaks every later read). We accept dates in
a window around the present that any real field work fits in, whole numbers within ``bigint`` and text
without NUL (PostgreSQL text cannot hold it). Pure: pydantic types only.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field

BIGINT_MAX = 2**63 - 1
# Field work is dated now-ish: the service started in 2020; tasks are planned at most years ahead.
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)


def within_window(value: datetime) -> datetime:
    """Refuse times outside [EARLIEST, LATEST) (compared in UTC)."""
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"must be between {EARLIEST.date().isoformat()} and {LATEST.date().isoformat()}")
    return value


def no_nul(value: str) -> str:
    """Refuse text containing a NUL character."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# A timezone-aware time inside the sane window (the OpenAPI document states the format, the rule is checked).
BoundedDatetime = Annotated[AwareDatetime, AfterValidator(within_window)]
# An id as stored: a positive bigint.
DbId = Annotated[int, Field(ge=1, le=BIGINT_MAX)]
# Text without NUL.
Text = Annotated[str, AfterValidator(no_nul)]
