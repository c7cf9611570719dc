"""Evidence upload and reads."""
from __future__ import annotations

from functools import partial
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import ValidationError

from accounts import service as accounts
from api.deps import AccessClaims, CurrentUser, DbSession, Id, Worker, received_at
from api.idempotent import IdempotentRun, IdempotentStreamedRun
from api.uploads import receive_form
from evidence import service
from evidence.schemas import CaptureReceipt, EvidenceRead, MatchRead
from tasks.capture import CaptureReceiptInvalid

router = APIRouter(prefix="/v1", tags=["evidence"])
# "original" is the full photo up to 4096 px a side (a 50 MP JPEG is scaled while decoding, never held whole).
SIZES = {"thumb": 320, "large": 1600, "original": 4096}
# The body is parsed by the route as it streams (api.uploads), so FastAPI cannot describe it: said here.
UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "title": "EvidenceUpload",
    "properties": {"file": {"type": "string", "contentMediaType": "application/octet-stream", "title": "File"},
                   "capture_receipt": {"type": "string", "title": "Capture receipt",
                                       "description": 'JSON {"nonce", "captured_at"} from the in-app camera'}}}}}}}
JPEG = {"response_class": Response,
        "responses": {200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}}}


def match_read(match, traced) -> MatchRead:
    """A duplicate, with its claim and task when the viewer may see them."""
    found = traced.get(match.matched_evidence_id)
    where = {} if found is None else {"own": True, "claim_id": found.claim_id, "task_id": found.task_id,
                                      "task_title": found.task_title}
    return MatchRead(matched_evidence_id=match.matched_evidence_id, distance=match.distance, method=match.method,
                     **where)


def evidence_read(db, ev, user) -> EvidenceRead:
    """An evidence row with its matches; EXIF GPS is kept out of API responses too."""
    exif = {k: v for k, v in (ev.exif or {}).items() if k != "gps"} or None
    matches = service.matches_of(db, ev.id)
    traced = service.matched_claims(db_session=db, user=user, matched_ids=[m.matched_evidence_id for m in matches])
    return EvidenceRead(id=ev.id, claim_id=ev.claim_id, kind=ev.kind, mime=ev.mime, sha256=ev.sha256,
                        size_bytes=ev.size_bytes, width=ev.width, height=ev.height, state=ev.state,
                        reasons=ev.reasons, exif=exif, created_at=ev.created_at, withdrawn_at=ev.withdrawn_at,
                        capture_verified=ev.capture_verified, captured_at=ev.captured_at,
                        matches=[match_read(m, traced) for m in matches])


@router.post("/claims/{claim_id}/evidence", status_code=201, response_model=EvidenceRead, openapi_extra=UPLOAD_BODY)
async def upload(claim_id: Id, access: AccessClaims, idem: IdempotentStreamedRun, request: Request):
    """Upload a photo or video (type from content; EXIF is read, never served). The file streams into the
    evidence store as it arrives, hashed and size-capped on the way; it is kept only if it is accepted. The
    token is verified before the body is read; the worker is read from the database, in the same transaction
    as the upload, once the body is in (no connection is held while a slow phone sends it)."""
    user_id, login_id = access
    form = await receive_form(request, file_field="file", stage=service.stage_upload)
    found: dict = {}
    at = received_at(request)

    def authenticate(db) -> None:
        found["worker"] = accounts.authenticate_claims(db_session=db, user_id=user_id, login_id=login_id)
        accounts.require_role(found["worker"], "worker")

    try:
        if idem.key:
            idem.digest = form.digest("file")  # from the hash taken as the file arrived: no second read
            idem.earlier_digest = partial(form.digest_before, "file")  # asked in the worker thread, on a mismatch
        receipt = _receipt(form)
        return await run_in_threadpool(idem.run, user_id, lambda db: evidence_read(
            db, service.upload(db_session=db, worker=found["worker"], claim_id=claim_id, staged=form.file,
                               receipt=receipt, received_at=at), found["worker"]),
            status_code=201, authenticate=authenticate)
    finally:
        await run_in_threadpool(form.discard)


def _receipt(form) -> CaptureReceipt | None:
    """The ``capture_receipt`` field (JSON), if sent; a malformed one is a 422 with the receipt's code."""
    raw = [value for name, value in form.fields if name == "capture_receipt"]
    if not raw or not raw[-1].strip():
        return None
    try:
        return CaptureReceipt.model_validate_json(raw[-1])
    except ValidationError:
        raise CaptureReceiptInvalid('capture_receipt must be JSON {"nonce": ..., "captured_at": ISO time with offset}.',
                                    why="malformed")


@router.get("/claims/{claim_id}/evidence", response_model=list[EvidenceRead])
def list_evidence(claim_id: Id, user: CurrentUser, db_session: DbSession):
    """The claim's files (its worker, the task's merchant, ops)."""
    return [evidence_read(db_session, ev, user) for ev in service.for_claim(db_session=db_session, user=user,
                                                                            claim_id=claim_id)]


@router.post("/evidence/{evidence_id}/withdraw", response_model=EvidenceRead)
def withdraw(evidence_id: Id, worker: Worker, idem: IdempotentRun):
    """The worker removes one of their files before submitting (to delete it or retake the photo)."""
    return idem.run(worker.id, lambda db: evidence_read(db, service.withdraw(db_session=db, worker=worker,
                                                                             evidence_id=evidence_id), worker))


@router.get("/evidence/{evidence_id}", response_model=EvidenceRead)
def get_evidence(evidence_id: Id, user: CurrentUser, db_session: DbSession):
    """One file's metadata, reasons and duplicates."""
    return evidence_read(db_session, service.get_for(db_session=db_session, user=user, evidence_id=evidence_id),
                         user)


@router.get("/evidence/{evidence_id}/image", **JPEG)
def image(evidence_id: Id, user: CurrentUser, db_session: DbSession,
          size: Literal["thumb", "large", "original"] = "large") -> Response:
    """A re-encoded JPEG without metadata (no EXIF, no GPS), orientation applied."""
    data = service.served_copy(db_session=db_session, user=user, evidence_id=evidence_id, max_side=SIZES[size])
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/evidence/{evidence_id}/matches/{matched_id}/image", **JPEG)
def match_image(evidence_id: Id, matched_id: Id, user: CurrentUser, db_session: DbSession,
                size: Literal["thumb", "large", "original"] = "thumb") -> Response:
    """The duplicate of a file, to compare side by side (the task's merchant and ops)."""
    data = service.served_match_copy(db_session=db_session, user=user, evidence_id=evidence_id,
                                     matched_id=matched_id, max_side=SIZES[size])
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})
