"""One simulated day end to end: start the stack, set up the cast, run the day, drain, collect."""
from __future__ import annotations

import random
import secrets
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import redis
from tqdm import tqdm

from core.redis import task_cpu
from sim import gps, world
from sim.agents import FRAUD_KINDS, HONEST, Day, WorkerAgent
from sim.backoffice import MerchantAgent, OpsAgent
from sim.client import Api, ApiError, Session
from sim.collect import collect, drain_evidence, table_bytes
from sim.cpu import CpuMeter, local_server_pids
from sim.stack import Stack, clock_for

CST = timezone(timedelta(hours=8))
# Share of workers per fraud kind (the rest are honest); each kind present at least once from 10 workers.
FRAUD_SHARES = {"gps_spoofer_mock": 0.04, "gps_spoofer_hidden": 0.06, "photo_reuser": 0.08,
                "checkin_and_leave": 0.05, "device_farm": 0.06}
PASSWORD = "sim-" + secrets.token_hex(8)


@dataclass
class Options:
    workers: int = 200
    merchants: int | None = None
    hours: float = 8.0
    seed: int = 7
    rate: float | None = None  # simulated seconds per real second; default: the day in ~6.5 minutes
    database: str = "fieldproof_simday"
    redis_db: int = 11
    progress: bool = True
    keep_logs: bool = False


def cast(n: int) -> list[str]:
    """The kind of each worker, deterministic in n."""
    kinds = []
    for kind, share in FRAUD_SHARES.items():
        count = round(share * n)
        if kind == "device_farm":
            count = max(count, 2 if n >= 10 else 0)  # a farm is several accounts
        elif n >= 10:
            count = max(1, count)
        kinds += [kind] * count
    return kinds + [HONEST] * (n - len(kinds))


def _ips(rng: random.Random, n: int) -> list[str]:
    """Carrier-NAT addresses: honest workers share a pool about as large as their number."""
    return [f"117.136.{rng.randint(0, 255)}.{rng.randint(1, 254)}" for _ in range(n)]


class Simulation:
    """Holds the stack, the agents and what they recorded."""

    def __init__(self, opts: Options) -> None:
        self.o = opts
        self.rng = random.Random(opts.seed)
        rate = opts.rate or max(1.0, opts.hours * 3600 / 390)
        date = datetime.now(CST).date()
        # The simulated clock starts at 07:30 CST; setup runs while it ticks towards the 08:00 shift start.
        self.sim_start = datetime(date.year, date.month, date.day, 7, 30, tzinfo=CST)
        self.stack = Stack(opts.database, opts.redis_db, clock_for(self.sim_start, rate))
        self.api: Api | None = None
        self.timings: dict[str, float] = {}
        self.cpu: dict[str, dict[str, float]] = {}
        self.empty_tables: dict[str, int] = {}

    # ---- setup -----------------------------------------------------------------------------
    def _user(self, username: str, role: str, ip: str) -> Session:
        s = Session(self.api, username, PASSWORD, ip)
        if role in ("worker", "merchant"):
            s.call("POST", "/v1/auth/register", auth=False, ok=(201,),
                   json={"username": username, "password": PASSWORD, "role": role, "display_name": username})
        s.login()
        return s

    def _ops(self) -> Session:
        r = self.stack.cli("users", "create", "sim_ops", "--role", "ops", stdin=PASSWORD + "\n")
        if r.returncode != 0:
            raise RuntimeError(f"could not create the ops user: {r.stderr}")
        return self._user("sim_ops", "ops", "10.0.0.1")

    def _tasks(self, merchant: Session, shops: list[world.Shop], ops: Session, day_end: datetime) -> list[dict]:
        merchant.call("POST", "/v1/me/deposits", ok=(201,), json={"amount_fen": 50_000, "purpose": "security_deposit"})
        merchant.call("POST", "/v1/me/deposits", ok=(201,), json={"amount_fen": 5_000_000, "purpose": "available"})
        out = []
        for shop in shops:
            kind = self.rng.choice(list(world_task_types()))
            body = {"title": f"{TITLES[kind]} {shop.name}", "type": kind,
                    "reward_fen": self.rng.choice([800, 1200, 1500, 2000, 3000]), "slots": self.rng.randint(15, 30),
                    "starts_at": self.sim_start.isoformat(), "ends_at": (day_end + timedelta(hours=8)).isoformat(),
                    "crs": "gcj02", "geofence": shop.fence,
                    "evidence": {"photos_min": self.rng.choice([1, 1, 2]), "video": False}}
            task = merchant.call("POST", "/v1/tasks", ok=(201,), json=body).json()
            merchant.call("POST", f"/v1/tasks/{task['id']}/publish")
            ops.call("POST", f"/v1/tasks/{task['id']}/review", json={"decision": "approve", "reason": "ok"})
            out.append({**task, "shop": shop})
        return out

    def setup(self) -> tuple[Day, list, list, OpsAgent]:
        """Users, money, tasks and agents (in parallel, through the API)."""
        o, rng = self.o, self.rng
        n_merchants = o.merchants or max(2, o.workers // 10)
        tasks_each = max(4, round(0.6 * o.workers / n_merchants))
        shops = world.make_shops(rng, n_merchants * tasks_each)
        ops = self._ops()
        day_start = self.sim_start + timedelta(minutes=30)
        day_end = day_start + timedelta(hours=o.hours)
        with ThreadPoolExecutor(16) as pool:
            merchants = list(pool.map(lambda i: self._user(f"m{i:03d}", "merchant", f"223.104.{i}.{i % 200 + 2}"),
                                      range(n_merchants)))
            task_lists = list(pool.map(lambda i: self._tasks(merchants[i], shops[i::n_merchants], ops, day_end),
                                       range(n_merchants)))
            kinds = cast(o.workers)
            rng.shuffle(kinds)
            ips = _ips(rng, o.workers)
            farm_device, farm_ip = "farm-" + secrets.token_hex(6), "120.229.77.15"
            sessions = list(pool.map(lambda i: self._user(
                f"w{i:04d}", "worker", farm_ip if kinds[i] == "device_farm" else ips[i]), range(o.workers)))
        all_tasks = [t for lst in task_lists for t in lst]
        day = Day(self.stack.clock, day_start, day_end, {t["id"]: t["shop"] for t in all_tasks},
                  {t["id"]: t["type"] for t in all_tasks}, {t["id"]: t["evidence"]["photos_min"] for t in all_tasks})
        districts = list(world.DISTRICTS)
        workers = []
        for i, (s, kind) in enumerate(zip(sessions, kinds)):
            phone = gps.new_phone(rng, farm_device if kind == "device_farm" else f"dev-{rng.getrandbits(48):012x}")
            if kind == "device_farm":
                phone.platform, phone.provider = "android", "fused"
            home = world.home_near(rng, rng.choice(districts))
            workers.append(WorkerAgent(day, s, kind, phone, home, seed=o.seed * 100_003 + i))
        merchant_agents = [MerchantAgent(day, m, [t["id"] for t in task_lists[i]], seed=o.seed + i)
                           for i, m in enumerate(merchants)]
        return day, workers, merchant_agents, OpsAgent(day, ops)

    # ---- the day ---------------------------------------------------------------------------
    def run(self) -> dict:
        """Everything, from an empty database to the report's raw data."""

        t0 = time.monotonic()
        self.stack.create_database()
        self.empty_tables = table_bytes(self.stack.database_url())  # the storage figures count growth only
        self.stack.start()
        self.api = Api(self.stack.base_url)
        # CPU from a healthy stack until the day's uploads are processed (process start-up, i.e. imports, is out).
        meter = CpuMeter({**self.stack.pids(), **local_server_pids()}).start()
        try:
            self.timings["startup_s"] = time.monotonic() - t0
            day, workers, merchants, ops = self.setup()
            # The shift starts when the cast is ready (setup time varies with the machine), at 08:00 at the earliest.
            day.start = max(day.start, day.now() + timedelta(minutes=2))
            day.end = day.start + timedelta(hours=self.o.hours)
            self.timings["setup_s"] = time.monotonic() - t0 - self.timings["startup_s"]
            t_day = time.monotonic()
            req0 = self.api.stats.total
            self.timings["setup_requests"] = req0
            day_meter = CpuMeter(meter.pids).start()
            threads = [threading.Thread(target=a.run, daemon=True) for a in (*workers, *merchants, ops)]
            for t in threads:
                t.start()
            self._progress(day, threads)
            self.timings["day_s"] = time.monotonic() - t_day
            self.timings["day_requests"] = self.api.stats.total - req0
            self.cpu["day"] = day_meter.stop()
            t_drain = time.monotonic()
            # The run's CPU ends when the day's uploads are processed: the backlog is the day's work, the
            # merchant/ops clean-up and the read-back that follow are the simulator's bookkeeping.
            unprocessed = drain_evidence(self, day)
            self.cpu["run"] = meter.stop()
            # The worker's CPU by task, from the workers' own tally (this run's Redis database starts empty).
            self.cpu["worker_tasks"] = task_cpu(redis.Redis.from_url(self.stack.redis_url()))
            self.timings["evidence_drain_s"] = time.monotonic() - t_drain
            data = collect(self, day, workers, merchants, ops, unprocessed)
            self.timings["drain_s"] = time.monotonic() - t_drain
            self.timings["total_s"] = time.monotonic() - t0
            data["timings"] = self.timings
            data["cpu"] = self.cpu
            data["workers_n"] = self.o.workers
            return data
        finally:
            self.api.close()
            self.stack.stop(keep_logs=self.o.keep_logs)

    def _progress(self, day: Day, threads: list[threading.Thread]) -> None:
        total = int((day.end - day.start).total_seconds() // 60)
        bar = tqdm(total=total, unit="sim-min", file=sys.stderr, disable=not self.o.progress, dynamic_ncols=True)
        last, start_req, t_start = 0, self.api.stats.total, time.monotonic()
        try:
            while any(t.is_alive() for t in threads[:-1]):
                time.sleep(0.5)
                if not self.stack.alive():
                    day.stop.set()
                    raise RuntimeError(f"a service process died; logs in {self.stack.workdir}")
                done = min(total, max(0, int((day.now() - day.start).total_seconds() // 60)))
                bar.update(done - last)
                last = done
                rps = (self.api.stats.total - start_req) / max(1e-9, time.monotonic() - t_start)
                bar.set_postfix(claims=len(day.visits), rps=f"{rps:.0f}",
                                e5xx=len(self.api.stats.errors_5xx), refresh=False)
                if day.now() > day.end + timedelta(minutes=30):
                    break  # stragglers: stop them
        finally:
            day.stop.set()
            for t in threads:
                t.join(timeout=30)
            bar.close()


TITLES = {"store_visit": "门店拜访", "flyer_run": "发传单", "poster": "张贴海报", "signup_drive": "地推拉新",
          "shelf_audit": "货架检查", "other_offline": "线下任务"}


def world_task_types():
    return TITLES.keys()


__all__ = ["Options", "Simulation", "ApiError", "FRAUD_KINDS"]
