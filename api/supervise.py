"""`make run`: start PostgreSQL and Redis (if not already running), migrate, load the demo, then the API, a
Celery worker and beat; print the URLs. Ctrl-C stops all of it, the servers included unless they were
running before. A taken API port is reported and the exit code is non-zero."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx

from core import localservices
from core.config import get_settings
from workers.queues import parse_groups


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "api.cli", *args])


def _fieldproof(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "api.cli", *args], check=True)


def worker_commands(groups_text: str) -> list[list[str]]:
    """The `fieldproof worker` command lines: one per queue group of FIELDPROOF_WORKER_QUEUE_GROUPS, or one
    consuming every queue when it is empty."""
    if not groups_text.strip():
        return [["worker"]]
    return [["worker", "--queues", ",".join(group)] for group in parse_groups(groups_text)]


def port_free(host: str, port: int) -> bool:
    """Whether we could bind the API's address (SO_REUSEADDR, as uvicorn does)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


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


def start_services(started: list[str]) -> None:
    """Start the project-local servers, appending to ``started`` each one this call started (as it comes up,
    so a failure half-way still leaves a record of what to stop)."""
    if localservices.external():
        return
    svc = localservices.LocalServices.from_settings()
    svc.ensure_installed()
    pg_was_running = svc.pg_running()
    svc.pg_up()  # also creates missing databases and restarts an older, non-durable setup
    if not pg_was_running:
        started.append("postgresql")
    if not svc.redis_running():
        svc.redis_up()
        started.append("redis")


def stop_services(started: list[str]) -> None:
    """Stop the servers this run started."""
    svc = localservices.LocalServices.from_settings()
    if "redis" in started:
        svc.redis_down()
    if "postgresql" in started:
        svc.pg_down()


def _stop(procs: list[subprocess.Popen]) -> None:
    print("stopping the API, workers and beat ...", file=sys.stderr, flush=True)
    for p in procs:
        if p.poll() is None:
            p.terminate()  # SIGTERM: uvicorn and Celery shut down gracefully on it
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()


def main() -> int:
    """Run until interrupted; non-zero if the port is taken, a step fails or a child dies."""
    s = get_settings()
    base = f"http://{s.api_host}:{s.api_port}"
    try:
        workers = worker_commands(s.worker_queue_groups)
    except ValueError as exc:
        print(f"FIELDPROOF_WORKER_QUEUE_GROUPS: {exc}", file=sys.stderr)
        return 2
    if not port_free(s.api_host, s.api_port):
        print(f"port {s.api_port} on {s.api_host} is already in use (another Fieldproof or another server?); "
              "stop it or set FIELDPROOF_API_PORT", file=sys.stderr)
        return 2
    stop = {"now": False}
    # Installed explicitly: a shell that starts us in the background leaves SIGINT ignored.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.update(now=True))
    started: list[str] = []
    procs: list[subprocess.Popen] = []
    code = 0
    try:
        start_services(started)
        _fieldproof("migrate")
        _fieldproof("demo")
        procs = [_start(["serve"]), *(_start(cmd) for cmd in workers), _start(["beat"])]
        if not _wait_healthy(base + "/healthz", procs[:1]) or procs[0].poll() is not None:
            print("the API did not become healthy; see the logs above", file=sys.stderr)
            return 1
        print(f"\nFieldproof is up.\n  API      {base}/v1\n  health   {base}/healthz\n"
              f"  docs     {base}/docs\n  openapi  {base}/openapi.json\n  metrics  {base}/metrics\n"
              "  demo logins (password 'fieldproof-demo'): ops_demo, merchant_demo, worker_demo\n"
              "Ctrl-C stops everything.\n", flush=True)
        while not stop["now"] and all(p.poll() is None for p in procs):
            time.sleep(0.5)
        if not stop["now"]:
            print("a process exited unexpectedly; stopping the rest", file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        pass
    except (subprocess.CalledProcessError, SystemExit) as exc:
        print(f"starting failed: {exc}", file=sys.stderr)
        code = 1
    finally:
        _stop(procs)
        if started:
            print(f"stopping {' and '.join(started)} (started by this run) ...", file=sys.stderr, flush=True)
            stop_services(started)
    return code


if __name__ == "__main__":
    sys.exit(main())
