"""The ledger on its own: balance rules, exactly-once postings, withdrawals, invariants under random operations."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select, update

from accounts.models import User
from core.db import new_session
from core.errors import FieldproofError
from ledger import service as ledger
from ledger import withdrawals
from ledger.models import LedgerAccount, LedgerTransaction, Posting, ProviderPayment, Withdrawal
from ledger.provider import LocalSandboxProvider
from tests.helpers import make_user, unique


def _fund(db, merchant_id, amount):
    ledger.deposit(db_session=db, merchant_id=merchant_id, amount_fen=amount, provider=LocalSandboxProvider(db),
                   idempotency_key=unique("dep"))


def test_unbalanced_and_negative_are_refused(db):
    m = make_user(db, "merchant")
    _fund(db, m.id, 1000)
    a, b = ledger.account(db, m.id, "merchant_available"), ledger.account(db, m.id, "merchant_escrow")
    with pytest.raises(FieldproofError) as exc:
        ledger.transfer(db, kind="x", cause_type="t", cause_id=1, legs=[(a, -10), (b, 9)])
    assert exc.value.code == "unbalanced_transaction"
    with pytest.raises(FieldproofError) as exc:
        ledger.hold_escrow(db, merchant_id=m.id, cause=("t", 2), amount_fen=1001)
    assert exc.value.code == "insufficient_funds"
    assert ledger.balances(db, m.id) == {"merchant_available": 1000, "merchant_escrow": 0}


def test_pay_claim_exactly_once(db):
    m, w = make_user(db, "merchant"), make_user(db, "worker")
    _fund(db, m.id, 10_000)
    ledger.hold_escrow(db, merchant_id=m.id, cause=("t", 1), amount_fen=5000)
    ledger.pay_claim(db, merchant_id=m.id, worker_id=w.id, claim_id=77, reward_fen=1000, commission_fen=50)
    with pytest.raises(FieldproofError) as exc:
        ledger.pay_claim(db, merchant_id=m.id, worker_id=w.id, claim_id=77, reward_fen=1000, commission_fen=50)
    assert exc.value.code == "already_posted"
    assert ledger.balances(db, w.id)["worker_available"] == 1000
    assert ledger.check(db) == []


def test_commission_rounding():
    assert ledger.commission_for(1500) == 75
    assert ledger.commission_for(10, 500) == 1  # 0.5 fen rounds half up
    assert ledger.commission_for(9, 500) == 0
    assert ledger.escrow_for_task(1500, 3) == 3 * 1575


def _verified_worker(db, available):
    w = make_user(db, "worker")
    w.real_name_verified = True
    db.flush()
    m = make_user(db, "merchant")
    _fund(db, m.id, available * 2)
    ledger.hold_escrow(db, merchant_id=m.id, cause=("t", m.id), amount_fen=available * 2)
    ledger.pay_claim(db, merchant_id=m.id, worker_id=w.id, claim_id=w.id, reward_fen=available, commission_fen=0)
    return w


def test_withdrawal_rules(db):
    w = _verified_worker(db, 300_000)
    unverified = make_user(db, "worker")
    with pytest.raises(FieldproofError) as exc:
        withdrawals.request(db_session=db, worker=unverified, amount_fen=500)
    assert exc.value.code == "real_name_required"
    with pytest.raises(FieldproofError) as exc:
        withdrawals.request(db_session=db, worker=w, amount_fen=99)
    assert exc.value.code == "withdrawal_below_minimum"
    small = withdrawals.request(db_session=db, worker=w, amount_fen=50_000)
    assert small.state == "approved"
    big = withdrawals.request(db_session=db, worker=w, amount_fen=200_000)
    assert big.state == "pending_review"
    assert ledger.balances(db, w.id)["worker_withdrawing"] == 250_000


def test_daily_limit(db):
    w = _verified_worker(db, 900_000)
    for _ in range(5):
        withdrawals.request(db_session=db, worker=w, amount_fen=100_000)
    with pytest.raises(FieldproofError) as exc:
        withdrawals.request(db_session=db, worker=w, amount_fen=100)
    assert exc.value.code == "daily_withdrawal_limit"


def test_rejected_withdrawal_returns_money(db):
    w = _verified_worker(db, 300_000)
    ops = make_user(db, "ops")
    big = withdrawals.request(db_session=db, worker=w, amount_fen=200_000)
    withdrawals.review(db_session=db, ops=ops, withdrawal_id=big.id, approve=False, reason="suspicious")
    assert ledger.balances(db, w.id)["worker_available"] == 300_000
    assert ledger.check(db) == []


def test_payout_redelivered_after_crash_pays_once(db):
    w = _verified_worker(db, 5000)
    row = withdrawals.request(db_session=db, worker=w, amount_fen=5000)
    # The first delivery moved it to 'paying' and died before finishing (as a killed Celery worker would).
    db.execute(update(Withdrawal).where(Withdrawal.id == row.id).values(state="paying",
                                                                       paying_since=ledger_now() - timedelta(hours=1)))
    db.flush()
    assert row.id in withdrawals.payouts_due(db_session=db)
    provider = LocalSandboxProvider(db)
    assert withdrawals.execute_payout(db_session=db, withdrawal_id=row.id, provider=provider).state == "paid"
    assert withdrawals.execute_payout(db_session=db, withdrawal_id=row.id, provider=provider).state == "paid"
    payments = db.scalar(select(func.count()).select_from(ProviderPayment).where(
        ProviderPayment.idempotency_key == f"withdrawal-{row.id}"))
    assert payments == 1
    assert ledger.balances(db, w.id)["worker_withdrawing"] == 0
    assert ledger.check(db) == []


def ledger_now():
    from core.models import utcnow

    return utcnow()


def test_concurrent_payouts_pay_once():
    """Two real sessions race to execute the same payout on committed data."""
    s = new_session()
    w = User(username=unique("pay_w"), password_hash="x", role="worker", display_name="w", real_name_verified=True)
    m = User(username=unique("pay_m"), password_hash="x", role="merchant", display_name="m")
    s.add_all([w, m])
    s.commit()
    _fund(s, m.id, 4000)
    ledger.hold_escrow(s, merchant_id=m.id, cause=("t", m.id), amount_fen=4000)
    ledger.pay_claim(s, merchant_id=m.id, worker_id=w.id, claim_id=m.id, reward_fen=4000, commission_fen=0)
    s.commit()
    wid = withdrawals.request(db_session=s, worker=s.get(User, w.id), amount_fen=3000).id
    s.close()
    results = []

    def go():
        sess = new_session()
        try:
            results.append(withdrawals.execute_payout(db_session=sess, withdrawal_id=wid,
                                                      provider=LocalSandboxProvider(sess)).state)
        except FieldproofError as exc:
            results.append(exc.code)
        finally:
            sess.close()

    threads = [threading.Thread(target=go) for _ in range(4)]
    [t.start() for t in threads]
    [t.join(30) for t in threads]
    s = new_session()
    try:
        paid = s.scalar(select(func.count()).select_from(LedgerTransaction).where(
            LedgerTransaction.kind == "withdrawal_paid", LedgerTransaction.cause_id == wid))
        assert paid == 1 and "paid" in results
        assert ledger.balances(s, w.id) == {"worker_available": 1000, "worker_withdrawing": 0}
        assert ledger.check(s) == []
    finally:
        _cleanup(s, [w.id, m.id])


def _cleanup(s, user_ids):
    accts = select(LedgerAccount.id).where(LedgerAccount.owner_id.in_(user_ids))
    txns = select(Posting.transaction_id).where(Posting.account_id.in_(accts))
    txn_ids = list(s.scalars(txns))
    s.execute(delete(Posting).where(Posting.transaction_id.in_(txn_ids)))
    # platform/external legs of these transactions left balances behind: rebuild those from postings
    s.execute(delete(LedgerTransaction).where(LedgerTransaction.id.in_(txn_ids)))
    s.execute(delete(LedgerAccount).where(LedgerAccount.owner_id.in_(user_ids)))
    for acc in s.scalars(select(LedgerAccount).where(LedgerAccount.owner_id.is_(None))):
        acc.balance_fen = s.scalar(select(func.coalesce(func.sum(Posting.amount_fen), 0))
                                   .where(Posting.account_id == acc.id))
    s.execute(delete(Withdrawal).where(Withdrawal.worker_id.in_(user_ids)))
    s.execute(delete(User).where(User.id.in_(user_ids)))
    s.commit()
    s.close()


OPS = st.lists(st.tuples(st.sampled_from(["deposit", "hold", "release", "pay", "withdraw", "payout"]),
                         st.integers(1, 50_000)), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_random_operations_keep_invariants(db, ops):
    m, w = make_user(db, "merchant"), make_user(db, "worker")
    w.real_name_verified = True
    db.commit()
    for i, (op, amount) in enumerate(ops):
        try:
            if op == "deposit":
                _fund(db, m.id, amount)
            elif op == "hold":
                ledger.hold_escrow(db, merchant_id=m.id, cause=("prop", m.id * 1000 + i), amount_fen=amount)
            elif op == "release":
                ledger.release_escrow(db, merchant_id=m.id, cause=("prop", m.id * 1000 + i), amount_fen=amount)
            elif op == "pay":
                ledger.pay_claim(db, merchant_id=m.id, worker_id=w.id, claim_id=m.id * 1000 + i, reward_fen=amount,
                                 commission_fen=ledger.commission_for(amount))
            elif op == "withdraw":
                withdrawals.request(db_session=db, worker=w, amount_fen=amount)
            else:
                for wid in withdrawals.payouts_due(db_session=db):
                    withdrawals.execute_payout(db_session=db, withdrawal_id=wid, provider=LocalSandboxProvider(db))
        except FieldproofError as exc:
            db.rollback()
            assert exc.code in ("insufficient_funds", "withdrawal_below_minimum", "daily_withdrawal_limit")
    assert ledger.check(db) == []
    assert all(v >= 0 for v in ledger.balances(db, m.id).values())
    assert all(v >= 0 for v in ledger.balances(db, w.id).values())


def test_check_reports_corruption_and_cli_exits_1(db, monkeypatch, capsys):
    from contextlib import contextmanager

    from api.cli import build_parser

    m = make_user(db, "merchant")
    _fund(db, m.id, 500)

    @contextmanager
    def scope():
        yield db

    monkeypatch.setattr("core.db.session_scope", scope)
    args = build_parser().parse_args(["ledger", "check"])
    assert args.func(args) == 0
    db.execute(update(LedgerAccount).where(LedgerAccount.owner_id == m.id).values(balance_fen=400))
    db.flush()
    assert any("balance 400 != postings 500" in p for p in ledger.check(db))
    assert args.func(args) == 1


def test_parallel_transfer_many_and_transfer_drawing_on_one_account():
    """N real sessions released at one barrier: half ``transfer_many`` (three causes each), half ``transfer``, all
    drawing on one merchant's escrow that covers only some of them, each also touching a second funded account and
    workers' wallets with the legs listed in different orders. The row locks must serialise them: no overdraft, no
    lost update, every posting balanced, no deadlock."""
    n, unit, funded = 12, 100, 1000  # demand: 6 x 300 + 6 x 100 = 2400 fen against 1000
    s = new_session()
    users = [User(username=unique("par_u"), password_hash="x", role=role, display_name="p")
             for role in ("merchant", "merchant", "worker", "worker", "worker")]
    s.add_all(users)
    s.commit()
    m, m2, workers = users[0], users[1], users[2:]
    for merchant, amount in ((m, funded), (m2, 100 * funded)):
        _fund(s, merchant.id, amount)
        ledger.hold_escrow(s, merchant_id=merchant.id, cause=("t", merchant.id), amount_fen=amount)
    src, other = ledger.account(s, m.id, "merchant_escrow"), ledger.account(s, m2.id, "merchant_escrow")
    wallets = [ledger.account(s, w.id, "worker_available") for w in workers]
    s.commit()
    s.close()
    base = m.id * 1000

    def legs(i: int, j: int) -> list:
        """Draw ``unit`` from src and 1 fen from other into a wallet; the legs' order varies with i and j."""
        lst = [(src, -unit), (other, -1), (wallets[(i + j) % 3], unit + 1)]
        return lst[(i + j) % 3:] + lst[:(i + j) % 3] if i % 2 else list(reversed(lst))

    def call(sess, i: int) -> int:
        """The i-th caller's draw on src, which it posts or refuses whole."""
        if i % 2:
            entries = [(base + 10 * i + j, legs(i, j)) for j in (2, 0, 1)[i % 3:] + (2, 0, 1)[:i % 3]]
            ledger.transfer_many(sess, kind="par_many", cause_type="par", entries=entries)
            return len(entries) * unit
        ledger.transfer(sess, kind="par_one", cause_type="par", cause_id=base + 10 * i, legs=legs(i, 0))
        return unit

    barrier = threading.Barrier(n)
    outcomes: list = [None] * n

    def run(i: int) -> None:
        sess = new_session()
        try:
            sess.execute(select(1))  # connected (and in a transaction) before the barrier
            barrier.wait(timeout=60)
            drawn = call(sess, i)
            sess.commit()
            outcomes[i] = ("ok", drawn)
        except FieldproofError as exc:
            sess.rollback()
            outcomes[i] = (exc.code, 3 * unit if i % 2 else unit)
        except Exception as exc:  # a deadlock or a constraint violation: the test reports it
            sess.rollback()
            barrier.abort()
            outcomes[i] = (repr(exc), None)
        finally:
            sess.close()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    [t.start() for t in threads]
    [t.join(120) for t in threads]
    s = new_session()
    try:
        assert not any(t.is_alive() for t in threads), "a caller never finished (lock wait or deadlock)"
        assert all(o is not None and o[0] in ("ok", "insufficient_funds") for o in outcomes), outcomes
        won = [d for code, d in outcomes if code == "ok"]
        lost = [d for code, d in outcomes if code != "ok"]
        final = s.scalar(select(LedgerAccount.balance_fen).where(LedgerAccount.id == src))
        assert final >= 0 and funded - final == sum(won), (final, outcomes)
        assert won and lost, outcomes  # not all could succeed, and some did
        assert final < min(lost), (final, outcomes)  # each refusal saw less than it needed (balances only fall)
        txns = select(LedgerTransaction.id).where(LedgerTransaction.cause_type == "par",
                                                  LedgerTransaction.cause_id.between(base, base + 10 * n))
        assert s.scalar(select(func.count()).select_from(txns.subquery())) == sum(won) // unit
        assert s.scalar(select(func.count()).select_from(
            select(Posting.transaction_id).where(Posting.transaction_id.in_(txns)).group_by(Posting.transaction_id)
            .having(func.sum(Posting.amount_fen) != 0).subquery())) == 0  # every posting balanced
        # The postings on the drawn account, in the order the locks let them through, chain without a gap:
        # each balance_after is the previous one minus its draw and never below zero (no lost update).
        chain = s.execute(select(Posting.amount_fen, Posting.balance_after_fen).where(Posting.account_id == src)
                          .order_by(Posting.id)).all()
        balance = 0
        for amount, after in chain:
            balance += amount
            assert after == balance >= 0, chain
        assert balance == final
        for acc in [other, *wallets]:
            assert s.scalar(select(func.min(Posting.balance_after_fen)).where(Posting.account_id == acc)) >= 0
        assert ledger.check(s) == []
    finally:
        _cleanup(s, [u.id for u in users])


def test_a_transfer_never_trusts_an_account_the_session_held_from_before_another_commit():
    """Session A holds an account object across a commit (sessions keep objects after commit); session B moves
    money on that account meanwhile; A's next transfer locks the row and must add to the balance B left, not to
    the one A remembered (the lock read refreshes: populate_existing)."""
    a, b = new_session(), new_session()
    try:
        m = User(username=unique("stale_m"), password_hash="x", role="merchant", display_name="m")
        a.add(m)
        a.commit()
        _fund(a, m.id, 1000)
        avail, escrow = ledger.account(a, m.id, "merchant_available"), ledger.account(a, m.id, "merchant_escrow")
        a.commit()
        held = a.get(LedgerAccount, avail)
        assert held.balance_fen == 1000
        ledger.transfer(b, kind="t_b", cause_type="t", cause_id=m.id, legs=[(avail, -300), (escrow, 300)])
        b.commit()
        ledger.transfer(a, kind="t_a", cause_type="t", cause_id=m.id, legs=[(avail, -200), (escrow, 200)])
        a.commit()
        assert held.balance_fen == 500
        b.expire_all()
        assert ledger.balances(b, m.id) == {"merchant_available": 500, "merchant_escrow": 500}
        assert ledger.check(b) == []
    finally:
        a.close(), b.close()


def test_payouts_released_at_one_barrier_never_overdraw_escrow_and_pay_each_claim_once():
    """ledger.pay_claim finds and locks its three accounts in one statement (lock_accounts_of): 24 payouts released
    together (8 claims, each raced three times) from an escrow that covers 5: each paid claim is paid once, 5 are
    paid, the escrow ends at 0 and never below, and the ledger checks clean."""
    s = new_session()
    m = User(username=unique("bar_m"), password_hash="x", role="merchant", display_name="m")
    workers = [User(username=unique("bar_w"), password_hash="x", role="worker", display_name="w") for _ in range(8)]
    s.add_all([m, *workers])
    s.commit()
    _fund(s, m.id, 5 * 1050)
    ledger.hold_escrow(s, merchant_id=m.id, cause=("t", m.id), amount_fen=5 * 1050)
    s.commit()
    ids = [w.id for w in workers]
    s.close()
    barrier, results, lock = threading.Barrier(24), [], threading.Lock()

    def go(i: int) -> None:
        sess = new_session()
        try:
            barrier.wait(timeout=30)
            ledger.pay_claim(sess, merchant_id=m.id, worker_id=ids[i % 8], claim_id=m.id * 100 + i % 8,
                             reward_fen=1000, commission_fen=50)
            sess.commit()
            outcome = "paid"
        except FieldproofError as exc:
            sess.rollback()
            outcome = exc.code
        finally:
            sess.close()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(24)]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    s = new_session()
    try:
        assert len(results) == 24 and results.count("paid") == 5, results
        assert set(results) <= {"paid", "insufficient_funds", "already_posted"}, results
        paid = s.execute(select(LedgerTransaction.cause_id, func.count()).where(
            LedgerTransaction.kind == "claim_payout", LedgerTransaction.cause_id.between(m.id * 100, m.id * 100 + 7))
            .group_by(LedgerTransaction.cause_id)).all()
        assert len(paid) == 5 and all(n == 1 for _, n in paid)
        assert ledger.balances(s, m.id)["merchant_escrow"] == 0
        assert sum(ledger.balances(s, w).get("worker_available", 0) for w in ids) == 5 * 1000
        low = s.scalar(select(func.min(Posting.balance_after_fen)).where(
            Posting.account_id == ledger.account(s, m.id, "merchant_escrow")))
        assert low == 0
        assert ledger.check(s) == []
    finally:
        _cleanup(s, [m.id, *ids])


def test_lock_accounts_of_finds_and_locks_in_one_statement_and_makes_missing_ones(db):
    from sqlalchemy import event

    m, w = make_user(db, "merchant"), make_user(db, "worker")
    keys = [(m.id, "merchant_escrow"), (w.id, "worker_available"), (None, "platform_revenue")]
    first = ledger.lock_accounts_of(db, keys)  # the worker's and merchant's accounts made on first use
    assert set(first) == set(keys) and all(first[k].kind == k[1] and first[k].owner_id == k[0] for k in keys)
    engine, counted = db.get_bind().engine, []

    def count(*_args, **_kw):
        counted.append(1)

    event.listen(engine, "before_cursor_execute", count)
    try:
        again = ledger.lock_accounts_of(db, list(reversed(keys)))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(counted) == 1 and {k: a.id for k, a in again.items()} == {k: a.id for k, a in first.items()}
    assert {k: ledger.account(db, *k) for k in keys} == {k: a.id for k, a in first.items()}
