"""Money bodies (all amounts integer fen)."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class WalletRead(BaseModel):
    """Balances by account kind."""

    currency: str = "CNY"
    balances_fen: dict[str, int]
    credit_score: int | None = None
    credit_formula: str | None = None


class DepositCreate(BaseModel):
    """Money in through the payment provider."""

    amount_fen: int = Field(gt=0, le=100_000_000)
    purpose: Literal["available", "security_deposit"] = "available"


class DepositRead(BaseModel):
    """A recorded deposit."""

    transaction_id: int
    amount_fen: int
    purpose: str
    balances_fen: dict[str, int]


class WithdrawalCreate(BaseModel):
    """A worker's withdrawal request."""

    amount_fen: int = Field(gt=0, le=100_000_000)


class WithdrawalRead(BaseModel):
    """A withdrawal and where it stands."""

    id: int
    worker_id: int
    amount_fen: int
    state: str
    reason: str | None
    created_at: datetime
    paid_at: datetime | None


class WithdrawalReview(BaseModel):
    """Ops' decision on a large withdrawal."""

    decision: Literal["approve", "reject"]
    reason: str = Field(default="", max_length=500)
