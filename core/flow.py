"""Pipelined units of work: a write decided in a few round trips, the same code on sync and async connections.

A *flow* is a generator. It yields a batch of statements (``list[Stmt]``), receives every statement's rows, decides
in Python, and yields the next batch; its return value is its result. A driver sends each batch in libpq's
pipeline mode, so a batch is one network round trip however many statements it holds, and PostgreSQL runs them in
order, each with its own snapshot (a read after a lock in the same batch sees what committed before the lock).

The drivers queue a whole batch (BEGIN first when no transaction is open, a sync last) and send it with one flush,
then read every result up to the sync: psycopg adapts the parameters and loads the rows, its generators do the
waiting, but its cursors are not used. A cursor's ``execute`` in pipeline mode flushes and polls the socket once per
statement, and those per-statement exchanges were most of the check-in's client CPU. On a connection made for it
(``prepare_on``: the write path's pool) each statement is prepared once, by name, and kept across ROLLBACKs.

Two drivers run the same flow: ``run`` on a sync psycopg connection (a SQLAlchemy session's, inside its
transaction: services called in-process, tests) and ``run_async`` on an async one (the API's write path, no thread
hop). Neither commits: the caller owns the transaction (``run_in_transaction`` below commits or rolls back).

A batch may be marked ``final`` with the flow's result: the flow promises to return that result if the batch
succeeds. A wrapper (core.idempotency) can then store the response in the same round trip as the write it
describes. A final batch may also be marked ``commit``: it is the flow's last, and a driver that owns the
transaction (``run_in_transaction``) sends the COMMIT in the same round trip. Whatever could still refuse must then
be decided inside PostgreSQL, before the COMMIT: a statement with a ``refusal`` calls ``fieldproof_guard`` (migration
0016), which fails the statement, so the pipeline skips the COMMIT and the driver raises the refusal.
"""
from __future__ import annotations

import operator
import re
from collections import namedtuple
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Generic, TypeVar

import psycopg
from psycopg import generators
from psycopg._queries import PostgresQuery
from psycopg.abc import PQGen
from psycopg.adapt import Transformer
from psycopg.pq import ConnStatus, ExecStatus, TransactionStatus
from sqlalchemy.dialects.postgresql import psycopg as sa_psycopg
from sqlalchemy.sql.elements import TextClause

T = TypeVar("T")
Rows = list[Any]


@dataclass(frozen=True)
class Stmt:
    """One statement in psycopg's ``%(name)s`` style, with its parameters."""

    sql: str
    params: Mapping[str, Any] = field(default_factory=dict)
    writes: bool = False  # changes rows: never sent before the Idempotency-Key's check (api.idempotent)
    one_row: bool = False  # returns at most one row: may be sent ``together`` with others
    parts: int = 0  # made by ``together``: its row holds this many statements' rows
    # Raised by the drivers when the statement's guard (``fieldproof_guard`` in its SQL) refused in PostgreSQL.
    refusal: Exception | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Batch(Generic[T]):
    """Statements sent in one round trip; ``final`` batches carry the result the flow returns if they succeed."""

    stmts: Sequence[Stmt]
    final: bool = False
    result: T | None = None
    commit: bool = False  # final and the flow's last: its COMMIT may ride in the same round trip

    def __post_init__(self) -> None:
        if self.commit and not self.final:
            raise ValueError("a commit batch is a final batch: the flow's result must be known before it is sent")


Flow = Generator[Batch, list[Rows], T]

IDLE, BAD = TransactionStatus.IDLE, ConnStatus.BAD
COMMAND_OK, FATAL_ERROR, PIPELINE_ABORTED = ExecStatus.COMMAND_OK, ExecStatus.FATAL_ERROR, ExecStatus.PIPELINE_ABORTED
PIPELINE_SYNC, TUPLES_OK = ExecStatus.PIPELINE_SYNC, ExecStatus.TUPLES_OK

GUARD_REFUSED = "FPG01"  # fieldproof_guard's SQLSTATE
_PART = "_fp_part"  # marks where each statement's columns begin in a ``together`` row
_PLACEHOLDER = re.compile(r"(?<!%)%\((\w+)\)s")


def together(*stmts: Stmt) -> Stmt:
    """Read-only statements of at most one row each as one statement (one execution, one plan, one message in
    the pipeline instead of several); the drivers hand back each statement's rows as if it had run alone. They
    share one snapshot: a read that must see what a lock let through goes in a later statement, never here."""
    if any(s.writes or not s.one_row for s in stmts):
        raise ValueError("together() takes read-only statements of at most one row")
    params = {f"_{i}_{k}": v for i, stmt in enumerate(stmts) for k, v in stmt.params.items()}
    return Stmt(_together_sql(tuple(s.sql for s in stmts)), params, one_row=True, parts=len(stmts))


@lru_cache(maxsize=256)
def _together_sql(sqls: tuple[str, ...]) -> str:
    """``together``'s SQL for these statements (the same few texts every request: built once)."""
    joins = [f"LEFT JOIN LATERAL (SELECT true AS {_PART}, _s{i}.* FROM ("
             + _PLACEHOLDER.sub(lambda m, i=i: f"%(_{i}_{m.group(1)})s", text_)
             + f") AS _s{i}) AS _t{i} ON true" for i, text_ in enumerate(sqls)]
    cols = ", ".join(f"_t{i}.*" for i in range(len(sqls)))
    return f"SELECT {cols} FROM (SELECT) AS _one " + " ".join(joins)


@lru_cache(maxsize=256)
def _row_type(names: tuple[str, ...]):
    return namedtuple("Row", names, rename=True)  # rows as psycopg's namedtuple_row makes them


def _split(names: tuple[str, ...], rows: list[tuple]) -> list[Rows]:
    """A ``together`` statement's one row as its statements' rows (a part whose marker is null had none)."""
    if len(rows) != 1:
        raise psycopg.ProgrammingError(f"together() returned {len(rows)} rows: a statement gave more than one")
    starts = [i for i, n in enumerate(names) if n == _PART] + [len(names)]
    out: list[Rows] = []
    for a, b in zip(starts, starts[1:]):
        values = rows[0][a + 1:b]
        out.append([] if rows[0][a] is None else [_row_type(tuple(names[a + 1:b]))(*values)])
    return out


def int_array(values: Sequence[int] | None) -> str | None:
    """Integers as PostgreSQL's array literal (``{1,2,3}``) for a ``CAST(:x AS bigint[])``; None stays NULL.
    psycopg's list dumper looks at every element on every call (its type, the widest, a regex on its text): ~20 µs
    for a 14-hash radio scan, against ~2 µs for this text, which PostgreSQL parses as it would the dumper's. Only
    integers (``operator.index``): a float or a string is a TypeError, never truncated or split into digits."""
    return None if values is None else "{" + ",".join(map(str, map(operator.index, values))) + "}"


@lru_cache(maxsize=256)
def sql(clause: TextClause) -> str:
    """A SQLAlchemy ``text()`` statement in psycopg's parameter style (``:name`` -> ``%(name)s``, ``%`` escaped):
    one SQL text serves the ORM sessions and the flows."""
    return str(clause.compile(dialect=sa_psycopg.dialect()))


class _Wire:
    """What a connection keeps between flows: the statements it has prepared (by SQL text and parameter types)
    and a Transformer (adapters, with their caches)."""

    __slots__ = ("prepare", "names", "made", "tx", "columns")

    def __init__(self, conn) -> None:
        self.prepare = False  # see prepare_on
        self.names: dict[tuple, bytes] = {}
        self.made = 0  # names given so far (a name is never given twice)
        self.tx = Transformer(conn)
        # A prepared statement's column names (its result type cannot change while it stays prepared: the
        # server refuses with 0A000, and the connection is closed, wire and all).
        self.columns: dict[bytes, tuple[str, ...]] = {}


_MAX_PREPARED = 256  # per connection; statements past it run unprepared (a flow's SQL is a handful of texts)
_BEGIN = object()  # the BEGIN that opens the transaction, when the connection has none open
_COMMIT = object()  # the COMMIT of a ``commit`` batch, when the driver owns the transaction
# A prepared statement that is not what this connection's server session holds: dropped by someone else
# (invalid_sql_statement_name) or outdated by a schema change (feature_not_supported, "cached plan must not change
# result type"). The connection is closed (a pool replaces it) and the request answered 503, to retry.
_STALE_PREPARED = {"26000", "0A000"}


def _wire(conn) -> _Wire:
    """The connection's wire, kept on the connection itself (so it goes with it)."""
    wire = getattr(conn, "_fieldproof_wire", None)
    if wire is None:
        wire = conn._fieldproof_wire = _Wire(conn)
    return wire


def prepare_on(conn) -> None:
    """Let the drivers prepare their statements on ``conn`` (named, once per connection, kept across ROLLBACKs).
    Only on a connection where psycopg itself never prepares (``prepare_threshold=None``): psycopg's ROLLBACK
    sends DEALLOCATE ALL once it has prepared something, which would drop these too."""
    if conn.prepare_threshold is not None:
        raise ValueError("prepare_on() needs a connection with prepare_threshold=None")
    _wire(conn).prepare = True


def _queue(conn, wire: _Wire, stmts: Sequence[Stmt], commit: bool = False) -> list:
    """Queue a batch on the connection in libpq's pipeline mode, with a sync, without sending it: what each result
    will answer, in order: ``_BEGIN``, ``(None, key)`` for a prepare, ``(stmt, name)`` for a statement (its prepared
    name or None), ``_COMMIT``. Parameters are adapted first, so a value psycopg cannot adapt raises before anything
    is queued."""
    queries = []
    for stmt in stmts:
        query = PostgresQuery(wire.tx)
        query.convert(stmt.sql, stmt.params)
        queries.append(query)
    pgconn, expect = conn.pgconn, []
    try:
        pgconn.enter_pipeline_mode()
        if pgconn.transaction_status == IDLE and not conn.autocommit:
            pgconn.send_query_params(b"BEGIN", None)
            expect.append(_BEGIN)
        for stmt, query in zip(stmts, queries):
            key = (query.query, query.types)
            name = wire.names.get(key)
            if name is None and wire.prepare and len(wire.names) < _MAX_PREPARED:
                name = b"_fp_%d" % wire.made
                wire.made += 1
                pgconn.send_prepare(name, query.query, param_types=query.types)
                # Known at once, so a later statement of the batch uses it; forgotten if the server refuses it.
                wire.names[key] = name
                expect.append((None, key))
            if name is None:
                pgconn.send_query_params(query.query, query.params, param_types=query.types,
                                         param_formats=query.formats)
            else:
                pgconn.send_query_prepared(name, query.params, param_formats=query.formats)
            expect.append((stmt, name))
        if commit:
            pgconn.send_query_params(b"COMMIT", None)
            expect.append(_COMMIT)
        pgconn.pipeline_sync()
    except BaseException:  # half a batch queued: the connection cannot be trusted any more
        _broken(conn)
        raise
    return expect


def _exchange(pgconn, commands: int) -> PQGen[list]:
    """Send what is queued and gather every result up to the sync: one network round trip. Each of the
    ``commands`` ends its results with a None; more than that means libpq lost the protocol's thread."""
    yield from generators.send(pgconn)
    results, ends = [], 0
    while True:
        result = yield from generators.fetch(pgconn)
        if result is None:  # the end of one command's results
            ends += 1
            if ends > commands or pgconn.status == BAD:
                raise psycopg.OperationalError("the connection lost track of a pipelined batch")
            continue
        if result.status == PIPELINE_SYNC:
            return results
        results.append(result)


def _answers(conn, wire: _Wire, expect: list, results: list) -> list[Rows]:
    """Each statement's rows, in order, as the flow reads them; the first error the server raised, raised."""
    pgconn = conn.pgconn
    pgconn.exit_pipeline_mode()
    if len(results) != len(expect):
        _broken(conn)
        raise psycopg.OperationalError(f"a batch of {len(expect)} commands gave {len(results)} results")
    error = failed = None
    for what, result in zip(expect, results):  # first what the server now holds, whatever happens below
        if result.status == FATAL_ERROR and error is None:
            error, failed = psycopg.errors.error_from_result(result, encoding=pgconn._encoding), what
        if what is not _BEGIN and what is not _COMMIT and what[0] is None and result.status != COMMAND_OK:
            wire.names.pop(what[1], None)  # a prepare the server did not make
    if error is not None:
        if error.sqlstate in _STALE_PREPARED and wire.names:
            _broken(conn)
            raise psycopg.OperationalError(f"prepared statements out of date: {error}") from error
        stmt = None if failed is _BEGIN or failed is _COMMIT else failed[0]  # None too for a prepare
        if error.sqlstate == GUARD_REFUSED and stmt is not None and stmt.refusal is not None:
            raise stmt.refusal from error
        raise error
    out = []
    for what, result in zip(expect, results):
        if what is _BEGIN or what is _COMMIT or what[0] is None:
            continue
        if result.status != TUPLES_OK:
            out.append([])
            continue
        wire.tx.set_pgresult(result)
        what, name = what
        names = wire.columns.get(name) if name is not None else None
        if names is None:
            names = tuple(result.fname(i).decode(pgconn._encoding) for i in range(result.nfields))
            if name is not None:
                wire.columns[name] = names
        if what.parts:
            out.extend(_split(names, wire.tx.load_rows(0, result.ntuples, tuple)))
        else:
            out.append(wire.tx.load_rows(0, result.ntuples, _row_type(names)._make))
    wire.tx.set_pgresult(None)
    return out


def _broken(conn) -> None:
    """A round trip that did not finish leaves the protocol state unknown: the connection is closed, and a pool
    replaces a closed connection."""
    if not conn.closed:
        conn.pgconn.finish()


def _settle(conn) -> None:
    """After a round trip that raised while waiting (cancelled, interrupted, the link failed): a batch whose
    results were all read leaves the connection usable (psycopg, on a cancel, has the server cancel the statement
    and reads on); one cut half way leaves the protocol state unknown, and the connection is closed."""
    if conn.closed:
        return
    try:
        conn.pgconn.exit_pipeline_mode()
    except psycopg.Error:
        _broken(conn)


def _batches(conn, flow: Flow[T], commit: bool = False) -> Generator[PQGen[list], list, T]:
    """The flow's batches, queued: yields each batch's round trip for the driver to wait on, and receives its
    results. One wait per round trip, so a cancelled request finishes at most the round trip it is in. With
    ``commit`` (the driver owns the transaction), a ``commit`` batch carries the COMMIT."""
    wire, rows = _wire(conn), None
    try:
        while True:
            try:
                batch = flow.send(rows)  # type: ignore[arg-type]  # the first send is None, as next() would be
            except StopIteration as stop:
                return stop.value
            committing = commit and batch.commit
            expect = _queue(conn, wire, batch.stmts, committing)
            results = yield _exchange(conn.pgconn, len(expect))
            rows = _answers(conn, wire, expect, results)
            if committing:
                return _after_commit(flow, rows)
    finally:
        flow.close()


def _after_commit(flow: Flow[T], rows: list[Rows]) -> T:
    """The flow's result once its ``commit`` batch committed: it must return now, without refusing (a refusal
    here would answer an error for a write that is already durable)."""
    try:
        batch = flow.send(rows)
    except StopIteration as stop:
        return stop.value
    except Exception as exc:
        raise RuntimeError("a flow refused after its commit batch committed: decide refusals in SQL "
                           "(Stmt.refusal)") from exc
    raise RuntimeError(f"a flow sent a batch after its commit batch ({len(batch.stmts)} statements)")


def run(conn: psycopg.Connection, flow: Flow[T]) -> T:
    """Run ``flow`` on a sync connection, one round trip per batch; the transaction stays open (one is begun if
    none is)."""
    batches, results = _batches(conn, flow), None
    try:
        while True:
            exchange = batches.send(results)
            try:
                results = conn.wait(exchange)
            except BaseException:
                _settle(conn)
                raise
    except StopIteration as stop:
        return stop.value
    finally:
        batches.close()


async def run_async(conn: psycopg.AsyncConnection, flow: Flow[T], *, commit: bool = False) -> T:
    """``run`` on an async connection: the event loop is free while PostgreSQL works. With ``commit``, a
    ``commit`` batch commits in its own round trip (``run_in_transaction``)."""
    batches, results = _batches(conn, flow, commit), None
    try:
        while True:
            exchange = batches.send(results)
            try:
                results = await conn.wait(exchange)
            except BaseException:
                _settle(conn)
                raise
    except StopIteration as stop:
        return stop.value
    finally:
        batches.close()


async def run_in_transaction(conn: psycopg.AsyncConnection, flow: Flow[T]) -> T:
    """Run ``flow`` and commit (in its ``commit`` batch's round trip when it has one); on any error, roll back (the
    flow's prepared statements stay: they are not part of the transaction) and raise it."""
    try:
        result = await run_async(conn, flow, commit=True)
    except BaseException:
        try:
            await conn.rollback()
        except psycopg.Error:
            pass  # the connection is broken: the pool discards it; the original error is what the caller hears
        raise
    if conn.pgconn.transaction_status != IDLE:
        await conn.commit()
    return result
