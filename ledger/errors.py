"""Ledger errors."""
from core.errors import Conflict, Forbidden, InvalidInput


class UnbalancedTransaction(InvalidInput):
    code = "unbalanced_transaction"
    detail = "Postings must sum to zero."


class InsufficientFunds(Conflict):
    code = "insufficient_funds"
    detail = "The balance is too low for this."


class AlreadyPosted(Conflict):
    code = "already_posted"
    detail = "This money movement was already recorded."


class ProviderKeyReused(Conflict):
    code = "payment_key_reused"
    detail = "This payment request key was already used for a different payment."


class WithdrawalTooSmall(InvalidInput):
    code = "withdrawal_below_minimum"


class DailyLimitExceeded(Conflict):
    code = "daily_withdrawal_limit"


class RealNameRequired(Forbidden):
    code = "real_name_required"
    detail = "Withdrawals need a verified real name."


class SecurityDepositRequired(Conflict):
    code = "security_deposit_required"
