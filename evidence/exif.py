"""EXIF: read what matters (time, GPS, camera, orientation); strip everything from served copies. Pure."""
from __future__ import annotations

import io
import math
from datetime import datetime, timedelta, timezone
from typing import Any

from PIL import ExifTags, Image, ImageOps

from evidence.decode import draft_box

GPS_IFD = 0x8825
EXIF_IFD = 0x8769


def _deg(value, ref) -> float | None:
    try:
        d, m, s = (float(x) for x in value)
    except (TypeError, ValueError):
        return None
    out = d + m / 60 + s / 3600
    if not math.isfinite(out) or abs(out) > 180:  # a zero denominator (NaN) or a made-up value: no position
        return None
    return -out if ref in ("S", "W") else out


def _capture_time(exif: Image.Exif) -> str | None:
    sub = exif.get_ifd(EXIF_IFD)
    raw = sub.get(ExifTags.Base.DateTimeOriginal) or exif.get(ExifTags.Base.DateTime)
    if not raw:
        return None
    try:
        at = datetime.strptime(str(raw).strip("\x00 "), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    offset = sub.get(ExifTags.Base.OffsetTimeOriginal)
    if offset and len(str(offset)) >= 6:
        sign = -1 if str(offset)[0] == "-" else 1
        try:  # an offset that is not one ("+ab:cd", "+99:00") leaves the time without one, as if absent
            hh, mm = int(str(offset)[1:3]), int(str(offset)[4:6])
            at = at.replace(tzinfo=timezone(sign * timedelta(hours=hh, minutes=mm)))
        except ValueError:
            pass
    return at.isoformat()


def read_exif(img: Image.Image) -> dict[str, Any]:
    """Capture time (ISO, with offset if the camera gave one), GPS (WGS-84 as cameras record it), camera (and its
    serial), image id, orientation."""
    try:
        exif = img.getexif()
    except Exception:  # corrupt EXIF must not make the photo unreadable
        return {}
    out: dict[str, Any] = {"capture_time": _capture_time(exif), "make": exif.get(ExifTags.Base.Make),
                           "model": exif.get(ExifTags.Base.Model), "software": exif.get(ExifTags.Base.Software),
                           "orientation": exif.get(ExifTags.Base.Orientation)}
    sub = exif.get_ifd(EXIF_IFD)
    # The camera body's serial and a per-image id, when the camera writes them: they tell one exposure's copies
    # from another exposure of the same place (evidence.sameness).
    out.update(serial=sub.get(ExifTags.Base.BodySerialNumber), unique_id=sub.get(ExifTags.Base.ImageUniqueID))
    gps = exif.get_ifd(GPS_IFD)
    if gps:
        lat, lon = _deg(gps.get(2), gps.get(1)), _deg(gps.get(4), gps.get(3))
        if lat is not None and lon is not None:
            out["gps"] = {"lat": lat, "lon": lon}
    return {k: v for k, v in ((k, _plain(k, v)) for k, v in out.items()) if v is not None}


def _plain(key: str, value: Any) -> Any:
    """A value the evidence row's JSONB holds: a file may give any tag any type (a rational Make, a NaN), so
    the text tags become text without NULs, the orientation an int or nothing; GPS and time are built above."""
    if key == "orientation":
        return value if type(value) is int else None
    if key in ("gps", "capture_time") or value is None:
        return value
    # str() of bytes as before (stored rows compare equal); a NUL inside cannot go into JSONB
    text = str(value).strip("\x00 ").replace("\x00", "")
    return text or None


def strip_and_orient(data: bytes, max_side: int | None = None, quality: int = 85) -> bytes:
    """A served copy: orientation applied, no metadata at all (EXIF, GPS, XMP, ICC), re-encoded JPEG."""
    img = Image.open(io.BytesIO(data))
    if max_side and img.format == "JPEG":
        # DCT scaling: a 50 MP photo never sits in memory in full, however wide it is
        img.draft("RGB", draft_box(img.size, max_side))
    img = ImageOps.exif_transpose(img)
    img = img.convert("RGB")
    if max_side:
        img.thumbnail((max_side, max_side))
    clean = Image.new("RGB", img.size)
    clean.paste(img)  # a fresh image carries no info dict from the original
    del img
    buf = io.BytesIO()
    clean.save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()
