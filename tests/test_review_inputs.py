"""Odd inputs found in review that reached a 500: EXIF values of unexpected types or values in an uploaded photo
(a rational Make or serial, a NaN, an offset of 99 h or of letters, GPS degrees of 0/0)."""
from __future__ import annotations

import io
import json
import struct

from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from evidence.exif import read_exif
from tests.fieldwork import STORE, claimed, fix


def _exif(ifd0: list[tuple[int, int, tuple[int, int]]], sub: tuple[int, int, tuple[int, int]] | None = None) -> bytes:
    """A little-endian EXIF block written by hand, so a tag can carry a type other than its standard one (Pillow
    writes each known tag with its standard type): entries are (tag, type, two 32-bit words of value)."""
    count = len(ifd0) + (1 if sub else 0)
    data_at = 8 + 2 + 12 * count + 4
    sub_at = data_at + 8 * len(ifd0)
    entries = b"".join(struct.pack("<HHII", tag, typ, 1, data_at + 8 * i) for i, (tag, typ, _) in enumerate(ifd0))
    if sub:
        entries += struct.pack("<HHII", 0x8769, 4, 1, sub_at)
    body = struct.pack("<H", count) + entries + struct.pack("<I", 0)
    body += b"".join(struct.pack("<II", *value) for _, _, value in ifd0)
    if sub:
        tag, typ, value = sub
        body += struct.pack("<HHIII", 1, tag, typ, 1, sub_at + 18) + struct.pack("<I", 0) + struct.pack("<II", *value)
    return b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + body


RATIONAL, ASCII = 5, 2
MAKE, SERIAL = 0x010F, 0xA431
ODD = {"make_rational": _exif([(MAKE, RATIONAL, (1, 3))]),
       "serial_rational": _exif([(MAKE, ASCII, (0x41, 0))], (SERIAL, RATIONAL, (1, 3))),
       "make_nan": _exif([(MAKE, RATIONAL, (0, 0))])}


def _standard(offset: str | None = None, gps: tuple | None = None) -> bytes:
    """EXIF with standard types but odd values: a capture time offset, GPS degrees."""
    exif = Image.Exif()
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = "2026:11:29 10:00:00"  # DateTimeOriginal
    if offset:
        sub[0x9011] = offset  # OffsetTimeOriginal
    if gps:
        where = exif.get_ifd(0x8825)
        where.update({1: "N", 2: gps, 3: "E", 4: gps})
    return exif.tobytes()


ODD.update(offset_hours=_standard(offset="+99:00"), offset_text=_standard(offset="+ab:cd"),
           gps_nan=_standard(gps=(IFDRational(1, 0), IFDRational(0, 1), IFDRational(0, 1))),
           gps_far=_standard(gps=(IFDRational(10**9, 1), IFDRational(0, 1), IFDRational(0, 1))))


def _photo(seed: int, exif: bytes) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (48, 32), (seed * 40 % 256, 90, 200)).save(buf, "JPEG", exif=exif)
    return buf.getvalue()


def test_exif_of_odd_types_reads_as_json_text():
    for seed, raw in enumerate(ODD.values()):
        out = read_exif(Image.open(io.BytesIO(_photo(seed, raw))))
        json.dumps(out, allow_nan=False)  # what the evidence row's JSONB column must hold
        assert all(isinstance(v, str) for k, v in out.items() if k in ("make", "serial")), out
        assert "gps" not in out or abs(out["gps"]["lat"]) <= 90, out


def test_a_photo_with_odd_exif_types_is_accepted_not_a_500(client, db):
    task, claim, w, _ = claimed(client, db)
    r = client.post(f"/v1/claims/{claim['id']}/checkins", json=fix(lat=STORE[0] + 0.0002), headers=w)
    assert r.status_code == 201, r.text
    for seed, (name, raw) in enumerate(ODD.items()):
        r = client.post(f"/v1/claims/{claim['id']}/evidence", headers=w,
                        files={"file": (f"{name}.jpg", _photo(seed, raw), "image/jpeg")})
        assert r.status_code == 201, (name, r.status_code, r.text[:300])
