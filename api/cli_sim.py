"""`fieldproof simulate`: a compressed day of field work through the HTTP API (see sim/)."""
from __future__ import annotations

import argparse
import json
import signal
import sys


def _simulate(args: argparse.Namespace) -> int:
    # lazy: every fieldproof command loads this module; only this command needs these
    from sim import report
    from sim.driver import Options, Simulation

    # SIGTERM unwinds like Ctrl-C, so the API, worker and beat we started are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    opts = Options(workers=args.workers, merchants=args.merchants, hours=args.hours, seed=args.seed, rate=args.rate,
                   database=args.database, redis_db=args.redis_db, progress=not args.no_progress,
                   keep_logs=args.keep_logs)
    rep = report.build(Simulation(opts).run())
    print(report.render(rep))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rep, fh, indent=2, ensure_ascii=False)
    return 0 if rep["errors_5xx"] == 0 and rep["ledger_check"]["ok"] else 1


def register(sub) -> None:
    """Add the ``simulate`` command."""
    p = sub.add_parser("simulate", help="drive a simulated day of field work through the API and report")
    p.add_argument("--workers", type=int, default=200)
    p.add_argument("--merchants", type=int, default=None, help="default: one per 10 workers")
    p.add_argument("--hours", type=float, default=8.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--rate", type=float, default=None, help="simulated seconds per real second (default: ~6.5 min/day)")
    p.add_argument("--json", help="also write the report as JSON to this file")
    p.add_argument("--database", default=None, help="database to (re)create (default: <database_name>_simday)")
    p.add_argument("--redis-db", type=int, default=11)
    p.add_argument("--keep-logs", action="store_true", help="keep the API/worker/beat logs")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_simulate_defaults)


def _simulate_defaults(args: argparse.Namespace) -> int:
    if args.database is None:
        # lazy: every fieldproof command loads this module; only this command needs these
        from core.config import get_settings

        args.database = f"{get_settings().database_name}_simday"
    return _simulate(args)


__all__ = ["register"]
