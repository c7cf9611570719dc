"""Payment providers. Only a local sandbox exists here: it moves NO real money.

A real provider (WeChat Pay, Alipay) implements the same two calls; both must be idempotent per key,
which is what makes a retried payout a single payment, and refuse a key reused with other terms
(ledger.errors.ProviderKeyReused).
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ledger.errors import ProviderKeyReused
from ledger.models import ProviderPayment
from ledger.settings import get_ledger_settings


@dataclass(frozen=True)
class ProviderResult:
    """The provider's answer."""

    ok: bool
    reference: str


class PaymentProvider(Protocol):
    """Money in (charge a merchant) and out (pay a worker), idempotent per key."""

    def charge(self, *, idempotency_key: str, payer_id: int, amount_fen: int) -> ProviderResult: ...

    def payout(self, *, idempotency_key: str, payee_id: int, amount_fen: int) -> ProviderResult: ...


class LocalSandboxProvider:
    """Development backend: records each call in ``provider_payment`` and always succeeds. No money moves."""

    def __init__(self, db_session: Session) -> None:
        self.db = db_session

    def _call(self, direction: str, key: str, party_id: int, amount_fen: int) -> ProviderResult:
        ref = f"sandbox-{direction}-{secrets.token_hex(6)}"
        self.db.execute(insert(ProviderPayment).values(
            idempotency_key=key, direction=direction, party_id=party_id, amount_fen=amount_fen,
            result={"ok": True, "reference": ref}).on_conflict_do_nothing(index_elements=["idempotency_key"]))
        stored = self.db.execute(select(ProviderPayment.direction, ProviderPayment.party_id, ProviderPayment.amount_fen,
                                        ProviderPayment.result).where(ProviderPayment.idempotency_key == key)).one()
        # As real providers do: a key names one request; the same key with other terms is refused, never answered
        # with the first request's result (that would report a charge of one amount as a charge of another).
        if (stored.direction, stored.party_id, stored.amount_fen) != (direction, party_id, amount_fen):
            raise ProviderKeyReused(f"This payment key was used for a {stored.direction} of {stored.amount_fen} fen.")
        return ProviderResult(stored.result["ok"], stored.result["reference"])

    def charge(self, *, idempotency_key: str, payer_id: int, amount_fen: int) -> ProviderResult:
        """Pretend to charge the merchant."""
        return self._call("charge", idempotency_key, payer_id, amount_fen)

    def payout(self, *, idempotency_key: str, payee_id: int, amount_fen: int) -> ProviderResult:
        """Pretend to pay the worker."""
        return self._call("payout", idempotency_key, payee_id, amount_fen)


def get_provider(db_session: Session) -> PaymentProvider:
    """The configured provider."""
    name = get_ledger_settings().provider
    if name == "local_sandbox":
        return LocalSandboxProvider(db_session)
    raise RuntimeError(f"Unknown payment provider {name!r}")
