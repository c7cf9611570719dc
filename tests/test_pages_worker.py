"""The field worker's phone page, in Chinese, in a real browser (Debian's Chromium via Playwright, phone viewport,
emulated geolocation) against a real uvicorn: every worker flow from claim to withdrawal, the words shown for
refusals and reasons, accessibility (axe-core) and tap-target sizes measured in the browser."""
from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, update

from accounts.models import User
from tasks.models import Claim, Task
from tests.fieldwork import fix as api_fix
from tests.live import live_server
from tests.browser import axe_violations, chromium
from tests.test_pages_browser import (PHONE, north, ops_user, process_evidence,
                                      published_task, register, sign_in, wait_loaded, watch_errors)

sync_api = pytest.importorskip("playwright.sync_api")
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
PHOTOS = Path(__file__).parent / "data" / "photos"
# Each test at its own place (Shenzhen, away from the other browser tests' Shanghai and the API tests' Beijing).
PLACES = {"journey": (22.5431, 114.0579), "appeal": (22.5531, 114.0679), "geo": (22.5331, 114.0479),
          "spot": (22.5631, 114.0779), "svg": (22.5731, 114.0879)}
# Chinese text the page must show (the default language); the codes themselves must never appear.
RAW_CODES = ("task_already_done", "outside_fence", "at_fence_center", "evidence_incomplete", "spot_check")
# Everything a finger taps, as measured: hidden file inputs are tapped through their label.
TAP_TARGETS = ("button, select, textarea, input:not(.visually-hidden):not([type=hidden]), label.button, summary, "
               ".leaflet-control-zoom a")


@pytest.fixture(scope="module")
def server(test_database):
    """uvicorn on its own database; no random spot checks (hard flags still force them)."""
    with live_server("worker_page", {"FIELDPROOF_SPOT_CHECK_BASE_RATE": "0"}) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


def phone(browser, server, place, granted: bool = True):
    # bypass_csp: axe-core is injected as an inline script, which the page's CSP (rightly) refuses.
    ctx = browser.new_context(base_url=server.url, permissions=["geolocation"] if granted else [], bypass_csp=True,
                              geolocation={"latitude": place[0], "longitude": place[1], "accuracy": 12}, **PHONE)
    ctx.set_default_timeout(20_000)
    return ctx


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("document.querySelectorAll('#toasts .toast').forEach(t => t.remove())")
    page.screenshot(path=str(ARTIFACTS / f"worker-{name}.png"), full_page=True)


def toast_text(page) -> str:
    page.wait_for_selector("#toasts .toast")
    return " ".join(page.locator("#toasts .toast").all_inner_texts())


def card(page, claim_id: int):
    return page.locator(f"#claims .item[data-claim='{claim_id}']")


def in_viewport(page, locator) -> bool:
    """Wholly on screen and not under the fixed next-step bar."""
    box, bar = locator.bounding_box(), page.locator("#nextbar").bounding_box()
    bottom = bar["y"] if bar else page.viewport_size["height"]
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= bottom


def small_targets(page) -> list[dict]:
    return page.evaluate("""sel => [...document.querySelectorAll(sel)].filter(n => n.getClientRects().length
        && getComputedStyle(n).visibility !== 'hidden').map(n => { const r = n.getBoundingClientRect();
        return {what: n.outerHTML.slice(0, 80), w: Math.round(r.width), h: Math.round(r.height)}; })
        .filter(r => r.w < 44 || r.h < 44)""", TAP_TARGETS)


def real_name(server, username: str) -> None:
    with server.session() as s:
        s.execute(update(User).where(User.username == username).values(real_name_verified=True))
        s.commit()


def claim_id_of(server, task_id: int, username: str, state: str | None = None) -> int:
    with server.session() as s:
        stmt = select(Claim.id).join(User, User.id == Claim.worker_id).where(Claim.task_id == task_id,
                                                                             User.username == username)
        return s.scalar(stmt.where(Claim.state == state) if state else stmt)


def worked_claim(server, task, worker, place, **fix_over) -> int:
    """Claimed, checked in near ``place``, one photo, submitted: through the API."""
    with server.http() as c:
        claim = c.post(f"/v1/tasks/{task['id']}/claims", headers=worker).json()
        lat, lon = north(place, 20)
        body = api_fix(lat, lon, device_id=f"dev-{uuid.uuid4().hex[:10]}", **fix_over)
        assert c.post(f"/v1/claims/{claim['id']}/checkins", json=body, headers=worker).status_code == 201
        r = c.post(f"/v1/claims/{claim['id']}/evidence", headers=worker,
                   files={"file": ("p.jpg", (PHOTOS / "camera.jpg").read_bytes(), "image/jpeg")})
        assert r.status_code == 201, r.text
        assert c.post(f"/v1/claims/{claim['id']}/submit", headers=worker).status_code == 200
    return claim["id"]


# ---- the whole journey ---------------------------------------------------------------------------------------
def test_claim_check_in_out_photos_submit_paid_reclaim_and_withdraw(server, browser):
    place = PLACES["journey"]
    task, merchant = published_task(server, place, title="门店拜访", slots=3)
    username, _ = register(server, "worker")
    real_name(server, username)
    ctx = phone(browser, server, north(place, 30))
    page = ctx.new_page()
    errors = watch_errors(page)
    sign_in(page, "/app/worker", username)
    stale = ctx.new_page()  # a second tab, left open from before the claim: its hall still offers the task
    stale.goto("/app/worker")
    stale.locator(f"#nearby [data-task='{task['id']}'] button.claim").wait_for()
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator("#hall-h").inner_text() == "附近的任务"

    # The hall measures to the fence's edge like the check-in: 30 m from the centre of a 100 m circle is inside.
    hall_card = page.locator(f"#nearby [data-task='{task['id']}']")
    assert "您在围栏内" in hall_card.inner_text()
    hall_card.locator("button").click()
    checkin = page.locator("#claims .item[data-state=claimed] button.checkin")
    page.wait_for_function("document.activeElement && document.activeElement.classList.contains('checkin')")
    assert in_viewport(page, checkin), "the next step after Claim must be on screen (and focused)"
    assert page.locator("#nextbar").is_visible() and "签到" in page.locator("#nextbar-text").inner_text()
    claim_id = claim_id_of(server, task["id"], username)
    walk = card(page, claim_id).locator(".walk")
    walk.locator("strong").wait_for()
    assert walk.get_attribute("data-distance") == "0" and "您在围栏内" in walk.inner_text()
    card(page, claim_id).locator(".leaflet-interactive, svg .me").first.wait_for()  # the map: fence and me
    shot(page, "claimed")

    checkin.click()
    verdict = card(page, claim_id).locator(".verdict .verdict-text")
    verdict.wait_for()
    assert verdict.inner_text() == "在围栏内"
    assert "您在围栏内" in card(page, claim_id).locator(".verdict").inner_text()
    shot(page, "checked-in")
    card(page, claim_id).locator("button.checkout").click()
    card(page, claim_id).locator("text=已签退").wait_for()

    # Two photos; after a reload both are still there (from the API), one is deleted; then submit.
    card(page, claim_id).locator("input.photo-input").set_input_files([str(PHOTOS / "coffee.jpg"),
                                                                        str(PHOTOS / "brick.jpg")])
    page.wait_for_function("n => document.querySelectorAll(`#claims .item[data-claim='${n}'] figure.photo`).length"
                           " === 2", arg=claim_id)
    page.reload()
    photos = card(page, claim_id).locator("figure.photo")
    photos.nth(1).wait_for()
    assert photos.count() == 2 and "已上传 2 张" in card(page, claim_id).inner_text()
    for i in (0, 1):
        wait_loaded(photos.nth(i).locator("img"))
    shot(page, "photos-after-reload")
    photos.first.locator("button.delete").click()
    page.wait_for_function("n => document.querySelectorAll(`#claims .item[data-claim='${n}'] figure.photo`).length"
                           " === 1", arg=claim_id)
    card(page, claim_id).locator("button.submit").click()
    page.wait_for_selector(f"#claims .item[data-claim='{claim_id}'][data-state=submitted]")
    sent = card(page, claim_id)
    assert "已提交的照片（1 张）" in sent.inner_text() and sent.locator("figure.photo img").count() == 1
    assert "等待商家确认" in sent.inner_text()

    # The merchant confirms through the API (once the photo is checked): the card and the earnings show the money.
    process_evidence(server)
    with server.http() as c:
        r = c.post(f"/v1/submissions/{claim_id}/confirm", headers=merchant)
        assert r.status_code == 200 and r.json()["state"] == "paid", r.text
    page.click("#claims-refresh")
    page.wait_for_selector(f"#claims .item[data-claim='{claim_id}'][data-state=paid]")
    assert "已付款 ¥15.00" in card(page, claim_id).inner_text()
    page.click("#wallet-refresh")
    page.wait_for_selector("#earn-available:has-text('¥15.00')")
    assert "任务通过验收" in page.locator("#credit-changes").inner_text()
    shot(page, "paid")

    # The same task again (slots are left): this page no longer offers it; the stale tab tries and is refused in
    # plain words; no slot is taken.
    page.click("#nearby-refresh")
    page.locator(f"#nearby [data-task='{task['id']}'] .badge:has-text('您已做过这个任务')").wait_for()
    assert page.locator(f"#nearby [data-task='{task['id']}'] button").count() == 0
    stale.locator(f"#nearby [data-task='{task['id']}'] button.claim").click()
    words = toast_text(stale)
    assert "您已经做过这个任务了" in words and "task_already_done" not in words
    stale.close()
    with server.session() as s:
        assert s.scalar(select(Task.slots_taken).where(Task.id == task["id"])) == 1

    # A withdrawal of ¥10.
    page.fill("#withdraw-form input[name=amount]", "10")
    page.click("#withdraw-form button[type=submit]")
    page.wait_for_selector("#withdrawals li:has-text('¥10.00')")
    page.wait_for_selector("#earn-available:has-text('¥5.00')")
    shot(page, "withdrawn")

    assert axe_violations(page) == []
    assert small_targets(page) == []
    body = page.locator("body").inner_text()
    assert not [code for code in RAW_CODES if code in body], body
    assert errors == []
    ctx.close()


def test_rejection_reason_appeal_and_its_decision_are_shown(server, browser):
    place = PLACES["appeal"]
    task, merchant = published_task(server, place, title="海报张贴")
    username, worker = register(server, "worker")
    claim_id = worked_claim(server, task, worker, place)
    with server.http() as c:
        r = c.post(f"/v1/submissions/{claim_id}/reject", headers=merchant,
                   json={"reason_code": "evidence_insufficient", "reason": "门头照片模糊"})
        assert r.json()["state"] == "rejected", r.text
    ctx = phone(browser, server, north(place, 20))
    page = ctx.new_page()
    errors = watch_errors(page)
    sign_in(page, "/app/worker", username)
    box = card(page, claim_id)
    box.locator(".story").wait_for()
    assert "照片不足以证明：门头照片模糊" in box.inner_text()
    assert page.locator("#nextbar").is_hidden()  # nothing left to do on site; the appeal is on the card
    box.locator("summary.appeal-open").click()
    box.locator("textarea[name=reason]").fill("照片是在店门口拍的，请再看一下")
    box.locator("button[type=submit]").click()
    page.wait_for_selector(f"#claims .item[data-claim='{claim_id}'][data-state=appealed]")
    assert "申诉处理中" in card(page, claim_id).inner_text()
    shot(page, "appealed")

    _, ops = ops_user(server)
    with server.http() as c:
        appeal = next(a for a in c.get("/v1/appeals", headers=ops).json() if a["claim_id"] == claim_id)
        r = c.post(f"/v1/appeals/{appeal['id']}/decision", headers=ops,
                   json={"decision": "overturn", "reason": "照片能看清门头"})
        assert r.status_code == 200, r.text
    page.click("#claims-refresh")
    page.wait_for_selector(f"#claims .item[data-claim='{claim_id}'][data-state=paid]")
    text = card(page, claim_id).inner_text()
    assert "申诉成功：照片能看清门头" in text and "已付款 ¥15.00" in text
    page.wait_for_selector("#earn-available:has-text('¥15.00')")  # earnings follow without a second tap
    shot(page, "appeal-decided")
    assert axe_violations(page) == []
    assert errors == []
    ctx.close()


def test_failed_spot_check_says_so_and_why_and_credit_drop_is_explained(server, browser):
    place = PLACES["spot"]
    task, merchant = published_task(server, place, title="货架检查")
    username, worker = register(server, "worker")
    claim_id = worked_claim(server, task, worker, place, mock_location=True)  # a hard flag: always spot-checked
    _, ops = ops_user(server)
    process_evidence(server)
    with server.http() as c:
        assert c.post(f"/v1/submissions/{claim_id}/confirm", headers=merchant).json()["state"] == "spot_check"
        check = next(x for x in c.get("/v1/spot-checks", headers=ops).json() if x["claim"]["id"] == claim_id)
        r = c.post(f"/v1/spot-checks/{check['id']}/verdict", json={"verdict": "fail", "reason": "照片与门店不符"},
                   headers=ops)
        assert r.status_code == 200, r.text
    ctx = phone(browser, server, north(place, 20))
    page = ctx.new_page()
    sign_in(page, "/app/worker", username)
    box = card(page, claim_id)
    box.locator(".story").wait_for()
    text = box.inner_text()
    assert "平台抽查未通过：照片与门店不符" in text and "信用分 −5（平台抽查未通过）" in text
    assert "手机报告了模拟定位" in text and "mock_location" not in text  # the flag in plain words
    page.wait_for_selector("#credit:has-text('95')")
    assert "平台抽查未通过，信用分 −5" in page.locator("#credit-changes").inner_text()
    assert box.locator("summary.appeal-open").is_visible()
    shot(page, "spot-check-failed")
    ctx.close()


def test_denied_location_says_what_to_do_and_retry_works(server, browser):
    place = PLACES["geo"]
    task, _ = published_task(server, place, title="派发传单")
    username, _ = register(server, "worker")
    ctx = phone(browser, server, place, granted=False)
    page = ctx.new_page()
    errors = watch_errors(page)
    sign_in(page, "/app/worker", username)
    page.wait_for_selector("#position .geo-error")
    words = page.locator("#position").inner_text()
    assert "定位权限被拒绝" in words and "设置" in words and "重试" in words
    assert "Network" not in words and "正在获取" not in words
    shot(page, "location-denied")
    assert axe_violations(page) == []

    ctx.grant_permissions(["geolocation"])
    page.click("#geo-retry")
    page.wait_for_selector(f"#position:has-text('{place[0]:.5f}')")
    page.locator(f"#nearby [data-task='{task['id']}']").wait_for()
    assert errors == []
    ctx.close()


def test_without_leaflet_the_map_is_drawn_in_svg_with_the_way_to_walk(server, browser):
    place = PLACES["svg"]
    task, _ = published_task(server, place, title="扫码拉新")
    username, worker = register(server, "worker")
    with server.http() as c:
        claim = c.post(f"/v1/tasks/{task['id']}/claims", headers=worker).json()
    ctx = phone(browser, server, north(place, 300))  # 300 m north of the centre of a 100 m circle
    page = ctx.new_page()
    page.route("**/app/vendor/**", lambda route: route.abort())  # no Leaflet (not installed, or offline)
    sign_in(page, "/app/worker", username)
    box = card(page, claim["id"])
    box.locator(".claim-map svg .me").wait_for()
    walk = box.locator(".walk")
    walk.locator("strong").wait_for()
    metres = int(walk.get_attribute("data-distance"))
    assert 195 <= metres <= 202 and f"距围栏边缘 {metres} 米" in walk.inner_text()
    assert f"向南走约 {metres} 米" in walk.inner_text()
    hall = page.locator(f"#nearby [data-task='{task['id']}']")
    hall.wait_for()  # the hall (server, spheroid) and the map (phone, local plane) agree to a metre
    assert re.search(rf"距围栏边缘 ({metres - 1}|{metres}|{metres + 1}) 米", hall.inner_text()), hall.inner_text()
    assert box.locator(".claim-map svg").get_attribute("aria-label").startswith("围栏和您的位置")
    shot(page, "map-without-leaflet")
    assert axe_violations(page) == []
    ctx.close()


def test_english_is_a_choice(server, browser):
    username, _ = register(server, "worker")
    ctx = phone(browser, server, PLACES["geo"])
    page = ctx.new_page()
    sign_in(page, "/app/worker", username)
    page.click("#lang")
    page.wait_for_selector("#hall-h:has-text('Tasks near me')")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("#earnings-h").inner_text() == "My earnings"
    ctx.close()
