"""People of the simulated day: honest workers, five kinds of fraud, merchants and ops.

Each worker runs in its own thread, sleeping in real time until the simulated time of its next act;
what it sends is what a phone would, stamped with simulated ``client_time``. The fraud kind is this
simulator's ground truth; the service never sees it.
"""
from __future__ import annotations

import json
import math
import random
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.clock import ClockConfig
from sim import gps, photos
from sim.client import ApiError, Session
from sim.world import Shop, distance_m, fence_center_gcj, offset

HONEST = "honest"
FRAUD_KINDS = ("gps_spoofer_mock", "gps_spoofer_hidden", "photo_reuser", "checkin_and_leave", "device_farm")
DWELL_MIN = {"store_visit": (10, 20), "shelf_audit": (15, 30), "flyer_run": (30, 60), "poster": (20, 40),
             "signup_drive": (40, 80), "other_offline": (15, 30)}


@dataclass
class Visit:
    """What the simulator knows about one claim (its own truth plus what the API answered)."""

    claim_id: int
    task_id: int
    worker: str
    kind: str
    fraud: bool  # this claim itself was done dishonestly
    reused_photos: list = field(default_factory=list)  # transform names
    reused_from: set = field(default_factory=set)  # the old photos re-used here (a re-user sends each once a visit)
    checkin_reasons: list = field(default_factory=list)
    checkin_risk: int = 0
    submitted: bool = False
    evidence_ids: list = field(default_factory=list)
    capture_nonce: str | None = None  # from the check-in response, for the in-app camera's first photo
    capture_nonce_expires_at: datetime | None = None
    # (evidence id, what it is): "own:<transform>"/"other:<transform>" for re-used photos, "same_scene" for an
    # honest photo of a storefront someone photographed before (another worker, camera or time).
    labelled: list = field(default_factory=list)


class Day:
    """Shared state of the simulated day: clock, shops by task, the photo pool, the stop flag."""

    def __init__(self, clock: ClockConfig, start: datetime, end: datetime, tasks: dict[int, Shop],
                 task_types: dict[int, str], photos_min: dict[int, int]) -> None:
        self.clock, self.start, self.end = clock, start, end
        self.tasks, self.task_types, self.photos_min = tasks, task_types, photos_min
        self.visits: list[Visit] = []
        self.shared_photos: list[bytes] = []  # honest photos circulating in chat groups
        self.storefronts_shot: set[str] = set()  # shops whose front some worker has already photographed
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.failures: list[str] = []

    def now(self) -> datetime:
        return self.clock.at(time.time())

    def wait_until(self, at: datetime) -> bool:
        """Sleep (real time) until simulated ``at``; False if the day was stopped."""
        while not self.stop.is_set():
            left = (at - self.now()).total_seconds() / self.clock.rate
            if left <= 0:
                return True
            self.stop.wait(min(left, 1.0))
        return False

    def record(self, visit: Visit) -> None:
        with self.lock:
            self.visits.append(visit)


def travel_seconds(rng: random.Random, straight_m: float) -> float:
    """Door to door: walk (~1.3 m/s) up to 1.2 km of street, else an e-bike (4-6 m/s); plus parking/finding it."""
    street = straight_m * 1.3  # streets are not straight lines
    speed = 1.3 * rng.uniform(0.85, 1.15) if street < 1200 else rng.uniform(4.0, 6.0)
    return street / speed + rng.uniform(60, 240)


class WorkerAgent:
    """A field worker; ``kind`` selects the behaviour (honest or one fraud kind)."""

    def __init__(self, day: Day, session: Session, kind: str, phone: gps.Phone, home: tuple[float, float],
                 seed: int) -> None:
        self.day, self.s, self.kind, self.phone = day, session, kind, phone
        self.rng = random.Random(seed)
        self.lat, self.lon = home
        self.done_tasks: set[int] = set()
        self.camera_roll: list[tuple[int, bytes]] = []  # (claim id, photo)
        self.photo_seed = seed * 1000
        make, model = self.rng.choice(photos.CAMERAS)
        self.camera = (make, model, f"SN{seed:08d}")  # this worker's phone: EXIF make, model and body serial
        self.last_fix_at: datetime | None = None  # when the previous check-out fix was taken
        self.style = self._style()
        self.home = home
        # Radio scans and camera choices draw from their own stream, so the rest of the day stays as it was.
        self.radio_rng = random.Random(seed * 7 + 1)

    def _style(self) -> gps.SpoofStyle | None:
        if self.kind == "gps_spoofer_mock":
            return gps.SpoofStyle(mock_flag=True, jitter_m=3.0)
        if self.kind == "gps_spoofer_hidden":
            st = gps.SpoofStyle(constant_fields=self.rng.random() < 0.6, pin_center=self.rng.random() < 0.5,
                                accuracy=self.rng.choice([1.0, 3.0, 5.0, 10.0]), jitter_m=self.rng.uniform(0, 4))
            return st
        return None

    @property
    def spoofer(self) -> bool:
        return self.kind.startswith("gps_spoofer")

    # ---- the day -------------------------------------------------------------------------------
    def run(self) -> None:
        """Work from the start of the shift until the end of the day."""
        try:
            shift = self.day.start + timedelta(minutes=self.rng.uniform(0, 60))
            if not self.day.wait_until(shift):
                return
            lunch_done = False
            while not self.day.stop.is_set() and self.day.now() < self.day.end - timedelta(minutes=40):
                now = self.day.now()
                if not lunch_done and now.hour >= 4 and self.rng.random() < 0.5:  # ~12:00 CST
                    lunch_done = True
                    self.day.wait_until(now + timedelta(minutes=self.rng.uniform(30, 60)))
                    continue
                try:
                    found = self.one_visit()
                except ApiError as exc:  # a 5xx is counted by the client; the phone gives up on that visit
                    if exc.response.status_code < 500:
                        raise
                    found = True
                if not found:
                    self.day.wait_until(self.day.now() + timedelta(minutes=self.rng.uniform(10, 20)))
        except Exception as exc:  # keep the day going; the report lists what broke
            self.day.failures.append(f"{self.s.username}: {type(exc).__name__}: {exc}")

    def _pick(self) -> tuple[dict, Shop] | None:
        glat, glon = gps.geocrs.wgs84_to_gcj02(self.lat, self.lon)
        radius = 20000 if self.spoofer else 4000
        r = self.s.call("GET", "/v1/tasks/nearby", params={"lat": round(glat, 6), "lon": round(glon, 6),
                                                           "crs": "gcj02", "radius_m": radius})
        options = [t for t in r.json() if t["id"] not in self.done_tasks and t["id"] in self.day.tasks]
        if not options:
            return None
        if self.spoofer:  # teleporters take whatever pays, anywhere in the city
            self.rng.shuffle(options)
        else:
            options = options[:6]
        for task in options[:3] if not self.spoofer else options[:5]:
            try:
                claim = self.s.call("POST", f"/v1/tasks/{task['id']}/claims", ok=(201,)).json()
            except ApiError as exc:
                if exc.code in ("slots_full", "task_not_open", "already_claimed", "task_already_done"):
                    self.done_tasks.add(task["id"])
                    continue
                raise
            self.done_tasks.add(task["id"])
            return claim, self.day.tasks[task["id"]]
        return None

    def one_visit(self) -> bool:
        """Find, claim, travel, check in, dwell with photos, check out, submit. False if nothing to do."""
        picked = self._pick()
        if picked is None:
            return False
        claim, shop = picked
        task_id = claim["task_id"]
        visit = Visit(claim["id"], task_id, self.s.username, self.kind, fraud=self.kind != HONEST)
        self.day.record(visit)
        self._travel(shop)
        spot = self._spot_in(shop)
        # The stay is timed from the check-in fix itself: at a compressed clock, the request's round trip
        # alone is a simulated minute, which would stretch every 'check in and leave' past the minimum dwell.
        t0 = self._check(visit, shop, spot, "checkins", taken=self._teleport_time())
        if t0 is None:
            return True
        lo, hi = DWELL_MIN[self.day.task_types[task_id]]
        dwell = self.rng.uniform(20, 90) if self.kind == "checkin_and_leave" else \
            self.rng.uniform(3, 8) * 60 if self.spoofer else self.rng.uniform(lo, hi) * 60
        need = self.day.photos_min[task_id]
        for i in range(max(1, need)):
            if not self.day.wait_until(t0 + timedelta(seconds=dwell * (i + 1) / (need + 1))):
                return True
            self._upload(visit, i)
        if not self.day.wait_until(t0 + timedelta(seconds=dwell)):
            return True
        # The phone's fix is taken when the dwell ends, even if the request leaves later (a slow server at a
        # 70x clock turns one real second into a simulated minute, which would stretch every dwell).
        self.last_fix_at = self._check(visit, shop, self._spot_in(shop, near=spot), "checkouts",
                                       taken=t0 + timedelta(seconds=dwell))
        if self.last_fix_at is None:
            return True
        self.s.call("POST", f"/v1/claims/{visit.claim_id}/submit")
        visit.submitted = True
        if self.spoofer:  # a teleport: 'at' the next place within minutes
            self.day.wait_until(self.day.now() + timedelta(minutes=self.rng.uniform(1, 4)))
        return True

    def _teleport_time(self) -> datetime | None:
        """A spoofer 'arrives' 3-8 minutes after leaving the last place, wherever the next one is. The phone's
        fix carries that time even when the simulator's own round trips (a simulated minute per real second
        at a 74x clock) delay the request; honest workers' fixes are dated by when they really arrive."""
        if not self.spoofer or self.last_fix_at is None:
            return None
        return self.last_fix_at + timedelta(minutes=self.rng.uniform(3, 8))

    def _travel(self, shop: Shop) -> None:
        """Walk (short hops) or ride an e-bike; spoofers stay where they are."""
        if self.spoofer:
            self.day.wait_until(self.day.now() + timedelta(minutes=self.rng.uniform(1, 3)))
            return
        d = distance_m(self.lat, self.lon, shop.lat, shop.lon)
        self.day.wait_until(self.day.now() + timedelta(seconds=travel_seconds(self.rng, d)))
        self.lat, self.lon = shop.lat, shop.lon

    def _spot_in(self, shop: Shop, near: tuple[float, float] | None = None) -> tuple[float, float]:
        """Where inside the shop the worker stands (WGS-84): within a third of the fence's half-size."""
        base = near or (shop.lat, shop.lon)
        r = (3.0 if near else shop.size_m / 3) * math.sqrt(self.rng.random())
        a = self.rng.uniform(0, 2 * math.pi)
        return offset(*base, r * math.cos(a), r * math.sin(a))

    def _fix(self, shop: Shop, spot: tuple[float, float], taken: datetime | None = None) -> dict:
        now = self.day.now()
        taken = min(now, taken) if taken else now - timedelta(seconds=self.rng.uniform(1, 8))
        if self.spoofer:
            body = gps.spoof_fix(self.rng, self.phone, self.style, fence_center_gcj(shop), spot, taken, now)
        else:
            body = gps.honest_fix(self.rng, self.phone, *spot, taken, now)
        return {**body, **self._scan(shop, spot, now)}

    def _scan(self, shop: Shop, spot: tuple[float, float], now: datetime) -> dict:
        """The radios the phone really hears: the shop's, or (a spoofer never leaves) those of home."""
        local = now.astimezone(_CST)
        hour = local.hour + local.minute / 60
        if self.spoofer:  # a spoofing app fakes GPS only; the scan is of the flat the spoofer sits in
            return gps.radio_scan(self.radio_rng, self.phone, f"home:{self.s.username}", *self.home, hour)
        return gps.radio_scan(self.radio_rng, self.phone, f"shop:{shop.name}", *spot, hour)

    def _check(self, visit: Visit, shop: Shop, spot: tuple[float, float], what: str,
               taken: datetime | None = None) -> datetime | None:
        """Check in or out; a fix outside the fence or too coarse is retried like a phone would.
        Returns when the accepted fix was taken (None if the phone gave up)."""
        for _ in range(6):
            body = self._fix(shop, spot, taken)
            try:
                r = self.s.call("POST", f"/v1/claims/{visit.claim_id}/{what}", json=body, ok=(201,)).json()
            except ApiError as exc:
                if exc.code in ("outside_fence", "accuracy_too_low"):
                    if not self.day.wait_until(self.day.now() + timedelta(seconds=self.rng.uniform(20, 60))):
                        return False
                    continue
                raise
            visit.checkin_reasons = sorted(set(visit.checkin_reasons) | set(r["reasons"]))
            if r.get("capture_nonce"):
                visit.capture_nonce = r["capture_nonce"]
                visit.capture_nonce_expires_at = datetime.fromisoformat(r["capture_nonce_expires_at"])
            visit.checkin_risk = max(visit.checkin_risk, r["risk_score"])
            return datetime.fromisoformat(body["client_time"])
        return None

    def _upload(self, visit: Visit, i: int) -> None:
        """A photo: a new scene, or for re-users (after their first visit) an old one made to look new. An honest
        worker's first photo of a visit is the shop's front, which every visitor of the shop photographs."""
        # The in-app camera holds its nonce before the shutter opens: the photo's time is after the nonce's.
        gallery = self.radio_rng.random() < 0.03
        nonce = None if gallery else self._nonce(visit)
        data, label = self._photo(visit, storefront=i == 0 and self.kind == HONEST)
        reused = label is not None and label != "same_scene"  # an old photo comes from the gallery: no receipt
        receipt = {} if reused or nonce is None else {"capture_receipt": json.dumps(
            {"nonce": nonce, "captured_at": self.day.now().isoformat()})}
        r = self.s.call("POST", f"/v1/claims/{visit.claim_id}/evidence", ok=(201,),
                        files={"file": (f"IMG_{visit.claim_id}_{i}.jpg", data, "image/jpeg")}, data=receipt)
        visit.evidence_ids.append(r.json()["id"])
        if label:
            visit.labelled.append((r.json()["id"], label))
        if label and label != "same_scene":
            visit.reused_photos.append(label)
        elif self.kind == HONEST and self.rng.random() < 0.05:  # posted to a chat group after it was submitted
            with self.day.lock:
                self.day.shared_photos.append(data)

    def _nonce(self, visit: Visit) -> str:
        """The in-app camera's nonce: the check-in's for the first photo, a fresh one after. An old photo comes
        from the gallery (no receipt), and so do ~3 % of honest ones (the camera would not open)."""
        fresh = visit.capture_nonce_expires_at and self.day.now() < visit.capture_nonce_expires_at - timedelta(minutes=1)
        nonce = visit.capture_nonce if fresh else None
        if nonce is None:  # the camera asks for a new nonce when the check-in's is used or about to lapse
            nonce = self.s.call("POST", f"/v1/claims/{visit.claim_id}/capture-nonces", ok=(201,)).json()["capture_nonce"]
        visit.capture_nonce = None  # used once
        return nonce

    def _photo(self, visit: Visit, storefront: bool = False) -> tuple[bytes, str | None]:
        # Two uploads of the very same old photo (the same transform can give the same bytes) would be one piece of
        # evidence to the service, and the visit one photo short: a re-user picks another old photo instead.
        own_old = [data for claim_id, data in self.camera_roll
                   if claim_id != visit.claim_id and data not in visit.reused_from]
        if self.kind == "photo_reuser" and own_old and self.rng.random() < 0.85:
            pool = own_old
            with self.day.lock:
                shared = [data for data in self.day.shared_photos if data not in visit.reused_from]
                if shared and self.rng.random() < 0.5:
                    pool = shared
                old = self.rng.choice(pool)
            visit.reused_from.add(old)
            transform = self.rng.choice(photos.REUSE_TRANSFORMS)
            return photos.reuse(old, transform), ("own:" if pool is own_old else "other:") + transform
        self.photo_seed += 1
        taken = self.day.now().astimezone(_CST)
        label = None
        if storefront:
            shop = self.day.tasks[visit.task_id].name
            with self.day.lock:
                label = "same_scene" if shop in self.day.storefronts_shot else None
                self.day.storefronts_shot.add(shop)
            img = photos.storefront(zlib.crc32(shop.encode()), self.photo_seed)
        else:
            img = photos.scene(self.photo_seed)
        data = photos.camera_jpeg(img, taken, camera=self.camera)
        self.camera_roll.append((visit.claim_id, data))
        return data, label


from datetime import timezone  # noqa: E402

_CST = timezone(timedelta(hours=8))
