"""Where higher layers (``checkin``, ``evidence``) plug into ``tasks`` without ``tasks`` importing them.

``tasks`` declares the slots it needs; ``checkin.hooks.register()`` and ``evidence.hooks.register()`` fill them
at process start-up (the API app, the Celery app, the CLI, the test session). Using an empty slot raises
``HookMissing``: a process that forgot to register fails loudly instead of skipping a check.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

# Checks a claim must pass before it is submitted: each raises a domain error when it fails, or adds its signals
# to the claim (locked by then): the evidence requirements, the stay a task asks for (checkin).
SUBMIT_CHECKS = ("evidence_requirements", "dwell")
# Sections of the ops spot-check view, in the order they are shown: each gives rows for one claim.
REVIEW_DETAILS = ("checkins", "evidence")

# What a claim's confirmation must know: which of its files are not yet checked (duplicate search, EXIF).
UNCHECKED_EVIDENCE = "unchecked_evidence"

SubmitCheck = Callable[..., None]  # (db_session, claim, task) -> None, raises when the claim may not be submitted
# (db_session, claim_ids) -> rows by claim id (every id a key): a page of spot checks in one read per section
ReviewDetail = Callable[[Session, list[int]], dict[int, list[dict[str, Any]]]]


@dataclass(frozen=True)
class ClaimFix:
    """Where and when the worker checked in for a claim (WGS-84), as evidence checks compare with it."""

    lat: float
    lon: float
    client_time: datetime


ClaimFixProvider = Callable[[Session, int], ClaimFix | None]  # (db_session, claim_id) -> the check-in fix
# (claim id, a column or a value; arrived after, or None for any) -> a SQL condition: the claim has files (not
# withdrawn) whose checks have not finished and that arrived after that time
UncheckedEvidence = Callable[[Any, datetime | None], Any]


class HookMissing(RuntimeError):
    """A slot ``tasks`` relies on was never filled: the process skipped a ``register()`` at start-up."""


_submit_checks: dict[str, SubmitCheck] = {}
_review_details: dict[str, ReviewDetail] = {}
_claim_fix: dict[str, ClaimFixProvider] = {}
_unchecked: dict[str, UncheckedEvidence] = {}


def _put(slots: dict, known: tuple[str, ...], name: str, fn: Callable) -> None:
    if name not in known:
        raise ValueError(f"unknown hook slot {name!r}; tasks.hooks declares {known}")
    slots[name] = fn  # registering again (a second app in one process) replaces, never duplicates


def register_submit_check(name: str, fn: SubmitCheck) -> None:
    """Fill one of ``SUBMIT_CHECKS``."""
    _put(_submit_checks, SUBMIT_CHECKS, name, fn)


def register_review_detail(name: str, fn: ReviewDetail) -> None:
    """Fill one of ``REVIEW_DETAILS``."""
    _put(_review_details, REVIEW_DETAILS, name, fn)


def register_claim_fix(fn: ClaimFixProvider) -> None:
    """Say how to find a claim's check-in fix."""
    _claim_fix["claim_fix"] = fn


def register_unchecked_evidence(fn: UncheckedEvidence) -> None:
    """Say how to find a claim's files whose checks have not finished."""
    _unchecked[UNCHECKED_EVIDENCE] = fn


def _filled(slots: dict, known: tuple[str, ...]) -> list:
    missing = [name for name in known if name not in slots]
    if missing:
        raise HookMissing(f"tasks hooks not registered: {missing} (call checkin.hooks.register() and "
                          "evidence.hooks.register() at start-up)")
    return [slots[name] for name in known]


def assert_complete() -> None:
    """Raise ``HookMissing`` unless every slot is filled (entry points call this after registering)."""
    _filled(_submit_checks, SUBMIT_CHECKS)
    _filled(_review_details, REVIEW_DETAILS)
    _filled(_claim_fix, ("claim_fix",))
    _filled(_unchecked, (UNCHECKED_EVIDENCE,))


def run_submit_checks(db_session: Session, claim, task) -> None:
    """Run every submit precondition; the first that fails raises."""
    for check in _filled(_submit_checks, SUBMIT_CHECKS):
        check(db_session, claim, task)


def review_details(db_session: Session, claim_ids: list[int]) -> dict[int, dict[str, list[dict[str, Any]]]]:
    """Every spot-check section of each claim, by claim id, then by slot name in ``REVIEW_DETAILS`` order."""
    fns = _filled(_review_details, REVIEW_DETAILS)
    sections = [fn(db_session, claim_ids) for fn in fns]
    return {cid: {name: rows[cid] for name, rows in zip(REVIEW_DETAILS, sections)} for cid in claim_ids}


def claim_fix(db_session: Session, claim_id: int) -> ClaimFix | None:
    """The claim's check-in fix, or None before the worker checked in."""
    (provider,) = _filled(_claim_fix, ("claim_fix",))
    return provider(db_session, claim_id)


def unchecked_evidence(claim_id: Any, arrived_after: datetime | None = None) -> Any:
    """A SQL condition: the claim (an id, or a claim id column) has files not yet checked that arrived after
    ``arrived_after`` (any, if None)."""
    (clause,) = _filled(_unchecked, (UNCHECKED_EVIDENCE,))
    return clause(claim_id, arrived_after)
