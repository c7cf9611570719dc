"""phash_throughput and phash_vs_decode_limit on ~12 MP JPEGs.

phash_throughput: hashing as the evidence worker does it, timed through the very function ``evidence.service.process``
calls (``_frames``: read the stored bytes, draft decode, orientation, every region's pHash + dHash and the dihedral
pHash variants the duplicate search queries with), against the straightforward ``imagehash.phash(Image.open(p))``
(full decode, one hash) on the same files in the same run.
phash_vs_decode_limit: the same rate against JPEG draft decoding alone: how close hashing is to the decode floor.
Each is one round over the files (after one untimed call), so no file is served warm from a previous round.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import imagehash
from PIL import Image

from bench.common import figure, scale

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


def _rate(fn, paths: list[Path]) -> float:
    """Images per second over one round (after one untimed call that loads the code paths)."""
    fn(paths[0])
    started = time.perf_counter()
    for p in paths:
        fn(p)
    return len(paths) / (time.perf_counter() - started)


def _as_the_worker_does(p: Path) -> None:
    # The evidence worker's own hashing step (a private function: this benchmark must time exactly that step,
    # and fails loudly if it is renamed rather than silently timing something else).
    from evidence.service import _frames

    _frames(SimpleNamespace(kind="image"), p.read_bytes())


def _draft_decode(p: Path) -> None:
    img = Image.open(p)
    img.draft("L", (256, 256))
    img.load()


def run() -> dict:
    """Measure the three rates."""
    n = max(6, int(20 * scale()))
    with tempfile.TemporaryDirectory() as tmp:
        paths = _make_12mp(Path(tmp), n)
        ours = _rate(_as_the_worker_does, paths)
        baseline = _rate(lambda p: imagehash.phash(Image.open(p)), paths)
        floor = _rate(_draft_decode, paths)
    return {"phash_throughput": figure(ours, "img/s", baseline, True,
                                       "ratio >= 8 vs imagehash.phash(Image.open(p)) on 12 MP JPEGs, as the worker "
                                       "hashes (regions, variants)", min_ratio=8),
            "phash_vs_decode_limit": figure(ours, "img/s", floor, True, "ratio >= 0.85 of JPEG draft decoding alone",
                                                  min_ratio=0.85)}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
