"""Check-in through the API on real PostGIS: crs handling, fence shapes, accuracy, signals, idempotency."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from checkin.models import Checkin
from geo import crs as geocrs
from tests.fieldwork import STORE, circle, claimed, fix, now
from tests.helpers import auth_for

LAT, LON = STORE
D = 0.002  # ~220 m north-south, ~170 m east-west here


def _checkin(client, claim, headers, body, key=None):
    h = dict(headers, **({"Idempotency-Key": key} if key else {}))
    return client.post(f"/v1/claims/{claim['id']}/checkins", json=body, headers=h)


def test_gcj02_and_bd09_input_land_inside_and_mislabelled_input_does_not(client, db):
    for crs, conv in (("gcj02", geocrs.wgs84_to_gcj02), ("bd09", geocrs.wgs84_to_bd09)):
        _, claim, w, _ = claimed(client, db, geofence=circle(radius_m=100), hard_fence=False)
        lat, lon = conv(LAT, LON)
        r = _checkin(client, claim, w, fix(lat, lon, crs=crs))
        assert r.status_code == 201, r.text
        assert r.json()["verdict"] == "inside" and r.json()["distance_m"] == 0
        assert r.json()["crs"] == crs and abs(r.json()["lat"] - lat) < 1e-6
        stored = db.get(Checkin, r.json()["id"])
        assert abs(stored.lat - LAT) < 1e-6 and abs(stored.lon - LON) < 1e-6  # WGS-84 in the database
        # The same numbers declared as WGS-84 are hundreds of metres off: outside.
        _, claim2, w2, _ = claimed(client, db, geofence=circle(radius_m=100), hard_fence=False)
        r2 = _checkin(client, claim2, w2, fix(lat, lon, crs="wgs84"))
        assert r2.json()["verdict"] == "outside" and r2.json()["distance_m"] > 200


def test_polygon_with_hole_and_boundary(client, db):
    outer = [[LON - D, LAT - D], [LON + D, LAT - D], [LON + D, LAT + D], [LON - D, LAT + D], [LON - D, LAT - D]]
    h = D / 4
    hole = [[LON - h, LAT - h], [LON - h, LAT + h], [LON + h, LAT + h], [LON + h, LAT - h], [LON - h, LAT - h]]
    fence = {"type": "Polygon", "coordinates": [outer, hole]}
    cases = [((LAT + D / 2, LON), "inside"),          # in the ring between hole and edge
             ((LAT, LON - D), "inside"),              # exactly on the western edge (a meridian)
             ((LAT, LON), "outside")]                 # in the hole, ~40 m from its edge
    for (lat, lon), expected in cases:
        _, claim, w, _ = claimed(client, db, geofence=fence, hard_fence=False)
        r = _checkin(client, claim, w, fix(lat, lon, accuracy_m=3))
        assert r.status_code == 201, r.text
        assert r.json()["verdict"] == expected, (lat, lon, r.json())
    assert r.json()["distance_m"] > 30


def test_hard_fence_refuses_outside_and_keeps_claim(client, db):
    _, claim, w, _ = claimed(client, db, geofence=circle(radius_m=100))
    r = _checkin(client, claim, w, fix(LAT + 0.01, LON))
    assert r.status_code == 422 and r.json()["code"] == "outside_fence" and r.json()["distance_m"] > 900
    assert client.get(f"/v1/claims/{claim['id']}", headers=w).json()["state"] == "claimed"
    ok = _checkin(client, claim, w, fix())
    assert ok.status_code == 201 and ok.json()["verdict"] == "inside"
    assert client.get(f"/v1/claims/{claim['id']}", headers=w).json()["state"] == "checked_in"


def test_accuracy_edges(client, db):
    # ~130 m from a 100 m circle's centre = 30 m outside: a ±25 m (68 %) fix is uncertain, a ±5 m fix outside.
    lat = LAT + 130 / 111_320
    _, claim, w, _ = claimed(client, db, geofence=circle(radius_m=100), hard_fence=False)
    assert _checkin(client, claim, w, fix(lat, LON, accuracy_m=25)).json()["verdict"] == "uncertain"
    _, claim, w, _ = claimed(client, db, geofence=circle(radius_m=100), hard_fence=False)
    assert _checkin(client, claim, w, fix(lat, LON, accuracy_m=5)).json()["verdict"] == "outside"
    # 1 km away with a huge (but accepted) accuracy: the slack is capped, so still outside.
    _, claim, w, _ = claimed(client, db, geofence=circle(radius_m=100), hard_fence=False)
    far = _checkin(client, claim, w, fix(LAT + 0.01, LON, accuracy_m=300))
    assert far.status_code == 201 and far.json()["verdict"] == "outside"
    _, claim, w, _ = claimed(client, db, geofence=circle(radius_m=100), hard_fence=False)
    r = _checkin(client, claim, w, fix(accuracy_m=5000))
    assert r.status_code == 422 and r.json()["code"] == "accuracy_too_low"
    r = _checkin(client, claim, w, fix(accuracy_m=-1))
    assert r.status_code == 422


def test_mock_flag_and_zero_accuracy_and_centre_point_are_signals(client, db):
    _, claim, w, _ = claimed(client, db)
    r = _checkin(client, claim, w, fix(LAT, LON, accuracy_m=0, mock_location=True))
    assert r.status_code == 201
    codes = r.json()["reasons"]
    assert {"mock_location", "accuracy_zero", "at_fence_center"} <= set(codes)
    assert r.json()["risk_score"] >= 50
    assert all(s["detail"] for s in r.json()["signals"])


def test_honest_fix_has_no_signals(client, db):
    _, claim, w, _ = claimed(client, db)
    r = _checkin(client, claim, w, fix(LAT + 0.0003, LON - 0.0002, accuracy_m=14.2))
    assert r.status_code == 201 and r.json()["reasons"] == [] and r.json()["risk_score"] == 0


def test_shared_device_and_exact_repeat_across_workers(client, db):
    _, c1, w1, _ = claimed(client, db)
    first = fix(LAT + 0.00012345, LON + 0.00023456, device_id="shared-phone-1")
    assert _checkin(client, c1, w1, first).json()["reasons"] == []
    _, c2, w2, _ = claimed(client, db)
    second = dict(first, client_time=now().isoformat())
    r = _checkin(client, c2, w2, second)
    assert {"shared_device", "exact_coordinate_repeat"} <= set(r.json()["reasons"])


def test_impossible_travel_between_claims(client, db):
    _, w = auth_for(client, db, "worker")
    _, c1, _, _ = claimed(client, db, worker_headers=w)
    t0 = now() - timedelta(minutes=2)
    assert _checkin(client, c1, w, fix(client_time=t0.isoformat(), device_id="dev-travel")).status_code == 201
    # Shanghai one minute later
    _, c2, _, _ = claimed(client, db, worker_headers=w, geofence=circle(31.2304, 121.4737))
    r = _checkin(client, c2, w, fix(31.2304, 121.4737, client_time=(t0 + timedelta(minutes=1)).isoformat(),
                                    device_id="dev-travel"))
    assert "impossible_travel" in r.json()["reasons"], r.json()


def test_idempotent_checkin_replay(client, db):
    _, claim, w, _ = claimed(client, db)
    body = fix()
    a = _checkin(client, claim, w, body, key="ck-1")
    b = _checkin(client, claim, w, body, key="ck-1")
    assert a.status_code == b.status_code == 201 and a.json() == b.json()
    n = db.scalar(select(func.count()).select_from(Checkin).where(Checkin.claim_id == claim["id"]))
    assert n == 1
    c = _checkin(client, claim, w, dict(body, accuracy_m=20), key="ck-1")
    assert c.status_code == 422 and c.json()["code"] == "idempotency_key_reused"
    d = _checkin(client, claim, w, body)
    assert d.status_code == 409 and d.json()["code"] == "already_checked_in"


def test_worker_cannot_check_in_on_anothers_claim(client, db):
    _, claim, _, merchant = claimed(client, db)
    _, other = auth_for(client, db, "worker")
    r = _checkin(client, claim, other, fix())
    assert r.status_code == 404 and r.json()["code"] == "claim_not_found"
    assert client.get(f"/v1/claims/{claim['id']}", headers=other).status_code == 404
    assert client.get(f"/v1/claims/{claim['id']}/checkins", headers=other).status_code == 404
    assert _checkin(client, claim, merchant, fix()).status_code == 403
    assert client.get(f"/v1/claims/{claim['id']}", headers=merchant).status_code == 200
    _, other_merchant = auth_for(client, db, "merchant")
    assert client.get(f"/v1/claims/{claim['id']}", headers=other_merchant).status_code == 404


def test_checkout_dwell_and_short_dwell_signal(client, db):
    _, claim, w, _ = claimed(client, db, min_dwell_s=600)
    t0 = now() - timedelta(minutes=3)
    assert _checkin(client, claim, w, fix(client_time=t0.isoformat())).status_code == 201
    r = client.post(f"/v1/claims/{claim['id']}/checkouts", json=fix(LAT + 0.0002, LON), headers=w)
    assert r.status_code == 201, r.text
    assert 170 <= r.json()["dwell_s"] <= 200 and "short_dwell" in r.json()["reasons"]
    again = client.post(f"/v1/claims/{claim['id']}/checkouts", json=fix(), headers=w)
    assert again.status_code == 409 and again.json()["code"] == "already_checked_out"


def test_checkout_before_checkin_is_409(client, db):
    _, claim, w, _ = claimed(client, db)
    r = client.post(f"/v1/claims/{claim['id']}/checkouts", json=fix(), headers=w)
    assert r.status_code == 409 and r.json()["code"] == "not_checked_in"


def test_time_window_enforced(client, db):
    start = now() + timedelta(hours=3)
    _, claim, w, _ = claimed(client, db, starts_at=start.isoformat(), ends_at=(start + timedelta(hours=5)).isoformat())
    r = _checkin(client, claim, w, fix())
    assert r.status_code == 409 and r.json()["code"] == "outside_time_window"


def test_server_time_is_when_the_fix_arrived_not_when_it_was_processed(client, db):
    """A fix that waited in a busy server's queue is not 'skewed': it is dated by its arrival."""
    from accounts.models import User
    from checkin import service as checkins
    from checkin.schemas import CheckinCreate

    _, claim, _, _ = claimed(client, db)
    worker = db.get(User, claim["worker_id"])
    sent = now() - timedelta(minutes=10)
    body = CheckinCreate(**fix(client_time=sent.isoformat(), sent_at=sent.isoformat()))
    row = checkins.check_in(db_session=db, worker=worker, claim_id=claim["id"], body=body, ip=None,
                            received_at=sent + timedelta(seconds=1))
    assert row.server_time == sent + timedelta(seconds=1) and "client_clock_skew" not in row.reasons
    # Dated by processing time instead, the same fix reads as a phone clock 10 minutes slow.
    _, other, _, _ = claimed(client, db)
    late = checkins.check_in(db_session=db, worker=db.get(User, other["worker_id"]), claim_id=other["id"],
                             body=body, ip=None)
    assert "client_clock_skew" in late.reasons


def test_history_reads_by_index_answer_as_the_sql_they_replaced(client, db):
    """fieldproof_recent_fixes and fieldproof_device_accounts (migration 0019) against the SQL they replaced, on a
    random history of 5 workers on 3 phones over 100 days (phone clocks off by up to an hour): the same fixes in the
    same order, the same capped count, for 80 random windows (some ending exactly on fixes; no limit and no cap
    among the draws, as LIMIT NULL reads)."""
    import random

    from sqlalchemy import text

    from accounts.models import User
    from checkin import service as checkins
    from checkin.schemas import CheckinCreate
    from tests.helpers import DEVICE_ACCOUNTS_SQL, RECENT_FIXES_SQL

    rng = random.Random(19)
    claims = [claimed(client, db)[1] for _ in range(5)]
    workers = [db.get(User, c["worker_id"]).id for c in claims]
    first = checkins.check_in(db_session=db, worker=db.get(User, workers[0]), claim_id=claims[0]["id"],
                              body=CheckinCreate(**fix()), ip=None)
    devices = [f"phone-{rng.randrange(10**6)}-{i}" for i in range(3)]
    t0 = first.server_time
    stamps = []
    for _ in range(300):
        at = t0 - timedelta(seconds=rng.uniform(0, 100 * 86400))
        stamps.append(at)
        db.execute(text("""
            INSERT INTO checkin (id, claim_id, worker_id, task_id, kind, point, lat, lon, raw_lat, raw_lon, raw_crs,
                                 raw_coord_key, accuracy_m, accuracy_95_m, provider, device_id, client_time,
                                 server_time, verdict, distance_m, risk_score, reasons, signals, h3_r9)
            SELECT nextval('checkin_id_seq'), claim_id, :w, task_id, kind, point, lat + :d, lon, raw_lat, raw_lon,
                   raw_crs, raw_coord_key, accuracy_m, accuracy_95_m, provider, :device, :client, :at, verdict,
                   distance_m, risk_score, reasons, signals, h3_r9
              FROM checkin WHERE id = :id"""),
            {"w": rng.choice(workers), "device": rng.choice(devices), "d": rng.uniform(-1e-4, 1e-4), "at": at,
             "client": at - timedelta(seconds=rng.uniform(-600, 3600)), "id": first.id})
    recent = text("SELECT fieldproof_recent_fixes(:w, :since, :until, :n)")
    device_count = text("SELECT fieldproof_device_accounts(:device, :since, :until, :w, :cap)")
    answers = set()
    for _ in range(80):
        since = t0 - timedelta(days=rng.uniform(0, 100))
        until = since + timedelta(days=rng.uniform(0, 100))
        if rng.random() < 0.3:  # windows that start or end exactly on a fix: BETWEEN takes both ends
            since, until = sorted(rng.sample(stamps, 2))
        args = {"w": rng.choice(workers), "since": since, "until": until, "n": rng.choice([1, 4, 50, None]),
                "device": rng.choice(devices), "cap": rng.choice([0, 1, 2, 5, None])}
        want = db.execute(text(RECENT_FIXES_SQL), args).scalar_one()
        assert db.execute(recent, args).scalar_one() == want, args
        count = db.execute(text(DEVICE_ACCOUNTS_SQL), args).scalar_one()
        assert db.execute(device_count, args).scalar_one() == count, args
        answers.add((min(len(want), 4), count))
    assert len(answers) > 6  # the draws covered empty and full answers of both


def test_shared_ip_count_stops_at_the_threshold_with_the_full_counts_verdict(client, db):
    """fieldproof_ip_accounts (migration 0017) against the SQL it replaced, on random history: the same answer up to
    the threshold, at most the threshold; and through the service, the 9th account on one address is flagged."""
    import random

    from sqlalchemy import text

    from accounts.models import User
    from checkin import service as checkins
    from checkin.schemas import CheckinCreate
    from checkin.settings import get_checkin_settings

    enough = get_checkin_settings().shared_ip_min_accounts
    rng = random.Random(15)
    ip = f"198.51.100.{rng.randrange(1, 255)}"
    claims = [claimed(client, db)[1] for _ in range(enough + 1)]
    workers = [db.get(User, c["worker_id"]) for c in claims]
    # Through the service: 8 other accounts check in from one address, then the 9th is flagged, in words.
    rows = [checkins.check_in(db_session=db, worker=w, claim_id=c["id"], body=CheckinCreate(**fix()), ip=ip)
            for w, c in zip(workers, claims)]
    assert all("shared_ip" not in r.reasons for r in rows[:-1]) and "shared_ip" in rows[-1].reasons
    detail = next(s["detail"] for s in rows[-1].signals if s["code"] == "shared_ip")
    assert detail.startswith(f"at least {enough} other accounts checked in from {ip}")

    # Random history on two addresses: 240 more fixes copied from the first, by these 9 accounts, over 2 hours.
    t0 = rows[0].server_time
    for _ in range(240):
        db.execute(text("""
            INSERT INTO checkin (id, claim_id, worker_id, task_id, kind, point, lat, lon, raw_lat, raw_lon, raw_crs,
                                 raw_coord_key, accuracy_m, accuracy_95_m, provider, device_id, ip, client_time,
                                 server_time, verdict, distance_m, risk_score, reasons, signals, h3_r9)
            SELECT nextval('checkin_id_seq'), claim_id, :w, task_id, kind, point, lat, lon, raw_lat, raw_lon, raw_crs,
                   raw_coord_key, accuracy_m, accuracy_95_m, provider, device_id, CAST(:ip AS inet), client_time,
                   :t, verdict, distance_m, risk_score, reasons, signals, h3_r9
              FROM checkin WHERE id = :id"""),
            {"w": rng.choice(workers).id, "ip": rng.choice([ip, "198.51.100.0"]), "id": rows[0].id,
             "t": t0 - timedelta(seconds=rng.uniform(-300, 7200))})
    full = text("""SELECT count(DISTINCT worker_id) FROM (SELECT worker_id FROM checkin WHERE ip = CAST(:ip AS inet)
                     AND server_time > :since AND server_time <= :until AND worker_id <> :w
                     ORDER BY server_time DESC, id DESC LIMIT :n) x""")
    fast = text("SELECT fieldproof_ip_accounts(CAST(:ip AS inet), :since, :until, :w, :n, :enough)")
    seen = set()
    for _ in range(60):
        since = t0 - timedelta(seconds=rng.uniform(0, 7200))
        args = {"ip": rng.choice([ip, "198.51.100.0"]), "since": since, "w": rng.choice(workers).id,
                "until": since + timedelta(seconds=rng.uniform(60, 7200)), "n": rng.choice([3, 20, 500])}
        want = db.execute(full, args).scalar_one()
        for e in (1, 3, enough, 50):
            got = db.execute(fast, dict(args, enough=e)).scalar_one()
            assert got == min(want, e), (args, e, want, got)
        seen.add(want)
    assert len(seen) > 3  # the draws covered several answers, the threshold among them
    assert db.execute(fast, {"ip": None, "since": t0, "until": t0, "w": 0, "n": 500, "enough": 8}).scalar_one() == 0
