"""CLI verbs that read the database: demo, checkin explain (run against the test transaction)."""
from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import func, select

from api.cli import build_parser
from ledger import service as ledger
from tasks import demo
from tasks.models import Task
from tests.fieldwork import STORE, claimed, fix


def _use(db, monkeypatch):
    @contextmanager
    def scope():
        yield db

    monkeypatch.setattr("core.db.session_scope", scope)


def test_demo_loads_once_and_balances(db):
    first = demo.load(db_session=db)
    again = demo.load(db_session=db)
    assert first == again
    n = db.scalar(select(func.count()).select_from(Task).where(Task.merchant_id == first["merchant_demo"],
                                                               Task.state == "published"))
    assert n == len(demo.DEMO_TASKS)
    assert ledger.check(db) == []


def test_checkin_explain_prints_every_signal(client, db, monkeypatch, capsys):
    _, claim, w, _ = claimed(client, db)
    client.post(f"/v1/claims/{claim['id']}/checkins", json=fix(STORE[0], STORE[1], accuracy_m=0, mock_location=True),
                headers=w)
    _use(db, monkeypatch)
    args = build_parser().parse_args(["checkin", "explain", str(claim["id"])])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "[mock_location]" in out and "[accuracy_zero]" in out and "[at_fence_center]" in out and "inside" in out


def test_make_run_refuses_a_taken_port_with_a_non_zero_exit():
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**__import__("os").environ, "FIELDPROOF_API_PORT": str(port), "FIELDPROOF_API_HOST": "127.0.0.1"}
        run = subprocess.run([sys.executable, "-m", "api.supervise"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert run.returncode == 2
    assert f"port {port}" in run.stderr and "already in use" in run.stderr
    assert "Fieldproof is up" not in run.stdout
