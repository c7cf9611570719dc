"""What the broker still holds: the durable jobs whose ``run_job`` message waits in a Redis queue.

The sweeper (workers.tasks.resend_lost_jobs) re-sends a pending job once its lease has passed. Under a backlog
(a busy hour's evidence queue waits longer than the 30 s lease) most such jobs are not lost, only waiting: a
re-sent copy is a second delivery that finds its job done, and the queue grows by it. A job whose message is
still on its queue is therefore left alone; every other due job is re-sent, as before. Nothing here can make the
sweeper miss a lost job: a message is counted only when it is read from the queue itself, and what cannot be read
or understood counts as lost.

Kombu's Redis transport keeps a queue as a list of JSON envelopes (``body`` base64-encoded JSON
``[args, kwargs, embed]``, the task name in ``headers.task``), messages without a priority under the queue's own
name. Messages a worker has reserved (kombu's ``unacked`` hash) are not counted: if that worker dies, kombu gives
them back only after the visibility timeout, and the sweeper's lease is the shorter way back.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Iterable

from core.logging import get_logger
from core.redis import get_redis
from workers.queues import JOB_QUEUES, queue_for_job

log = get_logger("workers.broker")
RUN_JOB = "fieldproof.run_job"
# A queue longer than this is not read (reading is linear in the queue, every sweep): its due jobs are re-sent on
# their lease, as they were before (the lease grows with the job's age, so a long backlog is re-sent ~log2 times).
PEEK_MAX = 20_000
JOB_QUEUE_NAMES = tuple(dict.fromkeys([*JOB_QUEUES.values(), queue_for_job("")]))


def job_id_of(raw: bytes | str) -> int | None:
    """The job a queued message runs, or None for any other message (another task, an unknown envelope)."""
    try:
        msg = json.loads(raw)
        if msg.get("headers", {}).get("task") != RUN_JOB:
            return None
        body = msg["body"]
        if msg.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return int(args[0])
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None


def waiting_jobs(queues: Iterable[str] = JOB_QUEUE_NAMES, peek_max: int | None = None) -> set[int]:
    """Ids of the jobs whose message waits on ``queues`` now; a queue longer than ``peek_max`` is skipped (its jobs
    count as not waiting). Redis unreachable: an empty set (the sweep then re-sends every due job, as before)."""
    limit = PEEK_MAX if peek_max is None else peek_max
    found: set[int] = set()
    try:
        client = get_redis()
        for queue in queues:
            raw = client.lrange(queue, 0, limit)  # one more than the limit: tells a queue too long to read
            if len(raw) > limit:
                log.info("queue_too_long_to_peek", queue=queue, limit=limit)
                continue
            found.update(j for j in map(job_id_of, raw) if j is not None)
    except Exception as exc:  # noqa: BLE001 - redis-py's connection and timeout errors: nothing is known
        log.warning("broker_unreadable", error=type(exc).__name__)
        return set()
    return found
