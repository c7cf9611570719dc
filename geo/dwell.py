"""Dwell-time histograms: medians are not additive across cells and hours, fixed-bucket histograms are. Pure."""
from __future__ import annotations

import bisect

# Upper edges in seconds; the last bucket is open. Fine where dwell decisions are made (minutes), coarse after.
EDGES_S = (60, 120, 180, 300, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200)
BUCKETS = len(EDGES_S) + 1


def bucket(dwell_s: float) -> int:
    """Index of the bucket a dwell time falls in."""
    return bisect.bisect_right(EDGES_S, max(0.0, dwell_s))


def one_hot(dwell_s: float | None) -> list[int]:
    """A histogram holding one dwell time (empty list when there is none)."""
    if dwell_s is None:
        return []
    hist = [0] * BUCKETS
    hist[bucket(dwell_s)] = 1
    return hist


def add(a: list[int], b: list[int]) -> list[int]:
    """Bucket-wise sum; an empty list is the zero histogram."""
    if not a:
        return list(b)
    if not b:
        return list(a)
    return [x + y for x, y in zip(a, b)]


def median(hist: list[int]) -> float | None:
    """Median dwell in seconds, interpolated inside its bucket (the open last bucket reports its lower edge)."""
    n = sum(hist)
    if n == 0:
        return None
    half, seen = n / 2, 0
    for i, count in enumerate(hist):
        if count and seen + count >= half:
            lo = EDGES_S[i - 1] if i else 0
            if i == len(EDGES_S):
                return float(lo)
            return lo + (EDGES_S[i] - lo) * (half - seen) / count
        seen += count
    return None
