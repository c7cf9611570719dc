"""Per-user and per-IP rate limits in Redis: a fixed one-minute window per key."""
from __future__ import annotations

import time

import redis

from core.config import get_settings
from core.errors import RateLimited
from core.logging import get_logger
from core.redis import get_redis

log = get_logger("api.ratelimit")


def _hit(key: str, limit: int, window_s: int = 60) -> None:
    window = int(time.time() // window_s)
    full = f"rl:{key}:{window}" if window_s == 60 else f"rl:{key}:{window_s}:{window}"
    try:
        pipe = get_redis().pipeline()
        pipe.incr(full)
        pipe.expire(full, 2 * window_s)
        count = pipe.execute()[0]
    except redis.RedisError:
        # Redis is a cache here: if it is down we fail open rather than refuse all traffic.
        log.warning("rate_limit_unavailable", key=key)
        return
    if count > limit:
        per = "minute" if window_s == 60 else f"{window_s // 60} minutes"
        raise RateLimited(f"More than {limit} requests per {per}; slow down.",
                          retry_after_s=window_s - int(time.time()) % window_s)


def limit_user(user_id: int) -> None:
    """Count a request for this user; raise RateLimited over the per-minute limit."""
    _hit(f"user:{user_id}", get_settings().rate_limit_per_minute_user)


def limit_ip(ip: str) -> None:
    """Count a request from this IP; raise RateLimited over the per-minute limit."""
    _hit(f"ip:{ip}", get_settings().rate_limit_per_minute_ip)


def limit_auth(action: str, ip: str | None) -> None:
    """Registration ("register") and login ("login") limits per IP and in total: argon2 work is expensive."""
    s = get_settings()
    if action == "register":
        if ip:
            _hit(f"register:ip:{ip}", s.register_per_ip_per_hour, window_s=3600)
        _hit("register:all", s.register_per_minute_total)
    else:
        if ip:
            _hit(f"login:ip:{ip}", s.login_per_ip_per_minute)
        _hit("login:all", s.login_per_minute_total)
