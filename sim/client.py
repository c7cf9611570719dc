"""The simulator's HTTP side: one pooled httpx client, per-user sessions, phone-like retries, and counts."""
from __future__ import annotations

import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

_ID = re.compile(r"/\d+(?=/|$)")
KEEPALIVE_S = 4.0  # below the API's keep-alive timeout (uvicorn's default, 5 s): see Api


def route_of(method: str, path: str) -> str:
    """'POST /v1/claims/{id}/checkins' for 'POST /v1/claims/42/checkins?x=1'."""
    return f"{method} {_ID.sub('/{id}', path.split('?', 1)[0])}"


@dataclass
class Stats:
    """Requests per route and status, thread-safe; the 5xx ones are kept for the report."""

    by_route: Counter = field(default_factory=Counter)
    by_status: Counter = field(default_factory=Counter)
    errors_5xx: list = field(default_factory=list)
    transport_errors: int = 0
    transport_error_samples: list = field(default_factory=list)  # the first few, for the report
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, route: str, status: int, body: str) -> None:
        with self._lock:
            self.by_route[route] += 1
            self.by_status[status] += 1
            if status >= 500:
                self.errors_5xx.append({"route": route, "status": status, "body": body[:300]})

    def transport_error(self, route: str, exc: Exception) -> None:
        with self._lock:
            self.transport_errors += 1
            if len(self.transport_error_samples) < 5:
                self.transport_error_samples.append({"route": route, "error": f"{type(exc).__name__}: {exc}"[:300]})

    @property
    def total(self) -> int:
        return sum(self.by_route.values())


class ApiError(Exception):
    """A 4xx the caller decided not to handle."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        try:
            self.code = response.json().get("code")
        except ValueError:
            self.code = None
        super().__init__(f"{response.request.method} {response.request.url.path}: {response.status_code} "
                         f"{response.text[:200]}")


class Api:
    """Shared connection pool plus counters."""

    def __init__(self, base_url: str, max_connections: int = 48) -> None:
        # An idle pooled connection is dropped after KEEPALIVE_S, before the server's keep-alive timeout closes it
        # (uvicorn: 5 s, httpx's own default too): at equal timeouts a request sent on a connection the server is
        # closing at that instant fails in transport (retried, same key) — a race of the two pools, which a phone's
        # HTTP stack retries unseen on a stale connection; it counted as an error in `make bench`'s simulated day.
        self.http = httpx.Client(base_url=base_url, timeout=httpx.Timeout(120.0, connect=10.0),
                                 limits=httpx.Limits(max_connections=max_connections,
                                                     max_keepalive_connections=max_connections,
                                                     keepalive_expiry=KEEPALIVE_S))
        self.stats = Stats()

    def close(self) -> None:
        self.http.close()


class Session:
    """One user's phone or browser: credentials, tokens, its public IP; retries like a phone."""

    def __init__(self, api: Api, username: str, password: str, ip: str) -> None:
        self.api, self.username, self.password, self.ip = api, username, password, ip
        self.access: str | None = None
        self.refresh_token: str | None = None
        self.user_id: int | None = None

    def call(self, method: str, path: str, *, ok=(200, 201), auth: bool = True, **kw) -> httpx.Response:
        """Send with retries (same Idempotency-Key) on transport errors, 429 and an expired token."""
        headers = {"X-Forwarded-For": self.ip, **kw.pop("headers", {})}
        if method == "POST":
            headers.setdefault("Idempotency-Key", uuid.uuid4().hex)
        for attempt in range(6):
            if auth:
                headers["Authorization"] = f"Bearer {self.access}"
            try:
                r = self.api.http.request(method, path, headers=headers, **kw)
            except httpx.TransportError as exc:
                self.api.stats.transport_error(route_of(method, path), exc)
                time.sleep(0.5 * (attempt + 1))
                continue
            self.api.stats.record(route_of(method, path), r.status_code, r.text if r.status_code >= 500 else "")
            if r.status_code == 401 and auth and attempt < 5:
                self.refresh()
                continue
            if r.status_code in (409, 429) and _retryable(r) and attempt < 5:
                time.sleep(0.3 * (attempt + 1))
                continue
            if r.status_code in ok:
                return r
            raise ApiError(r)
        raise ApiError(r)

    def login(self) -> None:
        """Password login (argon2 on the server)."""
        r = self.call("POST", "/v1/auth/token", auth=False,
                      data={"username": self.username, "password": self.password})
        self._tokens(r.json())

    def refresh(self) -> None:
        """Rotate the refresh token; fall back to a password login."""
        if self.refresh_token:
            r = self.api.http.post("/v1/auth/refresh", json={"refresh_token": self.refresh_token},
                                   headers={"X-Forwarded-For": self.ip})
            self.api.stats.record("POST /v1/auth/refresh", r.status_code, r.text if r.status_code >= 500 else "")
            if r.status_code == 200:
                self._tokens(r.json())
                return
        self.login()

    def _tokens(self, body: dict) -> None:
        self.access, self.refresh_token = body["access_token"], body.get("refresh_token")


def _retryable(r: httpx.Response) -> bool:
    try:
        code = r.json().get("code")
    except ValueError:
        return False
    return r.status_code == 429 or code == "idempotency_in_flight"
