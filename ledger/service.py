"""Postings, balances and the money movements of tasks. Helpers flush; the caller's transaction commits,
so money moves atomically with the state change that causes it."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache

from sqlalchemy import and_, bindparam, func, or_, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core.errors import InvalidInput
from ledger.errors import (
    AlreadyPosted,
    InsufficientFunds,
    SecurityDepositRequired,
    UnbalancedTransaction,
)
from ledger.models import LedgerAccount, LedgerTransaction, Posting
from ledger.provider import PaymentProvider
from ledger.settings import get_ledger_settings

Leg = tuple[int, int]  # (account id, signed amount in fen)


def account(db_session: Session, owner_id: int | None, kind: str) -> int:
    """The id of an owner's account of ``kind`` (platform accounts: owner None), created on first use."""
    where = (LedgerAccount.owner_id.is_(None) if owner_id is None else LedgerAccount.owner_id == owner_id)
    found = db_session.scalar(select(LedgerAccount.id).where(where, LedgerAccount.kind == kind))
    if found is not None:
        return found
    stmt = insert(LedgerAccount).values(owner_id=owner_id, kind=kind, balance_fen=0)
    stmt = (stmt.on_conflict_do_nothing(index_elements=["kind"], index_where=text("owner_id IS NULL"))
            if owner_id is None else stmt.on_conflict_do_nothing(index_elements=["owner_id", "kind"]))
    db_session.execute(stmt)
    return db_session.scalar(select(LedgerAccount.id).where(where, LedgerAccount.kind == kind))


def lock_accounts(db_session: Session, account_ids) -> dict[int, LedgerAccount]:
    """Hold accounts' row locks until the transaction ends, taken in id order so concurrent transfers over the same
    accounts cannot deadlock (guards that read then write money queue on them); the locked accounts by id, their
    balances as the lock found them (populate_existing: an account object the session already holds, from before
    another transaction's transfer committed, is refreshed, never trusted)."""
    return {r.id: r for r in db_session.scalars(select(LedgerAccount).where(LedgerAccount.id.in_(sorted(account_ids)))
                                                .order_by(LedgerAccount.id).with_for_update()
                                                .execution_options(populate_existing=True))}


AccountKey = tuple[int | None, str]  # (owner id, or None for the platform's; kind)


@lru_cache(maxsize=32)
def _accounts_locked(keys: tuple[tuple[bool, str], ...]):
    """``lock_accounts_of``'s statement for accounts of these (platform?, kind) shapes: owners bound (o0, o1, ...),
    kinds are code's own names; rows locked in id order, refreshed (as ``lock_accounts``)."""
    return (select(LedgerAccount)
            .where(or_(*(and_(LedgerAccount.owner_id.is_(None) if platform
                              else LedgerAccount.owner_id == bindparam(f"o{i}"), LedgerAccount.kind == kind)
                         for i, (platform, kind) in enumerate(keys))))
            .order_by(LedgerAccount.id).with_for_update().execution_options(populate_existing=True))


def lock_accounts_of(db_session: Session, keys: list[AccountKey]) -> dict[AccountKey, LedgerAccount]:
    """``lock_accounts`` for accounts named by (owner, kind), found and locked in one statement (in id order, like
    every transfer); an account not made yet is made first (``account``), then all are locked."""
    stmt = _accounts_locked(tuple((owner is None, kind) for owner, kind in keys))
    params = {f"o{i}": owner for i, (owner, _) in enumerate(keys) if owner is not None}
    rows = {(r.owner_id, r.kind): r for r in db_session.scalars(stmt, params)}
    if len(rows) < len(set(keys)):  # first use of some account: made, then the same lock over all of them
        for owner, kind in keys:
            if (owner, kind) not in rows:
                account(db_session, owner, kind)
        rows = {(r.owner_id, r.kind): r for r in db_session.scalars(stmt, params)}
    return rows


def _require_balanced(legs: list[Leg]) -> None:
    if not legs or sum(a for _, a in legs) != 0 or any(not isinstance(a, int) or a == 0 for _, a in legs):
        raise UnbalancedTransaction(f"Legs {legs} do not balance.")


def _require_covered(acc: LedgerAccount, amount: int) -> None:
    """Only the outside world's account may go below zero."""
    if acc.kind != "external" and acc.balance_fen + amount < 0:
        raise InsufficientFunds(f"{acc.kind} holds {acc.balance_fen} fen; {-amount} fen needed.",
                                balance_fen=acc.balance_fen, needed_fen=-amount)


def posted(db_session: Session, kind: str, cause: tuple[str, int]) -> LedgerTransaction | None:
    """The transaction of ``kind`` already recorded for ``cause`` (each is recorded once), if any."""
    return db_session.scalar(_POSTED, {"kind": kind, "cause_type": cause[0], "cause_id": cause[1]})


_POSTED = select(LedgerTransaction).where(LedgerTransaction.kind == bindparam("kind"),
                                          LedgerTransaction.cause_type == bindparam("cause_type"),
                                          LedgerTransaction.cause_id == bindparam("cause_id"))


def transfer(db_session: Session, *, kind: str, cause_type: str, cause_id: int, legs: list[Leg],
             memo: str = "", locked: dict[int, LedgerAccount] | None = None) -> LedgerTransaction:
    """The one place postings are written: balanced, never negative, once per (kind, cause). ``locked``: the legs'
    accounts by id, already locked by the caller in this transaction (``lock_accounts_of``)."""
    _require_balanced(legs)
    if posted(db_session, kind, (cause_type, cause_id)) is not None:
        raise AlreadyPosted(f"{kind} for {cause_type} {cause_id} is already recorded.")
    rows = lock_accounts(db_session, {a for a, _ in legs}) if locked is None else locked
    for acc_id, amount in legs:
        _require_covered(rows[acc_id], amount)
    txn = LedgerTransaction(kind=kind, cause_type=cause_type, cause_id=cause_id, memo=memo)
    db_session.add(txn)
    db_session.flush()
    for acc_id, amount in legs:
        rows[acc_id].balance_fen += amount
        db_session.add(Posting(transaction_id=txn.id, account_id=acc_id, amount_fen=amount,
                               balance_after_fen=rows[acc_id].balance_fen))
    db_session.flush()
    return txn


def transfer_many(db_session: Session, *, kind: str, cause_type: str, entries: list[tuple[int, list[Leg]]],
                  memo: str = "") -> int:
    """``transfer`` for many causes at once (bulk loads such as the demo's history): the same rules (balanced,
    never negative, once per cause), checked in order, written as multi-row INSERTs; returns how many."""
    if not entries:
        return 0
    for _, legs in entries:
        _require_balanced(legs)
    causes = [c for c, _ in entries]
    if len(set(causes)) != len(causes) or db_session.scalar(select(func.count()).where(
            LedgerTransaction.kind == kind, LedgerTransaction.cause_type == cause_type,
            LedgerTransaction.cause_id.in_(causes))):
        raise AlreadyPosted(f"{kind} for some {cause_type} is already recorded.")
    rows = lock_accounts(db_session, {a for _, legs in entries for a, _ in legs})
    txn_ids = list(db_session.scalars(text("SELECT nextval(pg_get_serial_sequence('ledger_transaction', 'id')) "
                                           "FROM generate_series(1, :n)"), {"n": len(entries)}))
    postings = []
    for txn_id, (_, legs) in zip(txn_ids, entries):
        for acc_id, amount in legs:
            acc = rows[acc_id]
            _require_covered(acc, amount)
            acc.balance_fen += amount
            postings.append({"transaction_id": txn_id, "account_id": acc_id, "amount_fen": amount,
                             "balance_after_fen": acc.balance_fen})
    db_session.execute(insert(LedgerTransaction), [{"id": t, "kind": kind, "cause_type": cause_type, "cause_id": c,
                                                    "memo": memo} for t, c in zip(txn_ids, causes)])
    for k in range(0, len(postings), 5000):
        db_session.execute(insert(Posting), postings[k:k + 5000])
    db_session.flush()  # the accounts' new balances
    return len(entries)


def _move(db_session: Session, *, kind: str, cause: tuple[str, int], src: int, dst: int, amount: int,
          memo: str = "") -> LedgerTransaction:
    return transfer(db_session, kind=kind, cause_type=cause[0], cause_id=cause[1],
                    legs=[(src, -amount), (dst, amount)], memo=memo)


def commission_for(reward_fen: int, rate_bp: int | None = None) -> int:
    """Commission in fen, rounded half up (integer arithmetic, no floats)."""
    bp = get_ledger_settings().commission_bp if rate_bp is None else rate_bp
    return (reward_fen * bp + 5_000) // 10_000


def escrow_for_task(reward_fen: int, slots: int, rate_bp: int | None = None) -> int:
    """What publishing a task holds: slots × (reward + commission)."""
    return slots * (reward_fen + commission_for(reward_fen, rate_bp))


def deposit_provider_key(merchant_id: int, request_key: str | None, cause_id: int) -> str:
    """The key the provider dedupes a deposit's charge by: from the caller's Idempotency-Key, so a retried request
    is one charge; without one, from the deposit's own cause id (a request without a key is a new deposit)."""
    if request_key and len(request_key) > 64:  # the provider's key holds 100 characters; a request's up to 200
        request_key = "sha256-" + hashlib.sha256(request_key.encode()).hexdigest()
    return f"deposit-{merchant_id}-{request_key}" if request_key else f"deposit-{merchant_id}-cause-{cause_id}"


def deposit(*, db_session: Session, merchant_id: int, amount_fen: int, provider: PaymentProvider,
            idempotency_key: str | None, security: bool = False) -> LedgerTransaction:
    """Charge the merchant through the provider and credit available (or the security deposit). Commits.

    ``idempotency_key``: the request's key (see ``deposit_provider_key``), or None when it came without one.

    The credit is recorded once per provider charge (its cause is the charge's reference), not once per request:
    a request retried after its idempotency record expired reaches the provider with the same key, gets the same
    charge back, and returns the deposit already recorded for it instead of crediting the money a second time (a
    key reused with another amount is refused by the provider: ProviderKeyReused, 409)."""
    cause_id = int(db_session.scalar(text("SELECT nextval('ledger_cause_seq')")))
    result = provider.charge(idempotency_key=deposit_provider_key(merchant_id, idempotency_key, cause_id),
                             payer_id=merchant_id, amount_fen=amount_fen)
    cause = ("provider_charge", charge_cause_id(result.reference))
    done = posted(db_session, "deposit", cause)
    if done is not None:
        return done
    dst = account(db_session, merchant_id, "merchant_deposit" if security else "merchant_available")
    txn = _move(db_session, kind="deposit", cause=cause, src=account(db_session, None, "external"),
                dst=dst, amount=amount_fen, memo=f"provider {result.reference}")
    db_session.commit()
    return txn


def charge_cause_id(reference: str) -> int:
    """A provider charge's reference as a ledger cause id (63 bits of its SHA-256: references are unique)."""
    return int.from_bytes(hashlib.sha256(reference.encode()).digest()[:8], "big") >> 1


def require_security_deposit(db_session: Session, merchant_id: int) -> None:
    """Publishing needs the security deposit in place: read under its row lock, held to the end of the publishing
    transaction, so a forfeit committing meanwhile cannot leave a task published on a deposit no longer there.
    The merchant's available and escrow accounts are locked with it, in the one id order every transfer uses
    (publishing then holds escrow from them)."""
    need = get_ledger_settings().security_deposit_fen
    kinds = ("merchant_deposit", "merchant_available", "merchant_escrow")
    locked = lock_accounts_of(db_session, [(merchant_id, kind) for kind in kinds])
    have = locked[merchant_id, "merchant_deposit"].balance_fen
    if have < need:
        raise SecurityDepositRequired(f"Publishing needs a security deposit of {need} fen; you have {have} fen.",
                                      needed_fen=need, balance_fen=have)


def hold_escrow(db_session: Session, *, merchant_id: int, cause: tuple[str, int], amount_fen: int) -> None:
    """Move the task's budget from the merchant's available balance to escrow."""
    _move(db_session, kind="escrow_hold", cause=cause, src=account(db_session, merchant_id, "merchant_available"),
          dst=account(db_session, merchant_id, "merchant_escrow"), amount=amount_fen)


def release_escrow(db_session: Session, *, merchant_id: int, cause: tuple[str, int], amount_fen: int) -> None:
    """Return unused escrow to the merchant's available balance."""
    if amount_fen > 0:
        _move(db_session, kind="escrow_release", cause=cause, src=account(db_session, merchant_id, "merchant_escrow"),
              dst=account(db_session, merchant_id, "merchant_available"), amount=amount_fen)


def _payout_legs(acc, merchant_id: int, worker_id: int, reward_fen: int, commission_fen: int) -> list[Leg]:
    """A claim's payout from escrow: reward to the worker, commission (if any) to the platform; ``acc(owner, kind)``
    names the accounts."""
    legs = [(acc(merchant_id, "merchant_escrow"), -(reward_fen + commission_fen)),
            (acc(worker_id, "worker_available"), reward_fen)]
    if commission_fen:
        legs.append((acc(None, "platform_revenue"), commission_fen))
    return legs


def pay_claim(db_session: Session, *, merchant_id: int, worker_id: int, claim_id: int, reward_fen: int,
              commission_fen: int) -> LedgerTransaction:
    """Pay an accepted claim from escrow: reward to the worker, commission to the platform. Once per claim. The
    three accounts are found and locked in one statement (they were four: one to find each, one to lock)."""
    keys = [(merchant_id, "merchant_escrow"), (worker_id, "worker_available")]
    if commission_fen:
        keys.append((None, "platform_revenue"))
    rows = lock_accounts_of(db_session, keys)
    legs = _payout_legs(lambda owner, kind: rows[owner, kind].id, merchant_id, worker_id, reward_fen, commission_fen)
    return transfer(db_session, kind="claim_payout", cause_type="claim", cause_id=claim_id, legs=legs,
                    locked={r.id: r for r in rows.values()})


def pay_claims(db_session: Session, payouts: list[tuple[int, int, int, int, int]]) -> int:
    """``pay_claim`` for many (claim id, merchant id, worker id, reward fen, commission fen) at once."""
    entries, known = [], {}

    def acc(owner_id: int | None, kind: str) -> int:
        if (owner_id, kind) not in known:
            known[owner_id, kind] = account(db_session, owner_id, kind)
        return known[owner_id, kind]

    for claim_id, merchant_id, worker_id, reward_fen, commission_fen in payouts:
        entries.append((claim_id, _payout_legs(acc, merchant_id, worker_id, reward_fen, commission_fen)))
    return transfer_many(db_session, kind="claim_payout", cause_type="claim", entries=entries)


def forfeit_security_deposit(db_session: Session, *, merchant_id: int, amount_fen: int, memo: str) -> None:
    """Ops decision: the merchant's security deposit goes to the platform; the decision is the memo."""
    cause_id = int(db_session.scalar(text("SELECT nextval('ledger_cause_seq')")))
    _move(db_session, kind="deposit_forfeit", cause=("ops_decision", cause_id), memo=memo,
          src=account(db_session, merchant_id, "merchant_deposit"), dst=account(db_session, None, "platform_revenue"),
          amount=amount_fen)


def balances(db_session: Session, owner_id: int) -> dict[str, int]:
    """An owner's balances by account kind (fen)."""
    rows = db_session.execute(select(LedgerAccount.kind, LedgerAccount.balance_fen)
                              .where(LedgerAccount.owner_id == owner_id)).all()
    return {k: v for k, v in rows}


def statement(db_session: Session, owner_id: int, since: datetime | None = None,
              until: datetime | None = None) -> list[dict]:
    """Every posting on the owner's accounts, oldest first, with the balance after it."""
    stmt = (select(Posting.created_at, LedgerAccount.kind, LedgerTransaction.kind, LedgerTransaction.cause_type,
                   LedgerTransaction.cause_id, Posting.amount_fen, Posting.balance_after_fen, LedgerTransaction.memo)
            .join(LedgerAccount, Posting.account_id == LedgerAccount.id)
            .join(LedgerTransaction, Posting.transaction_id == LedgerTransaction.id)
            .where(LedgerAccount.owner_id == owner_id).order_by(Posting.id))
    if since:
        stmt = stmt.where(Posting.created_at >= since)
    if until:
        stmt = stmt.where(Posting.created_at < until)
    keys = ("at", "account", "kind", "cause_type", "cause_id", "amount_fen", "balance_after_fen", "memo")
    return [dict(zip(keys, row)) for row in db_session.execute(stmt)]


def finance_report(db_session: Session, period: str = "day") -> list[dict]:
    """Platform revenue per day, week or month."""
    if period not in ("day", "week", "month"):
        raise InvalidInput("period must be day, week or month.", code="invalid_period")
    bucket = func.date_trunc(period, Posting.created_at)
    rows = db_session.execute(
        select(bucket, func.sum(Posting.amount_fen), func.count())
        .join(LedgerAccount, Posting.account_id == LedgerAccount.id)
        .where(LedgerAccount.kind == "platform_revenue", LedgerAccount.owner_id.is_(None))
        .group_by(bucket).order_by(bucket)).all()
    return [{"period_start": b, "revenue_fen": int(s), "postings": n} for b, s, n in rows]


# Figures kept outside the ledger (a task's escrow, withdrawals in flight) register a reconciler here; each
# returns its differences from the postings. Registration, not import: those packages sit above this one.
RECONCILERS: list[Callable[[Session], list[str]]] = []


def register_reconciler(fn: Callable[[Session], list[str]]) -> Callable[[Session], list[str]]:
    """Have ``check`` also compare a figure kept elsewhere with the postings."""
    if fn not in RECONCILERS:
        RECONCILERS.append(fn)
    return fn


def check(db_session: Session) -> list[str]:
    """Invariant violations on the live ledger and every registered figure kept outside it; empty means clean."""
    problems = []
    for reconcile in RECONCILERS:
        problems += reconcile(db_session)
    unbalanced = db_session.execute(select(Posting.transaction_id, func.sum(Posting.amount_fen))
                                    .group_by(Posting.transaction_id)
                                    .having(func.sum(Posting.amount_fen) != 0)).all()
    problems += [f"transaction {t} postings sum to {s}, not 0" for t, s in unbalanced]
    total = db_session.scalar(select(func.coalesce(func.sum(Posting.amount_fen), 0)))
    if total != 0:
        problems.append(f"all postings sum to {total}, not 0")
    sums = select(Posting.account_id, func.sum(Posting.amount_fen).label("s")).group_by(Posting.account_id).subquery()
    drift = db_session.execute(select(LedgerAccount.id, LedgerAccount.balance_fen, func.coalesce(sums.c.s, 0))
                               .outerjoin(sums, sums.c.account_id == LedgerAccount.id)
                               .where(LedgerAccount.balance_fen != func.coalesce(sums.c.s, 0))).all()
    problems += [f"account {a} balance {b} != postings {s}" for a, b, s in drift]
    negative = db_session.execute(select(LedgerAccount.id, LedgerAccount.balance_fen)
                                  .where(LedgerAccount.kind != "external", LedgerAccount.balance_fen < 0)).all()
    problems += [f"account {a} is negative ({b})" for a, b in negative]
    return problems
