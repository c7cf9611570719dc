"""`fieldproof demo`: load the demo city, with a month of city history seeded in bulk."""
from __future__ import annotations

import argparse
import json


def _demo(args: argparse.Namespace) -> int:
    # lazy: every fieldproof command loads this module; only this command needs these
    from accounts.models import User
    from core.db import session_scope
    from sim import month, month_db
    from tasks import demo

    with session_scope() as db:
        users = demo.load(db_session=db)
        out = {"demo": users, "password": demo.DEMO_PASSWORD}
        if args.workers:
            size = month.Size(workers=args.workers, shops=args.shops, days=args.days)
            out["month"] = month_db.seed(db_session=db, ops=db.get(User, users["ops_demo"]), size=size)
    print(json.dumps(out, ensure_ascii=False))
    return 0


def register(sub) -> None:
    """Add the ``demo`` command."""
    p = sub.add_parser("demo", help="load a demo city with a month of history (idempotent)")
    p.add_argument("--workers", type=int, default=120, help="workers in the month of history (0: none)")
    p.add_argument("--shops", type=int, default=48, help="shops (one task each) in the month of history")
    p.add_argument("--days", type=int, default=30, help="days of history")
    p.set_defaults(func=_demo)
