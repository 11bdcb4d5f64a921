"""A private Dovecot IMAP server for tests, on a loopback high port, stopped by PID.

Real servers catch what fakes hide: STARTTLS and certificate checks, \\Seen semantics of
BODY.PEEK, MOVE vs COPY, what a `doveadm kick` or a restart does to a live session. One server
serves every security mode at once: plaintext and STARTTLS on `port`, implicit TLS on
`tls_port`, with a certificate for `localhost` signed by a private CA (`ca_file`).

With `oauth2=True` the server also accepts XOAUTH2: Dovecot's oauth2 passdb asks a small HTTP
endpoint in this process whether a token is valid; tests put tokens in `valid_tokens`.

The helpers talk to the server with the standard library's imaplib or with doveadm, never with
mailbot's own IMAP code, so a bug there cannot hide itself in the tests.
"""

from __future__ import annotations

import atexit
import base64
import grp
import imaplib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAIL_UID = 65534  # dovecot refuses uid 0 for mail processes; "nobody" works (DOVECOT.md)
INSTALL_HINT = "apt-get install -y dovecot-imapd"


def dovecot_available() -> bool:
    return shutil.which("dovecot") is not None and shutil.which("doveadm") is not None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=True, capture_output=True, timeout=30, **kwargs)


def make_certificates(directory: Path, hostname: str = "localhost") -> tuple[Path, Path, Path]:
    """Write a private CA and a server certificate for `hostname`; return (ca, cert, key).

    A real CA plus a leaf (rather than one self-signed leaf) keeps strict X.509 checks of newer
    Pythons happy and mirrors how a company's private CA is used with `[imap] ca_file`.
    """
    ca_key, ca_crt = directory / "ca.key", directory / "ca.pem"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "server.ext"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run(["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca_crt, "-days", "2",
          "-subj", "/CN=mailbot test CA",
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    _run(["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={hostname}"])
    ext.write_text(f"subjectAltName=DNS:{hostname},IP:127.0.0.1\n"
                   "basicConstraints=critical,CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\n")
    _run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
          "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext])
    return ca_crt, crt, key


class DovecotServer:
    """One Dovecot instance with one user, in a temporary directory of its own.

    Use as a context manager, or call `start()` and make sure `stop()` runs (it is also
    registered with atexit, so an interrupted session does not leave a server behind).
    Runs as root (CI: mail owned by uid 65534) or as an ordinary user (every Dovecot process
    then runs as that user).
    """

    host = "127.0.0.1"

    def __init__(self, user: str = "bot", password: str = "botpass", tls: bool = True,
                 oauth2: bool = False, mail_format: str = "mdbox",
                 root: str | Path | None = None) -> None:
        """`mail_format` "mdbox" (default) or "maildir": Dovecot's maildir costs ~3 ms per
        APPEND or single-mail MOVE on these machines, mdbox ~0.3 ms, which matters to the
        end-to-end benchmark; nothing a client sees differs."""
        self.user = user
        self.password = password
        self.tls = tls
        self.oauth2 = oauth2
        self.mail_format = mail_format
        self.valid_tokens: set[str] = set()  # XOAUTH2 tokens the server accepts now
        self.token_checks: list[str] = []  # every token Dovecot asked about, in order
        self._http: ThreadingHTTPServer | None = None
        self.dir = Path(root or tempfile.mkdtemp(prefix="mailbot-dovecot-"))
        self.conf = self.dir / "dovecot.conf"
        self.log = self.dir / "dovecot.log"
        self.port = 0
        self.tls_port = 0
        self.ca_file: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._registered = False

    # -- life cycle -----------------------------------------------------------------------

    def __enter__(self) -> DovecotServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.remove()

    def start(self) -> None:
        """Write the configuration (first time only), start the master and wait for the port."""
        if not dovecot_available():
            raise RuntimeError(f"dovecot is not installed: {INSTALL_HINT}")
        if not self.conf.exists():
            self._prepare()
        if not self._registered:
            atexit.register(self.stop)
            self._registered = True
        last_error = ""
        for _ in range(3):  # a port picked as free can be taken before dovecot binds it
            self._proc = subprocess.Popen(
                ["dovecot", "-F", "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
            try:
                self._wait_ready()
                return
            except RuntimeError as exc:
                last_error = str(exc)
                self.stop()
                if "Address already in use" not in last_error:
                    break
                self.port = _free_port()
                self.tls_port = _free_port() if self.tls else 0
                self._write_config()
        raise RuntimeError(last_error)

    def stop(self) -> None:
        """Stop the master by its PID (and its process group if it does not go quietly)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        # SIGTERM makes the master end every session at once, but it then lingers 1-6 s for
        # its log and login processes; after a short grace nothing a test can observe is left,
        # so the rest of the process group (our own session, see start()) is killed.
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=0.3)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # master still alive: the group is still ours
            proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self._port_open(self.port):
            time.sleep(0.01)

    def restart(self) -> None:
        """A full stop and start on the same port and mail: every session is dropped."""
        self.stop()
        self.start()

    def remove(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    # -- fault controls -------------------------------------------------------------------

    def doveadm(self, *args: str, ok: tuple[int, ...] = (0,)) -> str:
        proc = subprocess.run(["doveadm", "-c", str(self.conf), *args], capture_output=True,
                              timeout=30)
        if proc.returncode not in ok:
            raise RuntimeError(f"doveadm {' '.join(args)} failed ({proc.returncode}): "
                               f"{(proc.stderr or proc.stdout).decode(errors='replace').strip()}")
        return proc.stdout.decode(errors="replace")

    def kick(self) -> None:
        """Drop every IMAP connection of the user, as an admin or a network fault would."""
        self.doveadm("kick", self.user, ok=(0, 68))  # 68: nobody was connected

    def set_uidvalidity(self, folder: str, value: int) -> None:
        self.doveadm("mailbox", "update", "-u", self.user, "--uid-validity", str(value), folder)

    def uidvalidity(self, folder: str = "INBOX") -> int:
        out = self.doveadm("-f", "flow", "mailbox", "status", "-u", self.user, "uidvalidity",
                           folder)
        return int(re.search(r"uidvalidity=(\d+)", out).group(1))

    # -- mailbox contents (over imaplib) ---------------------------------------------------

    def connect(self) -> imaplib.IMAP4:
        imap = imaplib.IMAP4(self.host, self.port, timeout=10)
        imap.login(self.user, self.password)
        return imap

    def append(self, folder: str, message: bytes, flags: Iterable[str] = ()) -> None:
        self.append_many(folder, [message], flags)

    def append_many(self, folder: str, messages: Iterable[bytes],
                    flags: Iterable[str] = ()) -> None:
        flag_list = "(" + " ".join(flags) + ")"
        imap = self.connect()
        try:
            for message in messages:
                typ, data = imap.append(_quote(folder), flag_list, None, message)
                if typ != "OK":
                    raise RuntimeError(f"APPEND to {folder} failed: {data!r}")
        finally:
            imap.logout()

    def folder_exists(self, folder: str) -> bool:
        imap = self.connect()
        try:
            typ, data = imap.list('""', _quote(folder))
            return typ == "OK" and any(item is not None for item in data)
        finally:
            imap.logout()

    def list_folder(self, folder: str) -> list[bytes]:
        """The bodies of the mails in `folder`, in UID order ([] when it does not exist)."""
        return [body for body, _ in self.list_folder_with_flags(folder)]

    def list_folder_with_flags(self, folder: str) -> list[tuple[bytes, tuple[str, ...]]]:
        """(body, flags) of each mail in `folder`, read without changing \\Seen."""
        imap = self.connect()
        try:
            typ, _ = imap.select(_quote(folder), readonly=True)
            if typ != "OK":
                return []
            typ, data = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
            out = []
            for item in data:
                if isinstance(item, tuple):
                    flags = re.search(rb"FLAGS \(([^)]*)\)", item[0])
                    names = tuple(f for f in (flags.group(1).decode().split() if flags else ())
                                  if f != "\\Recent")  # \Recent depends on who looked first
                    out.append((item[1], names))
            return out
        finally:
            imap.logout()

    def folders(self) -> list[str]:
        """Every folder's name (decoded from modified UTF-7)."""
        imap = self.connect()
        try:
            return [_mutf7_decode(name) for name in _listed_names(imap)]
        finally:
            imap.logout()

    def empty(self) -> None:
        """Delete every folder but INBOX and every mail in INBOX: a fresh mailbox in ~10 ms."""
        imap = self.connect()
        try:
            names = _listed_names(imap)
            for name in sorted(names, key=lambda n: n.count("/"), reverse=True):
                if name.upper() != "INBOX":
                    imap.delete(_quote_wire(name))
            imap.select("INBOX")
            typ, data = imap.search(None, "ALL")
            if data and data[0]:
                imap.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
                imap.expunge()
        finally:
            imap.logout()

    # -- internals ------------------------------------------------------------------------

    def _prepare(self) -> None:
        os.chmod(self.dir, 0o755)  # auth (user dovecot) and mail (uid 65534) processes read here
        for sub in ("run", "state", "mail"):
            (self.dir / sub).mkdir(exist_ok=True)
        home = self.dir / "mail" / self.user
        home.mkdir(exist_ok=True)
        users = self.dir / "users"
        if os.geteuid() == 0:
            uid = gid = MAIL_UID
            os.chown(home, uid, gid)
        else:  # everything runs as the calling user: see _write_config
            uid, gid = os.geteuid(), os.getegid()
        users.write_text(f"{self.user}:{{PLAIN}}{self.password}:{uid}:{gid}::{home}::\n")
        if os.geteuid() == 0:
            shutil.chown(users, "root", "dovecot")
        os.chmod(users, 0o640)
        if self.tls:
            self.ca_file, self.cert_file, self.key_file = make_certificates(self.dir)
            os.chmod(self.key_file, 0o600)
        if self.oauth2:
            self._start_token_endpoint()
        self.port = _free_port()
        self.tls_port = _free_port() if self.tls else 0
        self._write_config()

    def _write_config(self) -> None:
        d = self.dir
        if self.tls:
            ssl = (f"ssl = yes\nssl_cert = <{self.cert_file}\nssl_key = <{self.key_file}\n"
                   "ssl_min_protocol = TLSv1.2\n")
            imaps = f"address = 127.0.0.1\n    port = {self.tls_port}"
        else:
            ssl = "ssl = no\n"
            imaps = "port = 0"
        if self.oauth2:
            mechanisms = "plain login xoauth2 oauthbearer"
            oauth_passdb = f"""passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {d}/oauth2.conf.ext
}}
"""
            (d / "oauth2.conf.ext").write_text(
                f"tokeninfo_url = http://127.0.0.1:{self._http.server_port}/tokeninfo?token=\n"
                "introspection_mode = auth\n"
                "username_attribute = username\n"
                "active_attribute = active\n"
                "active_value = true\n")
        else:
            mechanisms, oauth_passdb = "plain login", ""
        if os.geteuid() == 0:
            users = "first_valid_uid = 1000\n"
        else:  # a developer's machine: dovecot's own processes run as the caller too
            me, group = pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name
            users = (f"first_valid_uid = {min(os.geteuid(), 1000)}\n"
                     f"default_internal_user = {me}\ndefault_internal_group = {group}\n"
                     f"default_login_user = {me}\n")
        self.conf.write_text(f"""\
instance_name = mailbot-test-{self.port}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
auth_failure_delay = 0
{users}stats_writer_socket_path =
{oauth_passdb}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/users
}}
mail_location = {self.mail_format}:{d}/mail/%u/{self.mail_format}
mail_fsync = never
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  chroot =  # only root may chroot; a test server needs no such isolation
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    {imaps}
  }}
}}
# no auth penalty: tests log in with bad passwords and tokens on purpose, and the penalty
# (2-15 s per IP) would slow every later login from 127.0.0.1
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
""")

    def _wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc else ""
                raise RuntimeError(f"dovecot exited: {err.strip()}\n{self._log_tail()}")
            if self._greets(self.port) and (not self.tls or self._port_open(self.tls_port)):
                return
            time.sleep(0.02)
        raise RuntimeError(f"dovecot did not answer on port {self.port}\n{self._log_tail()}")

    def _greets(self, port: int) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=1) as s:
                return s.recv(64).startswith(b"* OK")
        except OSError:
            return False

    def _port_open(self, port: int) -> bool:
        if not port:
            return False
        try:
            with socket.create_connection((self.host, port), timeout=0.5):
                return True
        except OSError:
            return False

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no dovecot log)"


    def _start_token_endpoint(self) -> None:
        server = self

        class TokenInfo(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # dovecot's HTTP client keeps connections alive

            def do_GET(self) -> None:  # http.server's naming
                token = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
                server.token_checks.append(token)
                if token in server.valid_tokens:
                    status, body = 200, {"username": server.user, "active": True}
                else:
                    status, body = 401, {"error": "invalid_token"}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), TokenInfo)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, daemon=True,
                         name="dovecot-tokeninfo").start()


def _quote(folder: str) -> str:
    """A folder name as an IMAP quoted string, in modified UTF-7 (RFC 3501 5.1.3)."""
    return _quote_wire(_mutf7(folder))


def _quote_wire(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _listed_names(imap: imaplib.IMAP4) -> list[str]:
    """Folder names as LIST sends them (still in modified UTF-7)."""
    typ, data = imap.list()
    names = []
    for line in data or ():
        match = re.match(rb'\(.*?\) (?:"(?:[^"\\]|\\.)"|NIL) (.*)$', line or b"")
        if match:
            name = match.group(1).decode("ascii")
            if name.startswith('"'):
                name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            names.append(name)
    return names


def _mutf7_decode(name: str) -> str:
    def decode(match: re.Match) -> str:
        raw = match.group(1)
        if not raw:
            return "&"
        raw = raw.replace(",", "/")
        return base64.b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-16-be")

    return re.sub(r"&([^-]*)-", decode, name)


def _mutf7(name: str) -> str:
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = base64.b64encode("".join(pending).encode("utf-16-be")).decode("ascii")
            out.append("&" + raw.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)
