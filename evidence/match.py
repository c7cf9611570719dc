"""The near-duplicate decision rule, shared by the service and `fieldproof dedup`. Pure.

Thresholds were set on the shipped test photos and their transformed copies (tests/test_evidence_pure.py):
transformed copies of textured photos match at pHash distance ≤ 12, distinct photos never came closer than
16 over all region pairs and orientations. dHash must agree too (≤ 16) for upright pairs; rotated/mirrored
pairs (pHash only) need ≤ 8. Low-texture photos (plain walls, sky) hash mostly their borders and bands, so
they only match on the centre region and much more strictly.

Within reach: a pair with some region pair within REACH_THRESHOLD that the rule above refuses (dHash
disagrees, or a rotated/mirrored pair beyond 8) is a candidate only; evidence.features must confirm it with
ORB keypoints and a RANSAC fit before it counts. Reach is what the crop-tolerant regions (the photo inside
phone chrome, its centred 90 %) bring close, not a wider radius: at 10M indexed hashes every 2 bits of
radius beyond 12 return ~15× more random candidates per upload (146 at 12, 2,262 at 14, 24,746 at 16).
"""
from __future__ import annotations

from dataclasses import dataclass

from evidence.hashing import REGIONS, ImageHashes, hamming

DEFAULT_THRESHOLD = 12
DHASH_THRESHOLD = 16
DIHEDRAL_THRESHOLD = 8
LOW_TEXTURE = 12.0  # grey-level std of the centre; real storefront/shelf photos are 20+
LOW_TEXTURE_THRESHOLD = 4
REACH_THRESHOLD = 12  # the index's search radius; pairs the rule refuses within it need local features


@dataclass(frozen=True)
class Match:
    """Two files judged the same picture: how close and by which comparison."""

    distance: int
    method: str
    variant: int = 0  # which of evidence.hashing.DIHEDRAL turned the query onto the stored file
    needs_pixels: bool = False  # only within reach of the hashes: local features must confirm it


def _method(t: int, ra: str, rb: str) -> str:
    if t:
        return "phash_dihedral"
    if ra == rb == "full":
        return "phash"
    if ra == rb == "core" or {ra, rb} <= {"full", "core"}:
        return "phash_core"
    return "phash_crop"


def compare(query: ImageHashes, stored: ImageHashes, threshold: int = DEFAULT_THRESHOLD,
            reach: int | None = None) -> Match | None:
    """The closest acceptable region pair, or None. ``query`` may carry dihedral variants. With ``reach``, a pair
    the rule refuses but whose closest regions are within ``reach`` comes back with ``needs_pixels``."""
    if min(query.texture, stored.texture) < LOW_TEXTURE:
        dp = hamming(query.phash["c64"], stored.phash["c64"])
        dd = hamming(query.dhash["c64"], stored.dhash["c64"])
        limit = min(threshold, LOW_TEXTURE_THRESHOLD)
        return Match(dp, "phash_low_texture") if dp <= limit and dd <= limit else None
    best: Match | None = None
    near: Match | None = None
    shared = [r for r in REGIONS if r in query.phash and r in stored.phash]  # older rows lack LATER_REGIONS
    for t, var in enumerate(query.variants or [query.phash]):
        for ra in shared:
            for rb in shared:
                dp = hamming(var[ra], stored.phash[rb])
                if reach is not None and dp <= reach and (near is None or dp < near.distance):
                    near = Match(dp, "orb_" + _method(t, ra, rb), t, needs_pixels=True)
                if best is not None and dp >= best.distance:
                    continue
                ok = (dp <= threshold and hamming(query.dhash[ra], stored.dhash[rb]) <= DHASH_THRESHOLD) if t == 0 \
                    else dp <= min(threshold, DIHEDRAL_THRESHOLD)
                if ok:
                    best = Match(dp, _method(t, ra, rb), t)
    return best or near


def compare_media(query: list[ImageHashes], stored: list[ImageHashes], threshold: int = DEFAULT_THRESHOLD,
                  reach: int | None = None) -> Match | None:
    """Photos and videos alike: a list of frames each; the best matching frame pair wins (a pair the hash rule
    accepts before one that only needs_pixels)."""
    best = None
    for q in query:
        for s in stored:
            m = compare(q, s, threshold, reach)
            if m and (best is None or (m.needs_pixels, m.distance) < (best.needs_pixels, best.distance)):
                best = m
    return best
