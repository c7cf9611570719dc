"""The service clock: real by default, simulated when configured, refused in prod; JWTs follow it."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from core import clock
from core.config import Settings, get_settings
from workers.schedule import BEAT_SCHEDULE, scaled

START = datetime(2026, 3, 2, 0, 0, tzinfo=timezone.utc)


def test_real_clock_when_not_configured():
    assert clock.from_settings(Settings(env="dev")) is None
    before = datetime.now(timezone.utc)
    assert before - timedelta(seconds=1) <= clock.now() <= datetime.now(timezone.utc) + timedelta(seconds=1)


def test_simulated_time_is_anchored_to_the_shared_epoch():
    cfg = clock.from_settings(Settings(env="dev", sim_clock_start=START, sim_clock_rate=60, sim_clock_epoch=1000.0))
    assert cfg.at(1000.0) == START
    assert cfg.at(1010.0) == START + timedelta(minutes=10)  # 10 real seconds, 60x
    assert cfg.at(990.0) == START - timedelta(minutes=10)  # before the epoch: before the start


def test_simulated_clock_refused_in_prod_and_incomplete_settings():
    with pytest.raises(clock.SimulatedClockRefused):
        clock.from_settings(Settings(env="prod", sim_clock_start=START, sim_clock_epoch=1.0, jwt_secret="j" * 40,
                                     metrics_token="m" * 40, database_url="postgresql+psycopg://x@db/x",
                                     redis_url="redis://r/0"))
    with pytest.raises(ValueError):
        clock.from_settings(Settings(env="dev", sim_clock_start=START))  # no epoch
    with pytest.raises(ValueError):
        clock.from_settings(Settings(env="dev", sim_clock_start=START, sim_clock_epoch=1.0, sim_clock_rate=0))


def test_beat_intervals_follow_the_rate_with_a_floor():
    fast = scaled(BEAT_SCHEDULE, 60.0, 5.0)
    assert fast["auto-confirm"]["schedule"] == 5.0
    assert fast["settle-ended-tasks"]["schedule"] == 10.0
    assert scaled(BEAT_SCHEDULE, 1.0, 5.0) == BEAT_SCHEDULE


@pytest.fixture
def simulated_2020(monkeypatch):
    """This process on a clock that says March 2020, running at real speed."""
    import time

    monkeypatch.setenv("FIELDPROOF_SIM_CLOCK_START", "2020-03-02T08:00:00+08:00")
    monkeypatch.setenv("FIELDPROOF_SIM_CLOCK_EPOCH", str(time.time()))
    monkeypatch.setenv("FIELDPROOF_SIM_CLOCK_RATE", "1")
    get_settings.cache_clear()
    clock.reset()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()
    clock.reset()


def test_utcnow_machine_time_and_tokens_follow_the_clock(simulated_2020):
    from accounts.errors import InvalidToken
    from accounts.security import create_access_token, decode_access_token
    from core.models import utcnow

    assert utcnow().year == 2020 and abs((utcnow() - datetime(2020, 3, 2, 0, 0, tzinfo=timezone.utc)).total_seconds()) < 60
    assert clock.machine_seconds(300) == timedelta(seconds=300)
    token = create_access_token(42, "worker")  # issued in 2020, valid 15 minutes of simulated time
    assert decode_access_token(token) == 42
    get_settings.cache_clear()
    import os

    os.environ.pop("FIELDPROOF_SIM_CLOCK_START")
    clock.reset()
    with pytest.raises(InvalidToken) as exc:  # on the real clock, that token expired years ago
        decode_access_token(token)
    assert exc.value.code == "token_expired"


def test_cheap_password_hashing_is_refused_in_prod(monkeypatch):
    from accounts import security

    monkeypatch.setenv("FIELDPROOF_ENV", "prod")
    monkeypatch.setenv("FIELDPROOF_ARGON2_MEMORY_KIB", "8192")
    monkeypatch.setenv("FIELDPROOF_JWT_SECRET", "x" * 40)
    monkeypatch.setenv("FIELDPROOF_METRICS_TOKEN", "m" * 40)
    get_settings.cache_clear()
    security._hasher.cache_clear()
    try:
        with pytest.raises(RuntimeError):
            security.hash_password("correct horse")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        security._hasher.cache_clear()
    assert security.verify_password(security.hash_password("correct horse"), "correct horse")
