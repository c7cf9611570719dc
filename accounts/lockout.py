"""Login lock-out counters in Redis, per account and per IP (fixed window)."""
from __future__ import annotations

from accounts.errors import LoginLocked
from core.config import get_settings
from core.redis import get_redis


def _keys(username: str, ip: str | None) -> list[tuple[str, int]]:
    s = get_settings()
    keys = [(f"login:fail:user:{username.lower()}", s.login_max_failures_per_account)]
    if ip:
        keys.append((f"login:fail:ip:{ip}", s.login_max_failures_per_ip))
    return keys


def check_not_locked(username: str, ip: str | None) -> None:
    """Raise LoginLocked if the account or the IP has too many recent failures."""
    r = get_redis()
    for key, limit in _keys(username, ip):
        count = int(r.get(key) or 0)
        if count >= limit:
            ttl = max(int(r.ttl(key)), 1)
            raise LoginLocked(f"Too many failed logins; try again in {ttl} s.", retry_after_s=ttl)


def record_failure(username: str, ip: str | None) -> None:
    """Count one failed login for the account and the IP."""
    window = get_settings().login_lockout_window_s
    pipe = get_redis().pipeline()
    for key, _ in _keys(username, ip):
        pipe.incr(key)
        pipe.expire(key, window, nx=True)
    pipe.execute()


def record_success(username: str) -> None:
    """A correct password clears the account's counter (not the IP's)."""
    get_redis().delete(f"login:fail:user:{username.lower()}")
