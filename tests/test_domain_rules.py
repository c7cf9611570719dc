"""Rules that used to sit in routers, tested on the services alone (no HTTP)."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from heatmap import ops as ops_views
from ledger import service as ledger
from ledger.models import ProviderPayment
from ledger.provider import LocalSandboxProvider
from tasks import acceptance, credit
from tasks import service as task_service
from tasks.claims import claim as take_claim
from tasks.errors import ClaimNotFound, CreditTooLow
from tasks.models import Claim
from tasks.schemas import TaskCreate
from tests.fieldwork import STORE, now, task_body
from tests.helpers import make_user


def _open_task(db, merchant, **over):
    """A task open for claims (set directly: publishing and its money are not what these tests are about)."""
    task = task_service.create(db_session=db, merchant=merchant, body=TaskCreate(**task_body(**over)))
    task.state = "published"
    db.flush()
    return task


def _hall(db, worker):
    return [n.task.id for n in task_service.hall(db_session=db, worker=worker, lat=STORE[0], lon=STORE[1],
                                                 crs="wgs84", radius_m=1000)]


def test_premium_gate_is_one_rule_for_the_hall_and_claims(db):
    merchant, worker = make_user(db, "merchant"), make_user(db, "worker")
    task = _open_task(db, merchant, premium=True)
    assert not credit.premium_ok(credit.PREMIUM_CREDIT - 1) and credit.premium_ok(credit.PREMIUM_CREDIT)
    assert credit.required_credit(task) == credit.PREMIUM_CREDIT
    assert task.id not in _hall(db, worker)
    with pytest.raises(CreditTooLow):
        take_claim(db_session=db, worker=worker, task_id=task.id)
    for _ in range(credit.PREMIUM_CREDIT - credit.START):
        credit.adjust(db, worker.id, credit.ON_ACCEPTED, "accepted")
    assert task.id in _hall(db, worker)
    assert take_claim(db_session=db, worker=worker, task_id=task.id).state == "claimed"


def test_who_sees_a_workers_profile(db):
    merchant, stranger, ops = make_user(db, "merchant"), make_user(db, "merchant"), make_user(db, "ops")
    worker, other = make_user(db, "worker"), make_user(db, "worker")
    task = _open_task(db, merchant)
    db.add(Claim(task_id=task.id, worker_id=worker.id, state="claimed", expires_at=now() + timedelta(hours=1)))
    db.flush()

    def sees(viewer):
        return acceptance.may_see_worker(db_session=db, viewer=viewer, worker_id=worker.id)

    assert sees(worker) and sees(ops) and sees(merchant)
    assert not sees(other) and not sees(stranger)
    for viewer in (other, stranger):
        with pytest.raises(ClaimNotFound) as exc:
            acceptance.worker_profile(db_session=db, viewer=viewer, worker_id=worker.id)
        assert exc.value.code == "worker_not_found"
    assert acceptance.worker_profile(db_session=db, viewer=merchant, worker_id=worker.id)["worker_id"] == worker.id


def test_deposit_provider_key_follows_the_request_never_chance(db):
    merchant = make_user(db, "merchant")
    assert ledger.deposit_provider_key(7, "k-1", 99) == ledger.deposit_provider_key(7, "k-1", 100) == "deposit-7-k-1"
    assert ledger.deposit_provider_key(7, None, 99) == "deposit-7-cause-99"
    provider = LocalSandboxProvider(db)
    for key in ("req-1", None, None):
        ledger.deposit(db_session=db, merchant_id=merchant.id, amount_fen=1000, provider=provider, idempotency_key=key)
    keys = db.scalars(select(ProviderPayment.idempotency_key).where(ProviderPayment.party_id == merchant.id)).all()
    assert f"deposit-{merchant.id}-req-1" in keys and len(set(keys)) == 3  # one charge per deposit, none random
    assert sum(k.startswith(f"deposit-{merchant.id}-cause-") for k in keys) == 2


def test_ops_default_windows():
    at = datetime(2026, 3, 4, 10, 25, 7, tzinfo=timezone.utc)
    assert ops_views.heatmap_window(None, None, now=at) == (at - timedelta(days=7), at)
    given = (at - timedelta(days=2), at - timedelta(days=1))
    assert ops_views.heatmap_window(*given, now=at) == given
    hour_end = datetime(2026, 3, 4, 11, tzinfo=timezone.utc)
    assert ops_views.tile_window(3, now=at) == (hour_end - timedelta(days=3), hour_end)
    assert ops_views.stats_window(None, None, now=at) == (at + timedelta(hours=1) - timedelta(days=30),
                                                          at + timedelta(hours=1))
    assert ops_views.stats_window(given[0], None, now=at) == (given[0], at + timedelta(hours=1))
