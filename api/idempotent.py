"""Runs a write inside one unit of work that also stores its response under the Idempotency-Key."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from api.deps import DbSession, SessionFactory
from core import idempotency
from core.db import UnitOfWork

ANONYMOUS = 0


class Idempotent:
    """Per-request helper: ``run(user_id, fn)`` executes ``fn(session)`` at most once per key."""

    def __init__(self, *, route: str, key: str | None, digest: str, session: Session | None,
                 factory: Callable[[], Session] | None = None) -> None:
        self.route, self.key, self.digest, self.session, self.factory = route, key, digest, session, factory

    def run(self, user_id: int | None, fn: Callable[[Session], Any], *, status_code: int = 200,
            authenticate: Callable[[Session], Any] | None = None) -> JSONResponse:
        """Run ``fn`` and commit; a replay of the same key and body returns the stored response.

        The unit of work adopts the request's session (the user was read in this same transaction); a route
        without one (a streamed upload) gets its own, and ``authenticate`` runs first in it."""
        uid = user_id or ANONYMOUS
        session = self.session if self.session is not None else self.factory()
        try:
            return self._run(session, uid, fn, status_code, authenticate)
        finally:
            if self.session is None:
                session.close()

    def _run(self, session: Session, uid: int, fn: Callable[[Session], Any], status_code: int,
             authenticate: Callable[[Session], Any] | None) -> JSONResponse:
        with UnitOfWork(session) as uow:
            if authenticate is not None:
                authenticate(uow.session)
            if self.key:
                stored = idempotency.acquire(uow.session, user_id=uid, route=self.route, key=self.key,
                                             digest=self.digest)
                if stored is not None:
                    return JSONResponse(stored.body, status_code=stored.status_code,
                                        headers={"Idempotent-Replayed": "true"})
            body = _encode(fn(uow.session))
            if self.key:
                idempotency.store(uow.session, user_id=uid, route=self.route, key=self.key, digest=self.digest,
                                  status_code=status_code, body=body)
            uow.commit()
        return JSONResponse(body, status_code=status_code)


def _encode(result: Any) -> Any:
    """The JSON form of a result; a response model serialises itself (faster than the generic encoder)."""
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json", by_alias=True)
    return jsonable_encoder(result)


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


async def idempotent(request: Request, db_session: DbSession,
                     idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None) -> Idempotent:
    """Dependency: reads the key and hashes the raw body (multipart included)."""
    key = idempotency.check_key(idempotency_key) if idempotency_key is not None else None
    digest = await _digest(request) if key else ""
    return Idempotent(route=f"{request.method} {request.url.path}", key=key, digest=digest, session=db_session)


IdempotentRun = Annotated[Idempotent, Depends(idempotent)]


async def idempotent_streamed(request: Request, factory: SessionFactory,
                              idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None
                              ) -> Idempotent:
    """Dependency for routes that stream their body: reads the key only; the route sets ``digest`` once it
    has received the body (api.uploads.ReceivedForm.digest), before calling ``run``. No session is opened
    until then: a slow phone's upload holds no database connection while its body arrives."""
    key = idempotency.check_key(idempotency_key) if idempotency_key is not None else None
    return Idempotent(route=f"{request.method} {request.url.path}", key=key, digest="", session=None,
                      factory=factory)


IdempotentStreamedRun = Annotated[Idempotent, Depends(idempotent_streamed)]
