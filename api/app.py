"""The FastAPI application."""
from __future__ import annotations

from fastapi import FastAPI

from api import errors, openapi
from api.hooks import register_domain_hooks
from api.middleware import EdgeMiddleware
from api.routers import acceptance, auth, claims, evidence, health, money, ops, pages, tasks, users
from core import jobs
from core.logging import configure_logging
from workers.tasks import enqueue_job

ROUTERS = [health.router, auth.router, users.router, tasks.router, claims.router, evidence.router,
           acceptance.router, money.router, ops.router, pages.router]


def create_app() -> FastAPI:
    """Build the app with its routers, error table and middleware."""
    configure_logging()
    app = FastAPI(title="Fieldproof", version="0.1.0", openapi_url="/openapi.json",
                  description="Verified offline field work: geofenced check-ins, photo evidence, escrow payouts.")
    errors.register(app)
    openapi.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(EdgeMiddleware)
    register_domain_hooks()
    jobs.set_dispatcher(enqueue_job)
    return app


app = create_app()
