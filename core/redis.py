"""The shared Redis client (broker, cache, counters; never the system of record)."""
from __future__ import annotations

from functools import lru_cache

import redis

from core.config import get_settings
from core.localservices import LocalServices


def redis_url() -> str:
    """FIELDPROOF_REDIS_URL, else the project-local Redis."""
    url = get_settings().redis_url
    if url:
        return url

    return LocalServices.from_settings().redis_url()


@lru_cache
def get_redis() -> redis.Redis:
    """The process-wide Redis client."""
    return redis.Redis.from_url(redis_url(), socket_timeout=2, socket_connect_timeout=2,
                                health_check_interval=30)
