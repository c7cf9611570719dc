"""Builders for field-work scenarios through the real API (each test makes its own data)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.helpers import auth_for

# Qianmen area, Beijing (WGS-84): real coordinates so GCJ-02 offsets are the real ones.
STORE = (39.8990, 116.3976)  # lat, lon


def now() -> datetime:
    return datetime.now(timezone.utc)


def circle(lat=STORE[0], lon=STORE[1], radius_m=100.0) -> dict:
    return {"center": [lon, lat], "radius_m": radius_m}


def task_body(geofence=None, crs="wgs84", **over) -> dict:
    body = {"title": "门店拜访 store visit", "type": "store_visit", "reward_fen": 1500, "slots": 3,
            "starts_at": (now() - timedelta(hours=1)).isoformat(), "ends_at": (now() + timedelta(days=2)).isoformat(),
            "crs": crs, "geofence": geofence or circle(), "evidence": {"photos_min": 1, "video": False}}
    body.update(over)
    return body


def funded_merchant(client, db, available_fen: int = 1_000_000):
    """A merchant with its security deposit paid and money to publish tasks with."""
    user, headers = auth_for(client, db, "merchant")
    for purpose, amount in (("security_deposit", 10_000), ("available", available_fen)):
        r = client.post("/v1/me/deposits", json={"amount_fen": amount, "purpose": purpose}, headers=headers)
        assert r.status_code == 201, r.text
    return user, headers


def published_task(client, db, merchant_headers=None, ops_headers=None, **body_over):
    """Create, publish and approve a task; returns (task json, merchant headers)."""
    if merchant_headers is None:
        _, merchant_headers = funded_merchant(client, db)
    if ops_headers is None:
        _, ops_headers = auth_for(client, db, "ops")
    return publish_approved(client, task_body(**body_over), merchant_headers, ops_headers), merchant_headers


def publish_approved(client, body: dict, merchant_headers: dict, ops_headers: dict) -> dict:
    """Create, publish and approve a task through any HTTP client (in-process or a live server)."""
    r = client.post("/v1/tasks", json=body, headers=merchant_headers)
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    assert client.post(f"/v1/tasks/{tid}/publish", headers=merchant_headers).status_code == 200
    r = client.post(f"/v1/tasks/{tid}/review", json={"decision": "approve", "reason": "ok"}, headers=ops_headers)
    assert r.status_code == 200, r.text
    return r.json()


def claimed(client, db, worker_headers=None, **task_over):
    """A published task and a worker's claim on it: (task, claim, worker headers, merchant headers)."""
    task, merchant_headers = published_task(client, db, **task_over)
    if worker_headers is None:
        _, worker_headers = auth_for(client, db, "worker")
    r = client.post(f"/v1/tasks/{task['id']}/claims", headers=worker_headers)
    assert r.status_code == 201, r.text
    return task, r.json(), worker_headers, merchant_headers


_device = iter(range(10**6))


def fix(lat=STORE[0], lon=STORE[1], crs="wgs84", **over) -> dict:
    """A plausible phone fix (jittery accuracy, unique device) with overrides."""
    body = {"lat": lat, "lon": lon, "crs": crs, "accuracy_m": 12.5, "client_time": now().isoformat(),
            "device_id": f"device-{next(_device):06d}", "provider": "gps", "platform": "android",
            "mock_location": False}
    body.update(over)
    return body
