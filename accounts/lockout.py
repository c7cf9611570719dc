"""Login lock-out counters in Redis, per account and per IP (fixed window).

A guess is counted *before* its password is checked, by one atomic Lua script that also decides the
lock: twenty guesses released at once each take a number, and only the first ``limit`` reach argon2.
A correct password then gives its count back.
"""
from __future__ import annotations

from functools import lru_cache

from accounts.errors import LoginLocked
from core.config import get_settings
from core.redis import get_redis

# KEYS: counters; ARGV: window seconds, then one limit per key. Refuses without counting when any counter
# is at its limit (returns that key's ttl); otherwise counts the attempt on every key and returns 0.
_RESERVE = """
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i + 1]) then
    local ttl = redis.call('TTL', key)
    if ttl < 1 then ttl = 1 end
    return ttl
  end
end
for i, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then redis.call('EXPIRE', key, ARGV[1]) end
end
return 0
"""
# KEYS[1]: the account counter (cleared); KEYS[2]: the IP counter (this attempt given back).
_SUCCEED = """
redis.call('DEL', KEYS[1])
if KEYS[2] and tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
return 0
"""
# KEYS: counters; this attempt is given back (never below zero).
_RELEASE = """
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
end
return 0
"""


def _keys(username: str, ip: str | None) -> list[tuple[str, int]]:
    s = get_settings()
    keys = [(f"login:fail:user:{username.lower()}", s.login_max_failures_per_account)]
    if ip:
        keys.append((f"login:fail:ip:{ip}", s.login_max_failures_per_ip))
    return keys


@lru_cache
def _scripts():
    r = get_redis()
    return r.register_script(_RESERVE), r.register_script(_SUCCEED), r.register_script(_RELEASE)


def reserve_attempt(username: str, ip: str | None) -> None:
    """Count this login attempt for the account and the IP, or raise LoginLocked if either is at its limit."""
    keys = _keys(username, ip)
    ttl = int(_scripts()[0](keys=[k for k, _ in keys],
                            args=[get_settings().login_lockout_window_s, *[limit for _, limit in keys]]))
    if ttl:
        raise LoginLocked(f"Too many failed logins; try again in {ttl} s.", retry_after_s=ttl)


def record_success(username: str, ip: str | None) -> None:
    """A correct password clears the account's counter and gives the IP back this attempt."""
    _scripts()[1](keys=[k for k, _ in _keys(username, ip)])


def release_attempt(username: str, ip: str | None) -> None:
    """Give back an attempt whose password was never judged (the database or argon2 failed): an outage
    must not lock people out."""
    _scripts()[2](keys=[k for k, _ in _keys(username, ip)])
