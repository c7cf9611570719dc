"""Small helpers shared by API tests (no fixtures with data: each test makes its own)."""
from __future__ import annotations

import itertools
import secrets

from accounts import service as accounts

PASSWORD = "correct horse battery"
_counter = itertools.count(1)
_RUN = secrets.token_hex(3)


def unique(prefix: str) -> str:
    """A username unique within the test session."""
    return f"{prefix}_{next(_counter)}_{_RUN}"


def make_user(db, role: str = "worker", username: str | None = None):
    """Create a user directly through the service."""
    return accounts.create(db_session=db, username=username or unique(role), password=PASSWORD, role=role,
                           self_service=False)


def login(client, username: str, password: str = PASSWORD) -> dict:
    """Authorization headers for a user."""
    resp = client.post("/v1/auth/token", data={"username": username, "password": password})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def auth_for(client, db, role: str = "worker"):
    """A new user of ``role`` and its auth headers."""
    user = make_user(db, role)
    return user, login(client, user.username)
