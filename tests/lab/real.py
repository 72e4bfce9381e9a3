"""A real mail server lab on loopback: private Dovecot and Postfix instances.

`MailLab` renders the templates in fixtures/lab/ into a private temporary
directory, makes certificates with trustme/cryptography, starts Dovecot
(IMAP, POP3, LMTP, SASL auth, quota-status) and Postfix (submission on 587
and 465, the MX on 25, which refuses a full mailbox at RCPT through Dovecot's
quota-status policy service) on
127.0.0.20-127.0.0.27, seeds mailboxes, and stops everything again. Nothing in
/etc is read for configuration or changed, and no system service is started.

    with MailLab() as lab:
        imaplib.IMAP4_SSL(lab.address, lab.IMAPS, ssl_context=lab.client_context())

Usable from the command line for poking at it by hand:

    python3 -m tests.lab.real        # starts the lab, prints where, waits for Ctrl-C
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import functools
import ipaddress
import math
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dh, ec
from cryptography.x509.oid import NameOID

from .slots import (
    LabError,
    SlotLock,
    check_ports_free,
    first_free_slot,
    kill_leftovers,
    slot_lock_path,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "lab"

DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"
POSTFIX = "/usr/sbin/postfix"

DOMAIN = "lab.test"
# Two slots so two test sessions on one machine (several engineers share it)
# can each run a lab; both stay inside 127.0.0.20-127.0.0.29.
SLOT_FIRST_OCTET = (20, 24)
MAIL_USER = "mail"
QUOTA_BYTES = 1024 * 1024
START_TIMEOUT = 20.0


class CertKind(enum.StrEnum):
    GOOD = "good"  # leaf + intermediate from the lab CA, valid for the name and address
    EXPIRED = "expired"  # same CA and names' shape, but notAfter 35 days ago
    SELF_SIGNED = "self-signed"  # signed by its own key, not by the lab CA
    WRONG_HOST = "wrong-host"  # from the lab CA, but issued for web123.provider.test


@dataclass(frozen=True)
class LabHost:
    """One loopback address of the lab, with its name and the certificate it presents."""

    name: str
    address: str
    cert: CertKind
    cert_names: tuple[str, ...]  # the DNS names / IPs in the certificate's SAN
    aliases: tuple[str, ...] = ()  # further names for the same address


@dataclass(frozen=True)
class LabUser:
    address: str
    password: str
    # Share of the storage quota filled with messages at start (0.0 .. 1.0).
    fill: float = 0.0
    disabled: bool = False
    disabled_reason: str = ""
    # A MESSAGE quota (RFC 9208) besides the storage one: Dovecot's
    # quota_rule "messages=" limit, reported as the MESSAGE resource.
    message_limit: int | None = None
    # The login that owns this address in Postfix's smtpd_sender_login_maps;
    # None: the user's own login. Another login here makes the user's own
    # logins unable to send as the address (reject_..._sender_login_mismatch).
    sender_owner: str | None = None
    # Folders besides INBOX (Maildir++ ".Name"), each with the share of the
    # storage quota its seeded messages fill.
    folders: tuple[tuple[str, float], ...] = (
        ("Sent", 0.0),
        ("Drafts", 0.0),
        ("Trash", 0.0),
        ("Junk", 0.0),
    )
    # False: Dovecot's namespace without the special-use marks (see dovecot.conf.in).
    special_use: bool = True

    @property
    def local_part(self) -> str:
        return self.address.partition("@")[0]


WRONG_HOST_NAME = "web123.provider.test"
DISABLED_REASON = "Account disabled by the lab administrator."


def _users() -> dict[str, LabUser]:
    users = [
        LabUser(f"alice@{DOMAIN}", "alice-Secret-1"),
        # 973 KiB of 1024 KiB: IMAP QUOTA reports KiB, so this reads as 95.0 %.
        LabUser(f"bob@{DOMAIN}", "bob-Secret-2", fill=973 / 1024),
        LabUser(f"carol@{DOMAIN}", "carol-Secret-3", fill=1.0),
        LabUser(f"dave@{DOMAIN}", "dave-Secret-4", disabled=True, disabled_reason=DISABLED_REASON),
        # Three seeded messages, a limit of three: the MESSAGE quota is full,
        # the storage quota nearly empty.
        LabUser(f"erin@{DOMAIN}", "erin-Secret-5", message_limit=3),
        # Logs in fine, but Postfix's sender login map says the address
        # belongs to another login (a shared address handed to a colleague):
        # sending as it is refused with 553 5.7.1 "not owned by user".
        LabUser(f"henry@{DOMAIN}", "henry-Secret-6", sender_owner=f"office@{DOMAIN}"),
        # The folders a client created itself, on a server that marks none
        # of them for special use.
        LabUser(
            f"ivy@{DOMAIN}",
            "ivy-Secret-7",
            folders=(("Sent", 0.0), ("Gesendete Elemente", 0.0), ("Trash", 0.0)),
            special_use=False,
        ),
        # 95 % of the quota, most of it deleted mail still in Trash.
        LabUser(
            f"jack@{DOMAIN}",
            "jack-Secret-8",
            fill=0.15,
            folders=(("Sent", 0.1), ("Drafts", 0.0), ("Trash", 0.6), ("Junk", 0.1)),
        ),
    ]
    return {u.address: u for u in users}


class MailLab:
    """Private Dovecot + Postfix on loopback; a context manager.

    Ports are the standard ones (IMAP/IMAPS/POP3/POP3S/SUBMISSION/SUBMISSIONS,
    and SMTP on 25 as the lab domain's MX) on every lab address. Hosts: `good`
    (mail.lab.test, alias imap/pop/smtp),
    `expired`, `self_signed`, `wrong_host`, all in `hosts`; `dns` maps every
    name to its address so tests can answer DNS queries for them; `address`
    and `hostname` are the good host's. Users: `alice` (a few messages),
    `bob` (95 % of quota), `carol` (100 %), `dave` (disabled), `erin` (message
    count quota full, storage nearly empty), `henry` (may not send as his own
    address: Postfix's sender login map gives it to another login), `ivy`
    (folders without special-use marks), `jack` (95 % of quota, 60 % in
    Trash), all in `users`
    by address, with passwords. `ca_pem_path` is the CA to trust (maildiag's
    --ca-file); `client_context()` is an SSLContext trusting it.

    Do not deliver to bob, carol or jack: their quota fill is session-wide state.
    """

    IMAP = 143
    IMAPS = 993
    POP3 = 110
    POP3S = 995
    SUBMISSION = 587
    SUBMISSIONS = 465
    SMTP = 25  # the MX: mail for the lab domain, no login (quota-status at RCPT)
    DOVECOT_PORTS = (IMAP, IMAPS, POP3, POP3S)
    POSTFIX_PORTS = (SUBMISSION, SUBMISSIONS, SMTP)

    domain = DOMAIN
    quota_bytes = QUOTA_BYTES
    wrong_host_name = WRONG_HOST_NAME

    def __init__(self, slot: int = 0) -> None:
        if slot not in range(len(SLOT_FIRST_OCTET)):
            raise ValueError(f"slot must be 0..{len(SLOT_FIRST_OCTET) - 1}")
        self.slot = slot
        first = SLOT_FIRST_OCTET[slot]
        self.good = LabHost(
            f"mail.{DOMAIN}",
            f"127.0.0.{first}",
            CertKind.GOOD,
            cert_names=(
                f"mail.{DOMAIN}",
                f"imap.{DOMAIN}",
                f"pop.{DOMAIN}",
                f"smtp.{DOMAIN}",
                f"127.0.0.{first}",
            ),
            aliases=(f"imap.{DOMAIN}", f"pop.{DOMAIN}", f"smtp.{DOMAIN}"),
        )
        self.expired = LabHost(
            f"expired.{DOMAIN}",
            f"127.0.0.{first + 1}",
            CertKind.EXPIRED,
            cert_names=(f"expired.{DOMAIN}", f"127.0.0.{first + 1}"),
        )
        self.self_signed = LabHost(
            f"selfsigned.{DOMAIN}",
            f"127.0.0.{first + 2}",
            CertKind.SELF_SIGNED,
            cert_names=(f"selfsigned.{DOMAIN}", f"127.0.0.{first + 2}"),
        )
        self.wrong_host = LabHost(
            f"wronghost.{DOMAIN}",
            f"127.0.0.{first + 3}",
            CertKind.WRONG_HOST,
            cert_names=(WRONG_HOST_NAME,),
        )
        self.hosts: tuple[LabHost, ...] = (
            self.good,
            self.expired,
            self.self_signed,
            self.wrong_host,
        )
        self.dns: dict[str, str] = {}
        for host in self.hosts:
            for name in (host.name, *host.aliases):
                self.dns[name] = host.address
        self.users = _users()
        self.alice = self.users[f"alice@{DOMAIN}"]
        self.bob = self.users[f"bob@{DOMAIN}"]
        self.carol = self.users[f"carol@{DOMAIN}"]
        self.dave = self.users[f"dave@{DOMAIN}"]
        self.erin = self.users[f"erin@{DOMAIN}"]
        self.henry = self.users[f"henry@{DOMAIN}"]
        self.ivy = self.users[f"ivy@{DOMAIN}"]
        self.jack = self.users[f"jack@{DOMAIN}"]

        self.ca = trustme.CA()
        self.intermediate = self.ca.create_child_ca()

        self.root: Path | None = None
        self.start_seconds: float | None = None
        self._slot_lock = SlotLock(slot_lock_path("lab", self.slot), f"lab slot {self.slot}")
        self._dovecot: subprocess.Popen[bytes] | None = None
        self._postfix_pid: int | None = None
        try:
            pw = pwd.getpwnam(MAIL_USER)
        except KeyError:
            raise LabError(f"no system user {MAIL_USER!r} to own the lab's mail") from None
        self._mail_uid, self._mail_gid = pw.pw_uid, pw.pw_gid

    # -- convenience ---------------------------------------------------------

    @property
    def address(self) -> str:
        return self.good.address

    @property
    def hostname(self) -> str:
        return self.good.name

    def password(self, user: str) -> str:
        return self.users[user].password

    def client_context(self) -> ssl.SSLContext:
        """A client SSLContext that trusts only the lab CA (host names checked)."""
        return ssl.create_default_context(cafile=str(self.ca_pem_path))

    def _p(self, *parts: str) -> Path:
        if self.root is None:
            raise LabError("the lab is not started")
        return self.root.joinpath(*parts)

    def _cert_file(self, host: LabHost, kind: str) -> Path:
        # Not Path.with_suffix: it would take ".20" of "127.0.0.20" for a suffix.
        return self._p("certs", f"{host.address}.{kind}")

    @property
    def ca_pem_path(self) -> Path:
        return self._p("certs", "ca.pem")

    @property
    def dovecot_config_path(self) -> Path:
        return self._p("dovecot", "dovecot.conf")

    @property
    def dovecot_log_path(self) -> Path:
        return self._p("log", "dovecot.log")

    @property
    def postfix_config_dir(self) -> Path:
        return self._p("postfix", "etc")

    @property
    def postfix_log_path(self) -> Path:
        return self._p("log", "postfix.log")

    @property
    def lmtp_socket_path(self) -> Path:
        return self._p("run", "lmtp")

    @property
    def quota_status_socket_path(self) -> Path:
        return self._p("run", "quota-status")

    # -- lifecycle -----------------------------------------------------------

    def __enter__(self) -> MailLab:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.root is not None:
            raise LabError("the lab is already started")
        began = time.monotonic()
        missing = [p for p in (DOVECOT, DOVEADM, POSTFIX) if not os.access(p, os.X_OK)]
        if missing:
            raise LabError(
                f"not installed: {', '.join(missing)}; run `bash tests/lab/install-servers.sh`"
            )
        if os.geteuid() != 0:
            raise LabError("the lab needs root (Dovecot and Postfix switch users)")
        leftovers = self._slot_lock.acquire()
        if leftovers:
            kill_leftovers(leftovers, _is_lab_server, "/tmp/maildiag-lab")
        try:
            self._check_ports_free()
            self.root = Path(tempfile.mkdtemp(prefix=f"maildiag-lab{self.slot}-", dir="/tmp"))
            # Login processes (dovenull), smtpd (postfix) and mail access (mail)
            # all need to traverse the lab directory.
            self.root.chmod(0o755)
            self._write_state()
            self._make_certificates()
            self._make_users_and_mail()
            self._write_dovecot_config()
            self._write_postfix_config()
            self._start_dovecot()
            self._write_state()
            self._seed_quota()
            self._start_postfix()
            self._write_state()
            self._wait_for_ports(self.POSTFIX_PORTS, "Postfix")
            self._check_logs_clean()
        except Exception as e:
            failure_logs = self.log_tail() if self.root is not None else ""
            self.stop()
            if failure_logs:
                raise LabError(f"lab start failed: {e}\nlog tail:\n{failure_logs}") from e
            raise
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop both servers, remove the lab directory. Safe to call twice."""
        errors: list[str] = []
        if self._postfix_pid is None and self.root is not None:
            # start failed after `postfix start` launched the master but before
            # we read its pid.
            self._postfix_pid = self._read_postfix_pid()
        if self._postfix_pid is not None:
            errors += _terminate_group(self._postfix_pid, "postfix master")
            self._postfix_pid = None
        if self._dovecot is not None:
            errors += _terminate_group(self._dovecot.pid, "dovecot", self._dovecot)
            self._dovecot = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
        self._slot_lock.release()
        if errors:
            raise LabError("; ".join(errors))

    # -- slot state and free ports -----------------------------------------------

    def _write_state(self) -> None:
        pgids = [self._dovecot.pid] if self._dovecot else []
        if self._postfix_pid:
            pgids.append(self._postfix_pid)
        state = {
            "owner": os.getpid(),
            "root": str(self.root) if self.root else None,
            "pgids": pgids,
        }
        self._slot_lock.write(state)

    def _check_ports_free(self) -> None:
        check_ports_free(
            (
                (host.address, port)
                for host in self.hosts
                for port in (*self.DOVECOT_PORTS, *self.POSTFIX_PORTS)
            ),
            "; is a system Dovecot/Postfix listening on 0.0.0.0? (`ss -ltnp`)",
        )

    # -- certificates --------------------------------------------------------

    def _make_certificates(self) -> None:
        certs = self._p("certs")
        certs.mkdir(mode=0o755)
        self.ca.cert_pem.write_to_path(str(certs / "ca.pem"))
        now = datetime.datetime.now(datetime.UTC)
        for host in self.hosts:
            if host.cert is CertKind.SELF_SIGNED:
                key_pem, chain_pem = _self_signed(host.cert_names)
            else:
                not_before = not_after = None
                if host.cert is CertKind.EXPIRED:
                    not_before = now - datetime.timedelta(days=400)
                    not_after = now - datetime.timedelta(days=35)
                leaf = self.intermediate.issue_cert(
                    *host.cert_names, not_before=not_before, not_after=not_after
                )
                key_pem = leaf.private_key_pem.bytes()
                chain_pem = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
            _write(self._cert_file(host, "key"), key_pem, 0o600)
            _write(self._cert_file(host, "chain.pem"), chain_pem, 0o644)
            # Postfix's smtpd_tls_chain_files wants key then certificates, one file.
            _write(self._cert_file(host, "bundle.pem"), key_pem + chain_pem, 0o600)
        _write(certs / "dh.pem", _ffdhe2048_pem(), 0o644)

    # -- users and mailboxes -------------------------------------------------

    def _make_users_and_mail(self) -> None:
        mail_root = self._p("mail")
        mail_root.mkdir(mode=0o750)
        os.chown(mail_root, 0, self._mail_gid)
        lines = []
        for user in self.users.values():
            home = mail_root / user.local_part
            rule = f"*:storage={QUOTA_BYTES // 1024}k"
            if user.message_limit is not None:
                rule += f":messages={user.message_limit}"
            extra = [f"userdb_quota_rule={rule}"]
            if user.disabled:
                # See import_environment in dovecot.conf.in for why %{env:}.
                extra += ["nologin", "reason=%{env:MAILDIAG_LAB_DISABLED_REASON}"]
            if not user.special_use:
                extra += [
                    "userdb_namespace/inbox/disabled=yes",
                    "userdb_namespace/plain/disabled=no",
                ]
            lines.append(
                f"{user.address}:{{PLAIN}}{user.password}:{self._mail_uid}:{self._mail_gid}"
                f"::{home}::{' '.join(extra)}"
            )
            _write_maildir(home / "Maildir", _seed_messages(user), self._mail_uid, self._mail_gid)
            for index, (folder, share) in enumerate(user.folders):
                messages = _folder_messages(user, folder, share, index)
                # Maildir++ (Dovecot's default layout): a folder is ".Name" in the Maildir.
                _write_maildir(
                    home / "Maildir" / f".{folder}", messages, self._mail_uid, self._mail_gid
                )
        users_file = self._p("dovecot", "users")
        users_file.parent.mkdir(mode=0o755)
        _write(users_file, ("\n".join(lines) + "\n").encode(), 0o640)
        os.chown(users_file, 0, pwd.getpwnam("dovecot").pw_gid)

    def _seed_quota(self) -> None:
        # The seeded messages were written as maildir files behind Dovecot's
        # back; recalc makes the count backend index them and learn their sizes.
        for user in self.users.values():
            self._doveadm("quota", "recalc", "-u", user.address)

    # -- Dovecot -------------------------------------------------------------

    def _write_dovecot_config(self) -> None:
        certs = self._p("certs")
        local_blocks = []
        for host in self.hosts:
            if host is self.good:
                continue
            local_blocks.append(
                f"local {host.address} {{\n"
                f"  ssl_cert = <{self._cert_file(host, 'chain.pem')}\n"
                f"  ssl_key = <{self._cert_file(host, 'key')}\n"
                "}"
            )
        self._p("run").mkdir(mode=0o755)
        self._p("dovecot", "state").mkdir(mode=0o755)
        self._p("log").mkdir(mode=0o755)
        text = _render(
            "dovecot.conf.in",
            RUN_DIR=str(self._p("run")),
            STATE_DIR=str(self._p("dovecot", "state")),
            INSTANCE=f"maildiag-lab{self.slot}",
            LOG_PATH=str(self.dovecot_log_path),
            LISTEN=", ".join(h.address for h in self.hosts),
            DEFAULT_CERT=str(self._cert_file(self.good, "chain.pem")),
            DEFAULT_KEY=str(self._cert_file(self.good, "key")),
            DH_PATH=str(certs / "dh.pem"),
            LOCAL_BLOCKS="\n".join(local_blocks),
            USERS_FILE=str(self._p("dovecot", "users")),
            MAIL_UID=str(self._mail_uid),
            MAIL_GID=str(self._mail_gid),
            DOMAIN=DOMAIN,
            QUOTA=f"{QUOTA_BYTES // 1024}k",
        )
        _write(self.dovecot_config_path, text.encode(), 0o644)

    def _start_dovecot(self) -> None:
        stderr = open(self._p("log", "dovecot.stderr"), "wb")  # noqa: SIM115
        with stderr:
            # -F keeps the master in the foreground: we own its pid and process
            # group, and config errors land in dovecot.stderr, not nowhere.
            env = dict(os.environ, MAILDIAG_LAB_DISABLED_REASON=DISABLED_REASON)
            self._dovecot = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.dovecot_config_path)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
                env=env,
            )
        self._wait_for_ports(
            self.DOVECOT_PORTS,
            "Dovecot",
            sockets=(
                self.lmtp_socket_path,
                self._p("run", "auth-postfix"),
                self.quota_status_socket_path,
            ),
        )

    def _doveadm(self, *args: str, input: bytes | None = None) -> str:
        cmd = [DOVEADM, "-c", str(self.dovecot_config_path), *args]
        done = subprocess.run(cmd, input=input, capture_output=True, timeout=30)
        if done.returncode != 0:
            raise LabError(
                f"{' '.join(cmd)} exited {done.returncode}: "
                f"{done.stderr.decode(errors='replace').strip()}"
            )
        return done.stdout.decode(errors="replace")

    # -- Postfix -------------------------------------------------------------

    def _write_postfix_config(self) -> None:
        etc = self.postfix_config_dir
        etc.mkdir(parents=True, mode=0o755)
        services = []
        for host in self.hosts:
            bundle = self._cert_file(host, "bundle.pem")
            for port, extra in (
                (self.SUBMISSION, []),
                (self.SUBMISSIONS, ["smtpd_tls_wrappermode=yes"]),
            ):
                name = "submission" if port == self.SUBMISSION else "submissions"
                opts = [f"syslog_name=postfix/{name}", f"smtpd_tls_chain_files={bundle}", *extra]
                services.append(
                    f"{host.address}:{port} inet n - n - - smtpd\n"
                    + "".join(f"  -o {o}\n" for o in opts)
                )
            mx_opts = [
                "syslog_name=postfix/mx",
                f"smtpd_tls_chain_files={bundle}",
                "smtpd_tls_security_level=may",
                "smtpd_sasl_auth_enable=no",
                "smtpd_sender_restrictions=",  # the sender login check needs SASL
                "smtpd_relay_restrictions=$mx_relay_restrictions",
                "smtpd_recipient_restrictions=$mx_recipient_restrictions",
            ]
            services.append(
                f"{host.address}:{self.SMTP} inet n - n - - smtpd\n"
                + "".join(f"  -o {o}\n" for o in mx_opts)
            )
        vmailbox = etc / "vmailbox"
        _write(vmailbox, "".join(f"{u} OK\n" for u in self.users).encode(), 0o644)
        senders = etc / "sender_logins"
        owners = "".join(
            f"{u.address} {u.sender_owner or u.address}\n" for u in self.users.values()
        )
        _write(senders, owners.encode(), 0o644)
        _write(
            etc / "main.cf",
            _render(
                "main.cf.in",
                QUEUE_DIR=str(self._p("postfix", "queue")),
                DATA_DIR=str(self._p("postfix", "data")),
                MAILLOG=str(self.postfix_log_path),
                ROOT=str(self.root),
                HOSTNAME=self.good.name,
                DOMAIN=DOMAIN,
                VMAILBOX=str(vmailbox),
                SENDER_LOGINS=str(senders),
                LMTP_SOCKET=str(self.lmtp_socket_path),
                DEFAULT_BUNDLE=str(self._cert_file(self.good, "bundle.pem")),
                SASL_SOCKET=str(self._p("run", "auth-postfix")),
                QUOTA_STATUS_SOCKET=str(self.quota_status_socket_path),
            ).encode(),
            0o644,
        )
        _write(
            etc / "master.cf",
            _render(
                "master.cf.in",
                SUBMISSION_SERVICES="".join(services).rstrip("\n"),
            ).encode(),
            0o644,
        )

    def _postfix(self, *args: str) -> str:
        cmd = [POSTFIX, "-c", str(self.postfix_config_dir), *args]
        done = subprocess.run(cmd, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise LabError(
                f"{' '.join(cmd)} exited {done.returncode}: "
                f"{(done.stdout + done.stderr).decode(errors='replace').strip()}"
            )
        return (done.stdout + done.stderr).decode(errors="replace")

    def _start_postfix(self) -> None:
        # What `postfix -c DIR` needs, found by trial on Postfix 3.7 (Debian 12):
        # - As root, no alternate_config_directories entry in /etc/postfix/main.cf
        #   is needed (and /etc/postfix/main.cf need not exist): Postfix only
        #   checks that list for non-root callers of its set-gid commands.
        # - queue_directory must exist (root-owned); `postfix start` then makes
        #   its subdirectories with the right owners (post-install
        #   create-missing). data_directory must exist, owned by mail_owner.
        # - `postfix start` runs the full integrity check (about 1.5 s of the
        #   lab's start); it is the documented entry point, so we pay it.
        queue = self._p("postfix", "queue")
        queue.mkdir(mode=0o755)
        data = self._p("postfix", "data")
        data.mkdir(mode=0o700)
        pf = pwd.getpwnam("postfix")
        os.chown(data, pf.pw_uid, pf.pw_gid)
        self._postfix("start")
        self._postfix_pid = self._read_postfix_pid()
        if self._postfix_pid is None:
            raise LabError("postfix start succeeded but wrote no master.pid")
        # Logging goes through the postlogd service, so the log lags; master
        # logs its config warnings before this line.
        deadline = time.monotonic() + START_TIMEOUT
        while "daemon started" not in _read_text(self.postfix_log_path):
            if time.monotonic() > deadline:
                raise LabError("Postfix master never logged 'daemon started'")
            time.sleep(0.02)

    def _read_postfix_pid(self) -> int | None:
        try:
            return int(self._p("postfix", "queue", "pid", "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    # -- waiting -------------------------------------------------------------

    def _wait_for_ports(
        self, ports: tuple[int, ...], what: str, sockets: tuple[Path, ...] = ()
    ) -> None:
        pending = {(h.address, p) for h in self.hosts for p in ports}
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            for target in sorted(pending):
                with contextlib.suppress(OSError), socket.create_connection(target, 0.5):
                    pending.discard(target)
            waiting_sockets = [s for s in sockets if not s.exists()]
            if not pending and not waiting_sockets:
                return
            if self._dovecot is not None and self._dovecot.poll() is not None:
                raise LabError(f"dovecot exited with status {self._dovecot.returncode}")
            if time.monotonic() > deadline:
                left = [f"{a}:{p}" for a, p in sorted(pending)] + [str(s) for s in waiting_sockets]
                raise LabError(
                    f"{what} did not come up within {START_TIMEOUT:.0f}s: "
                    f"still waiting for {', '.join(left)}"
                )
            time.sleep(0.05)

    def _check_logs_clean(self) -> None:
        # Both servers start despite many config mistakes (Postfix, for one,
        # only warns about a duplicate master.cf service and uses the last
        # entry), so a warning at start means the templates need fixing.
        problem = re.compile(r"\b(?:warning|error|fatal|panic): |: (?:Warning|Error|Fatal|Panic): ")
        for path in (
            self._p("log", "dovecot.stderr"),
            self.dovecot_log_path,
            self.postfix_log_path,
        ):
            bad = [line for line in _read_text(path).splitlines() if problem.search(line)]
            if bad:
                raise LabError(f"{path.name} has problems at start: {bad[0]}")

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for path in (
            self._p("log", "dovecot.stderr"),
            self.dovecot_log_path,
            self.postfix_log_path,
        ):
            text = _read_text(path).splitlines()
            if text:
                out.append(f"== {path.name} ==")
                out.extend(text[-lines:])
        return "\n".join(out)

    # -- test helpers --------------------------------------------------------

    def failed_logins(self, user: str) -> int:
        """Failed authentications for `user` so far (IMAP, POP3 and SMTP AUTH alike).

        Counted from the auth process's auth_verbose lines in the Dovecot log:
        wrong password or unknown user. A disabled account (dave) with the right
        password is not an authentication failure and is not counted. Lines reach
        the log through Dovecot's log process, a few ms after the reply; use
        wait_for_failed_logins() right after an attempt.
        """
        pattern = re.compile(
            r" auth: Info: [\w-]+\(" + re.escape(user) + r",[^)]*\): "
            r"(?:Password mismatch|unknown user)"
        )
        text = _read_text(self.dovecot_log_path)
        return sum(1 for line in text.splitlines() if pattern.search(line))

    def wait_for_failed_logins(self, user: str, count: int, timeout: float = 5.0) -> int:
        """Wait until failed_logins(user) >= count; return the final count."""
        deadline = time.monotonic() + timeout
        while (seen := self.failed_logins(user)) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return seen

    def inbox_state(self, user: str) -> list[tuple[int, tuple[str, ...]]]:
        """(uid, flags) of every INBOX message, from Dovecot's own view.

        \\Recent is left out: it is per-session state, not a stored flag, and
        doveadm itself may be the session that sees it.
        """
        out = self._doveadm(
            "-f", "tab", "fetch", "-u", user, "uid flags", "mailbox", "INBOX", "all"
        )
        state = []
        for line in out.splitlines()[1:]:
            uid, _, flags = line.partition("\t")
            kept = tuple(sorted(f for f in flags.split() if f != "\\Recent"))
            state.append((int(uid), kept))
        return state

    def quota_usage(self, user: str) -> tuple[int, int]:
        """(used bytes, limit bytes) of the user's storage quota, per Dovecot."""
        out = self._doveadm("-f", "tab", "quota", "get", "-u", user)
        for line in out.splitlines()[1:]:
            fields = line.split("\t")
            if fields[1] == "STORAGE":
                return int(fields[2]) * 1024, int(fields[3]) * 1024
        raise LabError(f"no STORAGE quota for {user}: {out!r}")

    def deliver(self, user: str, message: bytes, sender: str = f"lab@{DOMAIN}") -> None:
        """Deliver `message` to `user`'s INBOX over Dovecot's LMTP (quota applies).

        Raises LabError with Dovecot's reply if it refuses (e.g. mailbox full).
        """
        try:
            with smtplib.LMTP(str(self.lmtp_socket_path)) as lmtp:
                lmtp.sendmail(sender, [user], message)
        except smtplib.SMTPResponseException as e:
            raise LabError(f"LMTP refused {user}: {e.smtp_code} {e.smtp_error!r}") from None
        except smtplib.SMTPRecipientsRefused as e:
            raise LabError(f"LMTP refused {user}: {e.recipients}") from None

    def queued_from(self, sender: str) -> int:
        """Messages Postfix has accepted into its queue from `sender` so far.

        qmgr logs "from=<sender>" once per message committed to the queue; an
        envelope ended by RSET never gets there. The log lags the SMTP reply
        by a few ms (postlogd).
        """
        pattern = re.compile(r"postfix/qmgr\[\d+\]: \w+: from=<" + re.escape(sender) + ">")
        return sum(
            1 for line in _read_text(self.postfix_log_path).splitlines() if pattern.search(line)
        )

    def find_messages(self, user: str, subject: str) -> list[int]:
        """UIDs of INBOX messages whose Subject contains `subject`."""
        out = self._doveadm(
            "-f", "tab", "fetch", "-u", user, "uid", "mailbox", "INBOX", "subject", subject
        )
        return [int(line) for line in out.splitlines()[1:] if line.strip()]

    def wait_for_message(self, user: str, subject: str, timeout: float = 10.0) -> int:
        """Wait until a message with `subject` is in `user`'s INBOX; return its UID."""
        deadline = time.monotonic() + timeout
        while True:
            uids = self.find_messages(user, subject)
            if uids:
                return uids[-1]
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no message with subject {subject!r} for {user} after {timeout}s\n"
                    + self.log_tail(15)
                )
            time.sleep(0.1)


def _render(template: str, **values: str) -> str:
    text = (FIXTURES / template).read_text()

    def sub(m: re.Match[str]) -> str:
        return values[m.group(1)]

    rendered = re.sub(r"@@([A-Z_]+)@@", sub, text)
    unused = set(values) - set(re.findall(r"@@([A-Z_]+)@@", text))
    if unused:
        raise LabError(f"{template}: values given but not used: {sorted(unused)}")
    return rendered


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def _self_signed(names: tuple[str, ...]) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    san: list[x509.GeneralName] = []
    for name in names:
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            san.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


@functools.cache
def _ffdhe2048_pem() -> bytes:
    """RFC 7919 Appendix A.1 ffdhe2048, computed from its definition.

    p = 2^2048 - 2^1984 + (floor(2^1918 * e) + 560316) * 2^64 - 1, g = 2.
    """
    e = Fraction(0)
    term = Fraction(1)
    for k in range(1, 400):  # 400 terms of sum 1/k! put e far beyond 2^-1918
        e += term
        term /= k
    p = 2**2048 - 2**1984 + (math.floor(e * 2**1918) + 560316) * 2**64 - 1
    params = dh.DHParameterNumbers(p, 2).parameters()
    return params.parameter_bytes(serialization.Encoding.PEM, serialization.ParameterFormat.PKCS3)


def _message(sender: str, to: str, subject: str, size: int, index: int) -> bytes:
    """A plain RFC 5322 message of exactly `size` octets, CRLF line ends.

    CRLF on disk makes the physical size equal the virtual size Dovecot's quota
    counts (quota_vsizes = yes), so quota fills are exact.
    """
    date = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(hours=index)
    head = (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: {date.strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\n"
        f"Message-ID: <seed-{index}.{to}>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode()
    room = size - len(head)
    if room < 2:
        raise ValueError(f"message size {size} too small")
    line = b"x" * 74 + b"\r\n"
    body = line * ((room - 2) // len(line))
    body += b"y" * (room - len(body) - 2) + b"\r\n"
    return head + body


def _seed_messages(user: LabUser) -> list[tuple[bytes, str]]:
    """(message, maildir flags) to put in the user's INBOX before start."""
    sender = f"seed@{DOMAIN}"
    if not user.fill:
        return [
            (
                _message(sender, user.address, f"Welcome {i}", 2000 + 500 * i, i),
                "S" if i < 2 else "",
            )
            for i in range(3)
        ]
    total = round(QUOTA_BYTES * user.fill)
    count = 8
    sizes = [total // count] * count
    sizes[-1] += total - sum(sizes)
    return [
        (_message(sender, user.address, f"Filler {i}", size, i), "S")
        for i, size in enumerate(sizes)
    ]


def _folder_messages(
    user: LabUser, folder: str, share: float, index: int
) -> list[tuple[bytes, str]]:
    """Read messages filling ``share`` of the quota, in four equal parts."""
    total = round(QUOTA_BYTES * share)
    if not total:
        return []
    sizes = [total // 4] * 4
    sizes[-1] += total - sum(sizes)
    sender = f"seed@{DOMAIN}"
    return [
        (_message(sender, user.address, f"{folder} {i}", size, 100 * (index + 1) + i), "S")
        for i, size in enumerate(sizes)
    ]


def _write_maildir(maildir: Path, messages: list[tuple[bytes, str]], uid: int, gid: int) -> None:
    for sub in ("", "cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, mode=0o700, exist_ok=sub != "")
    now = int(time.time())
    for i, (msg, flags) in enumerate(messages):
        # S= and W= let Dovecot take sizes from the name instead of reading files.
        name = f"{now}.M{i}P{os.getpid()}.lab,S={len(msg)},W={len(msg)}:2,{flags}"
        (maildir / "cur" / name).write_bytes(msg)
    for path in (maildir.parent, maildir, *maildir.rglob("*")):
        os.chown(path, uid, gid)


def _terminate_group(pid: int, what: str, proc: subprocess.Popen[bytes] | None = None) -> list[str]:
    """SIGTERM a server master, wait for it, then make sure its group is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _alive(pid, proc) and time.monotonic() < deadline:
        time.sleep(0.02)
    errors = []
    if _alive(pid, proc):
        errors.append(f"{what} (pid {pid}) ignored SIGTERM; killed")
    # Both masters lead their own process group (Popen start_new_session for
    # Dovecot, setsid() in Postfix's master); stragglers in it are ours.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    return errors


def _alive(pid: int, proc: subprocess.Popen[bytes] | None) -> bool:
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie that nobody reaps (Postfix's master is not our child) is gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    return False


_SERVER_EXE_PREFIXES = ("/usr/sbin/dovecot", "/usr/lib/dovecot/", "/usr/lib/postfix/")


def _is_lab_server(exe: str) -> bool:
    return exe.startswith(_SERVER_EXE_PREFIXES)


def running_lab(slot: int | None = None) -> contextlib.AbstractContextManager[MailLab]:
    """A started lab in the first free slot (or the given one)."""
    slots = [slot] if slot is not None else list(range(len(SLOT_FIRST_OCTET)))
    return first_free_slot(MailLab, slots)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # Background jobs of a non-interactive shell ignore SIGINT; SIGTERM must
    # stop the lab cleanly too.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with running_lab() as lab:
        print(f"lab up in {lab.start_seconds:.2f}s at {lab.root}")
        for host in lab.hosts:
            print(f"  {host.address:<12} {host.name:<22} cert: {host.cert}")
        print(f"  CA: {lab.ca_pem_path}")
        for user in lab.users.values():
            print(f"  {user.address:<16} {user.password}")
        print("Ctrl-C to stop")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
