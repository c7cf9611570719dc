"""Evidence without the database: intake refusals, EXIF, hashing speed-path accuracy, the match rule, index, CLI."""
from __future__ import annotations

import io
import itertools
import json
import struct
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import imagehash
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from api.cli import build_parser
from core.errors import FieldproofError
from evidence.exif import read_exif, strip_and_orient
from evidence.hashing import hamming, hash_image, to_int
from evidence.index import HashIndex, popcount64
from evidence.intake import inspect_upload
from evidence.match import compare, compare_media
from evidence.video import hash_video
from sim import photos
from tests.evidence_transforms import TRANSFORMS, jpeg, low_texture, watermark_band

PHOTOS = sorted(Path(__file__).parent.glob("data/photos/*.jpg"))
# Hubble's deep field (black sky, sparse stars) and a repeating brick wall are where perceptual hashing is
# weakest; they take part in the distinct-pairs test, and their transformed copies are reported, not required.
TEXTURED = [p for p in PHOTOS if p.stem not in ("hubble_deep_field", "brick")]
CAP = dict(max_bytes=5_000_000, max_pixels=50_000_000)


def _code(data: bytes) -> str:
    with pytest.raises(FieldproofError) as exc:
        inspect_upload(data, **CAP)
    return exc.value.code


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
            + struct.pack(">I", 0) + b"IDAT" + struct.pack(">I", zlib.crc32(b"IDAT")))


def test_malformed_files_each_have_their_own_code():
    good = PHOTOS[0].read_bytes()
    assert _code(b"") == "empty_file"
    assert _code(good[: len(good) // 2]) == "truncated_image"
    assert _code(_png_header(50_000, 50_000)) == "decompression_bomb"
    zip_payload = b"PK\x03\x04" + b"\x00" * 200 + b"evil.sh"
    assert _code(good + zip_payload) == "polyglot_file"
    assert _code(b"#!/bin/sh\necho hi\n" * 10) == "unsupported_media_type"
    with pytest.raises(FieldproofError) as exc:
        inspect_upload(good, max_bytes=1000, max_pixels=CAP["max_pixels"])
    assert exc.value.code == "file_too_large"


def test_png_named_jpg_is_accepted_as_png():
    buf = io.BytesIO()
    Image.open(PHOTOS[0]).save(buf, "PNG")
    info = inspect_upload(buf.getvalue(), **CAP)  # the name never reaches intake: content decides
    assert info.mime == "image/png" and info.kind == "image"


def test_exif_is_read_and_stripped_from_served_copies():
    data = (Path(__file__).parent / "data/photos/coffee.jpg").read_bytes()
    exif = read_exif(Image.open(io.BytesIO(data)))
    assert exif["make"] == "FieldproofTestCam" and abs(exif["gps"]["lat"] - 39.899) < 1e-3
    served = strip_and_orient(data, 320)
    img = Image.open(io.BytesIO(served))
    assert not img.getexif() and "exif" not in img.info and max(img.size) == 320
    assert b"FieldproofTestCam" not in served and b"GPS" not in served


def test_orientation_is_applied_before_hashing():
    img = Image.open(PHOTOS[0])
    rotated = img.rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the camera stored the pixels sideways
    buf = io.BytesIO()
    rotated.save(buf, "JPEG", quality=90, exif=exif)
    assert hamming(hash_image(buf.getvalue()).phash["full"], hash_image(jpeg(img)).phash["full"]) <= 4


@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.stem)
def test_draft_decoding_stays_within_2_bits_of_full_decode(path):
    ours = hash_image(path.read_bytes()).phash["full"]
    reference = to_int(imagehash.phash(Image.open(path)))
    assert hamming(ours, reference) <= 2


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
@pytest.mark.parametrize("path", TEXTURED, ids=lambda p: p.stem)
def test_transformed_copy_matches_original(path, transform):
    img = Image.open(path)
    stored = hash_image(jpeg(img))
    query = hash_image(jpeg(TRANSFORMS[transform](img)), with_variants=True)
    assert compare(query, stored) is not None


def test_distinct_photos_never_match():
    hashes = {p.stem: hash_image(p.read_bytes(), with_variants=True) for p in PHOTOS}
    for a, b in itertools.permutations(hashes, 2):
        assert compare(hashes[a], hashes[b]) is None, (a, b)


def test_low_texture_photos_sharing_a_watermark_band_do_not_match():
    for s1, s2 in [(1, 2), (3, 4), (5, 6), (7, 8)]:
        q = hash_image(jpeg(watermark_band(low_texture(s1))), with_variants=True)
        assert compare(q, hash_image(jpeg(watermark_band(low_texture(s2))))) is None
    # The price: a plain wall re-encoded is noise to pHash too, so only an exact (sha256) repeat of such a
    # photo is caught; the service reports those separately.


def _video_of(img: Image.Image, seconds: int = 3) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        frame_img = img.convert("RGB").resize((320, 240))
        for _ in range(seconds * 10):
            for packet in stream.encode(av.VideoFrame.from_image(frame_img)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def test_video_frames_match_the_photo_they_show():
    coffee, rocket = Image.open(PHOTOS[4]), Image.open(PHOTOS[-1])
    video = _video_of(coffee)
    info = inspect_upload(video, **CAP)
    assert info.kind == "video" and info.mime == "video/mp4"
    frames = hash_video(video)
    assert 2 <= len(frames) <= 10
    assert compare_media([f.hashes for f in frames], [hash_image(jpeg(coffee))]) is not None
    assert compare_media([f.hashes for f in frames], [hash_image(jpeg(rocket))]) is None


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 16))
def test_index_is_exact_against_brute_force(seed, radius):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**64, 2000, dtype=np.uint64)
    ids = 10_000 + rng.permutation(2000)  # ids are not positions
    query = int(base[0]) ^ int(rng.integers(0, 2**16))
    idx = HashIndex.from_arrays(ids[:1500], base[:1500])
    for i in range(1500, 1700):
        idx.add(int(ids[i]), int(base[i]))
    dist = popcount64(base[:1700] ^ np.uint64(query))
    assert sorted(i for i, _ in idx.search(query, radius)) == sorted(ids[:1700][dist <= radius].tolist())

    def brute(queries, frm, to):
        return {int(ids[p]) for q in queries for p in range(frm, to)
                if (int(base[p]) ^ (q & 0xFFFFFFFFFFFFFFFF)).bit_count() <= radius}

    # Many queries in one pass (a photo's regions × orientations), across block boundaries: the union of each one's.
    queries = [query] + [int(base[i]) ^ int(rng.integers(0, 2**12)) for i in rng.integers(0, 2000, 63)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("evidence.index.NEAR_BLOCK", int(rng.integers(1, 700)))
        assert idx.near(queries, radius) == ({i for q in queries for i, _ in idx.search(q, radius)}, 1700)
        assert idx.near(queries, radius) == (brute(queries, 0, 1700), 1700)
        # A later round: only the entries added since (in the tail, folded by the search), by position, not id.
        for i in range(1700, 2000):
            idx.add(int(ids[i]), int(base[i]))
        assert idx.near(queries, radius, since=1700) == (brute(queries, 1700, 2000), 2000)
        since = int(rng.integers(0, 2001))
        assert idx.near(queries, radius, since) == (brute(queries, since, 2000), 2000)
        # The whole index again: FAISS's copy, built at the first search, now extended by the entries added since.
        assert idx.near(queries, radius) == (brute(queries, 0, 2000), 2000)
    dist = popcount64(base ^ np.uint64(query))
    assert sorted(idx.search(query, np.int64(radius))) == sorted(zip(ids[dist <= radius].tolist(),
                                                                      dist[dist <= radius].tolist()))
    assert idx.near([], radius) == (set(), 2000) and idx.search(query, -1) == []
    assert len(idx.search(query, 10**12)) == 2000  # any radius past 64 is everything


def _cli(argv, capsys):
    args = build_parser().parse_args(argv)
    code = args.func(args)
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_dedup_searches_candidates_and_misses_no_pair_comparing_every_pair_would_find(tmp_path):
    """`fieldproof dedup` compares only the pairs the hash index brings within reach: over copies of photos by every
    transform, other photos and same-scene shots, every pair the rule matches (either way round) is among them, and
    far fewer pairs are compared than all of them."""
    from api.cli_evidence import _candidate_pairs, _media
    from evidence.match import REACH_THRESHOLD, compare_media

    for i, src in enumerate(PHOTOS[:3]):
        img = Image.open(src)
        for how in ("crop5", "mirror", "screenshot_rounded", "wechat", "watermark_band"):
            (tmp_path / f"{i}-{how}.jpg").write_bytes(jpeg(TRANSFORMS[how](img)))
        (tmp_path / f"{i}.jpg").write_bytes(src.read_bytes())
        (tmp_path / f"{i}-again.jpg").write_bytes(src.read_bytes())  # the same bytes twice
    for v in range(3):
        (tmp_path / f"shop-{v}.jpg").write_bytes(photos.camera_jpeg(photos.storefront(7, v)))
    media = {f: _media(f, variants=True) for f in sorted(tmp_path.iterdir())}
    keys = sorted(media)
    every = [(a, b) for n, a in enumerate(keys) for b in keys[n + 1:]]
    matched = {(a, b) for a, b in every if media[a][1] == media[b][1]
               or compare_media(media[a][2], media[b][2], reach=REACH_THRESHOLD)
               or compare_media(media[b][2], media[a][2], reach=REACH_THRESHOLD)}
    found = _candidate_pairs(media, REACH_THRESHOLD)
    assert matched <= set(found) and len(matched) >= 3 * 21 and found == sorted(found)
    assert len(found) < len(every) / 2


def test_cli_hash_and_dedup(tmp_path, capsys):
    img = Image.open(PHOTOS[0])
    (tmp_path / "orig.jpg").write_bytes(jpeg(img))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "wechat.jpg").write_bytes(jpeg(TRANSFORMS["wechat"](img)))
    (tmp_path / "other.jpg").write_bytes(PHOTOS[1].read_bytes())
    (tmp_path / "clip.mp4").write_bytes(_video_of(img))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    code, rows = _cli(["hash", str(tmp_path / "orig.jpg"), str(tmp_path / "clip.mp4"), str(tmp_path / "broken.jpg")],
                      capsys)
    assert code == 1
    assert rows[0]["kind"] == "image" and len(rows[0]["phash"]) == 16 and len(rows[0]["dhash"]) == 16
    assert rows[1]["kind"] == "video" and rows[1]["frames"] and "phash" not in rows[1]
    assert "error" in rows[2]
    # Two visitors' photos of one shop front (own camera, hours apart): paired, but as the same scene.
    taken = datetime(2026, 11, 24, 10, 0, tzinfo=timezone(timedelta(hours=8)))
    (tmp_path / "shop_a.jpg").write_bytes(photos.camera_jpeg(photos.storefront(5, 1), taken, camera=("A", "a", "1")))
    (tmp_path / "shop_b.jpg").write_bytes(photos.camera_jpeg(photos.storefront(5, 2), taken + timedelta(hours=5),
                                                             camera=("B", "b", "2")))
    code, pairs = _cli(["dedup", str(tmp_path)], capsys)
    verdicts = {frozenset((Path(p["a"]).name, Path(p["b"]).name)): p["verdict"] for p in pairs}
    assert verdicts[frozenset({"orig.jpg", "wechat.jpg"})] == "same_capture"
    assert verdicts[frozenset({"orig.jpg", "clip.mp4"})] == "same_capture"
    assert verdicts[frozenset({"shop_a.jpg", "shop_b.jpg"})] == "same_scene"
    assert not any("other.jpg" in n for pair in verdicts for n in pair)


def test_resample_gives_pillows_bytes_for_random_sizes_crops_and_filters():
    """evidence.resample is Pillow's 8-bit resize as matrix products: byte for byte on random sizes (both pass
    orders, single passes, enlarging, single rows), contents (noise, gradients, black and white) and crops, both
    filters hashing uses, and through the transpose."""
    from evidence import resample

    rng = np.random.default_rng(2026)
    for i in range(400):
        rows, cols = int(rng.integers(1, 520)), int(rng.integers(1, 520))
        pixels = [rng.integers(0, 256, (rows, cols), dtype=np.uint8),
                  (np.add.outer(np.arange(rows), 3 * np.arange(cols)) % 256).astype(np.uint8),
                  np.where(rng.random((rows, cols)) < 0.5, 0, 255).astype(np.uint8)][i % 3]
        if i % 4 == 0 and rows > 4 and cols > 4:  # a crop: a view with its parent's row stride
            top, left = int(rng.integers(0, rows // 2)), int(rng.integers(0, cols // 2))
            pixels = pixels[top:, left:]
        image = Image.fromarray(np.ascontiguousarray(pixels))
        for size, name, pil in (((32, 32), "lanczos", Image.Resampling.LANCZOS),
                                ((9, 8), "lanczos", Image.Resampling.LANCZOS),
                                ((64, 64), "bicubic", Image.Resampling.BICUBIC)):
            assert np.array_equal(resample.resize(pixels, size, name), np.asarray(image.resize(size, pil)))
            assert np.array_equal(resample.resize(pixels.astype(np.float64), size, name),
                                  np.asarray(image.resize(size, pil)))
            flipped = np.asarray(image.transpose(Image.Transpose.TRANSPOSE).resize(size, pil)).T
            assert np.array_equal(resample.resize_transposed(pixels, size, name), flipped)
    for shape in ((0, 5), (5, 0), (0, 0)):  # an empty crop (a 1 px core's centre): Pillow gives zeros
        empty = np.zeros(shape, np.uint8)
        for size in ((32, 32), (9, 8)):
            pillow = np.asarray(Image.fromarray(empty).resize(size, Image.Resampling.LANCZOS))
            assert np.array_equal(resample.resize(empty, size), pillow)
            assert np.array_equal(resample.resize_transposed(empty, size), np.zeros(size, np.uint8))
    assert resample.agrees_with_pillow()  # so hashing takes the matrix products here


def test_resample_picture_shares_passes_and_still_gives_pillows_bytes():
    """resample.Picture resizes many regions of one image, regions of the same columns sharing their horizontal
    pass (computed over the rows all of them cover): every region's bytes are still Pillow's, whichever region asks
    first, for both filters and through the transpose, including regions whose own pass order is vertical first."""
    from evidence import resample

    rng = np.random.default_rng(17)
    sizes = (((32, 32), "lanczos", Image.Resampling.LANCZOS), ((9, 8), "lanczos", Image.Resampling.LANCZOS),
             ((64, 64), "bicubic", Image.Resampling.BICUBIC))
    for i in range(60):
        rows, cols = int(rng.integers(40, 520)), int(rng.integers(40, 520))
        pixels = rng.integers(0, 256, (rows, cols), dtype=np.uint8) if i % 2 else \
            (np.add.outer(np.arange(rows), 3 * np.arange(cols)) % 256).astype(np.uint8)
        boxes = []
        for _ in range(3):  # column spans, each shared by a few regions with other rows (one of them very short)
            left = int(rng.integers(0, cols // 2))
            right = int(rng.integers(left + 1, cols + 1))
            for _ in range(int(rng.integers(1, 4))):
                top = int(rng.integers(0, rows - 1))
                boxes.append((left, top, right, int(rng.integers(top + 1, rows + 1))))
        picture = resample.Picture(pixels, boxes)
        for j in rng.permutation(len(boxes)):
            left, top, right, bottom = boxes[j]
            image = Image.fromarray(np.ascontiguousarray(pixels[top:bottom, left:right]))
            for size, name, pil in sizes:
                assert np.array_equal(picture.resize(boxes[j], size, name), np.asarray(image.resize(size, pil)))
                flipped = np.asarray(image.transpose(Image.Transpose.TRANSPOSE).resize(size, pil)).T
                assert np.array_equal(picture.resize_transposed(boxes[j], size, name), flipped)


def test_hashing_falls_back_to_pillow_with_the_same_hashes(monkeypatch):
    """Where evidence.resample would not match the installed Pillow, hashing resizes with Pillow itself: the same
    hashes, variants and texture (and the fast path is the one taken when it matches)."""
    from evidence import hashing, resample

    greys = [hashing.load_grey(p.read_bytes()) for p in PHOTOS]
    fast = [hash_image(g, with_variants=True) for g in greys]
    called, pillow_small = [], hashing._pillow_small
    monkeypatch.setattr(resample, "agrees_with_pillow", lambda: False)
    monkeypatch.setattr(hashing, "_pillow_small", lambda *a, **k: called.append(1) or pillow_small(*a, **k))
    slow = [hash_image(g, with_variants=True) for g in greys]
    assert called
    assert [(h.phash, h.dhash, h.variants, h.texture) for h in fast] == \
        [(h.phash, h.dhash, h.variants, h.texture) for h in slow]



def test_a_stored_files_photo_box_is_kept_with_its_keypoints_and_gives_the_same_photo():
    """features.Photo.features_file keeps the photo's box (chrome.photo_box) with the keypoints, so a stored file's
    Photo is made without looking for the box again: the same pixels and keypoints as Photo.of, for a camera photo
    and for a screenshot with chrome; a file written before the box was kept still reads (the box looked for);
    a box that does not fit the image is refused like any damaged file."""
    from evidence.features import Photo

    def working(data: bytes):
        return inspect_upload(data, max_bytes=10**8, max_pixels=10**9).grey

    camera = working(photos.camera_jpeg(photos.storefront(3, 5)))
    shot = working(photos.reuse(photos.camera_jpeg(photos.storefront(4, 2)), "screenshot_statusbar"))
    for grey in (camera, shot):
        made = Photo.of(grey)
        assert made.box is not None
        kept = Photo.with_features(grey, made.features_file())
        assert kept.box == made.box and np.array_equal(kept.pixels, made.pixels)
        assert np.array_equal(kept.points, made.points) and np.array_equal(kept.descriptors, made.descriptors)
        old = io.BytesIO()  # as files were written before the box was kept
        np.savez(old, shape=np.array(made.pixels.shape, np.int32), points=made.points, descriptors=made.descriptors)
        before = Photo.with_features(grey, old.getvalue())
        assert before.box == made.box and np.array_equal(before.pixels, made.pixels)
        w, h = grey.size
        for box in ((0, 0, w + 1, h), (5, 5, 5, 9), (-1, 0, w, h)):
            bad = io.BytesIO()
            np.savez(bad, shape=np.array(made.pixels.shape, np.int32), points=made.points,
                     descriptors=made.descriptors, box=np.array(box, np.int32), source=np.array((h, w), np.int32))
            assert Photo.with_features(grey, bad.getvalue()) is None
        # the box of another working image (its size) is refused, however well it would fit this one
        other = io.BytesIO()
        np.savez(other, shape=np.array(made.pixels.shape, np.int32), points=made.points,
                 descriptors=made.descriptors, box=np.array(made.box, np.int32), source=np.array((h + 1, w), np.int32))
        assert Photo.with_features(grey, other.getvalue()) is None
    assert Photo.of(shot).box != (0, 0, *shot.size)  # the screenshot's chrome is cut: the box matters
