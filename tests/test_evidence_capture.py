"""Same capture or same scene (evidence.sameness), local-feature confirmation (evidence.features) and phone chrome
(evidence.chrome), over the shipped test photos and generated scenes. Pure: no database."""
from __future__ import annotations

import io
import itertools
import zlib
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evidence.sameness import Side, Verdict, decide, pixels_of
from evidence.chrome import photo_box
from evidence.exif import read_exif
from evidence.features import Alignment, compare_pixels
from evidence.hashing import hash_image, load_grey
from evidence.match import REACH_THRESHOLD, Match, compare
from sim import photos
from tests.evidence_transforms import TRANSFORMS, jpeg, phone_screenshot, reshoot

PHOTOS = sorted(Path(__file__).parent.glob("data/photos/*.jpg"))
# As in test_evidence_pure: the deep field and the brick wall are where hashing is weakest.
TEXTURED = [p for p in PHOTOS if p.stem not in ("hubble_deep_field", "brick")]
CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 24, 10, 30, tzinfo=CST)
EXACT_LIKE = Match(4, "phash")  # a hash match that needs no pixels
COPIES = ("identical", "recompressed", "resize", "crop5", "screenshot_letterbox", "screenshot_statusbar",
          "screenshot_rounded", "wechat", "mirror", "watermark_band")


def _with_exif(img: Image.Image, taken: datetime, camera=("FieldproofTestCam", "One", "SN-1")) -> bytes:
    return photos.camera_jpeg(img, taken, camera=camera)


def _exif(data: bytes) -> dict:
    return read_exif(Image.open(io.BytesIO(data)))


def judge(query: bytes, stored: bytes, *, fits_visit: bool = True, fresh: bool = False):
    """What evidence.pairs does for one candidate: hashes, then pixels, then the decision."""
    import hashlib

    m = compare(hash_image(query, with_variants=True), hash_image(stored), reach=REACH_THRESHOLD)
    if m is None and query != stored:
        return None
    pixels = pixels_of(load_grey(query), load_grey(stored), m) if m is not None else None
    sides = [Side(hashlib.sha256(d).hexdigest(), _exif(d), fits_visit, fresh and d is query) for d in (query, stored)]
    return decide(*sides, m, pixels)


def _copy(img: Image.Image, original: bytes, how: str) -> bytes:
    if how == "identical":
        return original
    if how == "recompressed":
        return jpeg(img, 70)
    return jpeg(TRANSFORMS[how](img))


@pytest.mark.parametrize("how", COPIES)
@pytest.mark.parametrize("path", TEXTURED, ids=lambda p: p.stem)
def test_copies_of_one_exposure_are_the_same_capture(path, how):
    img = Image.open(path).convert("RGB")
    original = _with_exif(img, T0)
    verdict = judge(_copy(img, original, how), original)
    assert verdict is not None and verdict.kind == "same_capture", verdict


@pytest.mark.parametrize("path", TEXTURED, ids=lambda p: p.stem)
def test_same_place_another_day_and_camera_is_never_a_duplicate(path):
    img = Image.open(path).convert("RGB")
    first = _with_exif(reshoot(img, 1), T0, ("Xiaomi", "Redmi Note 12", "A1"))
    later = _with_exif(reshoot(img, 2), T0 + timedelta(days=1), ("OPPO", "Reno10", "B2"))
    by_exif = judge(later, first)
    assert by_exif is None or by_exif.kind == "same_scene", by_exif
    # Without EXIF (stripped by an app) only the pixels can tell, and they show two exposures.
    by_pixels = judge(jpeg(reshoot(img, 2)), jpeg(reshoot(img, 1)))
    assert by_pixels is None or by_pixels.kind == "same_scene", by_pixels


def test_same_scene_pairs_are_matched_and_reported_as_such():
    """The pairs above are not merely missed: the hashes find most of them, and they come back same_scene."""
    found = [judge(_with_exif(reshoot(Image.open(p).convert("RGB"), 2), T0 + timedelta(days=1), ("B", "b", "2")),
                   _with_exif(reshoot(Image.open(p).convert("RGB"), 1), T0)) for p in TEXTURED]
    assert sum(v is not None and v.kind == "same_scene" for v in found) >= len(TEXTURED) - 1


def test_distinct_photos_are_nothing():
    data = {p.stem: p.read_bytes() for p in PHOTOS}
    for a, b in itertools.permutations(data, 2):
        assert judge(data[a], data[b]) is None, (a, b)


def test_generated_scenes_never_confirm_by_keypoints():
    greys = [load_grey(photos.camera_jpeg(photos.scene(seed))) for seed in range(24)]
    for a, b in itertools.combinations(range(len(greys)), 2):
        found = compare_pixels(greys[a], greys[b])
        assert not found.confirmed, (a, b, found)


def test_exif_of_one_exposure_decides_even_without_pixels():
    img = Image.open(PHOTOS[2]).convert("RGB")
    a, b = _with_exif(img, T0), _with_exif(img.resize((200, 150)), T0)  # same time, same camera serial
    verdict = judge(b, a)
    assert verdict.kind == "same_capture"
    assert decide(Side("x", _exif(b), True), Side("y", _exif(a), True), compare(
        hash_image(b, with_variants=True), hash_image(a)), None).why == "same_exif"


def test_edited_exif_does_not_clear_a_copy():
    """A re-user who rewrites the capture time to today's visit: the pixels are still the old photo's."""
    img = Image.open(PHOTOS[3]).convert("RGB")
    old = _with_exif(img, T0 - timedelta(days=3))
    forged = _with_exif(TRANSFORMS["crop5"](img), T0, ("FieldproofTestCam", "One", "SN-9"))
    verdict = judge(forged, old)
    assert verdict.kind == "same_capture" and verdict.why == "derived_despite_exif"


def test_a_capture_time_that_does_not_fit_its_visit_proves_nothing():
    img = Image.open(PHOTOS[4]).convert("RGB")
    first = _with_exif(reshoot(img, 1), T0, ("A", "a", "1"))
    later = _with_exif(reshoot(img, 2), T0 + timedelta(days=1), ("B", "b", "2"))
    verdict = judge(later, first, fits_visit=False)  # e.g. the later one's time is far from its check-in
    assert verdict is None or verdict.why != "exif_two_captures"


def test_two_cameras_in_the_same_minute_are_two_captures():
    """Two workers at one shop photograph it seconds apart: different body serials, so EXIF shows two exposures
    (the one-minute gap is for one camera's burst shots). A copy whose serial was rewritten still is a copy."""
    img = Image.open(PHOTOS[4]).convert("RGB")
    first = _with_exif(reshoot(img, 1), T0, ("Xiaomi", "Redmi Note 12", "SN-A"))
    second = _with_exif(reshoot(img, 2), T0 + timedelta(seconds=20), ("OPPO", "Reno10", "SN-B"))
    sides = [Side(str(i), _exif(d), True) for i, d in enumerate((second, first))]
    assert decide(*sides, EXACT_LIKE, None).why == "exif_two_captures"
    # One camera twenty seconds apart is not enough for EXIF alone: a burst, or a retake, is for the pixels.
    burst = _with_exif(reshoot(img, 2), T0 + timedelta(seconds=20), ("Xiaomi", "Redmi Note 12", "SN-A"))
    one_camera = [Side(str(i), _exif(d), True) for i, d in enumerate((burst, first))]
    assert decide(*one_camera, EXACT_LIKE, None).why == "hashes"
    forged = _with_exif(TRANSFORMS["crop5"](img), T0 + timedelta(seconds=20), ("OPPO", "Reno10", "SN-B"))
    assert judge(forged, _with_exif(img, T0, ("Xiaomi", "Redmi Note 12", "SN-A"))).why == "derived_despite_exif"


def test_detail_a_hair_below_zero_is_measured_two_exposures_not_the_hash_fallback():
    """Unrelated fine detail correlates about 0, often a little below it: that is a measurement (two exposures),
    unlike a comparison that could not be made (None), which leaves the hash rule."""
    plain = [Side("a", None, True), Side("b", None, True)]
    fit = dict(inliers=120, matches=250, scale=1.0)
    assert decide(*plain, EXACT_LIKE, Alignment(**fit, detail=-0.03)) == Verdict("same_scene", "different_exposure")
    assert decide(*plain, EXACT_LIKE, Alignment(**fit, detail=None)) == Verdict("same_capture", "hashes")


def test_pixels_that_fit_nothing_are_no_pair_when_the_hashes_are_not_too_close():
    """Compared, both photos rich in keypoints, and nothing fits, not even a homography: not one exposure (a hash
    collision, or another view of the place against a small copy). Too few keypoints to compare, no comparison, a
    homography that fits (a stretched copy) or hashes a few bits apart leave the hash rule."""
    plain = [Side("a", None, True), Side("b", None, True)]
    apart = Match(8, "phash")
    no_fit = dict(inliers=4, matches=27, scale=0.9, detail=None)
    assert decide(*plain, apart, Alignment(**no_fit, keypoints=790, general_inliers=9)) is None
    hashes = Verdict("same_capture", "hashes")
    assert decide(*plain, apart, Alignment(**no_fit, keypoints=40, general_inliers=9)) == hashes
    assert decide(*plain, apart, Alignment(**no_fit, keypoints=790, general_inliers=41)) == hashes
    assert decide(*plain, apart, Alignment(**no_fit, keypoints=790)) == hashes  # no homography fitted
    assert decide(*plain, Match(2, "phash"), Alignment(**no_fit, keypoints=790, general_inliers=9)) == hashes
    assert decide(*plain, apart, None) == hashes  # a video frame, past the cap


# The false duplicates of the 2026-11-29 22:33Z simulated day, made again from the simulator's seeds (sim.agents:
# a worker's photo_seed is its seed x 1000 + its photo count, a storefront's scene seed the crc32 of the shop's name).
QIANMEN, WANGFUJING = zlib.crc32(b"qianmen-0014"), zlib.crc32(b"wangfujing-0104")
REUSED_THAT_DAY = {  # the honest shot, the photo a re-user copied, how
    "w0037_vs_a_copy_of_another_visitors_shot": (
        lambda: photos.storefront(QIANMEN, 700_058_010), lambda: photos.storefront(QIANMEN, 700_114_005),
        "screenshot_letterbox"),
    "w0013_vs_an_unrelated_copy_mirrored_hash_8": (
        lambda: photos.scene(700_034_013), lambda: photos.storefront(WANGFUJING, 700_047_006), "screenshot_rounded"),
    "w0005_vs_an_unrelated_copy_hash_12": (
        lambda: photos.scene(700_026_038), lambda: photos.scene(700_122_002), "crop5"),
}


@pytest.mark.parametrize("case", REUSED_THAT_DAY)
def test_an_honest_shot_is_not_a_copy_of_a_reused_file_its_pixels_do_not_fit(case):
    new, copied, how = REUSED_THAT_DAY[case]
    original = photos.camera_jpeg(copied())
    copy = photos.reuse(original, how)
    shot = _with_exif(new(), T0, ("Apple", "iPhone 13", "SN-N"))
    assert compare(hash_image(shot, with_variants=True), hash_image(copy)) is not None  # the hashes do match
    verdict = judge(shot, copy, fresh=True)
    assert verdict is None or verdict.kind == "same_scene", verdict
    assert judge(copy, original).kind == "same_capture"  # the copy is still caught by its original


def _stretched(data: bytes, fx: float, fy: float = 1.0) -> bytes:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    return jpeg(img.resize((round(img.width * fx), round(img.height * fy)), Image.Resampling.LANCZOS))


@pytest.mark.parametrize("path", TEXTURED, ids=lambda p: p.stem)
def test_pixels_never_refute_a_copy_stretched_past_any_similarity_fit(path):
    """An uneven stretch has no similarity fit: the pixels cannot confirm the copy, but they must not refute it
    either (a homography fits it, or, where ORB loses it too, its hashes stay a few bits from the original's), so
    the hash rule still calls it the same capture. (Where RANSAC finds a wrong similarity fit with enough inliers instead, the detail measured
    through it is low and the pair reads as the same scene: a known weakness of the detail test, README.)"""
    original = _with_exif(Image.open(path).convert("RGB"), T0)
    kinds = []
    for fx, fy in ((1.8, 1.0), (1.0, 1.7)):
        verdict = judge(_stretched(original, fx, fy), original)
        assert verdict is not None, (fx, fy)
        kinds.append(verdict.kind)
    assert "same_capture" in kinds, kinds


@pytest.mark.parametrize("how", photos.REUSE_TRANSFORMS[1:])
def test_every_reuse_of_a_storefront_is_still_the_same_capture(how):
    """Refuting pixels never clear a copy: each one fits its original with hundreds of inliers."""
    for visit in (1, 2, 3):
        original = _with_exif(photos.storefront(QIANMEN, visit), T0)
        verdict = judge(photos.reuse(original, how), original)
        assert verdict is not None and verdict.kind == "same_capture", (visit, verdict)


@pytest.mark.parametrize(("detail", "fresh", "expected"), [
    (0.88, True, Verdict("same_scene", "fresh_capture")),
    (0.97, True, Verdict("same_capture", "derived_despite_receipt")),
    (0.88, False, Verdict("same_capture", "derived")),
])
def test_a_verified_capture_receipt_raises_the_bar_for_derived(detail, fresh, expected):
    """An honest in-app photo of a much-photographed shop against an old EXIF-less copy of another photo of it:
    their detail can reach 0.8-0.9. The receipt says the new file came from the camera at this visit, so only
    near-identical pixels (a tampered app injecting the old file) make it a copy. The stored side's receipt
    says nothing about the new file."""
    fit = dict(inliers=300, matches=340, scale=1.0)
    new, old = Side("new", None, True, fresh_capture=fresh), Side("old", None, True)
    assert decide(new, old, EXACT_LIKE, Alignment(**fit, detail=detail)) == expected
    old_receipt = Side("old", None, True, fresh_capture=True)
    assert decide(Side("new", None, True), old_receipt, EXACT_LIKE,
                  Alignment(**fit, detail=0.88)) == Verdict("same_capture", "derived")


@pytest.mark.parametrize(("detail", "fresh", "why"), [
    (0.965, True, "exif_two_captures"),  # two honest exposures of a flat shop front from one spot
    (0.965, False, "derived_despite_exif"),  # EXIF alone is easily rewritten
    (0.99, True, "derived_despite_exif"),  # a same-size crop or re-encode, receipt or not
])
def test_exif_and_a_receipt_together_need_near_identical_pixels_to_call_a_copy(detail, fresh, why):
    a = Side("new", {"capture_time": T0.isoformat(), "serial": "SN-B"}, True, fresh_capture=fresh)
    b = Side("old", {"capture_time": (T0 - timedelta(hours=2)).isoformat(), "serial": "SN-A"}, True)
    fit = dict(inliers=300, matches=340, scale=1.0)
    assert decide(a, b, EXACT_LIKE, Alignment(**fit, detail=detail)).why == why


def test_a_cropped_copy_with_rewritten_exif_and_a_receipt_is_still_a_copy():
    img = Image.open(PHOTOS[0]).convert("RGB")
    old = _with_exif(img, T0 - timedelta(days=3))
    forged = _with_exif(TRANSFORMS["crop5"](img), T0, ("FieldproofTestCam", "One", "SN-9"))
    assert judge(forged, old, fresh=True) == Verdict("same_capture", "derived_despite_exif")


def test_a_copy_through_the_in_app_camera_path_is_still_a_copy():
    """A receipt on a file that is a transformed copy of the stored one: the pixels are near-identical."""
    img = Image.open(PHOTOS[3]).convert("RGB")
    old = jpeg(img)
    copy = jpeg(TRANSFORMS["crop5"](img))
    verdict = judge(copy, old, fresh=True)
    assert verdict == Verdict("same_capture", "derived_despite_receipt")


@pytest.mark.parametrize("style", ["letterbox", "statusbar", "rounded"])
def test_photo_is_found_inside_phone_chrome(style):
    img = Image.open(PHOTOS[0]).convert("RGB")
    shot = phone_screenshot(img, style)
    arr = np.asarray(shot.convert("L"))
    left, top, right, bottom = photo_box(arr)
    # The photo's own extent in the screenshot (where it differs from the bare screen background).
    bare = np.asarray(phone_screenshot(Image.new("RGB", img.size, (1, 2, 3)), style).convert("L")).astype(int)
    ys, xs = np.nonzero(np.abs(arr.astype(int) - bare) > 0)
    assert abs(top - ys.min()) <= 0.04 * (ys.max() - ys.min()) and abs(bottom - ys.max()) <= 0.04 * (ys.max() - ys.min())
    assert abs(left - xs.min()) <= 0.04 * (xs.max() - xs.min()) and abs(right - xs.max()) <= 0.04 * (xs.max() - xs.min())


def test_a_toolbar_band_is_chrome_but_a_strip_of_the_photo_next_to_a_flat_column_is_not():
    """A thin textured band is UI only on a background that resumes after it; where the photo begins with a flat
    column (a signboard's edge) and a thin textured strip, the chrome ends there."""
    rng = np.random.default_rng(3)
    shot = np.full((400, 200), 237, np.uint8)  # a chat background
    shot[150:250, 40:160] = rng.integers(0, 256, (100, 120))  # the photo, textured...
    shot[150:250, 40:42] = 103  # ...but for a signboard along its left edge,
    shot[150:250, 46:47] = 104  # split by a few textured columns
    shot[20:26] = np.where(rng.random((6, 200)) < 0.5, 30, 237)  # a toolbar's icons on the background
    # The background is drawn (uniform): a frame, inside which the photo is kept whole, signboard and all.
    left, top, right, bottom = photo_box(shot)
    assert (left, top, right, bottom) == (40 + 2, 150 + 2, 160 - 2, 250 - 2)
    # The same on a background that is flat but not drawn (a camera's noise on it: no frame), so the stripping
    # decides alone.
    noisy = np.where((shot == 237) & (rng.random(shot.shape) < 0.5), 234, shot).astype(np.uint8)
    left, top, right, bottom = photo_box(noisy)
    assert (top, bottom) == (150 + 2, 250 - 2), (top, bottom)  # the icons' band was chrome: the background resumed
    # The signboard's two flat columns pass for chrome; the textured strip after them does not (it was skipped as a
    # band, and the next one too, before: left 49).
    assert (left, right) == (42 + 2, 160 - 2), (left, right)


# The one screenshot_rounded re-use the 2026-11-30 simulated day (seed 7) missed: w0091 (seed 7 x 100_003 + 91)
# re-uploaded its own first photo (photo_seed 700_112_001, evidence 180) as a chat screenshot (evidence 2810). The
# photo's left edge has a flat column and two thin textured strips, which the band rule took for UI: the 'ui'
# region lost 23 % of the photo's width and hashed 18 from the original. Three more from generated scenes.
CHAT_SCREENSHOT_MISSES = {
    "w0091_evidence_2810_of_180": lambda: photos.scene(700_112_001),
    "scene_740000122": lambda: photos.scene(740_000_122),
    "storefront_shop-19_visit_7019": lambda: photos.storefront(zlib.crc32(b"shop-19"), 7019),
    "storefront_shop-4_visit_7029": lambda: photos.storefront(zlib.crc32(b"shop-4"), 7029),
    # Before a drawn frame was told apart (evidence.chrome._framed), 6 of the generated scenes 0-299 still ended
    # 14-18 bits from their original: the photo's flat edges were cut at the screenshot's scale. Four of them.
    "scene_81": lambda: photos.scene(81),
    "scene_268": lambda: photos.scene(268),
    "scene_276": lambda: photos.scene(276),
    "scene_296": lambda: photos.scene(296),
}


@pytest.mark.parametrize("case", CHAT_SCREENSHOT_MISSES)
def test_a_chat_screenshot_reaches_its_original_past_the_photos_own_flat_edge(case):
    original = photos.camera_jpeg(CHAT_SCREENSHOT_MISSES[case](), T0, camera=("Apple", "iPhone 13", "SN00700112"))
    copy = photos.reuse(original, "screenshot_rounded")
    m = compare(hash_image(copy, with_variants=True), hash_image(original), reach=REACH_THRESHOLD)
    assert m is not None and m.distance <= 8, m
    verdict = judge(copy, original)
    assert verdict is not None and verdict.kind == "same_capture", verdict


def test_a_drawn_frame_gives_the_photo_whole_and_no_camera_photo_has_one():
    """A chat bubble's background is drawn: uniform lines of a colour on two opposite sides, inside which the box is
    the photo's own rectangle (less the 2 % inset). A camera's photo never has such a frame: its noise is never
    uniform, and where it clips (a blown-out sky, a crushed shadow: exactly 255 and 0) it does not count; so its
    box is the stripped one it always had, and hashes stored before stay valid."""
    from evidence.chrome import INSET_SHARE, _boxes

    for i in range(24):
        img = photos.scene(i) if i % 2 else photos.storefront(zlib.crc32(f"shop-{i}".encode()), i)
        original = photos.camera_jpeg(img, T0)
        clipped = np.asarray(img.convert("RGB")).copy()
        clipped[: img.height // 12], clipped[-img.height // 12:] = 255, 0  # backlit sky above, night below
        for camera in (original, photos.camera_jpeg(Image.fromarray(clipped), T0)):
            assert _boxes(np.asarray(load_grey(camera)))[1] is None, i
        grey = np.asarray(load_grey(jpeg(phone_screenshot(Image.open(io.BytesIO(original)), "rounded"))))
        scale = grey.shape[1] / 720  # the screen (720 x 1560) as the working image holds it
        width, height = 504, round(img.height * 504 / img.width)
        inner = (158 * scale, (1560 - height) // 2 * scale, (158 + width) * scale, ((1560 - height) // 2 + height) * scale)
        box = photo_box(grey)
        # Inside the photo (a generated shop's re-shoot may leave a dark column along its edge: its own), and all
        # of it but the inset: no flat edge of the photo cut.
        assert inner[0] - 1 <= box[0] and inner[1] - 1 <= box[1] and box[2] <= inner[2] + 1 \
            and box[3] <= inner[3] + 1, (i, box, inner)
        area = (box[2] - box[0]) * (box[3] - box[1]) / ((inner[2] - inner[0]) * (inner[3] - inner[1]))
        assert area >= (1 - 2 * INSET_SHARE) ** 2 - 0.03, (i, box, inner, area)


def _tile_median_by_loop(a, b, valid, tiles=8, min_std=2.0):
    """The per-tile loop evidence.features replaced with grid sums (its reference)."""
    h, w = valid.shape
    scores = []
    for ys in np.array_split(np.arange(h), tiles):
        for xs in np.array_split(np.arange(w), tiles):
            sel = valid[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]
            if sel.mean() < 0.9:
                continue
            ta, tb = a[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1][sel], b[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1][sel]
            if ta.std() < min_std or tb.std() < min_std:
                continue
            scores.append(float(np.corrcoef(ta, tb)[0, 1]))
    return float(np.median(scores)) if len(scores) >= 4 else None


def test_tile_correlation_by_grid_sums_equals_the_per_tile_loop():
    """The detail agreement's tile statistics from grid sums give the loop's median (to 1e-9) on band-pass images of
    random sizes with ragged valid regions, flat tiles and tiles partly invalid."""
    from evidence.features import MIN_TILE_STD, TILES, _band, _tile_median_correlation

    rng = np.random.default_rng(11)
    compared = 0
    for _ in range(40):
        h, w = int(rng.integers(8, 500)), int(rng.integers(8, 500))
        base = rng.integers(0, 256, (h, w)).astype(np.uint8)
        other = np.clip(base.astype(np.int16) + rng.integers(-40, 41, (h, w)), 0, 255).astype(np.uint8)
        other[: h // 3, : w // 4] = 90  # a flat block: tiles without detail
        valid = np.ones((h, w), bool)
        valid[: int(rng.integers(0, h)), : int(rng.integers(0, w))] = False  # a corner outside the overlap
        valid[rng.random((h, w)) < 0.03] = False  # scattered holes (some tiles stay above 90 %)
        a, b = _band(base), _band(other)
        ours, loop = _tile_median_correlation(a, b, valid), _tile_median_by_loop(a, b, valid, TILES, MIN_TILE_STD)
        assert (ours is None) == (loop is None)
        if ours is not None:
            compared += 1
            assert abs(ours - loop) < 1e-9
    assert compared >= 30


def _damaged(found) -> list[bytes]:
    """Files a damaged or foreign features file could be: one array, a scalar or 2-D shape, descriptors missing
    for the points, a zip member that is not an array."""
    import zipfile

    def npz(**arrays) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    one = io.BytesIO()
    np.save(one, found.points)
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as z:
        for name in ("shape", "points", "descriptors"):
            z.writestr(f"{name}.npy", b"not an array")
    shape = np.array(found.pixels.shape, np.int32)
    return [one.getvalue(), raw.getvalue(),
            npz(shape=np.int32(5), points=found.points, descriptors=found.descriptors),
            npz(shape=np.array([shape, shape]), points=found.points, descriptors=found.descriptors),
            npz(shape=shape, points=found.points, descriptors=np.zeros(0, np.uint8)),
            npz(shape=shape, points=found.points.astype(np.float64), descriptors=found.descriptors)]


def test_keypoints_read_back_from_their_file_are_the_ones_orb_finds():
    """features.Photo.with_features: a photo's keypoints packed (features_file) and read back give the very pixels,
    positions and descriptors ORB finds, and so the same alignment with every copy; a file that is not a features
    file of a photo that size is refused (None), so the caller runs ORB again rather than trusting it."""
    from evidence.features import Photo

    for path in PHOTOS[:4]:
        original = path.read_bytes()
        img = load_grey(original)
        found = Photo.of(img)
        packed = found.features_file()
        back = Photo.with_features(img, packed)
        assert back is not None and len(found.points) > 200
        assert np.array_equal(back.pixels, found.pixels) and np.array_equal(back.points, found.points)
        assert back.points.dtype == np.float32 and np.array_equal(back.descriptors, found.descriptors)
        copy = Photo.of(load_grey(_copy(Image.open(path), original, "crop5")))
        assert compare_pixels(copy, back) == compare_pixels(copy, found)
        assert compare_pixels(copy, back).confirmed
        other = load_grey(PHOTOS[-1].read_bytes())
        assert other.size != img.size and Photo.with_features(other, packed) is None  # another photo's keypoints
        for bad in (b"", b"not a features file", packed[: len(packed) // 2], *_damaged(found)):
            assert Photo.with_features(img, bad) is None
    blank = Image.new("L", (400, 300), 128)  # no keypoints at all: no descriptors, and read back the same
    none = Photo.of(blank)
    assert none.descriptors is None and none.points.shape == (0, 2)
    back = Photo.with_features(blank, none.features_file())
    assert back is not None and back.descriptors is None and back.points.shape == (0, 2)


def _photos_for_matching() -> list:
    """Working images with their keypoints: the test photos, generated shop fronts re-shot on other visits, and
    copies of them (so the pairs below are unrelated, same-scene and derived)."""
    from evidence.features import Photo

    greys = [load_grey(p.read_bytes()) for p in PHOTOS]
    for shop in range(3):
        img = photos.storefront(shop, 0)
        original = photos.camera_jpeg(img)
        greys += [load_grey(photos.camera_jpeg(photos.storefront(shop, visit))) for visit in (1, 2)]
        greys += [load_grey(_copy(img, original, how)) for how in ("crop5", "screenshot_statusbar", "wechat")]
    return [Photo.of(g) for g in greys]


def test_ratio_test_matches_are_exactly_opencvs():
    """features._good_matches (FAISS's exact Hamming k-NN) gives the very matches OpenCV's BFMatcher.knnMatch with
    Lowe's ratio test gives, in the same order, over unrelated, same-scene and derived pairs."""
    import cv2

    from evidence.features import RATIO, _good_matches

    found = _photos_for_matching()
    checked = 0
    for a, b in itertools.permutations(found, 2):
        if a.descriptors is None or b.descriptors is None:
            continue
        knn = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a.descriptors, b.descriptors, k=2)
        expected = [(p[0].queryIdx, p[0].trainIdx) for p in knn
                    if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
        query_idx, stored_idx = _good_matches(a.descriptors, b.descriptors)
        assert list(zip(query_idx.tolist(), stored_idx.tolist())) == expected
        checked += bool(expected)
    assert checked > 200
    one = found[0].descriptors
    assert [len(x) for x in _good_matches(one, one[:1])] == [0, 0]  # a second neighbour is needed for the ratio


def test_homography_is_skipped_only_where_it_cannot_reach_the_bar():
    """Where the ratio-test matches are fewer than MIN_INLIERS, align skips the homography (its inliers can only be
    fewer): ``refuted`` (the one decision that reads it) is what always fitting it gives, for every pair."""
    import cv2

    from evidence import features

    found = _photos_for_matching()
    skipped = fitted = 0
    for a, b in itertools.permutations(found, 2):
        got, _ = features.align(a, b)
        if got.general_inliers is None:
            continue
        query_idx, stored_idx = features._good_matches(a.descriptors, b.descriptors)
        _, mask = cv2.findHomography(a.points[query_idx], b.points[stored_idx], cv2.RANSAC, features.HOMOGRAPHY_PX,
                                     maxIters=features.HOMOGRAPHY_ITERS, confidence=0.995)
        always = replace(got, general_inliers=0 if mask is None else int(mask.sum()))
        assert got.refuted == always.refuted
        if got.matches < features.MIN_INLIERS:
            skipped += 1
            assert got.general_inliers == got.matches >= always.general_inliers
        else:
            fitted += 1
            assert got.general_inliers == always.general_inliers
    assert skipped > 20 and fitted > 20
