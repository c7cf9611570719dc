"""The day's report: throughput, 5xx, and how well the service caught each labelled fraud kind."""
from __future__ import annotations

import json
from collections import Counter, defaultdict

from sim.agents import FRAUD_KINDS, HONEST
from tasks.acceptance import ALWAYS_SAMPLE

# A claim counts as flagged when ops would always see it (a hard flag) or its score reaches the weight of a
# single standalone signal (25: short dwell); weaker contextual signals (shared IP 15, clock skew 20) alone do not.
FLAG_SCORE = 25
DUP_FLAGS = {"duplicate_evidence", "exact_duplicate_evidence"}


def flagged(claim: dict, ignore: set[str] = frozenset()) -> bool:
    """The report's notion of 'flagged' for one claim (optionally ignoring some flags)."""
    flags = set(claim["flags"]) - ignore
    return bool(flags & ALWAYS_SAMPLE) or (claim["risk_score"] >= FLAG_SCORE and bool(flags))


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 3) if b else None


def build(data: dict) -> dict:
    """Numbers only (JSON-ready)."""
    claims, visits, stats, t = data["claims"], data["visits"], data["stats"], data["timings"]
    kind_of = {w.s.username: w.kind for w in data["workers"]}
    by_kind_workers = Counter(kind_of.values())
    per_kind = defaultdict(lambda: {"claims": 0, "claims_flagged": 0, "reasons": Counter(), "workers_flagged": set()})
    honest_reasons, honest_flagged_workers, honest_claims = Counter(), set(), 0
    honest_flagged_claims: list[dict] = []
    risk_tp = risk_fp = risk_fn = dup_tp = dup_fp = dup_fn = 0
    for v in visits:
        c = claims.get(v.claim_id)
        if c is None or not v.submitted:
            continue
        fraud_claim = v.kind != HONEST and (v.kind != "photo_reuser" or bool(v.reused_photos))
        is_flagged, dup = flagged(c), bool(set(c["flags"]) & DUP_FLAGS)
        risk_flag = flagged(c, ignore=DUP_FLAGS)
        gps_fraud = v.kind in ("gps_spoofer_mock", "gps_spoofer_hidden", "checkin_and_leave", "device_farm")
        risk_tp += risk_flag and gps_fraud
        risk_fp += risk_flag and not gps_fraud
        risk_fn += gps_fraud and not risk_flag
        reused = bool(v.reused_photos)
        dup_tp += dup and reused
        dup_fp += dup and not reused
        dup_fn += reused and not dup
        if v.kind == HONEST:
            honest_claims += 1
            honest_reasons.update(c["flags"])
            if is_flagged:
                honest_flagged_workers.add(v.worker)
                honest_flagged_claims.append({"worker": v.worker, "claim": v.claim_id, "flags": c["flags"]})
            continue
        if not fraud_claim:
            continue
        k = per_kind[v.kind]
        k["claims"] += 1
        k["claims_flagged"] += is_flagged
        k["reasons"].update(c["flags"])
        if is_flagged:
            k["workers_flagged"].add(v.worker)
    kinds = {}
    for kind in FRAUD_KINDS:
        k = per_kind[kind]
        kinds[kind] = {"workers": by_kind_workers[kind], "workers_flagged": len(k["workers_flagged"]),
                       "worker_recall": _ratio(len(k["workers_flagged"]), by_kind_workers[kind]),
                       "claims": k["claims"], "claims_flagged": k["claims_flagged"],
                       "claim_recall": _ratio(k["claims_flagged"], k["claims"]),
                       "by_reason": dict(k["reasons"].most_common())}
    day_s = t["day_s"]
    return {
        "cpu": cpu_summary(data.get("cpu", {}), t, data["evidence_unprocessed"]),
        "seed": data["seed"], "hours": data["hours"], "clock_rate": round(data["rate"], 2),
        "duration_s": {k: round(v, 1) for k, v in t.items() if k.endswith("_s")},
        "requests": stats.total, "requests_per_s_day": round(t["day_requests"] / day_s, 1) if day_s else None,
        "requests_per_s_overall": round(stats.total / t["total_s"], 1),
        "by_endpoint": dict(sorted(stats.by_route.items())), "by_status": {str(k): v for k, v in
                                                                           sorted(stats.by_status.items())},
        "errors_5xx": len(stats.errors_5xx), "errors_5xx_samples": stats.errors_5xx[:5],
        "transport_errors": stats.transport_errors, "transport_error_samples": stats.transport_error_samples,
        "agent_failures": data["failures"][:20],
        "evidence_unprocessed": data["evidence_unprocessed"],
        "claims_total": len(claims), "claims_by_state": dict(Counter(c["state"] for c in claims.values())),
        "ledger_check": data["ledger"],
        "storage": storage_summary(data["storage"], data.get("workers_n") or 0, data["hours"]),
        "merchants": {"confirmed": sum(m.confirmed for m in data["merchants"]),
                      "rejected": sum(m.rejected for m in data["merchants"]),
                      "lazy": sum(m.lazy for m in data["merchants"])},
        "spot_checks": {"passed": data["ops"].passed, "failed": data["ops"].failed},
        "fraud": kinds,
        **by_label(visits, data.get("labelled", {})),
        "honest": {"workers": by_kind_workers[HONEST], "workers_flagged": len(honest_flagged_workers),
                   "flagged_share": _ratio(len(honest_flagged_workers), by_kind_workers[HONEST]),
                   "claims": honest_claims, "signals_seen": dict(honest_reasons.most_common()),
                   "flagged_claims": honest_flagged_claims},
        "risk_score": {"precision": _ratio(risk_tp, risk_tp + risk_fp), "recall": _ratio(risk_tp, risk_tp + risk_fn),
                       "tp": risk_tp, "fp": risk_fp, "fn": risk_fn},
        "duplicate_detection": {"precision": _ratio(dup_tp, dup_tp + dup_fp), "recall": _ratio(dup_tp, dup_tp + dup_fn),
                                "tp": dup_tp, "fp": dup_fp, "fn": dup_fn},
    }


def by_label(visits, labelled: dict[int, dict]) -> dict:
    """Per re-use transform: uploads and how many were caught as duplicates; honest same-scene photos: how many
    were (wrongly) flagged as duplicates and how many were noted same_scene."""
    reuse, scene = defaultdict(lambda: {"uploads": 0, "caught": 0}), {"uploads": 0, "flagged_duplicate": 0,
                                                                       "noted_same_scene": 0}
    for v in visits:
        for eid, label in v.labelled:
            reasons = set(labelled.get(eid, {}).get("reasons", []))
            dup = bool(reasons & DUP_FLAGS)
            if label == "same_scene":
                scene["uploads"] += 1
                scene["flagged_duplicate"] += dup
                scene["noted_same_scene"] += "same_scene" in reasons
            else:
                r = reuse[label.split(":", 1)[1]]
                r["uploads"] += 1
                r["caught"] += dup
    return {"reuse_by_transform": dict(sorted(reuse.items())), "same_scene_honest": scene}


def cpu_summary(cpu: dict[str, dict[str, float]], t: dict, unprocessed: int) -> dict:
    """CPU seconds of the service (API, Celery worker, beat, local PostgreSQL and Redis) per simulated request.

    ``per_request_ms``: CPU from a healthy stack until the day's uploads are all processed (so the hashing backlog
    the day left is counted; the clean-up and read-back after it are not) over the requests the agents made in
    setup and day. ``day_per_request_ms``: the day window alone. ``complete`` is false when the backlog was not
    processed within the drain limit (the figure then undercounts).
    """
    run, day = cpu.get("run", {}), cpu.get("day", {})
    simulated = t.get("setup_requests", 0) + t.get("day_requests", 0)
    run_s, day_s = sum(run.values()), sum(day.values())
    return {"run_s": round(run_s, 1), "run_by_process_s": run, "day_s": round(day_s, 1), "day_by_process_s": day,
            "simulated_requests": simulated,
            "per_request_ms": round(1000 * run_s / simulated, 2) if simulated and run else None,
            "complete": unprocessed == 0, "worker_tasks": cpu.get("worker_tasks", {}),
            "day_per_request_ms": round(1000 * day_s / t["day_requests"], 2) if t.get("day_requests") and day
            else None}


def storage_summary(st: dict, workers: int, hours: float) -> dict:
    """Bytes the day left, and the same scaled to 1,000 workers working an 8-hour day (the capacity plan's unit)."""
    scale = (1000 / workers) * (8 / hours) if workers and hours else 0.0
    mb = 1024 * 1024
    return {**st, "per_1000_workers_day_mb": {"database": round(st["db_bytes"] * scale / mb, 1),
                                              "evidence": round(st["evidence_bytes"] * scale / mb, 1)}}


def render(rep: dict) -> str:
    """The human table."""
    d = rep["duration_s"]
    lines = [f"Simulated {rep['hours']} h (clock x{rep['clock_rate']}, seed {rep['seed']}) in {d['total_s']} s "
             f"(startup {d['startup_s']}, setup {d['setup_s']}, day {d['day_s']}, drain {d['drain_s']})",
             f"Requests {rep['requests']}  ({rep['requests_per_s_day']} req/s during the day, "
             f"{rep['requests_per_s_overall']} overall)  5xx: {rep['errors_5xx']}  transport errors: "
             f"{rep['transport_errors']}  evidence unprocessed: {rep['evidence_unprocessed']}",
             f"Ledger check: {'ok' if rep['ledger_check']['ok'] else 'FAILED'} — {rep['ledger_check']['output']}",
             _cpu_line(rep["cpu"]),
             f"Storage per 1,000 workers per 8-hour day: database {rep['storage']['per_1000_workers_day_mb']['database']} MB, "
             f"evidence files {rep['storage']['per_1000_workers_day_mb']['evidence']} MB",
             "", f"{'endpoint':<48}{'count':>8}"]
    lines += [f"{route:<48}{n:>8}" for route, n in rep["by_endpoint"].items()]
    lines += ["", f"Claims by state: {rep['claims_by_state']}", f"Merchants: {rep['merchants']}  "
              f"Spot checks: {rep['spot_checks']}", "",
              f"{'kind':<22}{'workers':>8}{'caught':>8}{'recall':>8}{'claims':>8}{'flagged':>8}{'recall':>8}  reasons"]
    for kind, k in rep["fraud"].items():
        reasons = ", ".join(f"{r} {n}" for r, n in k["by_reason"].items())
        lines.append(f"{kind:<22}{k['workers']:>8}{k['workers_flagged']:>8}{_fmt(k['worker_recall']):>8}"
                     f"{k['claims']:>8}{k['claims_flagged']:>8}{_fmt(k['claim_recall']):>8}  {reasons}")
    h = rep["honest"]
    lines += [f"{'honest':<22}{h['workers']:>8}{h['workers_flagged']:>8}{_fmt(h['flagged_share']):>8}"
              f"{h['claims']:>8}{'':>8}{'':>8}  signals seen: {h['signals_seen']}"]
    lines += [f"  honest but flagged: {f['worker']} claim {f['claim']}: {', '.join(f['flags'])}"
              for f in h["flagged_claims"]]
    scene = rep["same_scene_honest"]
    lines += [f"  honest same-scene photos (a storefront photographed before): {scene['uploads']}, flagged as "
              f"duplicates {scene['flagged_duplicate']}, noted same_scene {scene['noted_same_scene']}",
              "  re-used photos caught by transform: " + ", ".join(
                  f"{t} {r['caught']}/{r['uploads']}" for t, r in rep["reuse_by_transform"].items())]
    lines += ["",
              f"Risk score (check-in signals): precision {_fmt(rep['risk_score']['precision'])}, recall "
              f"{_fmt(rep['risk_score']['recall'])}  {rep['risk_score']}",
              f"Duplicate detection: precision {_fmt(rep['duplicate_detection']['precision'])}, recall "
              f"{_fmt(rep['duplicate_detection']['recall'])}  {rep['duplicate_detection']}"]
    if rep["agent_failures"]:
        lines += ["", "Agent failures:"] + [f"  {f}" for f in rep["agent_failures"]]
    if rep["errors_5xx_samples"]:
        lines += ["", "5xx samples:"] + [f"  {json.dumps(e, ensure_ascii=False)}" for e in rep["errors_5xx_samples"]]
    return "\n".join(lines)


def _cpu_line(cpu: dict) -> str:
    if not cpu.get("per_request_ms"):
        return "CPU: not measured"
    procs = ", ".join(f"{k} {v:.1f}" for k, v in cpu["run_by_process_s"].items())
    tasks = ", ".join(f"{name} {t['cpu_s']:.1f} s / {t['runs']} runs"
                      for name, t in list(cpu.get("worker_tasks", {}).items())[:4])
    return (f"CPU: {cpu['per_request_ms']} ms per simulated request ({cpu['run_s']} s over "
            f"{cpu['simulated_requests']} requests, until the uploads were processed: {procs}); day alone "
            f"{cpu['day_per_request_ms']} ms/request" + ("" if cpu["complete"] else " (INCOMPLETE: backlog left)")
            + (f"; worker by task: {tasks}" if tasks else ""))


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"
