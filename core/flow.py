"""Pipelined units of work: a write decided in a few round trips, the same code on sync and async connections.

A *flow* is a generator. It yields a batch of statements (``list[Stmt]``), receives every statement's rows, decides
in Python, and yields the next batch; its return value is its result. A driver sends each batch in psycopg's
pipeline mode, so a batch is one network round trip however many statements it holds, and PostgreSQL runs them in
order, each with its own snapshot (a read after a lock in the same batch sees what committed before the lock).

Two drivers run the same flow: ``run`` on a sync psycopg connection (a SQLAlchemy session's, inside its
transaction: services called in-process, tests) and ``run_async`` on an async one (the API's write path, no thread
hop). Neither commits: the caller owns the transaction (``run_in_transaction`` below commits or rolls back).

A batch may be marked ``final`` with the flow's result: the flow promises to return that result if the batch
succeeds. A wrapper (core.idempotency) can then store the response in the same round trip as the write it
describes.
"""
from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Generic, TypeVar

import psycopg
from psycopg.rows import namedtuple_row, tuple_row
from sqlalchemy.dialects.postgresql import psycopg as sa_psycopg
from sqlalchemy.sql.elements import TextClause

T = TypeVar("T")
Rows = list[Any]


@dataclass(frozen=True)
class Stmt:
    """One statement in psycopg's ``%(name)s`` style, with its parameters."""

    sql: str
    params: Mapping[str, Any] = field(default_factory=dict)
    writes: bool = False  # changes rows: after it ran, an error must roll the transaction back
    one_row: bool = False  # returns at most one row: may be sent ``together`` with others
    parts: int = 0  # made by ``together``: its row holds this many statements' rows


@dataclass(frozen=True)
class Batch(Generic[T]):
    """Statements sent in one round trip; ``final`` batches carry the result the flow returns if they succeed."""

    stmts: Sequence[Stmt]
    final: bool = False
    result: T | None = None


Flow = Generator[Batch, list[Rows], T]

_PART = "_fp_part"  # marks where each statement's columns begin in a ``together`` row
_PLACEHOLDER = re.compile(r"(?<!%)%\((\w+)\)s")


def together(*stmts: Stmt) -> Stmt:
    """Read-only statements of at most one row each as one statement (one execution, one plan, one message in
    the pipeline instead of several); the drivers hand back each statement's rows as if it had run alone. They
    share one snapshot: a read that must see what a lock let through goes in a later statement, never here."""
    if any(s.writes or not s.one_row for s in stmts):
        raise ValueError("together() takes read-only statements of at most one row")
    joins, params = [], {}
    for i, stmt in enumerate(stmts):
        joins.append(f"LEFT JOIN LATERAL (SELECT true AS {_PART}, _s{i}.* FROM ("
                     + _PLACEHOLDER.sub(lambda m, i=i: f"%(_{i}_{m.group(1)})s", stmt.sql)
                     + f") AS _s{i}) AS _t{i} ON true")
        params.update({f"_{i}_{k}": v for k, v in stmt.params.items()})
    cols = ", ".join(f"_t{i}.*" for i in range(len(stmts)))
    return Stmt(f"SELECT {cols} FROM (SELECT) AS _one " + " ".join(joins), params, one_row=True, parts=len(stmts))


@lru_cache(maxsize=256)
def _row_type(names: tuple[str, ...]):
    return namedtuple("Row", names, rename=True)  # rows as psycopg's namedtuple_row makes them


def _split(description, rows: list[tuple]) -> list[Rows]:
    """A ``together`` statement's one row as its statements' rows (a part whose marker is null had none)."""
    if len(rows) != 1:
        raise psycopg.ProgrammingError(f"together() returned {len(rows)} rows: a statement gave more than one")
    names = [c.name for c in description]
    starts = [i for i, n in enumerate(names) if n == _PART] + [len(names)]
    out: list[Rows] = []
    for a, b in zip(starts, starts[1:]):
        values = rows[0][a + 1:b]
        out.append([] if rows[0][a] is None else [_row_type(tuple(names[a + 1:b]))(*values)])
    return out


def _rows(cur, stmt: Stmt, fetched: list) -> list[Rows]:
    if stmt.parts:
        return _split(cur.description, fetched)
    return [fetched]


@lru_cache(maxsize=256)
def sql(clause: TextClause) -> str:
    """A SQLAlchemy ``text()`` statement in psycopg's parameter style (``:name`` -> ``%(name)s``, ``%`` escaped):
    one SQL text serves the ORM sessions and the flows."""
    return str(clause.compile(dialect=sa_psycopg.dialect()))


class Outcome(Generic[T]):
    """What a driver ran: the flow's result and whether any writing statement was sent."""

    __slots__ = ("result", "wrote")

    def __init__(self) -> None:
        self.result: T | None = None
        self.wrote = False


def _step(flow: Flow[T], rows: list[Rows] | None, outcome: Outcome[T]) -> Batch | None:
    try:
        batch = flow.send(rows)  # type: ignore[arg-type]  # the first send is None, as next() would be
    except StopIteration as stop:
        outcome.result = stop.value
        return None
    outcome.wrote = outcome.wrote or any(s.writes for s in batch.stmts)
    return batch


def run(conn: psycopg.Connection, flow: Flow[T], outcome: Outcome[T] | None = None) -> T:
    """Run ``flow`` on a sync connection, one pipeline sync per batch; the transaction stays open."""
    outcome = outcome if outcome is not None else Outcome()
    rows: list[Rows] | None = None
    try:
        while (batch := _step(flow, rows, outcome)) is not None:
            with conn.pipeline():
                cursors = [conn.cursor(row_factory=tuple_row if s.parts else namedtuple_row) for s in batch.stmts]
                for cur, stmt in zip(cursors, batch.stmts):
                    cur.execute(stmt.sql, stmt.params)
            rows = [part for cur, stmt in zip(cursors, batch.stmts)
                    for part in _rows(cur, stmt, cur.fetchall() if cur.description is not None else [])]
    finally:
        flow.close()
    return outcome.result  # type: ignore[return-value]


async def run_async(conn: psycopg.AsyncConnection, flow: Flow[T], outcome: Outcome[T] | None = None) -> T:
    """``run`` on an async connection: the event loop is free while PostgreSQL works."""
    outcome = outcome if outcome is not None else Outcome()
    rows: list[Rows] | None = None
    try:
        while (batch := _step(flow, rows, outcome)) is not None:
            async with conn.pipeline():
                cursors = [conn.cursor(row_factory=tuple_row if s.parts else namedtuple_row) for s in batch.stmts]
                for cur, stmt in zip(cursors, batch.stmts):
                    await cur.execute(stmt.sql, stmt.params)
            rows = [part for cur, stmt in zip(cursors, batch.stmts)
                    for part in _rows(cur, stmt, await cur.fetchall() if cur.description is not None else [])]
    finally:
        flow.close()
    return outcome.result  # type: ignore[return-value]


async def run_in_transaction(conn: psycopg.AsyncConnection, flow: Flow[T]) -> T:
    """Run ``flow`` and commit. On an error the transaction ends with a ROLLBACK if anything was written or the
    database refused a statement; a refusal decided before any write (a 4xx of the domain) ends with a COMMIT,
    which changes nothing and keeps the connection's prepared statements (psycopg forgets them on ROLLBACK)."""
    outcome: Outcome[T] = Outcome()
    try:
        result = await run_async(conn, flow, outcome)
    except BaseException as exc:
        clean = (isinstance(exc, Exception) and not isinstance(exc, psycopg.Error) and not outcome.wrote
                 and conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS)
        try:
            await (conn.commit() if clean else conn.rollback())
        except psycopg.Error:
            pass  # the connection is broken: the pool discards it; the original error is what the caller hears
        raise
    await conn.commit()
    return result
