"""Radio fingerprints: hashed Wi-Fi/cell scans, learned per site, judged against GPS (issue 17 part 2)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import text

from checkin import learning
from checkin.models import RadioFingerprint, RadioSite
from checkin.settings import get_checkin_settings
from geo.radio import wifi_hash
from tasks.models import Claim
from tests.fieldwork import STORE, fix, published_task
from tests.helpers import auth_for

SITE_APS = [f"5c:02:14:aa:00:{i:02x}" for i in range(12)]
HOME_APS = ["c8:3a:35:11:22:33", "c8:3a:35:11:22:34"]
SITE_CELL = {"mcc": 460, "mnc": 0, "tac": 4321, "cid": 987654321}
HOME_CELL = {"mcc": 460, "mnc": 0, "tac": 4321, "cid": 123498765}
_jitter = iter(range(1, 10**6))


def _inside() -> float:
    """~20 m from the centre (inside, not on the pin), never the same coordinates twice (that is a signal)."""
    return STORE[0] + 0.0002 + next(_jitter) * 1e-6


def _scan(aps, cell=None) -> dict:
    return {"wifi": [{"bssid": b, "rssi": -60} for b in aps], "cells": [dict(cell, rssi=-90)] if cell else []}


def _check_in(client, db, task, **body):
    _, w = auth_for(client, db, "worker")
    r = client.post(f"/v1/tasks/{task['id']}/claims", headers=w)
    assert r.status_code == 201, r.text
    claim_id = r.json()["id"]
    r = client.post(f"/v1/claims/{claim_id}/checkins", json=fix(lat=_inside(), **body), headers=w)
    assert r.status_code == 201, r.text
    return claim_id, r.json()


def _task(client, db, **over):
    return published_task(client, db, slots=20, **over)[0]


def _learned_site(client, db, workers=3):
    task = _task(client, db)
    for i in range(workers):  # each honest phone sees a different part of the site
        _check_in(client, db, task, **_scan(SITE_APS[i:i + 9], SITE_CELL))
    learning.learn(db_session=db)
    return task


def test_a_site_learns_its_fingerprint_from_accepted_check_ins(client, db):
    task = _learned_site(client, db)
    site = db.get(RadioSite, task["id"])
    assert (site.checkins, site.workers, site.hashes) == (3, 3, 9 + 1)  # APs 1-9 and the cell, seen twice or more
    rows = {r.hash: r.workers for r in db.query(RadioFingerprint).filter_by(task_id=task["id"])}
    assert rows[wifi_hash(SITE_APS[2])] == 3 and rows[wifi_hash(SITE_APS[0])] == 1
    # The site row keeps the counted hashes sorted: what a check-in's measure matches a scan against.
    min_workers = get_checkin_settings().radio_hash_min_workers
    assert site.counted == sorted(h for h, n in rows.items() if n >= min_workers) and len(site.counted) == 10
    # A scan sharing one counted access point passes; one sharing nothing while GPS says inside is flagged.
    _, ok = _check_in(client, db, task, **_scan([SITE_APS[3], "02:00:00:00:00:01"]))
    assert "radio_mismatch" not in ok["reasons"]
    claim_id, bad = _check_in(client, db, task, **_scan(HOME_APS, HOME_CELL))
    assert bad["verdict"] == "inside" and "radio_mismatch" in bad["reasons"]
    c = db.get(Claim, claim_id)
    db.refresh(c)
    assert "radio_mismatch" in c.flags


def test_a_site_row_without_counted_hashes_is_not_established(client, db):
    # What a sweep older than migration 0020 writes while a deployment rolls: its count, no array. Judged by the
    # count, every scan there (honest ones too) would be a mismatch; the measure takes both from the array.
    task = _learned_site(client, db)
    db.execute(text("UPDATE radio_site SET counted = '{}' WHERE task_id = :t"), {"t": task["id"]})
    db.flush()
    assert db.execute(text("SELECT hashes FROM radio_site WHERE task_id = :t"), {"t": task["id"]}).scalar_one() == 10
    _, honest = _check_in(client, db, task, **_scan(SITE_APS[2:8], SITE_CELL))
    _, stranger = _check_in(client, db, task, **_scan(HOME_APS, HOME_CELL))
    assert "radio_mismatch" not in honest["reasons"] and "radio_mismatch" not in stranger["reasons"]


def test_migration_0020_fills_counted_as_the_rebuild_does(client, db):
    task = _learned_site(client, db)
    rebuilt = db.execute(text("SELECT counted FROM radio_site WHERE task_id = :t"), {"t": task["id"]}).scalar_one()
    db.execute(text("UPDATE radio_site SET counted = '{}' WHERE task_id = :t"), {"t": task["id"]})
    path = Path(__file__).parents[1] / "migrations" / "versions" / "0020_radio_counted.py"
    spec = importlib.util.spec_from_file_location("migration_0020", path)
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    # Its upgrade with the column already there: only the backfill runs, in this test's transaction.
    migration.op = SimpleNamespace(add_column=lambda *a, **k: None, execute=db.execute)
    migration.upgrade()
    assert len(rebuilt) == 10
    assert db.execute(text("SELECT counted FROM radio_site WHERE task_id = :t"), {"t": task["id"]}).scalar_one() == rebuilt


def test_a_young_fingerprint_judges_nothing_and_no_scan_is_never_judged(client, db):
    task = _learned_site(client, db, workers=2)  # below radio_min_workers
    assert get_checkin_settings().radio_min_workers == 3
    _, r = _check_in(client, db, task, **_scan(HOME_APS, HOME_CELL))
    assert "radio_mismatch" not in r["reasons"]
    established = _learned_site(client, db)
    _, r = _check_in(client, db, established)  # a browser cannot scan
    assert "radio_mismatch" not in r["reasons"]


def test_the_sweep_flags_an_earlier_scan_once_the_site_is_established(client, db):
    task = _task(client, db)
    early_claim, early = _check_in(client, db, task, **_scan(HOME_APS, HOME_CELL))  # first at the site, from home
    assert "radio_mismatch" not in early["reasons"]
    for i in range(3):
        _check_in(client, db, task, **_scan(SITE_APS[i:i + 9], SITE_CELL))
    learning.learn(db_session=db)
    c = db.get(Claim, early_claim)
    db.refresh(c)
    assert "radio_mismatch" in c.flags and c.risk_score >= get_checkin_settings().weight_radio_mismatch
    fixes = db.execute(text("SELECT reasons, radio_learned FROM checkin WHERE claim_id = :c"), {"c": early_claim}).all()
    assert fixes == [(["radio_mismatch"], None)]  # flagged, and no longer teaching the site
    assert db.get(RadioSite, task["id"]).workers == 3
    learning.learn(db_session=db)  # idempotent: nothing new, nothing flagged twice
    db.refresh(c)
    assert c.flags.count("radio_mismatch") == 1


def test_pinned_bssids_judge_from_the_first_check_in(client, db):
    task = _task(client, db, pinned_bssids=[SITE_APS[0].upper().replace(":", "-")])
    assert task["pinned_bssids"] == 1
    _, r = _check_in(client, db, task, **_scan([SITE_APS[0]]))
    assert "radio_mismatch" not in r["reasons"]
    _, r = _check_in(client, db, task, **_scan(HOME_APS))
    assert "radio_mismatch" in r["reasons"]


def test_bad_radio_input_is_a_422(client, db):
    task = _task(client, db)
    _, w = auth_for(client, db, "worker")
    claim_id = client.post(f"/v1/tasks/{task['id']}/claims", headers=w).json()["id"]
    for body in ({"wifi": [{"bssid": "not-a-mac"}]}, {"wifi": [{"bssid": "aa:bb:cc:dd:ee:ff"}] * 51},
                 {"cells": [{"mcc": 460, "mnc": 0, "tac": -1, "cid": 1}]}):
        r = client.post(f"/v1/claims/{claim_id}/checkins", json=fix(lat=_inside(), **body), headers=w)
        assert r.status_code == 422, r.text


def test_no_raw_radio_identifier_is_stored_anywhere(client, db):
    """Every text-like column of every table, searched for the raw BSSIDs (any spelling) and cell ids."""
    task = _task(client, db, pinned_bssids=[SITE_APS[11]])
    for i in range(3):
        _check_in(client, db, task, **_scan(SITE_APS[i:i + 9], SITE_CELL))
    _check_in(client, db, task, **_scan(HOME_APS, HOME_CELL))
    learning.learn(db_session=db)
    needles = [b for mac in SITE_APS + HOME_APS for b in (mac, mac.replace(":", ""), mac.replace(":", "-"))]
    needles += [str(SITE_CELL["cid"]), str(HOME_CELL["cid"])]
    columns = db.execute(text("""
        SELECT c.table_name, c.column_name FROM information_schema.columns c
          JOIN information_schema.tables t ON t.table_name = c.table_name AND t.table_schema = c.table_schema
         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
           AND c.data_type NOT IN ('integer', 'bigint', 'smallint', 'boolean', 'double precision', 'real',
                                   'timestamp with time zone', 'date', 'USER-DEFINED')""")).all()
    assert len(columns) > 20
    found = []
    for table, column in columns:
        hit = db.execute(text(f'SELECT count(*) FROM "{table}" WHERE lower(CAST("{column}" AS text)) LIKE '  # noqa: S608
                              "ANY(:patterns)"), {"patterns": [f"%{n}%" for n in needles]}).scalar_one()
        if hit:
            found.append((table, column))
    assert found == []
    # ... and the hashes are there instead.
    stored = db.execute(text("SELECT radio FROM checkin WHERE task_id = :t ORDER BY id"), {"t": task["id"]}).scalars()
    assert wifi_hash(SITE_APS[0]) in next(iter(stored))


def test_keyed_hashes_are_the_stored_ones_for_every_spelling():
    """geo.radio hashes with a prepared HMAC and takes a canonical BSSID as it is: the values must stay
    those stored fingerprints were learned with (HMAC-SHA256 of "kind:value" under the radio key, first 8 bytes
    as a signed big-endian integer), for every accepted spelling, and bad spellings still refused."""
    import hmac

    import pytest

    from checkin.radio import scan_hashes
    from checkin.schemas import CheckinCreate
    from geo.radio import _key, cell_hash, normalise_bssid

    def stored(kind: str, value: str) -> int:
        return int.from_bytes(hmac.digest(_key(), f"{kind}:{value}".encode(), "sha256")[:8], "big", signed=True)

    for spelling in ("5C:02:14:AA:00:0B", "5c-02-14-aa-00-0b", "5c0214aa000b", " 5c:02:14:aa:00:0b ",
                     "5c:02:14:aa:00:0b"):
        assert normalise_bssid(spelling) == "5c:02:14:aa:00:0b"
        assert wifi_hash(spelling) == stored("wifi", "5c:02:14:aa:00:0b")
    assert cell_hash(460, 0, 4321, 987654321) == stored("cell", "460-0-4321-987654321")
    for bad in ("5c:02:14:aa:00", "5c:02:14:aa:00:0g", "5c:02:14:aa:00:0b:00", "5c:02:14:aa:00:0b\n00"):
        with pytest.raises(ValueError):
            normalise_bssid(bad)
    body = CheckinCreate.model_validate({**fix(), **_scan(["5C-02-14-AA-00-0B", HOME_APS[0].upper()], SITE_CELL)})
    assert scan_hashes(body.wifi, body.cells) == sorted({stored("wifi", "5c:02:14:aa:00:0b"),
                                                         stored("wifi", HOME_APS[0]),
                                                         stored("cell", "460-0-4321-987654321")})
