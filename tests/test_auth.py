"""Registration, tokens, lock-out, frozen users, token tampering."""
from __future__ import annotations

from datetime import timedelta

import jwt
import pytest

from accounts.security import _secret
from core.config import get_settings
from core.models import utcnow
from tests.helpers import PASSWORD, auth_for, login, make_user, unique


def test_register_login_refresh_and_me(client):
    name = unique("w")
    r = client.post("/v1/auth/register", json={"username": name, "password": PASSWORD, "role": "worker",
                                               "display_name": "小王"})
    assert r.status_code == 201, r.text
    assert r.json()["role"] == "worker" and r.json()["display_name"] == "小王"
    tok = client.post("/v1/auth/token", data={"username": name, "password": PASSWORD}).json()
    me = client.get("/v1/me", headers={"Authorization": f"Bearer {tok['access_token']}"})
    assert me.status_code == 200 and me.json()["username"] == name
    new = client.post("/v1/auth/refresh", json={"refresh_token": tok["refresh_token"]})
    assert new.status_code == 200 and new.json()["refresh_token"] != tok["refresh_token"]
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {new.json()['access_token']}"}).status_code == 200


def test_refresh_token_reuse_revokes_family(client, db):
    user = make_user(db)
    tok = client.post("/v1/auth/token", data={"username": user.username, "password": PASSWORD}).json()
    second = client.post("/v1/auth/refresh", json={"refresh_token": tok["refresh_token"]}).json()
    third = client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}).json()
    # the old token again after a newer one was used: not a lost answer but a second holder
    reuse = client.post("/v1/auth/refresh", json={"refresh_token": tok["refresh_token"]})
    assert reuse.status_code == 401 and reuse.json()["code"] == "refresh_token_reused"
    # the thief's rotation killed the legitimate chain too
    later = client.post("/v1/auth/refresh", json={"refresh_token": third["refresh_token"]})
    assert later.status_code == 401


def test_a_refresh_retried_after_a_lost_answer_keeps_the_login(client, db):
    """Poor signal: the phone's refresh went through but the answer was lost; it sends the same token again. Within
    the grace, with nothing newer used, it gets a new pair (the login goes on); past the grace the same retry is
    treated as theft."""
    from sqlalchemy import update

    from accounts.models import RefreshToken
    from accounts.security import sha256_hex

    user = make_user(db)
    tok = client.post("/v1/auth/token", data={"username": user.username, "password": PASSWORD}).json()
    lost = client.post("/v1/auth/refresh", json={"refresh_token": tok["refresh_token"]})
    retry = client.post("/v1/auth/refresh", json={"refresh_token": tok["refresh_token"]})
    assert lost.status_code == retry.status_code == 200, retry.text
    assert retry.json()["refresh_token"] != lost.json()["refresh_token"]
    nxt = client.post("/v1/auth/refresh", json={"refresh_token": retry.json()["refresh_token"]})
    assert nxt.status_code == 200
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {nxt.json()['access_token']}"}).status_code == 200

    tok2 = client.post("/v1/auth/token", data={"username": user.username, "password": PASSWORD}).json()
    assert client.post("/v1/auth/refresh", json={"refresh_token": tok2["refresh_token"]}).status_code == 200
    grace = get_settings().refresh_reuse_grace_s
    db.execute(update(RefreshToken).where(RefreshToken.token_sha256 == sha256_hex(tok2["refresh_token"]))
               .values(used_at=utcnow() - timedelta(seconds=grace + 5)))
    db.commit()
    late = client.post("/v1/auth/refresh", json={"refresh_token": tok2["refresh_token"]})
    assert late.status_code == 401 and late.json()["code"] == "refresh_token_reused"


def test_register_refuses_ops_and_duplicates_and_weak_passwords(client):
    name = unique("m")
    ops = client.post("/v1/auth/register", json={"username": name, "password": PASSWORD, "role": "ops"})
    assert ops.status_code == 422 and ops.json()["code"] == "validation_error"
    ok = client.post("/v1/auth/register", json={"username": name, "password": PASSWORD, "role": "merchant"})
    assert ok.status_code == 201
    dup = client.post("/v1/auth/register", json={"username": name, "password": PASSWORD, "role": "merchant"})
    assert dup.status_code == 409 and dup.json()["code"] == "username_taken"
    weak = client.post("/v1/auth/register", json={"username": unique("m"), "password": "short", "role": "worker"})
    assert weak.status_code == 422 and weak.json()["code"] == "weak_password"


def test_wrong_password_and_unknown_user(client, db):
    user = make_user(db)
    bad = client.post("/v1/auth/token", data={"username": user.username, "password": "wrong-password"})
    assert bad.status_code == 401 and bad.json()["code"] == "invalid_credentials"
    ghost = client.post("/v1/auth/token", data={"username": "nobody-here", "password": "whatever1"})
    assert ghost.status_code == 401 and ghost.json()["code"] == "invalid_credentials"


def test_lockout_after_repeated_failures(client, db):
    user = make_user(db)
    limit = get_settings().login_max_failures_per_account
    for _ in range(limit):
        assert client.post("/v1/auth/token", data={"username": user.username, "password": "nope-nope"}).status_code == 401
    locked = client.post("/v1/auth/token", data={"username": user.username, "password": PASSWORD})
    assert locked.status_code == 429 and locked.json()["code"] == "login_locked"
    assert int(locked.headers["Retry-After"]) > 0


def test_lockout_per_ip_across_accounts(client, db, monkeypatch):
    monkeypatch.setattr(get_settings(), "login_max_failures_per_ip", 3)
    for _ in range(3):
        client.post("/v1/auth/token", data={"username": unique("x"), "password": "nope-nope"})
    user = make_user(db)
    r = client.post("/v1/auth/token", data={"username": user.username, "password": PASSWORD})
    assert r.status_code == 429 and r.json()["code"] == "login_locked"


def test_frozen_user_rejected_everywhere(client, db):
    worker, headers = auth_for(client, db, "worker")
    _, ops_headers = auth_for(client, db, "ops")
    tok = client.post("/v1/auth/token", data={"username": worker.username, "password": PASSWORD}).json()
    r = client.post(f"/v1/users/{worker.id}/freeze", json={"reason": "device farm"}, headers=ops_headers)
    assert r.status_code == 200 and r.json()["frozen"] is True
    me = client.get("/v1/me", headers=headers)
    assert me.status_code == 403 and me.json()["code"] == "user_frozen"
    again = client.post("/v1/auth/token", data={"username": worker.username, "password": PASSWORD})
    assert again.status_code == 403 and again.json()["code"] == "user_frozen"
    assert client.post("/v1/auth/refresh", json={"refresh_token": tok["refresh_token"]}).status_code == 401


def test_only_ops_can_freeze(client, db):
    worker, headers = auth_for(client, db, "worker")
    victim = make_user(db)
    r = client.post(f"/v1/users/{victim.id}/freeze", json={"reason": "x"}, headers=headers)
    assert r.status_code == 403 and r.json()["code"] == "wrong_role"


def _claims(**over):
    s = get_settings()
    now = utcnow()
    base = {"sub": "1", "typ": "access", "iss": s.jwt_issuer, "aud": s.jwt_audience, "iat": now,
            "exp": now + timedelta(minutes=5)}
    base.update(over)
    return base


def test_expired_tampered_and_alg_none_tokens(client, db):
    user = make_user(db)
    expired = jwt.encode(_claims(sub=str(user.id), exp=utcnow() - timedelta(seconds=5)), _secret(), algorithm="HS256")
    r = client.get("/v1/me", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and r.json()["code"] == "token_expired"
    good = login(client, user.username)["Authorization"].split()[1]
    head, payload, sig = good.split(".")
    tampered = ".".join([head, payload, sig[:-4] + ("AAAA" if not sig.endswith("AAAA") else "BBBB")])
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {tampered}"}).status_code == 401
    none_tok = jwt.encode(_claims(sub=str(user.id)), None, algorithm="none")
    r = client.get("/v1/me", headers={"Authorization": f"Bearer {none_tok}"})
    assert r.status_code == 401 and r.json()["code"] == "invalid_token"
    wrong_aud = jwt.encode(_claims(sub=str(user.id), aud="someone-else"), _secret(), algorithm="HS256")
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {wrong_aud}"}).status_code == 401
    assert client.get("/v1/me").status_code == 401


def test_a_remembered_token_is_checked_again_for_expiry_and_against_a_changed_secret(monkeypatch):
    """decode_access remembers tokens that passed (accounts.security._verified); what it remembers never outlives
    the token's expiry or the secret and audience it was checked with, and a failure is never remembered."""
    from accounts.errors import InvalidToken
    from accounts.security import _verified, create_access_token, decode_access

    token = create_access_token(7, "worker", "login-1")
    assert decode_access(token) == decode_access(token) == (7, "login-1")
    assert _verified.cache_info().hits >= 1
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    for _ in range(2):
        with pytest.raises(InvalidToken):
            decode_access(tampered)
    # The secret rotated: the remembered pass does not carry over.
    with monkeypatch.context() as m:
        m.setenv("FIELDPROOF_JWT_SECRET", "rotated-" + "x" * 40)
        get_settings.cache_clear()
        _secret.cache_clear()
        with pytest.raises(InvalidToken):
            decode_access(token)
    get_settings.cache_clear()  # the environment is back: so is the secret
    _secret.cache_clear()
    assert decode_access(token) == (7, "login-1")
    # Fifteen minutes later on the service clock, the remembered token has expired.
    later = utcnow() + timedelta(minutes=16)
    monkeypatch.setattr("accounts.security.utcnow", lambda: later)
    with pytest.raises(InvalidToken) as exc:
        decode_access(token)
    assert exc.value.code == "token_expired"
