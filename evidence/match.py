"""The near-duplicate decision rule, shared by the service and `fieldproof dedup`. Pure.

Thresholds were set on the shipped test photos and their transformed copies (tests/test_evidence_pure.py):
transformed copies of textured photos match at pHash distance ≤ 12, distinct photos never came closer than
16 over all region pairs and orientations. dHash must agree too (≤ 16) for upright pairs; rotated/mirrored
pairs (pHash only) need ≤ 8. Low-texture photos (plain walls, sky) hash mostly their borders and bands, so
they only match on the centre region and much more strictly.
"""
from __future__ import annotations

from dataclasses import dataclass

from evidence.hashing import REGIONS, ImageHashes, hamming

DEFAULT_THRESHOLD = 12
DHASH_THRESHOLD = 16
DIHEDRAL_THRESHOLD = 8
LOW_TEXTURE = 12.0  # grey-level std of the centre; real storefront/shelf photos are 20+
LOW_TEXTURE_THRESHOLD = 4


@dataclass(frozen=True)
class Match:
    """Two files judged the same picture: how close and by which comparison."""

    distance: int
    method: str


def _method(t: int, ra: str, rb: str) -> str:
    if t:
        return "phash_dihedral"
    if ra == rb == "full":
        return "phash"
    if ra == rb == "core" or {ra, rb} <= {"full", "core"}:
        return "phash_core"
    return "phash_crop"


def compare(query: ImageHashes, stored: ImageHashes, threshold: int = DEFAULT_THRESHOLD) -> Match | None:
    """The closest acceptable region pair, or None. ``query`` may carry dihedral variants."""
    if min(query.texture, stored.texture) < LOW_TEXTURE:
        dp = hamming(query.phash["c64"], stored.phash["c64"])
        dd = hamming(query.dhash["c64"], stored.dhash["c64"])
        limit = min(threshold, LOW_TEXTURE_THRESHOLD)
        return Match(dp, "phash_low_texture") if dp <= limit and dd <= limit else None
    best: Match | None = None
    for t, var in enumerate(query.variants or [query.phash]):
        for ra in REGIONS:
            for rb in REGIONS:
                dp = hamming(var[ra], stored.phash[rb])
                if best is not None and dp >= best.distance:
                    continue
                ok = (dp <= threshold and hamming(query.dhash[ra], stored.dhash[rb]) <= DHASH_THRESHOLD) if t == 0 \
                    else dp <= min(threshold, DIHEDRAL_THRESHOLD)
                if ok:
                    best = Match(dp, _method(t, ra, rb))
    return best


def compare_media(query: list[ImageHashes], stored: list[ImageHashes],
                  threshold: int = DEFAULT_THRESHOLD) -> Match | None:
    """Photos and videos alike: a list of frames each; the best matching frame pair wins."""
    best = None
    for q in query:
        for s in stored:
            m = compare(q, s, threshold)
            if m and (best is None or m.distance < best.distance):
                best = m
    return best
