"""The HTTP edge: idempotency keys, rate limits, size caps, error format, health, metrics."""
from __future__ import annotations

import hashlib
import threading

import pytest
from sqlalchemy import func, select

from accounts.models import User
from core.config import get_settings
from core.idempotency import IdempotencyRecord
from tests.helpers import PASSWORD, auth_for, freeze_rate_limit_clock, own_redis, unique


def _register(client, name, key, role="worker"):
    return client.post("/v1/auth/register", json={"username": name, "password": PASSWORD, "role": role},
                       headers={"Idempotency-Key": key})


def test_idempotent_replay_returns_first_result_and_changes_nothing(client, db):
    name = unique("idem")
    first = _register(client, name, "key-1")
    assert first.status_code == 201
    again = _register(client, name, "key-1")
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert db.scalar(select(func.count()).select_from(User).where(User.username == name)) == 1
    # without a key the same body is a new request and hits the uniqueness rule
    assert client.post("/v1/auth/register", json={"username": name, "password": PASSWORD,
                                                  "role": "worker"}).status_code == 409


def test_same_key_other_body_is_422(client):
    name = unique("idem")
    assert _register(client, name, "key-2").status_code == 201
    r = _register(client, name, "key-2", role="merchant")
    assert r.status_code == 422 and r.json()["code"] == "idempotency_key_reused"


def test_sign_ups_of_unrelated_clients_never_share_a_key(client):
    """Registration has no account to scope its keys by: they are scoped by the username asked for, so two people
    whose apps happen to send the same key both get their account (user 0 for both used to refuse the second)."""
    first, second = _register(client, unique("idem"), "signup-1"), _register(client, unique("idem"), "signup-1")
    assert first.status_code == second.status_code == 201, second.text
    assert first.json()["id"] != second.json()["id"]


def test_a_key_is_found_however_the_path_spells_the_id(client, db):
    """The key's scope is the route and its parameters as read: /claims/000…0123 is claim 123, so a replay cannot
    get past the first result (or be refused as too long) by padding the id."""
    from tests.fieldwork import STORE, claimed, fix

    _, claim, w, _ = claimed(client, db)
    body = fix(STORE[0] + 0.0003, STORE[1])
    keyed = {**w, "Idempotency-Key": "pad-1"}
    first = client.post(f"/v1/claims/{claim['id']}/checkins", json=body, headers=keyed)
    assert first.status_code == 201, first.text
    padded = client.post(f"/v1/claims/{'0' * 400}{claim['id']}/checkins", json=body, headers=keyed)
    assert padded.status_code == 201 and padded.json() == first.json(), padded.text
    assert padded.headers.get("Idempotent-Replayed") == "true"
    other = client.post(f"/v1/claims/0{claim['id']}/checkins", json=fix(STORE[0] + 0.0002, STORE[1]), headers=keyed)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused", other.text


def test_key_in_flight_is_409(client, connection, db):
    """A second request with the key while the first still holds it gets 409."""
    from core.db import UnitOfWork
    from core import idempotency

    digest = idempotency.body_hash(b'{"a":1}')
    held, release = threading.Event(), threading.Event()
    name = unique("idem")
    route = f"POST /v1/auth/register as {hashlib.sha256(name.encode()).hexdigest()[:32]}"  # keys scoped by username

    def hold():
        # another connection, as another API process would have; it keeps the key until the test has asked
        with UnitOfWork() as uow:
            idempotency.acquire(uow.session, user_id=0, route=route, key="busy-key", digest=digest)
            held.set()
            release.wait(timeout=30)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(timeout=30), "the first request never took the key"
        r = _register(client, name, "busy-key")
    finally:
        release.set()
        t.join()
    assert r.status_code == 409 and r.json()["code"] == "idempotency_in_flight"


def test_failed_request_is_not_stored(client, db):
    name = unique("idem")
    assert client.post("/v1/auth/register", json={"username": name, "password": PASSWORD, "role": "worker"}).status_code == 201
    dup = _register(client, name, "key-3")
    assert dup.status_code == 409
    assert db.scalar(select(func.count()).select_from(IdempotencyRecord).where(IdempotencyRecord.key == "key-3")) == 0


def test_bad_idempotency_key(client):
    r = _register(client, unique("idem"), "x" * 500)
    assert r.status_code == 422 and r.json()["code"] == "invalid_idempotency_key"


def test_rate_limit_per_user(client, db, monkeypatch):
    freeze_rate_limit_clock(monkeypatch)
    monkeypatch.setattr(get_settings(), "rate_limit_per_minute_user", 3)
    _, headers = auth_for(client, db)
    codes = [client.get("/v1/me", headers=headers).status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    r = client.get("/v1/me", headers=headers)
    assert r.json()["code"] == "rate_limited" and "Retry-After" in r.headers


def test_rate_limit_counters_expire_and_count_both_limits(client, db, monkeypatch):
    """One script call counts the IP's and the user's hit; each counter gets its expiry with its first hit and
    keeps it (two minutes: the window and the next), so none outlives its window."""
    from api.ratelimit import _key
    from core.redis import get_redis

    pinned = freeze_rate_limit_clock(monkeypatch)
    user, headers = auth_for(client, db)
    for _ in range(3):
        assert client.get("/v1/me", headers=headers).status_code == 200
    r = get_redis()
    key = _key(f"user:{user.id}", 60, pinned)
    assert int(r.get(key)) == 3 and 0 < r.ttl(key) <= 120
    ip_keys = [k for k in r.keys(_key("ip:*", 60, pinned))]
    assert ip_keys and all(0 < r.ttl(k) <= 120 for k in ip_keys)


def test_rate_limit_per_ip(client, monkeypatch):
    freeze_rate_limit_clock(monkeypatch)
    monkeypatch.setattr(get_settings(), "rate_limit_per_minute_ip", 4)
    codes = [client.get("/openapi.json").status_code for _ in range(6)]
    assert codes.count(429) == 2
    assert client.get("/healthz").status_code in (200, 503)  # health is never rate limited


def test_oversized_body_is_413(client):
    big = "x" * (get_settings().max_json_body_bytes + 10)
    r = client.post("/v1/auth/register", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"


def test_oversized_streamed_body_without_length_is_413(client):
    cap = get_settings().max_json_body_bytes

    def chunks():
        for _ in range(cap // 1000 + 5):
            yield b"x" * 1000

    r = client.post("/v1/auth/register", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


@pytest.mark.parametrize("body", ["{not json", "[]", '{"username": 5}', '{"username":"abc","password":"p","role":"x"}'])
def test_bad_input_is_4xx_with_code_and_detail(client, body):
    r = client.post("/v1/auth/register", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500
    assert set(r.json()) >= {"code", "detail"}


def test_unknown_route_and_method(client):
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = client.delete("/v1/auth/token")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"


def test_metrics_and_openapi(client, db, monkeypatch):
    client.get("/healthz")
    assert client.get("/metrics").status_code == 401
    _, worker = auth_for(client, db, "worker")
    assert client.get("/metrics", headers=worker).status_code == 403
    monkeypatch.setattr(get_settings(), "metrics_token", "s" * 40)
    assert client.get("/metrics", headers={"Authorization": "Bearer " + "s" * 40}).status_code == 200
    _, ops = auth_for(client, db, "ops")
    m = client.get("/metrics", headers=ops)
    assert m.status_code == 200 and "fieldproof_http_requests_total" in m.text
    spec = client.get("/openapi.json").json()
    assert "/v1/auth/token" in spec["paths"]


def test_healthz_reports_stopped_redis(client, monkeypatch, tmp_path):
    with own_redis(tmp_path) as (proc, own, _):
        monkeypatch.setattr("core.health.get_redis", lambda: own)
        ok = client.get("/healthz")
        assert ok.status_code == 200 and ok.json()["status"] == "ok", ok.text
        assert ok.json()["checks"]["database"]["detail"].startswith("postgis")
        own.shutdown(nosave=True)
        proc.wait(timeout=10)
    down = client.get("/healthz")
    assert down.status_code == 503
    body = down.json()
    assert body["status"] == "degraded" and body["checks"]["redis"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


@pytest.mark.parametrize("spelling", ["+{id}", "1_{id}", "{id}.0", " {id}", "{id}%20"])
def test_an_id_is_written_in_digits_only(client, db, spelling):
    """Pydantic reads "+12", "1_2", "12.0" as numbers; keys are scoped by the id as written, so each id has one
    spelling (leading zeros aside): others are refused at the edge."""
    from tests.fieldwork import claimed

    _, claim, w, _ = claimed(client, db)
    r = client.post(f"/v1/claims/{spelling.format(id=claim['id'])}/checkins", json={}, headers=w)
    assert r.status_code == 422, r.text


def test_a_five_thousand_digit_id_is_a_4xx_not_a_500(client, db):
    from tests.fieldwork import claimed

    _, claim, w, _ = claimed(client, db)
    r = client.post(f"/v1/claims/{'0' * 5000}{claim['id']}/submit", headers={**w, "Idempotency-Key": "long-1"})
    assert r.status_code < 500, r.text
