"""Per-user and per-IP rate limits in Redis: a fixed one-minute window per key."""
from __future__ import annotations

import time

import redis

from core.config import get_settings
from core.errors import RateLimited
from core.logging import get_logger
from core.redis import get_redis

log = get_logger("api.ratelimit")


def _hit(key: str, limit: int) -> None:
    window = int(time.time() // 60)
    full = f"rl:{key}:{window}"
    try:
        pipe = get_redis().pipeline()
        pipe.incr(full)
        pipe.expire(full, 120)
        count = pipe.execute()[0]
    except redis.RedisError:
        # Redis is a cache here: if it is down we fail open rather than refuse all traffic.
        log.warning("rate_limit_unavailable", key=key)
        return
    if count > limit:
        raise RateLimited(f"More than {limit} requests per minute; slow down.", retry_after_s=60 - int(time.time()) % 60)


def limit_user(user_id: int) -> None:
    """Count a request for this user; raise RateLimited over the per-minute limit."""
    _hit(f"user:{user_id}", get_settings().rate_limit_per_minute_user)


def limit_ip(ip: str) -> None:
    """Count a request from this IP; raise RateLimited over the per-minute limit."""
    _hit(f"ip:{ip}", get_settings().rate_limit_per_minute_ip)
