"""Stored photos' hashes brought up to the current hashing (``fieldproof evidence rehash``).

Hashing changes from time to time (the photo inside a chat bubble's frame, 30 Nov: evidence.chrome), and a file
keeps the hashes it was processed with: a screenshot stored before such a change is compared with later uploads by
its old ``ui`` regions, and a re-use of it that only those regions would bring near can be missed. This recomputes
each processed photo's hashes from its stored working image (the original for files stored before working images
were kept) and replaces the ones that differ: the ``hashes`` a comparison reads, the full-frame columns, and the
rows the duplicate index is built from. Safe beside running workers and as often as wanted: a file whose hashes are
current is left alone, so a second run changes nothing.

- Hashing runs outside any transaction; the replacement of a batch's changed files runs in one short transaction
  under the duplicate-search lock (evidence.index_store.lock_search, with its timeouts: a run stopped there does not
  hold the processors up for long), as a processing job's insert does, so a file being processed meanwhile sees
  either all of a file's old hash rows or all of its new ones. Workers' in-memory
  indexes keep the old entries until they restart: a stale entry can only bring a file in as a candidate, which
  the comparison then judges by its current ``hashes``.
- Only processed photos: a file still being processed gets current hashes from its own job; videos keep theirs
  (their frames would have to be decoded again from the original, at seconds a file).
- A file whose working image cannot be read is counted and named, not fatal: the run goes on.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from evidence import index_store
from evidence.hashing import ImageHashes, hash_grey, load_grey, to_signed
from evidence.models import Evidence, EvidenceHash
from evidence.storage import working_image_bytes

BATCH = 200  # files hashed per transaction (~1 s of hashing; the lock is held only for the writes)


@dataclass
class Progress:
    """What a batch did: files looked at, files whose hashes changed, files that could not be read (ids)."""

    checked: int = 0
    changed: int = 0
    failed: list[int] = field(default_factory=list)
    last_id: int = 0  # the highest id looked at: the next batch starts after it


def remaining(db_session: Session, after_id: int = 0) -> int:
    """How many processed photos a run from ``after_id`` will look at."""
    return db_session.scalar(select(func.count()).select_from(Evidence).where(*_photos(after_id))) or 0


def _photos(after_id: int) -> tuple:
    return Evidence.id > after_id, Evidence.state == "processed", Evidence.kind == "image"


def current_hashes(sha256: str) -> ImageHashes:
    """The hashes processing would store for this file now (no dihedral variants: those are a query's)."""
    return hash_grey(load_grey(working_image_bytes(sha256)))


def rehash_batch(db_session: Session, after_id: int = 0, batch: int = BATCH) -> Progress:
    """Look at the next ``batch`` processed photos after ``after_id`` and replace the hashes that differ from the
    current hashing's; commits. ``checked`` is 0 when none is left."""
    rows = db_session.execute(select(Evidence.id, Evidence.sha256, Evidence.hashes).where(*_photos(after_id))
                              .order_by(Evidence.id).limit(batch)).all()
    db_session.commit()  # no transaction stays open while the batch is hashed (it only read)
    progress, fresh = Progress(checked=len(rows), last_id=rows[-1].id if rows else after_id), {}
    for ev_id, sha256, stored in rows:
        try:
            now = current_hashes(sha256)
        except Exception:  # noqa: BLE001 - a missing or unreadable stored file: named in the report, the run goes on
            progress.failed.append(ev_id)
            continue
        if not _same(stored, now):
            fresh[ev_id] = now
    if fresh:
        _replace(db_session, fresh)
    progress.changed = len(fresh)
    return progress


def _same(stored: dict | None, now: ImageHashes) -> bool:
    frames = (stored or {}).get("frames") or []
    if len(frames) != 1:
        return False
    old = ImageHashes.from_dict(frames[0])
    return (old.phash, old.dhash, old.texture) == (now.phash, now.dhash, round(now.texture, 2))


def _replace(db_session: Session, fresh: dict[int, ImageHashes]) -> None:
    index_store.lock_search(db_session)
    for ev in db_session.scalars(select(Evidence).where(Evidence.id.in_(fresh), Evidence.state == "processed")
                                 .order_by(Evidence.id).with_for_update(key_share=True)):
        now = fresh[ev.id]
        ev.hashes = {"frames": [now.to_dict()]}
        ev.phash, ev.dhash = to_signed(now.phash["full"]), to_signed(now.dhash["full"])
        db_session.execute(delete(EvidenceHash).where(EvidenceHash.evidence_id == ev.id))
        db_session.add_all(EvidenceHash(evidence_id=ev.id, phash=to_signed(h)) for h in now.phash.values())
    db_session.commit()


def rehash_all(db_session: Session, after_id: int = 0, batch: int = BATCH) -> Iterator[Progress]:
    """Every processed photo after ``after_id``, batch by batch (each one committed: an interrupted run resumes
    from the last ``last_id`` it reported, or simply from the start)."""
    while (progress := rehash_batch(db_session, after_id, batch)).checked:
        yield progress
        after_id = progress.last_id
