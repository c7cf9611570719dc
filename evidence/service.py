"""Evidence verbs: upload (commit the row, queue processing), process (hash, EXIF checks, duplicates), serve."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from accounts.models import User
from core import jobs
from core.config import get_settings
from core.errors import Conflict, NotFound, RateLimited
from core.models import utcnow
from core.partitions import LOCK_NOT_AVAILABLE
from evidence import capture, index_store, pairs
from evidence.decode import MAX_JPEG_PIXELS, decode_slot
from evidence.exif import strip_and_orient
from evidence.hashing import ImageHashes, grey_file, hash_grey, load_grey, to_signed
from evidence.intake import inspect_upload
from evidence.models import Evidence, EvidenceHash, EvidenceMatch
from evidence.schemas import SAME_SCENE_PREFIX, CaptureReceipt
from evidence.storage import (INCOMING, StagedBlob, get_if_stored, get_store, sweep_spool, working_image_bytes,
                              working_image_key)
from evidence.video import hash_video
from geo.fence import haversine_m
from tasks import claims, hooks
from tasks.errors import EvidencePending
from tasks.models import Claim, Task

PROCESS_JOB = "evidence.process"
MAX_PIXELS = MAX_JPEG_PIXELS  # 50 MP JPEG, 16 MP for formats decoded in full (evidence.decode)
EXIF_TIME_SLACK_S = 2 * 3600  # a photo taken more than 2 h from the check-in is not from this visit
EXIF_GPS_SLACK_M = 1000
# The earlier file of a duplicate pair: shown to the merchant and ops beside the match, never a sampling trigger.
REUSED_LATER = "evidence_reused_later"  # camera GPS is coarse indoors; beyond 1 km it is another place


def stage_upload() -> StagedBlob:
    """Where an upload streams to while it arrives (in the store, size-capped, hashed on the way)."""
    return get_store().stage(get_settings().max_upload_bytes)


def upload(*, db_session: Session, worker: User, claim_id: int, staged: StagedBlob,
           receipt: CaptureReceipt | None = None, received_at: datetime | None = None) -> Evidence:
    """Accept a streamed file for the worker's checked-in claim, with its in-app capture receipt if any (see
    evidence.capture); processing happens in a worker after commit."""
    found = claims.get_own(db_session=db_session, worker=worker, claim_id=claim_id, for_update=True)
    if found.state not in ("checked_in", "changes_requested"):
        raise Conflict(f"Evidence can be added after check-in and before submission; the claim is {found.state}.",
                       code="evidence_not_accepted")
    info = inspect_upload(staged.path, max_bytes=get_settings().max_upload_bytes, max_pixels=MAX_PIXELS,
                          sha256=staged.sha256 or staged.finish())
    existing = db_session.scalar(select(Evidence).where(Evidence.claim_id == claim_id, Evidence.sha256 == info.sha256))
    if existing is not None:  # the same file twice on one claim is one piece of evidence
        if existing.withdrawn_at is not None:  # taken back, now sent again: it counts again
            _lock_file_now(db_session, existing)
            existing.withdrawn_at = None
            db_session.commit()
        return existing
    _check_quotas(db_session, worker, claim_id, info.size_bytes)
    task = db_session.get(Task, found.task_id)
    got = capture.check(db_session, claim_id=claim_id, allow_gallery=task.allow_gallery, receipt=receipt,
                        exif=info.exif, now=received_at or utcnow())
    store = get_store()
    if info.grey is not None:  # the decode intake made: processing hashes this instead of decoding again
        store.put(working_image_key(info.sha256), grey_file(info.grey))
    staged.keep()  # content-addressed: an orphan after a crash is harmless
    ev = Evidence(claim_id=claim_id, worker_id=worker.id, task_id=found.task_id, sha256=info.sha256, kind=info.kind,
                  mime=info.mime, size_bytes=info.size_bytes, width=info.width, height=info.height,
                  duration_s=info.duration_s, exif=info.exif or None, state="received", reasons=got.reasons,
                  capture_verified=got.verified, captured_at=got.captured_at, capture_nonce_sha256=got.nonce_sha256)
    if got.reasons:  # lower trust: the claim carries the reason, and its score rises to the reason's weight
        found.flags = sorted(set(found.flags) | set(got.reasons))
        found.risk_score = max(found.risk_score, got.weight)
    db_session.add(ev)
    db_session.flush()
    jobs.add(db_session, PROCESS_JOB, evidence_id=ev.id)
    db_session.commit()
    return ev


def _check_quotas(db_session: Session, worker: User, claim_id: int, size: int) -> None:
    """Evidence per claim and bytes per worker per UTC day; decided under the worker's row lock, so parallel
    uploads by one worker (to any of their claims) cannot both pass the last free byte."""
    s = get_settings()
    # FOR NO KEY UPDATE: serialises this worker's uploads without blocking the foreign-key checks of rows that
    # reference the user (their check-ins and claims take KEY SHARE on it).
    db_session.execute(select(User.id).where(User.id == worker.id).with_for_update(key_share=True))
    on_claim = db_session.scalar(select(func.count()).select_from(Evidence).where(Evidence.claim_id == claim_id))
    if on_claim >= s.max_evidence_per_claim:
        raise Conflict(f"A claim holds at most {s.max_evidence_per_claim} files.", code="evidence_limit_reached")
    day = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    used = db_session.scalar(select(func.coalesce(func.sum(Evidence.size_bytes), 0))
                             .where(Evidence.worker_id == worker.id, Evidence.created_at >= day))
    if used + size > s.max_upload_bytes_per_worker_day:
        retry = int((day + timedelta(days=1) - utcnow()).total_seconds()) + 1
        raise RateLimited(f"Today's upload allowance of {s.max_upload_bytes_per_worker_day // 2**20} MiB is used up.",
                          code="daily_upload_quota", retry_after_s=retry)


def _frames(ev: Evidence) -> tuple[list[ImageHashes], Image.Image | None]:
    """The file's hashes and, for an image, its working image (the pixel checks use it too: read once a job)."""
    if ev.kind == "video":
        return [f.hashes for f in hash_video(get_store().get(ev.sha256))], None
    # The working image gives the very hashes of its original; files stored before it was kept are decoded.
    grey = load_grey(working_image_bytes(ev.sha256))
    return [hash_grey(grey, with_variants=True)], grey


def _exif_reasons(db_session: Session, ev: Evidence) -> list[str]:
    """Disagreements between the photo's EXIF and the claim's check-in."""
    exif, out = ev.exif or {}, []
    if not exif.get("capture_time") and not exif.get("gps"):  # nothing to compare (stripped EXIF): no read
        return out
    fix = hooks.claim_fix(db_session, ev.claim_id)  # checkin registers how to find it (tasks.hooks)
    if fix is None:
        return out
    if exif.get("capture_time"):
        taken = datetime.fromisoformat(exif["capture_time"])
        ref = fix.client_time if taken.tzinfo else fix.client_time.replace(tzinfo=None)
        # Without an offset the camera's local time is unknown: allow the 8 h of China Standard Time too.
        slack = EXIF_TIME_SLACK_S + (0 if taken.tzinfo else 8 * 3600)
        if abs((taken - ref).total_seconds()) > slack:
            out.append("exif_time_mismatch")
    gps = exif.get("gps")
    if gps and haversine_m(gps["lon"], gps["lat"], fix.lon, fix.lat) > EXIF_GPS_SLACK_M:
        out.append("exif_gps_far")
    return out


@jobs.handler(PROCESS_JOB)
def process(*, db_session: Session, evidence_id: int) -> None:
    """Hash, check EXIF, find duplicates across all claims, record matches; idempotent."""
    ev = db_session.scalar(select(Evidence).where(Evidence.id == evidence_id).with_for_update())
    if ev is None or ev.state != "received":
        return
    frames, grey = _frames(ev)
    reasons = _exif_reasons(db_session, ev)
    finder = pairs.Finder(ev, frames, reasons, grey)
    # The files processed so far are compared first, without the lock: their pixel checks (ORB, the costly part
    # of a much-photographed shop's upload) run in every worker process at once.
    found = finder.find(db_session)
    # Then one processor at a time compares and inserts: the files processed meanwhile (hashes are inserted and
    # committed only under this lock, so the index misses none), so two copies processed at once still see each
    # other; each pair is recorded once, by whichever of the two is processed second.
    # A processor that stops while it holds the lock must not hold it for good: lock_search's timeouts start here
    # (what came before, a video's frames or the first round's pixel checks, is this file's own work).
    index_store.lock_search(db_session)
    # Stored files read before the lock are read again: a processor that held it meanwhile may have added reasons
    # to them, which _record_matches must add to, not overwrite (flushed first, so nothing pending is dropped).
    # The file itself is not: its row lock, held since the start, kept every other processor off it.
    db_session.flush()
    for obj in list(db_session.identity_map.values()):
        if obj is not ev:
            db_session.expire(obj)
    found = finder.consistent(db_session, found + finder.find(db_session))
    _record_matches(db_session, ev, found)
    reasons += ev.reasons
    ev.hashes = {"frames": [f.to_dict() for f in frames]}
    ev.phash, ev.dhash = to_signed(frames[0].phash["full"]), to_signed(frames[0].dhash["full"])
    db_session.add_all(EvidenceHash(evidence_id=ev.id, phash=to_signed(h)) for f in frames for h in f.phash.values())
    ev.reasons, ev.state, ev.processed_at = sorted(set(reasons)), "processed", utcnow()
    db_session.flush()


def _duplicate_reason(method: str) -> str:
    return "exact_duplicate_evidence" if method == "sha256" else "duplicate_evidence"


def _record_matches(db_session: Session, ev: Evidence, found: list[pairs.Pair]) -> None:
    """Record each pair both ways. Same capture: the later upload of a pair is the duplicate, its claim is flagged
    (always spot-checked); the earlier one only gets a note, so a worker whose photo someone else reused is not
    punished. Same scene: a note on the later file; on a task asking for a fresh angle also a soft signal on its
    claim (raising its risk score)."""
    if not found:
        return
    flags: dict[int, set[str]] = {}
    weigh: set[int] = set()
    fresh_angle: dict[int, bool] = {}  # by task: a much-photographed place brings many same-scene pairs
    # The stored files in one read, and the match rows inserted together by the flush after the loop (a get() of
    # each file, expired by the search's expire_all, was a SELECT that also flushed the rows added before it).
    others = {e.id: e for e in db_session.scalars(select(Evidence).where(Evidence.id.in_([p.other_id
                                                                                          for p in found])))}
    with db_session.no_autoflush:
        for pair in found:
            db_session.add_all(EvidenceMatch(evidence_id=a, matched_evidence_id=b, distance=pair.distance,
                                             method=pair.stored_method)
                               for a, b in ((ev.id, pair.other_id), (pair.other_id, ev.id)))
            other = others[pair.other_id]
            earlier, later = (other, ev) if other.id < ev.id else (ev, other)
            if pair.verdict.kind == "same_scene":
                later.reasons = sorted(set(later.reasons) | {"same_scene"})
                if later.task_id not in fresh_angle:
                    fresh_angle[later.task_id] = _wants_fresh_angle(db_session, later)
                if fresh_angle[later.task_id]:
                    flags.setdefault(later.claim_id, set()).add("same_scene")
                    weigh.add(later.claim_id)
                continue
            later.reasons = sorted(set(later.reasons) | {_duplicate_reason(pair.method)})
            earlier.reasons = sorted(set(earlier.reasons) | {REUSED_LATER})
            flags.setdefault(later.claim_id, set()).add("duplicate_evidence")
            if earlier.claim_id != later.claim_id:
                flags.setdefault(earlier.claim_id, set()).add(REUSED_LATER)
    for claim in db_session.scalars(select(Claim).where(Claim.id.in_(flags)).order_by(Claim.id).with_for_update()):
        if claim.id in weigh and "same_scene" not in claim.flags:  # once per claim, however many such photos
            claim.risk_score = min(100, claim.risk_score + pairs.SAME_SCENE_WEIGHT)
        claim.flags = sorted(set(claim.flags) | flags[claim.id])


def _wants_fresh_angle(db_session: Session, ev: Evidence) -> bool:
    return bool(db_session.scalar(select(Task.fresh_angle).where(Task.id == ev.task_id)))


def _withdrawn_from(ev: Evidence, user: User) -> bool:
    """A file its worker withdrew is seen only by that worker and ops: hidden from merchants, also as a match."""
    return ev.withdrawn_at is not None and user.role == "merchant"


def get_for(*, db_session: Session, user: User, evidence_id: int) -> Evidence:
    """Evidence the user may see (through the claim's rules; a withdrawn file only its worker and ops)."""
    ev = db_session.get(Evidence, evidence_id)
    try:
        if ev is not None:
            claims.get_for(db_session=db_session, user=user, claim_id=ev.claim_id)
            if _withdrawn_from(ev, user):
                ev = None
    except NotFound:
        ev = None
    if ev is None:  # one answer for "not yours" and "does not exist": ids cannot be probed
        raise NotFound("No such evidence.", code="evidence_not_found")
    return ev


def matches_of(db_session: Session, evidence_id: int) -> list[EvidenceMatch]:
    """Duplicates found for one file."""
    return list(db_session.scalars(select(EvidenceMatch).where(EvidenceMatch.evidence_id == evidence_id)))


class Traced(NamedTuple):
    """A matched file's claim and task, for a viewer who may see that claim."""
    claim_id: int
    task_id: int
    task_title: str


def matched_claims(*, db_session: Session, user: User, matched_ids: list[int]) -> dict[int, Traced]:
    """For duplicates the viewer may trace, the claim and task each matched file belongs to: only where the viewer
    may see that claim (its own merchant, its worker, ops; claims.readable_by). Others' files stay anonymous.
    One statement: a much-photographed shop's file has dozens of matches, and reading each one's claim and task
    on its own cost two or three round trips per match."""
    if not matched_ids:
        return {}
    rows = db_session.execute(
        select(Evidence.id, Claim.id, Task.id, Task.title)
        .join(Claim, Claim.id == Evidence.claim_id).join(Task, Task.id == Claim.task_id)
        .where(Evidence.id.in_(matched_ids), claims.readable_by(user)))
    return {ev_id: Traced(claim_id, task_id, title) for ev_id, claim_id, task_id, title in rows}


def served_copy(*, db_session: Session, user: User, evidence_id: int, max_side: int | None) -> bytes:
    """A re-encoded copy without any metadata, orientation applied."""
    ev = get_for(db_session=db_session, user=user, evidence_id=evidence_id)
    if ev.kind != "image":
        raise NotFound("Videos have no image preview yet.", code="no_preview")
    return _preview(ev.sha256, max_side)


def _preview(sha256: str, max_side: int | None) -> bytes:
    """The served copy of a stored original, made once and kept content-addressed beside it."""
    store, key = get_store(), f"{sha256}-preview-{max_side or 'full'}"
    kept = get_if_stored(store, key)
    if kept is not None:
        return kept
    with decode_slot():
        data = strip_and_orient(store.get(sha256), max_side)
    store.put(key, data)
    return data


def served_match_copy(*, db_session: Session, user: User, evidence_id: int, matched_id: int,
                      max_side: int | None) -> bytes:
    """The file a duplicate match points at, for the merchant or ops judging ``evidence_id`` (not for workers)."""
    get_for(db_session=db_session, user=user, evidence_id=evidence_id)
    match = db_session.scalar(select(EvidenceMatch).where(EvidenceMatch.evidence_id == evidence_id,
                                                          EvidenceMatch.matched_evidence_id == matched_id))
    # Workers never see other workers' files; a merchant sees another claim's file only as a recorded duplicate.
    if match is None or user.role == "worker":
        raise NotFound("No such duplicate of this evidence.", code="match_not_found")
    other = db_session.get(Evidence, matched_id)
    if other is not None and match.method.startswith(SAME_SCENE_PREFIX) and user.role == "merchant" \
            and db_session.scalar(select(Task.merchant_id).where(Task.id == other.task_id)) != user.id:
        other = None  # another merchant's photo of the same place is no evidence against this claim: not shown
    if other is not None and _withdrawn_from(other, user):
        other = None
    if other is None or other.kind != "image":
        raise NotFound("This duplicate has no image preview.", code="no_preview")
    return _preview(other.sha256, max_side)


def for_claim(*, db_session: Session, user: User, claim_id: int) -> list[Evidence]:
    """The claim's evidence (withdrawn files only for ops)."""
    claims.get_for(db_session=db_session, user=user, claim_id=claim_id)
    stmt = select(Evidence).where(Evidence.claim_id == claim_id).order_by(Evidence.id)
    if user.role not in ("ops", "admin"):
        stmt = stmt.where(Evidence.withdrawn_at.is_(None))
    return list(db_session.scalars(stmt))


def withdraw(*, db_session: Session, worker: User, evidence_id: int) -> Evidence:
    """The worker takes a file back before submitting (delete or retake). Decided under the claim's row lock,
    which submit also takes, so a file is never withdrawn from a claim being submitted. The file's own lock is
    taken first, in the order processing takes them (its file, then claims): a withdraw waits for the file's
    check to finish instead of closing a lock cycle with it."""
    get_for(db_session=db_session, user=worker, evidence_id=evidence_id)  # whose it is, before any lock
    ev = db_session.scalars(select(Evidence).where(Evidence.id == evidence_id).with_for_update(key_share=True)
                            .execution_options(populate_existing=True)).one()
    found = claims.get_own(db_session=db_session, worker=worker, claim_id=ev.claim_id, for_update=True)
    if found.state not in ("checked_in", "changes_requested"):
        raise Conflict(f"Files can be removed only before submission; the claim is {found.state}.",
                       code="evidence_locked")
    if ev.withdrawn_at is None:
        ev.withdrawn_at = utcnow()
    db_session.commit()
    return ev


class FileBeingChecked(EvidencePending):
    detail = "This file is being checked right now; send it again in a moment."


def _lock_file_now(db_session: Session, ev: Evidence) -> None:
    """The file's row lock, taken after its claim's (a withdrawn file sent again: the upload holds the claim from
    its start). Processing holds its file's lock from the start, then locks claims: waiting here, the claim's lock
    held, would close a cycle that PostgreSQL breaks by failing one side. A file locked now is refused at once
    instead (409 evidence_processing, Retry-After). FOR NO KEY UPDATE: the key-share locks other files' processing
    takes on it (their match rows refer to it) do not refuse it."""
    try:
        db_session.execute(select(Evidence.id).where(Evidence.id == ev.id).with_for_update(nowait=True,
                                                                                         key_share=True))
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            raise FileBeingChecked(retry_after_s=2) from exc
        raise


# An upload whose file has not grown for this long was abandoned by a process that died mid-request (a phone on
# a poor network sends a 25 MB file in well under an hour, and every chunk moves the file's mtime).
ABANDONED_UPLOAD_S = 6 * 3600


def sweep_abandoned_uploads(older_than_s: float = ABANDONED_UPLOAD_S) -> int:
    """Remove partial uploads left in the store by a crash; returns how many."""
    return get_store().sweep_incoming(older_than_s)


def sweep_local_spool(older_than_s: float = ABANDONED_UPLOAD_S) -> int:
    """This host's abandoned partial uploads. With the S3 store the beat sweep runs on some worker host, so each
    API process also sweeps its own host's spool when it starts (after a crash, when leftovers appear)."""
    return sweep_spool(get_settings().evidence_dir / INCOMING, older_than_s)
