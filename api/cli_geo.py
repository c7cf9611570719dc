"""`fieldproof coords convert --from X --to Y LAT LON` (or `-` to read `lat lon` lines from stdin)."""
from __future__ import annotations

import argparse
import json
import re
import sys

from core.errors import FieldproofError

CHOICES = ["wgs84", "gcj02", "bd09"]


def _one(lat: float, lon: float, src: str, dst: str) -> dict:
    # lazy: every fieldproof command loads this module; only this command needs these
    from geo import crs

    out_lat, out_lon = crs.convert(lat, lon, src, dst)
    return {"lat": round(out_lat, 9), "lon": round(out_lon, 9)}


def _convert(args: argparse.Namespace) -> int:
    if args.coords == ["-"]:
        return _batch(args)
    if len(args.coords) != 2:
        print(json.dumps({"error": "give LAT LON, or - to read lines from standard input"}))
        return 2
    try:
        print(json.dumps(_one(float(args.coords[0]), float(args.coords[1]), args.src, args.dst)))
    except (ValueError, FieldproofError) as exc:
        print(json.dumps({"error": getattr(exc, "detail", str(exc))}))
        return 1
    return 0


def _batch(args: argparse.Namespace) -> int:
    failed = False
    for n, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            lat_s, lon_s = re.split(r"[\s,]+", line.strip())
            print(json.dumps(_one(float(lat_s), float(lon_s), args.src, args.dst)))
        except (ValueError, FieldproofError) as exc:
            failed = True
            print(json.dumps({"error": getattr(exc, "detail", f"cannot read {line.strip()!r} as 'lat lon'"),
                              "line": n}))
    return 1 if failed else 0


def register(sub) -> None:
    """Add the ``coords`` command."""
    coords = sub.add_parser("coords", help="coordinate systems").add_subparsers(dest="coords_command", required=True)
    conv = coords.add_parser("convert", help="convert between WGS-84, GCJ-02 and BD-09")
    conv.add_argument("--from", dest="src", required=True, choices=CHOICES)
    conv.add_argument("--to", dest="dst", required=True, choices=CHOICES)
    conv.add_argument("coords", nargs="+", metavar="LAT LON | -")
    conv.set_defaults(func=_convert)
