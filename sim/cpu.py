"""CPU seconds used by the service processes of a run, read from /proc (Linux; no psutil dependency).

A process tree's CPU is its root's utime+stime+cutime+cstime (cutime/cstime hold children it has already
reaped, e.g. a recycled Celery pool process) plus the same four of every live descendant (uvicorn's worker
processes, Celery's pool). PostgreSQL's backends come and go with connections; the postmaster reaps them, so
the same sum over the postmaster's tree counts the whole cluster: exact for the project-local cluster when
nothing else uses it during the window, which is how the simulator and `make bench` run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from core import localservices

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, list[str]] | None:
    """(ppid, fields after the command name) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = raw[raw.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    return int(rest[1]), rest


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st:
                kids.setdefault(st[0], []).append(int(entry))
    return kids


def tree_cpu_s(root: int, kids: dict[int, list[int]] | None = None) -> float:
    """CPU seconds (user + system) of ``root``, its reaped children and its live descendants; 0 if gone."""
    kids = _children() if kids is None else kids
    st = _stat(root)
    if st is None:
        return 0.0
    f = st[1]  # after "(comm)": state ppid ... utime=f[11] stime=f[12] cutime=f[13] cstime=f[14]
    total = sum(int(x) for x in f[11:15])
    stack = list(kids.get(root, []))
    while stack:
        pid = stack.pop()
        child = _stat(pid)
        if child:  # its own reaped children (cutime/cstime) too: they are no longer live
            total += sum(int(x) for x in child[1][11:15])
        stack.extend(kids.get(pid, []))
    return total / _TICK


def local_server_pids() -> dict[str, int]:
    """PIDs of the project-local PostgreSQL postmaster and Redis, when they run here (else empty)."""

    if localservices.external():
        return {}
    svc = localservices.LocalServices.from_settings()
    out = {}
    for name, pidfile in (("postgres", svc.pg_dir / "postmaster.pid"), ("redis", svc.redis_dir / "redis.pid")):
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if _stat(pid):
            out[name] = pid
    return out


@dataclass
class CpuMeter:
    """CPU seconds per named process tree between ``start()`` and ``stop()``."""

    pids: dict[str, int]
    before: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)

    def _read(self) -> dict[str, float]:
        kids = _children()
        return {name: tree_cpu_s(pid, kids) for name, pid in self.pids.items()}

    def start(self) -> "CpuMeter":
        self.before = self._read()
        return self

    def stop(self) -> dict[str, float]:
        """CPU seconds used per tree since start()."""
        after = self._read()
        self.used = {name: round(max(0.0, after[name] - self.before.get(name, 0.0)), 2) for name in self.pids}
        return self.used
