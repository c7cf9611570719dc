"""Celery against the real Redis broker and DB: a real worker process, no eager mode."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import delete

from core import jobs
from core.db import session_scope
from core.redis import get_redis
from tests.helpers import wait_until

JOB_KIND = "test.touch_marker"


CHAIN_KIND = "test.add_follow_up"


@jobs.handler(JOB_KIND)
def _touch(*, db_session, marker: str) -> None:
    get_redis().incr(marker)


@jobs.handler(CHAIN_KIND)
def _add_follow_up(*, db_session, marker: str) -> None:
    """A job that records another job, as a service called from a worker would."""
    jobs.add(db_session, JOB_KIND, marker=marker)


@pytest.fixture
def worker_process():
    env = {**os.environ, "FIELDPROOF_TEST_JOB_HANDLERS": "tests.test_workers"}
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "tests.celery_test_app:app", "worker",
                             "-Q", "default,maintenance,money", "--concurrency", "1", "--pool", "solo",
                             "--loglevel", "WARNING"], env=env)
    yield proc
    proc.terminate()
    proc.wait(timeout=20)


def _committed_job(marker: str) -> int:
    with session_scope() as db:
        job = jobs.add(db, JOB_KIND, marker=marker)
        db.commit()
        return job.id


def _everything_sent_so_far_has_run():
    """A predicate that turns true once every message already on the 'default' queue has been handled: a marker
    job queued behind them runs last, because the one worker takes the queue in order, one at a time (solo pool,
    prefetch 1, late acks). The marker job's row is removed by ``_remove_sentinels``."""
    from workers.tasks import run_job

    marker = f"sentinel:{time.time_ns()}"
    run_job.delay(_committed_job(marker))
    return lambda: get_redis().get(marker) is not None


def _remove_sentinels() -> None:
    with session_scope() as db:
        db.execute(delete(jobs.Job).where(jobs.Job.payload["marker"].astext.like("sentinel:%")))
        db.commit()


def test_real_worker_runs_job_once_even_if_delivered_twice(worker_process):
    from workers.tasks import run_job

    marker = f"marker:{time.time_ns()}"
    job_id = _committed_job(marker)
    try:
        run_job.delay(job_id)
        run_job.delay(job_id)  # a duplicate delivery (e.g. the sweeper and the original nudge)
        both_handled = _everything_sent_so_far_has_run()
        assert wait_until(both_handled)
        assert int(get_redis().get(marker)) == 1
        with session_scope() as db:
            assert db.get(jobs.Job, job_id).state == "done"
    finally:
        with session_scope() as db:
            db.execute(delete(jobs.Job).where(jobs.Job.id == job_id))
            db.commit()
        _remove_sentinels()


def test_a_job_added_inside_a_worker_starts_within_seconds(worker_process):
    """The follow-up job is dispatched after its commit from the worker process itself: no beat runs here,
    and its lease (30 s) is far longer than the wait, so only the after-commit dispatch can start it."""
    from workers.tasks import run_job

    marker = f"marker:{time.time_ns()}"
    with session_scope() as db:
        first = jobs.add(db, CHAIN_KIND, marker=marker).id
        db.commit()
    try:
        run_job.delay(first)
        # 30 s covers the worker's cold start on a busy machine and is still under the 30 s lease plus a
        # sweep that never runs here (no beat): only the after-commit dispatch can start the follow-up.
        assert wait_until(lambda: get_redis().get(marker) is not None, timeout=30.0)
    finally:
        with session_scope() as db:
            db.execute(delete(jobs.Job).where(jobs.Job.payload["marker"].astext == marker))
            db.commit()


def test_sweeper_requeues_lost_jobs(worker_process):
    """The nudge was lost (never enqueued); the sweeper finds the pending row and it runs."""
    from workers.tasks import sweep_unfinished_jobs

    marker = f"marker:{time.time_ns()}"
    job_id = _committed_job(marker)
    try:
        with session_scope() as db:
            db.get(jobs.Job, job_id).leased_until = jobs.utcnow()
            db.commit()
        sweep_unfinished_jobs.delay()
        assert wait_until(lambda: get_redis().get(marker) is not None)
    finally:
        with session_scope() as db:
            db.execute(delete(jobs.Job).where(jobs.Job.id == job_id))
            db.commit()


def test_a_long_waiting_job_is_re_sent_with_a_lease_as_long_as_its_wait():
    """The sweeper's new lease is the job's age, at least the lease and at most MAX_RESEND_LEASE_S: a backlog is
    re-sent about log2(wait / lease) times per job, not once per sweep. Jobs queued 5 minutes, 2 hours and a moment
    ago, all past their lease: leased ~5 minutes, 10 minutes (the cap) and the plain lease; a second sweep re-sends
    none of them."""
    from datetime import timedelta

    marker = f"marker:{time.time_ns()}"
    ids = [_committed_job(marker) for _ in range(3)]
    ages = [timedelta(minutes=5), timedelta(hours=2), timedelta(0)]
    try:
        with session_scope() as db:
            now = jobs.utcnow()
            for job_id, age in zip(ids, ages):
                job = db.get(jobs.Job, job_id)
                job.created_at, job.leased_until = now - age, now - timedelta(seconds=1)
            db.commit()
        with session_scope() as db:
            assert set(ids) <= {j for j, _ in jobs.due_for_retry(db_session=db)}
            leases = [(db.get(jobs.Job, j).leased_until - now).total_seconds() for j in ids]
            for got, want in zip(leases, (5 * 60, jobs.MAX_RESEND_LEASE_S, jobs.lease_s())):
                assert want - 5 <= got <= want + 60, leases
            assert not set(ids) & {j for j, _ in jobs.due_for_retry(db_session=db)}
    finally:
        with session_scope() as db:
            db.execute(delete(jobs.Job).where(jobs.Job.id.in_(ids)))
            db.commit()


def test_payout_redelivered_to_a_real_worker_pays_once(worker_process):
    """A payout whose first worker died mid-payment (state 'paying') is redelivered twice; one payment results."""
    from sqlalchemy import func, select

    from accounts.models import User
    from core.models import utcnow
    from ledger import service as ledger
    from ledger import withdrawals
    from ledger.models import LedgerTransaction, ProviderPayment, Withdrawal
    from ledger.provider import LocalSandboxProvider
    from tests.helpers import unique
    from tests.test_ledger import _cleanup
    from workers.tasks import execute_payout

    with session_scope() as s:
        w = User(username=unique("cel_w"), password_hash="x", role="worker", display_name="w", real_name_verified=True)
        m = User(username=unique("cel_m"), password_hash="x", role="merchant", display_name="m")
        s.add_all([w, m])
        s.commit()
        ledger.deposit(db_session=s, merchant_id=m.id, amount_fen=2000, provider=LocalSandboxProvider(s),
                       idempotency_key=unique("cel_dep"))
        ledger.hold_escrow(s, merchant_id=m.id, cause=("t", m.id), amount_fen=2000)
        ledger.pay_claim(s, merchant_id=m.id, worker_id=w.id, claim_id=m.id, reward_fen=2000, commission_fen=0)
        s.commit()
        wid = withdrawals.request(db_session=s, worker=s.get(User, w.id), amount_fen=1500).id
        s.get(Withdrawal, wid).state, s.get(Withdrawal, wid).paying_since = "paying", utcnow()
        s.commit()
        ids = [w.id, m.id]
    try:
        execute_payout.delay(wid)
        execute_payout.delay(wid)

        def paid():
            with session_scope() as s:
                return s.get(Withdrawal, wid).state == "paid"

        assert wait_until(paid)
        both_handled = _everything_sent_so_far_has_run()  # the second delivery, too, has finished
        assert wait_until(both_handled)
        with session_scope() as s:
            n = s.scalar(select(func.count()).select_from(LedgerTransaction).where(
                LedgerTransaction.kind == "withdrawal_paid", LedgerTransaction.cause_id == wid))
            calls = s.scalar(select(func.count()).select_from(ProviderPayment).where(
                ProviderPayment.idempotency_key == f"withdrawal-{wid}"))
            assert n == 1 and calls == 1 and ledger.check(s) == []
    finally:
        from core.db import new_session

        _cleanup(new_session(), ids)
        _remove_sentinels()


SLOW_KIND = "test.slow_marker"


@jobs.handler(SLOW_KIND)
def _slow(*, db_session, marker: str, seconds: float) -> None:
    """A job that holds its worker for a while."""
    time.sleep(seconds)
    get_redis().incr(marker)


def _queued_job_ids(queue: str = "default") -> dict[int, bytes]:
    """The run_job messages waiting on a Celery queue in Redis, by job id, with their raw bytes (to remove one)."""
    from workers.broker import job_id_of

    out = {}
    for raw in get_redis().lrange(queue, 0, -1):
        job_id = job_id_of(raw)
        if job_id is not None:
            out[job_id] = raw
    return out


def test_a_real_worker_runs_every_job_once_when_redis_loses_one_message_or_a_whole_queue(worker_process,
                                                                                      monkeypatch):
    """A real worker and Redis, with a 4 s lease and the sweep run as beat runs it. A slow job holds the one worker
    while eight jobs queue behind it and Redis loses the third one's message; later Redis loses a whole queue of
    five. Every job runs, and exactly once (a copy re-sent while a job ran finds it done)."""
    from workers.tasks import resend_lost_jobs

    monkeypatch.setattr(jobs, "lease_s", lambda: 4.0)
    marker = f"marker:{time.time_ns()}"
    made: list[int] = []

    def sweep_until(done, timeout: float) -> bool:
        """The beat sweep every half second until ``done``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return True
            resend_lost_jobs()
            time.sleep(0.5)
        return done()

    def runs(job_id: int) -> int:
        return int(get_redis().get(f"{marker}:{job_id}") or 0)

    def add(seconds: float = 0.0) -> int:
        """A committed job (sent by the after-commit dispatch) counting its runs under its own marker."""
        with session_scope() as db:
            job = jobs.add(db, SLOW_KIND, seconds=seconds)
            job.payload = {"seconds": seconds, "marker": f"{marker}:{job.id}"}
            db.commit()
        made.append(job.id)
        return job.id

    try:
        first = add(seconds=3.0)
        assert wait_until(lambda: first not in _queued_job_ids(), timeout=20.0)  # the worker took it
        queued = [add() for _ in range(8)]
        assert get_redis().lrem("default", 1, _queued_job_ids()[queued[2]]) == 1  # Redis lost this one message
        assert sweep_until(lambda: all(runs(j) for j in queued), timeout=40.0)
        time.sleep(1.0)  # copies still queued have run too
        assert [runs(j) for j in queued] == [1] * 8

        slow = add(seconds=2.0)
        assert wait_until(lambda: slow not in _queued_job_ids(), timeout=20.0)
        behind = [add() for _ in range(5)]
        get_redis().delete("default")  # the whole queue lost
        assert sweep_until(lambda: all(runs(j) for j in behind), timeout=40.0)
        time.sleep(1.0)
        assert [runs(j) for j in behind] == [1] * 5
    finally:
        with session_scope() as db:
            db.execute(delete(jobs.Job).where(jobs.Job.id.in_(made)))
            db.commit()


def test_a_real_worker_tallies_each_tasks_cpu_in_redis(worker_process):
    """The worker adds each task's CPU (its process's, threads included) and run to the tally by task name that
    the simulator's report and ops read (core.redis.task_cpu): a job that burns ~0.2 s of CPU shows as at least
    that, on one more run of fieldproof.run_job."""
    from core.redis import task_cpu
    from workers.tasks import run_job

    marker = f"marker:{time.time_ns()}"
    before = task_cpu(get_redis()).get("fieldproof.run_job", {"runs": 0, "cpu_s": 0.0})
    with session_scope() as db:
        job = jobs.add(db, BURN_KIND, marker=marker, seconds=0.2)
        db.commit()
    run_job.delay(job.id)  # the nudge (the after-commit dispatch too, where workers.tasks set it up)
    try:
        assert wait_until(lambda: get_redis().get(marker) is not None, timeout=30.0)
        # the tally is written after the job's marker (task_postrun): absent at first on a fresh Redis
        assert wait_until(lambda: task_cpu(get_redis()).get("fieldproof.run_job", before)["runs"] > before["runs"],
                          timeout=10.0)
        after = task_cpu(get_redis())["fieldproof.run_job"]
        assert after["cpu_s"] - before["cpu_s"] >= 0.18 and after["ms_per_run"] is not None
    finally:
        with session_scope() as db:
            db.execute(delete(jobs.Job).where(jobs.Job.id == job.id))
            db.commit()


BURN_KIND = "test.burn_cpu"


@jobs.handler(BURN_KIND)
def _burn(*, db_session, marker: str, seconds: float) -> None:
    """A job that uses ``seconds`` of CPU."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    get_redis().incr(marker)


def test_the_sweep_re_sends_only_jobs_whose_message_no_longer_waits_in_redis(monkeypatch):
    """No worker consumes: four jobs past their lease, their messages queued. The sweep re-sends none of them while
    their messages wait (a backlog, not a loss); then exactly the one whose message Redis lost; after the whole
    queue is lost, the other three. A queue too long to read counts as lost: every due job on it is re-sent."""
    from datetime import timedelta

    from workers import broker
    from workers.tasks import resend_lost_jobs

    marker = f"marker:{time.time_ns()}"
    ids = [_committed_job(marker) for _ in range(4)]  # each sent to 'default' by the after-commit dispatch

    def expire() -> None:
        with session_scope() as db:
            for job_id in ids:
                db.get(jobs.Job, job_id).leased_until = jobs.utcnow() - timedelta(seconds=1)
            db.commit()

    def ours(sent: list[int]) -> list[int]:
        return sorted(set(sent) & set(ids))

    try:
        queued = _queued_job_ids()
        assert set(ids) <= set(queued) and set(ids) <= broker.waiting_jobs()
        expire()
        assert ours(resend_lost_jobs()) == []
        assert get_redis().lrem("default", 0, queued[ids[1]]) == 1  # Redis lost this one message
        assert ours(resend_lost_jobs()) == [ids[1]]
        assert ours(resend_lost_jobs()) == []  # re-sent once: its new message waits, and its lease was renewed
        get_redis().delete("default")  # the whole queue lost
        assert ours(resend_lost_jobs()) == [ids[0], ids[2], ids[3]]
        expire()
        monkeypatch.setattr(broker, "PEEK_MAX", 2)  # four messages wait: too many to read
        assert ours(resend_lost_jobs()) == sorted(ids)
    finally:
        with session_scope() as db:
            db.execute(delete(jobs.Job).where(jobs.Job.id.in_(ids)))
            db.commit()
        for job_id, raw in _queued_job_ids().items():
            if job_id in ids:
                get_redis().lrem("default", 0, raw)


def test_the_broker_peek_reads_only_run_job_messages():
    """Messages of other tasks, other envelopes and garbage name no job."""
    import base64
    import json

    from workers.broker import job_id_of

    body = base64.b64encode(json.dumps([[42], {}, {}]).encode()).decode()
    envelope = {"body": body, "headers": {"task": "fieldproof.run_job"}, "properties": {"body_encoding": "base64"}}
    assert job_id_of(json.dumps(envelope)) == 42
    assert job_id_of(json.dumps({**envelope, "headers": {"task": "fieldproof.auto_confirm"}})) is None
    for junk in (b"", b"{", b"[]", json.dumps({**envelope, "body": "%%%"}), json.dumps({"headers": None})):
        assert job_id_of(junk) is None


def test_a_sweep_cut_short_by_the_broker_leaves_the_unsent_jobs_due_at_once(monkeypatch):
    """The broker goes away during a sweep: the jobs it sent stay leased, the ones it could not send are due again
    at the next sweep (they kept a new lease as long as their age, up to 10 minutes, and waited it out)."""
    from datetime import timedelta

    from workers import broker, tasks

    marker = f"marker:{time.time_ns()}"
    ids = [_committed_job(marker) for _ in range(3)]
    try:
        with session_scope() as db:
            for job_id in ids:
                db.get(jobs.Job, job_id).leased_until = jobs.utcnow() - timedelta(seconds=1)
                db.get(jobs.Job, job_id).created_at = jobs.utcnow() - timedelta(minutes=30)
            db.commit()
        get_redis().delete("default")  # their messages lost
        monkeypatch.setattr(broker, "waiting_jobs", lambda: set())
        sent = []

        def send(job_id, kind, retry_policy=None):
            if job_id in ids and sent:
                raise ConnectionError("broker gone")
            sent.append(job_id)

        monkeypatch.setattr(tasks, "send_job", send)
        monkeypatch.setattr(jobs, "due_for_retry", lambda db_session, queued=(), _real=jobs.due_for_retry:
                            [d for d in _real(db_session=db_session, queued=queued) if d[0] in ids])
        first = tasks.resend_lost_jobs()
        assert len(first) == 1 and first == sent
        unsent = sorted(set(ids) - set(first))
        with session_scope() as db:
            leases = {j: db.get(jobs.Job, j).leased_until for j in ids}
        assert leases[first[0]] > jobs.utcnow() + timedelta(minutes=5)  # sent: leased for its age
        assert all(leases[j] <= jobs.utcnow() for j in unsent)  # not sent: due again now
        monkeypatch.setattr(tasks, "send_job", lambda job_id, kind, retry_policy=None: sent.append(job_id))
        assert sorted(tasks.resend_lost_jobs()) == unsent
    finally:
        with session_scope() as db:
            db.execute(delete(jobs.Job).where(jobs.Job.id.in_(ids)))
            db.commit()
