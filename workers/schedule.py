"""The beat schedule, in one place (task names only; bodies live in workers/tasks.py)."""
from __future__ import annotations

BEAT_SCHEDULE: dict[str, dict] = {
    "purge-idempotency-records": {"task": "fieldproof.purge_idempotency_records", "schedule": 3600.0,
                                  "options": {"queue": "maintenance"}},
    "sweep-unfinished-jobs": {"task": "fieldproof.sweep_unfinished_jobs", "schedule": 10.0,
                              "options": {"queue": "maintenance"}},
    "auto-confirm": {"task": "fieldproof.auto_confirm", "schedule": 300.0, "options": {"queue": "maintenance"}},
    "sweep-payouts": {"task": "fieldproof.sweep_payouts", "schedule": 15.0, "options": {"queue": "maintenance"}},
    "settle-ended-tasks": {"task": "fieldproof.settle_ended_tasks", "schedule": 600.0,
                           "options": {"queue": "maintenance"}},
    "roll-up-heatmap": {"task": "fieldproof.roll_up_heatmap", "schedule": 60.0, "options": {"queue": "maintenance"}},
    "sweep-abandoned-uploads": {"task": "fieldproof.sweep_abandoned_uploads", "schedule": 1800.0,
                                "options": {"queue": "maintenance"}},
    # Radio fingerprints learn within a minute of a check-in (checkin.learning; cheap when nothing is new).
    "learn-radio": {"task": "fieldproof.learn_radio", "schedule": 30.0, "options": {"queue": "maintenance"}},
    "expire-stale-claims": {"task": "fieldproof.expire_stale_claims", "schedule": 60.0,
                            "options": {"queue": "maintenance"}},
    # Months are made three ahead (core.partitions), so a few runs a day leave a long outage to spare.
    "maintain-partitions": {"task": "fieldproof.maintain_partitions", "schedule": 6 * 3600.0,
                            "options": {"queue": "maintenance"}},
}


def beat_schedule(settings) -> dict[str, dict]:
    """The schedule with the recovery sweeps at the intervals the settings give (see core.config)."""
    out = {name: dict(entry) for name, entry in BEAT_SCHEDULE.items()}
    out["sweep-unfinished-jobs"]["schedule"] = float(settings.job_sweep_interval_s)
    out["sweep-payouts"]["schedule"] = float(settings.payout_sweep_interval_s)
    return out


def scaled(schedule: dict[str, dict], rate: float, floor_s: float) -> dict[str, dict]:
    """The schedule with intervals divided by the clock rate (a simulated day keeps its cadence), floored."""
    if rate == 1.0:
        return schedule
    return {name: {**entry, "schedule": max(floor_s, entry["schedule"] / rate)} for name, entry in schedule.items()}
