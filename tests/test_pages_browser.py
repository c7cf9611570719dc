"""The three web pages in a real browser: Debian's Chromium driven by Playwright against a real uvicorn server.

The server commits, so it runs on its own throwaway database (created and migrated here, dropped at the end):
the rolled-back tests sharing the test database never see these rows. Geolocation is emulated by Playwright.
"""
from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select

from accounts import service as accounts
from checkin.models import Checkin
from core.idempotency import IdempotencyRecord
from tasks.models import Claim, Task
from tests.fieldwork import circle, publish_approved, task_body
from tests.browser import CHROMIUM, chromium
from tests.live import live_server

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (`apt-get install -y chromium`, done by `make test` as root)",
                allow_module_level=True)

LEAFLET = (Path(__file__).resolve().parent.parent / "api" / "web" / "node_modules" / "leaflet" / "dist"
           / "leaflet-src.esm.js").is_file()
needs_leaflet = pytest.mark.skipif(not LEAFLET, reason="Leaflet is not installed (`make web` runs npm ci)")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PHOTO = Path(__file__).parent / "data" / "photos" / "coffee.jpg"
PASSWORD = "browser tests 123"
RUN = uuid.uuid4().hex[:6]
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
# Each test works at its own place (Shanghai, far from other tests' Beijing data), so task halls do not mix.
PLACES = {"inside": (31.2304, 121.4737), "outside": (31.2404, 121.4937), "offline": (31.2204, 121.4537),
          "merchant": (31.2104, 121.4337), "heatmap": (31.2504, 121.5137)}
M_PER_DEG_LAT = 111_320.0


def north(place: tuple[float, float], metres: float) -> tuple[float, float]:
    return place[0] + metres / M_PER_DEG_LAT, place[1]


@pytest.fixture(scope="module")
def server(test_database):
    """uvicorn on a free loopback port, on a fresh database next to the test database."""
    with live_server("browser") as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


def new_phone(browser, server, place):
    """A phone-sized context that has granted geolocation, standing at ``place``."""
    ctx = browser.new_context(base_url=server.url, geolocation={"latitude": place[0], "longitude": place[1],
                                                                "accuracy": 12}, permissions=["geolocation"], **PHONE)
    ctx.set_default_timeout(20_000)
    return ctx


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("document.querySelectorAll('#toasts .toast').forEach(t => t.remove())")  # transient, cover content
    page.screenshot(path=str(ARTIFACTS / f"pages-{name}.png"), full_page=True)


def watch_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


# ---- data through the real API ------------------------------------------------------------------------------

_n = iter(range(1, 10_000))


def register(server, role: str) -> tuple[str, dict]:
    """A new worker or merchant; returns (username, auth headers)."""
    username = f"web_{role}_{next(_n)}_{RUN}"
    with server.http() as c:
        r = c.post("/v1/auth/register", json={"username": username, "password": PASSWORD, "role": role,
                                              "display_name": f"{role} {username[-6:]}"})
        assert r.status_code == 201, r.text
    return username, login_headers(server, username)


def login_headers(server, username: str) -> dict:
    with server.http() as c:
        r = c.post("/v1/auth/token", data={"username": username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}


def ops_user(server) -> tuple[str, dict]:
    username = f"web_ops_{next(_n)}_{RUN}"
    with server.session() as s:
        accounts.create(db_session=s, username=username, password=PASSWORD, role="ops", self_service=False)
    return username, login_headers(server, username)


def funded_merchant(server) -> tuple[str, dict]:
    username, headers = register(server, "merchant")
    with server.http() as c:
        for purpose, amount in (("security_deposit", 10_000), ("available", 1_000_000)):
            r = c.post("/v1/me/deposits", json={"amount_fen": amount, "purpose": purpose}, headers=headers)
            assert r.status_code == 201, r.text
    return username, headers


def published_task(server, place, merchant=None, radius_m=100.0, slots=10, title="Store visit") -> tuple[dict, dict]:
    """A published task with a circle fence at ``place``; returns (task, merchant headers)."""
    _, m = merchant or funded_merchant(server)
    _, ops = ops_user(server)
    body = task_body(circle(place[0], place[1], radius_m), title=f"{title} {RUN}", slots=slots)
    with server.http() as c:
        return publish_approved(c, body, m, ops), m


def fix(lat, lon, device: str) -> dict:
    return {"lat": lat, "lon": lon, "crs": "wgs84", "accuracy_m": 11.5, "client_time": datetime.now(timezone.utc)
            .isoformat(), "device_id": device, "provider": "gps", "platform": "android", "mock_location": False}


def claim_and_check_in(server, task, worker_headers, place) -> dict:
    with server.http() as c:
        r = c.post(f"/v1/tasks/{task['id']}/claims", headers=worker_headers)
        assert r.status_code == 201, r.text
        claim = r.json()
        lat, lon = north(place, 25)
        r = c.post(f"/v1/claims/{claim['id']}/checkins", json=fix(lat, lon, f"dev-{uuid.uuid4().hex[:10]}"),
                   headers=worker_headers)
        assert r.status_code == 201, r.text
    return claim


def sign_in(page, path: str, username: str) -> None:
    page.goto(path)
    page.fill("#login input[name=username]", username)
    page.fill("#login input[name=password]", PASSWORD)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#app:not([hidden])")


def wait_loaded(img, timeout_s: float = 20) -> None:
    """Until an <img> has decoded (polled from Python: the pages' CSP forbids wait_for_function's eval)."""
    deadline = time.monotonic() + timeout_s
    while not img.evaluate("img => img.complete && img.naturalWidth > 0"):
        assert time.monotonic() < deadline, "image did not load"
        time.sleep(0.1)


def upload_photo(server, claim_id: int, headers: dict) -> int:
    with server.http() as c:
        r = c.post(f"/v1/claims/{claim_id}/evidence", files={"file": ("p.jpg", PHOTO.read_bytes(), "image/jpeg")},
                   headers=headers)
        assert r.status_code == 201, r.text
        return r.json()["id"]


def process_evidence(server) -> None:
    """What the Celery worker does with new uploads (hashing, duplicates), run here on the server's database."""
    from core import jobs
    from evidence import service  # noqa: F401  (registers the evidence.process handler)

    with server.session() as s:
        pending = s.scalars(select(jobs.Job.id).where(jobs.Job.kind == "evidence.process",
                                                      jobs.Job.state == "pending")).all()
        for job_id in pending:
            jobs.run(db_session=s, job_id=job_id)
            s.commit()


def checkins_of(server, claim_id: int) -> int:
    with server.session() as s:
        return s.scalar(select(func.count()).select_from(Checkin).where(Checkin.claim_id == claim_id))


# ---- tests --------------------------------------------------------------------------------------------------

def test_pages_and_assets_are_served(server):
    with server.http() as c:
        for page in ("worker", "merchant", "ops"):
            r = c.get(f"/app/{page}")
            assert r.status_code == 200 and "text/html" in r.headers["content-type"]
            assert "default-src 'self'" in r.headers["content-security-policy"]
        assert c.get("/app/static/common.js").headers["content-type"].startswith("text/javascript")
        cfg = c.get("/app/config.json").json()
        assert cfg["tile_url"] == "" and cfg["leaflet"] == LEAFLET  # no tiles in tests (conftest)
        assert c.get("/app/vendor/leaflet/leaflet-src.esm.js").status_code == (200 if LEAFLET else 404)
        r = c.get("/app/static/..%2F..%2Frouters%2Fpages.py")
        assert r.status_code == 404 and r.json()["code"] == "file_not_found"
        assert c.get("/app/nope").json()["code"] == "page_not_found"


def test_worker_checks_in_inside_then_outside_a_fence(server, browser):
    task_in, _ = published_task(server, PLACES["inside"], title="Inside")
    task_out, _ = published_task(server, PLACES["outside"], title="Outside")
    username, _ = register(server, "worker")
    ctx = new_phone(browser, server, north(PLACES["inside"], 30))
    page = ctx.new_page()
    errors = watch_errors(page)
    sign_in(page, "/app/worker", username)

    # Nearby tasks come from the emulated position; claim, check in, see the verdict.
    page.click(f"#nearby [data-task='{task_in['id']}'] button")
    page.locator("#claims .item[data-state=claimed] button.checkin").click()
    verdict = page.locator("#claims .verdict .verdict-text").first
    verdict.wait_for()
    assert verdict.inner_text() == "在围栏内"  # the page speaks Chinese by default
    shot(page, "worker-inside")

    # Photo from the camera input, then submit: the claim is waiting for the merchant.
    page.locator("#claims input.photo-input").set_input_files(str(PHOTO))
    page.wait_for_selector("#claims .thumbs img")
    page.click("#claims button.submit")
    page.wait_for_selector("#claims .item[data-state=submitted]")

    # 600 m north of the second task's 100 m hard fence: refused, with the reason shown.
    far = north(PLACES["outside"], 600)
    ctx.set_geolocation({"latitude": far[0], "longitude": far[1], "accuracy": 12})
    page.click("#nearby-refresh")
    page.wait_for_selector(f"#position:has-text('{far[0]:.5f}')")
    page.click(f"#nearby [data-task='{task_out['id']}'] button")
    page.locator("#claims .item[data-state=claimed] button.checkin").click()
    refused = page.locator("#claims .verdict.error").first
    refused.wait_for()
    # Plain words with the distance; the code only in the title (for support), never in the text.
    assert "围栏外" in refused.inner_text() and "outside_fence" not in refused.inner_text()
    assert refused.get_attribute("title") == "outside_fence"
    shot(page, "worker-outside")
    with server.session() as s:
        claims = {c.task_id: c for c in s.scalars(select(Claim).where(Claim.task_id.in_([task_in["id"], task_out["id"]])))}
        assert claims[task_in["id"]].state == "submitted"
        assert claims[task_out["id"]].state == "claimed"
        assert checkins_of(server, claims[task_out["id"]].id) == 0
    assert errors == []
    ctx.close()


def test_offline_check_in_is_replayed_with_the_same_key(server, browser):
    task, _ = published_task(server, PLACES["offline"], title="Offline")
    username, worker = register(server, "worker")
    with server.http() as c:
        claim = c.post(f"/v1/tasks/{task['id']}/claims", headers=worker).json()
    ctx = new_phone(browser, server, north(PLACES["offline"], 20))
    page = ctx.new_page()
    errors = watch_errors(page)
    sent_keys: list[str] = []
    page.on("request", lambda r: sent_keys.append(r.headers.get("idempotency-key"))
            if r.method == "POST" and r.url.endswith(f"/v1/claims/{claim['id']}/checkins") else None)
    sign_in(page, "/app/worker", username)
    page.wait_for_selector(f"#claims .item[data-claim='{claim['id']}'] button.checkin")

    ctx.set_offline(True)
    page.click(f"#claims .item[data-claim='{claim['id']}'] button.checkin")
    page.wait_for_selector("#claims .verdict.queued")
    page.wait_for_selector("#net.offline")
    shot(page, "worker-offline-queued")
    queue = page.evaluate("JSON.parse(localStorage.getItem('fp.queue'))")
    assert len(queue) == 1 and queue[0]["path"] == f"/v1/claims/{claim['id']}/checkins"
    key, body = queue[0]["key"], queue[0]["json"]
    assert checkins_of(server, claim["id"]) == 0

    ctx.set_offline(False)  # the page's "online" handler sends the queue
    page.wait_for_selector(f"#claims .item[data-claim='{claim['id']}'] .verdict.inside")
    assert page.evaluate("JSON.parse(localStorage.getItem('fp.queue'))") == []
    assert sent_keys and set(sent_keys) == {key}
    assert checkins_of(server, claim["id"]) == 1
    with server.session() as s:
        assert s.scalar(select(func.count()).select_from(IdempotencyRecord).where(IdempotencyRecord.key == key)) == 1

    # The phone resending the same queued request (say the answer was lost) gets the stored answer: still one.
    with server.http() as c:
        r = c.post(f"/v1/claims/{claim['id']}/checkins", json=body, headers={**worker, "Idempotency-Key": key})
    assert r.status_code == 201 and r.headers.get("idempotent-replayed") == "true", r.text
    assert checkins_of(server, claim["id"]) == 1
    shot(page, "worker-offline-replayed")
    assert errors == []
    ctx.close()


@needs_leaflet
def test_merchant_confirms_a_submission_and_draws_a_task(server, browser):
    merchant = funded_merchant(server)
    task, _ = published_task(server, PLACES["merchant"], merchant=merchant, title="Confirm me")
    # Someone on another merchant's task uploaded the same photo first: the console shows the pair side by side.
    other_task, _ = published_task(server, north(PLACES["merchant"], 3000), title="Elsewhere")
    _, other_worker = register(server, "worker")
    other_claim = claim_and_check_in(server, other_task, other_worker, north(PLACES["merchant"], 3000))
    upload_photo(server, other_claim["id"], other_worker)
    process_evidence(server)
    _, worker = register(server, "worker")
    claim = claim_and_check_in(server, task, worker, PLACES["merchant"])
    upload_photo(server, claim["id"], worker)
    process_evidence(server)
    with server.http() as c:
        assert c.post(f"/v1/claims/{claim['id']}/submit", headers=worker).status_code == 200

    ctx = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 1000})
    ctx.set_default_timeout(20_000)
    page = ctx.new_page()
    errors = watch_errors(page)
    sign_in(page, "/app/merchant", merchant[0])
    page.click(f"#tasks [data-task='{task['id']}'] button.open-queue")
    card = page.locator(f"#queue .submission[data-claim='{claim['id']}']")
    card.locator(".thumbs img").wait_for()
    card.locator(".leaflet-interactive").first.wait_for()  # the fence and the check-in point on the map
    wait_loaded(card.locator(".thumbs img").first)
    assert "inside" in card.locator(".fixes").get_attribute("data-verdicts")
    # Another merchant's claim: said so in plain words, without its claim, task or worker.
    pair = card.locator(".pair.duplicate", has_text="与另一商家任务中的照片相似").first  # (others may match too)
    pair.wait_for()
    assert "#" not in pair.locator(".dup-where").inner_text()
    assert pair.locator("img").count() == 2
    for i in (0, 1):
        wait_loaded(pair.locator("img").nth(i))
    shot(page, "merchant-queue")
    card.locator("button.confirm").click()
    page.click("#decide[open] #decide-ok")  # the confirmation step lists the claim first
    page.wait_for_selector(f"#queue .submission[data-claim='{claim['id']}']", state="detached")
    with server.session() as s:
        assert s.get(Claim, claim["id"]).state in ("confirmed", "accepted", "spot_check", "paid")

    # Draw a circle (centre, then a point on the edge) and publish: the task goes to ops' review.
    page.select_option("#draw-mode", "circle")
    draw = page.locator("#draw-map")
    draw.scroll_into_view_if_needed()
    box = draw.bounding_box()
    draw.click(position={"x": box["width"] / 2, "y": box["height"] / 2})
    draw.click(position={"x": box["width"] / 2 + 60, "y": box["height"] / 2})
    assert float(page.input_value("#task-form input[name=radius_m]")) > 0
    title = f"Drawn task {RUN}"
    page.fill("#task-form input[name=title]", title)
    page.click("#task-form button[type=submit]")
    page.wait_for_selector(f"#tasks .item:has-text('{title}') .badge.pending_review")
    shot(page, "merchant-drawn")
    with server.session() as s:
        drawn = s.scalar(select(Task).where(Task.title == title))
        assert drawn.state == "pending_review" and drawn.fence_kind == "circle" and drawn.radius_m > 10
    assert errors == []
    ctx.close()


def _heat_summary(page) -> tuple[int, int]:
    s = page.locator("#heat-summary")
    return int(s.get_attribute("data-cells") or 0), int(s.get_attribute("data-total") or 0)


def test_ops_heatmap_changes_after_check_ins_are_rolled_up(server, browser):
    place = PLACES["heatmap"]
    username, _ = ops_user(server)
    ctx = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 1000})
    ctx.set_default_timeout(20_000)
    page = ctx.new_page()
    errors = watch_errors(page)
    sign_in(page, f"/app/ops#{place[0]},{place[1]},14", username)
    page.wait_for_selector("#heat-summary[data-cells]")
    before = _heat_summary(page)
    metrics = page.eval_on_selector_all("#heat-metric option", "os => os.map(o => o.value)")
    assert "checkins" in metrics and "workers" in metrics

    # Five distinct workers (the k-anonymity floor) check in at one place; then the real roll-up task runs.
    task, _ = published_task(server, place, slots=10, title="Heat")
    for _ in range(5):
        claim_and_check_in(server, task, register(server, "worker")[1], place)
    page.click("#heat-form button[type=submit]")
    page.wait_for_timeout(500)
    assert _heat_summary(page) == before  # not rolled up yet: the map has not changed
    out = subprocess.run([sys.executable, "-c", "from workers.tasks import roll_up_heatmap; print(roll_up_heatmap())"],
                         env=server.env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    page.click("#heat-form button[type=submit]")
    page.wait_for_selector(f"#heat-summary:not([data-total='{before[1]}'])")
    cells, total = _heat_summary(page)
    assert cells > before[0] and total >= before[1] + 5
    if LEAFLET:
        page.locator("#heat-map .leaflet-interactive").first.wait_for()
    shot(page, "ops-heatmap")
    page.wait_for_selector("#stats table")
    assert errors == []

    # Without Leaflet (not installed, or blocked) the page still loads and lists the cells.
    bare = ctx.new_page()
    bare.route("**/app/vendor/**", lambda route: route.abort())
    bare.goto(f"/app/ops#{place[0]},{place[1]},14")  # same browser storage: already signed in
    bare.wait_for_selector("#heat-map.map-missing")
    bare.wait_for_selector("#heat-table:not([hidden]) tbody tr")
    assert int(bare.locator("#heat-summary").get_attribute("data-cells")) == cells
    shot(bare, "ops-without-leaflet")
    ctx.close()
