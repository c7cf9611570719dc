"""Heatmap roll-ups against a direct count, k-anonymity suppression, GeoJSON validity, ops-only access."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from checkin.models import Checkin
from geo import crs as geocrs
from geo import h3cells, heatmap
from tests.fieldwork import STORE, claimed, fix
from tests.helpers import auth_for

NOW = datetime.now(timezone.utc)
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
                              since=NOW - timedelta(days=1), until=NOW + timedelta(hours=1), k=1)
        assert {c: v for c, v, _ in cells} == {c: n for c, n in direct.items()}


def test_small_cells_are_suppressed(client, db):
    _checkins(client, db, 3)
    heatmap.roll_up(db_session=db)
    args = dict(db_session=db, bbox=BBOX, res=9, metric="workers", since=NOW - timedelta(days=1),
                until=NOW + timedelta(hours=1))
    assert heatmap.query(**args, k=5) == []
    assert heatmap.query(**args, k=1)


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
