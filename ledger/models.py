"""Double-entry ledger: accounts, transactions, postings; withdrawals; provider calls."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base, created_at, pk

ACCOUNT_KINDS = ("merchant_available", "merchant_deposit", "merchant_escrow", "worker_available",
                 "worker_withdrawing", "platform_revenue", "external")


class LedgerAccount(Base):
    """One balance of one owner (or of the platform). ``balance_fen`` is kept equal to its postings' sum."""

    __tablename__ = "ledger_account"
    __table_args__ = (
        CheckConstraint("kind IN (" + ", ".join(repr(k) for k in ACCOUNT_KINDS) + ")", name="kind"),
        # Money outside the platform is mirrored by 'external', which goes negative as money comes in.
        CheckConstraint("kind = 'external' OR balance_fen >= 0", name="not_negative"),
        UniqueConstraint("owner_id", "kind", name="uq_ledger_account_owner_kind"),
        Index("uq_ledger_account_platform_kind", "kind", unique=True, postgresql_where=text("owner_id IS NULL")),
    )

    id: Mapped[int] = pk()
    owner_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("app_user.id"))
    kind: Mapped[str] = mapped_column(String(24), nullable=False)
    balance_fen: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")


class LedgerTransaction(Base):
    """A balanced set of postings with its cause; (kind, cause) is unique so nothing is posted twice."""

    __tablename__ = "ledger_transaction"
    __table_args__ = (UniqueConstraint("kind", "cause_type", "cause_id", name="uq_ledger_transaction_cause"),)

    id: Mapped[int] = pk()
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    cause_type: Mapped[str] = mapped_column(String(24), nullable=False)
    cause_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    memo: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    created_at: Mapped[datetime] = created_at()


class Posting(Base):
    """One leg: a signed amount on one account."""

    __tablename__ = "ledger_posting"
    __table_args__ = (CheckConstraint("amount_fen <> 0", name="non_zero"),)

    id: Mapped[int] = pk()
    transaction_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("ledger_transaction.id"), nullable=False,
                                                index=True)
    account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("ledger_account.id"), nullable=False, index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    balance_after_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = created_at()


class Withdrawal(Base):
    """A worker's request to move earnings out, paid exactly once through the provider."""

    __tablename__ = "withdrawal"
    __table_args__ = (
        CheckConstraint("state IN ('pending_review','approved','paying','paid','rejected')", name="state"),
        CheckConstraint("amount_fen > 0", name="positive"),
    )

    id: Mapped[int] = pk()
    worker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("app_user.id"), nullable=False, index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    provider_ref: Mapped[str | None] = mapped_column(String(100))
    reviewed_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("app_user.id"))
    reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = created_at()
    paying_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ProviderPayment(Base):
    """What the local sandbox provider 'did', keyed by idempotency key (no real money moves)."""

    __tablename__ = "provider_payment"

    id: Mapped[int] = pk()
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    direction: Mapped[str] = mapped_column(String(8), nullable=False)
    party_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    amount_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    result: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = created_at()
