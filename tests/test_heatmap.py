"""Heatmap roll-ups against a direct count, k-anonymity suppression, GeoJSON validity, ops-only access."""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

from sqlalchemy import select, update

from checkin.models import Checkin
from geo import crs as geocrs
from geo import h3cells
from heatmap import service as heatmap
from tests.fieldwork import STORE, claimed, fix, now
from tests.helpers import auth_for

BBOX = (STORE[1] - 0.05, STORE[0] - 0.05, STORE[1] + 0.05, STORE[0] + 0.05)


def _checkins(client, db, n_workers: int, spread: float = 0.0002):
    for i in range(n_workers):
        _, claim, w, _ = claimed(client, db)
        r = client.post(f"/v1/claims/{claim['id']}/checkins",
                        json=fix(STORE[0] + spread * (i % 3), STORE[1] + spread * (i % 2)), headers=w)
        assert r.status_code == 201


def test_rollup_matches_direct_count_and_is_safe_twice(client, db):
    _checkins(client, db, 7)
    heatmap.roll_up(db_session=db)
    assert heatmap.roll_up(db_session=db) == 0  # nothing new: a second run changes nothing
    rows = db.execute(select(Checkin.lat, Checkin.lon, Checkin.worker_id)).all()
    for res in (7, 9):
        direct = Counter(h3cells.cell(lat, lon, res) for lat, lon, _ in rows
                         if BBOX[1] <= lat <= BBOX[3] and BBOX[0] <= lon <= BBOX[2])
        cells = heatmap.query(db_session=db, bbox=BBOX, res=res, metric="checkins",
                              since=now() - timedelta(days=1), until=now() + timedelta(hours=1), k=1)
        assert {c["cell"]: c["value"] for c in cells} == {c: n for c, n in direct.items()}


def test_small_cells_are_suppressed(client, db):
    _checkins(client, db, 3)
    heatmap.roll_up(db_session=db)
    args = dict(db_session=db, bbox=BBOX, res=9, metric="workers", since=now() - timedelta(days=1),
                until=now() + timedelta(hours=1))
    hidden = heatmap.query(**args, k=5)
    assert hidden == []
    shown = heatmap.query(**args, k=1)
    assert shown and hidden.hidden == len(shown) and hidden.k == 5  # the page can say how many, and why


def test_heatmap_endpoint_geojson_in_requested_crs_and_ops_only(client, db):
    _checkins(client, db, 6, spread=0.0)
    _, ops = auth_for(client, db, "ops")
    _, merchant = auth_for(client, db, "merchant")
    _, worker = auth_for(client, db, "worker")
    heatmap.roll_up(db_session=db)
    glat1, glon1 = geocrs.wgs84_to_gcj02(BBOX[1], BBOX[0])
    glat2, glon2 = geocrs.wgs84_to_gcj02(BBOX[3], BBOX[2])
    params = {"bbox": f"{glon1},{glat1},{glon2},{glat2}", "res": 9, "crs": "gcj02", "metric": "checkins"}
    r = client.get("/v1/ops/heatmap", params=params, headers=ops)
    assert r.status_code == 200, r.text
    fc = r.json()
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 1
    feature = fc["features"][0]
    assert feature["properties"]["checkins"] >= 6 and feature["properties"]["workers"] >= 5
    assert fc["hidden"] == 0 and fc["k"] == 5 and fc["units"]["checkins"] == "checkins"
    ring = feature["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) >= 7
    assert sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(ring, ring[1:])) > 0  # exterior counter-clockwise
    glat, glon = geocrs.wgs84_to_gcj02(*STORE)
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    assert min(xs) <= glon <= max(xs) and min(ys) <= glat <= max(ys)  # the hexagon sits on the GCJ-02 point
    for headers in (merchant, worker):
        assert client.get("/v1/ops/heatmap", params=params, headers=headers).status_code == 403
    bad = client.get("/v1/ops/heatmap", params=dict(params, bbox="1,2,3"), headers=ops)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_bbox"


def test_mvt_tile_decodes_with_the_expected_cell(client, db):
    import math

    import mapbox_vector_tile

    _checkins(client, db, 6, spread=0.0)
    _, ops = auth_for(client, db, "ops")
    heatmap.roll_up(db_session=db)
    z = 15  # → resolution 8
    n = 2 ** z
    x = int((STORE[1] + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(STORE[0]))) / math.pi) / 2 * n)
    r = client.get(f"/v1/ops/tiles/{z}/{x}/{y}.mvt", headers=ops)
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    layer = mapbox_vector_tile.decode(r.content)["cells"]
    cell8 = h3cells.h3_str(h3cells.cell(STORE[0], STORE[1], heatmap.zoom_to_res(z)))
    props = [f["properties"] for f in layer["features"]]
    assert any(p["cell"] == cell8 and p["value"] >= 6 for p in props)
    again = client.get(f"/v1/ops/tiles/{z}/{x}/{y}.mvt", headers={**ops, "If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304
    empty = client.get(f"/v1/ops/tiles/{z}/0/0.mvt", headers=ops)
    assert empty.status_code == 200 and empty.content == b""
    assert client.get(f"/v1/ops/tiles/{z}/{n}/0.mvt", headers=ops).status_code == 422
    _, merchant = auth_for(client, db, "merchant")
    assert client.get(f"/v1/ops/tiles/{z}/{x}/{y}.mvt", headers=merchant).status_code == 403


def test_backfill_cli_and_ops_stats(client, db, monkeypatch, capsys):
    from contextlib import contextmanager

    from api.cli import build_parser

    _checkins(client, db, 5, spread=0.0)

    @contextmanager
    def scope():
        yield db

    monkeypatch.setattr("core.db.session_scope", scope)
    assert heatmap.pending(db_session=db) >= 5
    args = build_parser().parse_args(["heatmap", "backfill", "--batch", "2"])
    assert args.func(args) == 0 and heatmap.pending(db_session=db) == 0
    _, ops = auth_for(client, db, "ops")
    body = client.get("/v1/ops/stats", headers=ops).json()
    store = next(r for r in body["by_type"] if r["type"] == "store_visit")
    assert store["by_state"].get("checked_in", 0) >= 5
    assert body["by_region"] and body["by_region"][0]["workers"] >= 5
    _, merchant = auth_for(client, db, "merchant")
    assert client.get("/v1/ops/stats", headers=merchant).status_code == 403


def _worker_fixes(client, db, n: int, *, spread: float = 0.0):
    """n workers each claim a task at the store and check in; returns [(claim id, worker headers)]."""
    out = []
    for i in range(n):
        _, claim, w, _ = claimed(client, db)
        r = client.post(f"/v1/claims/{claim['id']}/checkins", json=fix(STORE[0] + spread * i, STORE[1]), headers=w)
        assert r.status_code == 201, r.text
        out.append((claim["id"], w))
    return out


def test_outcomes_dwell_and_workers_match_the_raw_rows(client, db):
    from tasks import claims
    from tasks.models import Claim, ClaimEvent

    made = _worker_fixes(client, db, 6)
    for claim_id, w in made[:4]:  # four check out after a known stay
        db.execute(update(Claim).where(Claim.id == claim_id).values(checked_in_at=now() - timedelta(minutes=12)))
        assert client.post(f"/v1/claims/{claim_id}/checkouts", json=fix(), headers=w).status_code == 201
    paths = {made[0][0]: ["submitted", "confirmed", "accepted"], made[1][0]: ["submitted", "rejected"],
             made[2][0]: ["submitted", "confirmed", "spot_check", "closed"], made[3][0]: ["submitted"]}
    db.execute(update(Claim).where(Claim.id == made[3][0]).values(flags=["duplicate_evidence"]))
    for claim_id, steps in paths.items():
        state = "checked_in"
        for step in steps:
            claims.transition(db, claim_id, (state,) if step != "submitted" else ("checked_in", "changes_requested"),
                              step, actor_id=None)
            state = step
    assert db.scalar(select(ClaimEvent.from_state).where(ClaimEvent.claim_id == made[0][0],
                                                         ClaimEvent.to_state == "submitted")) == "checked_in"
    heatmap.roll_up(db_session=db)
    cells = heatmap.query(db_session=db, bbox=BBOX, res=9, metric="median_dwell_s", since=now() - timedelta(hours=2),
                          until=now() + timedelta(hours=1))
    store = next(c for c in cells if c["cell"] == h3cells.cell(*STORE))
    assert store["checkins"] >= 6 and store["workers"] >= 6
    assert (store["completions"], store["rejections"], store["spot_check_failures"], store["duplicate_flags"]) \
        >= (1, 1, 1, 1)
    # Claims placed in this cell by their check-ins, counted straight from the audit rows.
    direct = Counter(to for to, in db.execute(
        select(ClaimEvent.to_state).join(Checkin, Checkin.claim_id == ClaimEvent.claim_id)
        .where(Checkin.kind == "in", Checkin.h3_r9 == store["cell"])))
    assert store["completions"] == direct["accepted"] and store["rejections"] == direct["rejected"]
    # Every dwell was ~12 minutes: the median sits in the 10-15 minute bucket.
    assert 600 <= store["median_dwell_s"] <= 900


def test_ranges_read_days_and_ragged_hours_exactly(client, db):
    """Check-ins spread over four days: any range sums exactly what the raw rows in it hold."""
    made = _worker_fixes(client, db, 8)
    base = (now() - timedelta(days=4)).replace(hour=0, minute=0, second=0, microsecond=0)
    stamps = [base + timedelta(hours=h) for h in (1, 5, 23, 30, 47, 50, 71, 80)]
    for (claim_id, _), at in zip(made, stamps):
        db.execute(update(Checkin).where(Checkin.claim_id == claim_id).values(server_time=at))
    heatmap.roll_up(db_session=db)
    cell = h3cells.cell(*STORE, 7)
    for lo, hi in ((0, 96), (3, 72), (5, 6), (24, 48), (2, 49), (22, 75)):
        since, until = base + timedelta(hours=lo), base + timedelta(hours=hi)
        want = sum(1 for at in stamps if since <= at < until)
        got = heatmap.measures(db_session=db, res=7, since=since, until=until, bbox=BBOX, k=1)
        found = next((c for c in got if c["cell"] == cell), None)
        assert (found["checkins"] if found else 0) == want, (lo, hi)
        if found:  # the worker count is a lower bound of the range's distinct workers (8 here)
            assert 1 <= found["workers"] <= want


def test_settle_window_leaves_fresh_rows_for_the_next_run(client, db):
    _worker_fixes(client, db, 1)
    assert heatmap.roll_up(db_session=db, settle_s=3600) == 0
    assert heatmap.pending(db_session=db) >= 1
    assert heatmap.roll_up(db_session=db, settle_s=0) >= 1


def test_heatmap_rejects_unknown_metric_and_reversed_range(client, db):
    _, ops = auth_for(client, db, "ops")
    params = {"bbox": ",".join(map(str, BBOX)), "metric": "salary"}
    r = client.get("/v1/ops/heatmap", params=params, headers=ops)
    assert r.status_code == 422 and r.json()["code"] == "invalid_metric"
    r = client.get("/v1/ops/heatmap", params={"bbox": params["bbox"], "from": now().isoformat(),
                                              "to": (now() - timedelta(days=1)).isoformat()}, headers=ops)
    assert r.status_code == 422 and r.json()["code"] == "invalid_time_range"


def test_dwell_histogram_median():
    from geo import dwell

    hist = [0] * dwell.BUCKETS
    for seconds in (30, 200, 240, 250, 4000):
        hist = dwell.add(hist, dwell.one_hot(seconds))
    assert 180 <= dwell.median(hist) <= 300  # the true median, 240 s, lies in the 180-300 s bucket
    assert dwell.median([]) is None and dwell.add([], [1, 2]) == [1, 2]
    assert dwell.median(dwell.one_hot(10 ** 6)) == dwell.EDGES_S[-1]


def test_catch_up_folds_batch_after_batch_in_one_run(client, db):
    _worker_fixes(client, db, 3)
    waiting = heatmap.pending(db_session=db)
    assert waiting >= 3
    assert heatmap.catch_up(db_session=db, batch=1) == waiting and heatmap.pending(db_session=db) == 0


def test_catch_up_stops_after_a_pass_that_read_less_than_a_batch(client, db, monkeypatch):
    """A pass that read less than a batch folded everything settled: no second pass for the rows that settle after
    it (each pass costs a run's fixed cost again); a full batch is followed by another pass."""
    from heatmap import rollup

    passes, real = [], rollup.roll_up

    def counted(**kw):
        passes.append(real(**kw))
        return passes[-1]

    monkeypatch.setattr(rollup, "roll_up", counted)
    _worker_fixes(client, db, 3)
    waiting = heatmap.pending(db_session=db)
    assert 3 <= waiting < 100
    assert heatmap.catch_up(db_session=db, batch=100) == waiting and heatmap.pending(db_session=db) == 0
    assert passes == [waiting]
    _worker_fixes(client, db, 3)
    passes.clear()
    waiting = heatmap.pending(db_session=db)
    assert heatmap.catch_up(db_session=db, batch=2) == waiting and heatmap.pending(db_session=db) == 0
    assert len(passes) >= 2 and passes[-1] < 2 and all(n >= 2 for n in passes[:-1]), passes


def test_roll_up_arrays_reach_postgresql_exactly(db):
    """heatmap.rollup._arrays sends numbers, days and hours as array literals: every value comes back as sent (floats
    to the last bit, 64-bit cells, aware hours), with the one list parameter (dwell histograms) as before."""
    from datetime import date, datetime, timezone

    from sqlalchemy import Text

    from heatmap import rollup
    from heatmap.models import HeatCellDay, HeatCellHour

    hours = [datetime(2026, 12, 1, 5, tzinfo=timezone.utc), datetime(2031, 1, 2, 23, tzinfo=timezone.utc)]
    values = {"res": [5, 9], "cell": [2**62 + 12345, 617700169958293503], "hour": hours,
              "lat": [0.1 + 0.2, -33.123456789012345], "lon": [121.47370000000001, 1e-07], "workers": [0, 2**31 - 1],
              "dwell_hist": ["{1,2}", "{}"]}
    tv = rollup._arrays(HeatCellHour, values, {"dwell_hist": Text})
    rows = db.execute(select(*[tv.c[k] for k in values])).all()
    assert [tuple(r) for r in rows] == list(zip(*values.values()))
    days = {"day": [date(2026, 12, 1), date(1999, 12, 31)], "checkins": [3, 4]}
    tv = rollup._arrays(HeatCellDay, days)
    assert [tuple(r) for r in db.execute(select(*[tv.c[k] for k in days]))] == list(zip(*days.values()))
