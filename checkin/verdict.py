"""Verdict from distance and reported accuracy. Pure."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from core.errors import InvalidInput

# Browsers (W3C Geolocation) report 95 % radii; native SDKs report ~68 % radii.
NINETY_FIVE_PERCENT_PLATFORMS = {"browser"}


class InvalidAccuracy(InvalidInput):
    code = "invalid_accuracy"
    detail = "accuracy_m must be a finite, non-negative number of metres."


class AccuracyTooLow(InvalidInput):
    code = "accuracy_too_low"


@dataclass(frozen=True)
class Verdict:
    """inside | uncertain | outside, with the numbers behind it."""

    verdict: Literal["inside", "uncertain", "outside"]
    distance_m: float
    accuracy_95_m: float
    slack_m: float


def accuracy_95_m(accuracy_m: float, platform: str | None, factor: float) -> float:
    """The reported accuracy as a 95 % radius (``factor``: CheckinSettings.accuracy_68_to_95, for 68 % radii)."""
    if accuracy_m is None or not math.isfinite(accuracy_m) or accuracy_m < 0:
        raise InvalidAccuracy()
    return accuracy_m if platform in NINETY_FIVE_PERCENT_PLATFORMS else accuracy_m * factor


def decide(distance_m: float, accuracy_m: float, platform: str | None, settings) -> Verdict:
    """inside if on or in the fence; uncertain if within the (capped) accuracy slack; else outside."""
    acc95 = accuracy_95_m(accuracy_m, platform, settings.accuracy_68_to_95)
    if acc95 > settings.max_accuracy_95_m:
        raise AccuracyTooLow(f"GPS accuracy ±{acc95:.0f} m (95 %) is worse than the {settings.max_accuracy_95_m:.0f} m "
                             "we accept; wait for a better fix (outdoors, GPS on) and retry.",
                             accuracy_95_m=round(acc95, 1))
    slack = min(acc95, settings.max_slack_m)
    if distance_m <= 0:
        verdict = "inside"
    elif distance_m <= slack:
        verdict = "uncertain"
    else:
        verdict = "outside"
    return Verdict(verdict, distance_m, acc95, slack)
