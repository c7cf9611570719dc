"""Claim verbs: claim a slot, guarded transitions with audit rows, expiry, reads."""
from __future__ import annotations

import json
from datetime import timedelta
from functools import lru_cache

from sqlalchemy import TextClause, TextualSelect, bindparam, or_, select, text, true, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from accounts.models import User
from accounts.service import require_role
from core.batch import sweep
from core.config import get_settings
from core.flow import Stmt, sql
from core.models import utcnow
from tasks import credit
from tasks.errors import (AlreadyClaimed, AlreadyDone, ClaimNotFound, CreditTooLow, InvalidTransition, SlotsFull,
                          TaskNotFound, TaskNotOpen)
from tasks.models import ACTIVE_CLAIM_STATES, DONE_CLAIM_STATES, Claim, ClaimEvent, Task, in_list

def credit_of(db_session: Session, worker_id: int) -> int:
    """The worker's credit score (see tasks.credit for the formula)."""
    return credit.score(db_session, worker_id)


def claim(*, db_session: Session, worker: User, task_id: int) -> Claim:
    """Take one slot. The slot counter moves in one guarded UPDATE, so slots are never oversold."""
    require_role(worker, "worker")
    task = db_session.get(Task, task_id)
    if task is None or task.state not in ("published", "paused", "closed"):
        raise TaskNotFound()
    have = credit_of(db_session, worker.id)
    if not credit.may_claim(task, have):
        raise CreditTooLow(f"This task needs credit {credit.required_credit(task)}; yours is {have}.")
    _refuse_if_done(db_session, task_id, worker.id)
    now = utcnow()
    # The worker's one active claim per task is decided by the unique partial index, without an error to
    # recover from; the slot by one guarded UPDATE. On a refusal the service only raises: the caller owns
    # the transaction and rolls it back (never this function), so nothing half-done is ever committed.
    expires = min(now + timedelta(seconds=get_settings().claim_checkin_window_s), task.ends_at)
    # The new row comes back whole (RETURNING the entity): no second round trip to read it.
    claim = db_session.scalar(
        insert(Claim).values(task_id=task_id, worker_id=worker.id, state="claimed", expires_at=expires,
                             risk_score=0, flags=[])
        .on_conflict_do_nothing(index_elements=["task_id", "worker_id"],
                                # A literal predicate: with bound parameters a generic (prepared) plan
                                # cannot prove the partial index applies and PostgreSQL raises 42P10.
                                index_where=text(in_list("state", ACTIVE_CLAIM_STATES)))
        .returning(Claim))
    if claim is None:
        raise AlreadyClaimed()
    taken = db_session.execute(
        update(Task).where(Task.id == task_id, Task.state == "published", Task.slots_taken < Task.slots,
                           Task.ends_at > now)
        .values(slots_taken=Task.slots_taken + 1).returning(Task.id)).first()
    if taken is None:
        state, ends_at = db_session.execute(select(Task.state, Task.ends_at).where(Task.id == task_id)).one()
        if state != "published" or ends_at <= now:
            raise TaskNotOpen(f"Task {task_id} is {state} and not open for claims.")
        raise SlotsFull()
    audit(db_session, claim.id, None, "claimed", worker.id)
    db_session.commit()
    return claim


_EARLIER_CLAIMS = (select(Claim.state)
                   .where(Claim.task_id == bindparam("task_id"), Claim.worker_id == bindparam("worker_id"))
                   .order_by(Claim.id).with_for_update())


def _refuse_if_done(db_session: Session, task_id: int, worker_id: int) -> None:
    """Refuse a second go at a task this worker already did. The worker's earlier claims on the task are
    row-locked: one moving to paid (or out of an active state) right now is waited for and read as committed,
    and a claim still active is caught by the unique partial index in the INSERT that follows."""
    states = db_session.scalars(_EARLIER_CLAIMS, {"task_id": task_id, "worker_id": worker_id}).all()
    if any(state in DONE_CLAIM_STATES for state in states):
        raise AlreadyDone()


def audit(db_session: Session, claim_id: int, from_state: str | None, to_state: str, actor_id: int | None,
          reason: str | None = None, data: dict | None = None) -> None:
    """Add the audit row of a claim state change."""
    db_session.add(ClaimEvent(claim_id=claim_id, from_state=from_state, to_state=to_state, actor_id=actor_id,
                              reason=reason, data=data))


_CLAIM_COLUMNS = tuple(Claim.__table__.c.keys())


@lru_cache(maxsize=128)
def _move_sql(n_from: int, columns: tuple[str, ...], whole: bool = False) -> TextClause | TextualSelect:
    """The guarded UPDATE and its audit row as one statement, for a set of columns (names from code only).
    ``move_stmt``'s: a move the guard refuses fails the statement itself (``fieldproof_guard``, SQLSTATE FPG01), so
    nothing sent after it in a pipeline runs, a COMMIT included (core.flow, Stmt.refusal). ``whole``
    (``transition``'s): the statement returns the changed claim row (every column, in the table's order), or no row
    when the guard matched nothing."""
    unknown = set(columns) - set(_CLAIM_COLUMNS)
    if unknown:
        raise ValueError(f"not claim columns: {sorted(unknown)}")
    sets = ", ".join(["state = :to_state"] + [f"{c} = :v_{c}" for c in columns])
    froms = ", ".join(f":from_{i}" for i in range(n_from))
    # The self-join reads the row as it was before the UPDATE, so the audit names the real prior state; the
    # guard stays on the updated row, which PostgreSQL re-checks if a concurrent change got there first.
    row = "".join(f", claim.{c}" for c in _CLAIM_COLUMNS) if whole else ""
    moved = f"""moved AS (UPDATE claim SET {sets} FROM claim AS before
                        WHERE claim.id = :claim_id AND claim.state IN ({froms}) AND before.id = claim.id
                    RETURNING before.state AS prior{row})"""
    audit = """INSERT INTO claim_event (claim_id, from_state, to_state, actor_id, reason, data, at)
        SELECT CAST(:claim_id AS bigint), prior, CAST(:to_state AS text), CAST(:actor_id AS bigint),
               CAST(:reason AS text), CAST(:data AS jsonb), CAST(:at AS timestamptz) FROM moved
        RETURNING from_state"""
    if whole:
        # A data-modifying CTE runs to completion even when the main query does not read it: the audit row is
        # written, and the claim row comes back from the UPDATE itself.
        cols = ", ".join(f"moved.{c}" for c in _CLAIM_COLUMNS)
        return text(f"WITH {moved},\n             audit AS ({audit})\n        SELECT {cols} FROM moved"
                    ).columns(*Claim.__table__.c)
    # The guard's one-row side is always read (a LEFT JOIN keeps it whatever the plan), so it raises on an empty
    # move before any row is returned; data-modifying CTEs run once, to completion, whoever reads them.
    return text(f"""WITH {moved},
             audit AS ({audit})
        SELECT audit.from_state
          FROM (SELECT fieldproof_guard(EXISTS (SELECT FROM moved), 'claim move')) AS g(ok)
          LEFT JOIN audit ON g.ok""")


def _move_params(claim_id: int, from_states: tuple[str, ...], to_state: str, actor_id: int | None,
                 reason: str | None, data: dict | None, values: dict) -> dict:
    return {"claim_id": claim_id, "to_state": to_state, "actor_id": actor_id, "reason": reason,
            "data": None if data is None else json.dumps(data), "at": utcnow(),
            **{f"from_{i}": state for i, state in enumerate(from_states)},
            **{f"v_{column}": value for column, value in values.items()}}


def _refused(claim_id: int, from_states: tuple[str, ...], current: str | None) -> InvalidTransition:
    return InvalidTransition(f"Claim {claim_id} is {current}; this needs {' or '.join(from_states)}.", state=current)


def move_stmt(claim_id: int, from_states: tuple[str, ...], to_state: str, *, actor_id: int | None,
              reason: str | None = None, data: dict | None = None, current: str | None = None,
              **values) -> Stmt:
    """A guarded claim state change (``WHERE state IN from_states``) with its audit row, as one statement for a
    pipelined flow (core.flow); ``moved`` reads its rows. The guard refuses in
    PostgreSQL (``current``: the state the flow last read, for the refusal's message), so the statement can ride
    in a batch that commits (Batch.commit)."""
    return Stmt(sql(_move_sql(len(from_states), tuple(values))),
                _move_params(claim_id, from_states, to_state, actor_id, reason, data, values), writes=True,
                refusal=_refused(claim_id, from_states, current))


def moved(rows: list, claim_id: int, from_states: tuple[str, ...], current: str | None) -> str:
    """The prior state from ``move_stmt``'s rows; the refusal ``transition`` raises when the guard matched nothing
    (``current``: the state the flow last read)."""
    if not rows or rows[0][0] is None:  # the guard's side of the join with no move (see _move_sql)
        raise _refused(claim_id, from_states, current)
    return rows[0][0]


def transition(db_session: Session, claim_id: int, from_states: tuple[str, ...], to_state: str, *,
               actor_id: int | None, reason: str | None = None, data: dict | None = None, **values) -> Claim:
    """Guarded claim state change (``WHERE state IN from_states``) plus its audit row, in one statement (flushing
    pending changes first) that also returns the changed Claim: the Claim already in the session is updated in
    place (populate_existing), with no reload."""
    db_session.flush()
    params = _move_params(claim_id, from_states, to_state, actor_id, reason, data, values)
    found = db_session.scalars(select(Claim).from_statement(_move_sql(len(from_states), tuple(values), whole=True)),
                               params, execution_options={"populate_existing": True}).first()
    if found is None:
        raise _refused(claim_id, from_states, db_session.scalar(select(Claim.state).where(Claim.id == claim_id)))
    return found


def get_for(*, db_session: Session, user: User, claim_id: int, for_update: bool = False) -> Claim:
    """A claim the user may see (``readable_by``: its worker, the task's merchant, or ops), read in one statement;
    others get 404. ``for_update`` locks the claim's row only (never its task's)."""
    found = db_session.scalar(_claim_for(_reader_kind(user.role), for_update), {"claim_id": claim_id, "uid": user.id})
    if found is None:
        raise ClaimNotFound()
    return found


def _reader_kind(role: str) -> str:
    return "all" if role in ("ops", "admin") else "merchant" if role == "merchant" else "own"


def _rule(kind: str, uid):
    """Who reads a claim, as a condition on Claim joined to its Task: ops (and admins) every claim, a merchant
    its tasks' claims and its own, anyone else its own."""
    if kind == "all":
        return true()
    mine = Claim.worker_id == uid
    return or_(mine, Task.merchant_id == uid) if kind == "merchant" else mine


@lru_cache(maxsize=8)
def _claim_for(kind: str, for_update: bool):
    """``get_for``'s statement for a kind of reader, built once with bound values (claim_id, uid)."""
    stmt = select(Claim).where(Claim.id == bindparam("claim_id"), _rule(kind, bindparam("uid")))
    if kind == "merchant":
        stmt = stmt.join(Task, Task.id == Claim.task_id)
    return stmt.with_for_update(of=Claim) if for_update else stmt


def readable_by(user: User):
    """``get_for``'s rule as a condition on Claim joined to its Task, for reads of many claims at once."""
    return _rule(_reader_kind(user.role), user.id)


def get_own(*, db_session: Session, worker: User, claim_id: int, for_update: bool = False) -> Claim:
    """A claim held by this worker (404 for anyone else's)."""
    found = get_for(db_session=db_session, user=worker, claim_id=claim_id, for_update=for_update)
    if found.worker_id != worker.id:
        raise ClaimNotFound()
    return found


def list_for_worker(*, db_session: Session, worker: User, state: str | None = None, limit: int = 100) -> list[Claim]:
    """The worker's own claims, newest first."""
    stmt = select(Claim).where(Claim.worker_id == worker.id).order_by(Claim.id.desc()).limit(limit)
    if state:
        stmt = stmt.where(Claim.state == state)
    return list(db_session.scalars(stmt))


def cancel(*, db_session: Session, worker: User, claim_id: int) -> Claim:
    """The worker gives a claimed slot back before checking in."""
    get_own(db_session=db_session, worker=worker, claim_id=claim_id)
    found = transition(db_session, claim_id, ("claimed",), "cancelled", actor_id=worker.id)
    _free_slot(db_session, found.task_id)
    db_session.commit()
    return found


def _free_slot(db_session: Session, task_id: int) -> None:
    db_session.execute(update(Task).where(Task.id == task_id, Task.slots_taken > 0)
                       .values(slots_taken=Task.slots_taken - 1))


def expire_stale(*, db_session: Session, limit: int = 1000) -> int:
    """Release claims never checked in before their deadline; safe to run twice or on several hosts."""
    due = select(Claim.id).where(Claim.state == "claimed", Claim.expires_at < utcnow()).order_by(Claim.id).limit(limit)
    return sweep(db_session, due, _expire_one, what="expire_claim")


def _expire_one(db_session: Session, claim_id: int) -> bool:
    locked = db_session.scalar(select(Claim.id).where(Claim.id == claim_id, Claim.state == "claimed",
                                                      Claim.expires_at < utcnow()).with_for_update(skip_locked=True))
    if locked is None:
        return False
    found = transition(db_session, claim_id, ("claimed",), "expired", actor_id=None,
                       reason="not checked in before the claim deadline")
    _free_slot(db_session, found.task_id)
    return True


def list_for_task(*, db_session: Session, merchant: User, task_id: int, state: str | None,
                  limit: int = 100) -> list[Claim]:
    """Claims of one of the merchant's tasks (ops: any task)."""
    owner = db_session.scalar(select(Task.merchant_id).where(Task.id == task_id))
    if owner is None or (merchant.role == "merchant" and owner != merchant.id):
        raise TaskNotFound()
    stmt = select(Claim).where(Claim.task_id == task_id).order_by(Claim.id).limit(limit)
    if state:
        stmt = stmt.where(Claim.state == state)
    return list(db_session.scalars(stmt))
