"""Celery queue names and which work goes where (no Celery import: the CLI validates --queues with it quickly).

Queues are scaled apart by running workers that consume only some of them (`fieldproof worker --queues
evidence`): evidence processing (CPU-heavy hashing, reads the evidence store), money (payouts through the
provider), maintenance (beat's sweeps and roll-ups) and default (durable jobs of kinds without a queue of
their own). Every Celery task names its queue; a durable job goes to the queue of its kind.
"""
from __future__ import annotations

QUEUES = ("evidence", "money", "maintenance", "default")
JOB_QUEUES = {"evidence.process": "evidence"}


def queue_for_job(kind: str) -> str:
    """The queue a durable job of ``kind`` is sent to."""
    return JOB_QUEUES.get(kind, "default")


def parse_queues(text: str) -> list[str]:
    """``"evidence,money"`` as a list of known queue names (ValueError naming an unknown one); empty: all."""
    names = [q.strip() for q in text.split(",") if q.strip()] or list(QUEUES)
    unknown = [q for q in names if q not in QUEUES]
    if unknown:
        raise ValueError(f"unknown queue {', '.join(unknown)}; the queues are {', '.join(QUEUES)}")
    return list(dict.fromkeys(names))


def parse_groups(text: str) -> list[list[str]]:
    """``"evidence;money,maintenance,default"``: one worker per group; every queue must be in some group, or its
    work would wait forever. Empty: one group of all queues."""
    groups = [parse_queues(g) for g in text.split(";") if g.strip()] or [list(QUEUES)]
    missing = [q for q in QUEUES if not any(q in g for g in groups)]
    if missing:
        raise ValueError(f"no worker would consume {', '.join(missing)}; add it to a group")
    return groups
