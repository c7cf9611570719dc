"""Claims: the worker's check-in/check-out, reads for the worker, merchant and ops."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api.deps import AccessClaims, CurrentUser, DbSession, FlowRunner, Id, Worker, client_ip, received_at
from api.idempotent import Idempotent, IdempotentFlowRun, IdempotentRun
from api.views import checkin_read, claim_read
from checkin import service as checkins
from checkin.schemas import CheckinCreate, CheckinRead
from core.flow import Flow
from tasks import capture, claims, history
from tasks.schemas import CaptureNonceRead, ClaimRead, ClaimTimeline, CreditChanges

router = APIRouter(prefix="/v1", tags=["claims"])


@router.post("/claims/{claim_id}/checkins", status_code=201, response_model=CheckinRead)
async def check_in(claim_id: Id, body: CheckinCreate, access: AccessClaims, idem: IdempotentFlowRun,
                   run: FlowRunner, request: Request):
    """Check in from the phone: verdict, distance, risk score and reasons."""
    return await fix_response("in", claim_id, body, access, idem, run, request)


@router.post("/claims/{claim_id}/capture-nonces", status_code=201, response_model=CaptureNonceRead)
def capture_nonce(claim_id: Id, worker: Worker, idem: IdempotentRun, request: Request):
    """A fresh nonce for the in-app camera while the claim is checked in (each photo's receipt uses one)."""
    at = received_at(request)
    return idem.run(worker.id, lambda db: CaptureNonceRead(**dict(zip(
        ("capture_nonce", "capture_nonce_expires_at"),
        capture.for_claim(db_session=db, worker=worker, claim_id=claim_id, now=at)))), status_code=201)


@router.post("/claims/{claim_id}/checkouts", status_code=201, response_model=CheckinRead)
async def check_out(claim_id: Id, body: CheckinCreate, access: AccessClaims, idem: IdempotentFlowRun,
                    run: FlowRunner, request: Request):
    """Check out: the fix plus the dwell time since check-in."""
    return await fix_response("out", claim_id, body, access, idem, run, request)


async def fix_response(kind: str, claim_id: int, body: CheckinCreate, access: tuple[int, str | None],
                       idem: Idempotent, run: Callable[[Flow[Any]], Awaitable[Any]], request: Request) -> JSONResponse:
    """A check-in (``kind`` 'in', with a capture nonce) or check-out ('out', with the dwell time): the routes
    above and api.phone_writes both answer through this."""
    fix = checkins.fix_flow(worker_id=access[0], claim_id=claim_id, body=body, ip=client_ip(request), kind=kind,
                            received_at=received_at(request))
    if kind == "in":
        def respond(out):
            return checkin_read(out[0], nonce=checkins.capture_nonce(out[0]))
    else:
        def respond(out):
            return checkin_read(out[0], dwell_s=out[1])
    return await idem.run_flow(run, access, "worker", fix, respond, status_code=201)


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
