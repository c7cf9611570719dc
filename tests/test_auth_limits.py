"""Issue 13: sign-up and login limits, a login's end ends its access tokens, password policy, redaction,
production secrets."""
from __future__ import annotations

import pytest

from core.config import Settings, get_settings
from tests.fieldwork import STORE, claimed, fix
from tests.helpers import PASSWORD, auth_for, freeze_rate_limit_clock, login, make_user, unique


@pytest.mark.parametrize("password", ["12345678", "password", "        ", "aaaaaaaaaa", "qwertyuiop"])
def test_common_repetitive_and_blank_passwords_are_refused(client, password):
    r = client.post("/v1/auth/register", json={"username": unique("pw"), "password": password, "role": "worker"})
    assert r.status_code == 422 and r.json()["code"] == "weak_password", r.text
    assert "password" in r.json()["detail"].lower()


def test_password_based_on_the_username_is_refused(client):
    name = unique("zhangwei")
    r = client.post("/v1/auth/register", json={"username": name, "password": name, "role": "worker"})
    assert r.status_code == 422 and r.json()["code"] == "weak_password"
    assert "username" in r.json()["detail"]
    ok = client.post("/v1/auth/register", json={"username": unique("w"), "password": PASSWORD, "role": "worker"})
    assert ok.status_code == 201


def test_registration_is_limited_per_ip(client, monkeypatch):
    freeze_rate_limit_clock(monkeypatch)
    monkeypatch.setattr(get_settings(), "register_per_ip_per_hour", 3)
    codes = [client.post("/v1/auth/register", json={"username": unique("r"), "password": PASSWORD,
                                                    "role": "worker"}).status_code for _ in range(4)]
    assert codes[:3] == [201] * 3 and codes[3] == 429


def test_login_is_limited_per_ip_before_any_password_work(client, db, monkeypatch):
    user = make_user(db)
    freeze_rate_limit_clock(monkeypatch)
    monkeypatch.setattr(get_settings(), "login_per_ip_per_minute", 2)
    login(client, user.username)
    login(client, user.username)
    r = client.post("/v1/auth/token", data={"username": user.username, "password": PASSWORD})
    assert r.status_code == 429 and "Retry-After" in r.headers


def test_refresh_token_reuse_ends_the_logins_access_tokens(client, db):
    user = make_user(db)
    pair = client.post("/v1/auth/token", data={"username": user.username, "password": PASSWORD}).json()
    access = {"Authorization": f"Bearer {pair['access_token']}"}
    assert client.get("/v1/me", headers=access).status_code == 200
    second = client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert second.status_code == 200
    # the newer token used, then the old one again: a second holder (a retry would come before any newer use)
    assert client.post("/v1/auth/refresh", json={"refresh_token": second.json()["refresh_token"]}).status_code == 200
    reused = client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert reused.status_code == 401 and reused.json()["code"] == "refresh_token_reused"
    r = client.get("/v1/me", headers=access)
    assert r.status_code == 401 and r.json()["code"] == "login_revoked"
    # another login of the same user is untouched
    assert client.get("/v1/me", headers=login(client, user.username)).status_code == 200


def test_merchants_see_reasons_without_other_peoples_identifiers(client, db):
    device = "farm-device-0042"
    _, c1, w1, _ = claimed(client, db)
    assert client.post(f"/v1/claims/{c1['id']}/checkins", json=fix(device_id=device), headers=w1).status_code == 201
    _, c2, w2, m2 = claimed(client, db)
    r = client.post(f"/v1/claims/{c2['id']}/checkins", json=fix(STORE[0] + 0.0002, STORE[1], device_id=device),
                    headers=w2)
    assert r.status_code == 201 and "shared_device" in r.json()["reasons"]
    merchant_view = client.get(f"/v1/claims/{c2['id']}/checkins", headers=m2).json()[0]
    assert "shared_device" in merchant_view["reasons"]
    assert device not in str(merchant_view["signals"]) and "192.0.2.10" not in str(merchant_view["signals"])
    _, ops = auth_for(client, db, "ops")
    ops_view = client.get(f"/v1/claims/{c2['id']}/checkins", headers=ops).json()[0]
    assert device in str(ops_view["signals"])


def test_production_refuses_to_start_without_configured_secrets(monkeypatch):
    for name in ("FIELDPROOF_JWT_SECRET", "FIELDPROOF_METRICS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="FIELDPROOF_JWT_SECRET"):
        Settings(env="prod", database_url="postgresql+psycopg://x@db/x", redis_url="redis://r/0")
    ok = Settings(env="prod", database_url="postgresql+psycopg://x@db/x", redis_url="redis://r/0",
                  jwt_secret="k" * 40, metrics_token="m" * 40)
    assert ok.env == "prod"
