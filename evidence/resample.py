"""Pillow's resize of an 8-bit greyscale image, byte for byte, as matrix products.

Hashing resizes every region of a working image three times (the 32 px pHash input, its transpose for the
variants, the 9×8 dHash input): 25 resizes an upload, 0.3-0.9 ms each in Pillow's scalar resampling loops, the
largest part of an upload's processing. Pillow's 8-bit resampling is fixed-point: each pass adds integer
coefficients (the filter's weights scaled by 2^22 and rounded) times 8-bit pixels to 2^21, shifts right by 22 and
clips to 0-255, and the second pass resamples the first one's rounded result. Those sums are integers below 2^31,
so float64 matrix products compute every one exactly, in any order: the same bytes from BLAS, in blocks of a few
outputs that skip the inputs outside their filters' reach (hash_grey with variants: 13.4 → 5.2 ms of CPU). Every
pass runs along the leading axis of a row-major array (the horizontal one down a transposed copy, which a
working image's regions share, as regions of the same columns share that pass: ``Picture``; blocks of 4):
5.5 → 4.2 ms, side by side.

The coefficients are Pillow's (``precompute_coeffs`` and ``normalize_coeffs_8bpc`` in its Resample.c), computed in
the same double-precision steps in the same order, ``sin`` from the same C library (``math.sin``); the passes run
in Pillow's order (vertical first when the height shrinks by more than twice what the width does, since Pillow
12.3). ``agrees_with_pillow`` checks that against the installed Pillow once a process, and hashing uses Pillow
itself if it disagrees. ``tests/test_evidence_pure.py`` compares with Pillow on random sizes, contents and crops.
Meant for working images (at most 512 px a side), not for large resizes.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
from PIL import Image
from threadpoolctl import ThreadpoolController

PRECISION_BITS = 32 - 8 - 2  # Resample.c: 8-bit samples, 2 bits of headroom in an int32
_HALF = float(1 << (PRECISION_BITS - 1))
_ONE = float(1 << PRECISION_BITS)


def _lanczos(x: np.ndarray) -> np.ndarray:
    """Resample.c's lanczos_filter: sinc(x)·sinc(x/3) on [-3, 3), each sinc's sin from the C library (math.sin,
    the function Pillow calls), the rest in the same double-precision steps."""
    def sinc(v: np.ndarray) -> np.ndarray:
        scaled = v * math.pi
        sines = np.fromiter(map(math.sin, scaled.tolist()), dtype=np.float64, count=scaled.size)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(v == 0.0, 1.0, sines / scaled)
    inside = (-3.0 <= x) & (x < 3.0)
    out = np.zeros_like(x)
    kept = x[inside]
    out[inside] = sinc(kept) * sinc(kept / 3)
    return out


def _bicubic(x: np.ndarray) -> np.ndarray:
    """Resample.c's bicubic_filter (a = -0.5): the same polynomial, evaluated in the same order."""
    a = -0.5
    x = np.abs(x)
    return np.where(x < 1.0, ((a + 2.0) * x - (a + 3.0)) * x * x + 1,
                    np.where(x < 2.0, (((x - 5) * x + 8) * x - 4) * a, 0.0))


FILTERS = {"lanczos": (_lanczos, 3.0), "bicubic": (_bicubic, 2.0)}


def _coefficients(in_size: int, out_size: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's integer coefficients for one pass, banded as Pillow keeps them: each output's first input
    (``xmin``) and its ``ksize`` coefficients (zero past its last input; exact in float64 and float32: < 2^23):
    precompute_coeffs then normalize_coeffs_8bpc, operation for operation."""
    filt, base_support = FILTERS[name]
    scale = filterscale = float(in_size) / out_size
    if filterscale < 1.0:
        filterscale = 1.0
    support = base_support * filterscale
    inv_filterscale = 1.0 / filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    center = 0.0 + (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)  # C's (int): toward zero
    xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size) - xmin
    taps = np.arange(ksize)
    used = taps[None, :] < xmax[:, None]
    weights = np.where(used, filt(((xmin[:, None] + taps[None, :] - center[:, None]) + 0.5) * inv_filterscale), 0.0)
    total = np.cumsum(weights, axis=1)[:, -1]  # summed in tap order, as the C loop does (unused taps add 0)
    k = np.divide(weights, total[:, None], out=weights.copy(), where=(total != 0.0)[:, None])
    return xmin, np.trunc(np.where(k < 0, -0.5 + k * _ONE, 0.5 + k * _ONE))


# Outputs resampled together by one product: a block's inputs are the span its filters cover, so a 32 px pass over
# 500 px multiplies ~30 % of the dense matrix (a filter covers ~6 outputs' worth of input). Measured on hashing's
# passes: blocks of 4 outputs 12 % less CPU than blocks of 8 (fewer inputs outside the filters' reach), 2 or 3 more.
BLOCK = 4


@lru_cache(maxsize=1024)
def _blocks(in_size: int, out_size: int, name: str) -> tuple[tuple[int, int, int, int, np.ndarray], ...]:
    """Pillow's coefficients for one pass as (first output, end, first input, end, matrix) blocks, float64 (exact
    for these integers, and what the products take without a conversion each call; at most ~55 KB a pass over 512
    px). The last 1,024 (in, out, filter) passes are kept: a working image's regions ask for ~25, and ~55 MB a
    process is the very most they can hold."""
    xmin, k = _coefficients(in_size, out_size, name)
    out = []
    for o0 in range(0, out_size, BLOCK):
        o1 = min(o0 + BLOCK, out_size)
        rows = np.arange(o0, o1)
        i0 = min(int(xmin[o0:o1].min()), in_size)  # an empty input (a 0 px crop): no inputs, zeros as Pillow gives
        i1 = max(int(xmin[o0:o1].max()) + k.shape[1], i0 + 1)
        block = np.zeros((o1 - o0, i1 - i0))
        at = (xmin[o0:o1, None] - i0) + np.arange(k.shape[1])[None, :]
        inside = at < i1 - i0  # taps past the input's end carry 0 (Pillow stops at xmax)
        block[np.broadcast_to((rows - o0)[:, None], at.shape)[inside], at[inside]] = k[o0:o1][inside]
        block = block[:, :max(min(i1, in_size) - i0, 0)]
        block.setflags(write=False)
        out.append((o0, o1, i0, i0 + block.shape[1], block))
    return tuple(out)


def _down(pixels: np.ndarray, height: int, name: str) -> np.ndarray:
    """Resample each column to ``height`` (one of Pillow's passes along the first axis), rounded as Pillow rounds.
    Every pass runs this way, along the leading axis of its array: a block's product (8 × its inputs) @ (its inputs
    × every column) is a wide one, which BLAS runs at ~twice the speed of the narrow (every row × inputs) @ (inputs
    × 8) a pass along the rows would need."""
    out = np.empty((height, pixels.shape[1]))
    for o0, o1, i0, i1, block in _blocks(pixels.shape[0], height, name):
        np.matmul(block, pixels[i0:i1], out=out[o0:o1])
    return _round(out)


def _round(sums: np.ndarray) -> np.ndarray:
    """Resample.c's clip8 of 2^21 + the sum: the shift right by 22 (a floor), clipped to 0-255."""
    sums += _HALF
    sums *= 1.0 / _ONE  # a power of two: the same as dividing, exactly
    np.floor(sums, out=sums)
    return np.clip(sums, 0, 255, out=sums)


def resize(pixels: np.ndarray, size: tuple[int, int], name: str = "lanczos",
           transposed: np.ndarray | None = None, across=None) -> np.ndarray:
    """``np.asarray(Image.fromarray(pixels).resize(size, filter))`` for a 2-D array of 8-bit values (uint8, or
    already float64), as uint8. ``transposed``: ``pixels.T`` laid out row by row (float64), when the caller keeps
    one (a working image's regions share a transposed copy: the horizontal pass reads it); ``across(width)``: the
    horizontal pass of these pixels to ``width`` (width × rows), when the caller keeps it (``Picture``)."""
    width, height = size
    rows, cols = pixels.shape
    if width < 1 or height < 1:
        raise ValueError("height and width must be > 0")  # as Pillow says
    if (width, height) == (cols, rows):
        return pixels.astype(np.uint8)
    wide = pixels if pixels.dtype == np.float64 else pixels.astype(np.float64)
    # ImagingResampleInner: a pass whose size does not change is skipped; the vertical pass goes first when the
    # height shrinks by more than twice what the width does (Pillow 12.3+), else the horizontal one. The
    # horizontal pass runs down the transposed array (``_down``); results of the first pass are small.
    if rows - height > 0 and rows - height > (cols - width) * 2:
        out = _down(wide, height, name)  # the height does change here
        if width != cols:
            out = _down(np.ascontiguousarray(out.T), width, name).T
    else:
        if width != cols:
            out = (across(width) if across is not None else _down(_rows_of(wide, transposed), width, name)).T
        else:
            out = wide
        if height != rows:
            out = _down(np.ascontiguousarray(out), height, name)
    return out.astype(np.uint8, order="C")  # laid out as Pillow's bytes are: a float32 std sums in this order


def _rows_of(wide: np.ndarray, transposed: np.ndarray | None) -> np.ndarray:
    return transposed if transposed is not None else np.ascontiguousarray(wide.T, dtype=np.float64)


def resize_transposed(pixels: np.ndarray, size: tuple[int, int], name: str = "lanczos",
                      transposed: np.ndarray | None = None) -> np.ndarray:
    """``resize(pixels.T, size).T``: Pillow's resize of the transposed image, in ``pixels``' orientation."""
    wide = pixels if pixels.dtype == np.float64 else pixels.astype(np.float64)
    return resize(_rows_of(wide, transposed), size, name, transposed=wide).T


Box = tuple[int, int, int, int]  # left, top, right, bottom


class Picture:
    """An image's pixels, for resizing several regions of it (``resize(pixels[box], ...)`` for each box): the
    horizontal passes read one transposed copy, and a region shares its horizontal pass with the other regions of
    the same columns (a photo's top and bottom 85 % and its core: rows are resampled one by one, so each region's
    pass is rows of the shared one)."""

    def __init__(self, pixels: np.ndarray, boxes) -> None:
        self.wide = pixels.astype(np.float64)
        self.wide_t = np.ascontiguousarray(self.wide.T)
        self._rows: dict[tuple[int, int], tuple[int, int]] = {}  # columns -> the rows their regions cover
        for left, top, right, bottom in boxes:
            t, b = self._rows.get((left, right), (top, bottom))
            self._rows[left, right] = (min(t, top), max(b, bottom))
        self._across: dict = {}

    def resize(self, box: Box, size: tuple[int, int], name: str = "lanczos") -> np.ndarray:
        """``resize(pixels[top:bottom, left:right], size, name)``."""
        left, top, right, bottom = box
        return resize(self.wide[top:bottom, left:right], size, name, transposed=self.wide_t[left:right, top:bottom],
                      across=lambda width: self._horizontal(box, width, name))

    def resize_transposed(self, box: Box, size: tuple[int, int], name: str = "lanczos") -> np.ndarray:
        """``resize_transposed(pixels[top:bottom, left:right], size, name)``."""
        left, top, right, bottom = box
        return resize(self.wide_t[left:right, top:bottom], size, name, transposed=self.wide[top:bottom, left:right]).T

    def _horizontal(self, box: Box, width: int, name: str) -> np.ndarray:
        left, top, right, bottom = box
        first, last = self._rows.get((left, right), (top, bottom))
        if not first <= top <= bottom <= last:  # a box not announced: its own rows
            first, last = top, bottom
        key = (left, right, first, last, width, name)
        if key not in self._across:
            self._across[key] = _down(self.wide_t[left:right, first:last], width, name)
        return self._across[key][:, top - first:bottom - first]


# Shapes that take every branch of Pillow's resampling: both pass orders either side of the rule's threshold,
# either pass alone, the size kept, enlarging, one row or column; both filters, and through the transpose.
_PROBES = ((384, 512, (32, 32)), (512, 384, (32, 32)), (300, 90, (32, 32)), (300, 120, (32, 32)),
           (400, 140, (9, 8)), (512, 384, (9, 8)), (120, 37, (9, 8)), (300, 200, (64, 64)), (32, 200, (32, 32)),
           (200, 32, (32, 32)), (20, 27, (32, 32)), (1, 300, (9, 8)), (300, 1, (32, 32)), (32, 32, (32, 32)))
PILLOW_FILTERS = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC}


@lru_cache(maxsize=1)
def agrees_with_pillow() -> bool:
    """Whether this module gives the installed Pillow's bytes on every probe (asked once a process). Pillow may
    change its resampling (12.3 changed which pass runs first); where it does, hashing uses Pillow itself."""
    rng = np.random.default_rng(0)
    for rows, cols, size in _PROBES:
        pixels = rng.integers(0, 256, (rows, cols), dtype=np.uint8)
        image = Image.fromarray(pixels)
        for name, pil in PILLOW_FILTERS.items():
            if not (np.array_equal(resize(pixels, size, name), np.asarray(image.resize(size, pil)))
                    and np.array_equal(resize_transposed(pixels, size, name),
                                       np.asarray(image.transpose(Image.Transpose.TRANSPOSE).resize(size, pil)).T)):
                return False
    return True


_controller: ThreadpoolController | None = None
_limit_lock = threading.Lock()
_limit_depth = 0  # hashes inside one_thread() right now, on any thread
_limiter = None  # the limit set by the first of them, restored by the last


@contextmanager
def one_thread() -> Iterator[None]:
    """BLAS on the calling thread only, for a block of resizes. Their products are small (~0.2 ms): BLAS's own
    threads would spin on the other core for them (twice the CPU a resize, measured), and each worker process is
    already one of a pool sized to the cores. ~11 µs a block; the limit is process-wide while any block runs: the
    first block to enter sets it and the last to leave restores the original (blocks overlapping on several threads
    would otherwise restore each other's limit of 1 and leave BLAS on one thread for good)."""
    global _controller, _limit_depth, _limiter
    with _limit_lock:
        if _controller is None:
            _controller = ThreadpoolController()
        if _limit_depth == 0:
            _limiter = _controller.limit(limits=1, user_api="blas")
        _limit_depth += 1
    try:
        yield
    finally:
        with _limit_lock:
            _limit_depth -= 1
            if _limit_depth == 0:
                _limiter.restore_original_limits()
                _limiter = None
