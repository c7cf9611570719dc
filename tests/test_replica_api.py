"""Which endpoints read the replica: a real API server with the standby's replay paused (README, Scale-out)."""
from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from accounts import service as accounts
from core import localservices
from core.db import database_url
from core.localscale import Standby, on_local_cluster
from tests.fieldwork import STORE, publish_approved, task_body
from tests.helpers import PASSWORD, unique, wait_until
from tests.live import live_server

pytestmark = pytest.mark.skipif(not on_local_cluster(database_url()),
                                reason="the standby is copied from the local cluster")

# The hall and ops views accept an hour of staleness here, so a paused replica still serves them (and shows that
# it does, by missing what was written since); statements accept none.
ENV = {"FIELDPROOF_REPLICA": "1", "FIELDPROOF_REPLICA_RETRY_S": "0",
       "FIELDPROOF_REPLICA_MAX_LAG_S": json.dumps({"hall": 3600, "stats": 3600, "heatmap": 3600, "statement": 0}),
       "FIELDPROOF_RATE_LIMIT_PER_MINUTE_USER": "100000", "FIELDPROOF_RATE_LIMIT_PER_MINUTE_IP": "100000",
       "FIELDPROOF_LOGIN_PER_IP_PER_MINUTE": "100000", "FIELDPROOF_LOGIN_PER_MINUTE_TOTAL": "100000"}


@pytest.fixture(scope="module")
def standby(test_database) -> Standby:
    node = Standby(localservices.LocalServices.from_settings())
    node.up()
    return node


def _login(srv, role: str) -> dict:
    with srv.session() as s:
        user = accounts.create(db_session=s, username=unique(f"rp_{role}"), password=PASSWORD, role=role,
                               self_service=False)
    with srv.http() as c:
        r = c.post("/v1/auth/token", data={"username": user.username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _replay(standby: Standby, paused: bool) -> None:
    url = make_url(database_url()).set(port=standby.port, database="postgres").render_as_string(hide_password=False)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()"))
    engine.dispose()


def _replica_check(c) -> dict:
    r = c.get("/healthz")
    assert r.status_code == 200, r.text  # a paused replica never makes the service unhealthy
    return r.json()["checks"]["replica"]


def test_views_read_the_replica_and_own_writes_stay_on_the_primary(standby):
    with live_server("replica_api", ENV) as srv, srv.http() as c:
        ops, merchant, worker = (_login(srv, role) for role in ("ops", "merchant", "worker"))
        for purpose, amount in (("security_deposit", 10_000), ("available", 1_000_000)):
            assert c.post("/v1/me/deposits", json={"amount_fen": amount, "purpose": purpose},
                          headers=merchant).status_code == 201
        before = publish_approved(c, task_body(title="暂停前 before"), merchant, ops)
        assert wait_until(lambda: _replica_check(c)["detail"]["lag_bytes"] == 0, timeout=60)
        _replay(standby, paused=True)
        try:
            after = publish_approved(c, task_body(title="暂停后 after"), merchant, ops)
            hall = c.get("/v1/tasks/nearby", params={"lat": STORE[0], "lon": STORE[1]}, headers=worker)
            assert hall.status_code == 200
            ids = {t["id"] for t in hall.json()}
            assert before["id"] in ids and after["id"] not in ids  # the hall read the (stale) replica
            _assert_own_writes_on_primary(c, merchant, worker, before["id"])
            check = _replica_check(c)
            assert check["ok"] and check["detail"]["replay_paused"] and check["detail"]["lag_bytes"] > 0
            metrics = c.get("/metrics", headers=ops).text
            assert "fieldproof_replica_lag_bytes" in metrics and 'target="replica"' in metrics
        finally:
            _replay(standby, paused=False)

        def hall_ids() -> set[int]:
            return {t["id"] for t in c.get("/v1/tasks/nearby", params={"lat": STORE[0], "lon": STORE[1]},
                                           headers=worker).json()}

        assert wait_until(lambda: after["id"] in hall_ids(), timeout=60)  # caught up: the replica has it too


def _assert_own_writes_on_primary(c, merchant: dict, worker: dict, task_id: int) -> None:
    """While the replica is paused: a merchant's new deposit is on its statement (bound 0: the primary), and a
    worker's new claim is in its claims (always the primary)."""
    r = c.post("/v1/me/deposits", json={"amount_fen": 777, "purpose": "available"}, headers=merchant)
    assert r.status_code == 201, r.text
    statement = c.get("/v1/me/statement.csv", params={"lang": "en"}, headers=merchant)
    assert statement.status_code == 200
    assert "777" in {row["amount_fen"] for row in csv.DictReader(io.StringIO(statement.text.lstrip("\ufeff")))}
    claim = c.post(f"/v1/tasks/{task_id}/claims", headers=worker)
    assert claim.status_code == 201, claim.text
    mine = c.get("/v1/me/claims", headers=worker)
    assert claim.json()["id"] in {x["id"] for x in mine.json()}
