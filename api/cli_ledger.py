"""`fieldproof ledger check`: verify the money invariants on a live database."""
from __future__ import annotations

import argparse
import sys


def _check(args: argparse.Namespace) -> int:
    # lazy: every fieldproof command loads this module; only this command needs these
    from sqlalchemy import func, select
    from core.db import session_scope
    from ledger import service as ledger
    from ledger import withdrawals  # noqa: F401  (these register the reconcilers of figures kept outside
    from tasks import service as task_service  # noqa: F401  the ledger: withdrawals in flight, task escrow)
    from ledger.models import LedgerTransaction, Posting

    with session_scope() as db:
        problems = ledger.check(db)
        txns = db.scalar(select(func.count()).select_from(LedgerTransaction))
        postings = db.scalar(select(func.count()).select_from(Posting))
    for p in problems:
        print(f"BREACH: {p}", file=sys.stderr)
    if problems:
        print(f"ledger check failed: {len(problems)} problem(s)")
        return 1
    print(f"ledger ok: {txns} transactions, {postings} postings, sum 0, no negative balance; "
          "task escrow and withdrawals in flight reconcile")
    return 0


def register(sub) -> None:
    """Add the ``ledger`` command."""
    ledger = sub.add_parser("ledger", help="money tools").add_subparsers(dest="ledger_command", required=True)
    ledger.add_parser("check", help="verify ledger invariants; exit 1 on any breach").set_defaults(func=_check)
