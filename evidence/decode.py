"""Bounded image decoding: a per-format pixel limit and at most a few full decodes at once per process.

Memory budget. A full decode holds width × height × 4 bytes (Pillow keeps RGB as 4 bytes a pixel), and the
steps around it (exif transpose, conversion to RGB or greyscale, the re-encoded preview) hold another copy
or two for a moment: measured, one 16 MP RGBA PNG peaks at ~150 MiB (9-10 bytes a pixel); we budget 12.
Formats decoded in full (PNG, WebP, HEIC) are held to MAX_FULL_DECODE_PIXELS = 16 MP (phone cameras save
12 MP; 48/50 MP sensors save 12 MP by default): ≤ 183 MiB per decode. JPEG is decoded through DCT scaling
(``draft``, 1/8 a side for intake and hashing, down to the preview size for previews), so its limit is
MAX_JPEG_PIXELS = 50 MP. With ``decode_concurrency`` (default 2) decodes at once and freed pages handed
back after each, decoding adds at most 2 × 183 = 366 MiB to a process (``budget_mib``), however many
uploads are in flight (measured: 8 or 16 at once, 306 MiB). A decode waiting longer than ``decode_wait_s``
is refused as busy (429). JPEG's draft box keeps the file's proportions (``draft_box``), so a wide 50 MP photo is
scaled as much as a 4:3 one. Videos are held to 4K (MAX_VIDEO_PIXELS), each sampled frame decoded to RGB in a slot.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from core.config import get_settings
from core.errors import RateLimited

MAX_JPEG_PIXELS = 50_000_000
MAX_FULL_DECODE_PIXELS = 16_000_000
PEAK_BYTES_PER_PIXEL = 12  # RGBA (4 bytes) plus the copies around it (measured 9-10)
DECODE_PEAK_MIB = MAX_FULL_DECODE_PIXELS * PEAK_BYTES_PER_PIXEL // 2**20  # 183 MiB


# Video frames are decoded in full (RGB for hashing) while the decoder keeps its reference frames: a video is held to
# 4K (DCI 4096 × 2160, which covers UHD 3840 × 2160), what phones record at most by default; an 8192² clip made a
# worker hold over 1.3 GB.
MAX_VIDEO_PIXELS = 4096 * 2160


def draft_box(size: tuple[int, int], side: int) -> tuple[int, int]:
    """The box to ask a JPEG's ``draft`` for so that its longest side still reaches ``side``, in the file's
    proportions. Pillow keeps *both* sides at least the box's, so a square box (side, side) leaves a wide photo
    barely scaled (8660 × 5773 for a 4096 px copy: not at all; a 65000 × 769 panorama for any copy: not at all)."""
    w, h = size
    k = side / max(w, h, 1)
    return (w, h) if k >= 1 else (max(1, math.ceil(w * k)), max(1, math.ceil(h * k)))


def draft_pixels(size: tuple[int, int], box: tuple[int, int]) -> int:
    """How many pixels a JPEG of ``size`` decodes to when drafted to ``box`` (Pillow's JpegImageFile.draft: the
    largest of 1/8, 1/4, 1/2 that keeps both sides at least the box's)."""
    w, h = size
    scale = min(w // max(box[0], 1), h // max(box[1], 1))
    s = next(a for a in (8, 4, 2, 1) if scale >= a or a == 1)
    return -(-w // s) * -(-h // s)


def max_pixels(fmt: str | None) -> int:
    """The pixel limit for a Pillow format name (JPEG decodes scaled; everything else in full)."""
    return MAX_JPEG_PIXELS if fmt == "JPEG" else MAX_FULL_DECODE_PIXELS


def budget_mib() -> int:
    """What concurrent decodes may add to one process, in MiB."""
    return get_settings().decode_concurrency * DECODE_PEAK_MIB


_slots_lock = threading.Lock()
_slots_by_size: dict[int, threading.BoundedSemaphore] = {}


def _slots() -> threading.BoundedSemaphore:
    # Made under a lock: two threads decoding at start-up must share one semaphore.
    size = get_settings().decode_concurrency
    with _slots_lock:
        return _slots_by_size.setdefault(size, threading.BoundedSemaphore(size))


class DecoderBusy(RateLimited):
    code = "decoder_busy"
    detail = "The server is busy processing images; try again in a few seconds."


# A decode that held at most this many pixels leaves too little freed memory to be worth a trim (a 12 MP JPEG drafted
# to its 500 × 375 working size, a stored working image): the trim walks the whole heap, ~0.4 ms in a small process
# and 1-2 ms in a worker or API process hundreds of MB large, where the decode itself took 0.2 ms (a working image).
TRIM_ABOVE_PIXELS = 1_000_000


class Slot:
    """A held decode slot; the decode says how many pixels it held (``pixels``), or leaves it unknown (a trim)."""

    __slots__ = ("pixels",)

    def __init__(self) -> None:
        self.pixels: int | None = None


@contextmanager
def decode_slot() -> Iterator[Slot]:
    """Hold one of the process's decode slots for the duration of a full decode; freed pages are handed back after
    it unless the decode said it held at most TRIM_ABOVE_PIXELS."""
    slots = _slots()
    if not slots.acquire(timeout=get_settings().decode_wait_s):
        raise DecoderBusy(retry_after_s=5)
    slot = Slot()
    try:
        yield slot
    finally:
        if slot.pixels is None or slot.pixels > TRIM_ABOVE_PIXELS:
            _return_freed_memory()
        slots.release()


def _load_libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:  # pragma: no cover - not glibc
        return None


_libc = _load_libc()


def _return_freed_memory() -> None:
    """Give the decode's freed pages back to the system. glibc keeps freed memory in per-thread arenas, so a
    process whose many threads take turns decoding would otherwise grow by one decode per thread (measured:
    8 threads, 2 slots, 16 MP PNGs: 620 MiB without this, ~250 MiB with it). A trim costs well under a ms."""
    if _libc is not None and hasattr(_libc, "malloc_trim"):
        _libc.malloc_trim(0)
