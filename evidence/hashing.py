"""Perceptual hashes (imagehash's pHash and dHash, 64 bits) computed fast and made robust.

Speed: JPEGs are decoded with ``draft`` (DCT scaling) straight to a small greyscale image, which is
what the 32×32 pHash needs anyway; hashes stay within a Hamming distance of 2 of a full decode.
Robustness: besides the full frame we hash the largest non-uniform block (screenshot bars and
letterboxing trimmed), two centred regions (80 % and 64 %) and the top and bottom 85 %, which survive
moderate crops and a watermark band along an edge; and the photo inside a phone screenshot's chrome (bars
touching the photo, rounded corners: evidence.chrome) with its centred 90 %, so a copy cropped by ~5 % a
side lines up with a region of the original. Queries also hash the eight rotations/mirrors of each region (as PDQ does).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import imagehash
import scipy.fftpack
import numpy as np
from PIL import Image, ImageOps

from evidence import resample
from evidence.chrome import photo_box
from evidence.decode import Slot, decode_slot, draft_box, draft_pixels

WORK_SIDE = 256  # greyscale working size: 8× the 32 px pHash input, enough for the centred regions
REGIONS = ("full", "core", "c80", "c64", "t85", "b85", "ui", "u90")
# Regions added later: files hashed before them lack these, and comparisons use the regions both sides have.
LATER_REGIONS = ("ui", "u90")
# Rows/columns whose pixel std is below this (0-255 scale) are a uniform border or bar.
BORDER_STD = 6.0
DIHEDRAL = (None, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.ROTATE_90,
            Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270, Image.Transpose.TRANSPOSE,
            Image.Transpose.TRANSVERSE)


def to_int(h: imagehash.ImageHash) -> int:
    """A 64-bit hash as an unsigned int (row-major bits, as imagehash prints them)."""
    return int(str(h), 16)


def to_hex(value: int) -> str:
    """16 lowercase hex digits."""
    return f"{value & 0xFFFFFFFFFFFFFFFF:016x}"


def to_signed(value: int) -> int:
    """A 64-bit hash as PostgreSQL's signed bigint holds it."""
    return value - (1 << 64) if value >= 1 << 63 else value


def hamming(a: int, b: int) -> int:
    """Bits that differ between two 64-bit hashes."""
    return ((a ^ b) & 0xFFFFFFFFFFFFFFFF).bit_count()


@dataclass
class ImageHashes:
    """pHash/dHash per region, plus how much texture the centre has (low texture: hashes are weak)."""

    phash: dict[str, int]
    dhash: dict[str, int]
    texture: float
    variants: list[dict[str, int]] = field(default_factory=list)  # dihedral pHashes per region (queries only)

    def to_dict(self) -> dict:
        """JSON-friendly form (hex strings)."""
        return {"phash": {k: to_hex(v) for k, v in self.phash.items()},
                "dhash": {k: to_hex(v) for k, v in self.dhash.items()}, "texture": round(self.texture, 2)}

    @classmethod
    def from_dict(cls, d: dict) -> "ImageHashes":
        """Inverse of to_dict."""
        return cls({k: int(v, 16) for k, v in d["phash"].items()}, {k: int(v, 16) for k, v in d["dhash"].items()},
                   d["texture"])


# A JPEG drafted to a square box decodes to at most ~0.8 MP (a 50 MP photo of any usual shape at 1/8 a side); one
# that would decode to more is a panorama whose short side kept the scale small (65000 × 769: 12.5 MP at 1/2).
# Those are drafted in their own proportions instead (draft_box). Every other photo keeps the square box: its
# working image, and so the hashes stored for it, stay as they were.
PANORAMA_DRAFT_PIXELS = 4 * (2 * WORK_SIDE) ** 2


HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _to_8bit(img: Image.Image) -> Image.Image:
    """Greyscale of a 16-bit or float image from its real tones (Pillow's convert("L") clips them at 255)."""
    arr = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    elif img.mode != "I" or arr.max() > 255:  # 16-bit samples (an "I" image holding 0-255 is already 8-bit)
        arr = arr / 257.0
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")


def decode_grey(img: Image.Image, slot: Slot | None = None) -> Image.Image:
    """The one decode of an opened file: JPEGs via draft mode straight to a small greyscale image, other
    formats in full; orientation applied, at most 2 × WORK_SIDE a side. Call it inside a decode slot (``slot``: told
    how many pixels the decode holds); it closes ``img``, so the full-size pixels are freed before the slot is
    released."""
    try:
        if img.format == "JPEG":
            box = (WORK_SIDE, WORK_SIDE)
            if draft_pixels(img.size, box) > PANORAMA_DRAFT_PIXELS:  # the square box would leave it barely scaled
                box = draft_box(img.size, 2 * WORK_SIDE)  # its long side still reaches a working image's
            img.draft("L", box)  # the size it will decode to: ~1/8 a side for a phone photo
        if slot is not None:
            slot.pixels = img.size[0] * img.size[1]
        return working_grey(img)
    finally:
        img.close()


def working_grey(img: Image.Image) -> Image.Image:
    """An opened (or decoded) image as a working image: orientation applied, greyscale, at most 2 × WORK_SIDE a
    side. Call it inside a decode slot."""
    upright = ImageOps.exif_transpose(img)
    grey = _to_8bit(upright) if upright.mode in HIGH_DEPTH_MODES else upright.convert("L")
    del upright  # free the full-size copy before the slot is released
    if max(grey.size) > WORK_SIDE * 2:
        grey.thumbnail((WORK_SIDE * 2, WORK_SIDE * 2), Image.Resampling.BOX)
    return grey


def grey_file(grey: Image.Image) -> bytes:
    """A working image kept losslessly as binary PGM (raw 8-bit grey: no compression to pay for, ~190 KiB for a
    12 MP photo's): hashing it gives the hashes of its original."""
    buf = io.BytesIO()
    grey.save(buf, "PPM")
    return buf.getvalue()


def load_grey(source: bytes | str | Path | Image.Image) -> Image.Image:
    """Decode to a small greyscale image, orientation applied; JPEGs via draft mode, other formats in full
    within a decode slot (evidence.decode bounds their pixels and how many run at once)."""
    if isinstance(source, Image.Image):
        with decode_slot() as slot:
            slot.pixels = source.size[0] * source.size[1]  # the copies made of it (upright, greyscale) are this size
            return working_grey(source)  # a video frame: already decoded, no draft
    img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    with decode_slot() as slot:
        return decode_grey(img, slot)


def _longest_run(mask: np.ndarray, min_share: float = 0.3) -> tuple[int, int]:
    """Start and end of the longest run of True (the photo between bars); whole range if it is too short."""
    best, start = (0, 0), None
    for i, v in enumerate(np.append(mask, False)):
        if v and start is None:
            start = i
        elif not v and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best if best[1] - best[0] >= min_share * len(mask) else (0, len(mask))


def _trim_box(arr: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box of the largest non-uniform block: drops screenshot bars, status bars, letterboxing, bands."""
    top, bottom = _longest_run(arr.std(axis=1) >= BORDER_STD)
    left, right = _longest_run(arr[top:bottom].std(axis=0) >= BORDER_STD)
    return left, top, right, bottom


def _centre(box: tuple[int, int, int, int], share: float) -> tuple[int, int, int, int]:
    left, top, right, bottom = box
    dx, dy = (right - left) * (1 - share) / 2, (bottom - top) * (1 - share) / 2
    return int(left + dx), int(top + dy), int(right - dx), int(bottom - dy)


def region_boxes(arr: np.ndarray) -> dict[str, tuple[int, int, int, int]]:
    """The (left, top, right, bottom) of each hashed region (REGIONS) of a greyscale image's pixels."""
    rows, cols = arr.shape
    core, ui = _trim_box(arr), photo_box(arr)
    left, top, right, bottom = core
    cut = int((bottom - top) * 0.15)
    return {"full": (0, 0, cols, rows), "core": core, "c80": _centre(core, 0.8), "c64": _centre(core, 0.64),
            "t85": (left, top, right, bottom - cut), "b85": (left, top + cut, right, bottom), "ui": ui,
            "u90": _centre(ui, 0.9)}


def regions(grey: Image.Image) -> dict[str, Image.Image]:
    """The hashed regions of a greyscale image (REGIONS), as images."""
    boxes = region_boxes(np.asarray(grey, dtype=np.float32))
    return {k: grey if k == "full" else grey.crop(box) for k, box in boxes.items()}


def hash_image(source: bytes | str | Path | Image.Image, *, with_variants: bool = False) -> ImageHashes:
    """pHash and dHash of every region; with_variants adds the 8 dihedral pHashes per region.

    The regions are resized one by one (Pillow, as imagehash resizes them); every DCT, median and bit packing runs
    once over all of them together (``_phashes``, ``_bits``): per region and variant the same numbers, without
    ~100 µs of Python around each of a query's 80 hashes (8 pHashes, 8 dHashes, 64 variants, the identity variant
    being the pHash; bit for bit: tests/test_evidence_streaming.py)."""
    return hash_grey(load_grey(source), with_variants=with_variants)


def hash_grey(grey: Image.Image, *, with_variants: bool = False) -> ImageHashes:
    """``hash_image`` of a working image already loaded (``load_grey``'s result), without loading it again."""
    if not resample.agrees_with_pillow():
        return _hash_parts(regions(grey), with_variants, _pillow_small)
    pixels = np.asarray(grey)
    boxes = region_boxes(pixels.astype(np.float32))
    picture = resample.Picture(pixels, boxes.values())  # the regions' resizes share its copies and passes
    with resample.one_thread():
        return _hash_parts({k: (picture, box) for k, box in boxes.items()}, with_variants, _small, same=boxes)


def _pillow_small(part: Image.Image, size: tuple[int, int], transposed: bool = False,
                  name: str = "lanczos") -> np.ndarray:
    """imagehash's resize of a region (Pillow): the fallback where evidence.resample does not match Pillow."""
    im = part.transpose(Image.Transpose.TRANSPOSE) if transposed else part
    small = np.asarray(im.resize(size, resample.PILLOW_FILTERS[name]))
    return small.T if transposed else small


def _small(part: tuple[resample.Picture, resample.Box], size: tuple[int, int], transposed: bool = False,
           name: str = "lanczos") -> np.ndarray:
    picture, box = part  # the working image and a region's box
    return (picture.resize_transposed if transposed else picture.resize)(box, size, name)


def _hash_parts(parts: dict, with_variants: bool, small_of, same: dict | None = None) -> ImageHashes:
    """Every hash of the regions, each region resized by ``small_of`` (Pillow's resize or its exact equal); regions
    with the same box (``same``: a photo without bars has its core = its full frame) are resized once."""
    names = list(parts)
    cache: dict = {}

    def small(k: str, size: tuple[int, int], transposed: bool = False, name: str = "lanczos") -> np.ndarray:
        key = ((same or {}).get(k, k), size, transposed, name)
        if key not in cache:
            cache[key] = small_of(parts[k], size, transposed, name)
        return cache[key]

    side = (PHASH_SIDE, PHASH_SIDE)
    # imagehash.phash(im) is exactly this resize, then the DCT: the resized region also serves the variants.
    turns = len(DIHEDRAL) if with_variants else 1  # DIHEDRAL[0] is the identity
    hashes = _phashes(np.stack([a for k in names for a in _dihedral(small(k, side), small(k, side, True))]
                               if with_variants else [small(k, side) for k in names]))
    ph = {k: hashes[r * turns] for r, k in enumerate(names)}
    # imagehash.dhash: a 9×8 resize, then each pixel against its left neighbour.
    dsmall = np.stack([small(k, (DHASH_SIDE + 1, DHASH_SIDE)) for k in names])
    dh = dict(zip(names, _bits(dsmall[:, :, 1:] > dsmall[:, :, :-1])))
    # Pillow's default filter for resize (bicubic).
    texture = float(small("c64", (64, 64), name="bicubic").astype(np.float32).std())
    out = ImageHashes(ph, dh, texture)
    if with_variants:
        out.variants = [{k: hashes[r * turns + i] for r, k in enumerate(names)} for i in range(turns)]
    return out

PHASH_SIDE = 32  # imagehash.phash: hash_size 8 × highfreq_factor 4
DHASH_SIDE = 8  # imagehash.dhash: hash_size 8
TRANSPOSING = {Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270, Image.Transpose.TRANSPOSE,
               Image.Transpose.TRANSVERSE}
# Pillow's transposes of a square array, as numpy views (the same pixels: a transpose only moves them).
_TURN = {None: lambda a: a, Image.Transpose.FLIP_LEFT_RIGHT: lambda a: a[:, ::-1],
         Image.Transpose.FLIP_TOP_BOTTOM: lambda a: a[::-1], Image.Transpose.ROTATE_90: np.rot90,
         Image.Transpose.ROTATE_180: lambda a: a[::-1, ::-1], Image.Transpose.ROTATE_270: lambda a: np.rot90(a, -1),
         Image.Transpose.TRANSPOSE: lambda a: a.T, Image.Transpose.TRANSVERSE: lambda a: a[::-1, ::-1].T}


def _bits(bits: np.ndarray) -> list[int]:
    """64-bit hashes from N boolean 8×8 arrays: row-major bits, first bit highest (as imagehash prints them)."""
    packed = np.packbits(bits.reshape(len(bits), -1), axis=1)
    return [int.from_bytes(row.tobytes(), "big") for row in packed]


def _phashes(pixels: np.ndarray) -> list[int]:
    """imagehash.phash after its resize, for N 32×32 arrays at once: the same DCT (scipy.fftpack, per row then per
    column of each array), the 8×8 lowest frequencies against their median, the same bit order."""
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=1), axis=2)
    low = dct[:, :8, :8].reshape(len(pixels), 64)
    return _bits(low > np.median(low, axis=1)[:, None])


def _dihedral(small: np.ndarray, small_t: np.ndarray) -> list[np.ndarray]:
    """The 32 px pixels imagehash.phash(im.transpose(t)) hashes, for every t in DIHEDRAL, from two resizes
    instead of eight.

    Resizing to 32 px commutes with flips: 32 is a power of two, so every filter centre is an exact binary
    fraction, mirrored output pixels get exactly mirrored weights, and a flip of the 32×32 result has the very
    pixels of the resized flip (tested bit for bit on thousands of images of random sizes). It does not
    commute with a transpose (the two resampling passes round in the other order), so the four transposing
    variants are flips of the resized transpose (``small_t``); ``small`` is ``im`` resized as imagehash.phash
    resizes it."""
    return [_TURN[t](small_t if t in TRANSPOSING else small) for t in DIHEDRAL]
