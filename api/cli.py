"""The ``fieldproof`` command line."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from core.errors import FieldproofError

# Other packages' verbs register themselves through these modules' ``register(subparsers)``.
PLUGIN_MODULES = ["api.cli_geo", "api.cli_evidence", "api.cli_checkin", "api.cli_demo", "api.cli_ledger",
                  "api.cli_heatmap", "api.cli_sim"]

# Commands that call domain services in this process, so tasks' hooks must be filled first (tasks.hooks);
# the others stay light (`coords`, `hash`, `dedup`, `db`) or start processes that register for themselves.
DOMAIN_COMMANDS = {"users", "checkin", "demo", "heatmap", "ledger", "evidence"}


def _db(args: argparse.Namespace) -> int:
    # lazy: every fieldproof command loads this module; only this command needs these
    from core import localservices

    if args.action == "up":
        localservices.up(replica=args.replica, pgbouncer=args.pgbouncer)
    elif args.action == "down":
        localservices.down()
    print(json.dumps(_status()))
    return 0


def _status() -> dict:
    # lazy: every fieldproof command loads this module; only this command needs these
    from core import localservices
    from core.db import database_url
    from core.redis import redis_url

    info = {"database_url": _redact(database_url()), "redis_url": redis_url(), "external": localservices.external()}
    if not info["external"]:
        svc = localservices.LocalServices.from_settings()
        info.update(postgres_running=svc.pg_running(), redis_running=svc.redis_running())
    return {**info, **_scale_status()}


def _scale_status() -> dict:
    """The replica's and the bouncer's URLs when configured; whether the local standby and bouncer run."""
    # lazy: every fieldproof command loads this module; only this command needs these
    from core import db, localscale, localservices

    info = {f"{name}_url": _redact(url) for name, url in (("replica", db.replica_url()),
                                                          ("pgbouncer", db.pgbouncer_url())) if url}
    if not localservices.external():
        svc = localservices.LocalServices.from_settings()
        info.update(replica_running=localscale.Standby(svc).running(),
                    pgbouncer_running=localscale.Bouncer(svc).running())
    return info


def _redact(url: str) -> str:
    if "@" not in url:
        return url
    head, tail = url.split("@", 1)
    return head.rsplit(":", 1)[0] + ":***@" + tail


def _migrate(args: argparse.Namespace) -> int:
    # lazy: every fieldproof command loads this module; only this command needs these
    from core.migrate import upgrade

    upgrade(revision=args.revision)
    print(f"migrated to {args.revision}", file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    # lazy: every fieldproof command loads this module; only this command needs these
    import uvicorn
    from core.config import get_settings

    s = get_settings()
    uvicorn.run("api.app:app", host=args.host or s.api_host, port=args.port or s.api_port,
                workers=args.workers, log_level=s.log_level.lower(), access_log=False)
    return 0


def _celery(argv: list[str]) -> int:
    # Replace this process, so signals (Ctrl-C, the supervisor's SIGINT) reach Celery itself.
    os.execv(sys.executable, [sys.executable, "-m", "celery", "-A", "workers.celery_app:app", *argv])
    return 0


def _worker(args: argparse.Namespace) -> int:
    # lazy: every fieldproof command loads this module; only this command needs these
    from workers.queues import QUEUES, parse_queues

    try:
        queues = parse_queues(args.queues)
    except ValueError as exc:
        print(f"fieldproof worker: {exc}", file=sys.stderr)
        return 2
    # A node name per queue group, so several workers on one host (one per group) do not clash.
    name = "celery" if set(queues) == set(QUEUES) else "-".join(queues)
    return _celery(["worker", "-Q", ",".join(queues), "-n", f"{name}@%h", "--concurrency", str(args.concurrency),
                    "--loglevel", "INFO"])


def _beat(args: argparse.Namespace) -> int:
    # lazy: every fieldproof command loads this module; only this command needs these
    from core.config import get_settings

    schedule = os.path.join(str(get_settings().data_dir), "celerybeat-schedule")
    return _celery(["beat", "--loglevel", "INFO", "--schedule", schedule])


def _users_create(args: argparse.Namespace) -> int:
    # lazy: every fieldproof command loads this module; only this command needs these
    from accounts import service as accounts
    from core.db import session_scope

    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else __import__("getpass").getpass()
    with session_scope() as db:
        user = accounts.create(db_session=db, username=args.username, password=password, role=args.role,
                               display_name=args.display_name or args.username, self_service=False)
        print(json.dumps({"id": user.id, "username": user.username, "role": user.role}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = argparse.ArgumentParser(prog="fieldproof", description="Fieldproof: verified offline field work.")
    sub = parser.add_subparsers(dest="command", required=True)
    db = sub.add_parser("db", help="project-local PostGIS and Redis")
    db.add_argument("action", choices=["up", "down", "status"])
    db.add_argument("--replica", action="store_true", help="also start a streaming standby (pg_basebackup -R)")
    db.add_argument("--pgbouncer", action="store_true", help="also start PgBouncer in transaction mode")
    db.set_defaults(func=_db)
    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.add_argument("--revision", default="head")
    mig.set_defaults(func=_migrate)
    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--port", type=int)
    serve.add_argument("--host")
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=_serve)
    worker = sub.add_parser("worker", help="run a Celery worker")
    worker.add_argument("--concurrency", type=int, default=2)
    worker.add_argument("--queues", default="", help="comma-separated queues to consume: evidence, money, "
                        "maintenance, default (default: all of them)")
    worker.set_defaults(func=_worker)
    sub.add_parser("beat", help="run Celery beat").set_defaults(func=_beat)
    users = sub.add_parser("users", help="manage users").add_subparsers(dest="users_command", required=True)
    create = users.add_parser("create", help="create a user (password from standard input)")
    create.add_argument("username")
    create.add_argument("--role", required=True, choices=["worker", "merchant", "ops", "admin"])
    create.add_argument("--display-name")
    create.set_defaults(func=_users_create)
    for name in PLUGIN_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    if args.command in DOMAIN_COMMANDS:
        # lazy: only commands that run domain services pay for loading them (and their hooks)
        from api.hooks import register_domain_hooks

        register_domain_hooks()
    try:
        code = args.func(args)
    except FieldproofError as exc:
        print(json.dumps(exc.to_dict()), file=sys.stderr)
        code = 2
    sys.exit(code or 0)
if __name__ == "__main__":
    main()
