"""The project-local streaming standby and PgBouncer under ``.data/`` (``fieldproof db up --replica --pgbouncer``).

Both belong to the local cluster of core.localservices: the standby is a physical copy of it (pg_basebackup -R)
replaying its WAL on its own port, the bouncer pools connections to it in transaction mode. Like the cluster they
run as the unprivileged ``postgres`` user when we are root (PgBouncer refuses root as PostgreSQL does).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psycopg

from core import pgbouncer_build
from core.config import get_settings
from core.localservices import DURABILITY_OPTS, PG_BIN, PG_SUPERUSER, LocalServices, log, port_open

# The standby's physical replication slot: the primary keeps the WAL the standby has not yet received (a standby
# stopped, or slower than a burst of writes, resumes instead of failing on "WAL segment already removed"), up to
# STANDBY_MAX_KEPT_WAL; past that the slot is invalidated and the next `db up --replica` copies the primary again.
STANDBY_SLOT = "fieldproof_standby"
STANDBY_MAX_KEPT_WAL = "4GB"
# Prepared statements the local bouncer keeps per server connection (an LRU; PgBouncer >= 1.21). The application has
# a few dozen distinct statements; psycopg keeps up to 100 per client connection (prepared_max).
MAX_PREPARED_STATEMENTS = 200


def on_local_cluster(url: str) -> bool:
    """Whether ``url`` is a database on the project-local primary (the standby and bouncer front only that one)."""
    # lazy: sqlalchemy is heavy for `fieldproof db`, which needs this only in tests and benches
    from sqlalchemy.engine import make_url

    svc = LocalServices.from_settings()
    return svc.state_file.exists() and make_url(url).port == svc.state()["pg_port"]


class Standby:
    """A hot standby of the local cluster, streaming from it (its own data dir and port)."""

    def __init__(self, svc: LocalServices) -> None:
        self.svc = svc
        self.dir = svc.data_dir / "replica"

    @property
    def port(self) -> int:
        return self.svc.port("replica_port")

    def running(self) -> bool:
        """Whether the standby accepts connections."""
        return port_open(self.port)

    def up(self) -> None:
        """Copy the primary (first time) and start the standby; waits until it accepts read-only queries."""
        if not self.svc.pg_running():
            if self.running():
                return
            raise SystemExit("the primary is not running: start it first (fieldproof db up)")
        cluster = self.svc.pg_owned_dir(self.dir)
        copied = (cluster / "PG_VERSION").exists()
        lost = copied and self._slot_status() in (None, "lost")
        if lost:
            log("the standby's WAL is no longer kept on the primary (no slot, or it fell too far behind): "
                "copying the primary again")
            self.down()
        elif self.running():
            return
        if lost or not copied:
            self._basebackup(cluster)
        log(f"starting the streaming standby on 127.0.0.1:{self.port}")
        # Small buffers: a second 1 GB cluster is not needed for tests and benches. hot_standby_feedback keeps
        # the primary's vacuum from removing rows a long heatmap query on the standby still reads.
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {cluster} -c shared_buffers=128MB "
                f"-c hot_standby=on -c hot_standby_feedback=on {DURABILITY_OPTS}")
        self.svc.as_pg([str(PG_BIN / "pg_ctl"), "-D", str(cluster), "-l", str(cluster / "server.log"), "-o", opts,
                        "-w", "-t", "120", "start"], check=True, stdout=subprocess.DEVNULL)

    def _basebackup(self, cluster: Path) -> None:
        st = self.svc.state()
        log(f"copying the primary into {cluster} (pg_basebackup -R: it becomes a streaming standby)")
        if cluster.exists():
            shutil.rmtree(cluster)
        cluster.mkdir(parents=True, mode=0o700)
        if user := self.svc.pg_user():
            shutil.chown(cluster, user)
        # -R writes primary_conninfo (with this password) and standby.signal; -X stream copies the WAL written
        # meanwhile; -c fast checkpoints at once instead of waiting for the next one.
        # -C -S: a new physical slot, named in the standby's primary_slot_name (-R).
        with self._primary() as conn:
            conn.execute(f"ALTER SYSTEM SET max_slot_wal_keep_size = '{STANDBY_MAX_KEPT_WAL}'")
            conn.execute("SELECT pg_reload_conf()")
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                         (STANDBY_SLOT,))
        env = {**os.environ, "PGPASSWORD": st["pg_password"]}
        self.svc.as_pg([str(PG_BIN / "pg_basebackup"), "-D", str(cluster), "-h", "127.0.0.1", "-p",
                        str(st["pg_port"]), "-U", PG_SUPERUSER, "-R", "-X", "stream", "-c", "fast", "-w",
                        "-C", "-S", STANDBY_SLOT], check=True, env=env, stdout=subprocess.DEVNULL)

    def _primary(self) -> psycopg.Connection:
        return psycopg.connect(self.svc.admin_dsn(), autocommit=True, connect_timeout=10)

    def _slot_status(self) -> str | None:
        """The standby slot's wal_status on the primary ('reserved', 'extended', 'unreserved', 'lost'), or None."""
        with self._primary() as conn:
            row = conn.execute("SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s",
                               (STANDBY_SLOT,)).fetchone()
        return row[0] if row else None

    def down(self) -> None:
        """Stop the standby if it runs (its data dir stays, so it resumes streaming on the next start)."""
        cluster = self.dir.resolve()
        if (cluster / "PG_VERSION").exists() and self.running():
            self.svc.as_pg([str(PG_BIN / "pg_ctl"), "-D", str(cluster), "-m", "fast", "-w", "stop"], check=False,
                           stdout=subprocess.DEVNULL)
            log("standby stopped")


class Bouncer:
    """PgBouncer in transaction mode in front of the local cluster.

    ``name`` picks its directory under .data/ and its port (kept in services.json as ``<name>_port``): tests start
    a second one beside the default. ``max_prepared_statements``: None for MAX_PREPARED_STATEMENTS when the binary
    supports them (PgBouncer >= 1.21), or a number to write as is (0 turns the support off).
    """

    def __init__(self, svc: LocalServices, name: str = "pgbouncer", max_prepared_statements: int | None = None) -> None:
        self.svc = svc
        self.name = name
        self.dir = svc.data_dir / name
        self._max_prepared = max_prepared_statements

    @property
    def port(self) -> int:
        return self.svc.port(f"{self.name}_port")

    def running(self) -> bool:
        """Whether the bouncer accepts connections."""
        return port_open(self.port)

    def exe(self) -> str | None:
        """The pgbouncer binary it runs (core.pgbouncer_build.find: ours when the system's is older than 1.21)."""
        return pgbouncer_build.find(self.svc)

    def max_prepared_statements(self) -> int | None:
        """What its configuration sets max_prepared_statements to; None for a binary that lacks the setting."""
        if not pgbouncer_build.supports_prepared_statements(self.exe()):
            return None
        return MAX_PREPARED_STATEMENTS if self._max_prepared is None else self._max_prepared

    def prepared_statements(self) -> bool:
        """Whether this bouncer follows protocol-level prepared statements: asked of the running bouncer (SHOW
        CONFIG: a 1.18 started before the 1.24 build has no max_prepared_statements), else what up() would start."""
        live = self.live_config() if self.running() else None
        if live is not None:
            return int(live.get("max_prepared_statements") or 0) > 0
        return bool(self.max_prepared_statements())

    def live_config(self) -> dict[str, str] | None:
        """The running bouncer's SHOW CONFIG (key -> value), or None when its admin console does not answer."""
        try:
            with psycopg.connect(host="127.0.0.1", port=self.port, user=PG_SUPERUSER, dbname="pgbouncer",
                                 password=self.svc.state()["pg_password"], autocommit=True, connect_timeout=3,
                                 cursor_factory=psycopg.ClientCursor) as conn:  # the console takes simple queries
                return {row[0]: row[1] for row in conn.execute("SHOW CONFIG").fetchall()}
        except psycopg.Error:
            return None

    def ensure_installed(self) -> None:
        """A pgbouncer binary, >= 1.21 if it can be had (core.pgbouncer_build.ensure: built from source once when
        the system's is older; Debian's package otherwise)."""
        pgbouncer_build.ensure(self.svc)

    def up(self) -> None:
        """Write the configuration and start the bouncer (daemonised, logs under .data/<name>). One that runs
        without prepared statements although its configuration would now have them (started by PgBouncer 1.18
        before the source build) is restarted."""
        self.ensure_installed()
        if self.running():
            if self.prepared_statements() or not self.max_prepared_statements():
                return
            log(f"PgBouncer on 127.0.0.1:{self.port} runs without prepared statements; restarting it with "
                f"{self.exe()} (its clients' connections close)")
            self.down()
        if not self.svc.pg_running():
            raise SystemExit("the primary is not running: start it first (fieldproof db up)")
        home = self.svc.pg_owned_dir(self.dir)
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._write(home, "userlist.txt", f'"{PG_SUPERUSER}" "{self.svc.state()["pg_password"]}"\n')
        self._write(home, "pgbouncer.ini", self._ini(home))
        if user := self.svc.pg_user():
            shutil.chown(home, user)
        exe = self.exe()
        prepared = self.max_prepared_statements()
        log(f"starting PgBouncer {'.'.join(map(str, pgbouncer_build.version_of(exe) or ()))} (transaction mode, "
            f"{get_settings().pgbouncer_pool_size} server connections per database, "
            + (f"max_prepared_statements = {prepared}" if prepared is not None else "no prepared statements")
            + f") on 127.0.0.1:{self.port}")
        self.svc.as_pg([str(exe), "-d", str(home / "pgbouncer.ini")], check=True)
        for _ in range(100):
            if self.running():
                return
            time.sleep(0.1)
        raise SystemExit(f"PgBouncer did not start; see {home / 'pgbouncer.log'}")

    def _write(self, home: Path, name: str, text: str) -> None:
        path = home / name
        path.write_text(text)
        path.chmod(0o600)
        if user := self.svc.pg_user():
            shutil.chown(path, user)

    def _ini(self, home: Path) -> str:
        st, settings = self.svc.state(), get_settings()
        # The startup parameter "options" (how core.db asks for synchronous_commit) is not passed on by a
        # bouncer: every server connection sets it itself (connect_query), so acknowledged still means durable.
        lines = ["[databases]",
                 f"* = host=127.0.0.1 port={st['pg_port']} connect_query='SET synchronous_commit = on'",
                 "[pgbouncer]", "listen_addr = 127.0.0.1", f"listen_port = {self.port}", "unix_socket_dir =",
                 "auth_type = scram-sha-256", f"auth_file = {home / 'userlist.txt'}",
                 f"admin_users = {PG_SUPERUSER}", "pool_mode = transaction",
                 f"default_pool_size = {settings.pgbouncer_pool_size}", "reserve_pool_size = 0",
                 "max_client_conn = 1000", "ignore_startup_parameters = extra_float_digits, options",
                 f"logfile = {home / 'pgbouncer.log'}", f"pidfile = {home / 'pgbouncer.pid'}"]
        if (prepared := self.max_prepared_statements()) is not None:
            lines.append(f"max_prepared_statements = {prepared}")
        return "\n".join(lines) + "\n"

    def down(self) -> None:
        """Stop the bouncer if it runs, at once (clients see their connection close), and wait until it is gone."""
        pidfile = self.dir.resolve() / "pgbouncer.pid"
        if not self.running() or not pidfile.exists():
            return
        try:
            pid = int(pidfile.read_text().strip())
            # Immediate shutdown is SIGQUIT from 1.23 on (SIGTERM there waits for every client to disconnect);
            # before 1.23 it is SIGTERM. The running binary decides (it may be a 1.18 started before our build).
            version = pgbouncer_build.version_of(f"/proc/{pid}/exe")
            os.kill(pid, signal.SIGQUIT if version and version >= (1, 23) else signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            return
        for _ in range(100):
            if not self.running():
                break
            time.sleep(0.1)
        log("PgBouncer stopped")
