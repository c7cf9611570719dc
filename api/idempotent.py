"""Runs a write inside one unit of work that also stores its response under the Idempotency-Key."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from api.deps import UowFactory
from core import idempotency

ANONYMOUS = 0


class Idempotent:
    """Per-request helper: ``run(user_id, fn)`` executes ``fn(session)`` at most once per key."""

    def __init__(self, *, route: str, key: str | None, digest: str, uow_factory) -> None:
        self.route, self.key, self.digest, self.uow_factory = route, key, digest, uow_factory

    def run(self, user_id: int | None, fn: Callable[[Session], Any], *, status_code: int = 200) -> JSONResponse:
        """Run ``fn`` and commit; a replay of the same key and body returns the stored response."""
        uid = user_id or ANONYMOUS
        with self.uow_factory() as uow:
            if self.key:
                stored = idempotency.acquire(uow.session, user_id=uid, route=self.route, key=self.key,
                                             digest=self.digest)
                if stored is not None:
                    return JSONResponse(stored.body, status_code=stored.status_code,
                                        headers={"Idempotent-Replayed": "true"})
            body = jsonable_encoder(fn(uow.session))
            if self.key:
                idempotency.store(uow.session, user_id=uid, route=self.route, key=self.key, digest=self.digest,
                                  status_code=status_code, body=body)
            uow.commit()
        return JSONResponse(body, status_code=status_code)


async def _digest(request: Request) -> str:
    """Hash of the request body; for multipart, of its fields and file contents (the stream is parsed once;
    files are read in chunks, never whole). api.uploads computes the same digest for streamed forms."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return idempotency.body_hash(await request.body())
    h = hashlib.sha256()
    for name, value in sorted((await request.form()).multi_items(), key=lambda kv: kv[0]):
        h.update(name.encode() + b"\0")
        if isinstance(value, str):
            h.update(value.encode())
        else:
            while chunk := await value.read(256 * 1024):
                h.update(chunk)
            await value.seek(0)
        h.update(b"\0")
    return h.hexdigest()


async def idempotent(request: Request, uow_factory: UowFactory,
                     idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None) -> Idempotent:
    """Dependency: reads the key and hashes the raw body (multipart included)."""
    key = idempotency.check_key(idempotency_key) if idempotency_key is not None else None
    digest = await _digest(request) if key else ""
    return Idempotent(route=f"{request.method} {request.url.path}", key=key, digest=digest, uow_factory=uow_factory)


IdempotentRun = Annotated[Idempotent, Depends(idempotent)]


async def idempotent_streamed(request: Request, uow_factory: UowFactory,
                              idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None
                              ) -> Idempotent:
    """Dependency for routes that stream their body: reads the key only; the route sets ``digest`` once it
    has received the body (api.uploads.ReceivedForm.digest), before calling ``run``."""
    key = idempotency.check_key(idempotency_key) if idempotency_key is not None else None
    return Idempotent(route=f"{request.method} {request.url.path}", key=key, digest="", uow_factory=uow_factory)


IdempotentStreamedRun = Annotated[Idempotent, Depends(idempotent_streamed)]
