"""core.flow: pipelined units of work on a real PostgreSQL, through the async driver the API's write path uses.

What a caller of ``run_in_transaction`` relies on: a flow's writes commit together or not at all; the statements a
flow prepared stay prepared through refusals, errors and ROLLBACKs (and none are prepared where psycopg prepares);
a database error rolls back and leaves the connection usable; the sync driver gives the same answers.
"""
from __future__ import annotations

import asyncio

import psycopg
import pytest

from core import flow
from core.db import database_url, get_engine, libpq_url
from core.errors import InvalidInput
from core.flow import Batch, Stmt

INSERT = Stmt("INSERT INTO flow_probe (tag, v) VALUES (%(tag)s, %(v)s) RETURNING id", writes=True)
COUNT = "SELECT count(*) AS n FROM flow_probe WHERE tag = %(tag)s"


class Refused(InvalidInput):
    code = "refused"


@pytest.fixture(scope="module")
def conninfo(test_database):
    with get_engine().begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS flow_probe (id bigserial PRIMARY KEY, tag text NOT NULL, "
                             "v int NOT NULL CHECK (v >= 0))")
    yield libpq_url(database_url())
    with get_engine().begin() as conn:  # not a table of the models: test_migrations compares the schema with them
        conn.exec_driver_sql("DROP TABLE flow_probe")


def _insert(tag: str, v: int) -> Stmt:
    return Stmt(INSERT.sql, {"tag": tag, "v": v}, writes=True)


def _two_writes_then(tag: str, refuse_after_writes: bool):
    """Reads, then writes two rows in one batch, then (optionally) refuses: returns the ids."""
    rows = yield Batch([Stmt(COUNT, {"tag": tag})])
    assert rows[0][0].n == 0
    rows = yield Batch([_insert(tag, 1), _insert(tag, 2)], final=True, result="ok")
    if refuse_after_writes:
        raise Refused("changed my mind")
    return [r[0].id for r in rows]


def _refuse_after_reading(tag: str):
    yield Batch([Stmt(COUNT, {"tag": tag})])
    raise Refused("no")


def _count(conninfo: str, tag: str) -> int:
    with psycopg.connect(conninfo) as c:
        return c.execute(COUNT, {"tag": tag}).fetchone()[0]


async def _prepared(conn: psycopg.AsyncConnection) -> set[str]:
    cur = await conn.execute("SELECT statement FROM pg_prepared_statements", prepare=False)
    return {r[0] for r in await cur.fetchall()}


def test_a_flows_writes_commit_together(conninfo):
    async def go():
        async with await psycopg.AsyncConnection.connect(conninfo) as conn:
            return await flow.run_in_transaction(conn, _two_writes_then("commit", False))

    ids = asyncio.run(go())
    assert len(ids) == 2 and ids[0] < ids[1] and _count(conninfo, "commit") == 2


def test_a_refusal_after_a_write_rolls_the_whole_flow_back(conninfo):
    async def go():
        async with await psycopg.AsyncConnection.connect(conninfo) as conn:
            with pytest.raises(Refused):
                await flow.run_in_transaction(conn, _two_writes_then("refused", True))
            return conn.info.transaction_status

    assert asyncio.run(go()) == psycopg.pq.TransactionStatus.IDLE
    assert _count(conninfo, "refused") == 0


def test_the_flows_prepared_statements_survive_refusals_errors_and_rollbacks(conninfo):
    """On a connection made for it (prepare_on, as the write path's pool does), each statement is prepared once,
    by name, and stays prepared after a refusal, a server error and a ROLLBACK: the next flows reuse it."""
    async def go():
        async with await psycopg.AsyncConnection.connect(conninfo, prepare_threshold=None) as conn:
            flow.prepare_on(conn)
            await flow.run_in_transaction(conn, _two_writes_then("prep", False))
            before = await _prepared(conn)
            with pytest.raises(Refused):
                await flow.run_in_transaction(conn, _refuse_after_reading("prep"))
            with pytest.raises(psycopg.errors.CheckViolation):
                await flow.run_in_transaction(conn, _one_bad_write())
            await conn.rollback()
            after = await _prepared(conn)
            await flow.run_in_transaction(conn, _two_writes_then("prep2", False))
            return before, after, await _prepared(conn)

    before, after, again = asyncio.run(go())
    assert sum("flow_probe" in s for s in before) == 2  # the COUNT and the INSERT, once each (two INSERTs ran)
    assert after == before and again == before


def test_the_flow_prepares_nothing_where_psycopg_prepares(conninfo):
    """psycopg's own ROLLBACK deallocates every statement once it has prepared one: on its connections (sessions)
    the flow does not prepare, and prepare_on refuses them."""
    async def go():
        async with await psycopg.AsyncConnection.connect(conninfo) as conn:
            with pytest.raises(ValueError):
                flow.prepare_on(conn)
            await flow.run_in_transaction(conn, _two_writes_then("noprep", False))
            return await _prepared(conn)

    assert not any("flow_probe" in s for s in asyncio.run(go()))


def _one_bad_write():
    yield Batch([_insert("dberr", 1), _insert("dberr", -1)])  # the CHECK refuses the second
    return "unreachable"


def test_a_database_error_rolls_back_and_leaves_the_connection_usable(conninfo):
    async def go():
        async with await psycopg.AsyncConnection.connect(conninfo) as conn:
            with pytest.raises(psycopg.errors.CheckViolation):
                await flow.run_in_transaction(conn, _one_bad_write())
            return await flow.run_in_transaction(conn, _two_writes_then("after-error", False))

    assert len(asyncio.run(go())) == 2
    assert _count(conninfo, "dberr") == 0 and _count(conninfo, "after-error") == 2


def test_the_sync_driver_runs_the_same_flow(conninfo):
    with psycopg.connect(conninfo) as conn:
        ids = flow.run(conn, _two_writes_then("sync", False))
        conn.commit()
    assert len(ids) == 2 and _count(conninfo, "sync") == 2


def test_sql_turns_sqlalchemy_text_into_psycopg_style():
    from sqlalchemy import text

    assert flow.sql(text("SELECT :a, '100%' WHERE x = :b")) == "SELECT %(a)s, '100%%' WHERE x = %(b)s"


def test_int_array_reaches_postgresql_as_the_same_bigint_array(conninfo):
    values = [-(2**63), -1, 0, 7, 2**63 - 1]

    def read(arr):
        got = yield Batch([Stmt("SELECT CAST(%(a)s AS bigint[]) AS a, cardinality(CAST(%(a)s AS bigint[])) AS n",
                                {"a": arr}, one_row=True)])
        return got[0][0]

    with psycopg.connect(conninfo) as conn:
        assert tuple(flow.run(conn, read(flow.int_array(values)))) == (values, 5)
        assert tuple(flow.run(conn, read(flow.int_array([])))) == ([], 0)
        assert tuple(flow.run(conn, read(flow.int_array(None)))) == (None, None)
    assert flow.int_array([True, 3]) == "{1,3}"  # ints by value: a bool is never spelled 'True'
    for wrong in ([1.9], "12", [2, "3"]):  # never truncated, never split into digits
        with pytest.raises(TypeError):
            flow.int_array(wrong)


def test_together_runs_one_row_reads_as_one_statement_with_each_ones_rows(conninfo):
    """Parameters of the same name stay apart, a statement with no row gives [], a locking read keeps its lock,
    and the rows read as if each statement had run alone."""
    from core.flow import together

    a = Stmt("SELECT %(x)s::int AS x, 'a' AS tag", {"x": 1}, one_row=True)
    none = Stmt("SELECT 1 AS x WHERE %(x)s::int < 0", {"x": 5}, one_row=True)
    lock = Stmt("SELECT id, v FROM flow_probe WHERE tag = %(tag)s ORDER BY id LIMIT 1 FOR UPDATE",
                {"tag": "together"}, one_row=True)
    with psycopg.connect(conninfo) as setup:
        setup.execute(_insert("together", 7).sql, _insert("together", 7).params)

    def both():
        rows = yield Batch([together(a, none, lock), Stmt("SELECT %(x)s::int AS x", {"x": 9})])
        return rows

    with psycopg.connect(conninfo) as conn:
        rows = flow.run(conn, both())
        with psycopg.connect(conninfo) as other:  # the row is locked until conn's transaction ends
            other.execute("SET lock_timeout = '100ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute("SELECT 1 FROM flow_probe WHERE id = %s FOR UPDATE", (rows[2][0].id,))
        conn.rollback()
    assert [len(r) for r in rows] == [1, 0, 1, 1]
    assert (rows[0][0].x, rows[0][0].tag) == (1, "a") and rows[2][0].v == 7 and rows[3][0].x == 9
    with pytest.raises(ValueError):
        together(_insert("w", 1))


def test_a_cancelled_flow_leaves_the_connection_usable(conninfo):
    """A request cancelled while PostgreSQL works (the client went away, a timeout): the query is cancelled on the
    server, the transaction rolled back, and the connection serves the next flow (or, had the round trip not
    finished, it is closed so a pool replaces it; never left half way through a pipeline)."""
    async def go():
        async with await psycopg.AsyncConnection.connect(conninfo, prepare_threshold=None) as conn:
            flow.prepare_on(conn)

            def slow():
                yield Batch([_insert("cancelled", 1), Stmt("SELECT pg_sleep(%(s)s)", {"s": 5})])
                return "unreachable"

            task = asyncio.create_task(flow.run_in_transaction(conn, slow()))
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not conn.closed
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert conn.pgconn.pipeline_status == psycopg.pq.PipelineStatus.OFF
            return await flow.run_in_transaction(conn, _two_writes_then("after-cancel", False))

    assert len(asyncio.run(go())) == 2
    assert _count(conninfo, "cancelled") == 0 and _count(conninfo, "after-cancel") == 2


def test_prepared_statements_the_server_no_longer_holds_close_the_connection(conninfo):
    """If the server session lost the flow's statements (DEALLOCATE ALL by someone else, a bouncer's reset), the
    request fails as a lost connection does (503, retry: api.errors) and the connection is closed, so the pool's
    next one prepares afresh: never the same failure on every later request."""
    async def go():
        async with await psycopg.AsyncConnection.connect(conninfo, prepare_threshold=None) as conn:
            flow.prepare_on(conn)
            await flow.run_in_transaction(conn, _two_writes_then("stale", False))
            await conn.execute("DEALLOCATE ALL")
            await conn.commit()
            with pytest.raises(psycopg.OperationalError) as raised:
                await flow.run_in_transaction(conn, _two_writes_then("stale-2", False))
            return conn.closed, raised.value.sqlstate

    closed, sqlstate = asyncio.run(go())
    assert closed and sqlstate is None  # no SQLSTATE: api.errors answers 503 and checks the pool
    assert _count(conninfo, "stale-2") == 0


def test_a_connections_flow_state_goes_with_it(conninfo):
    """What the drivers keep per connection (prepared names, adapters) lives on the connection: a closed
    connection is collected, not held by the flow module."""
    import gc
    import weakref

    def use_one():
        conn = psycopg.connect(conninfo, prepare_threshold=None)
        flow.prepare_on(conn)
        flow.run(conn, _two_writes_then("collected", False))
        conn.commit()
        conn.close()
        return weakref.ref(conn)

    ref = use_one()
    gc.collect()
    assert ref() is None


def _commit_batch(tag: str, refuse_in_sql: bool = False, refuse_after: bool = False):
    """Two writes in the flow's last batch, marked ``commit``; optionally a guard that refuses in PostgreSQL (it
    counts the rows the batch just wrote: a later statement of the batch sees them), or a refusal in Python after
    the batch (a flow bug: by then the batch has committed)."""
    rows = yield Batch([Stmt(COUNT, {"tag": tag})])
    assert rows[0][0].n == 0
    stmts = [_insert(tag, 1), _insert(tag, 2)]
    if refuse_in_sql:
        stmts.append(Stmt("SELECT fieldproof_guard(count(*) = 0, 'probe') FROM flow_probe WHERE tag = %(tag)s",
                          {"tag": tag}, writes=True, refusal=Refused("the guard refused")))
    rows = yield Batch(stmts, final=True, commit=True, result="ok")
    if refuse_after:
        raise Refused("too late")
    return [r[0].id for r in rows[:2]]


def test_a_commit_batch_carries_its_commit_in_the_same_round_trip(conninfo):
    """run_in_transaction sends the COMMIT with the flow's ``commit`` batch: the flow's last round trip ends with
    the transaction committed (no COMMIT round trip after it); the sync driver, whose caller owns the transaction,
    leaves it open."""
    sent: list[int] = []
    real = flow._exchange

    def counting(pgconn, commands):
        sent.append(commands)
        return real(pgconn, commands)

    async def go():
        async with await psycopg.AsyncConnection.connect(conninfo, prepare_threshold=None) as conn:
            flow.prepare_on(conn)
            flow._exchange = counting
            try:
                ids = await flow.run_async(conn, _commit_batch("in-batch"), commit=True)
            finally:
                flow._exchange = real
            return ids, conn.info.transaction_status

    ids, status = asyncio.run(go())
    assert status == psycopg.pq.TransactionStatus.IDLE and len(ids) == 2 and _count(conninfo, "in-batch") == 2
    assert len(sent) == 2  # two round trips: the read (with BEGIN), the writes with their COMMIT
    with psycopg.connect(conninfo) as conn:
        flow.run(conn, _commit_batch("sync-open"))
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        conn.rollback()
    assert _count(conninfo, "sync-open") == 0


def test_a_guard_that_refuses_in_sql_skips_the_commit_and_raises_its_refusal(conninfo):
    """The guard fails its statement, so the pipeline skips the COMMIT queued after it: nothing of the batch is
    kept, the flow's own refusal is what the caller hears, and the connection serves the next flow."""
    async def go():
        async with await psycopg.AsyncConnection.connect(conninfo, prepare_threshold=None) as conn:
            flow.prepare_on(conn)
            with pytest.raises(Refused, match="the guard refused") as raised:
                await flow.run_in_transaction(conn, _commit_batch("guarded", refuse_in_sql=True))
            assert raised.value.__cause__.sqlstate == flow.GUARD_REFUSED
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            return await flow.run_in_transaction(conn, _commit_batch("after-guard"))

    assert len(asyncio.run(go())) == 2
    assert _count(conninfo, "guarded") == 0 and _count(conninfo, "after-guard") == 2
    with psycopg.connect(conninfo) as conn:  # the sync driver raises the same refusal
        with pytest.raises(Refused):
            flow.run(conn, _commit_batch("guarded-sync", refuse_in_sql=True))


def test_a_flow_that_refuses_after_its_commit_batch_is_named_a_bug(conninfo):
    """After a commit batch the write is durable: a refusal then cannot undo it, so the driver does not pass it
    off as a refusal (a 4xx the client would trust): it raises a RuntimeError naming the rule."""
    async def go():
        async with await psycopg.AsyncConnection.connect(conninfo) as conn:
            with pytest.raises(RuntimeError, match="refused after its commit batch"):
                await flow.run_in_transaction(conn, _commit_batch("late", refuse_after=True))

    asyncio.run(go())
    assert _count(conninfo, "late") == 2


def test_a_commit_batch_must_be_final_and_the_guard_stays_volatile(conninfo):
    """A commit batch carries the flow's result (the response is stored in it); and fieldproof_guard stays
    VOLATILE: a STABLE or IMMUTABLE guard may be merged into the join around it, where a filter over an empty side
    never runs, and an empty move would commit."""
    with pytest.raises(ValueError):
        Batch([], commit=True)
    with psycopg.connect(conninfo) as conn:
        assert conn.execute("SELECT provolatile FROM pg_proc WHERE proname = 'fieldproof_guard'").fetchone() == ("v",)
