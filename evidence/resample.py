"""Pillow's resize of an 8-bit greyscale image, bit for bit, as two matrix products.

Hashing resizes every region of a working image 3 times (the 32 px pHash input, its transpose for the variants, the
9×8 dHash input): 25 resizes an upload, ~0.9 ms each in Pillow's resampling loops, the largest part of an upload's
processing. Pillow's 8-bit resampling is fixed-point: each pass adds integer coefficients (the filter's weights
scaled by 2^22 and rounded) times 8-bit pixels to 2^21, then shifts right by 22 and clips to 0-255; the horizontal
pass runs first, its rounded result feeds the vertical pass. Those sums are integers below 2^38, so a float64 matrix
product computes every one exactly, in any order: the same bytes, from BLAS instead of a scalar loop (~8× less CPU).

The coefficients are Pillow's (``precompute_coeffs`` and ``normalize_coeffs_8bpc`` in its Resample.c), computed in
the same double-precision steps in the same order, ``sin`` from the same C library (``math.sin``), and kept per
(input size, output size, filter): at most 512 × a handful of output sizes for working images, a few MB.
``tests/test_evidence_pure.py`` compares the result with Pillow's on thousands of random sizes and crops.
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


def _coefficients(in_size: int, out_size: int, name: str) -> np.ndarray:
    """The (out_size, in_size) matrix of Pillow's integer coefficients for one pass, as float64 (exact: < 2^23):
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
    at = xmin[:, None] + taps[None, :]
    weights = np.where(used, filt(((at - center[:, None]) + 0.5) * inv_filterscale), 0.0)
    total = np.cumsum(weights, axis=1)[:, -1]  # summed in tap order, as the C loop does (unused taps add 0)
    k = np.divide(weights, total[:, None], out=weights.copy(), where=(total != 0.0)[:, None])
    k = np.trunc(np.where(k < 0, -0.5 + k * _ONE, 0.5 + k * _ONE))
    out = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_size)[:, None], at.shape)
    out[rows[used], at[used]] = k[used]
    return out


# Outputs resampled together by one product: a block's inputs are the span its filters cover, so a 32 px pass over
# 512 px multiplies ~45 % of the dense matrix (a filter covers ~6 outputs' worth of input).
BLOCK = 8


@lru_cache(maxsize=512)
def _blocks(in_size: int, out_size: int, name: str) -> tuple[tuple[int, int, int, int, np.ndarray], ...]:
    """Pillow's coefficients for one pass as (first output, end, first input, end, matrix) blocks. At most ~60 KB
    each (512 px in); 512 kept, so a working image's few sizes stay computed."""
    dense = _coefficients(in_size, out_size, name)
    out = []
    for o0 in range(0, out_size, BLOCK):
        o1 = min(o0 + BLOCK, out_size)
        used = np.flatnonzero(dense[o0:o1].any(axis=0))
        i0, i1 = (int(used[0]), int(used[-1]) + 1) if len(used) else (0, 1)
        block = np.ascontiguousarray(dense[o0:o1, i0:i1])
        block.setflags(write=False)
        out.append((o0, o1, i0, i1, block))
    return tuple(out)


def _across(pixels: np.ndarray, width: int, name: str) -> np.ndarray:
    """Resample each row to ``width`` (Pillow's horizontal pass), rounded as Pillow rounds."""
    out = np.empty((pixels.shape[0], width))
    for o0, o1, i0, i1, block in _blocks(pixels.shape[1], width, name):
        np.matmul(pixels[:, i0:i1], block.T, out=out[:, o0:o1])
    return _round(out)


def _down(pixels: np.ndarray, height: int, name: str) -> np.ndarray:
    """Resample each column to ``height`` (Pillow's vertical pass), rounded as Pillow rounds."""
    out = np.empty((height, pixels.shape[1]))
    for o0, o1, i0, i1, block in _blocks(pixels.shape[0], height, name):
        np.matmul(block, pixels[i0:i1], out=out[o0:o1])
    return _round(out)


def _round(sums: np.ndarray) -> np.ndarray:
    """Resample.c's clip8 of 2^21 + the sum: the shift right by 22 (a floor), clipped to 0-255."""
    return np.clip(np.floor((sums + _HALF) / _ONE), 0, 255)


def resize(pixels: np.ndarray, size: tuple[int, int], name: str = "lanczos") -> np.ndarray:
    """``np.asarray(Image.fromarray(pixels).resize(size, filter))`` for a 2-D array of 8-bit values (uint8, or
    already float64), as uint8."""
    width, height = size
    rows, cols = pixels.shape
    if (width, height) == (cols, rows):
        return pixels.astype(np.uint8)
    out = pixels if pixels.dtype == np.float64 else pixels.astype(np.float64)
    # ImagingResampleInner: a pass whose size does not change is skipped; the vertical pass goes first when the
    # height shrinks by more than twice what the width does (Pillow 12.3+), else the horizontal one.
    if rows - height > 0 and rows - height > (cols - width) * 2:
        if height != rows:
            out = _down(out, height, name)
        if width != cols:
            out = _across(out, width, name)
    else:
        if width != cols:
            out = _across(out, width, name)
        if height != rows:
            out = _down(out, height, name)
    return out.astype(np.uint8)


def resize_transposed(pixels: np.ndarray, size: tuple[int, int], name: str = "lanczos") -> np.ndarray:
    """``resize(pixels.T, size).T``: Pillow's resize of the transposed image, in ``pixels``' orientation."""
    return resize(pixels.T, size, name).T


# Shapes that take every branch of Pillow's resampling: both pass orders either side of the rule's threshold,
# either pass alone, the size kept, enlarging, one row or column; both filters, and through the transpose.
_PROBES = ((384, 512, (32, 32)), (512, 384, (32, 32)), (300, 90, (32, 32)), (300, 120, (32, 32)),
           (400, 140, (9, 8)), (512, 384, (9, 8)), (120, 37, (9, 8)), (300, 200, (64, 64)), (32, 200, (32, 32)),
           (200, 32, (32, 32)), (20, 27, (32, 32)), (1, 300, (9, 8)), (300, 1, (32, 32)), (32, 32, (32, 32)))
_PIL_FILTERS = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC}


@lru_cache(maxsize=1)
def agrees_with_pillow() -> bool:
    """Whether this module gives the installed Pillow's bytes on every probe (asked once a process). Pillow may
    change its resampling (12.3 changed which pass runs first); where it does, hashing uses Pillow itself."""
    rng = np.random.default_rng(0)
    for rows, cols, size in _PROBES:
        pixels = rng.integers(0, 256, (rows, cols), dtype=np.uint8)
        image = Image.fromarray(pixels)
        for name, pil in _PIL_FILTERS.items():
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
