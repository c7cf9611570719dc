"""The baseline for checkin_throughput: a bare endpoint doing one INSERT, same stack and pool."""
from __future__ import annotations

import json

from fastapi import FastAPI
from sqlalchemy import text

from core.db import get_engine

app = FastAPI()


@app.on_event("startup")
def _table() -> None:
    with get_engine().begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS bench_bare (id bigserial PRIMARY KEY, body jsonb NOT NULL, "
                          "created_at timestamptz NOT NULL DEFAULT now())"))


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@app.post("/bare", status_code=201)
def bare(body: dict) -> dict:
    """Parse the JSON body and insert it: a sync handler in the threadpool, like the real endpoints."""
    with get_engine().begin() as conn:
        new_id = conn.execute(text("INSERT INTO bench_bare (body) VALUES (CAST(:b AS jsonb)) RETURNING id"),
                              {"b": json.dumps(body)}).scalar_one()
    return {"id": new_id}
