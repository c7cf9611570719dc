"""`make run`: start the API, a Celery worker and beat; print the URLs; Ctrl-C stops them all."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx

from core.config import get_settings


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "api.cli", *args])


def _wait_healthy(url: str, procs: list[subprocess.Popen], timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def main() -> int:
    """Run until interrupted; exit non-zero if a child dies."""
    s = get_settings()
    base = f"http://{s.api_host}:{s.api_port}"
    procs = [_start(["serve"]), _start(["worker"]), _start(["beat"])]
    stop = {"now": False}
    # Installed explicitly: a shell that starts us in the background leaves SIGINT ignored.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.update(now=True))
    try:
        if not _wait_healthy(base + "/healthz", procs):
            print("the API did not become healthy; see the logs above", file=sys.stderr)
            return 1
        print(f"\nFieldproof is up.\n  API      {base}/v1\n  health   {base}/healthz\n"
              f"  docs     {base}/docs\n  openapi  {base}/openapi.json\n  metrics  {base}/metrics\n"
              "  demo logins (password 'fieldproof-demo'): ops_demo, merchant_demo, worker_demo\n"
              "Ctrl-C stops everything.\n", flush=True)
        while not stop["now"] and all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping the API, worker and beat ...", file=sys.stderr, flush=True)
        for p in procs:
            if p.poll() is None:
                p.terminate()  # SIGTERM: uvicorn and Celery shut down gracefully on it
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
