"""The Celery app: Redis broker, JSON only, late acks for idempotent tasks."""
from __future__ import annotations

import time

import redis
from celery import Celery, signals

from checkin import hooks as checkin_hooks
from core import clock, heap
from core.config import get_settings
from core.logging import get_logger
from core.redis import get_redis, record_task_cpu, redis_url
from evidence import hooks as evidence_hooks
from tasks import hooks as task_hooks
from workers.schedule import beat_schedule, scaled

# The longest task is bounded by its hard time limit; the broker's visibility timeout must
# exceed it, or Redis would hand a still-running task to a second worker (reasoning in core.config).
TASK_TIME_LIMIT_S = get_settings().celery_task_time_limit_s
VISIBILITY_TIMEOUT_S = max(get_settings().celery_visibility_timeout_s, TASK_TIME_LIMIT_S + 15)
# Longer than a worker's wait for its next message (kombu's BRPOP: 1 s), short enough for a request to bear.
BROKER_SOCKET_TIMEOUT_S = 3.0

# The worker process runs domain code that relies on checkin's and evidence's hooks in tasks.
checkin_hooks.register()
evidence_hooks.register()
task_hooks.assert_complete()

app = Celery("fieldproof", include=["workers.tasks"])
app.conf.update(
    broker_url=redis_url(),
    result_backend=None,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_time_limit=TASK_TIME_LIMIT_S,
    task_soft_time_limit=TASK_TIME_LIMIT_S - 15,
    # A broker that stops answering (its process frozen, a network partition: the socket stays open) held every
    # publish for as long as it stayed so, and an upload's nudge is published after its commit in the request: a
    # probe's uploads waited 25-72 s for a frozen Redis. Bounded now (BROKER_SOCKET_TIMEOUT_S); a nudge that fails
    # is only a delay (workers.tasks.enqueue_job: the sweeper re-sends the job).
    broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S, "socket_timeout": BROKER_SOCKET_TIMEOUT_S,
                              "socket_connect_timeout": BROKER_SOCKET_TIMEOUT_S},
    broker_connection_retry_on_startup=True,
    task_default_queue="default",  # every task names its own queue (workers.queues); this is only a fallback
    beat_schedule=scaled(beat_schedule(get_settings()), clock.rate(), get_settings().beat_min_interval_s),
    timezone="UTC",
    enable_utc=True,
)


@signals.worker_process_init.connect
def _freeze_startup(**_: object) -> None:
    """Each pool process, once forked and initialised: what starting built stays out of the collector's way
    (core.heap)."""
    heap.freeze_startup()


log = get_logger("workers.celery_app")
_cpu_at_start: dict[str, float] = {}


@signals.task_prerun.connect
def _task_cpu_start(task_id: str | None = None, **_: object) -> None:
    _cpu_at_start[task_id] = time.process_time()


@signals.task_postrun.connect
def _task_cpu_end(task_id: str | None = None, task=None, **_: object) -> None:
    """The CPU this process used for the task (its own threads included), added to the tally by task name in Redis
    (core.redis.task_cpu): what each kind of background work costs, across every worker process and host."""
    started = _cpu_at_start.pop(task_id, None)
    if started is None or task is None:
        return
    try:
        record_task_cpu(get_redis(), task.name, time.process_time() - started)
    except redis.RedisError:  # a count: Redis down loses a sample, never the task
        log.warning("task_cpu_not_recorded", task=task.name)
