"""PgBouncer >= 1.21 for the local bouncer (`make pgbouncer`, `fieldproof db up --pgbouncer`).

Debian 12 ships PgBouncer 1.18, which cannot follow protocol-level prepared statements in transaction mode (1.21 can:
``max_prepared_statements``). When the pgbouncer on PATH (or /usr/sbin) is older, this builds Debian trixie's
upstream tarball (pinned by SHA-256) with Debian 12's build dependencies into ``.data/pgbouncer-<version>/``, once:
later runs find the binary and return at once. A build that fails says why and leaves Debian's 1.18, with which the
engine sends every statement unprepared (core.db).

``python -m core.pgbouncer_build`` installs (or finds) it and prints which binary the local bouncer will run.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

from core.localservices import LocalServices, log

# PgBouncer follows protocol-level prepared statements across server connections from 1.21 on.
PREPARED_STATEMENTS_SINCE = (1, 21)
VERSION = "1.24.1"
# Debian trixie's source package (its upstream tarball, unchanged), from the Debian archive this machine's apt uses
# (apt_archive), or FIELDPROOF_DEBIAN_MIRROR.
APT_SOURCES = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list")),
               *sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]
TARBALL = f"pool/main/p/pgbouncer/pgbouncer_{VERSION}.orig.tar.gz"
SHA256 = "da72a3aba13072876d055a3e58dd4aba4a5de4ed6148e73033185245598fd3e0"
SIZE = 717_796
# Debian 12 packages the build needs (gcc, make and libc6-dev are on most machines already).
BUILD_PACKAGES = ["gcc", "make", "libc6-dev", "pkg-config", "libevent-dev", "libssl-dev"]
DEBIAN_PACKAGE = "pgbouncer"


class BuildFailed(Exception):
    """The source build did not produce a working binary (the message says which step and why)."""


def version_of(exe: str | Path) -> tuple[int, int] | None:
    """(major, minor) of a pgbouncer binary, or None if it does not run or says no version."""
    try:
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"PgBouncer (\d+)\.(\d+)", out)
    return (int(found.group(1)), int(found.group(2))) if found else None


def system_exe() -> str | None:
    """The system's pgbouncer (Debian puts it in /usr/sbin, not on every user's PATH)."""
    exe = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    return exe if Path(exe).exists() else None


def built_exe(svc: LocalServices) -> Path:
    """Where the source build's binary lives (it may not exist yet)."""
    return svc.data_dir / f"pgbouncer-{VERSION}" / "bin" / "pgbouncer"


def supports_prepared_statements(exe: str | Path | None) -> bool:
    """Whether that binary can follow protocol-level prepared statements (max_prepared_statements)."""
    version = version_of(exe) if exe else None
    return bool(version and version >= PREPARED_STATEMENTS_SINCE)


def find(svc: LocalServices) -> str | None:
    """The binary the local bouncer runs: the system's if it is >= 1.21, else our build if there is one, else the
    system's (older) one, else None."""
    system = system_exe()
    if supports_prepared_statements(system):
        return system
    built = built_exe(svc).resolve()  # the postgres user may reach it only through the link's target (pg_owned_dir)
    if built.exists() and version_of(built):
        return str(built)
    return system


def ensure(svc: LocalServices) -> str:
    """A pgbouncer binary, >= 1.21 when it can be had: the system's, our cached build, or a new build (about 20 s
    on 2 cores); if the build fails, Debian's package (1.18) as before, saying why. Raises SystemExit when there is
    no pgbouncer at all."""
    exe = find(svc)
    if supports_prepared_statements(exe):
        return str(exe)
    with _lock(svc):
        exe = find(svc)  # another process may have built it meanwhile
        if supports_prepared_statements(exe):
            return str(exe)
        try:
            return str(build(svc))
        except BuildFailed as exc:
            log(f"PgBouncer {VERSION} could not be built ({exc}); falling back to Debian's {DEBIAN_PACKAGE} "
                "package: prepared statements stay off behind it")
    try:
        exe = system_exe() or _install_debian_package()
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"PgBouncer missing and apt-get install {DEBIAN_PACKAGE} failed ({exc.returncode})") from exc
    if not version_of(exe):
        raise SystemExit(f"PgBouncer missing; run as root or: apt-get install {DEBIAN_PACKAGE}")
    return exe


class _lock:
    """An exclusive lock on the build directory's lock file (two `make` or test runs building at once)."""

    def __init__(self, svc: LocalServices) -> None:
        svc.data_dir.mkdir(parents=True, exist_ok=True)
        self.path = svc.data_dir / f"pgbouncer-{VERSION}.lock"

    def __enter__(self) -> "_lock":
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def build(svc: LocalServices) -> Path:
    """Download (SHA-256 checked), configure, compile; the binary is moved into place only once it runs."""
    started = time.monotonic()
    _ensure_build_packages()
    took = {"build dependencies": time.monotonic() - started}
    target = built_exe(svc)
    prefix = svc.pg_owned_dir(target.parent.parent)  # the unprivileged postgres user runs it (see pg_owned_dir)
    with tempfile.TemporaryDirectory(prefix="pgbouncer-build-") as tmp:
        work = Path(tmp)
        tarball = work / "pgbouncer.tar.gz"
        _download(f"{apt_archive()}/{TARBALL}", tarball)
        log(f"building PgBouncer {VERSION} from source into {prefix} (once; about 20 s)")
        with tarfile.open(tarball) as tar:
            tar.extractall(work, filter="data")
        src = work / f"pgbouncer-{VERSION}"
        buildlog = work / "build.log"
        for step in (["./configure", f"--prefix={prefix}", "--without-cares", "--disable-debug"],
                     ["make", f"-j{min(os.cpu_count() or 1, 4)}"]):
            with open(buildlog, "a") as out:
                step_started = time.monotonic()
                done = subprocess.run(step, cwd=src, stdout=out, stderr=subprocess.STDOUT)
                took[step[0].lstrip("./")] = time.monotonic() - step_started
            if done.returncode != 0:
                tail = buildlog.read_text(errors="replace").strip().splitlines()[-5:]
                raise BuildFailed(f"`{' '.join(step)}` exited {done.returncode}: " + " | ".join(tail))
        if version_of(src / "pgbouncer") is None:
            raise BuildFailed("the built binary does not run")
        for path in (prefix, prefix / "bin"):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o755)
        staged = prefix / "bin" / "pgbouncer.new"
        shutil.copy2(src / "pgbouncer", staged)
        staged.chmod(0o755)
        staged.replace(prefix / "bin" / "pgbouncer")  # atomic: a half-copied binary never counts as built
    log(f"built PgBouncer {VERSION} in {time.monotonic() - started:.0f} s ("
        + ", ".join(f"{step} {seconds:.0f} s" for step, seconds in took.items()) + f"): {target}")
    return target.resolve()


def apt_archive() -> str:
    """The Debian archive apt installs from (the first http(s) URI of a Debian main archive, ``.../debian``, in
    apt's sources, one-line or deb822), or FIELDPROOF_DEBIAN_MIRROR."""
    if mirror := os.environ.get("FIELDPROOF_DEBIAN_MIRROR"):
        return mirror.rstrip("/")
    for path in APT_SOURCES:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for found in re.finditer(r"^\s*(?:deb(?:-src)?\s+(?:\[[^\]]*\]\s+)?|URIs:\s*)(\S+)", text, re.M):
            if re.fullmatch(r"https?://\S+/debian/?", found.group(1)):
                return found.group(1).rstrip("/")
    raise BuildFailed("no Debian archive (an http URI ending in /debian) in apt's sources: "
                      "set FIELDPROOF_DEBIAN_MIRROR")


def _download(url: str, dest: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as out:
            shutil.copyfileobj(resp, out)
    except OSError as exc:
        raise BuildFailed(f"downloading {url}: {exc}") from exc
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()
    if digest != SHA256:
        raise BuildFailed(f"{url} has SHA-256 {digest} ({dest.stat().st_size} bytes), expected {SHA256} "
                          f"({SIZE} bytes): not building from it")


def _build_packages_present() -> bool:
    if not all(shutil.which(tool) for tool in ("gcc", "make", "pkg-config")):
        return False
    return subprocess.run(["pkg-config", "--exists", "libevent", "openssl"]).returncode == 0


def _ensure_build_packages() -> None:
    if _build_packages_present():
        return
    if os.geteuid() != 0:
        raise BuildFailed("build dependencies missing; as root: apt-get install " + " ".join(BUILD_PACKAGES))
    log("installing the build dependencies " + " ".join(BUILD_PACKAGES) + " from Debian packages")
    try:
        _apt_install(BUILD_PACKAGES)
    except subprocess.CalledProcessError as exc:
        raise BuildFailed(f"apt-get install {' '.join(BUILD_PACKAGES)} failed ({exc.returncode})") from exc


def _install_debian_package() -> str:
    if os.geteuid() != 0:
        raise SystemExit(f"PgBouncer missing; run as root or: apt-get install {DEBIAN_PACKAGE}")
    log(f"installing {DEBIAN_PACKAGE} from Debian packages")
    _apt_install([DEBIAN_PACKAGE])
    exe = system_exe()
    if exe is None:
        raise SystemExit(f"apt-get installed {DEBIAN_PACKAGE} but no pgbouncer binary was found")
    return exe


def _apt_install(packages: list[str]) -> None:
    """apt-get install, with apt-get update only if the first try fails (a fresh machine's empty lists)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(install, check=True, env=env, stdout=subprocess.DEVNULL)


def main() -> int:
    svc = LocalServices.from_settings()
    exe = ensure(svc)
    version = version_of(exe)
    prepared = supports_prepared_statements(exe)
    print(f"pgbouncer: {exe} (PgBouncer {'.'.join(map(str, version or ()))}); prepared statements through it: "
          f"{'yes' if prepared else 'no (older than 1.21)'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
