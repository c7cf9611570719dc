"""Tasks: merchants create and publish, ops review, workers browse the hall and claim."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api.deps import CurrentUser, DbSession, HallReadDb, Id, Merchant, MerchantOrOps, Ops, Worker
from api.idempotent import IdempotentRun
from api.views import claim_read, task_read
from geo import crs as geocrs
from tasks import claims, service
from tasks.schemas import (ClaimRead, ForfeitRequest, MerchantTermsUpdate, ReviewDecision, TaskCreate, TaskProgress,
                           TaskRead, TaskType)

router = APIRouter(prefix="/v1", tags=["tasks"])
Crs = Literal["wgs84", "gcj02", "bd09"]


@router.post("/tasks", status_code=201, response_model=TaskRead)
def create_task(body: TaskCreate, merchant: Merchant, idem: IdempotentRun):
    """Create a draft task (fence as GeoJSON or a circle, in ``crs``)."""
    return idem.run(merchant.id, lambda db: task_read(service.create(db_session=db, merchant=merchant, body=body),
                                                      body.crs), status_code=201)


@router.get("/tasks", response_model=list[TaskRead])
def my_tasks(merchant: Merchant, db_session: DbSession, crs: Crs = "wgs84",
             limit: Annotated[int, Query(ge=1, le=200)] = 50, offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0):
    """The merchant's own tasks."""
    return [task_read(t, crs) for t in service.list_for_merchant(db_session=db_session, merchant=merchant,
                                                                 limit=limit, offset=offset)]


@router.get("/tasks/nearby", response_model=list[TaskRead])
def nearby(worker: Worker, db_session: HallReadDb,
           lat: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)],
           lon: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)], crs: Crs = "wgs84",
           radius_m: Annotated[float, Query(gt=0, le=50_000, allow_inf_nan=False)] = 5000, type: TaskType | None = None,
           min_reward: Annotated[int | None, Query(ge=0, le=10_000_000)] = None,
           limit: Annotated[int, Query(ge=1, le=1000)] = 50):
    """The task hall: open tasks nearest first, coordinates in and out in ``crs``."""
    found = service.hall(db_session=db_session, worker=worker, lat=lat, lon=lon, crs=crs, radius_m=radius_m,
                         type=type, min_reward=min_reward, limit=limit)
    return [task_read(n.task, crs, n.distance_m) for n in found]


@router.get("/coords/convert")
def convert_coords(user: CurrentUser, lat: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)],
                   lon: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)], src: Crs = "gcj02",
                   dst: Crs = "wgs84") -> dict:
    """One point from ``src`` to ``dst`` (as `fieldproof coords convert`): the console's coordinate entry."""
    out_lat, out_lon = geocrs.convert(lat, lon, src, dst)
    return {"lat": out_lat, "lon": out_lon, "crs": dst}


@router.get("/tasks/review-queue", response_model=list[TaskRead])
def review_queue(ops: Ops, db_session: DbSession, crs: Crs = "wgs84", limit: Annotated[int, Query(ge=1, le=200)] = 50):
    """Ops: tasks waiting for platform review, oldest first."""
    return [task_read(t, crs) for t in service.review_queue(db_session=db_session, ops=ops, limit=limit)]


@router.get("/tasks/{task_id}", response_model=TaskRead)
def get_task(task_id: Id, user: CurrentUser, db_session: DbSession, crs: Crs = "wgs84"):
    """One task, if the caller may see it."""
    return task_read(service.get(db_session=db_session, user=user, task_id=task_id), crs)


@router.post("/tasks/{task_id}/publish", response_model=TaskRead)
def publish(task_id: Id, merchant: Merchant, idem: IdempotentRun):
    """Send the task to platform review."""
    return idem.run(merchant.id, lambda db: task_read(service.publish(db_session=db, merchant=merchant,
                                                                      task_id=task_id)))


@router.post("/tasks/{task_id}/review", response_model=TaskRead)
def review(task_id: Id, body: ReviewDecision, ops: Ops, idem: IdempotentRun):
    """Ops approve or reject a task awaiting review."""
    return idem.run(ops.id, lambda db: task_read(service.review(db_session=db, ops=ops, task_id=task_id,
                                                                decision=body.decision, reason=body.reason)))


@router.post("/tasks/{task_id}/pause", response_model=TaskRead)
def pause(task_id: Id, merchant: Merchant, idem: IdempotentRun):
    """Hide a published task from the hall."""
    return idem.run(merchant.id, lambda db: task_read(service.set_paused(db_session=db, merchant=merchant,
                                                                         task_id=task_id, paused=True)))


@router.post("/tasks/{task_id}/resume", response_model=TaskRead)
def resume(task_id: Id, merchant: Merchant, idem: IdempotentRun):
    """Put a paused task back in the hall."""
    return idem.run(merchant.id, lambda db: task_read(service.set_paused(db_session=db, merchant=merchant,
                                                                         task_id=task_id, paused=False)))


@router.post("/tasks/{task_id}/close", response_model=TaskRead)
def close(task_id: Id, merchant: Merchant, idem: IdempotentRun):
    """Close the task for new claims."""
    return idem.run(merchant.id, lambda db: task_read(service.close(db_session=db, merchant=merchant,
                                                                    task_id=task_id)))


@router.get("/tasks/{task_id}/progress", response_model=TaskProgress)
def progress(task_id: Id, merchant: MerchantOrOps, db_session: DbSession):
    """Claim counts by state for the merchant's task (ops: any task)."""
    return service.progress(db_session=db_session, merchant=merchant, task_id=task_id)


@router.post("/tasks/{task_id}/claims", status_code=201, response_model=ClaimRead)
def claim(task_id: Id, worker: Worker, idem: IdempotentRun):
    """Take one slot of a published task."""
    return idem.run(worker.id, lambda db: claim_read(claims.claim(db_session=db, worker=worker, task_id=task_id)),
                    status_code=201)


@router.put("/merchants/{merchant_id}/terms")
def merchant_terms(merchant_id: Id, body: MerchantTermsUpdate, ops: Ops, db_session: DbSession) -> dict:
    """Ops set a member merchant's commission rate (basis points)."""
    terms = service.set_terms(db_session=db_session, ops=ops, merchant_id=merchant_id,
                              commission_bp=body.commission_bp, note=body.note)
    return {"merchant_id": terms.merchant_id, "commission_bp": terms.commission_bp, "note": terms.note}


@router.post("/merchants/{merchant_id}/deposit-forfeits")
def forfeit(merchant_id: Id, body: ForfeitRequest, ops: Ops, idem: IdempotentRun):
    """Ops forfeit (part of) a merchant's security deposit, with the reason on record."""
    return idem.run(ops.id, lambda db: {"balances_fen": service.forfeit_deposit(
        db_session=db, ops=ops, merchant_id=merchant_id, amount_fen=body.amount_fen, reason=body.reason)})
