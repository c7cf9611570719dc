"""Risk signals on a fix, each a stable reason code with a weight and a human detail. Pure.

The service gathers the history (``SignalContext``) from the database; nothing here does I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from geo.fence import haversine_m


@dataclass(frozen=True)
class Fix:
    """The fix being judged (WGS-84)."""

    lat: float
    lon: float
    accuracy_m: float
    client_time: datetime
    server_time: datetime
    device_id: str
    ip: str | None
    provider: str
    mock_location: bool | None
    altitude: float | None = None
    speed: float | None = None
    bearing: float | None = None
    sent_at: datetime | None = None


@dataclass(frozen=True)
class PriorFix:
    """An earlier fix of the same worker."""

    lat: float
    lon: float
    accuracy_m: float
    client_time: datetime
    altitude: float | None
    speed: float | None
    bearing: float | None
    worker_id: int


@dataclass(frozen=True)
class SignalContext:
    """History relevant to a fix."""

    previous_fix: PriorFix | None = None
    recent_fixes: list[PriorFix] = field(default_factory=list)
    exact_repeat_count: int = 0
    device_account_count: int = 0
    ip_account_count: int = 0  # counted up to shared_ip_min_accounts, no further
    fence_center: tuple[float, float] | None = None


@dataclass(frozen=True)
class Signal:
    """One reason code."""

    code: str
    weight: int
    detail: str


def _mock(fix: Fix, ctx: SignalContext, s) -> list[Signal]:
    if fix.mock_location:
        return [Signal("mock_location", s.weight_mock_location, "the phone reported a mock (simulated) location")]
    return []


def _accuracy(fix: Fix, ctx: SignalContext, s) -> list[Signal]:
    if fix.accuracy_m == 0:
        return [Signal("accuracy_zero", s.weight_accuracy_zero, "accuracy exactly 0 m: a classic mock-location marker")]
    if fix.accuracy_m < s.implausible_accuracy_m:
        return [Signal("accuracy_implausible", s.weight_accuracy_implausible,
                       f"accuracy {fix.accuracy_m:.2f} m is better than phone GPS can deliver")]
    return []


def _constant(fix: Fix, ctx: SignalContext, s) -> list[Signal]:
    need = s.constant_fields_min_fixes
    recent = ctx.recent_fixes[: need - 1]
    if len(recent) < need - 1:
        return []
    key = lambda f: (f.accuracy_m, f.altitude, f.speed, f.bearing)  # noqa: E731
    if all(key(p) == key(fix) for p in recent):
        return [Signal("constant_fix_fields", s.weight_constant_fix_fields,
                       f"{need} fixes in a row with identical accuracy/altitude/speed/bearing {key(fix)}: real GPS jitters")]
    return []


def _travel(fix: Fix, ctx: SignalContext, s) -> list[Signal]:
    prev = ctx.previous_fix
    if prev is None:
        return []
    dist = haversine_m(prev.lon, prev.lat, fix.lon, fix.lat)
    # Both fixes may be off by their accuracy; only distance beyond that must have been travelled.
    effective = max(0.0, dist - prev.accuracy_m - fix.accuracy_m)
    dt = abs((fix.client_time - prev.client_time).total_seconds())
    if effective == 0:
        return []
    # A jump with no time between fixes (or a fix dated before its predecessor) is treated as 1 s apart.
    speed = effective / max(dt, 1.0)
    limit = s.max_urban_speed_mps if dist <= s.urban_hop_m else s.max_travel_speed_mps
    if speed <= limit:
        return []
    return [Signal("impossible_travel", s.weight_impossible_travel,
                   f"travelled {dist / 1000:.1f} km in {dt:.0f} s since the previous fix "
                   f"({speed:.0f} m/s after subtracting accuracies; limit {limit:.0f} m/s)")]


def _repeats(fix: Fix, ctx: SignalContext, s) -> list[Signal]:
    out = []
    if ctx.exact_repeat_count > 0:
        out.append(Signal("exact_coordinate_repeat", s.weight_exact_coordinate_repeat,
                          f"the same coordinates to 6 decimals were reported {ctx.exact_repeat_count} time(s) "
                          "by other workers or on other days"))
    if ctx.device_account_count >= s.shared_device_min_accounts:
        out.append(Signal("shared_device", s.weight_shared_device,
                          f"device {fix.device_id} was used by {ctx.device_account_count} other account(s)"))
    if ctx.ip_account_count >= s.shared_ip_min_accounts:
        out.append(Signal("shared_ip", s.weight_shared_ip,
                          f"at least {ctx.ip_account_count} other accounts checked in from {fix.ip} within "
                          f"{s.shared_ip_window_s // 60} min"))
    return out


# Details that name other people's identifiers (a device id, an IP address). Ops see them to investigate;
# merchants and workers get the reason in words without them.
REDACTED_DETAIL = {
    "shared_device": "this phone was also used by other accounts",
    "shared_ip": "other accounts checked in from the same network address at about the same time",
}


def for_viewer(signals: list[dict], role: str) -> list[dict]:
    """Stored signals as a viewer of ``role`` may see them: ops everything, others no identifiers."""
    if role in ("ops", "admin"):
        return signals
    return [dict(x, detail=REDACTED_DETAIL[x["code"]]) if x.get("code") in REDACTED_DETAIL else x for x in signals]


def _clock(fix: Fix, ctx: SignalContext, s) -> list[Signal]:
    if fix.sent_at is not None:
        skew = (fix.sent_at - fix.server_time).total_seconds()
        age = (fix.sent_at - fix.client_time).total_seconds()
    else:
        lag = (fix.server_time - fix.client_time).total_seconds()
        skew, age = (-lag if lag < 0 else 0.0), max(lag, 0.0)
    out = []
    if abs(skew) > s.max_clock_skew_s:
        out.append(Signal("client_clock_skew", s.weight_client_clock_skew,
                          f"the phone's clock is {skew:+.0f} s from server time"))
    if age > s.max_queue_age_s:
        out.append(Signal("queued_upload_too_old", s.weight_queued_upload_too_old,
                          f"the fix was taken {age / 3600:.1f} h before it was sent "
                          f"(limit {s.max_queue_age_s / 3600:.0f} h)"))
    return out


def _centre(fix: Fix, ctx: SignalContext, s) -> list[Signal]:
    pt = ctx.fence_center
    if pt is not None and haversine_m(pt[0], pt[1], fix.lon, fix.lat) < s.fence_center_m:
        return [Signal("at_fence_center", s.weight_at_fence_center,
                       f"the fix is within {s.fence_center_m:.0f} m of the fence centre: typed in, not measured")]
    return []


RULES = (_mock, _accuracy, _constant, _travel, _repeats, _clock, _centre)


def evaluate(fix: Fix, ctx: SignalContext, settings) -> list[Signal]:
    """Every signal that fires on this fix."""
    return [sig for rule in RULES for sig in rule(fix, ctx, settings)]


def risk_score(signals: list[Signal]) -> int:
    """Sum of weights, capped at 100."""
    return min(100, sum(s.weight for s in signals))


def dwell_seconds(checkin_time: datetime, checkout_time: datetime) -> int:
    """Seconds between check-in and check-out (never negative)."""
    return max(0, int((checkout_time - checkin_time).total_seconds()))


def evaluate_checkout(checkin_time: datetime, checkout_time: datetime, settings, min_dwell_s: int | None) -> list[Signal]:
    """'Check in and leave': a dwell shorter than the task's minimum."""
    need = min_dwell_s if min_dwell_s is not None else settings.default_min_dwell_s
    dwell = dwell_seconds(checkin_time, checkout_time)
    if dwell < need:
        return [Signal("short_dwell", settings.weight_short_dwell,
                       f"stayed {dwell} s between check-in and check-out; the task expects at least {need} s")]
    return []
