"""The phone's two busiest writes, check-in and check-out, without FastAPI's per-request machinery.

A check-in's own work is two round trips to PostgreSQL; around it, FastAPI matched the path against every route,
solved six dependencies, and validated the body through its generic field machinery: about a quarter of the API's
CPU for a check-in. ``PhoneWrites`` sits inside the app's exception handling (it wraps the router), takes the
requests it can answer exactly as the routes in api.routers.claims would, and runs the same code the routes run
(``claims.fix_response``). Anything unusual it hands to FastAPI untouched, the body it read replayed: a path id
out of range, no valid bearer token, a body that is not a JSON object of the right shape. So every refusal the
routes document (422 with FastAPI's error list, 401, 413) still comes from FastAPI, and domain refusals raised
here go to the same exception handlers (api.errors). The OpenAPI document still describes the routes.

Off while the app has dependency overrides (tests run the routes in their own transaction through them).
"""
from __future__ import annotations

import json
import re

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import deps
from api.idempotent import Idempotent, keyed
from api.middleware import ACCESS
from api.routers.claims import fix_response
from api.routers.claims import router as claims_router
from checkin.schemas import CheckinCreate
from core.bounds import BIGINT_MAX

PATH = re.compile(r"/v1/claims/([1-9][0-9]{0,18})/(checkins|checkouts)")
KINDS = {"checkins": "in", "checkouts": "out"}


class PhoneWrites:
    """Router middleware (inside ExceptionMiddleware): answers POST /v1/claims/{id}/checkins and /checkouts."""

    def __init__(self, app: ASGIApp, fastapi_app) -> None:
        self.app, self.fastapi_app = app, fastapi_app
        # The routes as declared (api.routers.claims): scope["route"] names them for the request metrics.
        self.routes = {r.path: r for r in claims_router.routes if getattr(r, "path", "") in (
            "/v1/claims/{claim_id}/checkins", "/v1/claims/{claim_id}/checkouts")}
        if len(self.routes) != 2:
            raise RuntimeError("api.routers.claims no longer declares the check-in and check-out routes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or self.fastapi_app.dependency_overrides:
            return await self.app(scope, receive, send)
        match = PATH.fullmatch(scope["path"])
        access = scope.get("state", {}).get(ACCESS)
        headers = Headers(scope=scope)  # read as FastAPI's Header() reads them: first value, any case
        if match is None or not isinstance(access, tuple) or int(match[1]) > BIGINT_MAX or not _json(headers):
            return await self.app(scope, receive, send)
        body, first = await _read(receive)
        if body is None:  # the client went away, or the edge middleware refused the body and answered:
            return await self.app(scope, _then(first, receive), send)  # FastAPI's 400, its route in the metrics
        fix = _parsed(body)
        if fix is None:  # FastAPI answers with its own error list, from the same bytes
            return await self.app(scope, _then(first, receive), send)
        kind = match[2]
        scope["route"] = self.routes[f"/v1/claims/{{claim_id}}/{kind}"]
        scope["path_params"] = {"claim_id": match[1]}  # as the router would set them (the key's scope reads them)
        request = Request(scope, _then(first, receive))
        idem: Idempotent = await keyed(request, headers.get("idempotency-key"), None, body=body)
        response = await fix_response(KINDS[kind], int(match[1]), fix, access, idem,
                                      await deps.get_flow_runner(request), request)
        await response(scope, receive, send)


def _json(headers: Headers) -> bool:
    """A JSON body by its Content-Type (anything else goes to FastAPI, which decides what it accepts)."""
    value = headers.get("content-type")
    return value is not None and value.split(";")[0].strip().lower() == "application/json"


async def _read(receive: Receive) -> tuple[bytes | None, Message]:
    """The whole body (None if it did not arrive) and the one message that gives it to the app again: the body
    whole, or the message that ended it early (a disconnect)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None, message
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            body = b"".join(chunks)
            return body, {"type": "http.request", "body": body, "more_body": False}


def _parsed(body: bytes) -> CheckinCreate | None:
    """The body as the routes' model, validated as FastAPI validates a JSON body; None if it is not one."""
    if not body:
        return None
    try:
        return CheckinCreate.model_validate(json.loads(body))
    except Exception:  # not JSON, nested past the recursion limit, not a fix: FastAPI decides what to answer
        return None


def _then(message: Message, receive: Receive) -> Receive:
    """A receive that gives ``message`` first (the body read already, or what ended it), then whatever the client
    sends next (a disconnect)."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return message

    return again
