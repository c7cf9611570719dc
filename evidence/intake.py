"""Upload intake: type from content (never the name), size and pixel caps, full decode, polyglot check. Pure."""
from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
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


def _trailing(data: bytes, mime: str) -> bytes:
    if mime == "image/jpeg":
        end = data.rfind(b"\xff\xd9")
        return data[end + 2:] if end >= 0 else b""
    if mime == "image/png":
        end = data.rfind(b"IEND")
        return data[end + 8:] if end >= 0 else b""
    return b""


def _check_polyglot(data: bytes, mime: str) -> None:
    tail = _trailing(data, mime)
    if len(tail) > TRAILING_TOLERANCE or any(sig in tail for sig in EMBEDDED_SIGNATURES):
        raise PolyglotFile(f"{len(tail)} bytes follow the end of the image.")
    if mime == "image/jpeg" and data.find(b"\xff\xd9") < len(data) - 2 - len(tail):
        # an EOI marker before the last one: two images (or an image and more) glued together
        inner = data[data.find(b"\xff\xd9") + 2:data.rfind(b"\xff\xd9")]
        if any(sig in inner for sig in EMBEDDED_SIGNATURES):
            raise PolyglotFile("An archive or script is embedded between image markers.")


def _open_image(data: bytes, mime: str, max_pixels: int) -> MediaInfo:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            limit = min(max_pixels, decode.max_pixels(img.format))
            if w * h > limit:
                raise DecompressionBomb(f"{w}×{h} pixels exceeds the {limit}-pixel limit for {img.format}.")
            with decode.decode_slot():
                exif = read_exif(img)  # inside the slot: Pillow decodes a PNG in full to look for EXIF
                if img.format == "JPEG":
                    # Decoding at 1/8 scale still reads every entropy-coded byte (truncation is still caught)
                    # but skips most of the IDCT: ~4x less CPU per upload than a full decode.
                    img.draft("L", (max(1, w // 8), max(1, h // 8)))
                img.load()
                img.close()  # free the pixels before the slot is released
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
    return MediaInfo("image", mime, hashlib.sha256(data).hexdigest(), len(data), w, h, exif=exif)


def _open_video(data: bytes, mime: str) -> MediaInfo:
    width, height, duration = probe(data)
    return MediaInfo("video", mime, hashlib.sha256(data).hexdigest(), len(data), width, height, duration)


def inspect_upload(data: bytes, *, max_bytes: int, max_pixels: int) -> MediaInfo:
    """Accept or refuse an upload, with a distinct error code for each reason."""
    if not data:
        raise EmptyFile()
    if len(data) > max_bytes:
        raise FileTooLarge(f"The file is {len(data)} bytes; the limit is {max_bytes}.")
    mime = sniff(data)
    if mime is None:
        raise UnsupportedMediaType()
    if mime.startswith("video/"):
        return _open_video(data, mime)
    if mime == "image/heic" and pillow_heif is None:
        raise UnsupportedMediaType("HEIC is not supported on this server.")
    _check_polyglot(data, mime)
    return _open_image(data, mime, max_pixels)
