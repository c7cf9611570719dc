"""Heatmap roll-ups, maintained incrementally from check-ins and claim outcomes.

Each source is read past a watermark (its last folded id) whose row is locked for the transaction, so the
beat job is safe to run twice or on several hosts. Rows newer than a settle window are left for the next
run: ids come from a sequence at insert time, so a row with a lower id may still be committing; waiting
until every transaction that could hold such a row has ended keeps the watermark from skipping it.
Distinct workers are exact per hour and per UTC day: worker sets are kept for the periods still being
filled and pruned behind the watermark.
"""
from __future__ import annotations

import time
from collections import Counter
from datetime import date, datetime, timedelta

from sqlalchemy import ARRAY, Integer, Text, and_, cast, func, select
from sqlalchemy import bindparam, delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from checkin.models import CLAIM_FIX_SLACK, Checkin
from core import reasons as reason_codes
from core.config import get_settings
from core.models import utcnow
from geo import dwell, h3cells
from heatmap.models import HeatCellDay, HeatCellHour, HeatCellWorkerDay, HeatCellWorkerHour, RollupState
from tasks.models import Claim, ClaimEvent

SPOOF_CODES = reason_codes.HEATMAP_SPOOF
COUNTS = ("checkins", "spoof_flags", "duplicate_flags", "completions", "rejections", "spot_check_failures")
KEEP_WORKER_HOURS = timedelta(hours=3)
KEEP_WORKER_DAYS = timedelta(days=2)


def _state(db_session: Session, name: str) -> RollupState:
    db_session.execute(insert(RollupState).values(name=name, last_id=0).on_conflict_do_nothing())
    return db_session.scalar(select(RollupState).where(RollupState.name == name).with_for_update())


def _settled(rows: list, at_index: int, cutoff: datetime) -> list:
    """The leading rows older than the cutoff (rows come in id order)."""
    for i, row in enumerate(rows):
        if row[at_index] > cutoff:
            return rows[:i]
    return rows


class _Batch:
    """Measures and worker sets of one batch, per cell at every roll-up resolution and per hour."""

    def __init__(self) -> None:
        self.hours: dict[tuple[int, int, datetime], Counter] = {}
        self.hists: dict[tuple[int, int, datetime], list[int]] = {}
        self.workers: set[tuple[int, int, datetime, int]] = set()
        self._parents: dict[int, list[tuple[int, int]]] = {}

    def _cells(self, base: int) -> list[tuple[int, int]]:
        if base not in self._parents:
            self._parents[base] = [(r, base if r == h3cells.BASE_RES else h3cells.parent(base, r))
                                   for r in h3cells.ROLLUP_RES]
        return self._parents[base]

    def add(self, base: int, at: datetime, *, worker_id: int | None = None, dwell_s: int | None = None,
            **counts: int) -> None:
        hour = at.replace(minute=0, second=0, microsecond=0)
        for res, cell in self._cells(base):
            key = (res, cell, hour)
            self.hours.setdefault(key, Counter()).update(counts)
            if dwell_s is not None:
                self.hists[key] = dwell.add(self.hists.get(key, []), dwell.one_hot(dwell_s))
            if worker_id is not None:
                self.workers.add((res, cell, hour, worker_id))

    def write(self, db_session: Session) -> None:
        """Upsert the hour and day rows, counting workers new to each cell-hour and cell-day."""
        if not self.hours:
            return
        new_by_hour = _insert_workers(db_session, HeatCellWorkerHour, "hour", self.workers)
        new_by_day = _insert_workers(db_session, HeatCellWorkerDay, "day",
                                     {(r, c, h.date(), w) for r, c, h, w in self.workers})
        days: dict[tuple[int, int, date], Counter] = {}
        day_hists: dict[tuple[int, int, date], list[int]] = {}
        for (res, cell, hour), counts in self.hours.items():
            day_key = (res, cell, hour.date())
            days.setdefault(day_key, Counter()).update(counts)
            day_hists[day_key] = dwell.add(day_hists.get(day_key, []), self.hists.get((res, cell, hour), []))
        for key, n in new_by_hour.items():
            self.hours[key]["workers"] += n
        for key, n in new_by_day.items():
            days[key]["workers"] += n
        _upsert(db_session, HeatCellHour, "hour", self.hours, self.hists)
        _upsert(db_session, HeatCellDay, "day", days, day_hists)


def _literal(values: list) -> str:
    """A PostgreSQL array literal of numbers, dates or times: no element of these needs quoting (ISO times have no
    spaces), and one join costs a fraction of the driver dumping each element of a list parameter (psycopg checks
    every element of a text-format array for quoting: ~40 % of a roll-up's client CPU, measured)."""
    if values and isinstance(values[0], (date, datetime)):
        return "{" + ",".join(v.isoformat() for v in values) + "}"
    return "{" + ",".join(map(str, values)) + "}"


def _arrays(model, values: dict[str, list], types: dict | None = None):
    """A table-valued unnest of parallel arrays typed like ``model``'s columns (or ``types``, sent as a list
    parameter): one round trip, one parameter per column, any number of rows."""
    types = types or {}
    cols = [bindparam(name, vals, type_=ARRAY(types[name])) if name in types
            else cast(bindparam(name, _literal(vals), type_=Text), ARRAY(model.__table__.c[name].type))
            for name, vals in values.items()]
    return func.unnest(*cols).table_valued(*values.keys()).render_derived(name="batch")


def _insert_workers(db_session: Session, model, period: str, rows: set) -> Counter:
    """Insert (res, cell, period, worker) sets; returns how many were new per (res, cell, period)."""
    if not rows:
        return Counter()
    res, cells, periods, workers = (list(x) for x in zip(*rows))
    tv = _arrays(model, {"res": res, "cell": cells, period: periods, "worker_id": workers})
    stmt = (insert(model).from_select(["res", "cell", period, "worker_id"], select(tv))
            .on_conflict_do_nothing().returning(model.res, model.cell, getattr(model, period)))
    return Counter(tuple(r) for r in db_session.execute(stmt))


def _upsert(db_session: Session, model, period: str, rows: dict, hists: dict) -> None:
    """Add the batch's measures to the period rows (insert or increment)."""
    keys = list(rows)
    centres = [h3cells.centre(cell) for _, cell, _ in keys]
    values = {"res": [k[0] for k in keys], "cell": [k[1] for k in keys], period: [k[2] for k in keys],
              "lat": [c[0] for c in centres], "lon": [c[1] for c in centres]}
    for name in COUNTS + ("workers",):
        values[name] = [rows[k][name] for k in keys]
    # Histograms travel as array literals: unnest would flatten an array of arrays.
    values["dwell_hist"] = ["{" + ",".join(map(str, hists.get(k, []))) + "}" for k in keys]
    tv = _arrays(model, values, {"dwell_hist": Text})
    cols = [tv.c[name] for name in values if name != "dwell_hist"] + [cast(tv.c.dwell_hist, ARRAY(Integer))]
    stmt = insert(model).from_select(list(values), select(*cols))
    added = {name: getattr(model, name) + getattr(stmt.excluded, name) for name in COUNTS + ("workers",)}
    added["dwell_hist"] = func.hist_add(model.dwell_hist, stmt.excluded.dwell_hist)
    db_session.execute(stmt.on_conflict_do_update(index_elements=["res", "cell", period], set_=added))


def _fold_checkins(db_session: Session, batch: int, cutoff: datetime) -> int:
    state = _state(db_session, "checkin")
    rows = db_session.execute(
        select(Checkin.id, Checkin.server_time, Checkin.h3_r9, Checkin.lat, Checkin.lon, Checkin.worker_id,
               Checkin.kind, Checkin.reasons, Claim.dwell_s)
        .outerjoin(Claim, and_(Claim.id == Checkin.claim_id, Checkin.kind == "out"))
        .where(Checkin.id > state.last_id).order_by(Checkin.id).limit(batch)).all()
    rows = _settled(rows, 1, cutoff)
    if not rows:
        return 0
    acc = _Batch()
    for _, at, r9, lat, lon, worker_id, kind, reasons, dwell_s in rows:
        base = r9 if r9 is not None else h3cells.cell(lat, lon)
        if kind == "in":
            acc.add(base, at, worker_id=worker_id, checkins=1, spoof_flags=int(bool(SPOOF_CODES & set(reasons))))
        else:
            acc.add(base, at, worker_id=worker_id, dwell_s=dwell_s)
    acc.write(db_session)
    _prune_worker_sets(db_session, rows[-1][1])
    state.last_id = rows[-1][0]
    return len(rows)


def _outcome(from_state: str | None, to_state: str, flags: list[str]) -> dict[str, int]:
    """Which heatmap measures a claim transition adds to (empty for transitions the map does not show)."""
    if to_state == "accepted":
        return {"completions": 1}
    if to_state == "rejected":
        return {"rejections": 1}
    if from_state == "spot_check" and to_state == "closed":
        return {"spot_check_failures": 1}
    if from_state == "checked_in" and to_state == "submitted" and reason_codes.HEATMAP_DUPLICATE & set(flags):
        return {"duplicate_flags": 1}  # counted once per claim, at its first submission
    return {}


def _fold_claim_events(db_session: Session, batch: int, cutoff: datetime) -> int:
    state = _state(db_session, "claim_event")
    # A claim is placed where its worker first checked in for it.
    place = (select(Checkin.h3_r9).where(Checkin.claim_id == Claim.id, Checkin.kind == "in",
                                         Checkin.server_time >= Claim.claimed_at - CLAIM_FIX_SLACK)  # prunes at run time
             .order_by(Checkin.id).limit(1).scalar_subquery())
    rows = db_session.execute(
        select(ClaimEvent.id, ClaimEvent.at, ClaimEvent.from_state, ClaimEvent.to_state, Claim.flags, place)
        .join(Claim, Claim.id == ClaimEvent.claim_id)
        .where(ClaimEvent.id > state.last_id).order_by(ClaimEvent.id).limit(batch)).all()
    rows = _settled(rows, 1, cutoff)
    if not rows:
        return 0
    acc = _Batch()
    for _, at, from_state, to_state, flags, base in rows:
        counts = _outcome(from_state, to_state, flags or [])
        if counts and base is not None:
            acc.add(base, at, **counts)
    acc.write(db_session)
    state.last_id = rows[-1][0]
    return len(rows)


def _prune_worker_sets(db_session: Session, reached: datetime) -> None:
    """Drop worker sets of periods the watermark has left behind (new check-ins land in the current period)."""
    db_session.execute(delete(HeatCellWorkerHour).where(HeatCellWorkerHour.hour < reached - KEEP_WORKER_HOURS))
    db_session.execute(delete(HeatCellWorkerDay).where(HeatCellWorkerDay.day < (reached - KEEP_WORKER_DAYS).date()))


def roll_up(*, db_session: Session, batch: int = 20_000, settle_s: float | None = None) -> int:
    """Fold new check-ins and claim outcomes into the roll-ups; returns how many source rows were read."""
    settle = get_settings().heatmap_settle_s if settle_s is None else settle_s
    cutoff = utcnow() - timedelta(seconds=settle)
    n = _fold_checkins(db_session, batch, cutoff) + _fold_claim_events(db_session, batch, cutoff)
    db_session.commit()
    return n


def catch_up(*, db_session: Session, batch: int = 20_000, budget_s: float = 45.0) -> int:
    """Roll up batch after batch until nothing settled is left or the time budget (under the beat interval) is spent.
    A run that read less than a batch has folded everything settled when it read: the rows that settle after it
    are the next run's (another pass for them cost a run's fixed cost again, ~10-15 ms of CPU, for a few rows:
    in the simulated day, whose clock runs ~70x, 895 passes over 97 runs, 482 of them folding ~4 rows each)."""
    deadline, total = time.monotonic() + budget_s, 0
    while time.monotonic() < deadline:
        n = roll_up(db_session=db_session, batch=batch)
        total += n
        if n < batch:  # neither source filled its batch (a full one alone makes n >= batch)
            break
    return total


def pending(*, db_session: Session) -> int:
    """Check-ins and claim events not yet folded into the roll-ups."""
    marks = dict(db_session.execute(select(RollupState.name, RollupState.last_id)).all())
    checkins = select(func.count()).select_from(Checkin).where(Checkin.id > marks.get("checkin", 0))
    events = select(func.count()).select_from(ClaimEvent).where(ClaimEvent.id > marks.get("claim_event", 0))
    return (db_session.scalar(checkins) or 0) + (db_session.scalar(events) or 0)
