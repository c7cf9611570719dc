"""Same capture or same scene: the decision for a pair of files the hashes matched. Pure.

Perceptual hashes say two pictures *look* alike. That is true of a re-used photo (one exposure, copied and
transformed) and equally of two honest photos of one storefront taken from the same spot on different days.
Only the first is fraud. So each matched pair is decided here:

``same_capture`` (flagged ``duplicate_evidence``) when
  1. the files are identical (sha256), or
  2. their EXIF names the same exposure: the same ImageUniqueID, or the same capture time to the second from
     the same camera (serial, else make and model), or
  3. one is derived from the other: after aligning them (ORB + RANSAC, evidence.features) they share their fine
     detail, tile by tile (a copy keeps it through crops, resizes, recompression and screenshots; a second
     exposure differs in light, shadows, passers-by, parallax and sensor noise), or
  4. nothing says otherwise: the hashes matched and the pixels could not be compared (a video frame, a photo
     too plain or too small for keypoints, a check past the cap). This is the rule as it was before same-scene
     existed. Pixels that were compared — both photos rich in keypoints — and fit nothing (features.Alignment
     .refuted) do say otherwise: no pair at all, however close the hashes.

``same_scene`` (a note, no penalty) when the pixels were compared and show two exposures, or when EXIF shows
two captures — both files carry a capture time, each agrees with its own check-in (no ``exif_time_mismatch``),
they come from two cameras (different body serials) or differ by more than a minute, and they are not the
same exposure by (2) — unless the pixels are near-identical all the same (a copy with edited EXIF). Missing
EXIF never argues for same_scene: re-users strip it, so only the pixels can clear a pair without it. A verified
capture receipt on the new file (taken by the in-app camera during this visit: evidence.capture) weighs like EXIF
showing two captures once the pixels were compared: only near-identical pixels make it a copy of the stored file
(an honest photo of a much-photographed shop otherwise meets, now and then, an old re-used copy of another photo
of it whose detail it shares at 0.8-0.9).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from PIL import Image

from evidence.features import Alignment, compare_pixels
from evidence.hashing import DIHEDRAL
from evidence.match import Match

Kind = Literal["same_capture", "same_scene"]
# A failed fit refutes a hash match only this far apart or more (of 64 bits): the false duplicates it clears were
# 8-12 apart; copies stretched past any similarity fit stay 0-2 from their originals.
REFUTABLE_DISTANCE = 6
DERIVED_DETAIL = 0.8  # copies of the test photos and generated scenes: ≥ 0.86; re-shot views ≤ 0.71 (a brick wall 0.79)
DERIVED_DETAIL_AGAINST_EXIF = 0.95  # near-identical pixels outweigh EXIF that claims a second capture
# ... and EXIF plus a verified capture receipt: simulated re-shots of one shop front reached 0.965 (3 of ~870 photos
# in a 200-worker day); crops and re-encodes of a test photo at its size give 0.979-0.999, downscaled copies 0.97-0.99
DERIVED_DETAIL_AGAINST_EXIF_AND_RECEIPT = 0.98
NEW_CAPTURE_GAP_S = 60  # burst shots and retakes on one visit are seconds apart; another day is hours


@dataclass(frozen=True)
class Side:
    """What the decision needs to know of one file."""

    sha256: str
    exif: dict[str, Any] | None
    time_fits_visit: bool  # its EXIF time agrees with its own check-in (no exif_time_mismatch)
    fresh_capture: bool = False  # came from the in-app camera with a verified receipt (evidence.capture)


@dataclass(frozen=True)
class Verdict:
    """The decision and the rule that made it (stored with the match, shown to ops)."""

    kind: Kind
    why: str


def _time(exif: dict[str, Any] | None) -> datetime | None:
    raw = (exif or {}).get("capture_time")
    try:
        return datetime.fromisoformat(raw) if raw else None
    except (TypeError, ValueError):
        return None


def _camera(exif: dict[str, Any]) -> tuple:
    return (exif.get("serial"),) if exif.get("serial") else (exif.get("make"), exif.get("model"))


def same_exposure_by_exif(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """EXIF names one exposure: the same ImageUniqueID, or the same capture time from the same camera."""
    a, b = a or {}, b or {}
    if a.get("unique_id") and a.get("unique_id") == b.get("unique_id"):
        return True
    ta, tb = _time(a), _time(b)
    if ta is None or tb is None or ta.replace(tzinfo=None) != tb.replace(tzinfo=None):
        return False
    return _camera(a) == _camera(b)


def two_captures_by_exif(a: Side, b: Side) -> bool:
    """EXIF shows two exposures: both timed, each time agreeing with its visit, and either taken by two cameras
    (different body serials: two workers at one shop in the same minute) or more than a minute apart."""
    ta, tb = _time(a.exif), _time(b.exif)
    if ta is None or tb is None or not (a.time_fits_visit and b.time_fits_visit):
        return False
    sa, sb = (a.exif or {}).get("serial"), (b.exif or {}).get("serial")
    if sa and sb and sa != sb:
        return True
    if (ta.tzinfo is None) != (tb.tzinfo is None):  # one naive: compare the wall-clock readings
        ta, tb = ta.replace(tzinfo=None), tb.replace(tzinfo=None)
    return abs((ta - tb).total_seconds()) > NEW_CAPTURE_GAP_S


def decide(a: Side, b: Side, match: Match | None, pixels: Alignment | None) -> Verdict | None:
    """Same capture, same scene, or (a hash candidate the local features did not confirm) nothing."""
    if a.sha256 == b.sha256:
        return Verdict("same_capture", "identical_file")
    confirmed = pixels is not None and pixels.confirmed
    if match is None or (match.needs_pixels and not confirmed):
        return None
    if same_exposure_by_exif(a.exif, b.exif):
        return Verdict("same_capture", "same_exif")
    # Measured: a real fit and its detail compared. Unrelated exposures correlate about 0, often a hair below it.
    measured = confirmed and pixels.detail is not None
    # How much fine detail makes it a copy, by what else speaks for a new exposure (and each outcome's why).
    if two_captures_by_exif(a, b):
        # EXIF and a verified receipt together: two honest exposures from one spot can share 0.95-0.97 of their
        # detail (a flat shop front, no parallax), so only a same-size re-encode or crop of one photo counts.
        bar = DERIVED_DETAIL_AGAINST_EXIF_AND_RECEIPT if a.fresh_capture else DERIVED_DETAIL_AGAINST_EXIF
        copy, scene = "derived_despite_exif", "exif_two_captures"
    elif not measured:
        # Compared, and nothing of one fits the other: a hash collision, or another view of the place against a
        # small copy: never one exposure. Unless the hashes are too close for chance (a copy damaged past fitting).
        if pixels is not None and pixels.refuted and match.distance >= REFUTABLE_DISTANCE:
            return None
        return Verdict("same_capture", "hashes")
    elif a.fresh_capture:  # the new file was taken by the in-app camera at this visit: only a near-identical copy
        bar, copy, scene = DERIVED_DETAIL_AGAINST_EXIF, "derived_despite_receipt", "fresh_capture"  # (injected)
    else:
        bar, copy, scene = DERIVED_DETAIL, "derived", "different_exposure"
    if measured and pixels.detail >= bar:
        return Verdict("same_capture", copy)
    return Verdict("same_scene", scene)


def turned(img: Image.Image, variant: int) -> Image.Image:
    """The image turned as a hash variant (evidence.hashing.DIHEDRAL) matched it."""
    turn = DIHEDRAL[variant]
    return img.transpose(turn) if turn is not None else img


def pixels_of(query: Image.Image, stored: Image.Image, match: Match) -> Alignment:
    """Local features of a matched pair: the query's working image turned as the hashes matched it, aligned."""
    return compare_pixels(turned(query, match.variant), stored)
