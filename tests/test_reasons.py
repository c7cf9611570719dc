"""One registry of reason codes: every code the checks emit is in it, and hard flags always sample."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from core import reasons
from tasks.acceptance import sampling_probability

ROOT = Path(__file__).resolve().parent.parent


def _emitted_codes() -> set[str]:
    """Codes written by the check-in signals and the evidence checks, read from their source."""
    found: set[str] = set()
    for path in (ROOT / "checkin").glob("*.py"):
        found |= set(re.findall(r'Signal\("([a-z_]+)"', path.read_text()))
    ev = (ROOT / "evidence" / "service.py").read_text()
    found |= set(re.findall(r'out\.append\("([a-z_]+)"\)', ev))
    found |= set(re.findall(r'"([a-z_]*duplicate_evidence|evidence_reused_later)"', ev))
    return found


def test_every_emitted_code_is_registered_with_text_in_both_languages():
    emitted = _emitted_codes()
    assert len(emitted) >= 15
    assert emitted <= set(reasons.REASONS), emitted - set(reasons.REASONS)
    for reason in reasons.REASONS.values():
        assert reason.zh and reason.en and reason.zh != reason.en


@pytest.mark.parametrize("code", ["constant_fix_fields", "at_fence_center"])
def test_heatmap_spoofing_codes_always_force_a_spot_check(code):
    # Both counted as spoofing on the heatmap, yet the sampler used to give them only the base rate.
    assert code in reasons.HEATMAP_SPOOF
    assert sampling_probability(0, [code]) == 1.0


def test_every_heatmap_spoof_or_duplicate_code_is_a_hard_flag():
    assert reasons.HEATMAP_SPOOF | reasons.HEATMAP_DUPLICATE <= reasons.FORCES_SPOT_CHECK


def test_notes_never_sample_on_their_own():
    assert sampling_probability(0, ["evidence_reused_later"]) < 1.0
    assert reasons.text("evidence_reused_later", "en").endswith("(no penalty)")
    assert reasons.text("unknown_code") == "unknown_code"
