"""Radio fingerprints: does a check-in's Wi-Fi/cell scan fit what accepted check-ins saw at the site? Pure.

The service hashes the scan on arrival (geo.radio) and reads, in its one measuring statement, how established
the task's learned fingerprint is and how many of the scan's hashes it (or the merchant's pinned BSSIDs) holds.
A scan that shares nothing with an established fingerprint while GPS puts the phone at the site is the
signature of a location spoofer at home: the GPS is faked, the radios are not.

Established: learned from accepted check-ins of at least ``radio_min_workers`` distinct workers, with at least
``radio_min_hashes`` hashes that ``radio_hash_min_workers`` distinct workers each saw (only those count); or any
pinned BSSID on the task. A check-in with
no scan (a browser cannot scan) is not judged.
"""
from __future__ import annotations

from dataclasses import dataclass

from checkin.signals import Signal
from geo.radio import cell_hash, wifi_hash


@dataclass(frozen=True)
class RadioContext:
    """What the database knows about the task's radio environment, relative to this scan."""

    site_workers: int = 0  # distinct workers the learned fingerprint rests on
    site_hashes: int = 0  # hashes in it that enough distinct workers saw to count
    shared: bool = False  # the scan saw a hash of the learned fingerprint (a counted one)
    pins: int = 0  # BSSIDs the merchant pinned
    pin_shared: bool = False  # the scan saw a pinned BSSID


def scan_hashes(wifi: list, cells: list) -> list[int]:
    """The scan's keyed hashes, sorted and unique (Wi-Fi and cells share one array: their keys differ)."""
    out = {wifi_hash(w.bssid) for w in wifi} | {cell_hash(c.mcc, c.mnc, c.tac, c.cid) for c in cells}
    return sorted(out)


def established(ctx: RadioContext, s) -> bool:
    """Whether the site's fingerprint is strong enough to judge a scan against."""
    return ctx.pins > 0 or (ctx.site_workers >= s.radio_min_workers and ctx.site_hashes >= s.radio_min_hashes)


def evaluate(scan: list[int], verdict: str, ctx: RadioContext, s) -> list[Signal]:
    """``radio_mismatch`` when GPS says the phone is at the site but its radios share nothing with the site's."""
    if not scan or verdict == "outside" or not established(ctx, s):
        return []
    if ctx.shared or ctx.pin_shared:
        return []
    basis = f"{ctx.pins} pinned Wi-Fi" if ctx.pins else f"scans of {ctx.site_workers} workers"
    return [Signal("radio_mismatch", s.weight_radio_mismatch,
                   f"none of the {len(scan)} Wi-Fi/cell ids scanned matches this site ({basis}), "
                   "though GPS puts the phone there")]
