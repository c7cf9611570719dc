"""A month of city history for the demo, generated in memory (pure): who visited which shop when, what the
check-ins said, and how each claim ended. ``sim.month_db`` writes it in bulk through the domain tables.

It follows the simulator's city (``sim.world``: districts, shops and their GCJ-02 fences) and fraud mix
(``sim.driver.FRAUD_SHARES``): honest workers mostly, GPS spoofers (mock flag or hidden), photo re-users,
check-in-and-leave, a device farm. Outcomes are drawn the way the service would decide them: hard reason codes
send a claim to a spot check, which a fraud usually fails; recent work still waits for the merchant or ops.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from core.reasons import FORCES_SPOT_CHECK
from sim.agents import DWELL_MIN, HONEST
from sim.driver import FRAUD_SHARES
from sim.world import Shop, make_shops, offset

CST = timezone(timedelta(hours=8))
TYPES = ("store_visit", "shelf_audit", "flyer_run", "poster", "signup_drive")
HIDDEN_SPOOF = ("constant_fix_fields", "at_fence_center", "impossible_travel", "exact_coordinate_repeat")
BASE_SAMPLE = 0.05  # the spot-check base rate (tasks.acceptance)


@dataclass
class Size:
    """How much history: workers, shops, days (tests use a small one)."""

    workers: int = 120
    shops: int = 48
    days: int = 30
    seed: int = 16


@dataclass
class Visit:
    """One claim of the month, from claim to its final state."""

    worker: int  # index into the worker list
    shop: int  # index into the shop list
    kind: str  # the worker's kind (honest or a fraud kind): the simulator's truth
    claimed_at: datetime
    checkin_at: datetime
    checkout_at: datetime
    fix_in: tuple[float, float]  # WGS-84 lat, lon
    fix_out: tuple[float, float]
    accuracy_m: float
    device: str
    reasons: list[str] = field(default_factory=list)  # check-in reason codes
    flags: list[str] = field(default_factory=list)  # claim flags (check-in codes plus duplicate evidence)
    risk: int = 0
    state: str = "paid"  # paid | rejected | closed (spot check failed) | spot_check (open) | submitted
    sampled: bool = False
    spot_state: str | None = None  # open | passed | failed | not_sampled

    @property
    def dwell_s(self) -> int:
        return int((self.checkout_at - self.checkin_at).total_seconds())


def worker_kinds(n: int) -> list[str]:
    """Each worker's kind: the fraud shares (each kind at least once from 10 workers), the rest honest."""
    kinds = []
    for kind, share in FRAUD_SHARES.items():
        kinds += [kind] * (max(1, round(share * n)) if n >= 10 else 0)
    return (kinds + [HONEST] * n)[:n][::-1]  # honest first, so a tiny city is mostly honest


def shop_type(i: int) -> str:
    """The task type of shop ``i`` (a mix of every kind)."""
    return TYPES[i % len(TYPES)]


def _reasons(rng: random.Random, kind: str, nth: int) -> tuple[list[str], list[str], int]:
    """(check-in reasons, extra claim flags, risk score) for a visit by a worker of ``kind``."""
    if kind == "gps_spoofer_mock":
        return ["mock_location"], [], 80
    if kind == "gps_spoofer_hidden":
        return [rng.choice(HIDDEN_SPOOF)], [], 70
    if kind == "device_farm":
        return ["shared_device"], [], 60
    if kind == "checkin_and_leave":
        return ["short_dwell"], [], 25
    if kind == "photo_reuser" and nth > 0 and rng.random() < 0.6:
        return [], ["duplicate_evidence"], 60
    return (["client_clock_skew"], [], 10) if rng.random() < 0.03 else ([], [], rng.choice((0, 0, 0, 5)))


def _spot(shop: Shop, rng: random.Random, spread: float) -> tuple[float, float]:
    r, a = spread * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
    return offset(shop.lat, shop.lon, r * math.cos(a), r * math.sin(a))


def _outcome(v: Visit, rng: random.Random, now: datetime, busy: set) -> None:
    """Final state as the service would reach it (merchant, sampling, ops), by the work's age."""
    age = now - v.checkout_at
    pair = (v.worker, v.shop)
    fraud = v.kind != HONEST
    hard = bool(FORCES_SPOT_CHECK & set(v.flags))
    # A flagged claim goes to a spot check as soon as its merchant confirms; the newest one may still be queued.
    if hard and age < timedelta(hours=30) and pair not in busy:
        v.state, v.spot_state, v.sampled = "spot_check", "open", True
        busy.add(pair)
        return
    if age < timedelta(hours=18) and pair not in busy and rng.random() < 0.5:
        v.state, v.spot_state = "submitted", None
        busy.add(pair)
        return
    if rng.random() < (0.2 if fraud else 0.03):
        v.state = "rejected"
        return
    v.sampled = hard or rng.random() < BASE_SAMPLE
    if not v.sampled:
        v.state, v.spot_state = "paid", "not_sampled"
    elif age < timedelta(hours=30) and pair not in busy:
        v.state, v.spot_state = "spot_check", "open"
        busy.add(pair)
    elif fraud and rng.random() < 0.85:
        v.state, v.spot_state = "closed", "failed"
    else:
        v.state, v.spot_state = "paid", "passed"


def _worker_day(rng: random.Random, w: int, kind: str, home: list[int], shops: list[Shop], day0: datetime,
                nth: list[int], device: str) -> list[Visit]:
    """One worker's visits on one day, one after another from about 09:00 China time."""
    t = day0 + timedelta(hours=9, minutes=rng.uniform(0, 60))
    out = []
    for _ in range(rng.randint(3, 7)):
        s = rng.choice(home) if rng.random() < 0.85 else rng.randrange(len(shops))
        shop = shops[s]
        claimed = t
        t_in = t + timedelta(minutes=rng.uniform(8, 30))
        lo, hi = DWELL_MIN[shop_type(s)]
        dwell = rng.uniform(20, 90) if kind == "checkin_and_leave" else rng.uniform(lo, hi) * 60
        t_out = t_in + timedelta(seconds=dwell)
        if t_out.astimezone(CST).hour >= 20:
            break
        spread = 2.0 if kind == "gps_spoofer_hidden" else shop.size_m / 3
        spot = _spot(shop, rng, spread)
        reasons, extra, risk = _reasons(rng, kind, nth[0])
        out.append(Visit(w, s, kind, claimed, t_in, t_out, spot, _spot(shop, rng, 3.0) if spread > 3 else spot,
                         rng.choice((1.0, 3.0, 5.0)) if kind.startswith("gps") else rng.uniform(6, 25), device,
                         reasons, reasons + extra, risk))
        nth[0] += 1
        t = t_out + timedelta(minutes=rng.uniform(5, 25))
    return out


def generate(size: Size, now: datetime) -> tuple[list[Shop], list[str], list[Visit]]:
    """(shops, worker kinds, visits) of the month before ``now``, in time order, reproducible from the seed."""
    rng = random.Random(size.seed)
    shops = make_shops(rng, size.shops)
    kinds = worker_kinds(size.workers)
    by_district: dict[str, list[int]] = {}
    for i, shop in enumerate(shops):
        by_district.setdefault(shop.district, []).append(i)
    districts = sorted(by_district)
    today = now.astimezone(CST).replace(hour=0, minute=0, second=0, microsecond=0)
    visits: list[Visit] = []
    for w, kind in enumerate(kinds):
        home = by_district[districts[w % len(districts)]]
        device = f"farm-{w % 3}" if kind == "device_farm" else f"phone-{size.seed}-{w:05d}"
        nth = [0]
        for d in range(size.days, -1, -1):
            if rng.random() < 0.8:  # most workers work most days
                visits += [v for v in _worker_day(rng, w, kind, home, shops, today - timedelta(days=d), nth, device)
                           if v.checkout_at < now - timedelta(minutes=5)]
    visits.sort(key=lambda v: v.claimed_at)
    busy: set = set()
    for v in reversed(visits):  # newest first: only the latest claim of a worker at a shop may still be open
        _outcome(v, rng, now, busy)
    return shops, kinds, visits
