"""Task verbs: create, publish, review, pause/resume/close, read, and the worker's task hall."""
from __future__ import annotations

import re
from datetime import timedelta
from dataclasses import dataclass
from functools import lru_cache

from geoalchemy2.shape import from_shape
from shapely.geometry import Point
from sqlalchemy import BigInteger, DateTime, Float, Integer, String, bindparam, case, func, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from accounts.models import User
from accounts.service import require_role
from core.batch import sweep
from core.errors import InvalidInput
from core.config import get_settings
from core.models import utcnow
from geo import crs as geocrs
from geo.fence import parse_fence
from geo.sql import point_geog
from ledger import service as ledger
from geo.radio import wifi_hash
from tasks import credit
from tasks.errors import (
    EscrowExhausted,
    InvalidTransition,
    InvalidWindow,
    ProhibitedTask,
    TaskNotFound,
)
from tasks.models import ACTIVE_CLAIM_STATES, APPEAL_WINDOW, Appeal, Claim, MerchantTerms, Task, TaskEvent
from tasks.schemas import TaskCreate

# Tasks that buy fake orders, reviews or engagement are not field work; refuse them at the door.
# Ops review catches the rest; this stops the blatant ones before they reach the queue.
PROHIBITED = re.compile(r"刷单|刷好评|好评返现|刷评|刷量|刷赞|买粉|涨粉|点赞|关注.{0,6}(账号|公众号|抖音)|"
                        r"fake (order|review)|buy (likes|followers)|click farm", re.IGNORECASE)


def create(*, db_session: Session, merchant: User, body: TaskCreate) -> Task:
    """Create a draft task; the fence is converted to WGS-84 and validated."""
    require_role(merchant, "merchant")
    if PROHIBITED.search(f"{body.title} {body.description}"):
        raise ProhibitedTask()
    if body.ends_at <= body.starts_at or body.ends_at <= utcnow():
        raise InvalidWindow()
    fence = parse_fence(body.geofence, body.crs)
    task = Task(merchant_id=merchant.id, title=body.title, description=body.description, type=body.type,
                reward_fen=body.reward_fen, slots=body.slots, starts_at=body.starts_at, ends_at=body.ends_at,
                fence=from_shape(fence.geometry, srid=4326), center=from_shape(Point(*fence.center), srid=4326),
                fence_kind=fence.kind, radius_m=fence.radius_m, area_m2=fence.area_m2, hard_fence=body.hard_fence,
                photos_min=body.evidence.photos_min, video_required=body.evidence.video,
                allow_gallery=body.evidence.allow_gallery,
                radio_pins=sorted({wifi_hash(b) for b in body.pinned_bssids}),
                fresh_angle=body.evidence.fresh_angle,
                min_credit=body.min_credit, min_dwell_s=body.min_dwell_s, premium=body.premium, state="draft",
                slots_taken=0)
    db_session.add(task)
    db_session.flush()
    _audit(db_session, task.id, None, "draft", merchant.id, None)
    db_session.commit()
    return task


def get(*, db_session: Session, user: User, task_id: int) -> Task:
    """A task the user may see: its merchant, ops, or any worker once published."""
    task = db_session.get(Task, task_id)
    if task is None or not _may_see(user, task):
        raise TaskNotFound()
    return task


def _may_see(user: User, task: Task) -> bool:
    if user.role in ("ops", "admin"):
        return True
    if user.role == "merchant":
        return task.merchant_id == user.id
    return task.state == "published"


def get_own(*, db_session: Session, merchant: User, task_id: int, for_update: bool = False) -> Task:
    """A task of this merchant (ops may act on any)."""
    stmt = select(Task).where(Task.id == task_id)
    task = db_session.scalar(stmt.with_for_update() if for_update else stmt)
    if task is None or (merchant.role == "merchant" and task.merchant_id != merchant.id) or merchant.role == "worker":
        raise TaskNotFound()
    return task


def list_for_merchant(*, db_session: Session, merchant: User, limit: int = 100, offset: int = 0) -> list[Task]:
    """The merchant's own tasks, newest first."""
    stmt = select(Task).where(Task.merchant_id == merchant.id).order_by(Task.id.desc()).limit(limit).offset(offset)
    return list(db_session.scalars(stmt))


def review_queue(*, db_session: Session, ops: User, limit: int = 50) -> list[Task]:
    """Tasks waiting for platform review, oldest first (ops only)."""
    require_role(ops, "ops")
    stmt = select(Task).where(Task.state == "pending_review").order_by(Task.id).limit(limit)
    return list(db_session.scalars(stmt))


def _audit(db_session: Session, task_id: int, from_state: str | None, to_state: str, actor_id: int | None,
           reason: str | None) -> TaskEvent:
    event = TaskEvent(task_id=task_id, from_state=from_state, to_state=to_state, actor_id=actor_id, reason=reason)
    db_session.add(event)
    db_session.flush()
    return event


def transition(db_session: Session, task_id: int, from_states: tuple[str, ...], to_state: str, *,
               actor_id: int | None, reason: str | None = None, **values) -> Task:
    """Guarded task state change plus its audit row (flushes, does not commit). The state is read under the task's
    row lock (the UPDATE below would take it anyway), so the audit row names the state the change really left."""
    current = db_session.scalar(select(Task.state).where(Task.id == task_id).with_for_update())
    row = db_session.execute(
        update(Task).where(Task.id == task_id, Task.state.in_(from_states))
        .values(state=to_state, **values).returning(Task.id)).first()
    if row is None:
        raise InvalidTransition(f"Task {task_id} is {current}; expected one of {', '.join(from_states)}.")
    event = _audit(db_session, task_id, current, to_state, actor_id, reason)
    task = db_session.get(Task, task_id)
    db_session.refresh(task)
    task.last_event_id = event.id  # not a column: the cause id for money moved by this change
    return task


def publish(*, db_session: Session, merchant: User, task_id: int) -> Task:
    """Send a draft (or a rejected task) to review, holding slots × (reward + commission) in escrow."""
    get_own(db_session=db_session, merchant=merchant, task_id=task_id)
    ledger.require_security_deposit(db_session, merchant.id)
    rate = commission_rate(db_session, merchant.id)
    task = transition(db_session, task_id, ("draft", "rejected"), "pending_review", actor_id=merchant.id,
                      commission_bp=rate)
    amount = ledger.escrow_for_task(task.reward_fen, task.slots, rate)
    ledger.hold_escrow(db_session, merchant_id=merchant.id, cause=("task_event", task.last_event_id),
                       amount_fen=amount)
    adjust_escrow(db_session, task, amount)
    db_session.commit()
    return task


def commission_rate(db_session: Session, merchant_id: int) -> int:
    """The merchant's commission in basis points: member terms if any, else the platform default."""
    own = db_session.scalar(select(MerchantTerms.commission_bp).where(MerchantTerms.merchant_id == merchant_id))
    return ledger.get_ledger_settings().commission_bp if own is None else own


def set_terms(*, db_session: Session, ops: User, merchant_id: int, commission_bp: int, note: str) -> MerchantTerms:
    """Ops give a member merchant its own commission rate (applies to tasks published from now on)."""
    require_role(ops, "ops")
    merchant = db_session.get(User, merchant_id)
    if merchant is None or merchant.role != "merchant":
        raise TaskNotFound("No such merchant.", code="merchant_not_found")
    terms = db_session.get(MerchantTerms, merchant_id) or MerchantTerms(merchant_id=merchant_id, commission_bp=0)
    terms.commission_bp, terms.note = commission_bp, note
    db_session.add(terms)
    db_session.commit()
    return terms


def forfeit_deposit(*, db_session: Session, ops: User, merchant_id: int, amount_fen: int, reason: str) -> dict:
    """Ops decision: (part of) the merchant's security deposit goes to the platform, recorded with its reason."""
    require_role(ops, "ops")
    merchant = db_session.get(User, merchant_id)
    if merchant is None or merchant.role != "merchant":
        raise TaskNotFound("No such merchant.", code="merchant_not_found")
    ledger.forfeit_security_deposit(db_session, merchant_id=merchant_id, amount_fen=amount_fen,
                                    memo=f"ops {ops.id}: {reason}"[:300])
    db_session.commit()
    return ledger.balances(db_session, merchant_id)


def settle_ended(*, db_session: Session, limit: int = 200) -> int:
    """Close tasks past their end time and return unused escrow; safe to run twice.

    One transaction per task: a task that fails is logged and skipped, so it never holds up the
    settlement of every other merchant's tasks (and is retried on the next run).
    """
    due = (select(Task.id).where(Task.state.in_(("published", "paused")), Task.ends_at < utcnow())
           .order_by(Task.id).limit(limit))
    return sweep(db_session, due, _settle_one, what="settle_ended_task")


def _settle_one(db_session: Session, task_id: int) -> bool:
    locked = db_session.scalar(select(Task.id).where(Task.id == task_id, Task.state.in_(("published", "paused")))
                               .with_for_update(skip_locked=True))
    if locked is None:  # another host is settling it, or it changed state meanwhile
        return False
    task = transition(db_session, task_id, ("published", "paused"), "closed", actor_id=None,
                      reason="ended: time window over")
    _release_unused(db_session, task)
    return True


# A claim resolved this long ago or more can no longer be appealed, whatever the clock of the host that filed it.
_APPEALABLE = APPEAL_WINDOW + timedelta(hours=1)


def _reserve(db_session: Session, task: Task) -> int:
    """The escrow a task's claims may still need: one slot's reward and commission for each claim that is open,
    under appeal, or rejected or failed (closed) within the appeal window with no appeal filed yet (an appeal
    overturned pays from this escrow)."""
    appealed = select(Appeal.id).where(Appeal.claim_id == Claim.id, Appeal.kind == "appeal").exists()
    may_appeal = (Claim.state.in_(("rejected", "closed")) & (Claim.resolved_at > utcnow() - _APPEALABLE) & ~appealed)
    n = db_session.scalar(select(func.count()).select_from(Claim).where(
        Claim.task_id == task.id, Claim.state.in_(ACTIVE_CLAIM_STATES + ("appealed",)) | may_appeal))
    return n * (task.reward_fen + ledger.commission_for(task.reward_fen, task.commission_bp))


def _release_unused(db_session: Session, task: Task) -> None:
    """Release escrow beyond what the task's claims may still need (at closing)."""
    _release(db_session, task, max(0, task.escrow_fen - _reserve(db_session, task)))


def release_reserves(*, db_session: Session, limit: int = 200) -> int:
    """Closed tasks keep escrow for claims that may still be paid; once those claims are paid or beyond payment
    (expired, cancelled, past the appeal window, appeal denied), give the rest back to the merchant. Safe to run
    twice and on several hosts (the task's row lock; the figure moves atomically with the release). Every such
    task is looked at, page after page: those still holding what their claims need would otherwise fill the
    first page of every run."""
    due = select(Task.id).where(Task.state == "closed", Task.escrow_fen > 0).order_by(Task.id).limit(limit)
    return sweep(db_session, due, _release_reserve_one, what="release_task_reserve", max_pages=None, every_page=True)


def _release_reserve_one(db_session: Session, task_id: int) -> bool:
    task = db_session.scalar(select(Task).where(Task.id == task_id, Task.state == "closed")
                             .with_for_update(skip_locked=True).execution_options(populate_existing=True))
    if task is None:
        return False
    excess = task.escrow_fen - _reserve(db_session, task)
    if excess <= 0:
        return False
    # Its own audit row (closed → closed), which is also the release's cause: the money is traced to the task.
    event = _audit(db_session, task.id, "closed", "closed", None,
                   f"escrow no claim can use any more returned: {excess} fen")
    ledger.release_escrow(db_session, merchant_id=task.merchant_id, cause=("task_event", event.id), amount_fen=excess)
    adjust_escrow(db_session, task, -excess)
    return True


def _release(db_session: Session, task: Task, amount: int) -> None:
    """Give back ``amount`` of the task's escrow, caused by the task's latest state change."""
    ledger.release_escrow(db_session, merchant_id=task.merchant_id, cause=("task_event", task.last_event_id),
                          amount_fen=amount)
    if amount > 0:
        adjust_escrow(db_session, task, -amount)


def adjust_escrow(db_session: Session, task: Task, delta_fen: int) -> int:
    """Move the task's escrow figure by ``delta_fen`` in one atomic UPDATE; never below zero.

    The figure is changed by the database (``escrow_fen = escrow_fen + delta``), never written back from
    a value read earlier, so concurrent confirmations cannot lose each other's decrements.
    """
    new = db_session.scalar(update(Task).where(Task.id == task.id, Task.escrow_fen + delta_fen >= 0)
                            .values(escrow_fen=Task.escrow_fen + delta_fen).returning(Task.escrow_fen))
    if new is None:
        raise EscrowExhausted(f"Task {task.id} holds too little escrow for this ({-delta_fen} fen needed).")
    set_committed_value(task, "escrow_fen", new)
    return new


def review(*, db_session: Session, ops: User, task_id: int, decision: str, reason: str) -> Task:
    """Ops approve (task goes live) or reject (with a reason the merchant sees)."""
    require_role(ops, "ops")
    if decision == "reject" and not reason.strip():
        raise InvalidInput("A rejection needs a reason the merchant can act on.", code="reason_required")
    if db_session.get(Task, task_id) is None:
        raise TaskNotFound()
    if decision == "approve":
        task = transition(db_session, task_id, ("pending_review",), "published", actor_id=ops.id, reason=reason,
                          published_at=utcnow(), review_reason=reason or None)
    else:
        task = transition(db_session, task_id, ("pending_review",), "rejected", actor_id=ops.id, reason=reason,
                          review_reason=reason)
        _release(db_session, task, task.escrow_fen)
    db_session.commit()
    return task


def set_paused(*, db_session: Session, merchant: User, task_id: int, paused: bool) -> Task:
    """Pause (hide from the hall, keep claims) or resume a published task."""
    get_own(db_session=db_session, merchant=merchant, task_id=task_id)
    src, dst = (("published",), "paused") if paused else (("paused",), "published")
    task = transition(db_session, task_id, src, dst, actor_id=merchant.id)
    db_session.commit()
    return task


def close(*, db_session: Session, merchant: User, task_id: int, reason: str = "") -> Task:
    """Close a task for good: no new claims; open claims may still finish."""
    get_own(db_session=db_session, merchant=merchant, task_id=task_id)
    task = transition(db_session, task_id, ("draft", "pending_review", "published", "paused", "rejected"), "closed",
                      actor_id=merchant.id, reason=reason or None)
    _release_unused(db_session, task)
    db_session.commit()
    return task


@ledger.register_reconciler
def reconcile_escrow(db_session: Session) -> list[str]:
    """Each task's escrow figure equals the escrow postings caused by it (holds, payouts of its claims, releases)."""
    rows = db_session.execute(text("""
        WITH per_task AS (
          SELECT coalesce(te.task_id, c.task_id) AS task_id, sum(p.amount_fen) AS fen
          FROM ledger_posting p
          JOIN ledger_account a ON a.id = p.account_id AND a.kind = 'merchant_escrow'
          JOIN ledger_transaction t ON t.id = p.transaction_id
          LEFT JOIN task_event te ON t.cause_type = 'task_event' AND te.id = t.cause_id
          LEFT JOIN claim c ON t.cause_type = 'claim' AND c.id = t.cause_id
          WHERE coalesce(te.task_id, c.task_id) IS NOT NULL
          GROUP BY 1)
        SELECT task.id, task.escrow_fen, coalesce(per_task.fen, 0)
        FROM task LEFT JOIN per_task ON per_task.task_id = task.id
        WHERE task.escrow_fen <> coalesce(per_task.fen, 0)""")).all()
    return [f"task {t}: escrow figure {fig} != escrow postings {fen}" for t, fig, fen in rows]


@dataclass(frozen=True)
class NearbyTask:
    """A task in the hall with its distance from the worker."""

    task: Task
    distance_m: float


def nearby(*, db_session: Session, lat: float, lon: float, crs: str, radius_m: float, type: str | None = None,
           min_reward: int | None = None, limit: int = 50, premium_ok: bool = True) -> list[NearbyTask]:
    """Published tasks with free slots within radius, nearest first (KNN on the partial GiST index)."""
    wlat, wlon = geocrs.to_wgs84(lat, lon, crs)
    params = {"lon": wlon, "lat": wlat, "radius_m": radius_m, "now": utcnow(), "limit": limit, "type": type,
              "min_reward": min_reward}
    stmt = _nearby_stmt(bool(type), bool(min_reward), premium_ok)
    return [NearbyTask(task, d) for task, d in db_session.execute(stmt, params)]


@lru_cache(maxsize=8)
def _nearby_stmt(by_type: bool, by_reward: bool, premium_ok: bool):
    """The hall's query for one set of filters, built once: only bound values change per request. A statement
    built anew per request cost the API ~1 ms of CPU (building it, then its cache key), as much as running it."""
    here = point_geog(bindparam("lon", type_=Float), bindparam("lat", type_=Float))
    # To the fence's edge, 0 inside, as the check-in measures it (a circle exactly, from its centre and radius), so
    # the hall and the check-in never disagree; nearest first still goes by the centre (the KNN index).
    dist = case((Task.radius_m.is_not(None), func.greatest(0.0, func.ST_Distance(Task.center, here) - Task.radius_m)),
                else_=func.ST_Distance(Task.fence, here)).label("distance_m")
    stmt = (select(Task, dist)
            .where(Task.state == "published", Task.slots_taken < Task.slots,
                   Task.ends_at > bindparam("now", type_=DateTime(timezone=True)),
                   func.ST_DWithin(Task.center, here, bindparam("radius_m", type_=Float)))
            .order_by(Task.center.op("<->")(here)).limit(bindparam("limit", type_=Integer)))
    if by_type:
        stmt = stmt.where(Task.type == bindparam("type", type_=String))
    if by_reward:
        stmt = stmt.where(Task.reward_fen >= bindparam("min_reward", type_=BigInteger))
    if not premium_ok:
        stmt = stmt.where(Task.premium.is_(False))
    return stmt


def hall(*, db_session: Session, worker: User, lat: float, lon: float, crs: str, radius_m: float,
         type: str | None = None, min_reward: int | None = None, limit: int = 50) -> list[NearbyTask]:
    """The task hall a worker sees: nearby open tasks, premium ones only past the premium gate, a capped page."""
    require_role(worker, "worker")
    return nearby(db_session=db_session, lat=lat, lon=lon, crs=crs, radius_m=radius_m, type=type,
                  min_reward=min_reward, limit=min(limit, get_settings().nearby_max_results),
                  premium_ok=credit.premium_ok(credit.score(db_session, worker.id)))


def progress(*, db_session: Session, merchant: User, task_id: int) -> dict:
    """Claim counts by state for one of the merchant's tasks."""
    task = get_own(db_session=db_session, merchant=merchant, task_id=task_id)
    rows = db_session.execute(select(Claim.state, func.count()).where(Claim.task_id == task_id)
                              .group_by(Claim.state)).all()
    return {"task_id": task.id, "slots": task.slots, "slots_taken": task.slots_taken,
            "by_state": {state: n for state, n in rows}}
