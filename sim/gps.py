"""What phones report: realistic GPS noise for honest phones, and what spoofing apps send. Pure.

Android's getAccuracy() and iOS horizontalAccuracy are ~68 % radii; a browser (WeChat H5) reports a
95 % radius and usually no altitude/speed/bearing. Native SDKs (Amap) hand out GCJ-02; a browser gives
WGS-84. Errors are 2-D Gaussian with the reported radius, plus occasional worse fixes and, rarer still,
multipath fixes whose real error is several times what the phone claims.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime

from geo import crs as geocrs
from sim import world
from sim.world import offset

# For a 2-D Gaussian, the radius holding p of the mass is sigma * sqrt(-2 ln(1 - p)).
R68 = math.sqrt(-2 * math.log(0.32))
R95 = math.sqrt(-2 * math.log(0.05))


@dataclass
class Phone:
    """One handset: its platform, id and the state that makes its fixes look like one device's."""

    device_id: str
    platform: str  # android | ios | browser
    base_altitude: float = 45.0
    provider: str = "fused"
    carrier: int = 0  # MNC: China Mobile 0, Unicom 1, Telecom 11

    def __post_init__(self) -> None:
        # Drawn from the device id, not the simulation's random stream (which the day's other draws depend on).
        self.carrier = random.Random(f"carrier:{self.device_id}").choice((0, 0, 0, 1, 1, 11))

    @property
    def crs(self) -> str:
        return "wgs84" if self.platform == "browser" else "gcj02"


def new_phone(rng: random.Random, device_id: str) -> Phone:
    """A phone drawn from a plausible mix (60 % Android, 30 % iPhone, 10 % WeChat H5 in a browser)."""
    u = rng.random()
    platform = "android" if u < 0.6 else "ios" if u < 0.9 else "browser"
    provider = {"android": rng.choice(["fused", "gps"]), "ios": "gps", "browser": "network"}[platform]
    return Phone(device_id, platform, base_altitude=rng.uniform(35, 60), provider=provider)


def honest_accuracy(rng: random.Random) -> float:
    """Reported accuracy: 5-30 m most of the time (log-normal around 12 m), 6 % of fixes 40-150 m."""
    if rng.random() < 0.06:
        return rng.uniform(40, 150)
    return min(30.0, max(5.0, rng.lognormvariate(math.log(12), 0.45)))


def _error(rng: random.Random, accuracy_m: float, platform: str) -> tuple[float, float]:
    """A horizontal error (east, north) in metres consistent with the reported accuracy."""
    sigma = accuracy_m / (R95 if platform == "browser" else R68)
    if rng.random() < 0.03:  # multipath: the phone is more confident than it should be
        sigma *= rng.uniform(2, 3)
    return rng.gauss(0, sigma), rng.gauss(0, sigma)


def body(phone: Phone, lat: float, lon: float, accuracy_m: float, client_time: datetime, sent_at: datetime, *,
         mock: bool | None, altitude: float | None, speed: float | None, bearing: float | None) -> dict:
    """The JSON a phone sends, with the WGS-84 point converted to the phone's crs."""
    if phone.crs == "gcj02":
        lat, lon = geocrs.wgs84_to_gcj02(lat, lon)
    return {"lat": round(lat, 6), "lon": round(lon, 6), "crs": phone.crs, "accuracy_m": accuracy_m,
            "client_time": client_time.isoformat(), "sent_at": sent_at.isoformat(), "device_id": phone.device_id,
            "provider": phone.provider, "platform": phone.platform, "mock_location": mock,
            "altitude": altitude, "speed": speed, "bearing": bearing}


def honest_fix(rng: random.Random, phone: Phone, lat: float, lon: float, client_time: datetime,
               sent_at: datetime, walking: bool = False) -> dict:
    """A real phone's fix of a person at (lat, lon) WGS-84."""
    acc = honest_accuracy(rng)
    e, n = _error(rng, acc, phone.platform)
    flat, flon = offset(lat, lon, e, n)
    if phone.platform == "browser":
        return body(phone, flat, flon, float(round(acc)), client_time, sent_at, mock=None, altitude=None,
                    speed=None, bearing=None)
    speed = round(abs(rng.gauss(1.2 if walking else 0.0, 0.4)), 2)
    bearing = round(rng.uniform(0, 360), 1) if speed > 0.3 else None
    altitude = round(phone.base_altitude + rng.gauss(0, 4), 1)
    mock = False if phone.platform == "android" else None
    return body(phone, flat, flon, round(acc, 1), client_time, sent_at, mock=mock, altitude=altitude,
                speed=speed if phone.platform == "android" or speed > 0.3 else None, bearing=bearing)


@dataclass
class SpoofStyle:
    """How a spoofer's fake fixes give themselves away (each trait optional)."""

    mock_flag: bool = False  # Android reports isFromMockProvider
    constant_fields: bool = False  # FakeGPS apps: fixed accuracy, altitude 0, speed 0, bearing 0
    pin_center: bool = False  # drops the pin on the map's marker: the fence centre, to the digit
    accuracy: float = 5.0
    jitter_m: float = 0.0
    seen: list = field(default_factory=list)


def spoof_fix(rng: random.Random, phone: Phone, style: SpoofStyle, center_gcj: tuple[float, float],
              target_wgs: tuple[float, float], client_time: datetime, sent_at: datetime) -> dict:
    """A faked fix 'at' the task's place."""
    if style.pin_center:
        glat, glon = center_gcj
        out = {"lat": round(glat, 6), "lon": round(glon, 6), "crs": "gcj02"}
    else:
        lat, lon = offset(*target_wgs, rng.gauss(0, style.jitter_m), rng.gauss(0, style.jitter_m))
        glat, glon = geocrs.wgs84_to_gcj02(lat, lon)
        out = {"lat": round(glat, 6), "lon": round(glon, 6), "crs": "gcj02"}
    if style.constant_fields:
        acc, alt, speed, bearing = style.accuracy, 0.0, 0.0, 0.0
    else:
        acc = round(rng.uniform(4, 15), 1)
        alt, speed, bearing = round(phone.base_altitude + rng.gauss(0, 3), 1), 0.0, None
    return {**out, "accuracy_m": acc, "client_time": client_time.isoformat(), "sent_at": sent_at.isoformat(),
            "device_id": phone.device_id, "provider": "gps", "platform": "android",
            "mock_location": True if style.mock_flag else False, "altitude": alt, "speed": speed,
            "bearing": bearing}


# ---- radio scans ---------------------------------------------------------------------------------------
# An Android scan sees each access point of the place about 60 % of the time (walls, bodies, scan timing), plus
# a few transient ones (phones' hotspots, passing buses); iOS and a browser cannot scan, so they send nothing.
AP_SEEN_P = 0.6


def radio_scan(rng: random.Random, phone: Phone, place_key: str, lat: float, lon: float, hour: float) -> dict:
    """The ``wifi``/``cells`` a phone at (lat, lon) WGS-84 would report; ``place_key`` names its access points."""
    if phone.platform != "android":
        return {}
    wifi = [{"bssid": world.visible_bssid(ap, hour), "rssi": rng.randint(-90, -45)}
            for ap in world.access_points(place_key) if rng.random() < AP_SEEN_P]
    wifi += [{"bssid": ":".join(f"{rng.getrandbits(8) | 2 if i == 0 else rng.getrandbits(8):02x}" for i in range(6)),
              "rssi": rng.randint(-92, -70)} for _ in range(rng.randint(0, 3))]
    cells = world.cells_near(lat, lon, phone.carrier, count=rng.randint(1, 3))
    return {"wifi": wifi[:50], "cells": [{**c, "rssi": rng.randint(-115, -70)} for c in cells]}
