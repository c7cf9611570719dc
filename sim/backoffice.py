"""Merchants confirming or rejecting submissions, and ops reviewing tasks and clearing spot checks."""
from __future__ import annotations

import random
from datetime import timedelta

from sim.agents import Day
from sim.client import ApiError, Session

# What an ops reviewer fails a spot check for when the evidence in front of them shows it.
OPS_FAIL_FLAGS = {"mock_location", "duplicate_evidence", "impossible_travel", "shared_device", "accuracy_zero",
                  "exact_coordinate_repeat", "constant_fix_fields"}


class MerchantAgent:
    """Confirms most submissions every ~45 simulated minutes; a lazy one leaves them to auto-confirm."""

    def __init__(self, day: Day, session: Session, task_ids: list[int], seed: int) -> None:
        self.day, self.s, self.task_ids = day, session, task_ids
        self.rng = random.Random(seed)
        self.lazy = self.rng.random() < 0.3
        self.confirmed = self.rejected = 0

    def run(self) -> None:
        try:
            while self.day.wait_until(self.day.now() + timedelta(minutes=self.rng.uniform(35, 55))):
                if self.day.now() > self.day.end:
                    return
                if not self.lazy:
                    self.review_once()
        except Exception as exc:
            self.day.failures.append(f"{self.s.username}: {type(exc).__name__}: {exc}")

    def review_once(self) -> None:
        for task_id in self.task_ids:
            for sub in self.s.call("GET", f"/v1/tasks/{task_id}/submissions").json():
                try:
                    if self.rng.random() < 0.04:
                        self.s.call("POST", f"/v1/submissions/{sub['id']}/reject",
                                    json={"reason_code": "evidence_insufficient", "reason": "照片看不清门头"})
                        self.rejected += 1
                    else:
                        self.s.call("POST", f"/v1/submissions/{sub['id']}/confirm")
                        self.confirmed += 1
                except ApiError as exc:
                    if exc.code not in ("invalid_transition", "evidence_processing") and exc.response.status_code < 500:
                        raise  # invalid_transition: beat auto-confirmed it meanwhile; evidence_processing: its photos
                        # are still being checked, next round; 5xx: counted, next round


class OpsAgent:
    """Clears the spot-check queue every ~20 simulated minutes."""

    def __init__(self, day: Day, session: Session) -> None:
        self.day, self.s = day, session
        self.passed = self.failed = 0

    def run(self) -> None:
        try:
            while self.day.wait_until(self.day.now() + timedelta(minutes=20)):
                self.clear_queue()
        except Exception as exc:
            self.day.failures.append(f"ops: {type(exc).__name__}: {exc}")

    def clear_queue(self) -> int:
        """Decide every open spot check; returns how many were decided."""
        done = 0
        while True:
            queue = [c for c in self.s.call("GET", "/v1/spot-checks", params={"limit": 200}).json()
                     if c["state"] == "open"]
            if not queue:
                return done
            for check in queue:
                flags = set((check.get("claim") or {}).get("flags") or [])
                for ev in check.get("evidence") or []:
                    flags |= set(ev.get("reasons") or [])
                fail = bool(flags & OPS_FAIL_FLAGS)
                try:
                    self.s.call("POST", f"/v1/spot-checks/{check['id']}/verdict",
                                json={"verdict": "fail" if fail else "pass",
                                      "reason": ", ".join(sorted(flags & OPS_FAIL_FLAGS)) or "evidence fine"})
                except ApiError as exc:
                    if exc.response.status_code >= 500:  # counted by the client; retried next round
                        return done
                    if exc.code != "invalid_transition" and not (exc.code or "").endswith("_decided"):
                        raise
                    continue
                self.failed += fail
                self.passed += not fail
                done += 1
