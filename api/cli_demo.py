"""`fieldproof demo`: load the demo city."""
from __future__ import annotations

import argparse
import json


def _demo(args: argparse.Namespace) -> int:
    # lazy: every fieldproof command loads this module; only this command needs these
    from core.db import session_scope
    from tasks import demo

    with session_scope() as db:
        print(json.dumps({"demo": demo.load(db_session=db), "password": demo.DEMO_PASSWORD}))
    return 0


def register(sub) -> None:
    """Add the ``demo`` command."""
    sub.add_parser("demo", help="load a small demo city (idempotent)").set_defaults(func=_demo)
