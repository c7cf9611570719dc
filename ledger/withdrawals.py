"""Worker withdrawals: limits, review, and a payout that happens exactly once."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from accounts.models import User
from accounts.service import require_role
from core.errors import Conflict, NotFound
from core.models import utcnow
from ledger import service as ledger
from ledger.errors import DailyLimitExceeded, RealNameRequired, WithdrawalTooSmall
from ledger.models import LedgerAccount, Withdrawal
from ledger.provider import PaymentProvider
from ledger.settings import get_ledger_settings


def request(*, db_session: Session, worker: User, amount_fen: int) -> Withdrawal:
    """Reserve earnings for a payout (minimum, daily limit, real name); large ones wait for ops."""
    require_role(worker, "worker")
    s = get_ledger_settings()
    if not worker.real_name_verified:
        raise RealNameRequired()
    if amount_fen < s.withdrawal_min_fen:
        raise WithdrawalTooSmall(f"The minimum withdrawal is {s.withdrawal_min_fen} fen.")
    # The daily total is read and extended under the worker's two account row locks (taken in id order, as
    # the transfer below takes them), so parallel requests queue here and each sees the ones before it.
    ledger.lock_accounts(db_session, [ledger.account(db_session, worker.id, "worker_available"),
                                      ledger.account(db_session, worker.id, "worker_withdrawing")])
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    used = db_session.scalar(select(func.coalesce(func.sum(Withdrawal.amount_fen), 0)).where(
        Withdrawal.worker_id == worker.id, Withdrawal.created_at >= today, Withdrawal.state != "rejected"))
    if used + amount_fen > s.withdrawal_daily_limit_fen:
        raise DailyLimitExceeded(f"Today's limit is {s.withdrawal_daily_limit_fen} fen; {used} fen already used.")
    state = "pending_review" if amount_fen > s.withdrawal_review_above_fen else "approved"
    row = Withdrawal(worker_id=worker.id, amount_fen=amount_fen, state=state)
    db_session.add(row)
    db_session.flush()
    ledger._move(db_session, kind="withdrawal_request", cause=("withdrawal", row.id),
                 src=ledger.account(db_session, worker.id, "worker_available"),
                 dst=ledger.account(db_session, worker.id, "worker_withdrawing"), amount=amount_fen)
    db_session.commit()
    return row


def review(*, db_session: Session, ops: User, withdrawal_id: int, approve: bool, reason: str) -> Withdrawal:
    """Ops approve or reject a large withdrawal (rejected money goes back to the worker)."""
    require_role(ops, "ops")
    row = _transition(db_session, withdrawal_id, "pending_review", "approved" if approve else "rejected",
                      reviewed_by=ops.id, reason=reason)
    if not approve:
        ledger._move(db_session, kind="withdrawal_rejected", cause=("withdrawal", row.id),
                     src=ledger.account(db_session, row.worker_id, "worker_withdrawing"),
                     dst=ledger.account(db_session, row.worker_id, "worker_available"), amount=row.amount_fen)
    db_session.commit()
    return row


def _transition(db_session: Session, withdrawal_id: int, src: str, dst: str, **values) -> Withdrawal:
    ok = db_session.execute(update(Withdrawal).where(Withdrawal.id == withdrawal_id, Withdrawal.state == src)
                            .values(state=dst, **values).returning(Withdrawal.id)).first()
    row = db_session.get(Withdrawal, withdrawal_id)
    if row is None:
        raise NotFound("No such withdrawal.", code="withdrawal_not_found")
    if ok is None:
        raise Conflict(f"Withdrawal {withdrawal_id} is {row.state}, not {src}.", code="invalid_transition")
    db_session.refresh(row)
    return row


def execute_payout(*, db_session: Session, withdrawal_id: int, provider: PaymentProvider) -> Withdrawal:
    """Pay out once: approved → paying (committed), provider call with a stable key, paying → paid."""
    row = db_session.get(Withdrawal, withdrawal_id)
    if row is None:
        raise NotFound("No such withdrawal.", code="withdrawal_not_found")
    started_here = row.state == "approved"
    if started_here:
        _transition(db_session, withdrawal_id, "approved", "paying", paying_since=utcnow())
        db_session.commit()
    # A redelivery skips a row another worker is paying right now (it holds this lock through the provider
    # call), so only a 'paying' row nobody holds counts as stuck and the stuck threshold can be seconds.
    # The call that moved it to 'paying' waits for the lock instead: a loser of the transition race may hold
    # the row for an instant, and skipping then would leave the payout to the sweep.
    row = db_session.scalar(select(Withdrawal).where(Withdrawal.id == withdrawal_id)
                            .with_for_update(skip_locked=not started_here).execution_options(populate_existing=True))
    if row is None:
        db_session.rollback()
        return db_session.get(Withdrawal, withdrawal_id)
    if row.state != "paying":
        db_session.rollback()
        return row
    result = provider.payout(idempotency_key=f"withdrawal-{row.id}", payee_id=row.worker_id, amount_fen=row.amount_fen)
    ledger._move(db_session, kind="withdrawal_paid", cause=("withdrawal", row.id),
                 src=ledger.account(db_session, row.worker_id, "worker_withdrawing"),
                 dst=ledger.account(db_session, None, "external"), amount=row.amount_fen)
    row.state, row.paid_at, row.provider_ref = "paid", utcnow(), result.reference
    db_session.commit()
    return row


def payouts_due(*, db_session: Session) -> list[int]:
    """Approved withdrawals, and ones stuck in 'paying' (a worker died mid-payout)."""
    stuck = utcnow() - timedelta(seconds=get_ledger_settings().payout_stuck_after_s)
    return list(db_session.scalars(select(Withdrawal.id).where(
        (Withdrawal.state == "approved") | ((Withdrawal.state == "paying") & (Withdrawal.paying_since < stuck)))))


def list_for_worker(*, db_session: Session, worker: User) -> list[Withdrawal]:
    """The worker's withdrawals, newest first."""
    return list(db_session.scalars(select(Withdrawal).where(Withdrawal.worker_id == worker.id)
                                   .order_by(Withdrawal.id.desc())))


@ledger.register_reconciler
def reconcile_withdrawing(db_session: Session) -> list[str]:
    """Each worker's 'withdrawing' balance equals the withdrawals still in flight (not yet paid or rejected)."""
    in_flight = (select(Withdrawal.worker_id, func.sum(Withdrawal.amount_fen).label("fen"))
                 .where(Withdrawal.state.in_(("pending_review", "approved", "paying")))
                 .group_by(Withdrawal.worker_id).subquery())
    rows = db_session.execute(
        select(LedgerAccount.owner_id, LedgerAccount.balance_fen, func.coalesce(in_flight.c.fen, 0))
        .outerjoin(in_flight, in_flight.c.worker_id == LedgerAccount.owner_id)
        .where(LedgerAccount.kind == "worker_withdrawing",
               LedgerAccount.balance_fen != func.coalesce(in_flight.c.fen, 0))).all()
    return [f"worker {w}: withdrawing balance {b} != withdrawals in flight {f}" for w, b, f in rows]
