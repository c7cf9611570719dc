"""Each risk signal firing and not firing; verdict edges (pure, no database)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from checkin import signals as sig
from checkin.settings import CheckinSettings
from checkin.verdict import decide
from core.errors import InvalidInput

S = CheckinSettings()
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)


def fix(**over) -> sig.Fix:
    base = dict(lat=39.9, lon=116.4, accuracy_m=12.3, client_time=T0, server_time=T0 + timedelta(seconds=2),
                device_id="d1", ip="198.51.100.1", provider="gps", mock_location=False, altitude=51.2, speed=0.4,
                bearing=87.0)
    base.update(over)
    return sig.Fix(**base)


def prior(**over) -> sig.PriorFix:
    base = dict(lat=39.9, lon=116.4, accuracy_m=10.1, client_time=T0 - timedelta(minutes=30), altitude=50.0,
                speed=0.2, bearing=12.0, worker_id=1)
    base.update(over)
    return sig.PriorFix(**base)


def codes(f=None, **ctx) -> set[str]:
    return {s.code for s in sig.evaluate(f or fix(), sig.SignalContext(**ctx), S)}


def test_honest_fix_with_history_has_no_signals():
    history = [prior(accuracy_m=a, client_time=T0 - timedelta(minutes=m)) for a, m in ((9.0, 10), (14.5, 40), (11.0, 90))]
    assert codes(previous_fix=history[0], recent_fixes=history, fence_center=(116.401, 39.9)) == set()


@pytest.mark.parametrize("over,code", [({"mock_location": True}, "mock_location"),
                                       ({"accuracy_m": 0.0}, "accuracy_zero"),
                                       ({"accuracy_m": 0.4}, "accuracy_implausible")])
def test_single_fix_signals(over, code):
    assert code in codes(fix(**over))
    assert code not in codes(fix())


def test_constant_fields():
    same = dict(accuracy_m=10.0, altitude=30.0, speed=0.0, bearing=0.0)
    history = [prior(**same) for _ in range(3)]
    assert "constant_fix_fields" in codes(fix(**same), recent_fixes=history)
    assert "constant_fix_fields" not in codes(fix(**same), recent_fixes=history[:2])
    assert "constant_fix_fields" not in codes(fix(**dict(same, accuracy_m=11.0)), recent_fixes=history)


def test_impossible_travel_subtracts_accuracies():
    shanghai = prior(lat=31.23, lon=121.47, client_time=T0 - timedelta(minutes=5))
    assert "impossible_travel" in codes(previous_fix=shanghai)
    assert "impossible_travel" not in codes(previous_fix=prior(lat=31.23, lon=121.47,
                                                               client_time=T0 - timedelta(hours=6)))
    # 300 m jump in 2 s, but both fixes are ±200 m: nothing had to be travelled
    near = prior(lat=39.9027, accuracy_m=200, client_time=T0 - timedelta(seconds=2))
    assert "impossible_travel" not in codes(fix(accuracy_m=200), previous_fix=near)
    assert "impossible_travel" in codes(fix(accuracy_m=5), previous_fix=prior(lat=39.9027, accuracy_m=5,
                                                                              client_time=T0 - timedelta(seconds=2)))


def test_urban_hops_are_held_to_road_speed_and_intercity_ones_to_rail():
    # 8 km across Beijing in 4 minutes is 33 m/s: no road gets a worker there door to door (6 minutes: 22 m/s)
    across_town = prior(lat=39.9, lon=116.4 + 8000 / 85_400, accuracy_m=10, client_time=T0 - timedelta(minutes=4))
    assert "impossible_travel" in codes(previous_fix=across_town)
    assert "impossible_travel" in codes(previous_fix=prior(lat=39.9, lon=116.4 + 8000 / 85_400, accuracy_m=10,
                                                           client_time=T0 - timedelta(minutes=6)))
    # the same hop in 10 minutes (~13 m/s) is a taxi on the ring road
    assert "impossible_travel" not in codes(previous_fix=prior(lat=39.9, lon=116.4 + 8000 / 85_400, accuracy_m=10,
                                                               client_time=T0 - timedelta(minutes=10)))
    # Tianjin (~110 km) in 40 minutes is a high-speed train (~46 m/s): allowed beyond the urban hop
    tianjin = prior(lat=39.13, lon=117.20, client_time=T0 - timedelta(minutes=40))
    assert "impossible_travel" not in codes(previous_fix=tianjin)


def test_history_counts():
    assert "exact_coordinate_repeat" in codes(exact_repeat_count=1)
    assert "shared_device" in codes(device_account_count=1)
    assert "shared_ip" in codes(ip_account_count=S.shared_ip_min_accounts)
    assert "shared_ip" not in codes(ip_account_count=S.shared_ip_min_accounts - 1)


def test_clock_skew_versus_queued_upload():
    assert "client_clock_skew" in codes(fix(client_time=T0 + timedelta(minutes=20), server_time=T0))
    queued = fix(client_time=T0 - timedelta(hours=2), server_time=T0)
    assert codes(queued) == set()  # offline queue within the allowed age
    assert "queued_upload_too_old" in codes(fix(client_time=T0 - timedelta(hours=8), server_time=T0))
    # with sent_at the two are told apart: phone clock 1 h behind, fix sent right away
    skewed = fix(client_time=T0 - timedelta(hours=1), sent_at=T0 - timedelta(hours=1), server_time=T0)
    assert codes(skewed) == {"client_clock_skew"}


def test_fence_centre():
    assert "at_fence_center" in codes(fence_center=(116.4, 39.9))
    assert "at_fence_center" in codes(fence_center=(116.4 + 0.000001, 39.9))  # six-decimal rounding of the pin
    assert "at_fence_center" not in codes(fence_center=(116.4 + 0.6 / 85_400, 39.9))  # 60 cm: a real fix can be there
    assert "at_fence_center" not in codes(fence_center=(116.4001, 39.9))


def test_score_is_capped():
    s = sig.evaluate(fix(mock_location=True, accuracy_m=0), sig.SignalContext(exact_repeat_count=3,
                                                                             device_account_count=4), S)
    assert sig.risk_score(s) == 100


def test_short_dwell():
    assert [s.code for s in sig.evaluate_checkout(T0, T0 + timedelta(seconds=30), S, None)] == ["short_dwell"]
    assert sig.evaluate_checkout(T0, T0 + timedelta(minutes=10), S, 300) == []


@pytest.mark.parametrize("distance,acc,platform,expected", [
    (0.0, 5, "android", "inside"), (10.0, 5, "android", "outside"),
    (8.0, 5, "android", "uncertain"), (8.1, 5, "android", "uncertain"), (8.2, 5, "browser", "outside"),
    (99.0, 600, "android", "uncertain"), (101.0, 600, "android", "outside")])
def test_verdict_edges(distance, acc, platform, expected):
    assert decide(distance, acc, platform, S).verdict == expected


def test_verdict_rejects_bad_and_huge_accuracy():
    with pytest.raises(InvalidInput) as exc:
        decide(10, 5000, "android", S)
    assert exc.value.code == "accuracy_too_low"
    with pytest.raises(InvalidInput) as exc:
        decide(10, float("nan"), "android", S)
    assert exc.value.code == "invalid_accuracy"
