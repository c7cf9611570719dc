"""The process-wide duplicate index, loaded from ``evidence_hash`` and caught up incrementally.

PostgreSQL is the truth: the index only ever holds committed rows, is rebuilt after a restart on first
use, and is brought up to date (rows with a higher id) before every search: the first round of a file's search
without the duplicate-search lock, the second under it (evidence.pairs.Finder). Entries only ever append, so the
second round scans only what the catch-up under the lock added: under READ COMMITTED every hash committed before
the first round's read was in it, and a hash enters with its file's ``processed`` state, which never goes back.
"""
from __future__ import annotations

import threading

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core.config import get_settings
from evidence.index import HashIndex
from evidence.models import EvidenceHash

LOCK_KEY = 7_146_031_001  # advisory lock id serialising duplicate search + insert
_lock = threading.Lock()
_state = {"index": HashIndex(), "loaded_upto": 0, "db": None}


def lock_search(db_session: Session) -> None:
    """Take the duplicate-search lock for the rest of the transaction. Whoever holds it must not hold it for good
    if it stops (frozen, its host cut off, its connection still open): from here its session ends after a while
    idle in this transaction, and a wait for the lock ends after a while (core.config: the job is retried)."""
    s = get_settings()
    db_session.execute(text("SELECT set_config('idle_in_transaction_session_timeout', :idle, true), "
                            "set_config('lock_timeout', :wait, true)"),
                       {"idle": f"{int(s.evidence_idle_in_transaction_s * 1000)}ms",
                        "wait": f"{int(s.evidence_lock_wait_s * 1000)}ms"})
    db_session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})


def current(db_session: Session) -> HashIndex:
    """The index with every committed hash of this database."""
    bind = db_session.get_bind()
    db_key = str(getattr(bind, "url", None) or bind.engine.url)
    with _lock:
        if _state["db"] != db_key:
            _state.update(index=HashIndex(), loaded_upto=0, db=db_key)
        rows = db_session.execute(select(EvidenceHash.id, EvidenceHash.evidence_id, EvidenceHash.phash)
                                  .where(EvidenceHash.id > _state["loaded_upto"]).order_by(EvidenceHash.id)).all()
        if rows:
            arr = np.asarray(rows, dtype=np.int64)
            idx: HashIndex = _state["index"]
            if len(idx) == 0:
                _state["index"] = HashIndex.from_arrays(arr[:, 1], arr[:, 2].view(np.uint64))
            else:
                for _, eid, h in rows:
                    idx.add(eid, h)
            _state["loaded_upto"] = int(arr[-1, 0])
        return _state["index"]
