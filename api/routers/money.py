"""Wallets, deposits, withdrawals, statements and the platform finance report."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import CurrentUser, DbSession, Id, Merchant, Ops, StatementReadDb, Worker
from api.idempotent import IdempotentRun
from ledger import service as ledger
from ledger import withdrawals
from ledger.provider import get_provider
from ledger.schemas import DepositCreate, DepositRead, WalletRead, WithdrawalCreate, WithdrawalRead, WithdrawalReview
from tasks import claims, credit
from tasks import statement as task_statement

router = APIRouter(prefix="/v1", tags=["money"])


@router.get("/me/wallet", response_model=WalletRead)
def wallet(user: CurrentUser, db_session: DbSession):
    """The caller's balances (a worker also sees credit and its formula)."""
    out = WalletRead(balances_fen=ledger.balances(db_session, user.id))
    if user.role == "worker":
        out.credit_score, out.credit_formula = claims.credit_of(db_session, user.id), credit.FORMULA
    return out


@router.post("/me/deposits", status_code=201, response_model=DepositRead)
def deposit(body: DepositCreate, merchant: Merchant, idem: IdempotentRun):
    """Add money (or the security deposit) through the payment provider."""
    def run(db):
        txn = ledger.deposit(db_session=db, merchant_id=merchant.id, amount_fen=body.amount_fen,
                             provider=get_provider(db), idempotency_key=idem.key,
                             security=body.purpose == "security_deposit")
        return DepositRead(transaction_id=txn.id, amount_fen=body.amount_fen, purpose=body.purpose,
                           balances_fen=ledger.balances(db, merchant.id))

    return idem.run(merchant.id, run, status_code=201)


@router.post("/me/withdrawals", status_code=201, response_model=WithdrawalRead)
def withdraw(body: WithdrawalCreate, worker: Worker, idem: IdempotentRun):
    """Request a payout of earnings."""
    return idem.run(worker.id, lambda db: WithdrawalRead.model_validate(
        withdrawals.request(db_session=db, worker=worker, amount_fen=body.amount_fen), from_attributes=True),
        status_code=201)


@router.get("/me/withdrawals", response_model=list[WithdrawalRead])
def my_withdrawals(worker: Worker, db_session: DbSession):
    """The worker's withdrawals."""
    return [WithdrawalRead.model_validate(w, from_attributes=True)
            for w in withdrawals.list_for_worker(db_session=db_session, worker=worker)]


@router.post("/withdrawals/{withdrawal_id}/review", response_model=WithdrawalRead)
def review_withdrawal(withdrawal_id: Id, body: WithdrawalReview, ops: Ops, idem: IdempotentRun):
    """Ops approve or reject a withdrawal above the review threshold."""
    return idem.run(ops.id, lambda db: WithdrawalRead.model_validate(withdrawals.review(
        db_session=db, ops=ops, withdrawal_id=withdrawal_id, approve=body.decision == "approve",
        reason=body.reason), from_attributes=True))


@router.get("/me/statement.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}})
def statement(merchant: Merchant, db_session: StatementReadDb, lang: Literal["zh", "en"] = "zh") -> Response:
    """Every posting on the merchant's accounts as CSV (UTF-8 with BOM, Asia/Shanghai time, yuan and fen)."""
    text = task_statement.statement_csv(db_session, merchant.id, lang)
    return Response(text.encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="statement.csv"'})


@router.get("/ops/finance")
def finance(ops: Ops, db_session: DbSession, period: Literal["day", "week", "month"] = "day") -> list[dict]:
    """Platform revenue by day, week or month."""
    return ledger.finance_report(db_session, period)
