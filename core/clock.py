"""One clock for the whole service: real UTC time, or a simulated day that runs faster.

A simulation (``fieldproof simulate``) compresses an 8-hour day into minutes. Every process of the
simulated service (API workers, Celery worker, beat) must then agree on what time it is, so the clock is
anchored to a fixed real epoch passed in settings rather than to each process's start:

    simulated = sim_clock_start + (real_now - sim_clock_epoch) * sim_clock_rate

Two kinds of duration exist: human-world ones (claim windows, auto-confirm, dwell, token lifetimes) are
measured on this clock; machine ones (job leases, HTTP timeouts) are real seconds and are converted with
``machine_seconds`` so a lease does not expire 60 times too early. A simulated clock is refused in prod.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from core.config import get_settings


class SimulatedClockRefused(RuntimeError):
    """A simulated clock was configured where only real time is allowed."""


@dataclass(frozen=True)
class ClockConfig:
    """A simulated clock: ``start`` at real unix time ``epoch``, running ``rate`` times real speed."""

    start: datetime
    rate: float
    epoch: float

    def at(self, real_unix: float) -> datetime:
        """Simulated time at a real unix time."""
        return self.start + timedelta(seconds=(real_unix - self.epoch) * self.rate)


def from_settings(settings) -> ClockConfig | None:
    """The simulated clock the settings ask for, or None for real time; refuses one in prod."""
    if settings.sim_clock_start is None:
        return None
    if settings.env == "prod":
        raise SimulatedClockRefused("FIELDPROOF_SIM_CLOCK_START is set but FIELDPROOF_ENV is prod.")
    start = settings.sim_clock_start
    if start.tzinfo is None:
        raise ValueError("FIELDPROOF_SIM_CLOCK_START needs a UTC offset.")
    if settings.sim_clock_rate <= 0:
        raise ValueError("FIELDPROOF_SIM_CLOCK_RATE must be positive.")
    if settings.sim_clock_epoch is None:
        raise ValueError("FIELDPROOF_SIM_CLOCK_EPOCH (real unix time of the start) is required with a start.")
    return ClockConfig(start.astimezone(timezone.utc), float(settings.sim_clock_rate), float(settings.sim_clock_epoch))


@lru_cache
def _config() -> ClockConfig | None:
    return from_settings(get_settings())


def reset() -> None:
    """Forget the cached configuration (after settings change)."""
    _config.cache_clear()


def now() -> datetime:
    """Current time, aware, UTC: real, or simulated when configured."""
    cfg = _config()
    if cfg is None:
        return datetime.now(timezone.utc)
    return cfg.at(time.time())


def rate() -> float:
    """How many clock seconds pass per real second (1 unless simulated)."""
    cfg = _config()
    return 1.0 if cfg is None else cfg.rate


def machine_seconds(seconds: float) -> timedelta:
    """A duration of real (machine) time expressed on this clock, e.g. a job lease."""
    return timedelta(seconds=seconds * rate())
