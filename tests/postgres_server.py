"""The PostgreSQL server the tests use, and a private one when there is none.

The store has to be tested against a real PostgreSQL (concurrent key assignment with
`FOR UPDATE SKIP LOCKED`, for one, is where SQLite and PostgreSQL differ), and a clean clone on
a fresh machine must pass `make test` without anyone setting up a database first. So, like
tests/dovecot.py does for IMAP, the suite brings its own server when it has to.

`admin_url()` picks the server, by `MAILBOT_TEST_POSTGRES`:

- set to a URL: that server, and only that one; it is an error if it is unreachable.
- set to `private`: always a private cluster (below), even when a server runs on 5432. This
  is how the fallback is tested on a machine that has a system PostgreSQL.
- unset (or empty): `postgresql://postgres@127.0.0.1:5432/postgres` if a server accepts
  connections there, else a private cluster.

A private cluster is `initdb` + `pg_ctl start` in a temporary directory: trust
authentication, superuser `postgres`, listening only on 127.0.0.1 at a free high port, its
unix socket in that directory (not /var/run). Root may not run PostgreSQL, so as root both run
as the `postgres` system user (`nobody` when there is none) and own the directory. When
`initdb` is missing, Debian's `postgresql` package is installed (as root; the binaries are in
/usr/lib/postgresql/<version>/bin, the newest version is used). The server is stopped by its
PID when the session ends, with an atexit fallback for an interrupted one, and its directory
is removed. Nothing is skipped: every failure says what happened and how to fix it.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import sqlalchemy as sa

ENV_VAR = "MAILBOT_TEST_POSTGRES"
PRIVATE = "private"  # MAILBOT_TEST_POSTGRES=private: always start a private cluster
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
INSTALL_HINT = "apt-get install -y postgresql"
SUPERUSER = "postgres"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL for the tests; the message says why and what to do."""


def probe(url: str, timeout: int = 3) -> str | None:
    """None if `url` accepts a connection (and a query) now, else why not."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool,
                              connect_args={"connect_timeout": timeout})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return None
    except sa.exc.SQLAlchemyError as exc:
        return str(getattr(exc, "orig", None) or exc).strip()
    finally:
        engine.dispose()


def _shown(url: str) -> str:
    """`url` with any password masked, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


@contextlib.contextmanager
def admin_url(environ: Mapping[str, str] = os.environ) -> Iterator[str]:
    """The URL of a superuser connection to the server to test against (see the docstring
    of this module); a private cluster started here is stopped and removed on exit."""
    wanted = (environ.get(ENV_VAR) or "").strip()
    if wanted and wanted.lower() != PRIVATE:
        error = probe(wanted)
        if error:
            raise PostgresUnavailable(
                f"PostgreSQL is not reachable at {_shown(wanted)} (from {ENV_VAR}): {error}\n"
                f"Fix: start that server or correct the URL; or unset {ENV_VAR} (the tests "
                f"then use {DEFAULT_URL} or start a private server of their own).")
        yield wanted
        return
    if not wanted and probe(DEFAULT_URL) is None:
        yield DEFAULT_URL
        return
    server = PostgresServer()
    try:
        try:
            server.start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            raise PostgresUnavailable(
                f"could not start a private PostgreSQL for the tests: {exc}\n"
                f"Fix: what the message above says; or point {ENV_VAR} at a server you "
                f"run (e.g. {DEFAULT_URL}).") from exc
        yield server.url
    finally:
        server.stop()
        server.remove()


# -- binaries -----------------------------------------------------------------------------


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", bin_dir.parent.name)) or (0,)


def find_bin_dir() -> Path | None:
    """The directory with `initdb`, `pg_ctl` and `postgres`: the newest Debian version under
    /usr/lib/postgresql, else wherever `initdb` on PATH really lives; None if neither."""
    def complete(d: Path) -> bool:
        return all(os.access(d / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres"))

    debian = sorted((Path(p) for p in glob.glob(DEBIAN_BIN_GLOB)), key=_version_key, reverse=True)
    for d in debian:
        if complete(d):
            return d
    on_path = shutil.which("initdb")
    if on_path:
        d = Path(on_path).resolve().parent
        if complete(d):
            return d
    return None


def install_postgresql() -> Path:
    """Install Debian's `postgresql` package (root only) and return its bin directory."""
    if os.geteuid() != 0:
        raise RuntimeError(f"initdb/pg_ctl are not installed and only root can install them: "
                           f"run `sudo {INSTALL_HINT}`")
    if shutil.which("apt-get") is None:
        raise RuntimeError("initdb/pg_ctl are not installed and there is no apt-get to "
                           "install them: install PostgreSQL's server binaries")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args, timeout in ((["apt-get", "update"], 600),
                          (["apt-get", "install", "-y", "postgresql"], 1200)):
        proc = subprocess.run(args, env=env, capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            out = (proc.stderr or proc.stdout).decode(errors="replace").strip()
            tail = "\n".join(out.splitlines()[-15:])
            raise RuntimeError(f"`{' '.join(args)}` failed ({proc.returncode}):\n{tail}")
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError(f"`{INSTALL_HINT}` succeeded but no initdb/pg_ctl/postgres "
                           f"is in {DEBIAN_BIN_GLOB}")
    return bin_dir


# -- a private cluster --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as() -> pwd.struct_passwd | None:
    """The account the server runs as: None (the caller) unless we are root, who may not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and there is neither a `postgres` nor a `nobody` "
                       "user to run PostgreSQL as: create one (e.g. `adduser --system postgres`)")


def _traversable(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether `user` may pass through every directory above `path`."""
    for d in path.resolve().parents:
        st = d.stat()
        if st.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid == user.pw_gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _make_dir(user: pwd.struct_passwd | None) -> Path:
    """A fresh temporary directory owned by `user` that `user` can reach: in $TMPDIR, or in
    /tmp when $TMPDIR is out of `user`'s reach or too long for a unix socket path (and if
    even /tmp's parents are closed to `user`, they get the x bit for others)."""
    base = Path(tempfile.gettempdir())
    if len(str(base)) > 60:  # sun_path is 108 bytes; the socket's name takes ~40 of them
        base = Path("/tmp")
    if user is not None and not _traversable(base / "x", user):
        base = Path("/tmp")
    d = Path(tempfile.mkdtemp(prefix="mailbot-postgres-", dir=base))
    if user is not None:
        if not _traversable(d, user):  # open the parents for passing through, no more
            for parent in d.resolve().parents:
                parent.chmod(parent.stat().st_mode | stat.S_IXOTH)
        os.chown(d, user.pw_uid, user.pw_gid)
    return d


class PostgresServer:
    """One private PostgreSQL cluster in a temporary directory of its own.

    Use as a context manager, or call `start()` and make sure `stop()` and `remove()` run
    (both are also registered with atexit). `url` is a superuser connection over TCP;
    `startup_seconds` says how long initdb and the start took.
    """

    host = "127.0.0.1"

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir
        self.dir: Path | None = None
        self.port = 0
        self.pid: int | None = None
        self.startup_seconds = 0.0
        self._user: pwd.struct_passwd | None = None
        self._registered = False

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def log(self) -> Path:
        return self.dir / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/postgres"

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.remove()

    def start(self, timeout: float = 60.0) -> None:
        """Install PostgreSQL if needed, initdb (first time only), start, wait for a login."""
        began = time.monotonic()
        if self.bin_dir is None:
            self.bin_dir = find_bin_dir() or install_postgresql()
        if self.dir is None:
            self._user = _run_as()
            self.dir = _make_dir(self._user)
        if not self._registered:
            atexit.register(self.remove)  # atexit runs in reverse: stop() first, then this
            atexit.register(self.stop)
            self._registered = True
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        last_error = ""
        for _ in range(3):  # a port picked as free can be taken before postgres binds it
            self.port = _free_port()
            try:
                self._pg_ctl_start(timeout)
                self._wait_ready(time.monotonic() + timeout)
                self.startup_seconds = time.monotonic() - began
                return
            except RuntimeError as exc:
                last_error = str(exc)
                self.stop()
                if "already in use" not in last_error:
                    break
        raise RuntimeError(last_error)

    def stop(self) -> None:
        """Stop the postmaster by its PID: a fast shutdown, then immediate, then SIGKILL."""
        pid, self.pid = self.pid or self._pid_from_file(), None
        if pid is None or not self._is_ours(pid):
            return
        for sig, grace in ((signal.SIGINT, 10.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            try:
                if sig == signal.SIGKILL:
                    os.killpg(pid, sig)  # pg_ctl made the postmaster a session (group) leader
                else:
                    os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if not _alive(pid):
                    return
                time.sleep(0.02)

    def remove(self) -> None:
        """Delete the cluster's directory (stop() first)."""
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- internals ------------------------------------------------------------------------

    def _run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess:
        """Run a PostgreSQL program as the server's user, in the cluster's directory."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        as_user = {}
        if self._user is not None:
            env.update(HOME=str(self.dir), USER=self._user.pw_name, LOGNAME=self._user.pw_name)
            as_user = dict(user=self._user.pw_uid, group=self._user.pw_gid, extra_groups=[])
        return subprocess.run(args, cwd=self.dir, env=env, capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=timeout, **as_user)

    def _initdb(self) -> None:
        proc = self._run([str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                          "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"],
                         timeout=120)
        if proc.returncode != 0:
            out = (proc.stderr + proc.stdout).decode(errors="replace").strip()
            raise RuntimeError(f"initdb failed ({proc.returncode}) in {self.data}:\n{out}")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"""
# mailbot tests: a private, throw-away cluster
listen_addresses = '{self.host}'
unix_socket_directories = '{self.dir}'
fsync = off
synchronous_commit = off
full_page_writes = off
""")

    def _pg_ctl_start(self, timeout: float) -> None:
        proc = self._run([str(self.bin_dir / "pg_ctl"), "start", "-D", str(self.data),
                          "-l", str(self.log), "-w", "-t", str(int(timeout)),
                          "-o", f"-p {self.port}"], timeout=timeout + 10)
        self.pid = self._pid_from_file()
        if proc.returncode != 0:
            out = (proc.stderr + proc.stdout).decode(errors="replace").strip()
            raise RuntimeError(f"pg_ctl start failed ({proc.returncode}): {out}\n"
                               f"server log {self.log}:\n{self._log_tail()}")

    def _wait_ready(self, deadline: float) -> None:
        """Log in over TCP until that works (pg_ctl -w only watched postmaster.pid)."""
        while True:
            error = probe(self.url, timeout=2)
            if error is None:
                return
            if self.pid is None or not _alive(self.pid) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        raise RuntimeError(f"PostgreSQL on {self.host}:{self.port} does not accept "
                           f"connections ({error})\nserver log {self.log}:\n{self._log_tail()}")

    def _pid_from_file(self) -> int | None:
        if self.dir is None:
            return None
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def _is_ours(self, pid: int) -> bool:
        """Whether `pid` still is this cluster's postmaster (and not a reused PID)."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return _alive(pid)  # no /proc: trust the PID
        return str(self.data).encode() in cmdline

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie nobody reaps counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")
