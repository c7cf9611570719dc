"""Auto-confirm started twice at the same moment (two beat hosts) pays each claim once."""
from __future__ import annotations

import threading
from datetime import timedelta

from geoalchemy2.shape import from_shape
from shapely.geometry import Point
from sqlalchemy import delete, func, select

from accounts.models import User
from core.config import get_settings
from core.db import new_session
from core.models import utcnow
from ledger import service as ledger
from ledger.models import LedgerAccount, LedgerTransaction, Posting, ProviderPayment
from ledger.provider import LocalSandboxProvider
from tasks import acceptance
from tasks.models import Claim, ClaimEvent, SpotCheck, Task, TaskEvent, CreditEvent
from tests.fieldwork import STORE
from tests.helpers import unique

N_CLAIMS = 6


def _committed_scenario() -> tuple[int, list[int], list[int]]:
    s = new_session()
    m = User(username=unique("ac_m"), password_hash="x", role="merchant", display_name="m")
    workers = [User(username=unique("ac_w"), password_hash="x", role="worker", display_name="w")
               for _ in range(N_CLAIMS)]
    s.add_all([m, *workers])
    s.commit()
    ledger.deposit(db_session=s, merchant_id=m.id, amount_fen=100_000, provider=LocalSandboxProvider(s),
                   idempotency_key=unique("ac_dep"))
    pt = Point(STORE[1], STORE[0])
    task = Task(merchant_id=m.id, title="auto", type="poster", state="published", reward_fen=1000, slots=N_CLAIMS,
                slots_taken=N_CLAIMS, starts_at=utcnow() - timedelta(days=2), ends_at=utcnow() + timedelta(days=1),
                fence=from_shape(pt.buffer(0.001), srid=4326), center=from_shape(pt, srid=4326), fence_kind="polygon",
                area_m2=1e4, hard_fence=True, photos_min=0, video_required=False, min_credit=0, commission_bp=500)
    s.add(task)
    s.flush()
    event = TaskEvent(task_id=task.id, from_state=None, to_state="published", actor_id=m.id, reason="test")
    s.add(event)
    s.flush()
    ledger.hold_escrow(s, merchant_id=m.id, cause=("task_event", event.id), amount_fen=N_CLAIMS * 1050)
    task.escrow_fen = N_CLAIMS * 1050
    claims = [Claim(task_id=task.id, worker_id=w.id, state="submitted", expires_at=utcnow(), risk_score=0, flags=[],
                    submitted_at=utcnow() - timedelta(hours=30)) for w in workers]
    s.add_all(claims)
    s.commit()
    out = task.id, [c.id for c in claims], [m.id] + [w.id for w in workers]
    s.close()
    return out


def _cleanup(task_id: int, claim_ids: list[int], user_ids: list[int]) -> None:
    s = new_session()
    accts = list(s.scalars(select(LedgerAccount.id).where(LedgerAccount.owner_id.in_(user_ids))))
    txns = list(s.scalars(select(Posting.transaction_id).where(Posting.account_id.in_(accts))))
    s.execute(delete(Posting).where(Posting.transaction_id.in_(txns)))
    s.execute(delete(LedgerTransaction).where(LedgerTransaction.id.in_(txns)))
    s.execute(delete(LedgerAccount).where(LedgerAccount.id.in_(accts)))
    for acc in s.scalars(select(LedgerAccount).where(LedgerAccount.owner_id.is_(None))):
        acc.balance_fen = s.scalar(select(func.coalesce(func.sum(Posting.amount_fen), 0)).where(Posting.account_id == acc.id))
    s.execute(delete(ProviderPayment).where(ProviderPayment.party_id.in_(user_ids)))
    s.execute(delete(SpotCheck).where(SpotCheck.claim_id.in_(claim_ids)))
    s.execute(delete(CreditEvent).where(CreditEvent.worker_id.in_(user_ids)))
    s.execute(delete(ClaimEvent).where(ClaimEvent.claim_id.in_(claim_ids)))
    s.execute(delete(Claim).where(Claim.id.in_(claim_ids)))
    s.execute(delete(TaskEvent).where(TaskEvent.task_id == task_id))
    s.execute(delete(Task).where(Task.id == task_id))
    s.execute(delete(User).where(User.id.in_(user_ids)))
    s.commit()
    s.close()


def test_auto_confirm_twice_concurrently_pays_once(monkeypatch):
    monkeypatch.setattr(get_settings(), "spot_check_base_rate", 0.0)
    task_id, claim_ids, user_ids = _committed_scenario()
    barrier = threading.Barrier(2)
    counts = []

    def run():
        s = new_session()
        try:
            barrier.wait(10)
            counts.append(acceptance.auto_confirm_due(db_session=s))
        finally:
            s.close()

    try:
        threads = [threading.Thread(target=run) for _ in range(2)]
        [t.start() for t in threads]
        [t.join(60) for t in threads]
        s = new_session()
        paid = s.scalar(select(func.count()).select_from(LedgerTransaction).where(
            LedgerTransaction.kind == "claim_payout", LedgerTransaction.cause_id.in_(claim_ids)))
        states = set(s.scalars(select(Claim.state).where(Claim.id.in_(claim_ids))))
        problems = ledger.check(s)
        s.close()
        assert paid == N_CLAIMS and states == {"paid"} and problems == []
        assert sorted(counts)[-1] >= 1 and sum(counts) == N_CLAIMS  # each claim confirmed by exactly one run
    finally:
        _cleanup(task_id, claim_ids, user_ids)
