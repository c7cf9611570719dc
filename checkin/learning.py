"""Learning each site's radio fingerprint from accepted check-ins, off the check-in's write path.

A check-in with a scan that was accepted (GPS at the site, no hard reason) is stored with ``radio_learned =
false``; this sweep (beat: ``fieldproof.learn_radio``) takes a batch of them, rebuilds the fingerprint of each
task they belong to from its latest ``radio_window`` learnable check-ins, and then re-judges those check-ins
against it: a scan made before the fingerprint was established can still be found to share nothing with it
(the first visits of a hidden spoofer to a new site), and its claim is flagged ``radio_mismatch`` then, in
whatever state it is: on a claim already paid the flag is for ops (credit, recovery); nothing is re-decided.
One sweep at a time (advisory lock); every step is idempotent, so a repeated or crashed run is harmless.
"""
from __future__ import annotations

import json

from sqlalchemy import text
from sqlalchemy.orm import Session

from checkin.radio import RadioContext, established
from checkin.settings import get_checkin_settings

LOCK_KEY = 0x7261_6469_6F  # "radio"

_TAKE = text("""
UPDATE checkin SET radio_learned = true
 WHERE id IN (SELECT id FROM checkin WHERE radio_learned = false ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED)
RETURNING task_id
""")
_WINDOW = """WITH w AS (SELECT id, worker_id, server_time, radio FROM checkin
                       WHERE task_id = :t AND radio_learned ORDER BY id DESC LIMIT :n)"""
_SITE = text(_WINDOW + """
, counted AS (SELECT ARRAY(SELECT h FROM w, unnest(w.radio) h GROUP BY h
                             HAVING count(DISTINCT w.worker_id) >= :hash_min ORDER BY h) AS hs)
INSERT INTO radio_site (task_id, checkins, workers, hashes, counted, updated_at)
SELECT :t, count(*), count(DISTINCT worker_id), (SELECT cardinality(hs) FROM counted),
       (SELECT hs FROM counted), now() FROM w
ON CONFLICT (task_id) DO UPDATE SET checkins = EXCLUDED.checkins, workers = EXCLUDED.workers,
                                    hashes = EXCLUDED.hashes, counted = EXCLUDED.counted,
                                    updated_at = EXCLUDED.updated_at
RETURNING workers, hashes
""")
_FORGET = text("DELETE FROM radio_fingerprint WHERE task_id = :t")
_LEARN = text(_WINDOW + """
INSERT INTO radio_fingerprint (task_id, hash, workers, last_seen_at)
SELECT :t, h, count(DISTINCT w.worker_id), max(w.server_time) FROM w, unnest(w.radio) h GROUP BY h
""")
# Learned check-ins of the window whose scan shares nothing with the counted fingerprint or the pins: the site
# row's counted hashes, as _SITE just wrote them in this transaction (the set a check-in's measure matches).
_STRANGERS = text(_WINDOW + """
SELECT w.id FROM w JOIN task t ON t.id = :t JOIN radio_site rs ON rs.task_id = :t
 WHERE NOT (w.radio && t.radio_pins) AND NOT (w.radio && rs.counted)
""")
_FLAG_FIXES = text("""
UPDATE checkin SET radio_learned = NULL, reasons = array_append(reasons, 'radio_mismatch'),
       signals = signals || CAST(:signal AS jsonb), risk_score = least(100, risk_score + :weight)
 WHERE id = ANY(:ids) AND NOT ('radio_mismatch' = ANY(reasons))
RETURNING claim_id, risk_score
""")
_FLAG_CLAIMS = text("""
UPDATE claim c SET flags = ARRAY(SELECT DISTINCT x FROM unnest(c.flags || ARRAY['radio_mismatch']::varchar[]) x
                                  ORDER BY x),
       risk_score = greatest(c.risk_score, v.risk)
  FROM (SELECT id, max(risk) AS risk FROM unnest(CAST(:claims AS bigint[]), CAST(:risks AS int[])) AS u(id, risk)
         GROUP BY id) v
 WHERE c.id = v.id
""")


def learn(*, db_session: Session, batch: int = 500) -> int:
    """Learn from up to ``batch`` new accepted scans and re-judge their sites; returns how many were learned."""
    got = db_session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": LOCK_KEY}).scalar_one()
    if not got:
        return 0  # another sweep is at it
    task_ids = db_session.scalars(_TAKE, {"n": batch}).all()
    for task_id in sorted(set(task_ids)):
        relearn(db_session, task_id)
    db_session.commit()
    return len(task_ids)


def relearn(db_session: Session, task_id: int) -> int:
    """Rebuild one task's fingerprint from its latest learnable scans and flag scans foreign to it (flushes);
    returns how many were flagged (they stop teaching the site, so it is rebuilt without them)."""
    s = get_checkin_settings()
    workers, hashes = _rebuild(db_session, task_id)
    pinned = db_session.execute(text("SELECT cardinality(radio_pins) FROM task WHERE id = :t"), {"t": task_id})
    if not established(RadioContext(site_workers=workers, site_hashes=hashes, pins=pinned.scalar_one()), s):
        return 0
    strangers = db_session.scalars(_STRANGERS, {"t": task_id, "n": s.radio_window}).all()
    flagged = _flag(db_session, list(strangers), workers) if strangers else 0
    if flagged:
        _rebuild(db_session, task_id)
    return flagged


def _rebuild(db_session: Session, task_id: int) -> tuple[int, int]:
    s = get_checkin_settings()
    window = {"t": task_id, "n": s.radio_window}
    workers, hashes = db_session.execute(_SITE, {**window, "hash_min": s.radio_hash_min_workers}).one()
    db_session.execute(_FORGET, {"t": task_id})
    db_session.execute(_LEARN, window)
    return workers, hashes


def _flag(db_session: Session, checkin_ids: list[int], workers: int) -> int:
    s = get_checkin_settings()
    signal = [{"code": "radio_mismatch", "weight": s.weight_radio_mismatch,
               "detail": f"found later: none of the Wi-Fi/cell ids scanned matches this site as {workers} workers' "
                         "accepted check-ins have since shown it"}]
    rows = db_session.execute(_FLAG_FIXES, {"ids": sorted(checkin_ids), "signal": json.dumps(signal),
                                            "weight": s.weight_radio_mismatch}).all()
    if rows:
        claim_ids = sorted({r[0] for r in rows})
        # Locked in id order first, like every other multi-claim update (evidence matches), so none deadlock.
        db_session.execute(text("SELECT id FROM claim WHERE id = ANY(:ids) ORDER BY id FOR UPDATE"), {"ids": claim_ids})
        db_session.execute(_FLAG_CLAIMS, {"claims": [r[0] for r in rows], "risks": [r[1] for r in rows]})
    return len(rows)
