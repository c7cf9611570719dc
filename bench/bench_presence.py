"""What issue 17 (radio scans, capture nonces and receipts, same-capture confirmation) adds per check-in and per
upload, each against the same path without it, measured in the same run on the bench database.

Check-ins go to 500 tasks around Beijing whose radio sites are established the way checkin.learning leaves them
(a full learning window, radio_window = 100, of accepted check-ins per site, each scanning 12 of the site's 24
access points and its 2 cells, learned by the sweep), each on a fresh claim of its own worker (bench_checkin's
seeding). Variants, interleaved call by call in a random order per round (load drifts hit all alike), after 50
untimed calls each:
  - scan: 12 Wi-Fi (10 of the site's, 2 passing hotspots) + 2 cells, and the capture nonce the router issues;
  - no scan (in-process only): today's code without a scan (a browser), with the nonce;
  - baseline: the check-in before issue 17: today's measure and insert statements without the radio reads and
    columns (bench/presence_app.py derives them, so every later change is in both), no scan, no nonce.
checkin_presence_ms / checkin_presence_cpu_ms: in-process (body parsed into CheckinCreate, checkin.service.check_in
in a unit of work, response built and serialised, commit): wall and CPU per call, CPU being this process's plus
its PostgreSQL backend's (bench.common.Meter: /proc, the local cluster only), p50 and p95; a pass with the measure
statement on custom plans and one on a generic plan (see PLAN_MODES).
checkin_presence_http_ms / checkin_presence_http_cpu_ms: POST /v1/claims/{id}/checkins over HTTP, sequential, to
today's API and to the one before issue 17 (one uvicorn process each, generic plans: the write path's pool
plans generically, core.db), interleaved: wall p50 per
request, and CPU per request of each server's process tree and its database backends. Goal: added <= 10 %.
capture_nonce_us: tasks.capture issue + verify of one nonce (CPU, a tight loop).
radio_learn_per_checkin_ms: the beat sweep (checkin.learning.learn, batch 500) over each pass's scanned check-ins,
each sweep seeing a site once (a quiet site: one rebuild per learned check-in); wall, and CPU of this process plus
its backend, per learned check-in.

upload_presence_cpu_ms / upload_presence_cpu_matched_ms: CPU per 12 MP JPEG upload: intake (evidence.intake:
sniff, SHA-256, EXIF, draft decode to the working image, PGM) + the capture receipt's check (parse, tasks.capture
verify, capture time, the single-use lookup on evidence, in a transaction holding the claim's lock as the upload
does; this process and its backend) + processing as bench.bench_phash.process_ours (chrome stripped, eight regions;
per matched pair ORB + RANSAC, fine detail, same-capture decision), against intake + processing before issue 17
(bench.bench_phash.process_previous: six regions, the hash rule), with no stored match and with one.
"""
from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
from sqlalchemy import select, text

from accounts.models import User
from api.views import checkin_read
from bench.bench_checkin import Seeded, seed_claims, seed_tasks
from bench.bench_phash import make_12mp, process_ours, process_previous
from bench.presence_app import PLAN_CACHE_MODE_ENV, before_issue_17, pin_plan_cache_mode
from bench.common import (Meter, Sample, backend_cpu_s, backend_pid, checkpoint, figure, pct, scale, server,
                          use_bench_database)
from checkin import learning
from checkin import service
from checkin.schemas import CheckinCreate
from checkin.settings import get_checkin_settings
from core.config import get_settings
from core.db import UnitOfWork, get_engine, session_scope
from core.reasons import FORCES_SPOT_CHECK
from evidence import capture as receipts
from evidence.decode import MAX_JPEG_PIXELS
from evidence.hashing import grey_file, hash_image, load_grey
from evidence.intake import inspect_upload
from evidence.schemas import CaptureReceipt
from geo.radio import cell_hash, wifi_hash
from sim.cpu import tree_cpu_s
from sim.transforms import crop5
from tasks import capture

SITE_APS, SITE_CELLS = 24, 2  # what a site hears
SCAN_SITE_APS, SCAN_OTHER_APS = 10, 2  # a scan: 12 Wi-Fi (10 of the site's, 2 passing hotspots) + the 2 cells
WARMUP = 50
SWEEP_BATCH = 500  # checkin.learning.learn's default, as the beat calls it (fewer sites: one batch per round)
GOAL_ADDED = 0.10  # issue 17's own claim: the radio reads ride in the existing measure statement
RECEIPTS = 200
# How PostgreSQL plans the prepared measure statement: under the default (auto) it settles per connection and
# statement on a generic plan or a custom plan per call from the first executions, milliseconds apart per
# check-in, by chance; so each variant is measured under both, pinned (bench/presence_app.py), custom plans
# first (the heavier, and the regime the HTTP figures and their goal use).
PLAN_MODES = ("force_custom_plan", "force_generic_plan")
_PLAN_MODE: list[str | None] = [None]  # what pin_plan_cache_mode sets on the bench process's new connections


def _sizes() -> tuple[int, int]:
    """(sites, timed check-ins per variant): 500 and 600 at full scale."""
    return max(50, int(500 * scale())), max(100, int(600 * scale()))


# ---- the radio environment ----------------------------------------------------------------------------------

def _site(task_id: int) -> tuple[list[str], list[dict]]:
    """The access points and cells heard at a task's site (stable per task)."""
    b = task_id.to_bytes(3, "big")
    aps = [f"5c:02:{b[0]:02x}:{b[1]:02x}:{b[2]:02x}:{i:02x}" for i in range(SITE_APS)]
    cells = [{"mcc": 460, "mnc": 0, "tac": 4000 + task_id % 1000, "cid": task_id * 8 + j} for j in range(SITE_CELLS)]
    return aps, cells


def _scan(rng: random.Random, task_id: int) -> dict:
    """One phone's scan at the site: part of its APs, a couple of passing hotspots, its cells."""
    aps, cells = _site(task_id)
    other = [":".join(f"{rng.randrange(256):02x}" for _ in range(6)) for _ in range(SCAN_OTHER_APS)]
    return {"wifi": [{"bssid": mac, "rssi": rng.randint(-90, -40)} for mac in rng.sample(aps, SCAN_SITE_APS) + other],
            "cells": [dict(c, rssi=rng.randint(-110, -70)) for c in cells]}


def _prior_hashes(rng: random.Random, task_id: int) -> list[int]:
    """An accepted earlier check-in's stored scan (12 of the site's APs and its cells), as keyed hashes."""
    aps, cells = _site(task_id)
    return sorted({wifi_hash(a) for a in rng.sample(aps, 12)} | {cell_hash(c["mcc"], c["mnc"], c["tac"], c["cid"])
                                                               for c in cells})


def prior_per_site() -> int:
    """Accepted check-ins per site before the timed ones: a full learning window (a site in steady state)."""
    return get_checkin_settings().radio_window


def _timed(fn) -> tuple[object, float, float]:
    """(result, wall s, CPU s) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def _drain() -> None:
    """Learn the scans an interrupted earlier run left pending, so that the sweeps here see only this run's."""
    while True:
        with session_scope() as db:
            if not learning.learn(db_session=db, batch=10_000):
                return


def establish_sites(tasks: dict[int, tuple[float, float]], rng: random.Random) -> dict:
    """Accepted check-ins with scans at every site, learned by the sweep (checkin.learning) as the beat would."""
    _drain()
    prior = seed_claims(len(tasks) * prior_per_site(), checked_in=True, tasks=tasks)
    with get_engine().begin() as conn:
        rows = conn.execute(text("SELECT id, task_id FROM checkin WHERE claim_id = ANY(:ids)"),
                            {"ids": [s.claim_id for s in prior]}).all()
        conn.execute(text("UPDATE checkin SET radio = :radio, radio_learned = false WHERE id = :id"),
                     [{"id": r[0], "radio": _prior_hashes(rng, r[1])} for r in rows])
    with session_scope() as db:
        learned, wall, _ = _timed(lambda: learning.learn(db_session=db, batch=len(rows)))
    with get_engine().begin() as conn:
        sites = conn.execute(text("SELECT count(*), avg(workers), avg(hashes) FROM radio_site "
                                  "WHERE task_id = ANY(:t)"), {"t": list(tasks)}).one()
        for table in ("checkin", "radio_site", "radio_fingerprint"):
            conn.execute(text(f"ANALYZE {table}"))  # noqa: S608 (constant table names)
    if learned != len(rows) or sites[0] != len(tasks):
        raise RuntimeError(f"sites not established: {learned} of {len(rows)} learned, {sites[0]} sites")
    return {"sites": sites[0], "workers_per_site": round(float(sites[1]), 1),
            "hashes_per_site": round(float(sites[2]), 1), "establishing_sweep_s": round(wall, 2)}


# ---- check-ins ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    name: str
    scan: bool
    nonce: bool
    statements: tuple | None  # (measure, insert) to use instead of today's


@contextmanager
def _statements(v: Variant):
    saved = service._MEASURE, service._INSERT
    if v.statements:
        service._MEASURE, service._INSERT = v.statements
    try:
        yield
    finally:
        service._MEASURE, service._INSERT = saved


def _body(rng: random.Random, s: Seeded, task_id: int, scan: bool) -> bytes:
    """The phone's JSON: a fix ~20 m from the centre, stamped now; with a scan when asked."""
    body = {"lat": s.lat + rng.uniform(-0.0002, 0.0002), "lon": s.lon + rng.uniform(-0.0002, 0.0002),
            "crs": "wgs84", "accuracy_m": round(rng.uniform(5, 30), 1),
            "client_time": datetime.now(timezone.utc).isoformat(), "device_id": f"bench-device-{s.worker_id}",
            "provider": "gps", "platform": "android", "mock_location": False}
    return json.dumps({**body, **(_scan(rng, task_id) if scan else {})}, separators=(",", ":")).encode()


def _check_in(v: Variant, worker: User, claim_id: int, raw: bytes, ip: str):
    """One check-in as the router makes it: parse, check in, nonce (if issued), serialise, commit."""
    def run(session):
        body = CheckinCreate.model_validate_json(raw)
        with UnitOfWork(session) as uow:
            row = service.check_in(db_session=session, worker=worker, claim_id=claim_id, body=body, ip=ip)
            nonce = service.capture_nonce(row) if v.nonce else None
            checkin_read(row, nonce=nonce).model_dump_json()
            pid = backend_pid(session)  # before the commit releases the connection
            uow.commit()
        return row, pid
    return run


def _claims(tasks: dict[int, tuple[float, float]], n: int) -> list[tuple[Seeded, int]]:
    """n fresh claims with their task ids, in worker order: consecutive claims cycle through the sites."""
    seeded = sorted(seed_claims(n, tasks=tasks), key=lambda s: s.worker_id)
    with get_engine().connect() as conn:
        task_of = dict(conn.execute(text("SELECT id, task_id FROM claim WHERE id = ANY(:ids)"),
                                    {"ids": [s.claim_id for s in seeded]}).all())
    return [(s, task_of[s.claim_id]) for s in seeded]


def _workers(claims: list[tuple[Seeded, int]]) -> dict[int, User]:
    with session_scope() as db:
        users = db.scalars(select(User).where(User.id.in_([s.worker_id for s, _ in claims]))).all()
        return {u.id: u for u in users}  # loaded, then detached: the service reads only ids


def run_checkins(tasks: dict[int, tuple[float, float]], n: int, rng: random.Random,
                 mode: str) -> tuple[dict, int, list, int]:
    """Interleaved timed check-ins of the three variants on a fresh connection planning with ``mode``; returns
    ({name: Sample}, honest scans flagged, how the measure statements were planned, honest scans a chance
    coordinate repeat made unlearnable)."""
    variants = [Variant("scan", True, True, None), Variant("no_scan", False, True, None),
                Variant("baseline", False, False, before_issue_17())]
    claims = {v.name: _claims(tasks, WARMUP + n) for v in variants}
    users = _workers([c for cs in claims.values() for c in cs])
    samples, flagged, meter = {v.name: Sample.empty() for v in variants}, 0, Meter()
    chance_repeats = 0  # honest scans a chance coordinate repeat made unlearnable
    _PLAN_MODE[0] = mode
    get_engine().dispose()  # the next connection plans with ``mode`` (and prepares its statements afresh)
    checkpoint()
    for i in range(WARMUP + n):
        for v in rng.sample(variants, len(variants)):
            s, task_id = claims[v.name][i]
            raw = _body(rng, s, task_id, v.scan)
            with _statements(v):
                row = meter.call(samples[v.name] if i >= WARMUP else None,
                                 _check_in(v, users[s.worker_id], s.claim_id, raw, f"10.{s.worker_id >> 16 & 255}."
                                           f"{s.worker_id >> 8 & 255}.{s.worker_id & 255}"))
            if v.scan and ("radio_mismatch" in row.reasons or row.radio_learned is not False):
                # An honest scan at an established site must pass and be learnable, unless a chance coordinate
                # repeat made it unlearnable: the seeded fixes and these fall on the same 6-decimal grid around a
                # site, so ~1 in 1,600 of these repeats a seeded fix exactly (exact_coordinate_repeat, hard), as it
                # should. Any other hard signal on an honest scan is a failure.
                if set(row.reasons) & FORCES_SPOT_CHECK == {"exact_coordinate_repeat"}:
                    chance_repeats += 1
                else:
                    flagged += 1
    if meter.switched:
        print(f"[bench_presence] {meter.switched} calls ran on another connection", file=sys.stderr)
    plans = meter.call(None, _plans)
    _PLAN_MODE[0] = None
    get_engine().dispose()
    return samples, flagged, plans, chance_repeats


def _plans(db) -> tuple[list[dict], int]:
    """How PostgreSQL planned the measure statements on this connection (generic or custom plans)."""
    rows = db.execute(text("""
        SELECT statement LIKE '%FROM radio_site%', generic_plans, custom_plans FROM pg_prepared_statements
         WHERE statement LIKE '%FOR UPDATE OF c%' ORDER BY 1""")).all()
    return [{"statement": "now" if r[0] else "before", "generic_plans": r[1], "custom_plans": r[2]}
            for r in rows], backend_pid(db)


def _tree_and_backends_cpu_s(pid: int, appname: str) -> dict[int, float]:
    """CPU seconds of a server's process tree (key 0) and of each of its database backends (key: backend pid)."""
    with get_engine().connect() as conn:
        backends = conn.scalars(text("SELECT pid FROM pg_stat_activity WHERE application_name = :a"),
                                {"a": appname}).all()
    return {0: tree_cpu_s(pid), **{b: backend_cpu_s(b) or 0.0 for b in backends}}


def _http_cpu_s(before: dict[int, float], after: dict[int, float]) -> tuple[float, float]:
    """(API, PostgreSQL) CPU seconds between two readings (a backend opened in between counts from 0)."""
    db = sum(v - before.get(k, 0.0) for k, v in after.items() if k)
    return after[0] - before[0], db


def run_http(tasks: dict[int, tuple[float, float]], n: int, rng: random.Random) -> tuple[dict, int]:
    """Sequential POST /v1/claims/{id}/checkins to today's API (scan + nonce) and to the one before issue 17
    (bench/presence_app.py), one uvicorn process each (their check-ins go through the write path's pool, which plans
    generically, core.db; the pin to the first of PLAN_MODES holds for their other connections), interleaved at
    random; wall per request and CPU per request of each server's process and its database
    backends (told apart by PGAPPNAME). Returns ({name: ms dict}, failed)."""
    claims = {"scan": _claims(tasks, WARMUP + n), "baseline": _claims(tasks, WARMUP + n)}
    apps = {"scan": "bench.presence_app:app", "baseline": "bench.presence_app:pre17"}
    wall, failed = {k: [] for k in apps}, 0
    env = {k: {"PGAPPNAME": f"bench_presence_{k}", PLAN_CACHE_MODE_ENV: PLAN_MODES[0]} for k in apps}
    with server(apps["scan"], 1, env["scan"]) as now, server(apps["baseline"], 1, env["baseline"]) as before, \
            httpx.Client(timeout=30) as client:
        bases = {"scan": now, "baseline": before}

        def one(name: str, i: int) -> None:
            nonlocal failed
            s, task_id = claims[name][i]
            headers = {"Authorization": f"Bearer {s.token}", "Idempotency-Key": uuid.uuid4().hex,
                       "Content-Type": "application/json"}
            raw = _body(rng, s, task_id, name == "scan")
            t0 = time.perf_counter()
            r = client.post(f"{bases[name]}/v1/claims/{s.claim_id}/checkins", content=raw, headers=headers)
            if i >= WARMUP:
                wall[name].append(time.perf_counter() - t0)
            ok = r.status_code == 201 and (name == "baseline" or (
                r.json()["capture_nonce"] and "radio_mismatch" not in r.json()["reasons"]))
            failed += not ok

        for i in range(WARMUP):
            for name in rng.sample(list(apps), 2):
                one(name, i)
        checkpoint()
        start = {k: _tree_and_backends_cpu_s(b.pid, f"bench_presence_{k}") for k, b in bases.items()}
        for i in range(WARMUP, WARMUP + n):
            for name in rng.sample(list(apps), 2):
                one(name, i)
        end = {k: _tree_and_backends_cpu_s(b.pid, f"bench_presence_{k}") for k, b in bases.items()}
    out = {}
    for k in apps:
        api, db = _http_cpu_s(start[k], end[k])
        out[k] = {"wall_p50": pct(wall[k], 50) * 1000, "wall_p95": pct(wall[k], 95) * 1000,
                  "api_cpu_mean": api / n * 1000, "db_cpu_mean": db / n * 1000, "cpu_mean": (api + db) / n * 1000}
        out[k] = {m: round(v, 3) for m, v in out[k].items()}
    return out, failed


def run_sweep(tasks: dict[int, tuple[float, float]]) -> dict:
    """The beat sweep over the scanned check-ins just made (they cycle through the sites, and a batch is at most
    one round of them, so each sweep rebuilds one site per learned check-in): cost per learned check-in."""
    batch = min(SWEEP_BATCH, len(tasks))
    with get_engine().connect() as conn:
        batches = conn.execute(text("""
            SELECT count(DISTINCT task_id), count(*) FROM (
              SELECT task_id, (row_number() OVER (ORDER BY id) - 1) / :batch AS b
                FROM checkin WHERE radio_learned = false) x GROUP BY b"""), {"batch": batch}).all()

    def sweep(db):
        pid = backend_pid(db)  # checks out the connection the sweep then uses
        return learning.learn(db_session=db, batch=batch), pid

    sample, meter, learned = Sample.empty(), Meter(), 0
    meter.call(None, lambda db: (db.execute(text("SELECT 1")), backend_pid(db)))  # which backend the pool gives
    while True:
        got = meter.call(sample, sweep)
        if not got:
            break
        learned += got
    sample.wall.pop(), sample.cpu.pop()  # the last, empty sweep
    if sample.db_cpu:
        sample.db_cpu.pop()
    sites = sum(b[0] for b in batches)
    return {"learned": learned, "sweeps": len(sample.wall), "batch": batch, "sites_rebuilt": sites,
            "wall_s": sum(sample.wall), "cpu_s": sum(sample.cpu), "db_cpu_s": sum(sample.db_cpu)}


def nonce_us() -> tuple[float, float]:
    """CPU µs of one tasks.capture issue and one verify."""
    now, n = datetime.now(timezone.utc), 20000
    c0 = time.process_time()
    nonces = [capture.issue(1000 + i, now)[0] for i in range(n)]
    c1 = time.process_time()
    for i, x in enumerate(nonces):
        capture.verify(x, 1000 + i, now)
    c2 = time.process_time()
    return (c1 - c0) / n * 1e6, (c2 - c1) / n * 1e6


# ---- uploads ------------------------------------------------------------------------------------------------

def run_receipts(claim: Seeded, n: int) -> tuple[Sample, int]:
    """The capture receipt's check per upload (parse, verify, capture and EXIF time, single-use lookup) inside a
    transaction that holds the claim's lock, as evidence.service.upload runs it; returns (sample, refused)."""
    sample, refused = Sample.empty(), 0
    for i in range(WARMUP + n):
        now = datetime.now(timezone.utc)
        nonce, _ = capture.issue(claim.claim_id, now - timedelta(seconds=60))
        raw = json.dumps({"nonce": nonce, "captured_at": (now - timedelta(seconds=30)).isoformat()})
        exif = {"capture_time": (now - timedelta(seconds=28)).isoformat()}
        with session_scope() as db:
            db.execute(text("SELECT id FROM claim WHERE id = :c FOR UPDATE"), {"c": claim.claim_id})
            pid = backend_pid(db)
            db0 = backend_cpu_s(pid)
            got, wall, cpu = _timed(lambda: receipts.check(db, claim_id=claim.claim_id, allow_gallery=True, exif=exif,
                                                          receipt=CaptureReceipt.model_validate_json(raw), now=now))
            db1 = backend_cpu_s(pid)
            db.rollback()
        refused += not got.verified
        if i >= WARMUP:
            sample.add(wall, cpu, None if db0 is None or db1 is None else db1 - db0)
    return sample, refused


def _cpu_each(fn, args: list[tuple]) -> list[float]:
    """CPU seconds of ``fn(*a)`` for each ``a`` (after one untimed call)."""
    fn(*args[0])
    return [_timed(lambda a=a: fn(*a))[2] for a in args]


def run_processing(paths: list[Path]) -> dict:
    """Mean CPU ms of intake and of processing (ours, before issue 17) per upload, plain and matched."""
    limit = get_settings().max_upload_bytes
    intake = _cpu_each(lambda p: grey_file(inspect_upload(p, max_bytes=limit, max_pixels=MAX_JPEG_PIXELS).grey),
                       [(p,) for p in paths])
    greys = [grey_file(load_grey(p.read_bytes())) for p in paths]  # the stored working images
    copies = [grey_file(load_grey(grey_file(crop5(load_grey(p.read_bytes()))))) for p in paths]
    cases = {"plain": [(g, []) for g in greys],
             "matched": [(c, [(g, hash_image(g))]) for c, g in zip(copies, greys)]}
    out = {"intake": statistics.fmean(intake) * 1000}
    for name, args in cases.items():
        out[f"ours_{name}"] = statistics.fmean(_cpu_each(process_ours, args)) * 1000
        out[f"before_{name}"] = statistics.fmean(_cpu_each(process_previous, args)) * 1000
    return out


def _upload_figures(proc: dict, receipt: dict, refused: int) -> dict:
    out = {}
    r = receipt["cpu_p50"]
    for name, label in (("plain", "no stored match"), ("matched", "one matched stored file")):
        ours = proc["intake"] + r + proc[f"ours_{name}"]
        before = proc["intake"] + proc[f"before_{name}"]
        work = proc[f"ours_{name}"] - proc[f"before_{name}"]
        what = "chrome stripping, 8 regions" + (", ORB + fine detail + decision" if name == "matched" else "")
        out[f"upload_presence_cpu{'' if name == 'plain' else '_matched'}_ms"] = figure(
            ours, "ms", before, False,
            f"CPU per 12 MP upload, {label} (intake + receipt + processing); added {ours - before:.1f} ms "
            f"({(ours - before) / before * 100:.0f} %) vs before issue 17: receipt {r * 1000:.0f} µs, {what} "
            f"{work:.1f} ms", errors=refused,
            detail={"intake_ms": round(proc["intake"], 2), "receipt": receipt,
                    "processing_ms": round(proc[f"ours_{name}"], 2),
                    "processing_before_ms": round(proc[f"before_{name}"], 2),
                    "added_ms": round(ours - before, 2)})
    return out


# ---- figures ------------------------------------------------------------------------------------------------

ADDED = "with 12 Wi-Fi + 2 cells at an established site and the capture nonce"


def _added(ours: float, base: float) -> str:
    return f"added {(ours - base) * 1000:.0f} µs ({(ours - base) / base * 100:+.1f} %)"


def _checkin_figures(inproc: dict[str, dict[str, Sample]], http: dict, errors: int, context: dict) -> dict:
    ms = {mode: {name: s.ms() for name, s in samples.items()} for mode, samples in inproc.items()}
    custom, generic = (ms[m] for m in PLAN_MODES)
    out = {}
    for fig, key, what in (("checkin_presence_ms", "wall_p50", "wall p50"),
                           ("checkin_presence_cpu_ms", "cpu_p50", "CPU p50, process + PostgreSQL backend")):
        p95 = key.replace("50", "95")
        out[fig] = figure(
            custom["scan"][key], "ms", custom["baseline"][key], False,
            f"reference: the service call in-process ({what}); {_added(custom['scan'][key], custom['baseline'][key])}"
            f" with custom plans, {_added(generic['scan'][key], generic['baseline'][key])} with a generic plan, "
            f"{ADDED}", errors=errors,
            detail={**ms, **context, "added_us_p95": {m: round((ms[m]["scan"][p95] - ms[m]["baseline"][p95]) * 1000)
                                                      for m in PLAN_MODES}})
    goal = f"added <= {GOAL_ADDED:.0%} of the HTTP check-in before issue 17"
    for fig, key, what in (("checkin_presence_http_ms", "wall_p50", "wall p50"),
                           ("checkin_presence_http_cpu_ms", "cpu_mean", "CPU mean, API + PostgreSQL")):
        ours, before = http["scan"][key], http["baseline"][key]
        out[fig] = figure(ours, "ms", before, False, f"{goal} ({what}); {_added(ours, before)} {ADDED}",
                          min_ratio=1 / (1 + GOAL_ADDED), errors=errors,
                          detail={**http, "plan_cache_mode": PLAN_MODES[0], **context})
    return out


def _sweep_figure(sweep: dict, http: dict) -> dict:
    per = {k: sweep[k] / max(1, sweep["learned"]) * 1000 for k in ("wall_s", "cpu_s", "db_cpu_s")}
    share = per["cpu_s"] / http["baseline"]["cpu_mean"] * 100
    return figure(per["wall_s"], "ms", None, False,
                  f"reference: beat sweep per learned check-in, one site rebuild each (window {prior_per_site()}), "
                  f"off the write path; CPU {per['cpu_s']:.2f} ms (process + backend), {share:.0f} % of an HTTP "
                  "check-in's", detail={**sweep, **{f"{k[:-2]}_ms_per_checkin": round(v, 3) for k, v in per.items()}})


def run() -> dict:
    """Check-ins with and without a scan (in-process and over HTTP), the sweep, nonces, and uploads."""
    use_bench_database()
    pin_plan_cache_mode(get_engine(), lambda: _PLAN_MODE[0])
    rng = random.Random(17)
    n_sites, n = _sizes()
    tasks = seed_tasks(n_sites, prior_per_site() + 8 * (WARMUP + n) // n_sites + 2)
    context = {"calls_per_variant": n, **establish_sites(tasks, rng)}
    inproc, flagged, sweeps = {}, 0, []
    for mode in PLAN_MODES:  # each pass's scans swept before the next, so each sweep sees a site once
        inproc[mode], bad, context[f"plans_{mode}"], context[f"chance_coordinate_repeats_{mode}"] = run_checkins(
            tasks, n, rng, mode)
        flagged += bad
        sweeps.append(run_sweep(tasks))
    sweep = {k: sum(s[k] for s in sweeps) if k != "batch" else sweeps[0][k] for k in sweeps[0]}
    http, failed = run_http(tasks, n, rng)
    issued, verified = nonce_us()
    receipt, refused = run_receipts(seed_claims(1, checked_in=True, tasks=tasks)[0], RECEIPTS)
    with tempfile.TemporaryDirectory() as tmp:
        proc = run_processing(make_12mp(Path(tmp), max(6, int(20 * scale()))))
    print(f"[bench_presence] in-process {json.dumps({m: {k: s.ms() for k, s in v.items()} for m, v in inproc.items()})}"
          f"; http {json.dumps(http)}; sweep {sweep}", file=sys.stderr)
    return {
        **_checkin_figures(inproc, http, flagged + failed, context),
        "capture_nonce_us": figure(issued + verified, "µs", None, False,
                                   f"reference: tasks.capture issue ({issued:.1f} µs) + verify ({verified:.1f} µs) "
                                   "of one nonce, CPU", detail={"issue_us": round(issued, 2),
                                                                "verify_us": round(verified, 2)}),
        "radio_learn_per_checkin_ms": _sweep_figure(sweep, http),
        **_upload_figures(proc, receipt.ms(), refused),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
