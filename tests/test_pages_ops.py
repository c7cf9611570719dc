"""The ops dashboard in a real browser (Chinese, the default) on a seeded demo month, the local API docs offline,
the pages' GCJ-02 transform against geo.crs, and axe-core on the ops page.

The live server's database gets a small demo month (sim.month_db, the same code as `fieldproof demo`); base-map
tiles are off (tests have no internet), so maps draw on the plain grid.
"""
from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

import pytest
from sqlalchemy import func, select

from accounts import service as accounts
from accounts.models import User
from geo import crs as geocrs
from ledger import service as ledger
from sim import month, month_db
from tasks import demo
from tests.fieldwork import circle, publish_approved, task_body
from tests.browser import CHROMIUM, axe_violations, chromium
from tests.live import live_server

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (`apt-get install -y chromium`)", allow_module_level=True)
WEB = Path(__file__).resolve().parent.parent / "api" / "web" / "node_modules"
if not (WEB / "leaflet").is_dir() or not (WEB / "axe-core").is_dir() or not (WEB / "swagger-ui-dist").is_dir():
    pytest.skip("the web libraries are not installed (`make web` runs npm ci)", allow_module_level=True)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PASSWORD = "ops pages test 123"
RUN = uuid.uuid4().hex[:6]
BEIJING = "#39.935,116.40,12"
# A small month: few shops so each sees more than k = 5 distinct workers a day (the test stays fast).
SIZE = month.Size(workers=40, shops=6, days=30, seed=5)
LONELY = (31.30, 121.55)  # Shanghai: one worker checks in here, so the cell has data but stays hidden


@pytest.fixture(scope="module")
def server(test_database):
    with live_server("ops", extra_env={"FIELDPROOF_MAP_TILE_URL": ""}) as srv:
        with srv.session() as s:
            users = demo.load(db_session=s)
            srv.seeded = month_db.seed(db_session=s, ops=s.get(User, users["ops_demo"]), size=SIZE)
        yield srv


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


@pytest.fixture
def ops_page(server, browser):
    """A desktop page signed in as a fresh ops user; also returns the requests it made to other hosts."""
    username = f"ops_{uuid.uuid4().hex[:8]}"
    with server.session() as s:
        accounts.create(db_session=s, username=username, password=PASSWORD, role="ops", self_service=False)
    ctx = browser.new_context(base_url=server.url, viewport={"width": 1360, "height": 1000}, bypass_csp=True)
    ctx.set_default_timeout(30_000)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto("/app/ops" + BEIJING)
    page.fill("#login input[name=username]", username)
    page.fill("#login input[name=password]", PASSWORD)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#app:not([hidden])")
    yield page, errors
    ctx.close()


def shot(page, name: str, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("document.querySelectorAll('#toasts .toast').forEach(t => t.remove())")
    page.screenshot(path=str(ARTIFACTS / f"ops-{name}.png"), full_page=full_page)


def summary(page) -> dict:
    node = page.locator("#heat-summary")
    return {k: int(node.get_attribute(f"data-{k}")) for k in ("cells", "total", "hidden")}


def wait_summary_change(page, before: dict, deadline_s: float = 30) -> dict:
    deadline = time.monotonic() + deadline_s
    while (now := summary(page)) == before:
        assert time.monotonic() < deadline, "the heatmap did not change"
        time.sleep(0.2)
    return now


def lonely_check_in(server) -> None:
    """One worker checks in at LONELY (through the API), then the real roll-up task runs."""
    with server.http() as c:
        def login(name: str) -> dict:
            r = c.post("/v1/auth/token", data={"username": name, "password": PASSWORD})
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        names = {role: f"{role}_{uuid.uuid4().hex[:8]}" for role in ("merchant", "worker")}
        for role, name in names.items():
            r = c.post("/v1/auth/register", json={"username": name, "password": PASSWORD, "role": role})
            assert r.status_code == 201, r.text
        m, w = login(names["merchant"]), login(names["worker"])
        for purpose, amount in (("security_deposit", 10_000), ("available", 100_000)):
            r = c.post("/v1/me/deposits", json={"amount_fen": amount, "purpose": purpose}, headers=m)
            assert r.status_code == 201, r.text
        ops_name = f"ops_{uuid.uuid4().hex[:8]}"
        with server.session() as s:
            accounts.create(db_session=s, username=ops_name, password=PASSWORD, role="ops", self_service=False)
        task = publish_approved(c, task_body(circle(*LONELY, 100.0), title=f"Lonely {RUN}"), m, login(ops_name))
        claim = c.post(f"/v1/tasks/{task['id']}/claims", headers=w).json()
        fix = {"lat": LONELY[0], "lon": LONELY[1], "crs": "wgs84", "accuracy_m": 10.0, "provider": "gps",
               "client_time": datetime.now(timezone.utc).isoformat(), "device_id": f"dev-{RUN}", "mock_location": False}
        assert c.post(f"/v1/claims/{claim['id']}/checkins", json=fix, headers=w).status_code == 201
    out = subprocess.run([sys.executable, "-c", "from workers.tasks import roll_up_heatmap; print(roll_up_heatmap())"],
                         env=server.env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


# ---- tests ---------------------------------------------------------------------------------------------------

def test_demo_month_is_seeded_once_and_the_ledger_balances(server):
    with server.session() as s:
        again = month_db.seed(db_session=s, ops=s.scalar(select(User).where(User.username == "ops_demo")), size=SIZE)
        assert again == {"seeded": False}  # `fieldproof demo` twice does not duplicate
        assert ledger.check(s) == []
        workers = select(func.count()).select_from(User).where(User.username.like("city_worker_%"))
        assert s.scalar(workers) == SIZE.workers


def test_heatmap_shows_demo_cells_and_says_how_many_are_hidden(server, ops_page):
    page, errors = ops_page
    assert server.seeded["seeded"] and server.seeded["claims"] > 1000
    page.wait_for_selector("#heat-summary[data-cells]")
    first = summary(page)
    assert first["cells"] > 0 and first["total"] > 0, first
    assert "个网格" in page.locator("#heat-summary").inner_text()  # Chinese by default
    legend = page.locator("#heat-legend").inner_text()
    assert "次签到" in legend  # the legend names its unit
    page.locator("#heat-map .leaflet-interactive").first.wait_for()
    shot(page, "heatmap")

    # A cell with data from one worker only: hidden, and the page says so and why (k).
    lonely_check_in(server)
    page.goto(f"/app/ops#{LONELY[0]},{LONELY[1]},15")
    page.reload()  # only the fragment changed: load the page again, centred there
    page.wait_for_selector("#heat-summary[data-cells]")
    page.locator("#heat-res").select_option("9")
    deadline = time.monotonic() + 30
    while summary(page)["hidden"] < 1:
        assert time.monotonic() < deadline, summary(page)
        time.sleep(0.2)
    assert summary(page)["cells"] == 0
    note = page.locator("#heat-hidden")
    assert note.is_visible() and "5 名地推人员" in note.inner_text() and "隐藏" in note.inner_text()
    shot(page, "heatmap-hidden")
    assert errors == []


def test_time_slider_changes_the_heatmap(ops_page):
    page, errors = ops_page
    page.wait_for_selector("#heat-summary[data-cells]")
    week = summary(page)
    page.locator("#heat-from").fill("30")  # the last 30 days
    month_total = wait_summary_change(page, week)
    assert month_total["total"] > week["total"]
    assert "30 天前" in page.locator("#heat-from-out").inner_text()
    page.locator("#heat-from").fill("2")
    page.locator("#heat-to").fill("1")  # one day, yesterday
    day = wait_summary_change(page, month_total)
    assert day["total"] < week["total"]
    assert errors == []


def test_spot_check_card_shows_the_matched_original_and_the_check_in_map(ops_page):
    page, errors = ops_page
    pair = page.locator("#spot [data-spot] .pair").first
    pair.wait_for()
    for img in (pair.locator("img.submitted"), pair.locator("img.original")):
        deadline = time.monotonic() + 20
        while not img.evaluate("i => i.complete && i.naturalWidth > 0"):
            assert time.monotonic() < deadline, "photo did not load"
            time.sleep(0.1)
    assert "匹配的原图" in pair.inner_text()
    card = page.locator("#spot [data-spot]", has=page.locator(".pair")).first
    card.locator(".spot-map .leaflet-interactive").first.wait_for()  # fence and check-in points
    assert card.locator(".spot-map path.leaflet-interactive").count() >= 2
    card.scroll_into_view_if_needed()
    shot(page, "spot-check")
    assert errors == []


def test_user_search_then_freeze(server, ops_page):
    page, errors = ops_page
    with server.session() as s:
        target = s.scalar(select(User).where(User.username == "city_worker_0003"))
    page.fill("#user-q", target.display_name)  # by display name (Chinese)
    page.click("#user-search button[type=submit]")
    item = page.locator(f"#users [data-user='{target.id}']")
    item.wait_for()
    assert "city_worker_0003" in item.inner_text()
    item.locator("input").fill("演示：冻结测试")
    item.get_by_role("button", name="冻结").click()
    page.locator(f"#users [data-user='{target.id}'][data-frozen='true']").wait_for()
    with server.session() as s:
        assert s.get(User, target.id).frozen_at is not None
    shot(page, "user-frozen")
    assert errors == []


def test_api_docs_render_offline(server, browser):
    ctx = browser.new_context(base_url=server.url)
    ctx.set_default_timeout(30_000)
    outside: list[str] = []
    local = urlparse(server.url).netloc

    def route(r):
        if urlparse(r.request.url).netloc != local and not r.request.url.startswith(("data:", "blob:")):
            outside.append(r.request.url)
            return r.abort()
        return r.continue_()

    ctx.route("**/*", route)
    page = ctx.new_page()
    page.goto("/docs")
    page.locator(".swagger-ui .opblock").first.wait_for()
    assert page.locator(".swagger-ui .opblock").count() > 20
    shot(page, "docs", full_page=False)
    page.goto("/redoc")
    page.get_by_text("Fieldproof", exact=False).first.wait_for()
    page.locator("[data-section-id]").first.wait_for()
    shot(page, "redoc", full_page=False)
    assert outside == []
    ctx.close()


def test_js_gcj02_matches_geo_crs(server, browser):
    points = [(39.9042, 116.4074), (31.2304, 121.4737), (23.1291, 113.2644), (43.8256, 87.6168), (45.8038, 126.5350),
              (29.6520, 91.1721), (18.2528, 109.5119), (22.3193, 114.1694), (35.6762, 139.6503), (25.0330, 121.5654)]
    page = browser.new_page(base_url=server.url)
    page.goto("/app/config.json")  # same origin, no page script: import map.js and call it
    got = page.evaluate("""async (pts) => { const m = await import('/app/static/map.js'); await m.loadOutline();
        return pts.map(([a, b]) => [m.wgs84ToGcj02(a, b), m.gcj02ToWgs84(a, b)]); }""", points)
    page.close()
    for (lat, lon), (fwd, back) in zip(points, got):
        for mine, theirs in ((fwd, geocrs.wgs84_to_gcj02(lat, lon)), (back, geocrs.gcj02_to_wgs84(lat, lon))):
            assert abs(mine[0] - theirs[0]) < 1e-6 and abs(mine[1] - theirs[1]) < 1e-6, (lat, lon, mine, theirs)
    shifted = [p for p, (fwd, _) in zip(points, got) if (fwd[0], fwd[1]) != p]
    assert len(shifted) == 7  # mainland points move; Hong Kong, Tokyo and Taipei do not


def test_ops_page_has_no_serious_accessibility_violations(ops_page):
    page, errors = ops_page
    page.wait_for_selector("#heat-summary[data-cells]")
    page.locator("#spot [data-spot]").first.wait_for()
    page.wait_for_selector("#stats table")
    bad = axe_violations(page)
    assert bad == [], bad
    assert errors == []


def test_english_is_available_and_every_string_is_translated(ops_page):
    page, errors = ops_page
    page.wait_for_selector("#stats table")
    page.click("#lang")  # reloads in English
    page.wait_for_selector("#heat-summary[data-cells]")
    page.locator("#spot [data-spot]").first.wait_for()
    page.wait_for_selector("#stats table")
    text = page.locator("#app").inner_text()
    assert "Heatmap" in text and "Spot checks" in text and "Legend (in check-ins)" in text
    for prefix in ("ops.", "metric.", "col.", "type.", "unit.", "stratum.", "verdict."):
        assert prefix not in text, prefix  # a key shown instead of words
    shot(page, "english")
    assert errors == []
