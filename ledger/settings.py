"""Money settings (env prefix FIELDPROOF_LEDGER_)."""
from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class LedgerSettings(BaseSettings):
    """Limits and rates, all in fen or basis points."""

    model_config = SettingsConfigDict(env_prefix="FIELDPROOF_LEDGER_", extra="ignore")

    provider: str = "local_sandbox"
    commission_bp: int = 500  # 5 % platform commission on each accepted claim
    security_deposit_fen: int = 10_000  # 100 yuan locked before a merchant may publish
    withdrawal_min_fen: int = 100  # 1 yuan: below this the payout fee exceeds the amount
    withdrawal_daily_limit_fen: int = 500_000  # 5,000 yuan a day per worker (anti-laundering cap)
    withdrawal_review_above_fen: int = 100_000  # ops look at any single withdrawal above 1,000 yuan
    # A payout 'paying' this long and not locked by a live worker is retried (same provider key, pays once).
    payout_stuck_after_s: int = 30


@lru_cache
def get_ledger_settings() -> LedgerSettings:
    """The process-wide ledger settings."""
    return LedgerSettings()
