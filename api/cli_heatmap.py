"""`fieldproof heatmap backfill`: fold every pending check-in into the roll-ups, with a progress bar."""
from __future__ import annotations

import argparse
import sys


def _backfill(args: argparse.Namespace) -> int:
    # lazy: every fieldproof command loads this module; only this command needs these
    from tqdm import tqdm
    from core.db import session_scope
    from heatmap import service as heatmap

    with session_scope() as db:
        total = heatmap.pending(db_session=db)
        with tqdm(total=total, unit="check-in", file=sys.stderr) as bar:
            while n := heatmap.roll_up(db_session=db, batch=args.batch):
                bar.update(n)
    print(f"rolled up {total} check-ins")
    return 0


def register(sub) -> None:
    """Add the ``heatmap`` command."""
    hm = sub.add_parser("heatmap", help="heatmap roll-ups").add_subparsers(dest="heatmap_command", required=True)
    bf = hm.add_parser("backfill", help="roll up every pending check-in (safe to run beside the beat job)")
    bf.add_argument("--batch", type=int, default=20_000)
    bf.set_defaults(func=_backfill)
