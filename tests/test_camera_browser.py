"""The in-app camera module (api/web/static/camera.js) in headless Chromium with a fake camera: it takes a
photo from getUserMedia, stamps the capture nonce, time and place on it, and the upload's receipt verifies."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.fieldwork import circle, fix, publish_approved, task_body
from tests.live import live_server
from tests.test_guards_parallel import _funded_merchant, _token, _users

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PLACE = (31.1904, 121.4337)  # Shanghai, away from other tests' places
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream", "--no-first-run"]

TAKE_AND_UPLOAD = """async ({nonce, expiresAt, claimId, auth, lat, lon}) => {
  const cam = await import('/app/static/camera.js');
  const shot = await cam.capture({nonce, expiresAt, lat, lon});
  const r = await fetch(`/v1/claims/${claimId}/evidence`,
                        {method: 'POST', body: cam.receiptForm(shot.blob, shot.receipt), headers: {Authorization: auth}});
  const img = document.createElement('img');
  img.src = URL.createObjectURL(shot.blob);
  img.style.width = '100%';
  document.body.replaceChildren(img);
  await img.decode();
  return {status: r.status, body: await r.json(), width: shot.width, height: shot.height, size: shot.blob.size,
          type: shot.blob.type, receipt: shot.receipt};
}"""

EXPIRED = """async ({nonce}) => {
  const cam = await import('/app/static/camera.js');
  try { await cam.capture({nonce, expiresAt: new Date(Date.now() - 1000).toISOString(), lat: 1, lon: 2}); }
  catch (e) { return e.code; }
  return 'no error';
}"""


@pytest.fixture(scope="module")
def server(test_database):
    with live_server("camera") as srv:
        yield srv


def _checked_in(server) -> tuple[int, dict, dict]:
    _, m_headers = _funded_merchant(server)
    ops = _token(server, _users(server, "ops", 1)[0])
    worker = _token(server, _users(server, "worker", 1)[0])
    with server.http() as c:
        task = publish_approved(c, task_body(geofence=circle(*PLACE), evidence={
            "photos_min": 1, "video": False, "allow_gallery": False}), m_headers, ops)
        claim = c.post(f"/v1/tasks/{task['id']}/claims", headers=worker).json()
        r = c.post(f"/v1/claims/{claim['id']}/checkins", json=fix(lat=PLACE[0] + 0.0002, lon=PLACE[1]), headers=worker)
        assert r.status_code == 201, r.text
    return claim["id"], r.json(), worker


def test_camera_module_takes_a_stamped_photo_whose_receipt_verifies(server):
    claim_id, checkin, worker = _checked_in(server)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            ctx = browser.new_context(base_url=server.url, viewport={"width": 390, "height": 844})
            ctx.grant_permissions(["camera"])
            page = ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto("/app/static/style.css")  # any page of the origin: the module is imported from it
            out = page.evaluate(TAKE_AND_UPLOAD, {
                "nonce": checkin["capture_nonce"], "expiresAt": checkin["capture_nonce_expires_at"],
                "claimId": claim_id, "auth": worker["Authorization"], "lat": PLACE[0], "lon": PLACE[1]})
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "camera-stamped-photo.png"), full_page=True)
            assert page.evaluate(EXPIRED, {"nonce": checkin["capture_nonce"]}) == "nonce_expired"
        finally:
            browser.close()
    assert out["type"] == "image/jpeg" and out["width"] > 0 and out["size"] > 1000, out
    assert out["status"] == 201, out
    assert out["body"]["capture_verified"] is True and out["body"]["reasons"] == []
    assert out["receipt"]["nonce"] == checkin["capture_nonce"]
    assert errors == []
