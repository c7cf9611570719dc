"""The worker page's in-app camera (issues 16, 17) in a real browser with Chromium's fake camera: photos taken in
the page carry a capture receipt the server verifies, a task that refuses the gallery hides the picker, a refused
camera and a lost network are told in plain words, and the camera view passes axe-core and the 44 px rule."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from evidence.models import Evidence
from tests.fieldwork import circle, publish_approved, task_body
from tests.live import live_server
from tests.browser import chromium
from tests.test_pages_browser import (RUN, funded_merchant, north, ops_user, register,
                                      sign_in, watch_errors)
from tests.test_pages_worker import (ARTIFACTS, TAP_TARGETS, axe_violations, card, phone, shot, small_targets,
                                     toast_text)

sync_api = pytest.importorskip("playwright.sync_api")
# Guangzhou, away from the other browser tests' places.
PLACES = {"verified": (23.1291, 113.2644), "denied": (23.1391, 113.2744), "offline": (23.1191, 113.2544)}
# The fake camera, without the flag that would accept every prompt: a context granted "camera" gets the stream,
# one without it is refused the way a phone whose user said no refuses (NotAllowedError).
FAKE_CAMERA = ["--use-fake-device-for-media-stream"]


@pytest.fixture(scope="module")
def server(test_database):
    with live_server("worker_camera", {"FIELDPROOF_SPOT_CHECK_BASE_RATE": "0"}) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    yield from chromium(tuple(FAKE_CAMERA))


def camera_task(server, place, *, allow_gallery: bool, photos_min: int = 2) -> dict:
    _, merchant = funded_merchant(server)
    _, ops = ops_user(server)
    body = task_body(circle(place[0], place[1], 100.0), title=f"货架检查 {RUN}", evidence={
        "photos_min": photos_min, "video": False, "allow_gallery": allow_gallery})
    with server.http() as c:
        return publish_approved(c, body, merchant, ops)


def checked_in_on_page(browser, server, place, *, allow_gallery: bool, camera: bool = True):
    """A worker who claimed a task at ``place`` and checked in on the page; returns (ctx, page, claim id, headers)."""
    task = camera_task(server, place, allow_gallery=allow_gallery)
    username, worker = register(server, "worker")
    with server.http() as c:
        claim = c.post(f"/v1/tasks/{task['id']}/claims", headers=worker).json()
    ctx = phone(browser, server, north(place, 20))
    if camera:
        ctx.grant_permissions(["camera"])
    page = ctx.new_page()
    sign_in(page, "/app/worker", username)
    card(page, claim["id"]).locator("button.checkin").click()
    card(page, claim["id"]).locator(".verdict .verdict-text").wait_for()
    return ctx, page, claim["id"], worker


def evidence_of(server, claim_id: int) -> list[Evidence]:
    with server.session() as s:
        return list(s.scalars(select(Evidence).where(Evidence.claim_id == claim_id, Evidence.withdrawn_at.is_(None))
                              .order_by(Evidence.id)))


def camera_shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"worker-camera-{name}.png"))


def small_camera_targets(page) -> list[dict]:
    """Tap targets under 44 px in the camera view (the page behind it is inert while it shows)."""
    return page.evaluate("""sel => [...document.querySelectorAll(sel)].map(n => { const r = n.getBoundingClientRect();
        return {what: n.outerHTML.slice(0, 80), w: Math.round(r.width), h: Math.round(r.height)}; })
        .filter(r => r.w < 44 || r.h < 44)""", ", ".join(f"#camera {s.strip()}" for s in TAP_TARGETS.split(",")))


def shoot(page, n: int) -> None:
    """Tap the shutter and wait for photo ``n`` of this session to be in the view's strip."""
    page.locator("#camera button.shutter").click()
    page.locator(f"#camera .camera-strip figure:nth-child({n}), #camera .camera-status.error").first.wait_for()
    assert page.locator("#camera .camera-status.error").count() == 0, page.locator("#camera .camera-status").inner_text()


def test_two_in_app_photos_are_capture_verified_and_the_gallery_is_hidden(server, browser):
    ctx, page, claim_id, worker = checked_in_on_page(browser, server, PLACES["verified"], allow_gallery=False)
    errors = watch_errors(page)
    nonce_keys: list[str | None] = []
    page.on("request", lambda r: nonce_keys.append(r.headers.get("idempotency-key"))
            if r.url.endswith("/capture-nonces") else None)
    box = card(page, claim_id)
    # This task refuses gallery photos: no picker, and the card says why in plain words.
    assert box.locator("input.photo-input").count() == 0 and box.locator("label.photo-label").count() == 0
    assert "此任务要求用应用内相机现场拍照" in box.locator(".camera-only").inner_text()
    shot(page, "camera-card-before")

    box.locator("button.camera-open").click()
    page.locator("#camera video.camera-preview").wait_for()
    page.wait_for_function("document.querySelector('#camera video').videoWidth > 0")
    assert page.evaluate("document.activeElement.classList.contains('shutter')")
    assert axe_violations(page) == []
    assert small_camera_targets(page) == []
    assert page.locator("#camera button.shutter").bounding_box()["width"] >= 64
    camera_shot(page, "view")
    shoot(page, 1)
    shoot(page, 2)
    status = page.locator("#camera .camera-status").inner_text()
    assert "第 2 张已上传（已验证拍摄）" in status, status
    assert page.locator("#camera .badge.verified").count() == 2
    camera_shot(page, "two-taken")
    page.locator("#camera button.camera-close").click()
    assert "已上传 2 张现场照片" in toast_text(page)
    page.locator("#camera").wait_for(state="detached")

    # The API: both photos verified, each with its own nonce; the card shows the badge on both thumbnails.
    with server.http() as c:
        files = c.get(f"/v1/claims/{claim_id}/evidence", headers=worker).json()
    assert len(files) == 2 and all(f["capture_verified"] for f in files), files
    assert all(f["reasons"] == [] for f in files), files
    rows = evidence_of(server, claim_id)
    assert len({r.capture_nonce_sha256 for r in rows}) == 2
    # A nonce per photo (the next one is asked for while the worker aims), each request with its own key.
    assert len(nonce_keys) >= 2 and None not in nonce_keys and len(set(nonce_keys)) == len(nonce_keys)
    box = card(page, claim_id)
    box.locator("figure.photo").nth(1).wait_for()
    assert box.locator("figure.photo .badge.verified").all_inner_texts() == ["已验证拍摄", "已验证拍摄"]
    assert "已上传 2 张" in box.inner_text() and "null" not in box.inner_text()
    shot(page, "camera-card-after")
    assert axe_violations(page) == []
    assert small_targets(page) == []

    # Retake the first: the camera again, and the old photo is withdrawn only once the new one is in.
    first = rows[0].id
    box.locator("figure.photo").first.locator("button.retake").click()
    shoot(page, 1)
    page.locator("#camera button.camera-close").click()
    page.locator("#camera").wait_for(state="detached")
    page.wait_for_selector(f"#claims .item[data-claim='{claim_id}'] figure.photo[data-evidence='{rows[1].id}']")
    page.wait_for_function("n => !document.querySelector(`#claims figure.photo[data-evidence='${n}']`)", arg=first)
    rows = evidence_of(server, claim_id)
    assert len(rows) == 2 and first not in {r.id for r in rows} and all(r.capture_verified for r in rows)

    card(page, claim_id).locator("button.submit").click()
    page.wait_for_selector(f"#claims .item[data-claim='{claim_id}'][data-state=submitted]")
    assert errors == []
    ctx.close()


def test_refused_camera_says_what_to_do_and_offers_the_gallery_when_allowed(server, browser):
    ctx, page, claim_id, _ = checked_in_on_page(browser, server, PLACES["denied"], allow_gallery=True, camera=False)
    errors = watch_errors(page)
    box = card(page, claim_id)
    note = box.locator(".camera-note")
    box.locator("button.camera-open").click()  # this context was not granted the camera: a real refusal
    note.wait_for()
    words = note.inner_text()
    assert "相机权限被拒绝" in words and "设置" in words and "从相册选择" in words, words
    assert "NotAllowedError" not in words and page.locator("#camera").count() == 0
    assert box.locator("label.photo-label").is_visible() and "null" not in box.inner_text()
    shot(page, "camera-denied")
    assert axe_violations(page) == []
    # A phone with no usable camera gets its own words (Chromium here always has the fake one: stand in for it).
    page.evaluate("""() => { navigator.mediaDevices.getUserMedia = () =>
        Promise.reject(new DOMException('no camera', 'NotFoundError')); }""")
    box.locator("button.camera-open").click()
    page.wait_for_function("document.querySelector('.camera-note').textContent.includes('找不到可用的相机')")
    assert "从相册选择" in note.inner_text()

    # The fallback works: a gallery photo is accepted (unverified, with its plain-words note).
    box.locator("input.photo-input").set_input_files(str(Path(__file__).parent / "data" / "photos" / "coffee.jpg"))
    figure = card(page, claim_id).locator("figure.photo")
    figure.wait_for()
    assert figure.locator(".badge.verified").count() == 0 and "相册" in figure.inner_text()
    assert errors == []
    ctx.close()


def test_offline_shutter_says_a_receipt_needs_the_network_and_keeps_nothing(server, browser):
    ctx, page, claim_id, _ = checked_in_on_page(browser, server, PLACES["offline"], allow_gallery=False)
    card(page, claim_id).locator("button.camera-open").click()
    page.wait_for_function("document.querySelector('#camera video')?.videoWidth > 0")
    ctx.set_offline(True)
    page.locator("#camera button.shutter").click()
    status = page.locator("#camera .camera-status.error")
    status.wait_for()
    assert "没有网络" in status.inner_text() and "拍摄凭证" in status.inner_text()
    camera_shot(page, "offline")
    assert page.locator("#camera .camera-strip figure").count() == 0
    assert page.evaluate("JSON.parse(localStorage.getItem('fp.queue') || '[]').length") == 0
    ctx.set_offline(False)
    # The phone thinks it is online but the nonce request gets no answer (no signal): the same words.
    page.route("**/capture-nonces", lambda route: route.abort("internetdisconnected"))
    with page.expect_event("requestfailed", lambda r: r.url.endswith("/capture-nonces")):
        page.locator("#camera button.shutter").click()  # the tap clears the last error; this one is new
    status.wait_for()
    assert "没有网络" in status.inner_text()
    assert page.locator("#camera .camera-strip figure").count() == 0 and evidence_of(server, claim_id) == []
    page.unroute("**/capture-nonces")
    shoot(page, 1)
    assert len(evidence_of(server, claim_id)) == 1
    page.locator("#camera button.camera-close").click()
    page.locator("#camera").wait_for(state="detached")

    page.click("#lang")  # the same card in English
    box = card(page, claim_id)
    box.locator("button.camera-open:has-text('Take photo')").wait_for()
    assert "in-app camera" in box.locator(".camera-only").inner_text()
    assert box.locator("figure.photo .badge.verified").inner_text() == "Capture verified"
    ctx.close()
