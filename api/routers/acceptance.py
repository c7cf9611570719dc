"""Acceptance: submit, merchant decisions, ops spot checks and appeals."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import CurrentUser, DbSession, Id, Merchant, MerchantOrOps, Ops, Worker
from api.idempotent import IdempotentRun
from api.views import claim_read, submission_read
from tasks import acceptance, claims, reviews
from tasks.schemas import (
    AppealCreate,
    AppealDecision,
    AppealRead,
    ChangesRequest,
    ClaimRead,
    ComplaintDecision,
    RatingCreate,
    RatingRead,
    RejectRequest,
    SubmissionRead,
    SpotCheckRead,
    SpotCheckVerdict,
)

router = APIRouter(prefix="/v1", tags=["acceptance"])


@router.post("/claims/{claim_id}/submit", response_model=ClaimRead)
def submit(claim_id: Id, worker: Worker, idem: IdempotentRun):
    """Submit a checked-in claim with its evidence for the merchant's confirmation."""
    return idem.run(worker.id, lambda db: claim_read(acceptance.submit(db_session=db, worker=worker,
                                                                       claim_id=claim_id)))


@router.get("/tasks/{task_id}/submissions", response_model=list[SubmissionRead])
def submissions(task_id: Id, merchant: MerchantOrOps, db_session: DbSession, state: str | None = "submitted",
                limit: Annotated[int, Query(ge=1, le=200)] = 100):
    """The claims of the merchant's task (default: those waiting for a decision), each with its rating (ops: any
    task's)."""
    found = claims.list_for_task(db_session=db_session, merchant=merchant, task_id=task_id, state=state, limit=limit)
    rated = acceptance.ratings_of(db_session, [c.id for c in found])
    return [submission_read(c, rated.get(c.id)) for c in found]


@router.post("/submissions/{claim_id}/confirm", response_model=ClaimRead)
def confirm(claim_id: Id, merchant: Merchant, idem: IdempotentRun):
    """Confirm the work (it may be sampled for a spot check before payment)."""
    return idem.run(merchant.id, lambda db: claim_read(acceptance.confirm(db_session=db, merchant=merchant,
                                                                          claim_id=claim_id)))


@router.post("/submissions/{claim_id}/reject", response_model=ClaimRead)
def reject(claim_id: Id, body: RejectRequest, merchant: Merchant, idem: IdempotentRun):
    """Reject with a reason code and text."""
    return idem.run(merchant.id, lambda db: claim_read(acceptance.reject(
        db_session=db, merchant=merchant, claim_id=claim_id, reason_code=body.reason_code, reason=body.reason)))


@router.post("/submissions/{claim_id}/request-changes", response_model=ClaimRead)
def request_changes(claim_id: Id, body: ChangesRequest, merchant: Merchant, idem: IdempotentRun):
    """Send the claim back to the worker once, with a deadline."""
    return idem.run(merchant.id, lambda db: claim_read(acceptance.request_changes(
        db_session=db, merchant=merchant, claim_id=claim_id, reason=body.reason)))


@router.get("/spot-checks", response_model=list[SpotCheckRead])
def spot_checks(ops: Ops, db_session: DbSession, limit: Annotated[int, Query(ge=1, le=200)] = 50):
    """The open spot-check queue with fence, fixes, evidence and reasons."""
    return reviews.spot_check_details(db_session=db_session,
                                      checks=reviews.open_spot_checks(db_session=db_session, ops=ops, limit=limit))


@router.get("/spot-checks/report")
def spot_check_report(ops: Ops, db_session: DbSession) -> list[dict]:
    """Sampling rate and fraud found per stratum."""
    return reviews.sampling_report(db_session=db_session, ops=ops)


@router.post("/spot-checks/{spot_check_id}/verdict", response_model=SpotCheckRead)
def spot_check_verdict(spot_check_id: Id, body: SpotCheckVerdict, ops: Ops, idem: IdempotentRun):
    """Pass or fail a sampled claim."""
    return idem.run(ops.id, lambda db: reviews.spot_check_detail(db_session=db, check=reviews.spot_check_verdict(
        db_session=db, ops=ops, spot_check_id=spot_check_id, passed=body.verdict == "pass", reason=body.reason)))


@router.post("/claims/{claim_id}/appeals", status_code=201, response_model=AppealRead)
def appeal(claim_id: Id, body: AppealCreate, worker: Worker, idem: IdempotentRun):
    """Appeal a rejection or failed spot check."""
    return idem.run(worker.id, lambda db: AppealRead.model_validate(
        reviews.appeal(db_session=db, worker=worker, claim_id=claim_id, reason=body.reason), from_attributes=True),
        status_code=201)


@router.get("/appeals", response_model=list[AppealRead])
def appeals(ops: Ops, db_session: DbSession):
    """Open appeals."""
    return [AppealRead.model_validate(a, from_attributes=True)
            for a in reviews.open_appeals(db_session=db_session, ops=ops)]


@router.post("/appeals/{appeal_id}/decision", response_model=AppealRead)
def decide(appeal_id: Id, body: AppealDecision, ops: Ops, idem: IdempotentRun):
    """Overturn or deny an appeal; the money follows."""
    return idem.run(ops.id, lambda db: AppealRead.model_validate(reviews.decide_appeal(
        db_session=db, ops=ops, appeal_id=appeal_id, overturn=body.decision == "overturn", reason=body.reason),
        from_attributes=True))


@router.post("/submissions/{claim_id}/rating", status_code=201, response_model=RatingRead)
def rate(claim_id: Id, body: RatingCreate, merchant: Merchant, idem: IdempotentRun):
    """Rate accepted work 1-5 (once)."""
    return idem.run(merchant.id, lambda db: RatingRead.model_validate(acceptance.rate(
        db_session=db, merchant=merchant, claim_id=claim_id, stars=body.stars, comment=body.comment),
        from_attributes=True), status_code=201)


@router.get("/workers/{worker_id}")
def worker_profile(worker_id: Id, user: CurrentUser, db_session: DbSession) -> dict:
    """A worker's credit and ratings, for the worker, merchants who worked with them and ops."""
    return acceptance.worker_profile(db_session=db_session, viewer=user, worker_id=worker_id)


@router.post("/claims/{claim_id}/complaints", status_code=201, response_model=AppealRead)
def complain(claim_id: Id, body: AppealCreate, merchant: Merchant, idem: IdempotentRun):
    """A merchant reports a worker about a claim on its task."""
    return idem.run(merchant.id, lambda db: AppealRead.model_validate(
        reviews.complain(db_session=db, merchant=merchant, claim_id=claim_id, reason=body.reason),
        from_attributes=True), status_code=201)


@router.post("/complaints/{appeal_id}/decision", response_model=AppealRead)
def decide_complaint(appeal_id: Id, body: ComplaintDecision, ops: Ops, idem: IdempotentRun):
    """Uphold or dismiss a complaint (upheld: a violation on the worker's credit)."""
    return idem.run(ops.id, lambda db: AppealRead.model_validate(reviews.decide_complaint(
        db_session=db, ops=ops, appeal_id=appeal_id, uphold=body.decision == "uphold", reason=body.reason),
        from_attributes=True))
