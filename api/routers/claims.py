"""Claims: the worker's check-in/check-out, reads for the worker, merchant and ops."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.deps import CurrentUser, DbSession, Id, Worker, client_ip, received_at
from api.idempotent import IdempotentRun
from api.views import checkin_read, claim_read
from checkin import service as checkins
from checkin.schemas import CheckinCreate, CheckinRead
from tasks import capture, claims, history
from tasks.schemas import CaptureNonceRead, ClaimRead, ClaimTimeline, CreditChanges

router = APIRouter(prefix="/v1", tags=["claims"])


@router.post("/claims/{claim_id}/checkins", status_code=201, response_model=CheckinRead)
def check_in(claim_id: Id, body: CheckinCreate, worker: Worker, idem: IdempotentRun, request: Request):
    """Check in from the phone: verdict, distance, risk score and reasons."""
    ip, at = client_ip(request), received_at(request)

    def run(db):
        row = checkins.check_in(db_session=db, worker=worker, claim_id=claim_id, body=body, ip=ip, received_at=at)
        return checkin_read(row, nonce=checkins.capture_nonce(row))

    return idem.run(worker.id, run, status_code=201)


@router.post("/claims/{claim_id}/capture-nonces", status_code=201, response_model=CaptureNonceRead)
def capture_nonce(claim_id: Id, worker: Worker, idem: IdempotentRun, request: Request):
    """A fresh nonce for the in-app camera while the claim is checked in (each photo's receipt uses one)."""
    at = received_at(request)
    return idem.run(worker.id, lambda db: CaptureNonceRead(**dict(zip(
        ("capture_nonce", "capture_nonce_expires_at"),
        capture.for_claim(db_session=db, worker=worker, claim_id=claim_id, now=at)))), status_code=201)


@router.post("/claims/{claim_id}/checkouts", status_code=201, response_model=CheckinRead)
def check_out(claim_id: Id, body: CheckinCreate, worker: Worker, idem: IdempotentRun, request: Request):
    """Check out: the fix plus the dwell time since check-in."""
    ip, at = client_ip(request), received_at(request)

    def run(db):
        row, dwell_s = checkins.check_out(db_session=db, worker=worker, claim_id=claim_id, body=body, ip=ip,
                                          received_at=at)
        return checkin_read(row, dwell_s=dwell_s)

    return idem.run(worker.id, run, status_code=201)


@router.post("/claims/{claim_id}/cancel", response_model=ClaimRead)
def cancel(claim_id: Id, worker: Worker, idem: IdempotentRun):
    """Give the slot back before checking in."""
    return idem.run(worker.id, lambda db: claim_read(claims.cancel(db_session=db, worker=worker, claim_id=claim_id)))


@router.get("/me/claims", response_model=list[ClaimRead])
def my_claims(worker: Worker, db_session: DbSession, state: str | None = None,
              limit: Annotated[int, Query(ge=1, le=200)] = 100):
    """The worker's own claims."""
    return [claim_read(c) for c in claims.list_for_worker(db_session=db_session, worker=worker, state=state,
                                                          limit=limit)]


@router.get("/claims/{claim_id}", response_model=ClaimRead)
def get_claim(claim_id: Id, user: CurrentUser, db_session: DbSession):
    """One claim: its worker, the task's merchant, or ops."""
    return claim_read(claims.get_for(db_session=db_session, user=user, claim_id=claim_id))


@router.get("/claims/{claim_id}/checkins", response_model=list[CheckinRead])
def claim_checkins(claim_id: Id, user: CurrentUser, db_session: DbSession):
    """The claim's fixes with verdicts and signals."""
    _, rows = checkins.for_claim(db_session=db_session, user=user, claim_id=claim_id)
    return [checkin_read(r, viewer_role=user.role) for r in rows]


@router.get("/claims/{claim_id}/timeline", response_model=ClaimTimeline)
def claim_timeline(claim_id: Id, user: CurrentUser, db_session: DbSession):
    """What happened to the claim and why: reasons, deadline, appeals, spot check, credit, amount paid."""
    return history.timeline(db_session=db_session, user=user, claim_id=claim_id)


@router.get("/me/credit", response_model=CreditChanges)
def my_credit(worker: Worker, db_session: DbSession):
    """The worker's credit score with its latest changes and their reasons."""
    return history.credit_changes(db_session=db_session, worker=worker)
