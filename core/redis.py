"""The shared Redis client (broker, cache, counters; never the system of record)."""
from __future__ import annotations

import asyncio
import weakref
from functools import lru_cache

import redis
import redis.asyncio

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


_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis] = weakref.WeakKeyDictionary()


def get_async_redis() -> redis.asyncio.Redis:
    """This event loop's Redis client, for calls made on the loop itself (the edge middleware).

    One per loop: an asyncio client's connections belong to the loop that opened them.
    """
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = _async_clients[loop] = redis.asyncio.Redis.from_url(
            redis_url(), socket_timeout=2, socket_connect_timeout=2, health_check_interval=30)
    return client
