"""Project-local PostGIS and Redis under ``.data/``, used by ``fieldproof db up|down|status``.

PostgreSQL refuses to run as root, so when we are root the cluster runs as the
unprivileged system user ``postgres`` (created by Debian's package) and we say so.
"""
from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from core.config import get_settings

PG_VERSION = "15"
PG_BIN = Path(f"/usr/lib/postgresql/{PG_VERSION}/bin")
DEBIAN_PACKAGES = [f"postgresql-{PG_VERSION}", f"postgresql-{PG_VERSION}-postgis-3", "redis-server"]
PG_SUPERUSER = "fieldproof"
# Acknowledged means on disk: a 2xx is sent only after the commit's WAL is flushed. Given on the command
# line so it also overrides clusters initialised by older versions (whose config had synchronous_commit
# off). Throughput comes from fewer round trips and group commit, never from dropping these.
DURABILITY_OPTS = "-c fsync=on -c synchronous_commit=on -c full_page_writes=on"


def log(msg: str) -> None:
    """Progress for humans, on stderr."""
    print(f"[fieldproof db] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    """An unused loopback port (for local servers, benchmarks and tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    """Whether something accepts connections on a loopback port."""
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class LocalServices:
    """Paths, ports and credentials of the project-local servers."""

    data_dir: Path

    @classmethod
    def from_settings(cls) -> "LocalServices":
        """Services rooted at FIELDPROOF_DATA_DIR (default ``.data``)."""
        return cls(Path(get_settings().data_dir).resolve())

    # ---- state file -------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.data_dir / "services.json"

    def state(self) -> dict:
        """Ports and password chosen at first start; created on demand."""
        if self.state_file.exists():
            return json.loads(self.state_file.read_text())
        self.data_dir.mkdir(parents=True, exist_ok=True)
        st = {"pg_port": free_port(), "redis_port": free_port(),
              "pg_password": secrets.token_urlsafe(18)}
        self.state_file.write_text(json.dumps(st))
        self.state_file.chmod(0o600)
        return st

    def port(self, key: str) -> int:
        """A port kept in the state file under ``key``, chosen free on first use (standby, bouncer)."""
        st = self.state()
        if key not in st:
            st[key] = free_port()
            self.state_file.write_text(json.dumps(st))
        return st[key]

    def database_url(self, dbname: str) -> str:
        """SQLAlchemy URL of a database on the local cluster."""
        st = self.state()
        return f"postgresql+psycopg://{PG_SUPERUSER}:{st['pg_password']}@127.0.0.1:{st['pg_port']}/{dbname}"

    def admin_dsn(self) -> str:
        """libpq DSN of the cluster's ``postgres`` database as its superuser (creating databases, slots)."""
        st = self.state()
        return f"host=127.0.0.1 port={st['pg_port']} user={PG_SUPERUSER} password={st['pg_password']} dbname=postgres"

    def redis_url(self, db: int = 0) -> str:
        """URL of the local Redis."""
        return f"redis://127.0.0.1:{self.state()['redis_port']}/{db}"

    @property
    def pg_dir(self) -> Path:
        return self.data_dir / "pg"

    @property
    def redis_dir(self) -> Path:
        return self.data_dir / "redis"

    # ---- install ----------------------------------------------------------
    def ensure_installed(self) -> None:
        """Install PostgreSQL + PostGIS and Redis from Debian packages when missing."""
        postgis = Path(f"/usr/share/postgresql/{PG_VERSION}/extension/postgis.control")
        if (PG_BIN / "postgres").exists() and postgis.exists() and shutil.which("redis-server"):
            return
        if os.geteuid() != 0:
            raise SystemExit("PostgreSQL/PostGIS/Redis missing; run as root or: apt-get install "
                             + " ".join(DEBIAN_PACKAGES))
        log("installing " + " ".join(DEBIAN_PACKAGES) + " from Debian packages")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *DEBIAN_PACKAGES],
                       check=True, env=env)

    # ---- postgres ---------------------------------------------------------
    def pg_user(self) -> str | None:
        """The user PostgreSQL's processes run as: ``postgres`` when we are root, else ourselves (None)."""
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
        return "postgres"

    def as_pg(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        """Run a command as pg_user()."""
        user = self.pg_user()
        cmd = ["runuser", "-u", user, "--", *args] if user else args
        return subprocess.run(cmd, **kw)

    def _cluster_dir(self) -> Path:
        """The cluster directory (see pg_owned_dir)."""
        return self.pg_owned_dir(self.pg_dir)

    def pg_owned_dir(self, path: Path) -> Path:
        """``path`` for files the pg user owns; if that user cannot reach .data, kept elsewhere and linked."""
        user = self.pg_user()
        if path.is_symlink() or not user:
            return path.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.as_pg(["test", "-x", str(self.data_dir)], capture_output=True).returncode == 0:
            return path
        # e.g. the clone lives under /root (mode 700): the postgres user cannot enter it.
        alt = Path("/var/lib/fieldproof") / secrets.token_hex(6)
        alt.mkdir(parents=True)
        alt.parent.chmod(0o755)
        if path.exists():
            shutil.rmtree(path)
        path.symlink_to(alt)
        log(f"{self.data_dir} is not reachable by user postgres; {path.name} kept in {alt}")
        return alt

    def pg_running(self) -> bool:
        """Whether our cluster is accepting connections."""
        return port_open(self.state()["pg_port"])

    def pg_up(self) -> None:
        """Create (first time) and start the cluster, then make sure the databases exist."""
        st = self.state()
        cluster = self._cluster_dir()
        user = self.pg_user()
        if not (cluster / "PG_VERSION").exists():
            self._initdb(cluster, st["pg_password"])
        if self.pg_running() and not self._pg_durable():
            log("PostgreSQL runs without synchronous_commit (an older setup): restarting it durable")
            self.pg_down()
        if not self.pg_running():
            log(f"starting PostgreSQL {PG_VERSION} on 127.0.0.1:{st['pg_port']}"
                + (f" as unprivileged user '{user}' (PostgreSQL refuses to run as root)" if user else ""))
            opts = f"-c listen_addresses=127.0.0.1 -p {st['pg_port']} -k {cluster} {DURABILITY_OPTS}"
            self.as_pg([str(PG_BIN / "pg_ctl"), "-D", str(cluster), "-l", str(cluster / "server.log"),
                        "-o", opts, "-w", "-t", "60", "start"], check=True, stdout=subprocess.DEVNULL)
        for name in (get_settings().database_name, get_settings().database_name + "_test"):
            self.ensure_database(name)

    def _initdb(self, cluster: Path, password: str) -> None:
        log(f"initialising a PostgreSQL cluster in {cluster}")
        cluster.mkdir(parents=True, exist_ok=True)
        user = self.pg_user()
        pwfile = cluster.parent / f".pw-{os.getpid()}"
        pwfile.write_text(password + "\n")
        if user:
            shutil.chown(cluster, user)
            shutil.chown(pwfile, user)
        try:
            self.as_pg([str(PG_BIN / "initdb"), "-D", str(cluster), "-U", PG_SUPERUSER, "--pwfile", str(pwfile),
                        "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--locale=C.UTF-8"],
                       check=True, stdout=subprocess.DEVNULL)
        finally:
            pwfile.unlink(missing_ok=True)
        with open(cluster / "postgresql.conf", "a") as conf:
            # Sized for a 2-core, 24 GiB developer machine.
            conf.write("\nshared_buffers = '1GB'\nmax_connections = 300\nfsync = on\n"
                       "synchronous_commit = on\nwork_mem = '32MB'\nmaintenance_work_mem = '512MB'\n")

    def _pg_durable(self) -> bool:
        try:
            with psycopg.connect(self.admin_dsn(), connect_timeout=5) as conn:
                return conn.execute("SHOW synchronous_commit").fetchone()[0] == "on"
        except psycopg.OperationalError:
            return True  # not ours to judge (starting up, or another server on the port)

    def ensure_database(self, name: str) -> None:
        """Create a database on the local cluster if it does not exist."""
        dsn = self.admin_dsn()
        for _ in range(50):
            try:
                conn = psycopg.connect(dsn, autocommit=True)
                break
            except psycopg.OperationalError:
                time.sleep(0.2)
        else:
            raise SystemExit("PostgreSQL did not accept connections; see .data/pg/server.log")
        with conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')  # name comes from settings, not users
                log(f"created database {name}")

    def pg_down(self) -> None:
        """Stop the cluster if it runs."""
        cluster = self.pg_dir.resolve()
        if (cluster / "PG_VERSION").exists() and self.pg_running():
            self.as_pg([str(PG_BIN / "pg_ctl"), "-D", str(cluster), "-m", "fast", "-w", "stop"], check=False)
            log("PostgreSQL stopped")

    # ---- redis ------------------------------------------------------------
    def redis_running(self) -> bool:
        """Whether our Redis accepts connections."""
        return port_open(self.state()["redis_port"])

    def redis_up(self) -> None:
        """Start Redis on its loopback port, data under .data/redis."""
        if self.redis_running():
            return
        port = self.state()["redis_port"]
        self.redis_dir.mkdir(parents=True, exist_ok=True)
        log(f"starting Redis on 127.0.0.1:{port}")
        subprocess.run(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.redis_dir),
                        "--daemonize", "yes", "--pidfile", str(self.redis_dir / "redis.pid"),
                        "--logfile", str(self.redis_dir / "redis.log"), "--appendonly", "yes",
                        "--protected-mode", "yes"], check=True)
        for _ in range(50):
            if self.redis_running():
                return
            time.sleep(0.1)
        raise SystemExit("Redis did not start; see .data/redis/redis.log")

    def redis_down(self) -> None:
        """Stop Redis if it runs."""
        if self.redis_running():
            subprocess.run(["redis-cli", "-p", str(self.state()["redis_port"]), "shutdown"], check=False,
                           stdout=subprocess.DEVNULL)
            log("Redis stopped")


def external() -> bool:
    """True when both servers are given from outside, so nothing local is started."""
    s = get_settings()
    return bool(s.database_url and s.redis_url)


def up(replica: bool = False, pgbouncer: bool = False) -> None:
    """Install if needed and start both local servers (no-op for external servers); the streaming standby and
    PgBouncer too when asked for here or in settings (FIELDPROOF_REPLICA, FIELDPROOF_PGBOUNCER)."""
    if external():
        log("FIELDPROOF_DATABASE_URL and FIELDPROOF_REDIS_URL are set: using them, starting nothing")
        return
    svc = LocalServices.from_settings()
    svc.ensure_installed()
    svc.pg_up()
    svc.redis_up()
    # lazy: core.localscale builds on this module (standby and bouncer are optional extras of the cluster)
    from core import localscale

    settings = get_settings()
    if replica or (settings.replica and not settings.replica_url):
        localscale.Standby(svc).up()
    if pgbouncer or (settings.pgbouncer and not settings.pgbouncer_url):
        localscale.Bouncer(svc).up()


def down() -> None:
    """Stop the local servers (standby and bouncer first, if they run)."""
    svc = LocalServices.from_settings()
    # lazy: core.localscale builds on this module
    from core import localscale

    for home in sorted(svc.data_dir.glob("pgbouncer*/pgbouncer.ini")):  # the default one and any a test started
        localscale.Bouncer(svc, name=home.parent.name).down()
    localscale.Standby(svc).down()
    svc.redis_down()
    svc.pg_down()
