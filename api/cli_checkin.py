"""`fieldproof checkin explain CLAIM_ID`."""
from __future__ import annotations

import argparse
import json


def _explain(args: argparse.Namespace) -> int:
    # lazy: every fieldproof command loads this module; only this command needs these
    from checkin import service
    from core.db import session_scope

    with session_scope() as db:
        report = service.explain(db_session=db, claim_id=args.claim_id)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    print(f"claim {report['claim_id']} (task {report['task_id']}, worker {report['worker_id']}): "
          f"{report['state']}, risk {report['risk_score']}, dwell {report['dwell_s']} s")
    for fix in report["fixes"]:
        print(f"  check-{fix['kind']} #{fix['id']} at {fix['client_time']}: {fix['verdict']}, "
              f"{fix['distance_m']} m from fence, accuracy(95%) {fix['accuracy_95_m']} m, risk {fix['risk_score']}")
        if fix["remark"]:
            print(f"    remark: {fix['remark']}")
        for s in fix["signals"] or [{"code": "none", "weight": 0, "detail": "no risk signals"}]:
            print(f"    [{s['code']}] +{s['weight']}: {s['detail']}")
    return 0


def register(sub) -> None:
    """Add the ``checkin`` command."""
    checkin = sub.add_parser("checkin", help="check-in tools").add_subparsers(dest="checkin_command", required=True)
    explain = checkin.add_parser("explain", help="print a claim's verdicts and every risk signal")
    explain.add_argument("claim_id", type=int)
    explain.add_argument("--json", action="store_true", help="machine-readable output")
    explain.set_defaults(func=_explain)
