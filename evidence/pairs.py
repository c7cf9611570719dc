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

from dataclasses import dataclass
from functools import lru_cache

from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.logging import get_logger
from evidence import index_store
from evidence.features import FEATURES_VERSION, Photo, compare_pixels
from evidence.sameness import (DERIVED_DETAIL_AGAINST_EXIF, Side, Verdict, decide, same_exposure_by_exif,
                               turned, two_captures_by_exif)
from evidence.hashing import ImageHashes, load_grey
from evidence.match import REACH_THRESHOLD, Match, compare_media
from evidence.models import Evidence, EvidenceMatch
from evidence.schemas import SAME_SCENE_PREFIX
from evidence.storage import get_if_stored, get_store, working_image_bytes

log = get_logger("evidence.pairs")
MAX_PIXEL_CHECKS = 8
KEPT_PHOTOS = 96  # stored files' Photos kept per process (kept_photo): ~30 MB at most
# What a same-scene photo weighs on a claim whose task asks for a fresh angle: one standalone signal (like
# short_dwell), so it raises the claim's spot-check chance but never forces one alone.
SAME_SCENE_WEIGHT = 25
EXACT = Match(0, "sha256")
# Same-capture verdicts that name the exposure outright; every other one (pixels, or the hash rule) can be
# overruled by what is already known of the stored file (Finder.consistent).
BY_IDENTITY = ("identical_file", "same_exif")
# Without a capture receipt, pixels sharing less than this of a stored file's fine detail show this file is another
# exposure than it, for Finder.consistent: honest gallery shots against the shot a downscaled copy was made from
# 0.45-0.59 where the copy misled (0.82-0.87 with the copy); a copy of a copy against its source 0.79-0.84 over the
# simulator's transforms (below sameness.DERIVED_DETAIL at 0.79: too close to clear anything by).
ANOTHER_EXPOSURE_DETAIL = 0.7


@dataclass(frozen=True)
class Pair:
    """A stored file the new one pairs with, how close, by which comparison, and the decision."""

    other_id: int
    distance: int
    method: str
    verdict: Verdict
    detail: float | None = None  # the fine detail the pixels shared (features.Alignment.detail), when measured

    @property
    def stored_method(self) -> str:
        """evidence_match.method: same-scene pairs carry a prefix (evidence.schemas.MatchRead.verdict)."""
        return (SAME_SCENE_PREFIX if self.verdict.kind == "same_scene" else "") + self.method


def _side(ev: Evidence, reasons: list[str]) -> Side:
    return Side(ev.sha256, ev.exif, "exif_time_mismatch" not in reasons, bool(ev.capture_verified))


class _Greys:
    """Working images, loaded once each and only when a pair needs its pixels (the new file's is handed over
    already loaded: hashing read it); the new file's Photo (keypoints found) once per orientation the hashes
    matched it in, however many stored files it is compared with."""

    def __init__(self, loaded: dict[str, Image.Image] | None = None) -> None:
        self.cache, self.photos = dict(loaded or {}), {}

    def get(self, sha256: str) -> Image.Image:
        if sha256 not in self.cache:
            self.cache[sha256] = load_grey(working_image_bytes(sha256))
        return self.cache[sha256]

    def photo(self, sha256: str, variant: int = 0) -> Photo:
        if (sha256, variant) not in self.photos:
            self.photos[sha256, variant] = (kept_photo(sha256, self.cache.get(sha256)) if variant == 0
                                            else Photo.of(turned(self.get(sha256), variant)))
        return self.photos[sha256, variant]


def features_key(sha256: str) -> str:
    """Store key of a file's ORB keypoints and descriptors (features.Photo.features_file), kept beside its working
    image once found; named for what they depend on besides the bytes (features.FEATURES_VERSION), so hosts or
    releases that would find other keypoints never read these."""
    return f"{sha256}-orb-{FEATURES_VERSION}"


# Stored files' Photos (working image + ORB keypoints), the most recently used kept in this process: a
# much-photographed shop's files are each compared with every new photo of it that the hashes bring near (in the
# 200-worker simulated day, 14,466 pairs over 1,411 stored files), and loading one (~2.5 ms) and finding its
# keypoints (~3.6 ms) was a third of each pixel check. Keyed by content (sha256), so an entry never goes stale; a
# new file's own Photo (as it is compared) is kept too, for the uploads after it. Bounded: KEPT_PHOTOS Photos of a
# working image at most 512 px a side (~0.3 MB each). Beyond this process's few: a file's keypoints are found once
# in the service's life, by whichever process first needs them, and kept in the store (features_key; content-
# addressed like the file, so never stale); another process, or this one after the LRU let the file go, reads them
# back with its working image instead of running ORB again.
def kept_photo(sha256: str, grey: Image.Image | None = None) -> Photo:
    """A stored file's Photo, from this process's LRU or else loaded (``load_photo``); ``grey``: its working image,
    when the caller has it loaded already (used only if the Photo must be made)."""
    return _kept(_Kept(sha256, grey))


class _Kept:
    """The LRU's key: a file by its content. The working image a caller had loaded rides along to the loader,
    which takes it off the key (the LRU keeps its keys: a Photo is all it should hold)."""

    __slots__ = ("sha256", "grey")

    def __init__(self, sha256: str, grey: Image.Image | None) -> None:
        self.sha256, self.grey = sha256, grey

    def __hash__(self) -> int:
        return hash(self.sha256)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Kept) and other.sha256 == self.sha256


@lru_cache(maxsize=KEPT_PHOTOS)
def _kept(key: _Kept) -> Photo:
    grey, key.grey = key.grey, None
    return load_photo(key.sha256, grey)


kept_photo.cache_info, kept_photo.cache_clear = _kept.cache_info, _kept.cache_clear


def load_photo(sha256: str, grey: Image.Image | None = None) -> Photo:
    """A stored file's Photo without the LRU: its working image (``grey`` if given, else read from the store) and
    its keypoints, read from the store or found by ORB and then kept there."""
    store, key = get_store(), features_key(sha256)
    grey = grey if grey is not None else load_grey(working_image_bytes(sha256))
    packed = found = None
    try:  # a cache: a store that cannot serve it costs ORB, never the job
        packed = get_if_stored(store, key)
        found = Photo.with_features(grey, packed) if packed is not None else None
    except Exception as exc:  # noqa: BLE001 - any backend's read error (evidence.storage_s3.StoreUnavailable, OSError)
        log.warning("features_unreadable", key=key, error=type(exc).__name__)
    if found is not None:
        return found
    photo = Photo.of(grey)
    damaged = packed is not None  # read, but not a features file of this photo: replaced, not kept forever
    if damaged:
        log.warning("features_damaged", key=key)
    try:
        store.put(key, photo.features_file(), replace=damaged)
    except Exception as exc:  # noqa: BLE001 - as above: the next process finds them again
        log.warning("features_not_kept", key=key, error=type(exc).__name__)
    return photo


class Finder:
    """A new file's pairs, found in rounds: each ``find`` decides only stored files no earlier round considered.

    evidence.service runs a round before it takes the duplicate-search lock (the pixel checks, the costly part,
    then run side by side in every worker process) and one under the lock, which sees only the files processed
    in between: a copy processed at the same time is still found by whichever of the two is second. Each round
    has its own MAX_PIXEL_CHECKS: the nearest pairs of all rounds together are each among the nearest of their
    own round, so every pair a single search would have checked by its pixels still is (a re-used photo that
    arrives meanwhile is not left without a check by the same-scene photos of a much-photographed shop)."""

    def __init__(self, ev: Evidence, frames: list[ImageHashes], reasons: list[str],
                 grey: Image.Image | None = None) -> None:
        """``grey``: the new file's working image, as hashing loaded it (read from the store once per job)."""
        self.ev, self.frames, self.mine = ev, frames, _side(ev, reasons)
        self.greys, self.considered = _Greys({ev.sha256: grey} if grey is not None else None), set()
        # How far the index was searched (the index object, the position reached): a later round scans only the
        # hashes added since, those of the files processed in between; everything before was a candidate of an
        # earlier round already (a hash enters the index only once its file's processing committed).
        self.searched: tuple[object, int] = (None, 0)

    def find(self, db_session: Session) -> list[Pair]:
        """Every stored file of another claim, not considered before, that is the same capture or the same scene."""
        ev, frames, scored = self.ev, self.frames, []
        for other in self._candidates(db_session):
            if other.id in self.considered:
                continue
            self.considered.add(other.id)
            match = EXACT if other.sha256 == ev.sha256 else compare_media(frames, _frames_of(other),
                                                                         reach=REACH_THRESHOLD)
            if match is not None:
                scored.append((other, _side(other, other.reasons), match))
        # Pixels go first to the pairs only pixels can decide (no EXIF verdict either way), nearest first: beyond
        # the cap, EXIF still decides the others; only a pair with neither falls back to the hash rule.
        scored.sort(key=lambda x: (_exif_decides(self.mine, x[1]), x[2].needs_pixels, x[2].distance))
        out, checks = [], 0
        for other, side, match in scored:
            pixels = None
            if match is not EXACT and ev.kind == other.kind == "image" and checks < MAX_PIXEL_CHECKS:
                pixels = compare_pixels(self.greys.photo(ev.sha256, match.variant), self.greys.photo(other.sha256))
                checks += 1
            verdict = decide(self.mine, side, match, pixels)
            if verdict is not None:
                detail = pixels.detail if pixels is not None and pixels.confirmed else None
                out.append(Pair(other.id, match.distance, match.method, verdict, detail))
        return out

    def _candidates(self, db_session: Session) -> list[Evidence]:
        """Processed files of other claims: the same bytes, or within the index's radius on some region among the
        hashes past ``self.searched``, which then moves to the index's end."""
        ev, idx = self.ev, index_store.current(db_session)
        queries = {h for f in self.frames for var in (f.variants or [f.phash]) for h in var.values()}
        seen, at = self.searched
        near, end = idx.near(queries, REACH_THRESHOLD, since=at if seen is idx else 0)
        self.searched = (idx, end)
        same_bytes = Evidence.sha256 == ev.sha256
        return list(db_session.scalars(select(Evidence).where(
            (Evidence.id.in_(near) | same_bytes) if near else same_bytes,
            Evidence.claim_id != ev.claim_id, Evidence.state == "processed").order_by(Evidence.id)))

    def consistent(self, db_session: Session, found: list[Pair]) -> list[Pair]:
        """The pairs of every round (``found``), made consistent with what is already recorded: a stored file
        already recorded as the same capture as X, where this file is another exposure than X, is another exposure
        than this file too. An honest shot of a much-photographed shop against an old EXIF-less copy of another
        visitor's photo shares as much fine detail as a downscaled copy (0.967 against 0.954 with that photo itself
        in the 22:33Z simulated day; a gallery shot without a receipt 0.869 against a status-bar screenshot, 0.592
        with its source, at 02:37Z), and only the copy's history tells them apart. "Another exposure than X" is
        what EXIF alone cannot say (it can be rewritten): a verified capture receipt on this file (taken in the app
        at this visit), or, without one, pixels compared with X that share less than ANOTHER_EXPOSURE_DETAIL of its
        detail (clearly two exposures, with no EXIF at all); then only a copy short of near-identical to the stored
        file (below DERIVED_DETAIL_AGAINST_EXIF, as measured) is cleared. A re-used file stays flagged
        through the file it was copied from. Run once, after the last round, so an X found in a later round than
        the copy still counts."""
        fresh = self.mine.fresh_capture

        def other_exposure(p: Pair) -> bool:
            return p.verdict.kind == "same_scene" and (
                fresh or (p.detail is not None and p.detail < ANOTHER_EXPOSURE_DETAIL))

        def clearable(p: Pair) -> bool:
            return p.verdict.kind == "same_capture" and p.verdict.why not in BY_IDENTITY and (
                fresh or (p.detail is not None and p.detail < DERIVED_DETAIL_AGAINST_EXIF))

        suspect = [p.other_id for p in found if clearable(p)]
        scene = [p.other_id for p in found if other_exposure(p)]
        if not suspect or not scene:
            return found
        cleared = set(db_session.scalars(select(EvidenceMatch.evidence_id).where(
            EvidenceMatch.evidence_id.in_(suspect), EvidenceMatch.matched_evidence_id.in_(scene),
            ~EvidenceMatch.method.startswith(SAME_SCENE_PREFIX))))
        out = []
        for p in found:
            if p.other_id in cleared:
                p = Pair(p.other_id, p.distance, p.method, Verdict("same_scene", "copy_of_another_exposure"), p.detail)
            out.append(p)
        return out


def _exif_decides(a: Side, b: Side) -> bool:
    return same_exposure_by_exif(a.exif, b.exif) or two_captures_by_exif(a, b)


def _frames_of(other: Evidence) -> list[ImageHashes]:
    return [ImageHashes.from_dict(d) for d in other.hashes["frames"]]
