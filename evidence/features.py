"""Local-feature confirmation of a hash match, and the pixel test for "one photo derived from the other". Pure.

ORB keypoints (OpenCV, the field's standard) matched with Lowe's ratio test, then a RANSAC fit of a
similarity transform (scale, rotation, shift: what crops, resizes, screenshots and rotations do to a
copy; mirrors are undone first from the hash match's orientation). A copy of one exposure fits it with many
inliers; two unrelated photos do not (a handful of chance matches, scattered).

Derived or re-shot: after alignment, the copy is compared with the other photo in its fine detail (a
band-pass image, tile by tile, at the lower of the two resolutions). A transformed copy keeps the very
same fine detail (only compression and resampling noise is added), so most tiles correlate strongly; a
second exposure from the same spot differs in light, shadows, people, parallax and sensor noise, so its
tiles do not. The median over tiles ignores a watermark band, a status bar or rounded corners.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, replace

import cv2
import numpy as np
from PIL import Image

from evidence.chrome import photo_box
from evidence.faiss_lib import load_faiss

# One thread: an evidence worker process is one of several per core, and OpenCV's own pool would only contend
# with them (and make the per-upload CPU figure in bench/bench_phash.py depend on the core count).
cv2.setNumThreads(1)

ORB_FEATURES = 1000
FAST_THRESHOLD = 10
RATIO = 0.8  # Lowe's ratio test
RANSAC_PX = 3.0  # reprojection error allowed, in pixels of the stored working image (≤ 512 px a side)
MIN_INLIERS = 25  # unrelated photos give ≤ 10 (over the test corpus and 200 generated scenes, 8 orientations)
MIN_INLIER_SHARE = 0.25  # inliers among ratio-test matches
MIN_SCALE, MAX_SCALE = 0.2, 5.0  # a copy is not shrunk or blown up beyond this
# Keypoints each photo must have for a failed fit to say "not one exposure": every copy with this many fitted
# with >= 81 inliers (test photos and generated storefronts, every re-use transform, both directions; a real
# simulated screenshot copy with 268 keypoints: 123), while the false duplicates of the 2026-11-29 22:33Z day
# (hash collisions, and honest re-shots against a low-resolution copy of another re-shot) fitted 3-22 with
# 268-985. A tiny copy (the deep-field photo resized: 40 keypoints) stays undecided (the hash rule).
MIN_KEYPOINTS_TO_REFUTE = 200
# A copy stretched unevenly or warped in perspective has no similarity fit, but a general one: before the pixels
# refute a pair, the same matches are fitted with a homography too (a copy stretched 1.8x one way: 41-43 inliers;
# the false duplicates above: 6-15).
HOMOGRAPHY_PX = 3.0
# RANSAC rounds for it: a copy's matches are mostly inliers (a 1.8x stretch: 41 of ~60), found in tens of rounds;
# unrelated photos (nothing to find) run them all, and 2,000 doubled the pixel checks of unrelated pairs.
HOMOGRAPHY_ITERS = 400
TILES = 8  # the band-pass comparison grid (TILES × TILES over the overlap)
MIN_SIDE = 384  # photos smaller than this (long side) are enlarged before ORB
MIN_TILE_STD = 2.0  # tiles without detail (sky, a bar) say nothing and are skipped


@dataclass(frozen=True)
class Alignment:
    """How one image maps onto the other: inliers of the RANSAC fit, its scale, and the fine-detail agreement."""

    inliers: int
    matches: int
    scale: float
    # Median band-pass correlation over tiles after alignment (1 = same pixels, about 0 = unrelated detail, and it
    # can be a little below 0); None when it was not computed (no fit, or too few tiles with detail).
    detail: float | None
    keypoints: int = 0  # the fewer of the two photos' ORB keypoints (0: not counted)
    # Inliers of a homography over the same matches, fitted only where it can refute (enough keypoints, too few
    # similarity inliers; None: not fitted). With fewer matches than MIN_INLIERS no fit can reach it, and the
    # matches' count stands in for the inliers (an upper bound) without fitting (~4 ms of RANSAC saved).
    general_inliers: int | None = None

    @property
    def refuted(self) -> bool:
        """Both photos had keypoints to spare and nothing fits, not even a homography (a stretched or keystoned
        copy has one): the pixels say they are not one exposure."""
        return (self.keypoints >= MIN_KEYPOINTS_TO_REFUTE and self.inliers < MIN_INLIERS
                and self.general_inliers is not None and self.general_inliers < MIN_INLIERS)

    @property
    def confirmed(self) -> bool:
        """The fit is a real geometric relation, not chance matches."""
        return (self.inliers >= MIN_INLIERS and self.inliers >= MIN_INLIER_SHARE * self.matches
                and MIN_SCALE <= self.scale <= MAX_SCALE)


# What a stored features file depends on besides the photo's bytes (pairs.features_key names it): the detector's
# settings, the preparation of the pixels (``_photo``, evidence.chrome) and OpenCV's build. Bump
# FEATURES_FORMAT when ``_photo`` or evidence.chrome change what ORB sees; the rest changes the name by itself.
FEATURES_FORMAT = 2  # 2: a screenshot's drawn frame gives the photo whole (evidence.chrome.photo_box)
FEATURES_VERSION = hashlib.sha256(
    f"{FEATURES_FORMAT}:{ORB_FEATURES}:{FAST_THRESHOLD}:{MIN_SIDE}:{cv2.__version__}".encode()).hexdigest()[:8]


def _detector() -> cv2.ORB:
    return cv2.ORB_create(nfeatures=ORB_FEATURES, fastThreshold=FAST_THRESHOLD)


def keypoints(grey: np.ndarray) -> tuple[list, np.ndarray | None]:
    """ORB keypoints and descriptors of a uint8 greyscale image."""
    return _detector().detectAndCompute(grey, None)


def _good_matches(da: np.ndarray, db: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query descriptor's nearest stored one in Hamming distance, where it passes Lowe's ratio test against the
    second nearest: (query indices, stored indices), in query order.

    Exact brute force by FAISS (IndexBinaryFlat): ~5x OpenCV's BFMatcher.knnMatch on 1,000 × 1,000 ORB
    descriptors (1.5 against 8.3 ms on the 2-core machine; the whole pixel check: bench_phash pixel_check_ms), and
    the very same matches: a match passes only when its nearest
    distance is strictly below 0.8 of the second, so the nearest is unique and no tie-break can change it."""
    if len(da) == 0 or len(db) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    index = load_faiss().IndexBinaryFlat(db.shape[1] * 8)
    index.add(np.ascontiguousarray(db, np.uint8))
    distance, nearest = index.search(np.ascontiguousarray(da, np.uint8), 2)
    keep = distance[:, 0] < RATIO * distance[:, 1]
    return np.flatnonzero(keep), nearest[keep, 0]


@dataclass(frozen=True)
class Photo:
    """A working image made ready for comparison once (chrome cut, enlarged when small: ``_photo``) with its ORB
    keypoints (their positions, N × 2 float32: all ``align`` reads of a keypoint), so a new upload compared with
    several stored files finds its own keypoints only once. ``box``: where in the working image (of ``source``
    shape) the photo is (chrome.photo_box), kept in the features file so a stored file's Photo is made without
    looking for it again."""

    pixels: np.ndarray
    points: np.ndarray
    descriptors: np.ndarray | None
    box: tuple[int, int, int, int] | None = None
    source: tuple[int, int] | None = None

    @classmethod
    def of(cls, img: Image.Image) -> "Photo":
        arr = _grey(img)
        box = photo_box(arr)
        pixels = _photo(arr, box)
        points, descriptors = keypoints(pixels)
        return cls(pixels, np.array([k.pt for k in points], np.float32).reshape(-1, 2), descriptors, box,
                   arr.shape)

    @classmethod
    def with_features(cls, img: Image.Image, packed: bytes) -> "Photo | None":
        """The Photo of ``img`` with keypoints found before (``packed``, from ``features_file``) instead of found
        again: the same pixels, positions and descriptors as ``of`` (ORB is deterministic). None when ``packed`` is
        not a well-formed features file of a photo this size (the caller finds them again): a cache that cannot
        be read never fails the job that reads it. A file written before the box was kept (no ``box``) has the
        photo looked for again, as ``of`` does."""
        arr = _grey(img)
        try:
            with np.load(io.BytesIO(packed), allow_pickle=False) as f:
                shape, points, descriptors = (np.asarray(f[name]) for name in ("shape", "points", "descriptors"))
                kept = (np.asarray(f["box"]), np.asarray(f["source"])) if "box" in f.files else None
            # a kept box counts only for the working image it was found in (the file is of that image alone)
            box = photo_box(arr) if kept is None else _box_within(*kept, arr.shape)
            if box is None:
                return None
            pixels = _photo(arr, box)
            if (shape.shape != (2,) or tuple(shape.tolist()) != pixels.shape or points.dtype != np.float32
                    or points.ndim != 2 or points.shape[1] != 2 or descriptors.dtype != np.uint8
                    or descriptors.shape not in ((0,), (len(points), 32))
                    or (len(descriptors) == 0) != (len(points) == 0)):
                return None
        except Exception:  # noqa: BLE001 - whatever a damaged file makes numpy raise (zip, zlib, header, memory)
            return None
        return cls(pixels, points, descriptors if len(descriptors) else None, box, arr.shape)

    def features_file(self) -> bytes:
        """The keypoints, descriptors, the prepared pixels' shape and the photo's box, packed for
        ``with_features`` (~37 KB)."""
        buf = io.BytesIO()
        extra = {} if self.box is None else {"box": np.array(self.box, np.int32),
                                             "source": np.array(self.source, np.int32)}
        np.savez(buf, shape=np.array(self.pixels.shape, np.int32), points=self.points,
                 descriptors=self.descriptors if self.descriptors is not None else np.zeros(0, np.uint8), **extra)
        return buf.getvalue()


def _box_within(box: np.ndarray, source: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """A kept box, if it was found in an image of ``shape`` (``source``) and is four integers that cut a non-empty
    part of it."""
    if box.shape != (4,) or box.dtype.kind not in "iu" or source.shape != (2,) or tuple(source.tolist()) != shape:
        return None
    left, top, right, bottom = (int(v) for v in box)
    h, w = shape[:2]
    return (left, top, right, bottom) if 0 <= left < right <= w and 0 <= top < bottom <= h else None


def align(query: Photo, stored: Photo) -> tuple[Alignment, np.ndarray | None]:
    """Fit query → stored; the 2×3 similarity matrix when one was found."""
    ka, da = query.points, query.descriptors
    kb, db = stored.points, stored.descriptors
    kp = min(len(ka), len(kb)) if da is not None and db is not None else 0
    if da is None or db is None or len(ka) < 8 or len(kb) < 8:
        return Alignment(0, 0, 0.0, None, kp), None
    query_idx, stored_idx = _good_matches(da, db)
    good = len(query_idx)
    if good < 8:
        return Alignment(0, good, 0.0, None, kp), None
    src, dst = ka[query_idx], kb[stored_idx]
    matrix, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX,
                                               maxIters=2000, confidence=0.995)
    found = Alignment(0, good, 0.0, None, kp) if matrix is None else Alignment(
        int(mask.sum()), good, float(np.sqrt(abs(np.linalg.det(matrix[:, :2])))), None, kp)
    if kp >= MIN_KEYPOINTS_TO_REFUTE and found.inliers < MIN_INLIERS:  # only then can it refute (``refuted``)
        if good < MIN_INLIERS:  # no fit over these matches can reach MIN_INLIERS: their count bounds it
            return replace(found, general_inliers=good), matrix
        _, general = cv2.findHomography(src, dst, cv2.RANSAC, HOMOGRAPHY_PX, maxIters=HOMOGRAPHY_ITERS,
                                        confidence=0.995)
        found = replace(found, general_inliers=0 if general is None else int(general.sum()))
    return found, matrix


def _band(img: np.ndarray) -> np.ndarray:
    """Fine detail: a difference of Gaussians (σ 1 − σ 3), so light and colour changes drop out."""
    f = img.astype(np.float32)
    return cv2.GaussianBlur(f, (0, 0), 1.0) - cv2.GaussianBlur(f, (0, 0), 3.0)


def detail_agreement(query: np.ndarray, stored: np.ndarray, matrix: np.ndarray) -> float | None:
    """Median band-pass correlation over tiles of the overlap, compared at the lower of the two resolutions."""
    if matrix[0, 0] ** 2 + matrix[0, 1] ** 2 > 1.0:  # the query is the larger: bring the stored one onto it
        moving, fixed, m = stored, query, cv2.invertAffineTransform(matrix)
    else:
        moving, fixed, m = query, stored, matrix
    h, w = fixed.shape
    warped = cv2.warpAffine(moving, m, (w, h), flags=cv2.INTER_AREA, borderValue=0)
    valid = cv2.warpAffine(np.full(moving.shape, 255, np.uint8), m, (w, h), flags=cv2.INTER_NEAREST) == 255
    valid = cv2.erode(valid.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    return _tile_median_correlation(_band(warped), _band(fixed), valid)


def _tile_median_correlation(a: np.ndarray, b: np.ndarray, valid: np.ndarray) -> float | None:
    """Median over a TILES × TILES grid of the correlation of ``a`` and ``b`` on their valid pixels; tiles less than
    90 % valid or without detail (either side's std below MIN_TILE_STD) are skipped; None with fewer than 4 left.

    Every tile's moments come from one pass of sums per grid row and column (np.add.reduceat), not a Python loop
    over 64 tiles: the same numbers in float64, about a tenth of the time."""
    h, w = valid.shape
    if h < TILES or w < TILES:
        return None
    ys = [r[0] for r in np.array_split(np.arange(h), TILES)]
    xs = [c[0] for c in np.array_split(np.arange(w), TILES)]

    def per_tile(x: np.ndarray) -> np.ndarray:
        return np.add.reduceat(np.add.reduceat(x, ys, axis=0), xs, axis=1)

    a = np.where(valid, a, 0).astype(np.float64)
    b = np.where(valid, b, 0).astype(np.float64)
    n = per_tile(valid.astype(np.float64))
    size = np.outer(np.diff(ys + [h]), np.diff(xs + [w]))
    with np.errstate(divide="ignore", invalid="ignore"):
        ma, mb = per_tile(a) / n, per_tile(b) / n
        va = np.maximum(per_tile(a * a) / n - ma * ma, 0)
        vb = np.maximum(per_tile(b * b) / n - mb * mb, 0)
        corr = (per_tile(a * b) / n - ma * mb) / np.sqrt(va * vb)
        used = (n >= 0.9 * size) & (va >= MIN_TILE_STD ** 2) & (vb >= MIN_TILE_STD ** 2)
    scores = corr[used]
    return float(np.median(scores)) if len(scores) >= 4 else None


def _grey(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"))


def _photo(arr: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The photo (``box`` of the greyscale working image: without phone chrome), enlarged when small (a photo in a
    tall screenshot's working image can be ~160 px wide: too few ORB keypoints at that size, while enlarged it
    keeps its corners and blobs)."""
    left, top, right, bottom = box
    arr = arr[top:bottom, left:right]
    longest = max(arr.shape)
    if longest < MIN_SIDE:
        f = MIN_SIDE / longest
        arr = cv2.resize(arr, (round(arr.shape[1] * f), round(arr.shape[0] * f)), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(arr)


def compare_pixels(query: Image.Image | Photo, stored: Image.Image | Photo) -> Alignment:
    """Align two greyscale working images (or their Photos) and measure how much fine detail they share."""
    q = query if isinstance(query, Photo) else Photo.of(query)
    s = stored if isinstance(stored, Photo) else Photo.of(stored)
    found, matrix = align(q, s)
    if matrix is None or not found.confirmed:
        return found
    return replace(found, detail=detail_agreement(q.pixels, s.pixels, matrix))
