"""Check-in thresholds, each with the reason for its value (env prefix FIELDPROOF_CHECKIN_)."""
from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class CheckinSettings(BaseSettings):
    """Verdict and risk-signal thresholds."""

    model_config = SettingsConfigDict(env_prefix="FIELDPROOF_CHECKIN_", extra="ignore")

    # Android's Location.getAccuracy() and iOS horizontalAccuracy are ~68 % radii; for a 2-D Gaussian the
    # 95 % radius is sqrt(-2 ln 0.05) / sqrt(-2 ln 0.32) ≈ 1.62 times larger. The W3C Geolocation API
    # already reports a 95 % radius.
    accuracy_68_to_95: float = 1.62
    # Fixes worse than 1 km (95 %) are cell-tower guesses: refuse them and ask the worker to retry outdoors.
    max_accuracy_95_m: float = 1000.0
    # However poor the fix, it may excuse at most 100 m outside the fence; otherwise accuracy_m=900 would
    # pass a worker standing across town.
    max_slack_m: float = 100.0

    # Real GNSS receivers never report 0 m; under 1 m from a phone's GPS is implausible outside survey kit.
    implausible_accuracy_m: float = 1.0
    # Real fixes jitter: K identical accuracy/altitude/speed/bearing values in a row mean a script.
    constant_fields_min_fixes: int = 4
    # 350 km/h high-speed rail is the fastest ground travel a worker can do; ~100 m/s allows for it.
    max_travel_speed_mps: float = 100.0
    # Rail only helps between cities. Within one (hops under 50 km), door to door from one check-out to the
    # next check-in, a worker rides an e-bike (~6 m/s) or at best takes a taxi: Beijing and Shanghai taxis
    # average 20-30 km/h, so 72 km/h (20 m/s) door to door already means empty expressways at both ends.
    urban_hop_m: float = 50_000.0
    max_urban_speed_mps: float = 20.0
    # Phone clocks are NTP-synced to seconds; 5 minutes of skew means a tampered clock or replay.
    max_clock_skew_s: int = 300
    # A fix (or send time) further ahead than this is refused outright, not stored: a stored far-future time
    # would date the claim and its check-out by it. Skew between 5 and 15 minutes is stored and flagged.
    max_future_fix_s: int = 15 * 60
    # Phones queue check-ins offline; a queued fix older than 6 h no longer proves presence today.
    max_queue_age_s: int = 6 * 3600
    # Two accounts on one device is a device farm (shared family phones are rare for field workers).
    shared_device_min_accounts: int = 1
    # Carrier NAT puts many people behind one IP, so only many accounts in one hour count.
    shared_ip_min_accounts: int = 8
    shared_ip_window_s: int = 3600
    # The shared-IP count reads at most this many of the IP's latest fixes in the window (newest first, from the
    # (ip, server_time) index): a carrier-grade NAT puts thousands of phones behind one address, and an exact
    # distinct count would sort all of their fixes on every check-in. Reaching shared_ip_min_accounts needs 9
    # distinct accounts among them, so the bound changes the verdict only for an IP whose latest 500 fixes in the
    # hour came from 8 or fewer other accounts while older ones came from more. The count also stops as soon as it
    # reaches shared_ip_min_accounts (the signal asks no more), so behind a busy NAT it reads a few rows, not 500.
    shared_ip_scan_rows: int = 500
    # A fix within 25 cm of the fence centre or POI pin is the pin itself (typed in or dropped on the map;
    # six decimals are ~0.1 m). Real fixes scatter by metres: an honest one lands that close about once in
    # several thousand (1 m flagged ~1 honest visit in 250 in the city simulation).
    fence_center_m: float = 0.25
    # The history signals (previous fixes, coordinate repeats, accounts on a device) read this far back in server
    # time. check-ins are partitioned by month on server_time, so the bound lets PostgreSQL skip older months;
    # 92 days (three months) still catches a farm reusing devices or a script replaying coordinates a season on.
    history_window_days: int = 92
    # Minimum plausible dwell for a store visit when the task sets none: 2 minutes.
    default_min_dwell_s: int = 120

    # Radio fingerprints (checkin.radio). A site's learned fingerprint is judged only once accepted check-ins of
    # at least 3 distinct workers built it: one or two people's scans may all have missed the site's APs (phones
    # see roughly half of them per scan) or be a spoofer's own home. A learned hash counts only when 2 or more
    # distinct workers reported it, so a single (possibly dishonest) phone's home network never becomes "the site".
    radio_min_workers: int = 3
    radio_hash_min_workers: int = 2
    # ... and at least 8 such hashes: a site whose few known APs a phone can miss in one scan is not judged (in the
    # simulated city, 3 workers and 8 counted hashes put an honest scan's chance of sharing nothing near 1 in 2000).
    radio_min_hashes: int = 8
    # Learned from the latest 100 learnable check-ins of the site: access points get replaced and neighbours
    # come and go, so old sightings age out with the window.
    radio_window: int = 100
    weight_radio_mismatch: int = 45

    weight_mock_location: int = 60
    weight_accuracy_zero: int = 40
    weight_accuracy_implausible: int = 20
    weight_constant_fix_fields: int = 35
    weight_impossible_travel: int = 50
    weight_exact_coordinate_repeat: int = 45
    weight_shared_device: int = 40
    weight_shared_ip: int = 15
    weight_client_clock_skew: int = 20
    weight_queued_upload_too_old: int = 25
    weight_at_fence_center: int = 35
    weight_short_dwell: int = 25
    weight_no_checkout: int = 15  # a task asking for a minimum stay, submitted without a check-out (unverified)
    weight_outside_soft_fence: int = 30


@lru_cache
def get_checkin_settings() -> CheckinSettings:
    """The process-wide check-in settings."""
    return CheckinSettings()
