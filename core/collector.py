"""Garbage collection in long-running processes (the API's workers, the Celery worker).

A process that has imported the app holds ~200,000 objects the cyclic collector tracks (modules, classes,
pydantic and SQLAlchemy schemas, numpy, shapely); a full collection walks all of them, ~100 ms on the 2-core
machine of the benchmarks, and in the API it stops the event loop for that long: every request in flight waits
(the check-in's p99 at 64 connections). None of those objects ever becomes garbage, so once the process has
started they are moved out of the collector's generations (``gc.freeze``, as Python's documentation suggests for
servers); a full collection then walks only what requests created since.
"""
from __future__ import annotations

import gc


_frozen = False


def freeze_startup_objects() -> int:
    """Collect what start-up left behind, then exempt every object alive now from later collections (once per
    process: an app started again in the same process, as tests do, freezes nothing more); returns how many
    objects are frozen."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()
    return gc.get_freeze_count()
