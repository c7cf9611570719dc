"""Drive an HTTP endpoint with wrk (Debian's `wrk`, installed by `make bench`) replaying pre-generated requests.

The load generator is C, so it does not compete with the server for the GIL, and with 2 threads it takes far less
CPU than a Python client would. bench/requests.lua sends each line of the request file once (threads take
disjoint lines), counts non-2xx responses and prints one JSON line from done(); wrk itself gives the latency
percentiles and the socket errors and timeouts.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).resolve().parent / "requests.lua"
THREADS, CONNECTIONS = 2, 64
TIMEOUT_S = 30  # wrk's default (2 s) would turn a slow response into a dropped one; any timeout is an error


@dataclass(frozen=True)
class Req:
    """One HTTP request: method, path, headers, JSON body text."""

    method: str
    path: str
    headers: dict[str, str]
    body: str = ""


@dataclass
class WrkResult:
    """What one wrk run measured."""

    requests: int
    duration_s: float
    non2xx: int
    socket_errors: int
    wrapped: int
    latency_ms: dict[str, float]
    raw: dict

    @property
    def req_per_s(self) -> float:
        return self.requests / self.duration_s

    @property
    def failed(self) -> int:
        """Non-2xx + socket errors + timeouts + replays (a request sent twice is not a fresh one)."""
        return self.non2xx + self.socket_errors + self.wrapped

    def detail(self) -> dict:
        """A JSON-ready summary for a figure's ``detail``."""
        d = {"req_per_s": round(self.req_per_s, 1), "requests": self.requests,
             **{f"{k}_ms": round(v, 1) for k, v in self.latency_ms.items()},
             "non2xx": self.non2xx, "socket_errors": self.raw["errors"], "replayed": self.wrapped}
        if self.raw.get("first_error"):
            d["first_error"] = self.raw["first_error"]
            d["non2xx_by_status"] = self.raw["non2xx_by_status"]
        return d


def _line(r: Req) -> str:
    headers = "\x1f".join(f"{k}: {v}" for k, v in r.headers.items())
    for part in (r.method, r.path, headers, r.body):
        if "\t" in part or "\n" in part:
            raise ValueError("request fields must not hold tabs or newlines")
    return f"{r.method}\t{r.path}\t{headers}\t{r.body}\n"


def available() -> bool:
    return shutil.which("wrk") is not None


def run(base_url: str, reqs: list[Req], duration_s: float, *, threads: int = THREADS,
        connections: int = CONNECTIONS) -> WrkResult:
    """Replay ``reqs`` against ``base_url`` for ``duration_s`` with wrk; raises if wrk is missing or fails."""
    if not available():
        raise RuntimeError("wrk not found: run `make bench` (installs Debian's wrk as root) or apt-get install wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".reqs", delete=False) as fh:
        fh.writelines(_line(r) for r in reqs)
    try:
        proc = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration_s))}s",
                               "--timeout", f"{TIMEOUT_S}s", "-s", str(LUA), base_url, "--", fh.name, str(threads)],
                              capture_output=True, text=True, timeout=duration_s + TIMEOUT_S + 120)
    finally:
        Path(fh.name).unlink(missing_ok=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("WRK_JSON ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr[-500:]} {proc.stdout[-500:]}")
    raw = json.loads(lines[-1].removeprefix("WRK_JSON "))
    errors = raw["errors"]
    return WrkResult(requests=raw["requests"], duration_s=raw["duration_us"] / 1e6, non2xx=raw["non2xx"],
                     socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
                     wrapped=raw["wrapped"], latency_ms={k: v / 1000 for k, v in raw["latency_us"].items()}, raw=raw)
