"""Tasks through the API: fences in every crs, review, hall, authorisation."""
from __future__ import annotations

from geo import crs as geocrs
from tests.fieldwork import STORE, circle, funded_merchant, published_task, task_body
from tests.helpers import auth_for


def test_merchant_creates_gcj02_task_stored_in_wgs84(client, db):
    _, m = auth_for(client, db, "merchant")
    glat, glon = geocrs.wgs84_to_gcj02(*STORE)
    r = client.post("/v1/tasks", json=task_body(circle(glat, glon), crs="gcj02"), headers=m)
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["state"] == "draft" and t["crs"] == "gcj02"
    assert abs(t["center"][0] - glon) < 1e-6 and abs(t["center"][1] - glat) < 1e-6
    wgs = client.get(f"/v1/tasks/{t['id']}", headers=m).json()
    assert abs(wgs["center"][0] - STORE[1]) < 1e-6 and abs(wgs["center"][1] - STORE[0]) < 1e-6


def test_invalid_fences_are_422_with_codes(client, db):
    _, m = auth_for(client, db, "merchant")
    lat, lon = STORE
    d = 0.002
    bowtie = {"type": "Polygon", "coordinates": [[[lon, lat], [lon + d, lat + d], [lon + d, lat], [lon, lat + d],
                                                  [lon, lat]]]}
    cases = {"fence_repair_changed_area": bowtie,
             "fence_too_small": circle(radius_m=1),
             "fence_too_large": circle(radius_m=500_000),
             "invalid_geofence": {"type": "LineString", "coordinates": [[lon, lat], [lon + d, lat]]},
             "invalid_coordinates": {"center": [lat, 200.0], "radius_m": 100}}
    for code, fence in cases.items():
        r = client.post("/v1/tasks", json=task_body(fence), headers=m)
        assert r.status_code == 422 and r.json()["code"] == code, (code, r.text)


def test_prohibited_fake_engagement_task_refused(client, db):
    _, m = auth_for(client, db, "merchant")
    r = client.post("/v1/tasks", json=task_body(title="刷好评 五星返现"), headers=m)
    assert r.status_code == 422 and r.json()["code"] == "prohibited_task_content"


def test_review_flow_and_roles(client, db):
    _, m = funded_merchant(client, db)
    _, w = auth_for(client, db, "worker")
    _, ops = auth_for(client, db, "ops")
    assert client.post("/v1/tasks", json=task_body(), headers=w).status_code == 403
    tid = client.post("/v1/tasks", json=task_body(), headers=m).json()["id"]
    assert client.post(f"/v1/tasks/{tid}/review", json={"decision": "approve"}, headers=ops).status_code == 409
    assert client.post(f"/v1/tasks/{tid}/publish", headers=m).json()["state"] == "pending_review"
    assert client.post(f"/v1/tasks/{tid}/review", json={"decision": "approve"}, headers=m).status_code == 403
    r = client.post(f"/v1/tasks/{tid}/review", json={"decision": "reject", "reason": ""}, headers=ops)
    assert r.status_code == 422 and r.json()["code"] == "reason_required"
    r = client.post(f"/v1/tasks/{tid}/review", json={"decision": "reject", "reason": "photo rules unclear"},
                    headers=ops)
    assert r.json()["state"] == "rejected" and r.json()["review_reason"] == "photo rules unclear"
    assert client.post(f"/v1/tasks/{tid}/publish", headers=m).json()["state"] == "pending_review"
    assert client.post(f"/v1/tasks/{tid}/review", json={"decision": "approve"}, headers=ops).json()["state"] == "published"


def test_merchant_cannot_see_or_act_on_another_merchants_task(client, db):
    task, _ = published_task(client, db)
    _, other = auth_for(client, db, "merchant")
    tid = task["id"]
    assert client.get(f"/v1/tasks/{tid}", headers=other).status_code == 404
    assert client.get(f"/v1/tasks/{tid}/progress", headers=other).status_code == 404
    assert client.post(f"/v1/tasks/{tid}/pause", headers=other).status_code == 404
    assert client.post(f"/v1/tasks/{tid}/close", headers=other).status_code == 404
    assert all(t["id"] != tid for t in client.get("/v1/tasks", headers=other).json())


def test_nearby_orders_by_distance_filters_and_speaks_callers_crs(client, db):
    lat, lon = STORE
    near, m = published_task(client, db, geofence=circle(lat + 0.001, lon), reward_fen=800)
    far, _ = published_task(client, db, merchant_headers=m, geofence=circle(lat + 0.01, lon), reward_fen=3000)
    _, w = auth_for(client, db, "worker")
    glat, glon = geocrs.wgs84_to_gcj02(lat, lon)
    r = client.get("/v1/tasks/nearby", params={"lat": glat, "lon": glon, "crs": "gcj02", "radius_m": 3000}, headers=w)
    assert r.status_code == 200, r.text
    ids = [t["id"] for t in r.json()]
    assert ids.index(near["id"]) < ids.index(far["id"])
    first = next(t for t in r.json() if t["id"] == near["id"])
    assert 5 < first["distance_m"] < 20  # to the fence's edge: the centre is 111 m away, the radius 100 m
    inside = client.get("/v1/tasks/nearby", params={"lat": lat + 0.001, "lon": lon, "radius_m": 500}, headers=w)
    assert next(t for t in inside.json() if t["id"] == near["id"])["distance_m"] == 0
    nlat, nlon = geocrs.wgs84_to_gcj02(lat + 0.001, lon)
    assert abs(first["center"][1] - nlat) < 1e-6 and abs(first["center"][0] - nlon) < 1e-6
    rich = client.get("/v1/tasks/nearby", params={"lat": lat, "lon": lon, "radius_m": 3000, "min_reward": 2000},
                      headers=w).json()
    assert far["id"] in [t["id"] for t in rich] and near["id"] not in [t["id"] for t in rich]
    small = client.get("/v1/tasks/nearby", params={"lat": lat, "lon": lon, "radius_m": 500}, headers=w).json()
    assert far["id"] not in [t["id"] for t in small]
    bad = client.get("/v1/tasks/nearby", params={"lat": "nan", "lon": lon}, headers=w)
    assert bad.status_code == 422


def test_paused_task_leaves_the_hall(client, db):
    task, m = published_task(client, db)
    _, w = auth_for(client, db, "worker")
    params = {"lat": STORE[0], "lon": STORE[1], "radius_m": 1000}
    assert task["id"] in [t["id"] for t in client.get("/v1/tasks/nearby", params=params, headers=w).json()]
    assert client.post(f"/v1/tasks/{task['id']}/pause", headers=m).json()["state"] == "paused"
    assert task["id"] not in [t["id"] for t in client.get("/v1/tasks/nearby", params=params, headers=w).json()]
    r = client.post(f"/v1/tasks/{task['id']}/claims", headers=w)
    assert r.status_code == 409 and r.json()["code"] == "task_not_open"
