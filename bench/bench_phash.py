"""phash_throughput and phash_vs_decode_limit on ~12 MP JPEGs.

phash_throughput: our full hashing (draft decode, orientation, six regions × pHash + dHash) per second,
against ``imagehash.phash(Image.open(p))`` (full decode, one hash) on the same files in the same run.
phash_vs_decode_limit: the same figure against JPEG draft decoding alone — how close we are to the floor.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import imagehash
from PIL import Image

from bench.common import figure, scale
from evidence.hashing import hash_image

PHOTOS = Path(__file__).resolve().parent.parent / "tests" / "data" / "photos"


def _make_12mp(out: Path, n: int) -> list[Path]:
    paths = []
    sources = sorted(PHOTOS.glob("*.jpg"))
    for i in range(n):
        img = Image.open(sources[i % len(sources)]).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
        p = out / f"p{i}.jpg"
        img.save(p, "JPEG", quality=90)
        paths.append(p)
    return paths


def _rate(fn, paths: list[Path], rounds: int = 2) -> float:
    fn(paths[0])
    started = time.perf_counter()
    for _ in range(rounds):
        for p in paths:
            fn(p)
    return rounds * len(paths) / (time.perf_counter() - started)


def _draft_decode(p: Path) -> None:
    img = Image.open(p)
    img.draft("L", (256, 256))
    img.load()


def run() -> dict:
    """Measure the three rates."""
    n = max(6, int(20 * scale()))
    with tempfile.TemporaryDirectory() as tmp:
        paths = _make_12mp(Path(tmp), n)
        ours = _rate(lambda p: hash_image(p.read_bytes()), paths)
        baseline = _rate(lambda p: imagehash.phash(Image.open(p)), paths, rounds=1)
        floor = _rate(_draft_decode, paths)
    return {"phash_throughput": figure(ours, "img/s", baseline, True,
                                             "ratio >= 8 vs imagehash.phash(Image.open(p)) on 12 MP JPEGs", min_ratio=8),
            "phash_vs_decode_limit": figure(ours, "img/s", floor, True, "ratio >= 0.85 of JPEG draft decoding alone",
                                                  min_ratio=0.85)}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
