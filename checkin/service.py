"""Check-in and check-out: convert, measure against the fence in PostGIS, decide, score, record."""
from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta

from geoalchemy2.shape import from_shape
from shapely.geometry import Point
from sqlalchemy import case, func, literal, select
from sqlalchemy.orm import Session

from accounts.models import User
from checkin import signals as sig
from checkin.errors import (AlreadyCheckedIn, AlreadyCheckedOut, FixInFuture, NotCheckedIn, OutsideFence,
                            OutsideTimeWindow)
from checkin.models import Checkin
from checkin.schemas import CheckinCreate
from checkin.settings import get_checkin_settings
from checkin.verdict import decide
from core.models import utcnow
from geo import crs as geocrs
from geo import h3cells
from geo.sql import point_geog
from tasks import claims
from tasks.models import Claim, Task

# Below a centimetre the geodesic distance is float noise: a point on the boundary is inside.
ON_BOUNDARY_M = 0.01


def _fence_distance(db_session: Session, task_id: int, lon: float, lat: float) -> tuple[float, tuple[float, float]]:
    """Metres from the point to the fence (0 inside or on it) by PostGIS on the spheroid, and the fence centre."""
    here = point_geog(lon, lat)
    dist = case((Task.radius_m.is_not(None),
                 func.greatest(0.0, func.ST_Distance(Task.center, here) - Task.radius_m)),
                else_=func.ST_Distance(Task.fence, here))
    d, cx, cy = db_session.execute(select(dist, func.ST_X(func.geometry(Task.center)),
                                          func.ST_Y(func.geometry(Task.center))).where(Task.id == task_id)).one()
    return (0.0 if d < ON_BOUNDARY_M else float(d)), (cx, cy)


PRIOR_COLUMNS = (Checkin.lat, Checkin.lon, Checkin.accuracy_m, Checkin.client_time, Checkin.altitude, Checkin.speed,
                 Checkin.bearing, Checkin.worker_id)


def _distinct_workers(cap: int, *where):
    """Distinct other accounts matching ``where``, counted only up to ``cap`` (enough to decide)."""
    sub = select(Checkin.worker_id).where(*where).distinct().limit(cap).subquery()
    return select(func.count()).select_from(sub).scalar_subquery()


def _context(db_session: Session, worker_id: int, center: tuple[float, float], fix: sig.Fix,
             coord_key: str) -> sig.SignalContext:
    """Everything the signals need from history: two indexed queries."""
    s = get_checkin_settings()
    recent = [sig.PriorFix(**row._mapping) for row in db_session.execute(
        select(*PRIOR_COLUMNS).where(Checkin.worker_id == worker_id)
        .order_by(Checkin.client_time.desc()).limit(s.constant_fields_min_fixes))]
    repeats = select(func.count()).select_from(select(Checkin.id).where(
        Checkin.raw_coord_key == coord_key,
        (Checkin.worker_id != worker_id) | (func.date(Checkin.client_time) != fix.client_time.date()))
        .limit(100).subquery()).scalar_subquery()
    devices = _distinct_workers(s.shared_device_min_accounts + 1, Checkin.device_id == fix.device_id,
                                Checkin.worker_id != worker_id)
    ips = _distinct_workers(s.shared_ip_min_accounts + 1, Checkin.ip == fix.ip, Checkin.worker_id != worker_id,
                            Checkin.server_time > fix.server_time - timedelta(seconds=s.shared_ip_window_s)) \
        if fix.ip else literal(0)
    n_repeats, n_devices, n_ips = db_session.execute(select(repeats, devices, ips)).one()
    return sig.SignalContext(previous_fix=recent[0] if recent else None, recent_fixes=recent,
                             exact_repeat_count=n_repeats, device_account_count=n_devices, ip_account_count=n_ips,
                             fence_center=center, poi=None)


def _fix_time(body: CheckinCreate, now: datetime) -> datetime:
    """When the fix was taken: the phone's time unless it claims the future (refused beyond a few minutes)."""
    ahead = timedelta(seconds=get_checkin_settings().max_future_fix_s)
    for name, value in (("client_time", body.client_time), ("sent_at", body.sent_at)):
        if value is not None and value > now + ahead:
            raise FixInFuture(f"{name} is {(value - now).total_seconds():.0f} s ahead of server time; "
                              f"at most {ahead.total_seconds():.0f} s is accepted. Check the phone's clock.")
    return body.client_time if body.client_time <= now + timedelta(minutes=2) else now


def _record(db_session: Session, worker: User, found: Claim, task: Task, body: CheckinCreate, kind: str,
            ip: str | None, now: datetime) -> Checkin:
    """Measure, decide, score and insert one fix (flushes only)."""
    s = get_checkin_settings()
    lat, lon = geocrs.to_wgs84(body.lat, body.lon, body.crs)
    distance, center = _fence_distance(db_session, task.id, lon, lat)
    verdict = decide(distance, body.accuracy_m, body.provider, body.platform, s)
    fix = sig.Fix(lat=lat, lon=lon, accuracy_m=body.accuracy_m, client_time=body.client_time, server_time=now,
                  device_id=body.device_id, ip=ip, provider=body.provider, mock_location=body.mock_location,
                  altitude=body.altitude, speed=body.speed, bearing=body.bearing, sent_at=body.sent_at)
    coord_key = f"{body.lat:.6f},{body.lon:.6f}"
    found_signals = sig.evaluate(fix, _context(db_session, worker.id, center, fix, coord_key), s)
    remark = None
    if verdict.verdict == "outside":
        if task.hard_fence:
            raise OutsideFence(f"You are {verdict.distance_m:.0f} m outside the fence "
                               f"(GPS accuracy ±{verdict.accuracy_95_m:.0f} m).",
                               distance_m=round(verdict.distance_m, 1), accuracy_95_m=round(verdict.accuracy_95_m, 1))
        remark = f"outside soft fence by {verdict.distance_m:.0f} m; flagged for review"
        found_signals.append(sig.Signal("outside_soft_fence", s.weight_outside_soft_fence, remark))
    row = Checkin(claim_id=found.id, worker_id=worker.id, task_id=task.id, kind=kind,
                  point=from_shape(Point(lon, lat), srid=4326), lat=lat, lon=lon, raw_lat=body.lat,
                  raw_lon=body.lon, raw_crs=body.crs, raw_coord_key=coord_key, accuracy_m=body.accuracy_m,
                  accuracy_95_m=verdict.accuracy_95_m, provider=body.provider, platform=body.platform,
                  mock_location=body.mock_location, altitude=body.altitude, speed=body.speed,
                  bearing=body.bearing, device_id=body.device_id, ip=ip, client_time=body.client_time,
                  server_time=now, verdict=verdict.verdict, distance_m=verdict.distance_m,
                  risk_score=sig.risk_score(found_signals), reasons=[x.code for x in found_signals],
                  signals=[asdict(x) for x in found_signals], remark=remark, h3_r9=h3cells.cell(lat, lon))
    db_session.add(row)
    db_session.flush()
    return row


def _in_window(task: Task, at: datetime) -> None:
    if not (task.starts_at <= at <= task.ends_at):
        raise OutsideTimeWindow(f"This task accepts check-ins from {task.starts_at.isoformat()} "
                                f"to {task.ends_at.isoformat()}.")


def _merge_risk(found: Claim, row: Checkin) -> dict:
    return {"risk_score": max(found.risk_score, row.risk_score),
            "flags": sorted(set(found.flags) | set(row.reasons))}


def check_in(*, db_session: Session, worker: User, claim_id: int, body: CheckinCreate, ip: str | None,
             received_at: datetime | None = None) -> Checkin:
    """Check in on the worker's own claim; hard fences refuse 'outside'. Server time is when the fix arrived."""
    found = claims.get_own(db_session=db_session, worker=worker, claim_id=claim_id, for_update=True)
    if found.state != "claimed":
        raise AlreadyCheckedIn() if found.state == "checked_in" else claims.InvalidTransition(
            f"Claim {claim_id} is {found.state}; check-in needs a claimed slot.")
    task = db_session.get(Task, found.task_id)
    now = received_at or utcnow()
    _in_window(task, _fix_time(body, now))
    row = _record(db_session, worker, found, task, body, "in", ip, now)
    claims.transition(db_session, claim_id, ("claimed",), "checked_in", actor_id=worker.id,
                      data={"checkin_id": row.id, "verdict": row.verdict, "risk_score": row.risk_score},
                      checked_in_at=body.client_time, **_merge_risk(found, row))
    db_session.commit()
    return row


def check_out(*, db_session: Session, worker: User, claim_id: int, body: CheckinCreate, ip: str | None,
              received_at: datetime | None = None) -> Checkin:
    """Check out: records the fix and the dwell time; a too-short dwell is a signal."""
    found = claims.get_own(db_session=db_session, worker=worker, claim_id=claim_id, for_update=True)
    if found.checked_out_at is not None:
        raise AlreadyCheckedOut()
    if found.state != "checked_in" or found.checked_in_at is None:
        raise NotCheckedIn()
    task = db_session.get(Task, found.task_id)
    now = received_at or utcnow()
    _fix_time(body, now)  # refuses a check-out dated in the future
    row = _record(db_session, worker, found, task, body, "out", ip, now)
    dwell = sig.dwell_seconds(found.checked_in_at, body.client_time)
    extra = sig.evaluate_checkout(found.checked_in_at, body.client_time, get_checkin_settings(), task.min_dwell_s)
    if extra:
        row.signals = row.signals + [asdict(x) for x in extra]
        row.reasons = row.reasons + [x.code for x in extra]
        row.risk_score = sig.risk_score([sig.Signal(**x) for x in row.signals])
    found.checked_out_at, found.dwell_s = body.client_time, dwell
    found.risk_score, found.flags = _merge_risk(found, row).values()
    claims.audit(db_session, claim_id, "checked_in", "checked_in", worker.id, reason="checked out",
                 data={"checkin_id": row.id, "dwell_s": dwell})
    db_session.commit()
    return row


def for_claim(*, db_session: Session, user: User, claim_id: int) -> tuple[Claim, list[Checkin]]:
    """A claim and its fixes, for anyone allowed to see the claim."""
    found = claims.get_for(db_session=db_session, user=user, claim_id=claim_id)
    rows = db_session.scalars(select(Checkin).where(Checkin.claim_id == claim_id).order_by(Checkin.id)).all()
    return found, list(rows)


def explain(*, db_session: Session, claim_id: int) -> dict:
    """The stored verdicts and every signal with its reason code, for `fieldproof checkin explain`."""
    found = db_session.get(Claim, claim_id)
    if found is None:
        raise claims.ClaimNotFound()
    rows = db_session.scalars(select(Checkin).where(Checkin.claim_id == claim_id).order_by(Checkin.id)).all()
    return {"claim_id": found.id, "task_id": found.task_id, "worker_id": found.worker_id, "state": found.state,
            "risk_score": found.risk_score, "flags": found.flags, "dwell_s": found.dwell_s,
            "fixes": [{"id": r.id, "kind": r.kind, "verdict": r.verdict, "distance_m": round(r.distance_m, 1),
                       "accuracy_95_m": round(r.accuracy_95_m, 1), "lat": r.lat, "lon": r.lon,
                       "raw": {"lat": r.raw_lat, "lon": r.raw_lon, "crs": r.raw_crs},
                       "client_time": r.client_time.isoformat(), "risk_score": r.risk_score,
                       "remark": r.remark, "signals": r.signals} for r in rows]}
