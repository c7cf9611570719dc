"""Issue 13: no input reaches a 500 — dates, ids, numbers and NUL are bounded at the edge, database refusals are 4xx."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.fieldwork import claimed, fix, funded_merchant, now, task_body
from tests.helpers import auth_for


def _is_4xx(r, status=422):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) >= {"code", "detail"} and isinstance(body["detail"], str)
    return body


def test_far_future_client_time_refused_and_lists_keep_working(client, db):
    _, claim, w, _ = claimed(client, db)
    r = client.post(f"/v1/claims/{claim['id']}/checkins", json=fix(client_time="9999-12-31T23:59:59-14:00"), headers=w)
    _is_4xx(r)
    assert client.get("/v1/me/claims", headers=w).status_code == 200
    assert client.get(f"/v1/claims/{claim['id']}/checkins", headers=w).status_code == 200


def test_fix_more_than_minutes_ahead_refused(client, db):
    _, claim, w, _ = claimed(client, db)
    ahead = (now() + timedelta(hours=2)).isoformat()
    r = client.post(f"/v1/claims/{claim['id']}/checkins", json=fix(client_time=ahead), headers=w)
    assert _is_4xx(r)["code"] == "client_time_in_future"
    # a few minutes ahead is still a check-in (flagged as skew, not refused)
    soon = (now() + timedelta(minutes=6)).isoformat()
    r = client.post(f"/v1/claims/{claim['id']}/checkins", json=fix(client_time=soon), headers=w)
    assert r.status_code == 201 and "client_clock_skew" in r.json()["reasons"]


def test_task_dated_year_one_refused_and_task_list_works(client, db):
    _, m = funded_merchant(client, db)
    r = client.post("/v1/tasks", json=task_body(starts_at="0001-01-01T00:00:00+14:00"), headers=m)
    _is_4xx(r)
    assert client.get("/v1/tasks", headers=m).status_code == 200


@pytest.mark.parametrize("path", ["/v1/claims/9223372036854775808", "/v1/tasks/99999999999999999999",
                                  "/v1/evidence/9223372036854775808", "/v1/claims/0"])
def test_ids_beyond_bigint_are_422(client, db, path):
    _, h = auth_for(client, db, "ops")
    _is_4xx(client.get(path, headers=h))


def test_offsets_and_numbers_are_bounded(client, db):
    _, m = funded_merchant(client, db)
    _is_4xx(client.get("/v1/tasks?offset=9223372036854775808", headers=m))
    _, w = auth_for(client, db, "worker")
    _is_4xx(client.get("/v1/tasks/nearby?lat=39.9&lon=116.4&min_reward=1e30", headers=w))
    _is_4xx(client.get("/v1/tasks/nearby?lat=39.9&lon=116.4&min_reward=99999999999999999999", headers=w))
    _is_4xx(client.get("/v1/tasks/nearby?lat=39.9&lon=116.4&radius_m=nan", headers=w))


def test_nul_in_query_path_and_bodies_is_422(client, db):
    _, w = auth_for(client, db, "worker")
    assert _is_4xx(client.get("/v1/me/claims?state=a%00b", headers=w))["code"] == "nul_in_input"
    r = client.post("/v1/auth/register", json={"username": "nul_user", "password": "a\u0000very long secret",
                                               "role": "worker"})
    assert _is_4xx(r)["code"] == "nul_in_input"
    r = client.post("/v1/auth/token", data={"username": "x\x00y", "password": "whatever-long"})
    assert _is_4xx(r)["code"] == "nul_in_input"


def test_terms_for_missing_or_non_merchant_is_404(client, db):
    _, ops = auth_for(client, db, "ops")
    worker, _ = auth_for(client, db, "worker")
    for mid in (0, worker.id):
        r = client.put(f"/v1/merchants/{mid}/terms", json={"commission_bp": 100}, headers=ops)
        assert r.status_code in (404, 422), r.text
    r = client.put(f"/v1/merchants/{worker.id}/terms", json={"commission_bp": 100}, headers=ops)
    assert _is_4xx(r, 404)["code"] == "merchant_not_found"


@pytest.mark.parametrize("route", ["/v1/ops/stats", "/v1/ops/heatmap?bbox=116,39,117,40"])
def test_ops_ranges_at_the_end_of_time_are_422(client, db, route):
    _, ops = auth_for(client, db, "ops")
    sep = "&" if "?" in route else "?"
    _is_4xx(client.get(f"{route}{sep}to=0001-01-01T00:00:00Z", headers=ops))
    _is_4xx(client.get(f"{route}{sep}from=9999-12-31T23:59:59-14:00", headers=ops))


def test_database_refusals_map_to_4xx(app):
    """The table's backstop: a DataError or IntegrityError that slips past the edge is a 4xx, never a 500."""
    from fastapi import Depends
    from fastapi.testclient import TestClient
    from sqlalchemy import text

    from api.deps import get_db

    @app.get("/_test/data-error")
    def data_error(db_session=Depends(get_db)):
        db_session.execute(text("SELECT CAST('99999999999999999999' AS bigint)"))

    @app.get("/_test/fk-error")
    def fk_error(db_session=Depends(get_db)):
        db_session.execute(text("INSERT INTO merchant_terms (merchant_id, commission_bp, note) VALUES (0, 1, '')"))

    with TestClient(app, raise_server_exceptions=False) as c:
        assert _is_4xx(c.get("/_test/data-error"))["code"] == "invalid_value"
        assert _is_4xx(c.get("/_test/fk-error"), 404)["code"] == "referenced_not_found"


def test_inputs_that_once_reached_a_500(client, db):
    """Points at the poles in GCJ-02/BD-09 (the conversion's cos(lat) overflowed), a circle fence with an integer
    of 400 digits (float() overflowed), a static file name too long for the file system, a deposit key longer than
    the provider's key column: each is answered without a 5xx."""
    _, w = auth_for(client, db, "worker")
    for crs in ("gcj02", "bd09"):
        r = client.get("/v1/coords/convert", params={"lat": 90, "lon": 0, "src": crs, "dst": "wgs84"}, headers=w)
        assert r.status_code == 200 and r.json()["lat"] == 90, r.text
        r = client.get("/v1/tasks/nearby", params={"lat": -90, "lon": 0, "crs": crs}, headers=w)
        assert r.status_code == 200, r.text
    _, m = funded_merchant(client, db)
    huge = "1" + "0" * 400
    body = task_body().copy()
    body["geofence"] = {"center": [0, 0], "radius_m": 100}
    raw = __import__("json").dumps(body).replace('"center": [0, 0]', f'"center": [{huge}, 0]')
    r = client.post("/v1/tasks", content=raw, headers={**m, "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_coordinates", r.text
    assert client.get("/app/static/" + "A" * 300 + ".js").status_code == 404
    r = client.post("/v1/me/deposits", json={"amount_fen": 500, "purpose": "available"},
                    headers={**m, "Idempotency-Key": "k" * 200})
    assert r.status_code == 201, r.text
