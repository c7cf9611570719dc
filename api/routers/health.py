"""Liveness/readiness and metrics."""
from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from accounts import service as accounts
from api.deps import DbSession, oauth2_scheme
from core.config import get_settings
from core.errors import Unauthenticated
from core.health import check_all
from core.reasons import REASONS

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> JSONResponse:
    """'ok' when PostgreSQL/PostGIS and Redis answer; 503 naming what failed otherwise (the read replica's lag is
    reported, and its failure does not count: reads fall back to the primary)."""
    checks = check_all()
    ok = all(c["ok"] or c.get("optional") for c in checks.values())
    return JSONResponse({"status": "ok" if ok else "degraded", "checks": checks}, status_code=200 if ok else 503)


def _metrics_reader(db_session: DbSession, token: Annotated[str | None, Depends(oauth2_scheme)]) -> None:
    """The configured scrape token, or an ops access token."""
    configured = get_settings().metrics_token
    if token and configured and hmac.compare_digest(token.encode(), configured.encode()):
        return
    if not token:
        raise Unauthenticated("Metrics need the scrape token or an ops token.", code="unauthenticated")
    accounts.require_role(accounts.authenticate(db_session=db_session, access_token=token), "ops")


@router.get("/metrics", dependencies=[Depends(_metrics_reader)], response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
def metrics() -> Response:
    """Prometheus metrics (scrape token or ops only)."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/reasons")
def reasons() -> dict:
    """Every reason code with its severity and plain words in Chinese and English (public; the pages use it)."""
    return {"reasons": [{"code": r.code, "severity": r.severity, "zh": r.zh, "en": r.en} for r in REASONS.values()]}
