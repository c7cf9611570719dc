"""Phone UI chrome around a photo: status and navigation bars, letterboxing, rounded corners. Pure.

A screenshot of a photo puts bars above and below it (sometimes touching it), black or white letterbox
bands, and on many phones rounded screen corners or a chat bubble's rounded photo. Such chrome is *flat*:
a row of a bar is one colour but for a few icons or characters, while a row of a photo is textured
across its width. So a row (or column) counts as chrome when most of its pixels sit within a few grey
levels of the row's median. Chrome is stripped from the edges inwards only (flat lines, and thin non-flat
bands on a background that resumes beyond them), first rows, then columns within the rows left: a flat block
inside the photo (a wall, a sign) is never taken for chrome. A band counts as UI only when the flat lines before
it (a few of one colour) and the line after it are of the same colour: a toolbar's icons interrupt its
background, which goes on after them; where the photo begins, the flat lines next to a thin textured strip are
the photo's own (a signboard, a wall) and the background does not come back. Rounded corners are cut off by
a small fixed inset. Both sides of a comparison are stripped the same way, so a photo whose top rows are clear
sky loses them in the original and in its screenshot alike.
"""
from __future__ import annotations

import numpy as np

FLAT_TOLERANCE = 6  # grey levels around the line's median that count as "the bar's colour"
SAMPLES = 128
FLAT_SHARE = 0.7  # a line this flat is chrome (status-bar text and icons cover well under 30 %)
MAX_BAND_SHARE = 0.08  # a non-flat band this thin between flat lines is UI, not photo
MAX_BANDS = 2  # at most this many per edge (a brick wall's mortar lines are flat rows too)
# A band's background: at least this many flat lines of one colour (within FLAT_TOLERANCE) right before it. The
# background is what the flat lines after the band must match; a photo's single flat column or row next to the
# chrome (its edge runs along a signboard) is not one.
BAND_BACKGROUND = 3
MIN_PHOTO_SHARE = 0.15  # a shorter run is not trusted to be the photo (a landscape photo in a chat bubble is ~20 %)
# Rounded corners (radius up to ~6 % of the shorter side) leave background outside their arc; insetting by 2 %
# a side removes nearly all of it. Always inset, chrome or not, so an original and its screenshot give the
# same region.
INSET_SHARE = 0.02
# A frame drawn around the photo (a chat bubble's background): its background lines are uniform to within JPEG's
# rounding, where even a clear sky or a white wall carries a camera's noise. A run of at
# least BAND_BACKGROUND such lines of one colour, on two opposite sides and each at least MIN_FRAME_SHARE of the
# image, is a frame.
UNIFORM_TOLERANCE = 2
UNIFORM_SHARE = 0.97
MIN_FRAME_SHARE = 0.03
# Uniform runs at the ends of the range do not frame: a camera clips a blown-out sky or a crushed shadow to exactly
# 255 or 0 (uniform, on both sides of a backlit or night photo), and a letterbox's black bars are stripped well
# as they always were. A chat's background is drawn in a colour (light grey, dark mode's near-black).
CLIPPED = 3


def _lines(lines: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per line (row of ``lines``): whether it is flat (FLAT_SHARE of its pixels within FLAT_TOLERANCE of the
    line's median), whether it is uniform (UNIFORM_SHARE within UNIFORM_TOLERANCE: drawn), and that median. Judged
    from ~SAMPLES evenly spaced pixels of each line (a share is as well measured from 128 pixels as from 512, and
    the medians cost a quarter), sorted once for both."""
    sampled = np.ascontiguousarray(lines[:, :: max(1, lines.shape[1] // SAMPLES)]).astype(np.int16)
    med = np.sort(sampled, axis=1)[:, sampled.shape[1] // 2, None]
    off = np.abs(sampled - med)
    flat = (off <= FLAT_TOLERANCE).mean(axis=1) >= FLAT_SHARE
    return flat, (off <= UNIFORM_TOLERANCE).mean(axis=1) >= UNIFORM_SHARE, med[:, 0]


def _from_edge(mask: np.ndarray, med: np.ndarray) -> int:
    """How many lines from the start of ``mask`` are chrome: flat lines, and any short non-flat band (a
    toolbar's thumbnails, a caption) on a background that goes on after it: the BAND_BACKGROUND flat lines
    before it are of one colour (``med``, each line's median) and the first flat line after it is that colour
    too. A band at the very edge (a status bar dense with icons) has no background before it and is chrome
    whenever flat lines follow."""
    n, i = len(mask), 0
    for _ in range(MAX_BANDS + 1):
        while i < n and mask[i]:
            i += 1
        j = i
        while j < n and not mask[j]:
            j += 1
        if j == n or j - i > MAX_BAND_SHARE * n:
            break
        if i > 0:  # the band's background: BAND_BACKGROUND flat lines of one colour, and that colour after it
            before = med[max(0, i - BAND_BACKGROUND):i]
            if (i < BAND_BACKGROUND or not mask[i - BAND_BACKGROUND:i].all()
                    or np.abs(before - med[i - 1]).max() > FLAT_TOLERANCE
                    or abs(med[j] - med[i - 1]) > FLAT_TOLERANCE):
                break
        i = j
    return i


def _frame_end(uniform: np.ndarray, med: np.ndarray, limit: int) -> int:
    """Where the last run of at least BAND_BACKGROUND uniform lines of one colour, not clipped, that lies within
    the first ``limit`` lines ends (0 if there is none): the frame's inner edge on this side."""
    end = i = 0
    while i < limit:
        j = i
        while j < limit and uniform[j] and abs(int(med[j]) - int(med[i])) <= FLAT_TOLERANCE:
            j += 1
        if j - i >= BAND_BACKGROUND and CLIPPED < med[i] < 255 - CLIPPED:
            end = j
        i = max(j, i + 1)
    return end


def _axis(lines: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """Along one axis: where the stripping puts the photo (start and end of what is left; the whole range when that
    is too short to trust), and the frame's inner edges: within what the stripping takes from each end (bars,
    background, and whatever flat edge of the photo follows), up to the last run of uniform lines only."""
    n = len(lines)
    flat, uniform, med = _lines(lines)
    start, stop = _from_edge(flat, med), n - _from_edge(flat[::-1], med[::-1])
    frame = _frame_end(uniform, med, start), n - _frame_end(uniform[::-1], med[::-1], n - stop)
    return ((start, stop) if stop - start >= MIN_PHOTO_SHARE * n else (0, n)), frame


def photo_box(arr: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the photo inside a screenshot's chrome; the whole image if there is none.

    Inside a drawn frame (a chat bubble's photo: runs of uniform lines of a colour on two opposite sides, each at
    least MIN_FRAME_SHARE; not clipped black or white: CLIPPED) the box is the frame's inside, the photo whole, as
    its original is hashed whole: stripping the photo's own flat edges there as well cut them at the screenshot's
    scale, not as the original's are cut (a band's allowance is a share of the screen, not of the photo; a row's
    flatness takes in the chat background beside the photo), and 6 of 300 rounded chat screenshots of generated
    scenes ended 14-18 bits from their original, past the index's reach of 12 (none now). Without a frame (camera
    photos: a camera's noise is never uniform but where it clips) the stripped box, as before, so the stored hashes
    of files processed before frames were told apart are what a new upload computes (those of screenshots stored
    before are recomputed by `fieldproof evidence rehash`, evidence.rehash; until then a new screenshot of the same
    photo still meets them in the other regions)."""
    stripped, frame = _boxes(np.asarray(arr))
    left, top, right, bottom = frame or stripped
    dx, dy = int((right - left) * INSET_SHARE), int((bottom - top) * INSET_SHARE)
    return left + dx, top + dy, right - dx, bottom - dy


Box = tuple[int, int, int, int]


def _boxes(a: np.ndarray) -> tuple[Box, Box | None]:
    """The photo as the stripping finds it, and inside its drawn frame (None without one), before the inset."""
    rows, cols = a.shape
    (top, bottom), (frame_top, frame_bottom) = _axis(a)
    (left, right), (frame_left, frame_right) = _axis(a[top:bottom].T)
    sides = min(frame_top, rows - frame_bottom) / rows, min(frame_left, cols - frame_right) / cols
    framed = (max(sides) >= MIN_FRAME_SHARE and frame_bottom - frame_top >= MIN_PHOTO_SHARE * rows
              and frame_right - frame_left >= MIN_PHOTO_SHARE * cols)
    return (left, top, right, bottom), ((frame_left, frame_top, frame_right, frame_bottom) if framed else None)
