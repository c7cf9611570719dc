"""A small demo city: known logins for each role and a few published tasks around central Beijing."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from accounts import service as accounts
from accounts.models import User
from core.models import utcnow
from ledger import service as ledger
from ledger.provider import LocalSandboxProvider
from tasks import service as tasks
from tasks.models import Task
from tasks.schemas import TaskCreate

DEMO_PASSWORD = "fieldproof-demo"
DEMO_USERS = [("ops_demo", "ops"), ("merchant_demo", "merchant"), ("worker_demo", "worker")]
# Places as an Amap user would pick them (GCJ-02): name, type, lon, lat, fence radius (m), reward (fen).
DEMO_TASKS = [("前门大街 门店拜访 store visit", "store_visit", 116.404, 39.8977, 120, 1500),
              ("王府井 海报张贴 poster run", "poster", 116.4174, 39.9151, 200, 2000),
              ("三里屯 地推拉新 sign-up drive", "signup_drive", 116.4551, 39.9375, 250, 3000),
              ("西单 货架巡检 shelf audit", "shelf_audit", 116.3806, 39.9135, 100, 1800),
              ("中关村 传单派发 flyer run", "flyer_run", 116.3162, 39.9841, 300, 1200)]


def _users(db_session: Session) -> dict[str, User]:
    out = {}
    for username, role in DEMO_USERS:
        user = db_session.scalar(select(User).where(User.username == username))
        if user is None:
            user = accounts.create(db_session=db_session, username=username, password=DEMO_PASSWORD, role=role,
                                   self_service=False)
        out[username] = user
    worker = out["worker_demo"]
    worker.real_name_verified = True  # so the demo worker can try withdrawals
    db_session.commit()
    return out


def load(*, db_session: Session) -> dict[str, int]:
    """Create demo users and tasks if missing; running it twice is harmless."""
    users = _users(db_session)
    merchant, ops = users["merchant_demo"], users["ops_demo"]
    if not db_session.scalar(select(func.count()).select_from(Task).where(Task.merchant_id == merchant.id)):
        provider = LocalSandboxProvider(db_session)
        ledger.deposit(db_session=db_session, merchant_id=merchant.id, amount_fen=10_000, provider=provider,
                       idempotency_key="demo-security-deposit", security=True)
        ledger.deposit(db_session=db_session, merchant_id=merchant.id, amount_fen=1_000_000, provider=provider,
                       idempotency_key="demo-topup")
        for title, kind, lon, lat, radius, reward in DEMO_TASKS:
            body = TaskCreate(title=title, type=kind, reward_fen=reward, slots=10, starts_at=utcnow() - timedelta(hours=1),
                              ends_at=utcnow() + timedelta(days=30), crs="gcj02",
                              geofence={"center": [lon, lat], "radius_m": radius})
            task = tasks.create(db_session=db_session, merchant=merchant, body=body)
            tasks.publish(db_session=db_session, merchant=merchant, task_id=task.id)
            tasks.review(db_session=db_session, ops=ops, task_id=task.id, decision="approve", reason="demo")
    return {name: u.id for name, u in users.items()}
