"""Write ``sim.month``'s history in bulk through the domain tables, then roll the heatmap up.

Users, claims, check-ins, claim audit rows, spot checks and credit events are multi-row INSERTs with ids taken
from their sequences in time order (the heatmap roll-up reads sources in id order). Money goes only through
the ledger service: merchants deposit, tasks hold escrow when published, each paid claim is paid from escrow
once (``ledger.pay_claim``), so ``fieldproof ledger check`` stays clean. Idempotent: the first city merchant
marks a seeded database, under an advisory lock so two ``fieldproof demo`` runs at once seed once.
"""
from __future__ import annotations

import hashlib
import secrets
import time
from collections import Counter
from datetime import datetime, timedelta

from psycopg.types.json import Jsonb
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.orm import Session

from accounts.models import User
from accounts.security import hash_password
from checkin.models import Checkin
from core import reasons as reason_codes
from core.models import utcnow
from evidence.models import Evidence, EvidenceMatch
from evidence.storage import get_store
from geo import crs as geocrs
from geo import h3cells
from heatmap import rollup
from ledger import service as ledger
from ledger.provider import LocalSandboxProvider
from sim import photos
from sim.month import Size, Visit, generate, shop_type
from tasks import service as tasks
from tasks.models import Claim, ClaimEvent, CreditEvent, SpotCheck, Task
from tasks.schemas import TaskCreate

MERCHANTS = 4
MARKER = "city_merchant_1"
REWARD_FEN = {"store_visit": 1500, "shelf_audit": 1800, "flyer_run": 1200, "poster": 2000, "signup_drive": 3000}
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ("伟", "芳", "娜", "敏", "静", "磊", "洋", "勇", "艳", "杰", "涛", "明", "超", "霞", "平", "刚", "丽", "强")
DISTRICT_ZH = {"wangfujing": "王府井", "xidan": "西单", "sanlitun": "三里屯", "guomao": "国贸", "zhongguancun": "中关村",
               "wudaokou": "五道口", "qianmen": "前门", "wangjing": "望京"}
TYPE_ZH = {"store_visit": "门店拜访", "shelf_audit": "货架巡检", "flyer_run": "传单派发", "poster": "海报张贴",
           "signup_drive": "地推拉新"}
PHOTOS_FOR_OPEN_CHECKS = 200  # queued spot checks that get real photos (the rest of history keeps none)


def _ids(db_session: Session, table: str, n: int) -> list[int]:
    """``n`` fresh ids from the table's identity sequence, ascending."""
    if not n:
        return []
    return list(db_session.scalars(text(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) "
                                        "FROM generate_series(1, :n)"), {"n": n}))


def _users(db_session: Session, size: Size, start: datetime) -> tuple[list[User], list[int]]:
    """The city's merchants (ORM rows: services take them) and workers (bulk), all with one unknown password."""
    secret_hash = hash_password(secrets.token_urlsafe(24))  # no one can sign in as them: they are history
    merchants = [User(username=f"city_merchant_{i}", password_hash=secret_hash, role="merchant",
                      display_name=f"{SURNAMES[i]}记商行", created_at=start) for i in range(1, MERCHANTS + 1)]
    db_session.add_all(merchants)
    ids = _ids(db_session, "app_user", size.workers)
    rows = [{"id": uid, "username": f"city_worker_{i:04d}", "password_hash": secret_hash, "role": "worker",
             "display_name": SURNAMES[i % len(SURNAMES)] + GIVEN[(i * 7) % len(GIVEN)] + GIVEN[i % len(GIVEN)],
             "real_name_verified": True, "created_at": start} for i, uid in enumerate(ids)]
    db_session.execute(insert(User), rows)
    db_session.flush()
    return merchants, ids


def _tasks(db_session: Session, shops, visits: list[Visit], merchants: list[User], ops: User,
           start: datetime) -> list[Task]:
    """One published task per shop (through the service: escrow held), dated back to the month's start."""
    per_shop = Counter(v.shop for v in visits)
    provider = LocalSandboxProvider(db_session)
    budget = Counter()
    for i, shop in enumerate(shops):
        budget[i % MERCHANTS] += ledger.escrow_for_task(REWARD_FEN[shop_type(i)], per_shop[i] + 20)
    for m, merchant in enumerate(merchants):
        ledger.deposit(db_session=db_session, merchant_id=merchant.id, amount_fen=10_000, provider=provider,
                       idempotency_key=f"city-security-{merchant.id}", security=True)
        ledger.deposit(db_session=db_session, merchant_id=merchant.id, amount_fen=budget[m] + 100_000,
                       provider=provider, idempotency_key=f"city-topup-{merchant.id}")
    out = []
    for i, shop in enumerate(shops):
        kind, merchant = shop_type(i), merchants[i % MERCHANTS]
        body = TaskCreate(title=f"{DISTRICT_ZH.get(shop.district, shop.district)} {TYPE_ZH[kind]} #{i + 1}", type=kind,
                          reward_fen=REWARD_FEN[kind], slots=per_shop[i] + 20, starts_at=start,
                          ends_at=utcnow() + timedelta(days=14), crs="gcj02", geofence=shop.fence)
        task = tasks.create(db_session=db_session, merchant=merchant, body=body)
        tasks.publish(db_session=db_session, merchant=merchant, task_id=task.id)
        out.append(tasks.review(db_session=db_session, ops=ops, task_id=task.id, decision="approve", reason="demo"))
    for i, t in enumerate(out):
        db_session.execute(update(Task).where(Task.id == t.id)
                           .values(created_at=start, published_at=start, slots_taken=per_shop[i]))
    return out


def _events(v: Visit) -> list[tuple[str | None, str, datetime]]:
    """The claim's audit trail (from, to, at) up to its final state, as the service writes it."""
    submitted = v.checkout_at + timedelta(minutes=1)
    decided = submitted + timedelta(hours=2)
    trail = [(None, "claimed", v.claimed_at), ("claimed", "checked_in", v.checkin_at),
             ("checked_in", "submitted", submitted)]
    if v.state == "submitted":
        return trail
    if v.state == "rejected":
        return trail + [("submitted", "rejected", decided)]
    trail.append(("submitted", "confirmed", decided))
    if v.sampled:
        trail.append(("confirmed", "spot_check", decided))
        if v.spot_state == "open":
            return trail
        if v.spot_state == "failed":
            return trail + [("spot_check", "closed", decided + timedelta(hours=20))]
        decided += timedelta(hours=20)
        trail.append(("spot_check", "accepted", decided))
    else:
        trail.append(("confirmed", "accepted", decided))
    return trail + [("accepted", "paid", decided)]


def _claim_row(cid: int, v: Visit, task: Task, worker_id: int, trail) -> dict:
    at = {to: when for _, to, when in trail}
    return {"id": cid, "task_id": task.id, "worker_id": worker_id, "state": v.state, "claimed_at": v.claimed_at,
            "expires_at": v.claimed_at + timedelta(hours=2), "checked_in_at": v.checkin_at,
            "checked_out_at": v.checkout_at, "dwell_s": v.dwell_s, "submitted_at": at["submitted"],
            "confirmed_at": at.get("confirmed"), "changes_requested": False,
            "resolved_at": at.get("paid") or at.get("rejected") or at.get("closed"),
            "risk_score": v.risk, "flags": v.flags}


def _fix_row(cid: int, v: Visit, task: Task, worker_id: int, kind: str) -> dict:
    lat, lon = v.fix_in if kind == "in" else v.fix_out
    glat, glon = geocrs.wgs84_to_gcj02(lat, lon)
    taken = v.checkin_at if kind == "in" else v.checkout_at
    reasons = v.reasons if kind == "in" else []
    signals = [{"code": c, "weight": 40 if c in reason_codes.FORCES_SPOT_CHECK else 10,
                "detail": reason_codes.text(c, "en")} for c in reasons]
    return {"claim_id": cid, "worker_id": worker_id, "task_id": task.id, "kind": kind,
            "point": f"SRID=4326;POINT({lon} {lat})", "lat": lat, "lon": lon, "raw_lat": round(glat, 6),
            "raw_lon": round(glon, 6), "raw_crs": "gcj02", "raw_coord_key": f"{glat:.6f},{glon:.6f}",
            "accuracy_m": v.accuracy_m, "accuracy_95_m": round(v.accuracy_m * 1.73, 1), "provider": "gps",
            "platform": "android", "mock_location": "mock_location" in reasons, "device_id": v.device,
            "client_time": taken, "server_time": taken + timedelta(seconds=2), "verdict": "inside",
            "distance_m": 0.0, "risk_score": v.risk if kind == "in" else 0, "reasons": reasons, "signals": signals,
            "h3_r9": h3cells.cell(lat, lon)}


def _history(db_session: Session, visits: list[Visit], task_of: list[Task], worker_ids: list[int]) -> list[int]:
    """Claims, their audit rows, check-ins, spot checks and credit events in bulk; returns the claim ids."""
    claim_ids = _ids(db_session, "claim", len(visits))
    trails = [_events(v) for v in visits]
    claims, fixes, events, checks, credits = [], [], [], [], []
    for cid, v, trail in zip(claim_ids, visits, trails):
        task, worker_id = task_of[v.shop], worker_ids[v.worker]
        claims.append(_claim_row(cid, v, task, worker_id, trail))
        fixes += [_fix_row(cid, v, task, worker_id, "in"), _fix_row(cid, v, task, worker_id, "out")]
        events += [{"claim_id": cid, "from_state": a, "to_state": b, "at": at} for a, b, at in trail]
        if v.spot_state:
            decided = trail[-1][2] if v.spot_state in ("passed", "failed") else None
            checks.append({"claim_id": cid, "probability": 1.0 if v.sampled and v.risk >= 40 else 0.05,
                           "stratum": "flagged" if v.risk >= 40 else "clean", "state": v.spot_state,
                           "created_at": trail[3][2], "decided_at": decided,
                           "verdict_reason": "demo history" if decided else None})
        if v.state == "paid":
            credits.append({"worker_id": worker_id, "delta": 1, "reason": "accepted", "claim_id": cid,
                            "at": trail[-1][2]})
        elif v.state == "closed":
            credits.append({"worker_id": worker_id, "delta": -5, "reason": "spot check failed", "claim_id": cid,
                            "at": trail[-1][2]})
    _copy(db_session, Claim, claims)
    # Sources are read by the heatmap roll-up in id order: give ids in time order.
    fixes.sort(key=lambda r: r["server_time"])
    events.sort(key=lambda r: r["at"])
    for row, i in zip(fixes, _ids(db_session, "checkin", len(fixes))):
        row["id"] = i
    for row, i in zip(events, _ids(db_session, "claim_event", len(events))):
        row["id"] = i
    for table, rows in ((Checkin, fixes), (ClaimEvent, events), (SpotCheck, checks), (CreditEvent, credits)):
        _copy(db_session, table, rows)
    return claim_ids


def _copy(db_session: Session, model, rows: list[dict]) -> None:
    """COPY rows into the model's table on the session's connection (in its transaction)."""
    if not rows:
        return
    cols = list(rows[0])
    conn = db_session.connection().connection.driver_connection
    with conn.cursor() as cur, cur.copy(f"COPY {model.__tablename__} ({', '.join(cols)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([Jsonb(row[c]) if c in ("signals", "data") else row[c] for c in cols])


def _pay(db_session: Session, visits: list[Visit], claim_ids: list[int], task_of: list[Task],
         worker_ids: list[int]) -> int:
    """Pay every paid claim from its task's escrow through the ledger (once per claim, balanced postings);
    returns how many."""
    spent: Counter = Counter()
    payouts = []
    for cid, v in zip(claim_ids, visits):
        if v.state != "paid":
            continue
        task = task_of[v.shop]
        commission = ledger.commission_for(task.reward_fen, task.commission_bp)
        payouts.append((cid, task.merchant_id, worker_ids[v.worker], task.reward_fen, commission))
        spent[task.id] += task.reward_fen + commission
    n = ledger.pay_claims(db_session, payouts)
    for task in task_of:
        if spent[task.id]:
            tasks.adjust_escrow(db_session, task, -spent[task.id])
    return n


def _photo_row(db_session: Session, cid: int, task: Task, worker_id: int, data: bytes, at: datetime,
               reasons: list[str]) -> int:
    sha = hashlib.sha256(data).hexdigest()
    get_store().put(sha, data)
    return db_session.scalar(insert(Evidence).values(
        claim_id=cid, worker_id=worker_id, task_id=task.id, sha256=sha, kind="image", mime="image/jpeg",
        size_bytes=len(data), width=photos.SIZE[0], height=photos.SIZE[1], state="processed", reasons=reasons,
        created_at=at, processed_at=at).returning(Evidence.id))


def _evidence(db_session: Session, visits: list[Visit], claim_ids: list[int], task_of: list[Task],
              worker_ids: list[int]) -> int:
    """Real photos for the newest queued spot checks; a re-used one is a transformed copy of an earlier claim's
    photo, matched both ways as the duplicate finder records it (so ops see the original beside it)."""
    queued = [i for i, v in enumerate(visits) if v.spot_state == "open"][-PHOTOS_FOR_OPEN_CHECKS:]
    earlier = [i for i, v in enumerate(visits) if v.state == "paid"]
    used: set[int] = set()
    n = 0
    for i in queued:
        v, cid = visits[i], claim_ids[i]
        scene = photos.scene(cid)
        taken = v.checkin_at + timedelta(minutes=2)
        if "duplicate_evidence" not in v.flags or not earlier:
            _photo_row(db_session, cid, task_of[v.shop], worker_ids[v.worker], photos.camera_jpeg(scene), taken, [])
            n += 1
            continue
        j = max((k for k in earlier if k < i and k not in used), default=None)
        if j is None:
            continue
        used.add(j)
        original = photos.camera_jpeg(photos.scene(claim_ids[j]))
        o = visits[j]
        oid = _photo_row(db_session, claim_ids[j], task_of[o.shop], worker_ids[o.worker], original,
                         o.checkin_at + timedelta(minutes=2), ["evidence_reused_later"])
        rid = _photo_row(db_session, cid, task_of[v.shop], worker_ids[v.worker], photos.reuse(original, "wechat"),
                         taken, ["duplicate_evidence"])
        db_session.execute(insert(EvidenceMatch), [
            {"evidence_id": rid, "matched_evidence_id": oid, "distance": 4, "method": "phash"},
            {"evidence_id": oid, "matched_evidence_id": rid, "distance": 4, "method": "phash"}])
        n += 2
    return n


def seed(*, db_session: Session, ops: User, size: Size | None = None, now: datetime | None = None) -> dict:
    """Seed a month of city history once (later calls find the marker and do nothing); commits."""
    size = size or Size()
    db_session.execute(text("SELECT pg_advisory_xact_lock(hashtext('fieldproof.demo.month'))"))
    if db_session.scalar(select(func.count()).select_from(User).where(User.username == MARKER)):
        db_session.commit()
        return {"seeded": False}
    t0 = time.monotonic()
    now = now or utcnow()
    shops, _, visits = generate(size, now)
    start = now - timedelta(days=size.days + 1)
    merchants, worker_ids = _users(db_session, size, start)
    task_of = _tasks(db_session, shops, visits, merchants, ops, start)
    claim_ids = _history(db_session, visits, task_of, worker_ids)
    paid = _pay(db_session, visits, claim_ids, task_of, worker_ids)
    files = _evidence(db_session, visits, claim_ids, task_of, worker_ids)
    db_session.commit()
    written = time.monotonic() - t0
    rolled = rollup.catch_up(db_session=db_session, budget_s=600)
    return {"seeded": True, "workers": size.workers, "tasks": len(task_of), "claims": len(visits), "paid": paid,
            "evidence": files, "rolled_up": rolled, "write_s": round(written, 1),
            "total_s": round(time.monotonic() - t0, 1)}
