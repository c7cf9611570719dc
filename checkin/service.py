"""Check-in and check-out: convert, measure against the fence in PostGIS, decide, score, record."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from accounts.models import User
from checkin import radio
from checkin import signals as sig
from checkin.errors import (AlreadyCheckedIn, AlreadyCheckedOut, FixInFuture, NotCheckedIn, OutsideFence,
                            OutsideTimeWindow)
from checkin.models import FIX_CLOCK_SLACK, Checkin, of_claim
from checkin.schemas import CheckinCreate
from checkin.settings import get_checkin_settings
from checkin.verdict import Verdict, decide
from core import flow
from core.db import driver_connection
from core.flow import Batch, Flow, Stmt, int_array, sql
from core.models import utcnow
from core.reasons import FORCES_SPOT_CHECK
from geo import crs as geocrs
from geo import h3cells
from tasks import capture, claims
from tasks.models import Claim

# Below a centimetre the geodesic distance is float noise: a point on the boundary is inside.
ON_BOUNDARY_M = 0.01
# History is what arrived before this fix; the slack covers API hosts whose clocks differ by a little. The upper
# bound keeps the months made ahead (empty) and the default partition out of every check-in's plan.
HISTORY_CLOCK_SLACK = FIX_CLOCK_SLACK

# Everything a check-in or check-out decides on, in one statement: the worker's own claim, locked (no other
# row of it can change until this transaction ends), its task's window and fence rules, the distance from the
# fix to the fence on the spheroid (0 inside), the fence centre, and every history figure the signals need:
# the worker's latest fixes, repeats of these exact raw coordinates, and other accounts on this device and IP,
# and, for a scan, the site's radio fingerprint against it (checkin.radio: its radio_site row by key, the counted
# hashes it keeps overlapping the scan's; migration 0020), no extra round trip. How established the site is and
# whether the scan shares a hash both come from that one array, so they cannot disagree (a row written by a sweep
# older than 0020, its array empty, is simply not established).
# All of it reads indexed rows (ix_checkin_worker_client_time, _raw_coord_key, _device_id, _ip_server_time), each
# read bounded by its answer, not by the worker's history: the latest fixes walk their index newest first and stop
# at recent_n, other accounts on the device are found by index probes that step over the worker's own fixes
# (migration 0019: fieldproof_recent_fixes, fieldproof_device_accounts), the shared-IP count stops at the signal's
# threshold (migrations 0017 and 0018: fieldproof_ip_accounts), exact repeats stop at 100. Every history read is
# bounded on both sides in server_time, the partition key of checkin, so only the months in the window are planned
# and read (history_window_days; README, Scale-out).
_MEASURE = text("""
SELECT c.state, c.checked_in_at, c.checked_out_at, c.risk_score, c.flags, c.task_id, nextval('checkin_id_seq') AS new_id,
       t.starts_at, t.ends_at, t.hard_fence, t.min_dwell_s,
       CASE WHEN t.radius_m IS NOT NULL THEN greatest(0.0, ST_Distance(t.center, here.g) - t.radius_m)
            ELSE ST_Distance(t.fence, here.g) END AS distance_m,
       ST_X(t.center::geometry) AS cx, ST_Y(t.center::geometry) AS cy,
       fieldproof_recent_fixes(:worker_id, :history_since, :history_until, :recent_n) AS recent,
       (SELECT count(*) FROM (SELECT 1 FROM checkin WHERE raw_coord_key = :coord_key
                                AND server_time BETWEEN :history_since AND :history_until
                                AND (worker_id <> :worker_id OR date(client_time) <> :fix_day) LIMIT 100) x) AS repeats,
       fieldproof_device_accounts(:device_id, :history_since, :history_until, :worker_id, :device_cap) AS devices,
       fieldproof_ip_accounts(CAST(:ip AS inet), :ip_since, :history_until, :worker_id, :ip_rows,
                              :ip_enough) AS ips,
       CASE WHEN cardinality(CAST(:radio AS bigint[])) > 0 THEN
            (SELECT ARRAY[rs.workers, cardinality(rs.counted), CAST(rs.counted && CAST(:radio AS bigint[]) AS integer)]
               FROM radio_site rs WHERE rs.task_id = c.task_id) END AS radio_site,
       cardinality(t.radio_pins) AS radio_pins, t.radio_pins && CAST(:radio AS bigint[]) AS radio_pin_shared
  FROM claim c JOIN task t ON t.id = c.task_id,
       (SELECT CAST(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS geography) AS g) here
 WHERE c.id = :claim_id AND c.worker_id = :worker_id
   FOR UPDATE OF c
""")

# The fix itself: one INSERT, its id drawn by the measure (so the response is known before the write is sent).
_INSERT = text("""
INSERT INTO checkin (id, claim_id, worker_id, task_id, kind, point, lat, lon, raw_lat, raw_lon, raw_crs, raw_coord_key,
                     accuracy_m, accuracy_95_m, provider, platform, mock_location, altitude, speed, bearing, device_id,
                     ip, client_time, server_time, verdict, distance_m, risk_score, reasons, signals, remark, h3_r9,
                     radio, radio_learned)
VALUES (:id, :claim_id, :worker_id, :task_id, :kind, CAST(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS geography), :lat,
        :lon, :raw_lat, :raw_lon, :raw_crs, :raw_coord_key, :accuracy_m, :accuracy_95_m, :provider, :platform,
        :mock_location, :altitude, :speed, :bearing, :device_id, CAST(:ip AS inet), :client_time, :server_time,
        :verdict, :distance_m, :risk_score, :reasons, CAST(:signals AS jsonb), :remark, :h3_r9,
        CAST(:radio AS bigint[]), :radio_learned)
""")


@dataclass(frozen=True, slots=True)
class Recorded:
    """A fix as stored (the columns of Checkin), returned by a check-in or check-out: a plain object, not an ORM
    instance (building one cost ~0.4 ms of the write path's ~1.6 ms of Python)."""

    id: int
    claim_id: int
    worker_id: int
    task_id: int
    kind: str
    lat: float
    lon: float
    raw_lat: float
    raw_lon: float
    raw_crs: str
    raw_coord_key: str
    accuracy_m: float
    accuracy_95_m: float
    provider: str
    platform: str | None
    mock_location: bool | None
    altitude: float | None
    speed: float | None
    bearing: float | None
    device_id: str
    ip: str | None
    client_time: datetime
    server_time: datetime
    verdict: str
    distance_m: float
    risk_score: int
    reasons: list[str]
    signals: list[dict]
    remark: str | None
    h3_r9: int
    radio: list[int] | None
    radio_learned: bool | None


@dataclass(frozen=True)
class _Measured:
    """The claim, its task's rules and the fix's place against the fence and in history (see _MEASURE)."""

    claim_state: str
    checked_in_at: datetime | None
    checked_out_at: datetime | None
    claim_risk: int
    claim_flags: list[str]
    task_id: int
    new_id: int
    starts_at: datetime
    ends_at: datetime
    hard_fence: bool
    min_dwell_s: int | None
    distance_m: float
    context: sig.SignalContext
    radio_ctx: radio.RadioContext


def _measure_stmt(worker_id: int, claim_id: int, fix: sig.Fix, coord_key: str, scan: list[int]) -> Stmt:
    """Lock the worker's claim and read everything the decision needs (one statement)."""
    s = get_checkin_settings()
    return Stmt(sql(_MEASURE), {
        "claim_id": claim_id, "worker_id": worker_id, "lon": fix.lon, "lat": fix.lat,
        "recent_n": s.constant_fields_min_fixes, "coord_key": coord_key, "fix_day": fix.client_time.date(),
        "device_id": fix.device_id, "device_cap": s.shared_device_min_accounts + 1, "ip": fix.ip,
        "ip_since": fix.server_time - timedelta(seconds=s.shared_ip_window_s),
        "ip_rows": s.shared_ip_scan_rows, "ip_enough": s.shared_ip_min_accounts, "radio": int_array(scan),
        "history_since": fix.server_time - timedelta(days=s.history_window_days),
        "history_until": fix.server_time + HISTORY_CLOCK_SLACK}, one_row=True)


def _measured(rows: list) -> _Measured:
    """The measure's row as the decision's inputs; 404 if the claim is not the worker's."""
    if not rows:
        raise claims.ClaimNotFound()
    row = rows[0]
    recent = [sig.PriorFix(**{**r, "client_time": datetime.fromisoformat(r["client_time"])}) for r in row.recent]
    context = sig.SignalContext(previous_fix=recent[0] if recent else None, recent_fixes=recent,
                                exact_repeat_count=row.repeats, device_account_count=row.devices,
                                ip_account_count=row.ips, fence_center=(row.cx, row.cy))
    return _Measured(row.state, row.checked_in_at, row.checked_out_at, row.risk_score, list(row.flags), row.task_id,
                     row.new_id, row.starts_at, row.ends_at, row.hard_fence, row.min_dwell_s,
                     0.0 if row.distance_m < ON_BOUNDARY_M else float(row.distance_m), context,
                     _radio_context(row))


def _radio_context(row) -> radio.RadioContext:
    """The scan against the site (no radio_site figures without a scan, or for a site never learned)."""
    workers, hashes, shared = row.radio_site or (0, 0, 0)
    return radio.RadioContext(workers, hashes, bool(shared), row.radio_pins, bool(row.radio_pin_shared))


def _measure(db_session: Session, worker: User, claim_id: int, fix: sig.Fix, coord_key: str,
             scan: list[int]) -> _Measured:
    """The measure alone, in the session's transaction (the claim stays locked until it ends)."""
    def measure_only() -> Flow[_Measured]:
        return _measured((yield Batch([_measure_stmt(worker.id, claim_id, fix, coord_key, scan)]))[0])

    return flow.run(driver_connection(db_session), measure_only())


def _fix_time(body: CheckinCreate, now: datetime) -> datetime:
    """When the fix was taken: the phone's time unless it claims the future (refused beyond a few minutes)."""
    ahead = timedelta(seconds=get_checkin_settings().max_future_fix_s)
    for name, value in (("client_time", body.client_time), ("sent_at", body.sent_at)):
        if value is not None and value > now + ahead:
            raise FixInFuture(f"{name} is {(value - now).total_seconds():.0f} s ahead of server time; "
                              f"at most {ahead.total_seconds():.0f} s is accepted. Check the phone's clock.")
    return body.client_time if body.client_time <= now + timedelta(minutes=2) else now


def _fix(body: CheckinCreate, ip: str | None, now: datetime) -> sig.Fix:
    """The fix in WGS-84 (converted from the phone's crs at this boundary)."""
    lat, lon = geocrs.to_wgs84(body.lat, body.lon, body.crs)
    return sig.Fix(lat=lat, lon=lon, accuracy_m=body.accuracy_m, client_time=body.client_time, server_time=now,
                   device_id=body.device_id, ip=ip, provider=body.provider, mock_location=body.mock_location,
                   altitude=body.altitude, speed=body.speed, bearing=body.bearing, sent_at=body.sent_at)


def _decide(m: _Measured, body: CheckinCreate, fix: sig.Fix, extra: list[sig.Signal],
            scan: list[int]) -> tuple[Verdict, list[sig.Signal], str | None]:
    """The verdict and the signals (hard fences refuse 'outside' here)."""
    s = get_checkin_settings()
    verdict = decide(m.distance_m, body.accuracy_m, body.platform, s)
    found_signals = sig.evaluate(fix, m.context, s)
    remark = None
    if verdict.verdict == "outside":
        if m.hard_fence:
            raise OutsideFence(f"You are {verdict.distance_m:.0f} m outside the fence "
                               f"(GPS accuracy ±{verdict.accuracy_95_m:.0f} m).",
                               distance_m=round(verdict.distance_m, 1), accuracy_95_m=round(verdict.accuracy_95_m, 1))
        remark = f"outside soft fence by {verdict.distance_m:.0f} m; flagged for review"
        found_signals.append(sig.Signal("outside_soft_fence", s.weight_outside_soft_fence, remark))
    found_signals += radio.evaluate(scan, verdict.verdict, m.radio_ctx, s)
    return verdict, found_signals + extra, remark


def _learnable(scan: list[int], verdict: str, found: list[sig.Signal]) -> bool | None:
    """False (to be learned by checkin.learning) for an accepted check-in with a scan, else None: a fix outside
    or with a hard reason never teaches the site what it looks like."""
    if not scan or verdict == "outside" or any(x.code in FORCES_SPOT_CHECK for x in found):
        return None
    return False


def _record(worker_id: int, claim_id: int, m: _Measured, body: CheckinCreate, fix: sig.Fix, kind: str,
            coord_key: str, extra: list[sig.Signal], scan: list[int]) -> tuple[Recorded, Stmt]:
    """Decide; the fix as it will be stored and the INSERT that stores it."""
    verdict, found_signals, remark = _decide(m, body, fix, extra, scan)
    values = dict(id=m.new_id, claim_id=claim_id, worker_id=worker_id, task_id=m.task_id, kind=kind, lat=fix.lat,
                  lon=fix.lon, raw_lat=body.lat, raw_lon=body.lon, raw_crs=body.crs, raw_coord_key=coord_key,
                  accuracy_m=body.accuracy_m, accuracy_95_m=verdict.accuracy_95_m, provider=body.provider,
                  platform=body.platform, mock_location=body.mock_location, altitude=body.altitude,
                  speed=body.speed, bearing=body.bearing, device_id=body.device_id, ip=fix.ip,
                  client_time=body.client_time, server_time=fix.server_time, verdict=verdict.verdict,
                  distance_m=verdict.distance_m, risk_score=sig.risk_score(found_signals),
                  reasons=[x.code for x in found_signals], signals=[asdict(x) for x in found_signals],
                  remark=remark, h3_r9=h3cells.cell(fix.lat, fix.lon), radio=scan or None,
                  radio_learned=_learnable(scan, verdict.verdict, found_signals))
    stmt = Stmt(sql(_INSERT), {**values, "signals": json.dumps(values["signals"]), "radio": int_array(values["radio"])},
                writes=True)
    return Recorded(**values), stmt


def _in_window(m: _Measured, at: datetime) -> None:
    if not (m.starts_at <= at <= m.ends_at):
        raise OutsideTimeWindow(f"This task accepts check-ins from {m.starts_at.isoformat()} "
                                f"to {m.ends_at.isoformat()}.")


def _merged(m: _Measured, row: Recorded) -> dict:
    return {"risk_score": max(m.claim_risk, row.risk_score), "flags": sorted(set(m.claim_flags) | set(row.reasons))}


def fix_flow(*, worker_id: int, claim_id: int, body: CheckinCreate, ip: str | None, kind: str,
             received_at: datetime | None = None) -> Flow[tuple[Recorded, int | None]]:
    """A check-in (``kind`` 'in') or check-out ('out') on the worker's own claim, as a pipelined flow (core.flow):
    two round trips, the COMMIT in the second. Server time is when the fix arrived; hard fences refuse 'outside'. Returns the fix and, for a
    check-out, the dwell time (a too-short dwell is a signal).

    1. measure: the claim locked, the fence distance, every history figure, the new fix's id;
    2. decide in Python, then the fix's INSERT and the claim's guarded move with its audit row (a check-out keeps
       the claim checked in: the audit row records it)."""
    now = received_at or utcnow()
    fix, coord_key = _fix(body, ip, now), f"{body.lat:.6f},{body.lon:.6f}"
    scan = radio.scan_hashes(body.wifi, body.cells)
    m = _measured((yield Batch([_measure_stmt(worker_id, claim_id, fix, coord_key, scan)]))[0])
    dwell = None
    if kind == "in":
        if m.claim_state != "claimed":
            raise AlreadyCheckedIn() if m.claim_state == "checked_in" else claims.InvalidTransition(
                f"Claim {claim_id} is {m.claim_state}; check-in needs a claimed slot.")
        _in_window(m, _fix_time(body, now))
        row, insert = _record(worker_id, claim_id, m, body, fix, kind, coord_key, [], scan)
        from_states = ("claimed",)
        move = claims.move_stmt(claim_id, from_states, "checked_in", actor_id=worker_id,
                                data={"checkin_id": row.id, "verdict": row.verdict, "risk_score": row.risk_score},
                                checked_in_at=body.client_time, current=m.claim_state, **_merged(m, row))
    else:
        if m.checked_out_at is not None:
            raise AlreadyCheckedOut()
        if m.claim_state != "checked_in" or m.checked_in_at is None:
            raise NotCheckedIn()
        _fix_time(body, now)  # refuses a check-out dated in the future
        extra = sig.evaluate_checkout(m.checked_in_at, body.client_time, get_checkin_settings(), m.min_dwell_s)
        row, insert = _record(worker_id, claim_id, m, body, fix, kind, coord_key, extra, scan)
        dwell = sig.dwell_seconds(m.checked_in_at, body.client_time)
        # Not a state change: the claim stays checked in (guarded on that) and the audit row records the check-out.
        from_states = ("checked_in",)
        move = claims.move_stmt(claim_id, from_states, "checked_in", actor_id=worker_id, reason="checked out",
                                data={"checkin_id": row.id, "dwell_s": dwell}, checked_out_at=body.client_time,
                                dwell_s=dwell, current=m.claim_state, **_merged(m, row))
    # The last batch: it commits in the same round trip where the API owns the transaction (the move's guard
    # refuses inside PostgreSQL, before the COMMIT).
    rows = yield Batch([insert, move], final=True, commit=True, result=(row, dwell))
    claims.moved(rows[1], claim_id, from_states, m.claim_state)
    return row, dwell


def _run_fix(db_session: Session, worker: User, claim_id: int, body: CheckinCreate, ip: str | None, kind: str,
             received_at: datetime | None) -> tuple[Recorded, int | None]:
    """``fix_flow`` run in the session's transaction, then committed."""
    out = flow.run(driver_connection(db_session), fix_flow(worker_id=worker.id, claim_id=claim_id, body=body, ip=ip,
                                                           kind=kind, received_at=received_at))
    db_session.commit()
    return out


def check_in(*, db_session: Session, worker: User, claim_id: int, body: CheckinCreate, ip: str | None,
             received_at: datetime | None = None) -> Recorded:
    """Check in on the worker's own claim (in-process callers; the API runs ``fix_flow`` on its async pool)."""
    return _run_fix(db_session, worker, claim_id, body, ip, "in", received_at)[0]


def check_out(*, db_session: Session, worker: User, claim_id: int, body: CheckinCreate, ip: str | None,
              received_at: datetime | None = None) -> tuple[Recorded, int]:
    """Check out: records the fix and the dwell time (returned with the fix); a too-short dwell is a signal."""
    return _run_fix(db_session, worker, claim_id, body, ip, "out", received_at)


def capture_nonce(row: Recorded) -> tuple[str, datetime]:
    """A capture nonce for the check-in's claim (stateless: tasks.capture), issued with the check-in response."""
    return capture.issue(row.claim_id, row.server_time)


def for_claim(*, db_session: Session, user: User, claim_id: int) -> tuple[Claim, list[Checkin]]:
    """A claim and its fixes, for anyone allowed to see the claim."""
    found = claims.get_for(db_session=db_session, user=user, claim_id=claim_id)
    rows = db_session.scalars(select(Checkin).where(*of_claim(claim_id, found.claimed_at)).order_by(Checkin.id)).all()
    return found, list(rows)


def explain(*, db_session: Session, claim_id: int) -> dict:
    """The stored verdicts and every signal with its reason code, for `fieldproof checkin explain`."""
    found = db_session.get(Claim, claim_id)
    if found is None:
        raise claims.ClaimNotFound()
    rows = db_session.scalars(select(Checkin).where(*of_claim(claim_id, found.claimed_at)).order_by(Checkin.id)).all()
    return {"claim_id": found.id, "task_id": found.task_id, "worker_id": found.worker_id, "state": found.state,
            "risk_score": found.risk_score, "flags": found.flags, "dwell_s": found.dwell_s,
            "fixes": [{"id": r.id, "kind": r.kind, "verdict": r.verdict, "distance_m": round(r.distance_m, 1),
                       "accuracy_95_m": round(r.accuracy_95_m, 1), "lat": r.lat, "lon": r.lon,
                       "raw": {"lat": r.raw_lat, "lon": r.raw_lon, "crs": r.raw_crs},
                       "client_time": r.client_time.isoformat(), "risk_score": r.risk_score,
                       "remark": r.remark, "signals": r.signals} for r in rows]}
