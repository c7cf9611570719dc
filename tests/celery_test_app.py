"""The production Celery app plus the test-only job handlers (loaded in the worker process)."""
import importlib
import os

from workers.celery_app import app  # noqa: F401

for name in filter(None, os.environ.get("FIELDPROOF_TEST_JOB_HANDLERS", "").split(",")):
    importlib.import_module(name)
