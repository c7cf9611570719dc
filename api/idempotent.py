"""Runs a write inside one unit of work that also stores its response under the Idempotency-Key."""
from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from api.deps import DbSession, SessionFactory
from accounts import service as accounts
from core import idempotency
from core.flow import Batch, Flow, Stmt, together
from core.db import UnitOfWork

ANONYMOUS = 0


class Idempotent:
    """Per-request helper: ``run(user_id, fn)`` executes ``fn(session)`` at most once per key."""

    def __init__(self, *, route: str, key: str | None, digest: str, session: Session | None,
                 factory: Callable[[], Session] | None = None) -> None:
        self.route, self.key, self.digest, self.session, self.factory = route, key, digest, session, factory
        # The request's digest as an earlier release computed it, asked only on a mismatch (core.idempotency).
        self.earlier_digest: Callable[[], str] | None = None

    def for_anonymous(self, name: str) -> "Idempotent":
        """Scope the keys of a request made without an account by a name in its body (registration: the username
        asked for), so unrelated clients' keys never meet: all of them are user 0."""
        self.route = f"{self.route} as {hashlib.sha256(name.encode()).hexdigest()[:32]}"
        return self

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
                                             digest=self.digest, earlier=self.earlier_digest)
                if stored is not None:
                    return JSONResponse(stored.body, status_code=stored.status_code,
                                        headers={"Idempotent-Replayed": "true"})
            body = _encode(fn(uow.session))
            if self.key:
                idempotency.store(uow.session, user_id=uid, route=self.route, key=self.key, digest=self.digest,
                                  status_code=status_code, body=body)
            uow.commit()
        return JSONResponse(body, status_code=status_code)

    async def run_flow(self, runner: Callable[[Flow[Any]], Awaitable[Any]], access: tuple[int, str | None],
                       role: str, inner: Flow[Any], respond: Callable[[Any], Any], *,
                       status_code: int = 200) -> JSONResponse:
        """``run`` for a pipelined flow (core.flow): authentication, the key's lock and read, and the flow's first
        batch travel in one round trip; the stored response in the same round trip as the flow's writes.
        ``respond`` turns the flow's result into the response body."""
        out = await runner(self._flow(access, role, inner, respond, status_code))
        if isinstance(out, idempotency.StoredResponse):
            return JSONResponse(out.body, status_code=out.status_code, headers={"Idempotent-Replayed": "true"})
        return JSONResponse(out, status_code=status_code)

    def _flow(self, access: tuple[int, str | None], role: str, inner: Flow[Any], respond: Callable[[Any], Any],
              status_code: int) -> Flow[Any]:
        """The request's flow around ``inner``: the same checks in the same order as ``run`` with the
        dependencies (user active, role, then the key, then the work). Returns the body, or the StoredResponse to
        replay. The checks ride with the flow's first batch when that batch only reads."""
        uid, login_id = access
        head = [accounts.authenticate_stmt(uid, login_id)]
        if self.key:
            head += idempotency.acquire_stmts(user_id=uid, route=self.route, key=self.key)
        try:
            try:
                batch, refusal = next(inner), None
            except StopIteration:
                raise RuntimeError("a flow sends at least one batch") from None
            except Exception as exc:  # the flow refused its input: who is asking is still checked first
                batch, refusal = Batch([]), exc
            lead = head
            if refusal is not None or batch.final or any(s.writes for s in batch.stmts):
                # Nothing that writes may run before the key says this request is not a replay.
                if (stored := self._admit((yield Batch(_packed(head, []))), role)) is not None:
                    return stored
                if refusal is not None:
                    raise refusal
                lead = []
            stored_body = None
            while True:
                extra = []
                if batch.final:  # the body is built before the batch is sent: a COMMIT may ride in it
                    stored_body = _encode(respond(batch.result))
                    if self.key:
                        extra = [self._store(uid, status_code, stored_body)]
                got = yield Batch([*_packed(lead, batch.stmts), *extra], final=batch.final and not lead,
                                  commit=batch.commit and not lead, result=stored_body)
                if lead:
                    if (stored := self._admit(got[:len(lead)], role)) is not None:
                        return stored
                    got, lead = got[len(lead):], []
                try:
                    batch = inner.send(got[:len(batch.stmts)])
                except StopIteration as stop:
                    result = stop.value
                    break
            if stored_body is not None:
                return stored_body
            body = _encode(respond(result))
            if self.key:
                yield Batch([self._store(uid, status_code, body)])
            return body
        finally:
            inner.close()

    def _admit(self, rows: list, role: str) -> idempotency.StoredResponse | None:
        """From the rows of the head statements: refuse an inactive or wrong-role caller, then the key's answer."""
        accounts.authenticated(rows[0], role)
        return idempotency.acquired(rows[1], rows[2], self.digest) if self.key else None

    def _store(self, uid: int, status_code: int, body: Any):
        return idempotency.store_stmt(user_id=uid, route=self.route, key=self.key, digest=self.digest,
                                      status_code=status_code, body=body)


def _packed(head: list[Stmt], stmts) -> list[Stmt]:
    """``[*head, *stmts]`` in fewer statements (the rows come back as if each had run alone): the user with the
    key's lock, then the key's stored response with the flow's first statement when that is a one-row read. The
    read stays a later statement than the lock, so it sees what committed before the lock was granted."""
    if not head:
        return list(stmts)
    sent, rest = ([together(*head[:2])], head[2:]) if len(head) == 3 else ([], head)
    if stmts and stmts[0].one_row and not stmts[0].writes:
        return [*sent, together(*rest, stmts[0]), *stmts[1:]]
    return [*sent, *rest, *stmts]


def _encode(result: Any) -> Any:
    """The JSON form of a result; a response model serialises itself (faster than the generic encoder)."""
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json", by_alias=True)
    return jsonable_encoder(result)


async def _digest(request: Request) -> str:
    """Hash of the request body; for multipart, of its fields and its files' SHA-256 (``form_digest``: the stream
    is parsed once; files are read in chunks, never whole). api.uploads computes the same digest for streamed
    forms from the hash it took as the file arrived."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return idempotency.body_hash(await request.body())
    parts: list[tuple[str, bytes | str]] = []
    for name, value in (await request.form()).multi_items():
        if isinstance(value, str):
            parts.append((name, value.encode()))
        else:
            h = hashlib.sha256()
            while chunk := await value.read(256 * 1024):
                h.update(chunk)
            await value.seek(0)
            parts.append((name, h.hexdigest()))
    return form_digest(parts)


def form_digest(parts: list[tuple[str, bytes | str]]) -> str:
    """A multipart form's digest: its parts sorted by name, a text field by its bytes, a file (given as a str)
    by its SHA-256, so a streamed upload's digest needs no second read of the file."""
    h = hashlib.sha256()
    for name, value in sorted(parts, key=lambda kv: kv[0]):
        h.update(name.encode() + b"\0")
        h.update(value if isinstance(value, bytes) else b"file sha256 " + value.encode())
        h.update(b"\0")
    return h.hexdigest()


def route_of(request: Request) -> str:
    """The scope of a request's keys: its method, route and path parameters as the route reads them (an id is a
    number: ``/claims/0123`` is claim 123, as ``/claims/123`` is; other spellings of a number are refused at the
    edge: api.deps.Id), so a key cannot be replayed past its first result by spelling the path another way, and a
    long spelling cannot outgrow the stored scope. The same string the raw path gave for canonical paths, so
    records stored before stay found."""
    route = request.scope.get("route")
    template = getattr(route, "path_format", None)
    if template is None:
        return f"{request.method} {request.url.path}"
    params = {k: (v.lstrip("0") or "0") if isinstance(v, str) and v.isascii() and v.isdigit() else v
              for k, v in request.path_params.items()}  # no int(): a 5,000-digit id must not raise here
    try:
        return f"{request.method} {template.format(**params)}"
    except (KeyError, IndexError, ValueError):  # parameters the route's template does not name as read
        return f"{request.method} {request.url.path}"


async def keyed(request: Request, key: str | None, session: Session | None, *,
                body: bytes | None = None) -> Idempotent:
    """The request's Idempotent for ``key`` (checked); ``body``: the raw body, when the caller has read it."""
    key = idempotency.check_key(key) if key is not None else None
    digest = (idempotency.body_hash(body) if body is not None else await _digest(request)) if key else ""
    return Idempotent(route=route_of(request), key=key, digest=digest, session=session)


async def idempotent(request: Request, db_session: DbSession,
                     idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None) -> Idempotent:
    """Dependency: reads the key and hashes the raw body (multipart included)."""
    return await keyed(request, idempotency_key, db_session)


async def idempotent_flow(request: Request,
                          idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None
                          ) -> Idempotent:
    """Dependency for routes whose write is a pipelined flow (``Idempotent.run_flow``): no session."""
    return await keyed(request, idempotency_key, None)


IdempotentFlowRun = Annotated[Idempotent, Depends(idempotent_flow)]
IdempotentRun = Annotated[Idempotent, Depends(idempotent)]


async def idempotent_streamed(request: Request, factory: SessionFactory,
                              idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None
                              ) -> Idempotent:
    """Dependency for routes that stream their body: reads the key only; the route sets ``digest`` once it
    has received the body (api.uploads.ReceivedForm.digest), before calling ``run``. No session is opened
    until then: a slow phone's upload holds no database connection while its body arrives."""
    key = idempotency.check_key(idempotency_key) if idempotency_key is not None else None
    return Idempotent(route=route_of(request), key=key, digest="", session=None,
                      factory=factory)


IdempotentStreamedRun = Annotated[Idempotent, Depends(idempotent_streamed)]
