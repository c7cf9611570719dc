"""phash_throughput and phash_vs_decode_limit on ~12 MP JPEGs.

phash_throughput: hashing as the evidence pipeline does it (intake's draft decode to the working image, orientation,
then every region's pHash + dHash and the dihedral pHash variants the duplicate search queries with), against the straightforward ``imagehash.phash(Image.open(p))``
(full decode, one hash) on the same files in the same run.
phash_vs_decode_limit: the same rate against JPEG draft decoding alone: how close hashing is to the decode floor.
Each is one round over the files (after one untimed call), so no file is served warm from a previous round.

evidence_cpu_per_upload / evidence_cpu_per_matched_upload: CPU milliseconds (``time.process_time``, all threads)
of the processing step after the decode — hash the stored working image, then decide each candidate the index
found — for an upload with no candidate (most uploads) and one with a matched stored file (a re-use or a
photo of a place photographed before). Ours: eight regions (phone chrome stripped, centred 90 %), and per
matched pair ORB + RANSAC, the fine-detail test and the same-capture decision. Baseline: the previous pipeline
in the same run — the six regions it hashed and the hash rule alone. The difference is the added cost.

pixel_check_ms: CPU milliseconds of one pixel check (features.compare_pixels on two photos whose keypoints are
known: what evidence.pairs runs per hash candidate) over same-scene shop fronts, their copies and unrelated photos,
against the check as it was before FAISS in the same run (OpenCV's BFMatcher.knnMatch, the homography fitted even
where too few matches could reach the bar); every pair's outcome must be the same, or the figure fails.
"""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import imagehash
import numpy as np
import scipy.fftpack
from PIL import Image

from bench.common import figure, scale
from evidence import features
from evidence.sameness import Side, decide, pixels_of
from evidence.hashing import (DIHEDRAL, PHASH_SIDE, TRANSPOSING, ImageHashes, _centre, _trim_box, grey_file,
                              hash_grey, hash_image, load_grey, to_int)
from evidence.match import REACH_THRESHOLD, compare
from sim import photos
from sim.transforms import TRANSFORMS, crop5, jpeg

PHOTOS = Path(__file__).resolve().parent.parent / "tests" / "data" / "photos"


def make_12mp(out: Path, n: int) -> list[Path]:
    """``n`` 4000x3000 JPEGs (quality 90) upscaled from the test photos."""
    paths = []
    sources = sorted(PHOTOS.glob("*.jpg"))
    for i in range(n):
        img = Image.open(sources[i % len(sources)]).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
        p = out / f"p{i}.jpg"
        img.save(p, "JPEG", quality=90)
        paths.append(p)
    return paths


def _rate(fn, paths: list[Path]) -> float:
    """Images per second over one round (after one untimed call that loads the code paths)."""
    fn(paths[0])
    started = time.perf_counter()
    for p in paths:
        fn(p)
    return len(paths) / (time.perf_counter() - started)


def _as_the_worker_does(p: Path) -> None:
    # Intake's draft decode to the working image, kept as PGM (evidence.hashing.grey_file); then the processing job
    # reads it back and hashes it (every region's pHash + dHash and the dihedral variants), as
    # evidence.service._frames does: the steps timed through the functions they call.
    hash_grey(load_grey(grey_file(load_grey(p.read_bytes()))), with_variants=True)


def _draft_decode(p: Path) -> None:
    img = Image.open(p)
    img.draft("L", (256, 256))
    img.load()


def _previous_hashes(grey: Image.Image) -> ImageHashes:
    """The pipeline before chrome stripping: six regions, their pHash/dHash and dihedral pHash variants."""
    core = _trim_box(np.asarray(grey, dtype=np.float32))
    left, top, right, bottom = core
    cut = int((bottom - top) * 0.15)
    parts = {"full": grey, "core": grey.crop(core), "c80": grey.crop(_centre(core, 0.8)),
             "c64": grey.crop(_centre(core, 0.64)), "t85": grey.crop((left, top, right, bottom - cut)),
             "b85": grey.crop((left, top + cut, right, bottom))}
    ph = {k: to_int(imagehash.phash(im)) for k, im in parts.items()}
    out = ImageHashes(ph, {k: to_int(imagehash.dhash(im)) for k, im in parts.items()},
                      float(np.asarray(parts["c64"].resize((64, 64)), dtype=np.float32).std()))
    per_region = {k: _dihedral_phashes(im, ph[k], im.resize((PHASH_SIDE, PHASH_SIDE), Image.Resampling.LANCZOS))
                  for k, im in parts.items()}  # it resized each region twice (imagehash.phash, then the variants)
    out.variants = [{k: per_region[k][i] for k in parts} for i in range(len(DIHEDRAL))]
    return out


def _previous_phash_of_pixels(pixels: np.ndarray) -> int:
    """The previous pipeline's pHash of 32 px pixels: one DCT pair and one hex string per hash."""
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)
    low = dct[:8, :8]
    return to_int(imagehash.ImageHash(low > np.median(low)))


def _dihedral_phashes(im: Image.Image, identity: int, small: Image.Image) -> list[int]:
    """The previous pipeline's dihedral pHashes of a region (two resizes, eight DCTs one by one)."""
    small_t = (im.transpose(Image.Transpose.TRANSPOSE).resize((PHASH_SIDE, PHASH_SIDE), Image.Resampling.LANCZOS)
               .transpose(Image.Transpose.TRANSPOSE))
    return [identity if t is None else
            _previous_phash_of_pixels(np.asarray((small_t if t in TRANSPOSING else small).transpose(t)))
            for t in DIHEDRAL]


def process_previous(upload: bytes, stored: list[tuple[bytes, ImageHashes]]) -> None:
    """Processing before issue 17: six regions hashed, each stored file decided by the hash rule alone."""
    query = _previous_hashes(load_grey(upload))
    for _, hashes in stored:
        compare(query, hashes)


def process_ours(upload: bytes, stored: list[tuple[bytes, ImageHashes]]) -> None:
    """Processing now: eight regions (chrome stripped), each hash candidate confirmed by ORB and decided."""
    grey = load_grey(upload)
    query = hash_image(grey, with_variants=True)
    for data, hashes in stored:
        m = compare(query, hashes, reach=REACH_THRESHOLD)
        if m is not None:
            decide(Side("a", None, True), Side("b", None, True), m, pixels_of(grey, load_grey(data), m))


def _cpu_ms(fn, cases: list[tuple[bytes, list]]) -> float:
    """Mean CPU milliseconds per case over one round (after one untimed call)."""
    fn(*cases[0])
    started = time.process_time()
    for upload, stored in cases:
        fn(upload, stored)
    return (time.process_time() - started) * 1000 / len(cases)


def _per_upload(paths: list[Path]) -> dict:
    """CPU per upload after the decode, ours and the previous pipeline, without and with a matched stored file."""
    greys = [grey_file(load_grey(p.read_bytes())) for p in paths]  # the stored working images (PGM)
    copies = [grey_file(load_grey(grey_file(crop5(Image.open(p).convert("L"))))) for p in paths]
    plain = [(g, []) for g in greys]
    matched = [(c, [(g, hash_image(g))]) for c, g in zip(copies, greys)]
    out = {}
    for name, cases in (("evidence_cpu_per_upload", plain), ("evidence_cpu_per_matched_upload", matched)):
        ours, before = _cpu_ms(process_ours, cases), _cpu_ms(process_previous, cases)
        out[name] = figure(ours, "ms", before, False,
                           f"CPU per upload after the decode; added {ours - before:.1f} ms vs the previous pipeline "
                           "(baseline) in the same run", detail={"added_ms": round(ours - before, 2)})
    return out


def _previous_compare_pixels(q: features.Photo, s: features.Photo) -> features.Alignment:
    """compare_pixels before FAISS: OpenCV's brute-force k-NN, and the homography fitted whenever it could refute."""
    kp = min(len(q.points), len(s.points)) if q.descriptors is not None and s.descriptors is not None else 0
    if q.descriptors is None or s.descriptors is None or len(q.points) < 8 or len(s.points) < 8:
        return features.Alignment(0, 0, 0.0, None, kp)
    knn = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(q.descriptors, s.descriptors, k=2)
    good = [p[0] for p in knn if len(p) == 2 and p[0].distance < features.RATIO * p[1].distance]
    if len(good) < 8:
        return features.Alignment(0, len(good), 0.0, None, kp)
    src, dst = q.points[[m.queryIdx for m in good]], s.points[[m.trainIdx for m in good]]
    matrix, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                               ransacReprojThreshold=features.RANSAC_PX, maxIters=2000,
                                               confidence=0.995)
    found = features.Alignment(0, len(good), 0.0, None, kp) if matrix is None else features.Alignment(
        int(mask.sum()), len(good), float(np.sqrt(abs(np.linalg.det(matrix[:, :2])))), None, kp)
    if kp >= features.MIN_KEYPOINTS_TO_REFUTE and found.inliers < features.MIN_INLIERS:
        _, general = cv2.findHomography(src, dst, cv2.RANSAC, features.HOMOGRAPHY_PX,
                                        maxIters=features.HOMOGRAPHY_ITERS, confidence=0.995)
        found = replace(found, general_inliers=0 if general is None else int(general.sum()))
    if matrix is None or not found.confirmed:
        return found
    return replace(found, detail=features.detail_agreement(q.pixels, s.pixels, matrix))


def _pixel_check() -> dict:
    """CPU per pixel check, ours and before FAISS, over the same pairs; any differing outcome is an error."""
    shots = []
    for shop in range(max(3, int(6 * scale()))):
        img = photos.storefront(shop, 0)
        shots += [load_grey(photos.camera_jpeg(photos.storefront(shop, v))) for v in range(1, 4)]
        shots += [load_grey(jpeg(TRANSFORMS[how](img), 82)) for how in ("crop5", "screenshot_statusbar", "wechat")]
    shots += [load_grey(p.read_bytes()) for p in sorted(PHOTOS.glob("*.jpg"))]
    found = [features.Photo.of(g) for g in shots]
    pairs = [(a, b) for i, a in enumerate(found) for j, b in enumerate(found) if i != j]
    timed = {}
    for name, fn in (("ours", features.compare_pixels), ("before", _previous_compare_pixels)):
        fn(*pairs[0])
        started = time.process_time()
        outcomes = [fn(a, b) for a, b in pairs]
        timed[name] = ((time.process_time() - started) * 1000 / len(pairs), outcomes)
    (ours, mine), (before, theirs) = timed["ours"], timed["before"]
    differ = sum((x.matches, x.inliers, x.scale, x.detail, x.confirmed, x.refuted)
                 != (y.matches, y.inliers, y.scale, y.detail, y.confirmed, y.refuted)
                 for x, y in zip(mine, theirs))
    return {"pixel_check_ms": figure(ours, "ms", before, False,
                                     "reference: CPU per pixel check (keypoints known) vs OpenCV BFMatcher k-NN and "
                                     "an always-fitted homography, same run, same outcomes",
                                     errors=differ, detail={"pairs": len(pairs), "differing_outcomes": differ})}


def run() -> dict:
    """Measure the three rates and the per-upload CPU of processing."""
    n = max(6, int(20 * scale()))
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_12mp(Path(tmp), n)
        ours = _rate(_as_the_worker_does, paths)
        baseline = _rate(lambda p: imagehash.phash(Image.open(p)), paths)
        floor = _rate(_draft_decode, paths)
        per_upload = _per_upload(paths)
    return {**per_upload, **_pixel_check(), "phash_throughput": figure(ours, "img/s", baseline, True,
                                       "ratio >= 8 vs imagehash.phash(Image.open(p)) on 12 MP JPEGs, as the worker "
                                       "hashes (regions, variants)", min_ratio=8),
            "phash_vs_decode_limit": figure(ours, "img/s", floor, True, "ratio >= 0.85 of JPEG draft decoding alone",
                                                  min_ratio=0.85)}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
