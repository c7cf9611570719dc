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


# CPU each Celery task name has used, summed over every worker process and host sharing this Redis: "<name>:s"
# (CPU seconds) and "<name>:n" (runs) in one hash. Written by the workers' task signals (workers.celery_app), read
# by the simulator's report and by ops (``task_cpu``); a count, never the system of record.
TASK_CPU_KEY = "fieldproof:task_cpu"


def record_task_cpu(client: redis.Redis, name: str, seconds: float) -> None:
    """Add one run of task ``name`` that used ``seconds`` of its process's CPU (one round trip)."""
    pipe = client.pipeline(transaction=False)
    pipe.hincrbyfloat(TASK_CPU_KEY, f"{name}:s", seconds)
    pipe.hincrby(TASK_CPU_KEY, f"{name}:n", 1)
    pipe.execute()


def task_cpu(client: redis.Redis) -> dict[str, dict[str, float]]:
    """{task name: {"runs": n, "cpu_s": seconds, "ms_per_run": ...}}, the costliest first."""
    raw = {k.decode(): float(v) for k, v in client.hgetall(TASK_CPU_KEY).items()}
    out = {}
    for key, value in raw.items():
        name, _, part = key.rpartition(":")
        entry = out.setdefault(name, {"runs": 0, "cpu_s": 0.0})
        entry["runs" if part == "n" else "cpu_s"] = int(value) if part == "n" else round(value, 3)
    for entry in out.values():
        entry["ms_per_run"] = round(1000 * entry["cpu_s"] / entry["runs"], 2) if entry["runs"] else None
    return dict(sorted(out.items(), key=lambda item: -item[1]["cpu_s"]))
