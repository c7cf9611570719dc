"""The benchmark harness itself: failures fail a figure, wrk's script sends each request once and counts non-2xx,
the simulator's CPU meter reads process trees, README's table comes from results.json."""
from __future__ import annotations

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench import wrk
from bench.common import figure
from bench.readme import BEGIN, END, rendered
from sim.cpu import CpuMeter, tree_cpu_s


def test_errors_make_a_met_goal_unmet_and_ratios_point_up():
    assert figure(100, "req/s", 200, True, "g", min_ratio=0.3)["met"] is True
    failed = figure(100, "req/s", 200, True, "g", min_ratio=0.3, errors=3)
    assert failed["met"] is False and failed["errors"] == 3
    assert figure(50, "ms", 100, False, "g")["ratio"] == 2.0  # times: baseline / ours
    assert figure(5, "ms", None, False, "no goal")["met"] is None


class _Recorder(BaseHTTPRequestHandler):
    keys: list[str] = []
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            self.keys.append(self.headers["Idempotency-Key"])
        status = 500 if self.path.endswith("/fail") else 201
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder():
    _Recorder.keys = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


@pytest.mark.skipif(not wrk.available(), reason="wrk not installed (make wrk)")
def test_wrk_sends_each_request_once_and_counts_failures(recorder):
    reqs = [wrk.Req("POST", "/fail" if i % 10 == 0 else f"/ok/{i}", {"Idempotency-Key": f"k{i}"}, '{"i":%d}' % i)
            for i in range(200_000)]
    r = wrk.run(recorder, reqs, 1, connections=4)
    assert r.requests > 50 and r.wrapped == 0
    assert len(_Recorder.keys) == len(set(_Recorder.keys))  # threads take disjoint requests, none repeated
    assert r.non2xx > 0 and r.failed >= r.non2xx
    assert 0 < r.latency_ms["p50"] <= r.latency_ms["p99"]


@pytest.mark.skipif(not wrk.available(), reason="wrk not installed (make wrk)")
def test_wrk_counts_replays_as_failures(recorder):
    reqs = [wrk.Req("POST", f"/ok/{i}", {"Idempotency-Key": f"k{i}"}, "{}") for i in range(10)]
    r = wrk.run(recorder, reqs, 1, connections=2)
    assert r.non2xx == 0 and r.wrapped > 0 and r.failed >= r.wrapped


def test_cpu_meter_counts_reaped_children_of_a_tree():
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    parent = ("import subprocess, sys, time; time.sleep(0.5); subprocess.run([sys.executable, '-c', %r]); "
              "print('done', flush=True); "
              "time.sleep(60)" % spin)
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    try:
        meter = CpuMeter({"tree": proc.pid}).start()
        assert proc.stdout.readline().strip() == "done"
        assert meter.stop()["tree"] >= 0.3  # the child's CPU, now in its parent's cutime
    finally:
        proc.kill()
        proc.wait()
    assert tree_cpu_s(proc.pid) == 0.0  # a process that is gone reads 0


def test_readme_table_is_replaced_between_markers():
    doc = {"machine": {"cpus": 2, "memory_gb": 1.0, "platform": "x", "python": "3.11", "host": "h"},
           "results": {"f": {"value": 1.0, "unit": "s", "baseline": None, "ratio": None, "goal": "g", "met": True,
                             "errors": 0, "measured_at": "2026-01-01T00:00:00+00:00",
                             "machine": {"host": "h", "cpus": 2, "memory_gb": 1.0}}}}
    text = f"intro\n{BEGIN}\nold table\n{END}\nafter\n"
    once = rendered(text, doc)
    assert "old table" not in once and "| f | 1 | s |" in once and once.endswith(f"{END}\nafter\n")
    assert rendered(once, doc) == once


def test_a_figure_with_errors_fails_the_run_and_keeps_older_figures(tmp_path, monkeypatch):
    import json

    from bench import run

    (tmp_path / "fake_bench.py").write_text(
        "from bench.common import figure\n"
        "def run():\n"
        "    return {'fake': figure(5, 'req/s', 10, True, 'g', min_ratio=0.1, errors=2)}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(run, "OUT", tmp_path)
    (tmp_path / "results.json").write_text(json.dumps(
        {"machine": {"cpus": 2}, "results": {"older": {"value": 1, "unit": "s", "goal": "g", "met": True}}}))
    assert run.main(["fake_bench"]) == 1
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["results"]["fake"]["met"] is False and doc["results"]["fake"]["measured_at"]
    assert doc["results"]["older"]["machine"] == {"cpus": 2}  # kept, with the machine it was measured on
    assert "(2 errors)" in (tmp_path / "results.md").read_text()


def test_the_simulated_days_baseline_is_the_service_before_issue_15_with_only_the_cpu_meter_added(tmp_path):
    """bench.bench_sim measures its baseline in the same run: BASELINE_COMMIT checked out beside this tree, with the
    CPU meter of CPU_METER_COMMIT applied (nothing else changed), this tree's .data linked so it finds the servers."""
    from bench import bench_sim
    from core.config import ROOT

    if not bench_sim.baseline_commits_present():
        pytest.skip("this checkout lacks the baseline's history (a shallow clone): the bench cannot build it either")
    tree = tmp_path / "baseline"
    try:
        bench_sim.baseline_tree(tree)
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tree, capture_output=True, text=True).stdout
        assert head.startswith(bench_sim.BASELINE_COMMIT)
        changed = subprocess.run(["git", "status", "--porcelain"], cwd=tree, capture_output=True, text=True).stdout
        assert sorted(line[3:] for line in changed.splitlines()) == [
            ".data", "sim/cpu.py", "sim/driver.py", "sim/report.py", "sim/stack.py"]
        assert "CpuMeter" in (tree / "sim" / "driver.py").read_text()
        assert "def tree_cpu_s" in (tree / "sim" / "cpu.py").read_text()
        assert (tree / ".data").resolve() == (ROOT / ".data").resolve()
        assert not (tree / "evidence" / "features.py").exists()  # the pipeline as it was, before the pixel checks
    finally:
        bench_sim.remove_tree(tree)
    listed = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout
    assert str(tree) not in listed


def test_sim_baseline_days_pool_their_cpu_and_requests():
    """Two baseline days are one figure: total CPU over total requests (not the mean of two ratios), per process
    too; errors of either day count."""
    from bench.bench_sim import _pooled

    def day(requests, by_process, **errors):
        return {"cpu": {"simulated_requests": requests, "run_s": sum(by_process.values()),
                        "run_by_process_s": by_process, "per_request_ms": 1000 * sum(by_process.values()) / requests},
                "errors_5xx": errors.get("x5", 0), "transport_errors": 0, "evidence_unprocessed": errors.get("u", 0)}

    pooled = _pooled(day(1000, {"api": 20.0, "worker": 10.0}), day(3000, {"api": 40.0, "postgres": 10.0}, u=2))
    assert pooled["cpu"]["simulated_requests"] == 4000 and pooled["cpu"]["run_s"] == 80.0
    assert pooled["cpu"]["per_request_ms"] == 20.0  # not the mean of 30 and 16.67
    assert pooled["cpu"]["run_by_process_s"] == {"api": 60.0, "worker": 10.0, "postgres": 10.0}
    assert pooled["cpu"]["days_per_request_ms"] == [30.0, 50.0 / 3] and pooled["evidence_unprocessed"] == 2
