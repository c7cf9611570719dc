"""The baseline for checkin_throughput: what this machine can write through FastAPI.

An async endpoint that parses the JSON body and does one INSERT through an async psycopg pool of 8 connections:
the way a competent engineer would write "store this JSON" for throughput. Autocommit, so the statement is one
round trip (no separate COMMIT), and psycopg prepares it after its first few executions. Run under the same
uvicorn settings as the real app (bench.common.server: 2 worker processes, no access log).
"""
from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from core.db import database_url, libpq_url

POOL_SIZE = 8


@asynccontextmanager
async def lifespan(app: FastAPI):
    pool = AsyncConnectionPool(libpq_url(database_url()), min_size=POOL_SIZE, max_size=POOL_SIZE, open=False,
                               kwargs={"autocommit": True})
    await pool.open(wait=True)  # the bench creates table bench_bare before starting us
    app.state.pool = pool
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@app.post("/bare", status_code=201)
async def bare(body: dict) -> dict:
    """Parse the JSON body and insert it; one statement, one round trip."""
    async with app.state.pool.connection() as conn:
        cur = await conn.execute("INSERT INTO bench_bare (body) VALUES (%s) RETURNING id", (Jsonb(body),))
        row = await cur.fetchone()
    return {"id": row[0]}
