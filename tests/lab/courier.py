"""A real Courier-IMAP + Courier POP3 server on loopback, beside the Dovecot lab.

Courier cannot be installed next to Dovecot on Debian 12 (courier-imap
conflicts with dovecot-imapd), so tests/lab/install-courier.sh unpacks its
.debs into lab-run/courier/root without installing them. `CourierLab` runs
every daemon from that tree, each in a private mount namespace (`unshare
--mount`) in which the unpacked directories and the lab's own config are
bind-mounted over the paths Courier has compiled in:

    /etc/courier              <- <lab>/etc     (authdaemonrc, userdb.dat, cert)
    /run/courier              <- <lab>/run     (authdaemon/socket), on a private tmpfs /run
    /usr/lib/courier          <- <tree>/usr/lib/courier        (login programs, makedatprog)
    /usr/lib/courier-authlib  <- <tree>/usr/lib/courier-authlib (authuserdb module)

Daemons (as Debian's init scripts start them, without courierlogger, so their
log lines go to one file per daemon under <lab>/log):

    authdaemond (root, authuserdb)         users in a userdb built with makeuserdb
    couriertcpd 143  imaplogin -> imapd    STARTTLS, IMAP_TLS_REQUIRED=1
    couriertcpd 993  couriertls -user=courier -> imaplogin -> imapd
    couriertcpd 110  courierpop3login -> courierpop3d   STLS, POP3_TLS_REQUIRED=1
    couriertcpd 995  couriertls -user=courier -> courierpop3login -> courierpop3d

The login programs run as root, like Debian's, because they switch to the
mailbox owner (`mail`, from the userdb) after a successful login; couriertls on
the implicit-TLS ports runs as `courier`. Courier answers a failed login only
after about 5 s (authlib's anti-guessing delay) — the lockout tests rely on it.

Address: 127.0.0.40 (courier.lab.test); 127.0.0.40-127.0.0.43 are reserved
for this lab. One lab per network namespace at a time (a lock file keyed to
the namespace), so engineers running tests in their own `unshare -n` do not
block each other.

    python3 -m tests.lab.courier     # starts it, prints where, waits for Ctrl-C
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import trustme

from tests.lab.real import LabError, _message, _read_text, _terminate_group, _write, _write_maildir

REPO = Path(__file__).resolve().parents[2]
TREE = Path(os.environ.get("MAILDIAG_COURIER_DIR", REPO / "lab-run" / "courier")) / "root"
MOUNT_POINTS = ("/etc/courier", "/usr/lib/courier", "/usr/lib/courier-authlib")
DOMAIN = "lab.test"
ADDRESS = "127.0.0.40"
HOSTNAME = f"courier.{DOMAIN}"
MAIL_USER = "mail"
COURIER_USER = "courier"
QUOTA_BYTES = 1024 * 1024
START_TIMEOUT = 15.0

# What Debian's /etc/courier/imapd announces, without the CRAM-* mechanisms
# (no cleartext passwords in this userdb, so they could not work anyway).
IMAP_CAPABILITY = (
    "IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE"
)

_NS_SCRIPT = """\
set -e
mount -t tmpfs -o mode=0755 maildiag-courier /run
mkdir -p /run/courier
mount --bind "$LAB/run" /run/courier
mount --bind "$LAB/etc" /etc/courier
mount --bind "$TREE/usr/lib/courier" /usr/lib/courier
mount --bind "$TREE/usr/lib/courier-authlib" /usr/lib/courier-authlib
exec "$@"
"""


@dataclass(frozen=True)
class CourierUser:
    address: str
    password: str

    @property
    def local_part(self) -> str:
        return self.address.partition("@")[0]


class CourierLab:
    """Private Courier IMAP/POP3 on 127.0.0.40; a context manager.

    `users` maps address -> CourierUser: alice, bob and carol, each with a
    1 MiB maildir quota and three messages, so tests can each count the failed
    logins of a user of their own. `ca_pem_path` is the CA to trust.
    """

    IMAP = 143
    IMAPS = 993
    POP3 = 110
    POP3S = 995
    PORTS = (IMAP, IMAPS, POP3, POP3S)

    address = ADDRESS
    hostname = HOSTNAME
    domain = DOMAIN
    quota_bytes = QUOTA_BYTES

    def __init__(self) -> None:
        self.users = {
            u.address: u
            for u in (
                CourierUser(f"{name}@{DOMAIN}", f"{name}-Courier-{secrets.token_hex(4)}")
                for name in ("alice", "bob", "carol")
            )
        }
        self.alice = self.users[f"alice@{DOMAIN}"]
        self.bob = self.users[f"bob@{DOMAIN}"]
        self.carol = self.users[f"carol@{DOMAIN}"]
        self.ca = trustme.CA()
        self.root: Path | None = None
        self.start_seconds: float | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock_fd: int | None = None

    # -- paths ---------------------------------------------------------------

    def _p(self, *parts: str) -> Path:
        if self.root is None:
            raise LabError("the Courier lab is not started")
        return self.root.joinpath(*parts)

    @property
    def ca_pem_path(self) -> Path:
        return self._p("ca.pem")

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_pem_path))

    def password(self, user: str) -> str:
        return self.users[user].password

    # -- lifecycle -----------------------------------------------------------

    def __enter__(self) -> CourierLab:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.root is not None:
            raise LabError("the Courier lab is already started")
        began = time.monotonic()
        self._check_host()
        self._lock()
        try:
            self._check_ports_free()
            self.root = Path(tempfile.mkdtemp(prefix="maildiag-courier-", dir="/tmp"))
            self.root.chmod(0o755)  # the mail user must reach its maildirs
            for sub in ("etc", "run/authdaemon", "log", "mail"):
                self._p(sub).mkdir(parents=True, mode=0o755)
            (self.root / "ns.sh").write_text(_NS_SCRIPT)
            self._make_certificate()
            self._make_users()
            self._start_authdaemon()
            for name, port in (
                ("imap", self.IMAP),
                ("imaps", self.IMAPS),
                ("pop3", self.POP3),
                ("pop3s", self.POP3S),
            ):
                self._start_tcpd(name, port)
            self._wait_for_ports()
        except BaseException as e:
            tail = self.log_tail() if self.root is not None else ""
            self.stop()
            if isinstance(e, Exception) and tail:
                raise LabError(f"Courier lab start failed: {e}\nlog tail:\n{tail}") from e
            raise
        self.start_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop every daemon and remove the lab directory. Safe to call twice."""
        errors: list[str] = []
        for name, proc in reversed(list(self._procs.items())):
            errors += _terminate_group(proc.pid, f"courier {name}", proc)
        self._procs.clear()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if errors:
            raise LabError("; ".join(errors))

    # -- set-up steps --------------------------------------------------------

    def _check_host(self) -> None:
        if os.geteuid() != 0:
            raise LabError("the Courier lab needs root (mount namespaces, user switching)")
        hint = "run `bash tests/lab/install-courier.sh` as root"
        if not (TREE / "usr/sbin/couriertcpd").exists():
            raise LabError(f"Courier is not unpacked in {TREE}; {hint}")
        missing = [m for m in MOUNT_POINTS if not os.path.isdir(m)]
        if missing:
            raise LabError(f"mount points missing: {', '.join(missing)}; {hint}")
        for user in (MAIL_USER, COURIER_USER):
            try:
                pwd.getpwnam(user)
            except KeyError:
                raise LabError(f"no system user {user!r}; {hint}") from None
        if shutil.which("unshare") is None:
            raise LabError("unshare (util-linux) is missing")

    def _lock(self) -> None:
        # Keyed to the network namespace: the addresses are per namespace.
        netns = os.stat("/proc/self/ns/net").st_ino
        path = f"/tmp/maildiag-courier-lab-{netns}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LabError(f"another Courier lab runs in this network namespace ({path})") from None
        self._lock_fd = fd

    def _check_ports_free(self) -> None:
        for port in self.PORTS:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((ADDRESS, port))
                except OSError as e:
                    if e.errno != errno.EADDRINUSE:
                        raise
                    raise LabError(f"{ADDRESS}:{port} is already in use (`ss -ltnp`)") from None

    def _make_certificate(self) -> None:
        self.ca.cert_pem.write_to_path(str(self.ca_pem_path))
        leaf = self.ca.issue_cert(HOSTNAME, f"imap.{DOMAIN}", f"pop.{DOMAIN}", ADDRESS)
        # TLS_CERTFILE: key and certificate chain in one PEM. Read by couriertls,
        # which runs as `courier` on the implicit-TLS ports.
        bundle = leaf.private_key_pem.bytes() + b"".join(b.bytes() for b in leaf.cert_chain_pems)
        path = self._p("etc", "cert.pem")
        _write(path, bundle, 0o640)
        os.chown(path, 0, pwd.getpwnam(COURIER_USER).pw_gid)

    def _make_users(self) -> None:
        mail = pwd.getpwnam(MAIL_USER)
        lines = []
        for user in self.users.values():
            home = self._p("mail", user.local_part)
            messages = [
                (_message(f"seed@{DOMAIN}", user.address, f"Welcome {n}", 2000 + 500 * n, n), "S")
                for n in range(3)
            ]
            _write_maildir(home / "Maildir", messages, mail.pw_uid, mail.pw_gid)
            # Maildir++ quota (what deliverquota would have written): the limit,
            # then "bytes count" lines that add up. imapd reports it as STORAGE.
            size_file = home / "Maildir" / "maildirsize"
            used = sum(len(m) for m, _ in messages)
            _write(size_file, f"{QUOTA_BYTES}S\n{used} {len(messages)}\n".encode(), 0o600)
            os.chown(size_file, mail.pw_uid, mail.pw_gid)
            # authlib's {SHA256} scheme: base64 of the raw digest.
            digest = base64.b64encode(hashlib.sha256(user.password.encode()).digest()).decode()
            fields = {
                "uid": str(mail.pw_uid),
                "gid": str(mail.pw_gid),
                "home": str(home),
                "mail": str(home / "Maildir"),
                "quota": f"{QUOTA_BYTES}S",  # maildir++ quota, reported by GETQUOTAROOT
                "systempw": f"{{SHA256}}{digest}",
            }
            lines.append(f"{user.address}\t" + "|".join(f"{k}={v}" for k, v in fields.items()))
        # makeuserdb refuses a userdb others can read.
        _write(self._p("etc", "userdb"), ("\n".join(lines) + "\n").encode(), 0o600)
        _write(
            self._p("etc", "authdaemonrc"),
            b'authmodulelist="authuserdb"\nauthmodulelistorig="authuserdb"\ndaemons=1\n'
            b'authdaemonvar=/run/courier/authdaemon\nDEBUG_LOGIN=1\nDEFAULTOPTIONS=""\n'
            b'LOGGEROPTS=""\n',
            0o644,
        )
        done = subprocess.run(
            self._ns_command(str(TREE / "usr/sbin/makeuserdb")),
            env=self._env(),
            capture_output=True,
            timeout=30,
        )
        if done.returncode != 0 or not self._p("etc", "userdb.dat").exists():
            raise LabError(f"makeuserdb failed: {done.stderr.decode(errors='replace')}")

    def _ns_command(self, *argv: str) -> list[str]:
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            str(self._p("ns.sh")),
            *argv,
        ]

    def _env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": f"{TREE}/usr/sbin:{TREE}/usr/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LAB": str(self._p()),
            "TREE": str(TREE),
            # Libraries unpacked with Courier (libcourier-unicode, libidn, ...).
            "LD_LIBRARY_PATH": ":".join(
                f"{TREE}{d}"
                for d in ("/usr/lib", "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu")
            ),
            "LANG": "C",
        }
        env.update(extra)
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = open(self._p("log", f"{name}.log"), "ab")  # noqa: SIM115 - owned by the child
        try:
            self._procs[name] = subprocess.Popen(
                self._ns_command(*argv),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # its own group: stop() kills the login children too
            )
        finally:
            log.close()

    def _start_authdaemon(self) -> None:
        self._spawn(
            "authdaemon",
            [str(TREE / "usr/lib/courier/courier-authlib/authdaemond")],
            # Debian's wrapper exports authdaemonrc (`set -a; .`); DEBUG_LOGIN is
            # read from the environment. 1 logs who failed, never passwords (2 would).
            self._env(DEBUG_LOGIN="1"),
        )
        socket_path = self._p("run", "authdaemon", "socket")
        deadline = time.monotonic() + START_TIMEOUT
        while not socket_path.exists():
            proc = self._procs["authdaemon"]
            if proc.poll() is not None:
                raise LabError(f"authdaemond exited with status {proc.returncode}")
            if time.monotonic() > deadline:
                raise LabError("authdaemond did not create its socket in time")
            time.sleep(0.02)

    def _start_tcpd(self, name: str, port: int) -> None:
        imap = name.startswith("imap")
        implicit_tls = name.endswith("s")
        tls = {
            "COURIERTLS": str(TREE / "usr/bin/couriertls"),
            "TLS_CERTFILE": "/etc/courier/cert.pem",
            "TLS_VERIFYPEER": "NONE",
            "MAILDIRPATH": "Maildir",
        }
        if imap:
            login = ["/usr/lib/courier/courier/imaplogin", str(TREE / "usr/bin/imapd"), "Maildir"]
            env = self._env(
                **tls,
                IMAP_CAPABILITY=IMAP_CAPABILITY,
                IMAP_CAPABILITY_TLS=f"{IMAP_CAPABILITY} AUTH=PLAIN",
                IMAP_STARTTLS="YES",
                IMAP_TLS_REQUIRED="1",
                IMAP_ENHANCEDIDLE="0",
                IMAP_EMPTYTRASH="",
            )
            if implicit_tls:
                # As Debian's imapd-ssl: IMAP_TLS=1 says couriertls already
                # encrypts; STARTTLS and the TLS requirement are for port 143.
                env.update(IMAP_TLS="1", IMAP_STARTTLS="NO", IMAP_TLS_REQUIRED="0")
        else:
            login = [
                "/usr/lib/courier/courier/courierpop3login",
                "/usr/lib/courier/courier/courierpop3d",
                "Maildir",
            ]
            env = self._env(
                **tls,
                POP3AUTH="",
                POP3AUTH_TLS="LOGIN PLAIN",
                POP3_STARTTLS="YES",
                POP3_TLS_REQUIRED="1",
            )
            if implicit_tls:
                env.update(POP3_TLS="1", POP3_STARTTLS="NO", POP3_TLS_REQUIRED="0")
        if implicit_tls:
            login = [tls["COURIERTLS"], "-server", "-tcpd", f"-user={COURIER_USER}", *login]
        argv = [
            str(TREE / "usr/sbin/couriertcpd"),
            f"-address={ADDRESS}",
            "-maxprocs=20",
            "-maxperip=20",
            "-nodnslookup",
            "-noidentlookup",
            str(port),
            *login,
        ]
        self._spawn(name, argv, env)

    def _wait_for_ports(self) -> None:
        pending = set(self.PORTS)
        deadline = time.monotonic() + START_TIMEOUT
        while pending:
            for port in sorted(pending):
                with contextlib.suppress(OSError), socket.create_connection((ADDRESS, port), 0.5):
                    pending.discard(port)
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise LabError(f"courier {name} exited with status {proc.returncode}")
            if pending and time.monotonic() > deadline:
                raise LabError(f"Courier did not listen on {sorted(pending)} in time")
            if pending:
                time.sleep(0.02)

    # -- logs and test helpers -----------------------------------------------

    def _log_lines(self) -> list[str]:
        if self.root is None:
            return []
        lines: list[str] = []
        for path in sorted(self._p("log").glob("*.log")):
            if path.name != "authdaemon.log":
                lines += _read_text(path).splitlines()
        return lines

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for path in sorted(self._p("log").glob("*.log")):
            text = _read_text(path).splitlines()
            if text:
                out.append(f"== {path.name} ==")
                out.extend(text[-lines:])
        return "\n".join(out)

    def failed_logins(self, user: str) -> int:
        """Logins of `user` that Courier judged failed, on any port and by any mechanism.

        imaplogin/courierpop3login name the user in their "LOGIN FAILED" line
        only for the IMAP LOGIN and POP3 USER/PASS commands; after AUTHENTICATE /
        AUTH (what maildiag sends) the line reads "LOGIN FAILED, method=PLAIN,
        ip=...". So the user is taken from authdaemon's DEBUG_LOGIN=1 trace: one
        request ("received auth request") that looked `user` up and ended in
        "FAIL, all modules rejected". authdaemon runs one process (daemons=1),
        so requests never interleave in its log. The trace is written as soon
        as the password is judged, before Courier's ~5 s pause ends, even when
        the client has gone away meanwhile.
        """
        count = 0
        current: str | None = None
        for line in _read_text(self._p("log", "authdaemon.log")).splitlines():
            if "received auth request" in line:
                current = None
            elif match := re.search(r"userdb: looking up '([^']*)'", line):
                current = match.group(1)
            elif "FAIL, all modules rejected" in line and current == user:
                count += 1
        return count

    def login_failed_lines(self) -> int:
        """All "LOGIN FAILED" lines of the IMAP and POP3 login programs, any user."""
        return sum(1 for line in self._log_lines() if "LOGIN FAILED" in line)

    def logins(self, user: str) -> int:
        """Successful logins of `user` ('LOGIN, user=...' lines of the login programs)."""
        pattern = re.compile(r"\bLOGIN, user=" + re.escape(user) + r", ")
        return sum(1 for line in self._log_lines() if pattern.search(line))

    def wait_for_failed_logins(self, user: str, count: int, timeout: float = 8.0) -> int:
        """Wait until failed_logins(user) >= count; return the final count."""
        deadline = time.monotonic() + timeout
        while (seen := self.failed_logins(user)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return seen


@contextlib.contextmanager
def running_courier() -> Iterator[CourierLab]:
    lab = CourierLab()
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with running_courier() as lab:
        print(f"Courier lab up in {lab.start_seconds:.2f}s at {lab.root}")
        print(f"  {ADDRESS} {HOSTNAME}, ports {', '.join(map(str, lab.PORTS))}")
        print(f"  CA: {lab.ca_pem_path}")
        for user in lab.users.values():
            print(f"  {user.address:<16} {user.password}")
        print("Ctrl-C to stop")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
