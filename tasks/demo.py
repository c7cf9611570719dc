"""A small demo city: known logins for each role (tasks are added as those features land)."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts import service as accounts
from accounts.models import User

DEMO_PASSWORD = "fieldproof-demo"
DEMO_USERS = [("ops_demo", "ops"), ("merchant_demo", "merchant"), ("worker_demo", "worker")]


def load(*, db_session: Session) -> dict[str, int]:
    """Create the demo users if missing; running it twice is harmless."""
    ids = {}
    for username, role in DEMO_USERS:
        user = db_session.scalar(select(User).where(User.username == username))
        if user is None:
            user = accounts.create(db_session=db_session, username=username, password=DEMO_PASSWORD, role=role,
                                   self_service=False)
        ids[username] = user.id
    return ids
