"""A new file's pairs among all stored evidence: found by the hash index, confirmed and decided (evidence.sameness).

Cost: hashes decide which stored files are candidates (the index's exact search, radius REACH_THRESHOLD); only
the candidates the hashes matched — a handful for a re-used photo, none for most uploads — are aligned with ORB
(~35 ms of CPU each on the 2-core machine), at most MAX_PIXEL_CHECKS per upload: first the pairs only pixels
can decide (no EXIF verdict), nearest first. Beyond that cap EXIF still decides a pair (without the check for a
copy with edited EXIF); a hash match with no EXIF verdict falls back to the hash rule (same capture, as before
same-scene existed); a reach-only candidate is dropped. A much-photographed place (a shelf audited daily) thus
stays correct for EXIF-carrying photos; EXIF-less ones there can be flagged past the cap (see README).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from evidence import index_store
from evidence.sameness import Side, Verdict, decide, pixels_of, same_exposure_by_exif, two_captures_by_exif
from evidence.hashing import ImageHashes, load_grey
from evidence.match import REACH_THRESHOLD, Match, compare_media
from evidence.models import Evidence
from evidence.schemas import SAME_SCENE_PREFIX
from evidence.storage import get_store

MAX_PIXEL_CHECKS = 8
# What a same-scene photo weighs on a claim whose task asks for a fresh angle: one standalone signal (like
# short_dwell), so it raises the claim's spot-check chance but never forces one alone.
SAME_SCENE_WEIGHT = 25
EXACT = Match(0, "sha256")


@dataclass(frozen=True)
class Pair:
    """A stored file the new one pairs with, how close, by which comparison, and the decision."""

    other_id: int
    distance: int
    method: str
    verdict: Verdict

    @property
    def stored_method(self) -> str:
        """evidence_match.method: same-scene pairs carry a prefix (evidence.schemas.MatchRead.verdict)."""
        return (SAME_SCENE_PREFIX if self.verdict.kind == "same_scene" else "") + self.method


def _side(ev: Evidence, reasons: list[str]) -> Side:
    return Side(ev.sha256, ev.exif, "exif_time_mismatch" not in reasons, bool(ev.capture_verified))


class _Greys:
    """Working images, loaded once each and only when a pair needs its pixels."""

    def __init__(self, key_of: Callable[[str], str]) -> None:
        self.key_of, self.cache = key_of, {}

    def get(self, sha256: str) -> Image.Image:
        if sha256 not in self.cache:
            store, key = get_store(), self.key_of(sha256)
            data = store.get(key) if store.exists(key) else store.get(sha256)
            self.cache[sha256] = load_grey(data)
        return self.cache[sha256]


def find(db_session: Session, ev: Evidence, frames: list[ImageHashes], reasons: list[str],
         key_of: Callable[[str], str]) -> list[Pair]:
    """Every stored file of another claim that is the same capture or the same scene as ``ev``."""
    mine = _side(ev, reasons)
    scored = []
    for other in _candidates(db_session, ev, frames):
        match = EXACT if other.sha256 == ev.sha256 else compare_media(frames, _frames_of(other), reach=REACH_THRESHOLD)
        if match is not None:
            scored.append((other, _side(other, other.reasons), match))
    # Pixels go first to the pairs only pixels can decide (no EXIF verdict either way), nearest first: beyond the
    # cap, EXIF still decides the others; only a pair with neither falls back to the hash rule.
    scored.sort(key=lambda x: (_exif_decides(mine, x[1]), x[2].needs_pixels, x[2].distance))
    greys, checks, out = _Greys(key_of), 0, []
    for other, side, match in scored:
        pixels = None
        if match is not EXACT and ev.kind == other.kind == "image" and checks < MAX_PIXEL_CHECKS:
            pixels, checks = pixels_of(greys.get(ev.sha256), greys.get(other.sha256), match), checks + 1
        verdict = decide(mine, side, match, pixels)
        if verdict is not None:
            out.append(Pair(other.id, match.distance, match.method, verdict))
    return out


def _exif_decides(a: Side, b: Side) -> bool:
    return same_exposure_by_exif(a.exif, b.exif) or two_captures_by_exif(a, b)


def _frames_of(other: Evidence) -> list[ImageHashes]:
    return [ImageHashes.from_dict(d) for d in other.hashes["frames"]]


def _candidates(db_session: Session, ev: Evidence, frames: list[ImageHashes]) -> list[Evidence]:
    """Processed files of other claims: the same bytes, or within the index's radius on some region."""
    idx = index_store.current(db_session)
    queries = {h for f in frames for var in (f.variants or [f.phash]) for h in var.values()}
    near = {eid for q in queries for eid, _ in idx.search(q, REACH_THRESHOLD)}
    same_bytes = Evidence.sha256 == ev.sha256
    return list(db_session.scalars(select(Evidence).where(
        (Evidence.id.in_(near) | same_bytes) if near else same_bytes,
        Evidence.claim_id != ev.claim_id, Evidence.state == "processed").order_by(Evidence.id)))
