"""Today's API and the API before issue 17, for bench.bench_presence; PostgreSQL's plan cache mode pinned.

``before_issue_17()`` builds today's measure and insert statements stripped of the radio reads and columns (the
in-process bench swaps them in per call). ``uvicorn bench.presence_app:app`` serves today's API and
``bench.presence_app:pre17`` the one with those statements and no capture nonce in the response (PEP 562
``__getattr__``: importing this module patches nothing). Both pin ``plan_cache_mode`` to
FIELDPROOF_BENCH_PLAN_CACHE_MODE on every connection: under the default (auto) PostgreSQL picks a generic plan or
a custom plan per call for each prepared statement from its first executions, milliseconds apart per check-in,
which would otherwise land on one variant and not the other by chance.
"""
from __future__ import annotations

import os
import re

from sqlalchemy import Engine, TextClause, event, text

from checkin import service

PLAN_CACHE_MODE_ENV = "FIELDPROOF_BENCH_PLAN_CACHE_MODE"


def before_issue_17() -> tuple[TextClause, TextClause]:
    """Today's measure and insert statements without what issue 17 added (the site's radio row and its overlap
    with the scan, pins, the radio columns); fails loudly if they no longer read as expected."""
    radio = re.compile(r"CASE WHEN cardinality\(CAST\(:radio AS bigint\[\]\)\) > 0 THEN.*?AS radio_pin_shared", re.S)
    m, k1 = radio.subn("NULL AS radio_site, 0 AS radio_pins, false AS radio_pin_shared", service._MEASURE.text)
    # The stripped span must hold the radio columns only: the baseline would otherwise lose more than the radio reads.
    cut = radio.search(service._MEASURE.text)
    aliases = re.findall(r"\bAS (\w+)\s*(?:,|$)", cut[0]) if cut else []
    i, k3 = re.subn(r",\s*radio, radio_learned\)", ")", service._INSERT.text)
    i, k4 = re.subn(r",\s*CAST\(:radio AS bigint\[\]\), :radio_learned\)", ")", i)
    if ((k1, k3, k4) != (1, 1, 1) or aliases != ["radio_site", "radio_pins", "radio_pin_shared"]
            or "radio" in m.replace("AS radio_", "") or "radio" in i):
        raise RuntimeError("checkin.service's statements changed: update bench/presence_app.py")
    return text(m), text(i)


MODES = ("auto", "force_custom_plan", "force_generic_plan")


def pin_plan_cache_mode(engine: Engine, mode) -> None:
    """Every new connection of ``engine`` sets plan_cache_mode to ``mode()`` (None: the server's default)."""

    @event.listens_for(engine, "connect")
    def _pin(dbapi_conn, _record) -> None:
        m = mode()
        if m:
            if m not in MODES:
                raise ValueError(f"plan_cache_mode {m!r}")
            with dbapi_conn.cursor() as cur:
                cur.execute(f"SET plan_cache_mode = {m}")  # one of MODES
            dbapi_conn.commit()


def __getattr__(name: str):
    if name not in ("app", "pre17"):
        raise AttributeError(name)
    # lazy: "pre17" swaps checkin.service's statements before the app is built, and uvicorn asks for it by name
    from api.app import app
    from core.db import get_engine

    if name == "pre17":
        service._MEASURE, service._INSERT = before_issue_17()
        service.capture_nonce = lambda row: None  # the router builds the response without one
    pin_plan_cache_mode(get_engine(), lambda: os.environ.get(PLAN_CACHE_MODE_ENV))
    globals()[name] = app  # set up once: uvicorn looks the app up more than once
    return app
