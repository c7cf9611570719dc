"""Ops tools behind the dashboard: user search (ops only), the ledger's bulk postings used by the demo seed, and
the base-map setting (defaults per crs, CSP origin)."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from api.routers import pages
from core.config import Settings
from ledger import service as ledger
from ledger.errors import AlreadyPosted, InsufficientFunds, UnbalancedTransaction
from ledger.models import LedgerAccount
from tests.helpers import auth_for, make_user, unique


def test_user_search_by_username_or_display_name_is_for_ops_only(client, db):
    target = make_user(db, "worker", unique("searchme"))
    target.display_name = "张伟_测试%"
    db.flush()
    other = make_user(db, "worker", unique("someone"))
    _, ops = auth_for(client, db, "ops")
    by_name = client.get("/v1/users", params={"q": target.username.upper()}, headers=ops)
    assert by_name.status_code == 200, by_name.text
    assert [u["id"] for u in by_name.json()][:1] == [target.id]
    by_display = client.get("/v1/users", params={"q": "伟_测试%"}, headers=ops).json()
    assert [u["id"] for u in by_display] == [target.id]  # _ and % are literal, not wildcards
    assert other.id not in [u["id"] for u in client.get("/v1/users", params={"q": "searchme"}, headers=ops).json()]
    for role in ("worker", "merchant"):
        _, headers = auth_for(client, db, role)
        r = client.get("/v1/users", params={"q": "searchme"}, headers=headers)
        assert r.status_code == 403 and r.json()["code"]
    assert client.get("/v1/users", params={"q": ""}, headers=ops).status_code == 422
    assert client.get("/v1/users", params={"q": "x" * 65}, headers=ops).status_code == 422


def _funded(db, fen: int) -> tuple[int, int, int]:
    """(external, merchant escrow, worker available) account ids, the escrow holding ``fen``."""
    merchant, worker = make_user(db, "merchant"), make_user(db, "worker")
    ext = ledger.account(db, None, "external")
    escrow = ledger.account(db, merchant.id, "merchant_escrow")
    wallet = ledger.account(db, worker.id, "worker_available")
    ledger.transfer(db, kind="test_fund", cause_type="test", cause_id=merchant.id, legs=[(ext, -fen), (escrow, fen)])
    return ext, escrow, wallet


def test_transfer_many_keeps_the_ledger_rules(db):
    _, escrow, wallet = _funded(db, 1000)
    assert ledger.transfer_many(db, kind="test_pay", cause_type="test", entries=[
        (1, [(escrow, -300), (wallet, 300)]), (2, [(escrow, -700), (wallet, 700)])]) == 2
    balances = dict(db.execute(select(LedgerAccount.id, LedgerAccount.balance_fen)
                               .where(LedgerAccount.id.in_([escrow, wallet]))).all())
    assert balances == {escrow: 0, wallet: 1000}
    with pytest.raises(AlreadyPosted):  # once per cause
        ledger.transfer_many(db, kind="test_pay", cause_type="test", entries=[(2, [(wallet, -1), (escrow, 1)])])
    with pytest.raises(UnbalancedTransaction):
        ledger.transfer_many(db, kind="test_pay", cause_type="test", entries=[(3, [(wallet, -1), (escrow, 2)])])
    with pytest.raises(InsufficientFunds):  # never negative, checked in order
        ledger.transfer_many(db, kind="test_pay", cause_type="test", entries=[(4, [(escrow, -1), (wallet, 1)])])
    assert ledger.check(db) == []


def test_base_map_defaults_per_crs_and_csp_origin(monkeypatch):
    gcj = Settings(map_tile_url=None, map_tile_crs="gcj02")
    assert "autonavi.com" in gcj.map_tiles["url"] and gcj.map_tiles["subdomains"] == "1234"
    assert "openstreetmap.org" in Settings(map_tile_url=None, map_tile_crs="wgs84").map_tiles["url"]
    assert Settings(map_tile_url="", map_tile_crs="gcj02").map_tiles["url"] == ""  # the plain grid
    monkeypatch.setattr(pages, "get_settings", lambda: gcj)
    assert pages._tile_origin() == "https://*.is.autonavi.com"  # CSP img-src allows the {s} subdomains
    assert pages.config()["tile_crs"] == "gcj02"
    monkeypatch.setattr(pages, "get_settings", lambda: Settings(map_tile_url="", map_tile_crs="wgs84"))
    assert pages._tile_origin() == "" and pages.config()["tile_url"] == ""
