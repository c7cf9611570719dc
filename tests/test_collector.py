"""core.collector: the API's start-up objects leave the cyclic collector's generations, so a full collection no
longer walks them (it stopped the event loop ~100 ms each time)."""
from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import gc, json
from fastapi.testclient import TestClient
from api.app import create_app
gc.collect()
before = len(gc.get_objects())
with TestClient(create_app()) as client:   # runs the lifespan, as uvicorn does
    assert client.get("/healthz").status_code == 200
    print(json.dumps({"before": before, "frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())}))
"""


def test_the_api_freezes_what_start_up_left_so_full_collections_walk_only_new_objects(test_database):
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["frozen"] >= figures["before"] * 0.9, figures
    assert figures["tracked"] < figures["frozen"] / 10, figures  # what a full collection still walks


def test_freezing_happens_once_per_process():
    script = ("import gc; from core import collector; a = collector.freeze_startup_objects(); "
              "junk = [[i] for i in range(10000)]; b = collector.freeze_startup_objects(); print(a, b)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    a, b = map(int, out.stdout.split())
    assert a > 0 and a == b
