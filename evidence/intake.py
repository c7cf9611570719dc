"""Upload intake: type from content (never the name), size and pixel caps, full decode, polyglot check. Pure.

The decode that proves an image readable is the only one: it makes the small greyscale working image the
hashes are computed from (``MediaInfo.grey``), so processing never decodes the original again.
Works on bytes or on a file (an upload streamed to disk), which is scanned through mmap, never read whole.
"""
from __future__ import annotations

import hashlib
import io
import mmap
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageFile

from evidence import decode
from evidence.errors import (
    CorruptMedia,
    DecompressionBomb,
    EmptyFile,
    FileTooLarge,
    PolyglotFile,
    TruncatedImage,
    UnsupportedMediaType,
)
from evidence.hashing import decode_grey
from evidence.exif import read_exif
from evidence.video import probe

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a cut-off upload is an error, never silently grey pixels
# Trailing bytes some cameras and apps leave after the end marker (padding); more is a smuggled payload.
TRAILING_TOLERANCE = 64
EMBEDDED_SIGNATURES = (b"PK\x03\x04", b"<script", b"<html", b"<?php", b"%PDF-", b"MZ\x90\x00", b"\x7fELF")

try:  # HEIC/HEIF via the maintained pillow-heif plugin
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - optional
    pillow_heif = None


@dataclass
class MediaInfo:
    """What an accepted upload is."""

    kind: str
    mime: str
    sha256: str
    size_bytes: int
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None
    exif: dict[str, Any] = field(default_factory=dict)
    grey: Image.Image | None = field(default=None, repr=False)  # the hashing working image (images only)


def sniff(data: bytes) -> str | None:
    """MIME type from magic bytes."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
            return "image/heic"
        if brand == b"qt  ":
            return "video/quicktime"
        if brand in (b"isom", b"iso2", b"mp41", b"mp42", b"avc1", b"M4V ", b"3gp4", b"3gp5", b"dash", b"iso5", b"iso6"):
            return "video/mp4"
    return None


def _tail_start(data, mime: str) -> int:
    """Where the bytes after the image's end marker begin (the end of the file if there is no marker)."""
    if mime == "image/jpeg":
        end = data.rfind(b"\xff\xd9")
        return end + 2 if end >= 0 else len(data)
    if mime == "image/png":
        end = data.rfind(b"IEND")
        return end + 8 if end >= 0 else len(data)
    return len(data)


def _contains(data, signatures: tuple[bytes, ...], start: int, end: int) -> bool:
    return any(data.find(sig, start, end) >= 0 for sig in signatures)


def _check_polyglot(data, mime: str) -> None:
    """``data`` is bytes or an mmap: searched in place, never copied."""
    tail = _tail_start(data, mime)
    if len(data) - tail > TRAILING_TOLERANCE or _contains(data, EMBEDDED_SIGNATURES, tail, len(data)):
        raise PolyglotFile(f"{len(data) - tail} bytes follow the end of the image.")
    if mime == "image/jpeg" and data.find(b"\xff\xd9") < tail - 2:
        # an EOI marker before the last one: two images (or an image and more) glued together
        first, last = data.find(b"\xff\xd9"), data.rfind(b"\xff\xd9")
        if _contains(data, EMBEDDED_SIGNATURES, first + 2, last if last >= 0 else len(data) - 1):
            raise PolyglotFile("An archive or script is embedded between image markers.")


def _open_image(source, mime: str, max_pixels: int, sha256: str, size: int) -> MediaInfo:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            w, h = img.size
            limit = min(max_pixels, decode.max_pixels(img.format))
            if w * h > limit:
                raise DecompressionBomb(f"{w}×{h} pixels exceeds the {limit}-pixel limit for {img.format}.")
            with decode.decode_slot() as slot:
                exif = read_exif(img)  # inside the slot: Pillow decodes a PNG in full to look for EXIF
                # Decoding reads every byte of the image (truncation is caught) and is the only decode:
                # JPEGs at 1/8 scale or so (DCT scaling skips most of the IDCT), others in full; the result
                # is the small greyscale image hashing needs. The full-size pixels are freed inside the slot.
                grey = decode_grey(img, slot)
    except (DecompressionBomb, PolyglotFile, decode.DecoderBusy):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DecompressionBomb("The image has too many pixels.")
    except OSError as exc:
        if "truncated" in str(exc).lower():
            raise TruncatedImage()
        raise CorruptMedia("The image cannot be decoded.")
    except Exception:  # Pillow raises assorted errors on hostile input; their text names internals
        raise CorruptMedia("The image cannot be decoded.")
    return MediaInfo("image", mime, sha256, size, w, h, exif=exif, grey=grey)


def _open_video(source, mime: str, sha256: str, size: int) -> MediaInfo:
    width, height, duration = probe(source)
    return MediaInfo("video", mime, sha256, size, width, height, duration)


@contextmanager
def _contents(source: bytes | Path) -> Iterator[bytes | mmap.mmap]:
    if isinstance(source, bytes):
        yield source
        return
    with open(source, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        yield mm


def _sha256(source: bytes | Path) -> str:
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    with open(source, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def inspect_upload(source: bytes | Path, *, max_bytes: int, max_pixels: int, sha256: str | None = None) -> MediaInfo:
    """Accept or refuse an upload (its bytes, or the file it was streamed to, whose ``sha256`` may be given),
    with a distinct error code for each reason."""
    size = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
    if not size:
        raise EmptyFile()
    if size > max_bytes:
        raise FileTooLarge(f"The file is {size} bytes; the limit is {max_bytes}.")
    with _contents(source) as data:
        mime = sniff(data[:16])
        if mime is None:
            raise UnsupportedMediaType()
        if mime == "image/heic" and pillow_heif is None:
            raise UnsupportedMediaType("HEIC is not supported on this server.")
        if not mime.startswith("video/"):
            _check_polyglot(data, mime)
    sha256 = sha256 or _sha256(source)
    if mime.startswith("video/"):
        return _open_video(source, mime, sha256, size)
    return _open_image(source, mime, max_pixels, sha256, size)
