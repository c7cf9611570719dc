"""The FastAPI application."""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from api import errors, openapi
from api.hooks import register_domain_hooks
from api.middleware import EdgeMiddleware
from api.phone_writes import PhoneWrites
from api.routers import acceptance, auth, claims, evidence, health, money, ops, pages, tasks, users
from core import heap, jobs
from core.config import get_settings
from core.db import open_flow_pool
from core.logging import configure_logging
from evidence import service as evidence_service
from evidence.storage import get_store
from workers.tasks import enqueue_job

ROUTERS = [health.router, auth.router, users.router, tasks.router, claims.router, evidence.router,
           acceptance.router, money.router, ops.router, pages.router, pages.docs_router]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Size the handler threads, bound the requests holding a database session (api.deps.get_db), remove
    uploads a crashed predecessor on this host left half-received, and open the write path's async pool."""
    settings = get_settings()
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
    app.state.db_sessions = anyio.CapacityLimiter(settings.db_pool_size)
    await anyio.to_thread.run_sync(evidence_service.sweep_local_spool)
    # Built here, not on the event loop by the first upload (the S3 backend imports boto3 and builds a client).
    await anyio.to_thread.run_sync(get_store)
    app.state.flow_pool = await open_flow_pool()  # the check-in's async write path (api.deps.get_flow_runner)
    heap.freeze_startup()  # what starting built lives as long as the process: out of the collector's way
    try:
        yield
    finally:
        await app.state.flow_pool.close()


def create_app() -> FastAPI:
    """Build the app with its routers, error table and middleware."""
    configure_logging()
    app = FastAPI(title="Fieldproof", lifespan=lifespan, version="0.1.0", openapi_url="/openapi.json",
                  docs_url=None, redoc_url=None,  # served from local assets by api.routers.pages (no CDN)
                  description="Verified offline field work: geofenced check-ins, photo evidence, escrow payouts.")
    errors.register(app)
    openapi.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(EdgeMiddleware)
    if get_settings().phone_fast_path:
        # Inside the exception handlers, before FastAPI's routing: the two phone writes' lean path (api.phone_writes).
        app.router.middleware_stack = PhoneWrites(app.router.middleware_stack, app)
    register_domain_hooks()
    jobs.set_dispatcher(enqueue_job)
    return app


app = create_app()
