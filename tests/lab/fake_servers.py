"""Small scriptable IMAP, POP3 and SMTP submission servers that misbehave on demand.

Real servers (Dovecot, Postfix) are exercised elsewhere; these produce the
faults a real server will not produce when asked: a greeting that never
comes, a TLS handshake that stalls, a 10 MB line, a port that drops SYNs.

Layout, top to bottom:

* ``Behaviour``: the catalogue of faults.
* Protocol sessions (``_ImapSession``, ``_Pop3Session``, ``_SmtpSession``):
  sans-IO state machines. Bytes go in through ``receive()``, a list of
  actions comes out (bytes to send, or a signal: upgrade to TLS, stall the
  TLS handshake, close). They never touch a socket, so the protocol logic
  stays independent of threads and TLS.
* ``FakeMailServer``: the transport. One listening socket, an accept thread
  waiting on a selector (so ``stop()`` wakes it at once), and one daemon
  thread per connection. Connection-level faults (silence, junk, stalls,
  delays) live here because they are about *when* and *whether* bytes flow,
  not about what the protocol says.
* ``FakeMailHost``: the six standard endpoints of one host on one address.

Everything binds to loopback addresses only; the tests use 127.0.0.70-79.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import enum
import logging
import random
import re
import select
import selectors
import socket
import ssl
import string
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Self

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_USERS",
    "ENDPOINTS",
    "HUGE_LINE_BYTES",
    "Behaviour",
    "FakeMailbox",
    "FakeMailHost",
    "FakeMailServer",
    "ReceivedCommand",
]

#: Credentials accepted when no ``users`` mapping is given.
DEFAULT_USERS: Mapping[str, str] = {"alice@example.test": "wonderland"}

#: Length of the line that HUGE_LINE streams (without ever sending a newline).
HUGE_LINE_BYTES = 10 * 1024 * 1024

#: FakeMailHost endpoint key -> (protocol, standard port, implicit TLS).
ENDPOINTS: Mapping[str, tuple[str, int, bool]] = {
    "imap": ("imap", 143, False),
    "imaps": ("imap", 993, True),
    "pop3": ("pop3", 110, False),
    "pop3s": ("pop3", 995, True),
    "submission": ("smtp", 587, False),
    "submissions": ("smtp", 465, True),
}


class Behaviour(enum.StrEnum):
    """What a fake server does wrong (or, for HEALTHY, right).

    On implicit-TLS ports (993/995/465) the TLS handshake happens first and
    the fault follows inside TLS, except for CLOSE_IMMEDIATELY, TLS_STALL,
    FILTERED and PLAINTEXT_ON_TLS_PORT, which act before any TLS.
    """

    # Greeting, capabilities, STARTTLS on plaintext ports, LOGINDISABLED / no
    # AUTH before TLS, LOGIN / AUTHENTICATE PLAIN / USER+PASS / AUTH PLAIN
    # LOGIN inside TLS, mailbox, quota and QUIT/LOGOUT.
    HEALTHY = "healthy"
    # No STARTTLS/STLS advertised; the command gets IMAP BAD, POP3 -ERR,
    # SMTP 502. Authentication stays refused in plaintext (single fault).
    NO_STARTTLS = "no_starttls"
    # STARTTLS advertised, the command fails: IMAP "NO [UNAVAILABLE] ...",
    # POP3 "-ERR TLS not available.", SMTP "454 4.7.0 TLS not available".
    STARTTLS_REFUSED = "starttls_refused"
    # Authentication offered and accepted before TLS (STARTTLS still offered).
    PLAINTEXT_LOGIN = "plaintext_login"
    # TCP (and TLS) accepted, then silence; the connection is held open.
    NEVER_GREET = "never_greet"
    # Greeting, then FIN.
    CLOSE_AFTER_GREETING = "close_after_greeting"
    # FIN right after accept(), before any TLS.
    CLOSE_IMMEDIATELY = "close_immediately"
    # An HTTP/1.1 400 response with random printable text, then FIN.
    GARBAGE = "garbage"
    # 4 KiB of random bytes (starting 00 FF FE), then held open.
    BINARY = "binary"
    # A greeting prefix and HUGE_LINE_BYTES without a newline, streamed in
    # 64 KiB pieces; stops as soon as the client goes away.
    HUGE_LINE = "huge_line"
    # "421 4.7.0 Too many connections, try again later" / "* BYE Too many
    # connections" / "-ERR [SYS/TEMP] too many connections", then FIN.
    THROTTLE = "throttle"
    # SMTP 554 greeting, then 503 to all but QUIT (RFC 5321 §3.1); IMAP
    # "* BYE service disabled" and POP3 "-ERR [SYS/PERM] service disabled",
    # then FIN.
    UNAVAILABLE = "unavailable"
    # Implicit TLS: the ClientHello is read and never answered. STARTTLS
    # ports: STARTTLS is answered positively, then the same silence.
    TLS_STALL = "tls_stall"
    # The greeting comes after ``delay`` seconds; healthy afterwards.
    SLOW_GREETING = "slow_greeting"
    # Healthy, but every reply leaves in 1-7 byte fragments, 1 ms apart.
    SPLIT_REPLIES = "split_replies"
    # Waits ``delay`` (default 0.5 s) before the greeting; a client that
    # talks first gets the protocol's rejection (SMTP "554 5.5.0 Improper
    # pipelining/early talker", as Postfix postscreen) and FIN.
    EARLY_TALKER_REJECT = "early_talker_reject"
    # SYNs are dropped, connect() times out (see _fill_accept_queue).
    FILTERED = "filtered"
    # Beyond the original list: an implicit-TLS port that speaks plaintext,
    # the classic "wrong version number" misconfiguration.
    PLAINTEXT_ON_TLS_PORT = "plaintext_on_tls_port"
    # Logins (with any password) get a temporary failure: IMAP "NO
    # [UNAVAILABLE]", POP3 "-ERR [SYS/TEMP]", SMTP "454 4.7.0"; not counted
    # as failed logins.
    AUTH_TEMPORARY_FAILURE = "auth_temporary_failure"
    # Healthy, but before TLS a challenge-response mechanism is announced
    # that sends no password: IMAP "AUTH=CRAM-MD5 LOGINDISABLED", POP3 "SASL
    # CRAM-MD5", SMTP "AUTH CRAM-MD5" (Exim with a CRAM-MD5 authenticator and
    # auth_advertise_hosts = *). Using it before TLS is refused all the same.
    CRAM_MD5_BEFORE_TLS = "cram_md5_before_tls"
    # No login method at all, even inside TLS: IMAP LOGINDISABLED without
    # AUTH=PLAIN, POP3 CAPA without USER and SASL, SMTP EHLO without AUTH.
    NO_LOGIN_MECHANISM = "no_login_mechanism"
    # THROTTLE's refusal, but on implicit-TLS ports in plaintext before any
    # TLS, as Exim's daemon sends its smtp_accept_max_per_host 421 on 465.
    THROTTLE_BEFORE_TLS = "throttle_before_tls"
    # IMAP only (others stay healthy): "* PREAUTH ..." greeting (RFC 3501
    # §7.1.4), the session is authenticated from the start; STARTTLS is then
    # refused as "not valid after authentication", as Dovecot's imap does
    # when run preauthenticated (from inetd or ssh) on a network port.
    PREAUTH = "preauth"
    # The go-ahead to STARTTLS/STLS carries a forged plaintext answer in the
    # same write, as a man in the middle injects it for a client that keeps
    # reading its buffer after TLS starts (CVE-2011-0411's client-side twin,
    # Poddebniak et al. 2021): IMAP "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN]",
    # POP3 a CAPA list with USER, SMTP an EHLO answer with AUTH PLAIN LOGIN.
    # The TLS handshake then follows as usual.
    STARTTLS_INJECTION = "starttls_injection"
    # Inside TLS only OAuth is offered, as Microsoft 365 and Google Workspace do
    # with password logins turned off: IMAP "AUTH=XOAUTH2 AUTH=OAUTHBEARER
    # LOGINDISABLED", POP3 "SASL XOAUTH2 OAUTHBEARER" without USER, SMTP "AUTH
    # XOAUTH2 OAUTHBEARER". A password login is refused all the same.
    OAUTH_ONLY = "oauth_only"

    def __str__(self) -> str:
        return self.value


# Behaviours that never need a certificate, even on an implicit-TLS port.
_NO_TLS_NEEDED = frozenset(
    {
        Behaviour.FILTERED,
        Behaviour.CLOSE_IMMEDIATELY,
        Behaviour.TLS_STALL,
        Behaviour.PLAINTEXT_ON_TLS_PORT,
        Behaviour.THROTTLE_BEFORE_TLS,
    }
)


# Behaviours that change only the login (the session is healthy otherwise).
_AUTH_FAULTS = frozenset(
    {
        Behaviour.AUTH_TEMPORARY_FAILURE,
        Behaviour.NO_LOGIN_MECHANISM,
        Behaviour.CRAM_MD5_BEFORE_TLS,
        Behaviour.OAUTH_ONLY,
    }
)


@dataclass(frozen=True)
class ReceivedCommand:
    """One command line (or SASL continuation line) a client sent."""

    connection: int  # 1-based connection number on this server
    tls: bool  # received inside TLS
    line: bytes  # without the line ending; IMAP literals are included inline


# --------------------------------------------------------------------------
# Sans-IO protocol sessions
# --------------------------------------------------------------------------


class _Signal(enum.Enum):
    START_TLS = "start_tls"  # send what came before, then do the TLS handshake
    STALL_TLS = "stall_tls"  # send what came before, then never handshake
    CLOSE = "close"  # send what came before, then close


@dataclass(frozen=True)
class _Pause:
    """Wait this long before the next action (a server that answers slowly)."""

    seconds: float


_Action = bytes | _Signal | _Pause


class ConnectionGauge:
    """Connections open at once to a group of servers (all ports of one address).

    A connection counts from its accept until the server has decided to end
    it: a goodbye (BYE, +OK, 221) is counted off *before* it is sent, so the
    count never includes a connection its client already considers closed.
    That makes ``peak`` a count a client-side cap can be checked against.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current = 0
        self.peak = 0

    def enter(self) -> None:
        with self._lock:
            self.current += 1
            self.peak = max(self.peak, self.current)

    def leave(self) -> None:
        with self._lock:
            self.current -= 1

    def reset_peak(self) -> None:
        with self._lock:
            self.peak = self.current


class _StartTls(enum.Enum):
    OFFER = "offer"
    ABSENT = "absent"
    REFUSE = "refuse"
    STALL = "stall"


class FolderStyle(enum.StrEnum):
    """How a fake IMAP server shows the special use of its folders."""

    # SPECIAL-USE and LIST-EXTENDED announced, the attributes in every LIST (Dovecot).
    SPECIAL_USE = "special_use"
    # Gmail before RFC 6154: XLIST announced; XLIST carries \Inbox, \Sent,
    # \Spam, \AllMail ..., plain LIST none of them.
    XLIST = "xlist"
    # No marks at all (a server without special_use configured).
    NONE = "none"


#: The folders of a fake IMAP account besides INBOX, with their special use.
DEFAULT_FOLDERS: tuple[tuple[str, str | None], ...] = (
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
)
# XLIST's names for the RFC 6154 attributes that it spells differently.
_XLIST_SPELLING = {"\\Junk": "\\Spam", "\\All": "\\AllMail"}


@dataclass(frozen=True)
class _SessionConfig:
    hostname: str
    users: Mapping[str, str]
    starttls: _StartTls
    plaintext_auth: bool
    # (used KiB, limit KiB) of STORAGE, or (resource, usage, limit) triples
    # such as ("MESSAGE", 1000, 1000) (RFC 9208 §5); None: no QUOTA support.
    quota: Quota
    messages: int
    auth_fault: Behaviour | None = None  # AUTH_TEMPORARY_FAILURE or NO_LOGIN_MECHANISM
    mailbox: FakeMailbox | None = None  # shared INBOX: SMTP delivers, IMAP sees it
    # Courier's authdaemon answers a failed login only after about 5 s.
    login_failure_delay: float = 0.0
    # The failure reply quotes the client's line back (some servers echo the
    # AUTH PLAIN blob): the secret must never reach maildiag's output.
    echo_failed_logins: bool = False
    # EHLO "SIZE n" (RFC 1870); None: no SIZE line at all.
    smtp_size: int | None = 35882577
    # The answer to MAIL FROM after a login ("550 5.7.60 ..."); None: 250.
    mail_from_reply: str | None = None
    # Behaviour.STARTTLS_INJECTION: plaintext sent behind the go-ahead to STARTTLS.
    starttls_injection: bool = False
    # A provider's refusal sent to every login, whatever the password (see
    # FakeMailHost): IMAP "NO ..." after the tag, a POP3 "-ERR ..." line, an
    # SMTP reply (lines joined with CRLF). Counted as a failed login.
    login_refusal: str | None = None
    # IMAP only: texts sent as "* OK [ALERT] ..." before the tagged OK of a
    # successful login (RFC 3501 §7.1), as providers send their notices.
    login_alerts: tuple[str, ...] = ()
    # SMTP only: act as an MX on port 25 (MAIL and RCPT without AUTH, no
    # DATA). Keys "banner", "ehlo", "mail", "rcpt" replace that reply with
    # the given line ("550 5.1.1 ..."); missing keys answer positively.
    mx_replies: Mapping[str, str] | None = None
    # IMAP folders besides INBOX with their RFC 6154 special use, and how
    # the server shows it (see FolderStyle).
    folders: tuple[tuple[str, str | None], ...] = DEFAULT_FOLDERS
    folder_style: FolderStyle = FolderStyle.SPECIAL_USE


@dataclass(frozen=True)
class _Hooks:
    command: Callable[[bytes, bool], None]  # (line, inside TLS)
    login: Callable[[str, bool], None]  # (user name, succeeded)


class _LineTooLong(Exception):
    pass


class _LineBuffer:
    """Frames CRLF lines out of a byte stream, refusing lines over ``max_line``.

    A bare LF is accepted as a line end too: being lenient here keeps the
    fakes about the faults they were asked for, not about client quirks.
    """

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def line(self) -> bytes | None:
        end = self._buf.find(b"\n")
        if end < 0:
            if len(self._buf) > self.max_line:
                raise _LineTooLong
            return None
        if end > self.max_line:
            raise _LineTooLong
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        return line.removesuffix(b"\r")

    def take(self, size: int) -> bytes | None:
        if len(self._buf) < size:
            return None
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def clear(self) -> int:
        dropped = len(self._buf)
        self._buf.clear()
        return dropped


def _fake_messages(count: int) -> list[bytes]:
    return [
        (
            "From: Maildiag Lab <lab@example.test>\r\n"
            "To: alice@example.test\r\n"
            f"Subject: Fake message {n}\r\n"
            f"Message-ID: <fake-{n}@example.test>\r\n"
            "Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
            "\r\n"
            f"This is fake message number {n}.\r\n"
        ).encode()
        for n in range(1, count + 1)
    ]


class FakeMailbox:
    """An INBOX shared by the servers of one host, for the sync tests.

    SMTP submission delivers into it (after ``delivery_delay`` seconds), and
    every IMAP session sees the same messages, flags and expunges: NOOP reports
    what changed since the session last looked (EXISTS, FETCH, EXPUNGE). The
    IMAP servers announce UIDPLUS (RFC 4315, UID EXPUNGE) only when ``uidplus``.
    """

    def __init__(
        self, messages: int = 3, *, uidplus: bool = True, delivery_delay: float = 0.0
    ) -> None:
        self.uidplus = uidplus
        self.delivery_delay = delivery_delay
        self.uidvalidity = _IMAP_UIDVALIDITY
        self._lock = threading.Lock()
        self._next_uid = 1
        self._messages: dict[int, tuple[frozenset[str], bytes]] = {}
        self.expunged: list[int] = []  # every UID removed, in order
        for message in _fake_messages(messages):
            self.add(message)

    @property
    def next_uid(self) -> int:
        with self._lock:
            return self._next_uid

    def add(self, data: bytes, flags: tuple[str, ...] = ()) -> int:
        with self._lock:
            uid = self._next_uid
            self._next_uid += 1
            self._messages[uid] = (frozenset(flags), data)
            return uid

    def deliver(self, data: bytes) -> None:
        if self.delivery_delay <= 0:
            self.add(data)
            return
        timer = threading.Timer(self.delivery_delay, self.add, (data,))
        timer.daemon = True
        timer.start()

    def snapshot(self) -> list[tuple[int, frozenset[str]]]:
        """(uid, flags) of every message, in UID order."""
        with self._lock:
            return [(uid, flags) for uid, (flags, _) in sorted(self._messages.items())]

    def message(self, uid: int) -> bytes | None:
        with self._lock:
            entry = self._messages.get(uid)
            return entry[1] if entry else None

    def set_flags(self, uids: list[int], mode: str, flags: set[str]) -> None:
        """``mode``: "+" adds, "-" removes, "" replaces (RFC 3501 §6.4.6)."""
        with self._lock:
            for uid in uids:
                if uid not in self._messages:
                    continue
                old, data = self._messages[uid]
                new = old | flags if mode == "+" else old - flags if mode == "-" else flags
                self._messages[uid] = (frozenset(new), data)

    def expunge(self, uids: set[int] | None = None) -> list[int]:
        """Removes the messages marked \\Deleted (only those in ``uids`` when given)."""
        with self._lock:
            gone = [
                uid
                for uid, (flags, _) in sorted(self._messages.items())
                if "\\Deleted" in flags and (uids is None or uid in uids)
            ]
            for uid in gone:
                del self._messages[uid]
            self.expunged += gone
            return gone

    def find(self, text: str) -> list[int]:
        """UIDs of messages whose bytes contain ``text`` (for assertions in tests)."""
        needle = text.encode()
        with self._lock:
            return [uid for uid, (_, data) in sorted(self._messages.items()) if needle in data]


def _header_matches(data: bytes, name: str, value: str) -> bool:
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    prefix = name.lower() + ":"
    return any(
        line.lower().startswith(prefix) and value.lower() in line[len(prefix) :].lower()
        for line in head.split("\r\n")
    )


def _decode_sasl_plain(response: bytes) -> tuple[str, str | None] | None:
    """RFC 4616 PLAIN: base64 of ``authzid NUL authcid NUL passwd``.

    Returns (user, password), with password None when the client asked to act
    as someone else (an authzid other than itself), which always fails; or
    None when the response is not valid PLAIN at all.
    """
    try:
        raw = base64.b64decode(response, validate=True)
    except (binascii.Error, ValueError):
        return None
    parts = raw.split(b"\0")
    if len(parts) != 3:
        return None
    authzid, authcid, passwd = (p.decode("utf-8", "surrogateescape") for p in parts)
    if authzid and authzid != authcid:
        return authcid, None
    return authcid, passwd


def _b64decode_text(response: bytes) -> str | None:
    try:
        return base64.b64decode(response, validate=True).decode("utf-8", "surrogateescape")
    except (binascii.Error, ValueError):
        return None


class _Session:
    """Shared plumbing of the three protocol state machines."""

    max_line: ClassVar[int] = 8192

    def __init__(self, config: _SessionConfig, *, tls_active: bool, hooks: _Hooks) -> None:
        self.config = config
        self.tls_active = tls_active
        self.authenticated = False
        self.closed = False
        self.injected_bytes = 0  # bytes pipelined behind STARTTLS and thrown away
        self._hooks = hooks
        self._input = _LineBuffer(self.max_line)
        self._messages = _fake_messages(config.messages)
        self._last_line = b""
        self._login_failed = False

    # -- driving ----------------------------------------------------------

    def receive(self, data: bytes) -> list[_Action]:
        """Feed bytes from the client; return what to do, in order."""
        self._input.feed(data)
        out: list[_Action] = []
        while not self.closed:
            try:
                step = self._step()
            except _LineTooLong:
                self.closed = True
                out += [self.line_too_long(), _Signal.CLOSE]
                break
            if step is None:
                break
            if self._login_failed:
                self._login_failed = False
                step = self._failed_login_reply(step)
            out += step
            if step and isinstance(step[-1], _Signal):
                if step[-1] is _Signal.CLOSE:
                    self.closed = True
                else:
                    # RFC 3207 §6 / RFC 2595 §3.1: anything pipelined behind
                    # STARTTLS must be discarded, or a man in the middle can
                    # inject plaintext commands that run inside the TLS
                    # session (CVE-2011-0411).
                    self.injected_bytes += self._input.clear()
                break
        return out

    def tls_started(self) -> None:
        self.tls_active = True
        self._input.clear()

    def _step(self) -> list[_Action] | None:
        line = self._input.line()
        if line is None:
            return None
        return self._line(line)

    def _line(self, line: bytes) -> list[_Action]:
        raise NotImplementedError

    def _record(self, line: bytes) -> None:
        self._last_line = line
        self._hooks.command(line, self.tls_active)

    def _check_login(self, user: str, password: str | None) -> bool:
        ok = password is not None and user in self.config.users
        ok = ok and self.config.users[user] == password
        self._hooks.login(user, ok)
        self._login_failed = not ok
        return ok

    def _failed_login_reply(self, step: list[_Action]) -> list[_Action]:
        """The failure reply, delayed and/or quoting the client's last line, as configured."""
        if self.config.echo_failed_logins:
            for i in range(len(step) - 1, -1, -1):
                reply = step[i]
                if isinstance(reply, bytes) and reply.endswith(b"\r\n"):
                    step = [
                        *step[:i],
                        reply[:-2] + b" (you sent: " + self._last_line + b")\r\n",
                        *step[i + 1 :],
                    ]
                    break
        if self.config.login_failure_delay:
            step = [_Pause(self.config.login_failure_delay), *step]
        return step

    def _refusal(self, user: str) -> str | None:
        """The configured provider refusal for this login, counted as a failed login."""
        if self.config.login_refusal is None:
            return None
        self._hooks.login(user, False)
        self._login_failed = True  # delayed and echoed as configured
        return self.config.login_refusal

    @property
    def _oauth_announced(self) -> bool:
        return self.config.auth_fault is Behaviour.OAUTH_ONLY and self.tls_active

    @property
    def _may_authenticate(self) -> bool:
        if self.config.auth_fault in (Behaviour.NO_LOGIN_MECHANISM, Behaviour.OAUTH_ONLY):
            return False
        return self.tls_active or self.config.plaintext_auth

    @property
    def _cram_md5_announced(self) -> bool:
        return self.config.auth_fault is Behaviour.CRAM_MD5_BEFORE_TLS and not self.tls_active

    @property
    def _auth_temporarily_down(self) -> bool:
        return self.config.auth_fault is Behaviour.AUTH_TEMPORARY_FAILURE

    @property
    def _starttls_advertised(self) -> bool:
        return (
            not self.tls_active
            and not self.authenticated
            and self.config.starttls is not _StartTls.ABSENT
        )

    # -- canned texts used by the transport ---------------------------------

    def greeting(self) -> bytes:
        raise NotImplementedError

    def throttled(self) -> bytes:
        raise NotImplementedError

    def unavailable(self) -> list[_Action]:
        raise NotImplementedError

    def early_talker(self) -> bytes:
        raise NotImplementedError

    def huge_line_prefix(self) -> bytes:
        raise NotImplementedError

    def idle_timeout(self) -> bytes:
        raise NotImplementedError

    def line_too_long(self) -> bytes:
        raise NotImplementedError


# IMAP ---------------------------------------------------------------------

_ImapToken = str | list["_ImapToken"]
# RFC 3501 §4.3 literal, and RFC 7888 non-synchronising literal "{n+}".
_IMAP_LITERAL_AT_END = re.compile(rb"\{(\d{1,9})(\+?)\}$")
_IMAP_LITERAL = re.compile(rb"\{(\d{1,9})\+?\}\r\n")
_IMAP_ATOM_END = frozenset(b' ()"{')
_IMAP_MAX_LITERAL = 64 * 1024
_IMAP_UIDVALIDITY = 1700000000
_QUOTA_ROOT = "User quota"
Quota = tuple[int, int] | tuple[tuple[str, int, int], ...] | None
_IMAP_FLAGS = "\\Answered \\Flagged \\Deleted \\Seen \\Draft"


class _ImapSyntaxError(ValueError):
    pass


def _imap_tokens(raw: bytes) -> list[_ImapToken]:
    """Split an IMAP command (literals already inlined) into atoms/strings/lists."""
    top: list[_ImapToken] = []
    stack: list[list[_ImapToken]] = [top]
    pos = 0
    while pos < len(raw):
        c = raw[pos]
        if c == 0x20:
            pos += 1
        elif c == 0x28:  # (
            nested: list[_ImapToken] = []
            stack[-1].append(nested)
            stack.append(nested)
            pos += 1
        elif c == 0x29:  # )
            if len(stack) == 1:
                raise _ImapSyntaxError("unbalanced ')'")
            stack.pop()
            pos += 1
        elif c == 0x22:  # quoted string, with \" and \\ escapes
            value = bytearray()
            pos += 1
            while True:
                if pos >= len(raw):
                    raise _ImapSyntaxError("unterminated quoted string")
                ch = raw[pos]
                if ch == 0x5C and pos + 1 < len(raw):
                    value.append(raw[pos + 1])
                    pos += 2
                elif ch == 0x22:
                    pos += 1
                    break
                else:
                    value.append(ch)
                    pos += 1
            stack[-1].append(value.decode("utf-8", "surrogateescape"))
        elif c == 0x7B:  # {n}CRLF literal
            m = _IMAP_LITERAL.match(raw, pos)
            if m is None:
                raise _ImapSyntaxError("bad literal")
            start = m.end()
            end = start + int(m[1])
            if end > len(raw):
                raise _ImapSyntaxError("short literal")
            stack[-1].append(raw[start:end].decode("utf-8", "surrogateescape"))
            pos = end
        else:
            start = pos
            while pos < len(raw) and raw[pos] not in _IMAP_ATOM_END:
                pos += 1
            stack[-1].append(raw[start:pos].decode("utf-8", "surrogateescape"))
    if len(stack) != 1:
        raise _ImapSyntaxError("unbalanced '('")
    return top


def _imap_quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _ImapSession(_Session):
    """IMAP4rev1 (RFC 3501) with STARTTLS/LOGINDISABLED (RFC 3501 §6.2.1, RFC 2595)."""

    max_line = 8192

    def __init__(self, config: _SessionConfig, *, tls_active: bool, hooks: _Hooks) -> None:
        super().__init__(config, tls_active=tls_active, hooks=hooks)
        self.selected: str | None = None
        self._parts: list[bytes] = []  # command pieces before a literal
        self._literal: int | None = None  # bytes of literal still expected
        self._sasl_tag: str | None = None  # AUTHENTICATE waiting for its response
        # This session's view of a shared FakeMailbox: UIDs in sequence order
        # and the flags it was last told about.
        self._view: list[int] = []
        self._view_flags: dict[int, frozenset[str]] = {}

    def capabilities(self) -> str:
        caps = ["IMAP4rev1", "SASL-IR", "LITERAL+", "ID", "ENABLE", "NAMESPACE", "UNSELECT"]
        if self.config.folder_style is FolderStyle.SPECIAL_USE:
            caps += ["LIST-EXTENDED", "SPECIAL-USE"]
        elif self.config.folder_style is FolderStyle.XLIST:
            caps.append("XLIST")
        if self.config.quota is not None:
            caps.append("QUOTA")
        if self.config.mailbox is not None and self.config.mailbox.uidplus:
            caps.append("UIDPLUS")
        if not self.authenticated:
            if self._starttls_advertised:
                caps.append("STARTTLS")
            # RFC 3501 §6.2.3: LOGINDISABLED when LOGIN is refused on this
            # (unencrypted) connection; RFC 2595 §3.2 same for AUTH=PLAIN.
            if self._cram_md5_announced:
                caps.append("AUTH=CRAM-MD5")
            if self._oauth_announced:
                caps += ["AUTH=XOAUTH2", "AUTH=OAUTHBEARER"]
            caps.append("AUTH=PLAIN" if self._may_authenticate else "LOGINDISABLED")
        return " ".join(caps)

    def greeting(self) -> bytes:
        return f"* OK [CAPABILITY {self.capabilities()}] {self.config.hostname} ready.\r\n".encode(
            "utf-8", "surrogateescape"
        )

    def preauth_greeting(self) -> bytes:
        self.authenticated = True
        line = f"* PREAUTH [CAPABILITY {self.capabilities()}] Logged in as alice.\r\n"
        return line.encode("utf-8", "surrogateescape")

    def throttled(self) -> bytes:
        return b"* BYE Too many connections\r\n"

    def unavailable(self) -> list[_Action]:
        return [b"* BYE service disabled\r\n", _Signal.CLOSE]

    def early_talker(self) -> bytes:
        return b"* BYE Protocol violation: client talked before the greeting.\r\n"

    def huge_line_prefix(self) -> bytes:
        return b"* OK "

    def idle_timeout(self) -> bytes:
        return b"* BYE Disconnected for inactivity.\r\n"

    def line_too_long(self) -> bytes:
        return b"* BYE Line too long.\r\n"

    # -- framing: lines, literals, AUTHENTICATE continuations ----------------

    def _step(self) -> list[_Action] | None:
        if self._literal is not None:
            chunk = self._input.take(self._literal)
            if chunk is None:
                return None
            self._parts.append(chunk)
            self._literal = None
            return []
        line = self._input.line()
        if line is None:
            return None
        if self._sasl_tag is not None:
            self._record(line)
            tag, self._sasl_tag = self._sasl_tag, None
            return self._sasl_plain(tag, line)
        m = _IMAP_LITERAL_AT_END.search(line)
        if m is not None:
            size = int(m[1])
            pending = sum(len(p) for p in self._parts) + len(line) + size
            if size > _IMAP_MAX_LITERAL or pending > _IMAP_MAX_LITERAL:
                self._parts = []
                return [b"* BYE Literal too large.\r\n", _Signal.CLOSE]
            self._parts.append(line + b"\r\n")
            self._literal = size
            return [] if m[2] else [b"+ Ready for literal data\r\n"]
        raw = b"".join(self._parts) + line
        self._parts = []
        self._record(raw)
        return self._command(raw)

    def _command(self, raw: bytes) -> list[_Action]:
        try:
            tokens = _imap_tokens(raw)
        except _ImapSyntaxError as exc:
            tag = raw.split(b" ", 1)[0].decode("ascii", "replace") or "*"
            return [
                f"{tag} BAD Error in IMAP command: {exc}.\r\n".encode("utf-8", "surrogateescape")
            ]
        if len(tokens) < 2 or not isinstance(tokens[0], str) or not isinstance(tokens[1], str):
            return [b"* BAD Error in IMAP command received by server.\r\n"]
        tag, name, args = tokens[0], tokens[1].upper(), tokens[2:]
        handler = self._HANDLERS.get(name)
        if handler is None:
            return [f"{tag} BAD Unknown command {name}.\r\n".encode("utf-8", "surrogateescape")]
        needs_auth = name in self._AUTHENTICATED_ONLY
        if needs_auth and not self.authenticated:
            return [
                f"{tag} BAD Command {name} not valid before authentication.\r\n".encode(
                    "utf-8", "surrogateescape"
                )
            ]
        try:
            return handler(self, tag, args)
        except _ImapSyntaxError as exc:
            return [
                f"{tag} BAD Error in IMAP command {name}: {exc}.\r\n".encode(
                    "utf-8", "surrogateescape"
                )
            ]

    @staticmethod
    def _string(args: list[_ImapToken], index: int) -> str:
        if index >= len(args) or not isinstance(args[index], str):
            raise _ImapSyntaxError("missing or invalid argument")
        value = args[index]
        assert isinstance(value, str)
        return value

    @staticmethod
    def _reply(tag: str, status: str, text: str) -> bytes:
        return f"{tag} {status} {text}\r\n".encode("utf-8", "surrogateescape")

    def _mailbox(self, args: list[_ImapToken]) -> str | None:
        name = self._string(args, 0)
        return "INBOX" if name.upper() == "INBOX" else None

    # -- commands -----------------------------------------------------------

    def _capability(self, tag: str, args: list[_ImapToken]) -> list[_Action]:
        return [
            f"* CAPABILITY {self.capabilities()}\r\n".encode("utf-8", "surrogateescape"),
            self._reply(tag, "OK", "Capability completed."),
        ]

    def _noop(self, tag: str, args: list[_ImapToken]) -> list[_Action]:
        return [*self._updates(), self._reply(tag, "OK", "NOOP completed.")]

    def _logout(self, tag: str, args: list[_ImapToken]) -> list[_Action]:
        return [
            b"* BYE Logging out.\r\n",
            self._reply(tag, "OK", "Logout completed."),
            _Signal.CLOSE,
        ]

    def _starttls(self, tag: str, args: list[_ImapToken]) -> list[_Action]:
        mode = self.config.starttls
        if self.tls_active:
            return [self._reply(tag, "BAD", "TLS is already active.")]
        if mode is _StartTls.ABSENT:
            return [self._reply(tag, "BAD", "Unknown command STARTTLS.")]
        if self.authenticated:
            return [self._reply(tag, "BAD", "STARTTLS not valid after authentication.")]
        if mode is _StartTls.REFUSE:
            return [self._reply(tag, "NO", "[UNAVAILABLE] STARTTLS failed: TLS not available.")]
        ok = self._reply(tag, "OK", "Begin TLS negotiation now.")
        if self.config.starttls_injection:
            ok += b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN]\r\n"
        return [ok, _Signal.STALL_TLS if mode is _StartTls.STALL else _Signal.START_TLS]

    def _refuse_plaintext(self, tag: str) -> list[_Action]:
        return [
            self._reply(
                tag,
                "NO",
                "[PRIVACYREQUIRED] Plaintext authentication disallowed on "
                "non-secure (SSL/TLS) connections.",
            )
        ]

    def _logged_in(self, tag: str, user: str, password: str | None) -> list[_Action]:
        refusal = self._refusal(user)
        if refusal is not None:
            return [self._reply(tag, *refusal.split(" ", 1))]
        if self._auth_temporarily_down:
            # RFC 5530 §3: UNAVAILABLE, "temporary failure ... try again later".
            return [self._reply(tag, "NO", "[UNAVAILABLE] Temporary authentication failure.")]
        if not self._check_login(user, password):
            return [self._reply(tag, "NO", "[AUTHENTICATIONFAILED] Authentication failed.")]
        self.authenticated = True
        alerts = [f"* OK [ALERT] {alert}\r\n".encode() for alert in self.config.login_alerts]
        return [*alerts, self._reply(tag, "OK", f"[CAPABILITY {self.capabilities()}] Logged in")]

    def _login(self, tag: str, args: list[_ImapToken]) -> list[_Action]:
        if self.authenticated:
            return [self._reply(tag, "BAD", "Already authenticated.")]
        user, password = self._string(args, 0), self._string(args, 1)
        if not self._may_authenticate:
            return self._refuse_plaintext(tag)
        return self._logged_in(tag, user, password)

    def _authenticate(self, tag: str, args: list[_ImapToken]) -> list[_Action]:
        if self.authenticated:
            return [self._reply(tag, "BAD", "Already authenticated.")]
        mechanism = self._string(args, 0).upper()
        if mechanism != "PLAIN":
            return [self._reply(tag, "NO", "Unsupported authentication mechanism.")]
        if not self._may_authenticate:
            return self._refuse_plaintext(tag)
        if len(args) > 1:  # RFC 4959 SASL-IR; "=" is an empty initial response
            initial = self._string(args, 1)
            return self._sasl_plain(tag, b"" if initial == "=" else initial.encode())
        self._sasl_tag = tag
        return [b"+ \r\n"]

    def _sasl_plain(self, tag: str, response: bytes) -> list[_Action]:
        if response == b"*":  # RFC 3501 §6.2.2: the client cancelled
            return [self._reply(tag, "BAD", "Authentication aborted by client.")]
        creds = _decode_sasl_plain(response)
        if creds is None:
            return [self._reply(tag, "BAD", "Invalid base64 data in continued response.")]
        return self._logged_in(tag, *creds)

    def _id(self, tag: str, args: list[_ImapToken]) -> list[_Action]:
        return [
            b'* ID ("name" "maildiag-fake")\r\n',
            self._reply(tag, "OK", "ID completed."),
        ]

    def _enable(self, tag: str, args: list[_ImapToken]) -> list[_Action]:
        return [b"* ENABLED\r\n", self._reply(tag, "OK", "Enabled.")]

    def _namespace(self, tag: str, args: list[_ImapToken]) -> list[_Action]:
        return [
            b'* NAMESPACE (("" ".")) NIL NIL\r\n',
            self._reply(tag, "OK", "Namespace completed."),
        ]

    def _list(self, tag: str, args: list[_ImapToken], *, xlist: bool = False) -> list[_Action]:
        pattern = self._string(args, 1)
        verb = "XLIST" if xlist else "LIST"
        style = self.config.folder_style
        out: list[_Action] = []
        if pattern == "":  # RFC 3501 §6.3.8: asks for the hierarchy delimiter
            out.append(f'* {verb} (\\Noselect) "." ""\r\n'.encode())
        elif pattern in ("*", "%") or pattern.upper() == "INBOX":
            inbox = "\\HasNoChildren \\Inbox" if xlist else "\\HasNoChildren"
            out.append(f'* {verb} ({inbox}) "." INBOX\r\n'.encode())
            if pattern.upper() != "INBOX":
                for name, use in self.config.folders:
                    marks = ["\\HasNoChildren"]
                    if use and xlist:
                        marks.append(_XLIST_SPELLING.get(use, use))
                    elif use and style is FolderStyle.SPECIAL_USE:
                        marks.append(use)
                    line = f'* {verb} ({" ".join(marks)}) "." {_imap_quote(name)}\r\n'
                    out.append(line.encode("utf-8", "surrogateescape"))
        out.append(self._reply(tag, "OK", f"{verb} completed."))
        return out

    def _xlist(self, tag: str, args: list[_ImapToken]) -> list[_Action]:
        if self.config.folder_style is not FolderStyle.XLIST:
            return [self._reply(tag, "BAD", "Unknown command XLIST.")]
        return self._list(tag, args, xlist=True)

    def _select(
        self, tag: str, args: list[_ImapToken], *, read_only: bool = False
    ) -> list[_Action]:
        mailbox = self._mailbox(args)
        self.selected = None
        if mailbox is None:
            return [self._reply(tag, "NO", "[NONEXISTENT] Mailbox doesn't exist.")]
        self.selected = mailbox
        count = len(self._messages)
        box = self.config.mailbox
        if box is not None:
            snapshot = box.snapshot()
            self._view = [uid for uid, _ in snapshot]
            self._view_flags = dict(snapshot)
            count = len(snapshot)
        permanent = "" if read_only else _IMAP_FLAGS
        out: list[_Action] = [
            f"* FLAGS ({_IMAP_FLAGS})\r\n".encode("utf-8", "surrogateescape"),
            f"* OK [PERMANENTFLAGS ({permanent})] Permanent flags.\r\n".encode(
                "utf-8", "surrogateescape"
            ),
            f"* {count} EXISTS\r\n".encode("utf-8", "surrogateescape"),
            b"* 0 RECENT\r\n",
        ]
        if count:
            out.append(
                f"* OK [UNSEEN {count}] First unseen.\r\n".encode("utf-8", "surrogateescape")
            )
        out += [
            f"* OK [UIDVALIDITY {_IMAP_UIDVALIDITY}] UIDs valid.\r\n".encode(
                "utf-8", "surrogateescape"
            ),
            f"* OK [UIDNEXT {box.next_uid if box else count + 1}] Predicted next UID.\r\n".encode(
                "utf-8", "surrogateescape"
            ),
        ]
        if read_only:
            out.append(self._reply(tag, "OK", "[READ-ONLY] Examine completed."))
        else:
            out.append(self._reply(tag, "OK", "[READ-WRITE] Select completed."))
        return out

    def _examine(self, tag: str, args: list[_ImapToken]) -> list[_Action]:
        return self._select(tag, args, read_only=True)

    def _status(self, tag: str, args: list[_ImapToken]) -> list[_Action]:
        mailbox = self._mailbox(args)
        if len(args) < 2 or not isinstance(args[1], list):
            raise _ImapSyntaxError("STATUS needs a list of items")
        folder = self._string(args, 0)
        if mailbox is None and folder in {name for name, _ in self.config.folders}:
            mailbox = _imap_quote(folder)  # an empty folder: STATUS, never SELECT
            count, size = 0, 0
        elif mailbox is None:
            return [self._reply(tag, "NO", "[NONEXISTENT] Mailbox doesn't exist.")]
        else:
            count = len(self._messages)
            if self.config.mailbox is not None:
                count = len(self.config.mailbox.snapshot())
            size = sum(len(m) for m in self._messages)
        values = {
            "MESSAGES": count,
            "RECENT": 0,
            "UIDNEXT": count + 1,
            "UIDVALIDITY": _IMAP_UIDVALIDITY,
            "UNSEEN": 1 if count else 0,
            "SIZE": size,
        }
        items = []
        for item in args[1]:
            key = item.upper() if isinstance(item, str) else ""
            if key not in values:
                raise _ImapSyntaxError(f"unknown STATUS item {item!r}")
            items.append(f"{key} {values[key]}")
        return [
            f"* STATUS {mailbox} ({' '.join(items)})\r\n".encode("utf-8", "surrogateescape"),
            self._reply(tag, "OK", "Status completed."),
        ]

    def _quota_line(self) -> bytes:
        quota = self.config.quota
        assert quota is not None
        triples = [item for item in quota if isinstance(item, tuple)]
        if triples:
            resources = " ".join(f"{name} {used} {limit}" for name, used, limit in triples)
        else:
            resources = "STORAGE {} {}".format(*quota)
        return f'* QUOTA "{_QUOTA_ROOT}" ({resources})\r\n'.encode("utf-8", "surrogateescape")

    def _getquotaroot(self, tag: str, args: list[_ImapToken]) -> list[_Action]:
        # RFC 9208 §4.3: no QUOTA capability means the command does not exist.
        if self.config.quota is None:
            return [self._reply(tag, "BAD", "Unknown command GETQUOTAROOT.")]
        mailbox = self._mailbox(args)
        if mailbox is None:
            return [self._reply(tag, "NO", "[NONEXISTENT] Mailbox doesn't exist.")]
        return [
            f'* QUOTAROOT {mailbox} "{_QUOTA_ROOT}"\r\n'.encode("utf-8", "surrogateescape"),
            self._quota_line(),
            self._reply(tag, "OK", "Getquotaroot completed."),
        ]

    def _getquota(self, tag: str, args: list[_ImapToken]) -> list[_Action]:
        if self.config.quota is None:
            return [self._reply(tag, "BAD", "Unknown command GETQUOTA.")]
        if self._string(args, 0) != _QUOTA_ROOT:
            return [self._reply(tag, "NO", "[NONEXISTENT] No such quota root.")]
        return [self._quota_line(), self._reply(tag, "OK", "Getquota completed.")]

    def _close(self, tag: str, args: list[_ImapToken]) -> list[_Action]:
        if self.selected is None:
            return [self._reply(tag, "BAD", "No mailbox selected.")]
        self.selected = None
        return [self._reply(tag, "OK", "Completed.")]

    def _check(self, tag: str, args: list[_ImapToken]) -> list[_Action]:
        if self.selected is None:
            return [self._reply(tag, "BAD", "No mailbox selected.")]
        return [self._reply(tag, "OK", "Check completed.")]

    # -- a shared FakeMailbox: searching, flags and expunging (sync tests) ----

    def _shared(self, tag: str) -> tuple[FakeMailbox | None, list[_Action]]:
        box = self.config.mailbox
        if box is None:
            return None, [self._reply(tag, "BAD", "Not supported by this fake server.")]
        if self.selected is None:
            return None, [self._reply(tag, "BAD", "No mailbox selected.")]
        return box, []

    def _updates(self) -> list[_Action]:
        """Untagged EXPUNGE, EXISTS and FETCH for what changed since this session looked."""
        box = self.config.mailbox
        if box is None or self.selected is None:
            return []
        now = dict(box.snapshot())
        out: list[_Action] = []
        # RFC 3501 §7.4.1: each EXPUNGE renumbers the messages after it, so the
        # highest sequence numbers go first.
        for seq in range(len(self._view), 0, -1):
            uid = self._view[seq - 1]
            if uid not in now:
                out.append(f"* {seq} EXPUNGE\r\n".encode("utf-8", "surrogateescape"))
                del self._view[seq - 1]
                self._view_flags.pop(uid, None)
        new = [uid for uid in now if uid not in self._view_flags]
        if new:
            self._view += new
            self._view_flags.update((uid, now[uid]) for uid in new)
            out.append(f"* {len(self._view)} EXISTS\r\n".encode("utf-8", "surrogateescape"))
        for seq, uid in enumerate(self._view, 1):
            if now[uid] != self._view_flags[uid]:
                self._view_flags[uid] = now[uid]
                out.append(self._fetch_line(seq, uid, now[uid]))
        return out

    @staticmethod
    def _fetch_line(seq: int, uid: int, flags: frozenset[str]) -> bytes:
        return f"* {seq} FETCH (UID {uid} FLAGS ({' '.join(sorted(flags))}))\r\n".encode(
            "utf-8", "surrogateescape"
        )

    def _uid_set(self, text: str) -> list[int]:
        """UIDs of this session's view in an RFC 3501 sequence set ("5", "3:7", "4:*", "1,3")."""
        top = max(self._view, default=0)
        chosen: set[int] = set()
        for part in text.split(","):
            low, _, high = part.partition(":")
            try:
                first = top if low == "*" else int(low)
                last = first if not high else top if high == "*" else int(high)
            except ValueError:
                raise _ImapSyntaxError("invalid sequence set") from None
            first, last = min(first, last), max(first, last)
            chosen.update(uid for uid in self._view if first <= uid <= last)
        return sorted(chosen)

    def _matches(self, box: FakeMailbox, uid: int, criteria: list[_ImapToken]) -> bool:
        flags = self._view_flags.get(uid, frozenset())
        data = box.message(uid) or b""
        i = 0
        while i < len(criteria):
            key = criteria[i].upper() if isinstance(criteria[i], str) else ""
            if key == "ALL":
                i += 1
            elif key in ("DELETED", "UNDELETED", "FLAGGED", "SEEN"):
                flag = "\\" + key.removeprefix("UN").capitalize()
                if (flag in flags) == key.startswith("UN"):
                    return False
                i += 1
            elif key == "HEADER":
                name, value = self._string(criteria, i + 1), self._string(criteria, i + 2)
                if not _header_matches(data, name, value):
                    return False
                i += 3
            else:
                raise _ImapSyntaxError(f"search key {key or criteria[i]!r} not supported")
        return True

    def _search(self, tag: str, args: list[_ImapToken], *, by_uid: bool = False) -> list[_Action]:
        box, refused = self._shared(tag)
        if box is None:
            return refused
        out = self._updates()
        found = [
            str(uid if by_uid else seq)
            for seq, uid in enumerate(self._view, 1)
            if self._matches(box, uid, args)
        ]
        line = "* SEARCH" + "".join(f" {n}" for n in found) + "\r\n"
        return [*out, line.encode(), self._reply(tag, "OK", "Search completed.")]

    def _uid_fetch(self, tag: str, args: list[_ImapToken]) -> list[_Action]:
        box, refused = self._shared(tag)
        if box is None:
            return refused
        out = self._updates()
        for uid in self._uid_set(self._string(args, 0)):
            seq = self._view.index(uid) + 1
            out.append(self._fetch_line(seq, uid, self._view_flags[uid]))
        return [*out, self._reply(tag, "OK", "Fetch completed.")]

    def _uid_store(self, tag: str, args: list[_ImapToken]) -> list[_Action]:
        box, refused = self._shared(tag)
        if box is None:
            return refused
        uids = self._uid_set(self._string(args, 0))
        item = self._string(args, 1).upper()
        mode = item[0] if item[:1] in ("+", "-") else ""
        if item.lstrip("+-") not in ("FLAGS", "FLAGS.SILENT") or len(args) < 3:
            raise _ImapSyntaxError("STORE needs FLAGS and a flag list")
        value = args[2]
        flags = {f for f in (value if isinstance(value, list) else [value]) if isinstance(f, str)}
        box.set_flags(uids, mode, flags)
        now = dict(box.snapshot())
        out: list[_Action] = []
        for uid in uids:
            if uid in now:
                self._view_flags[uid] = now[uid]
                if not item.endswith(".SILENT"):
                    out.append(self._fetch_line(self._view.index(uid) + 1, uid, now[uid]))
        return [*out, self._reply(tag, "OK", "Store completed.")]

    def _expunge(self, tag: str, args: list[_ImapToken]) -> list[_Action]:
        box, refused = self._shared(tag)
        if box is None:
            return refused
        box.expunge()
        return [*self._updates(), self._reply(tag, "OK", "Expunge completed.")]

    def _uid_expunge(self, tag: str, args: list[_ImapToken]) -> list[_Action]:
        box, refused = self._shared(tag)
        if box is None:
            return refused
        if not box.uidplus:
            return [self._reply(tag, "BAD", "Unknown command UID EXPUNGE.")]
        box.expunge(set(self._uid_set(self._string(args, 0))))
        return [*self._updates(), self._reply(tag, "OK", "Expunge completed.")]

    def _uid(self, tag: str, args: list[_ImapToken]) -> list[_Action]:
        sub = self._string(args, 0).upper()
        rest = args[1:]
        if sub == "SEARCH":
            return self._search(tag, rest, by_uid=True)
        if sub == "FETCH":
            return self._uid_fetch(tag, rest)
        if sub == "STORE":
            return self._uid_store(tag, rest)
        if sub == "EXPUNGE":
            return self._uid_expunge(tag, rest)
        return [self._reply(tag, "BAD", f"Unknown command UID {sub}.")]

    _HANDLERS: ClassVar[dict[str, Callable[[_ImapSession, str, list[_ImapToken]], list[_Action]]]]
    _AUTHENTICATED_ONLY = frozenset(
        {
            "UID",
            "SEARCH",
            "EXPUNGE",
            "ENABLE",
            "NAMESPACE",
            "LIST",
            "XLIST",
            "SELECT",
            "EXAMINE",
            "STATUS",
            "GETQUOTAROOT",
            "GETQUOTA",
            "CLOSE",
            "UNSELECT",
            "CHECK",
        }
    )


_ImapSession._HANDLERS = {
    "CAPABILITY": _ImapSession._capability,
    "NOOP": _ImapSession._noop,
    "LOGOUT": _ImapSession._logout,
    "STARTTLS": _ImapSession._starttls,
    "LOGIN": _ImapSession._login,
    "AUTHENTICATE": _ImapSession._authenticate,
    "ID": _ImapSession._id,
    "ENABLE": _ImapSession._enable,
    "NAMESPACE": _ImapSession._namespace,
    "LIST": _ImapSession._list,
    "XLIST": _ImapSession._xlist,
    "SELECT": _ImapSession._select,
    "EXAMINE": _ImapSession._examine,
    "STATUS": _ImapSession._status,
    "GETQUOTAROOT": _ImapSession._getquotaroot,
    "GETQUOTA": _ImapSession._getquota,
    "CLOSE": _ImapSession._close,
    "UNSELECT": _ImapSession._close,
    "CHECK": _ImapSession._check,
    "UID": _ImapSession._uid,
    "SEARCH": _ImapSession._search,
    "EXPUNGE": _ImapSession._expunge,
}


# POP3 ---------------------------------------------------------------------


class _Pop3Session(_Session):
    """POP3 (RFC 1939) with CAPA (RFC 2449), STLS (RFC 2595) and AUTH (RFC 5034)."""

    # RFC 2449 §4 allows 255 octets per command; be a little generous.
    max_line = 1024

    def __init__(self, config: _SessionConfig, *, tls_active: bool, hooks: _Hooks) -> None:
        super().__init__(config, tls_active=tls_active, hooks=hooks)
        self._user: str | None = None
        self._sasl_pending = False
        self._deleted: set[int] = set()

    def greeting(self) -> bytes:
        return f"+OK {self.config.hostname} POP3 ready.\r\n".encode("utf-8", "surrogateescape")

    def throttled(self) -> bytes:
        return b"-ERR [SYS/TEMP] too many connections\r\n"

    def unavailable(self) -> list[_Action]:
        return [b"-ERR [SYS/PERM] service disabled\r\n", _Signal.CLOSE]

    def early_talker(self) -> bytes:
        return b"-ERR Protocol violation: client talked before the greeting.\r\n"

    def huge_line_prefix(self) -> bytes:
        return b"+OK "

    def idle_timeout(self) -> bytes:
        return b"-ERR Disconnected for inactivity.\r\n"

    def line_too_long(self) -> bytes:
        return b"-ERR Line too long.\r\n"

    def capabilities(self) -> list[str]:
        caps = ["CAPA", "TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if not self.authenticated:
            if self._starttls_advertised:
                caps.append("STLS")
            if self._may_authenticate:
                caps += ["USER", "SASL PLAIN"]
            elif self._cram_md5_announced:
                caps.append("SASL CRAM-MD5")
            elif self._oauth_announced:
                caps.append("SASL XOAUTH2 OAUTHBEARER")
        caps.append("IMPLEMENTATION maildiag-fake")
        return caps

    @staticmethod
    def _multiline(first: str, lines: list[bytes]) -> bytes:
        # RFC 1939 §3: byte-stuff lines starting with "." and end with ".".
        body = b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines)
        return f"+OK {first}\r\n".encode("utf-8", "surrogateescape") + body + b".\r\n"

    def _line(self, line: bytes) -> list[_Action]:
        self._record(line)
        if self._sasl_pending:
            self._sasl_pending = False
            return self._sasl_plain(line)
        name, _, rest = line.decode("utf-8", "surrogateescape").partition(" ")
        name = name.upper()
        args = rest.split()
        if name == "QUIT":
            return [b"+OK Logging out.\r\n", _Signal.CLOSE]
        if name == "CAPA":
            caps = [c.encode() for c in self.capabilities()]
            return [self._multiline("Capability list follows", caps)]
        if name == "NOOP":
            return [b"+OK\r\n"]
        if not self.authenticated:
            return self._authorization(name, args, rest)
        return self._transaction(name, args)

    def _plaintext_refused(self) -> list[_Action]:
        return [
            b"-ERR [AUTH] Plaintext authentication disallowed on non-secure "
            b"(SSL/TLS) connections.\r\n"
        ]

    def _login(self, user: str, password: str | None) -> list[_Action]:
        refusal = self._refusal(user)
        if refusal is not None:
            return [refusal.encode("utf-8", "surrogateescape") + b"\r\n"]
        if self._auth_temporarily_down:
            return [b"-ERR [SYS/TEMP] Temporary authentication failure.\r\n"]
        if not self._check_login(user, password):
            return [b"-ERR [AUTH] Authentication failed.\r\n"]
        self.authenticated = True
        return [b"+OK Logged in.\r\n"]

    def _authorization(self, name: str, args: list[str], rest: str) -> list[_Action]:
        if name == "STLS":
            return self._stls()
        if name == "USER":
            if not self._may_authenticate:
                return self._plaintext_refused()
            if not rest:
                return [b"-ERR Missing user name.\r\n"]
            self._user = rest
            return [b"+OK\r\n"]
        if name == "PASS":
            if not self._may_authenticate:
                return self._plaintext_refused()
            if self._user is None:
                return [b"-ERR No user name given.\r\n"]
            user, self._user = self._user, None
            return self._login(user, rest)  # RFC 1939 §7: the password may contain spaces
        if name == "AUTH":
            return self._auth(args)
        if name == "APOP":
            return [b"-ERR APOP not supported.\r\n"]
        if name in ("STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET"):
            return [b"-ERR Not logged in.\r\n"]
        return [b"-ERR Unknown command.\r\n"]

    def _stls(self) -> list[_Action]:
        mode = self.config.starttls
        if self.tls_active:
            return [b"-ERR TLS is already active.\r\n"]
        if mode is _StartTls.ABSENT:
            return [b"-ERR Unknown command.\r\n"]
        if mode is _StartTls.REFUSE:
            return [b"-ERR TLS not available.\r\n"]
        ok = b"+OK Begin TLS negotiation now.\r\n"
        if self.config.starttls_injection:
            ok += self._multiline("Capability list follows", [b"USER", b"SASL PLAIN"])
        return [ok, _Signal.STALL_TLS if mode is _StartTls.STALL else _Signal.START_TLS]

    def _auth(self, args: list[str]) -> list[_Action]:
        if not args:  # no mechanism: list them (the pre-RFC 5034 convention)
            return [self._multiline("", [b"PLAIN"] if self._may_authenticate else [])]
        if args[0].upper() != "PLAIN":
            return [b"-ERR Unsupported authentication mechanism.\r\n"]
        if not self._may_authenticate:
            return self._plaintext_refused()
        if len(args) > 1:
            return self._sasl_plain(b"" if args[1] == "=" else args[1].encode())
        self._sasl_pending = True
        return [b"+ \r\n"]

    def _sasl_plain(self, response: bytes) -> list[_Action]:
        if response == b"*":  # RFC 5034 §4: the client cancelled
            return [b"-ERR Authentication aborted.\r\n"]
        creds = _decode_sasl_plain(response)
        if creds is None:
            return [b"-ERR Invalid base64 data.\r\n"]
        return self._login(*creds)

    def _message_number(self, args: list[str], index: int = 0) -> int | None:
        try:
            n = int(args[index])
        except (IndexError, ValueError):
            return None
        if 1 <= n <= len(self._messages) and n not in self._deleted:
            return n
        return None

    def _live(self) -> list[int]:
        return [n for n in range(1, len(self._messages) + 1) if n not in self._deleted]

    def _transaction(self, name: str, args: list[str]) -> list[_Action]:
        if name == "STAT":
            live = self._live()
            size = sum(len(self._messages[n - 1]) for n in live)
            return [f"+OK {len(live)} {size}\r\n".encode("utf-8", "surrogateescape")]
        if name in ("LIST", "UIDL"):

            def value(n: int) -> str:
                return str(len(self._messages[n - 1])) if name == "LIST" else f"fake-{n}"

            if args:
                n = self._message_number(args)
                if n is None:
                    return [b"-ERR No such message.\r\n"]
                return [f"+OK {n} {value(n)}\r\n".encode("utf-8", "surrogateescape")]
            lines = [f"{n} {value(n)}".encode() for n in self._live()]
            return [self._multiline(f"{len(lines)} messages", lines)]
        if name in ("RETR", "TOP"):
            n = self._message_number(args)
            if n is None:
                return [b"-ERR No such message.\r\n"]
            message = self._messages[n - 1]
            if name == "TOP":
                header, _, body = message.partition(b"\r\n\r\n")
                try:
                    keep = max(0, int(args[1]))
                except (IndexError, ValueError):
                    return [b"-ERR Usage: TOP msg lines.\r\n"]
                message = header + b"\r\n\r\n" + b"\r\n".join(body.split(b"\r\n")[:keep])
            return [
                self._multiline("Message follows", message.removesuffix(b"\r\n").split(b"\r\n"))
            ]
        if name == "DELE":
            n = self._message_number(args)
            if n is None:
                return [b"-ERR No such message.\r\n"]
            self._deleted.add(n)
            return [b"+OK Marked to be deleted.\r\n"]
        if name == "RSET":
            self._deleted.clear()
            return [b"+OK\r\n"]
        if name in ("USER", "PASS", "AUTH", "APOP", "STLS"):
            return [b"-ERR Already logged in.\r\n"]
        return [b"-ERR Unknown command.\r\n"]


# SMTP ---------------------------------------------------------------------


class _SmtpSession(_Session):
    """SMTP submission (RFC 5321, RFC 6409) with STARTTLS (RFC 3207) and AUTH (RFC 4954)."""

    # RFC 5321 §4.5.3.1.4 says 512 octets, extensions may add more.
    max_line = 4096

    def __init__(self, config: _SessionConfig, *, tls_active: bool, hooks: _Hooks) -> None:
        super().__init__(config, tls_active=tls_active, hooks=hooks)
        self._greeted = False
        self._refusing = False  # after a 554 greeting: RFC 5321 §3.1
        self._mail_from = False
        self._recipients = 0
        self._in_data = False
        self._auth_state: str | None = None  # "plain", "login-user", "login-pass"
        self._auth_user = ""
        self._data: list[bytes] = []
        self.queued = 0

    def greeting(self) -> bytes:
        banner = (self.config.mx_replies or {}).get("banner")
        if banner is not None:
            # RFC 5321 §3.1: after a 554 banner, 503 to everything but QUIT.
            self._refusing = banner.startswith("5")
            return banner.encode("utf-8", "surrogateescape") + b"\r\n"
        return f"220 {self.config.hostname} ESMTP maildiag fake server\r\n".encode(
            "utf-8", "surrogateescape"
        )

    def _mx_reply(self, step: str) -> bytes | None:
        line = (self.config.mx_replies or {}).get(step)
        return None if line is None else line.encode("utf-8", "surrogateescape") + b"\r\n"

    def throttled(self) -> bytes:
        return b"421 4.7.0 Too many connections, try again later\r\n"

    def unavailable(self) -> list[_Action]:
        # RFC 5321 §3.1: after a 554 greeting the server waits for QUIT and
        # answers 503 to anything else, so the session stays open.
        self._refusing = True
        return [
            f"554 5.3.2 {self.config.hostname} Service currently unavailable\r\n".encode(
                "utf-8", "surrogateescape"
            )
        ]

    def early_talker(self) -> bytes:
        return b"554 5.5.0 Improper pipelining/early talker\r\n"

    def huge_line_prefix(self) -> bytes:
        return b"220 "

    def idle_timeout(self) -> bytes:
        return b"421 4.4.2 Error: timeout exceeded\r\n"

    def line_too_long(self) -> bytes:
        return b"500 5.5.0 Line too long\r\n"

    def tls_started(self) -> None:
        super().tls_started()
        # RFC 3207 §4.2: forget everything learned before the handshake.
        self._greeted = False
        self._reset_transaction()

    def _reset_transaction(self) -> None:
        self._mail_from = False
        self._recipients = 0

    def ehlo_keywords(self) -> list[str]:
        keywords = ["PIPELINING"]
        if self.config.smtp_size is not None:
            keywords.append(f"SIZE {self.config.smtp_size}")
        if self._starttls_advertised:
            keywords.append("STARTTLS")
        if self._may_authenticate and not self.authenticated:
            keywords.append("AUTH PLAIN LOGIN")
        elif self._cram_md5_announced:
            keywords.append("AUTH CRAM-MD5")
        elif self._oauth_announced:
            keywords.append("AUTH XOAUTH2 OAUTHBEARER")
        keywords += ["ENHANCEDSTATUSCODES", "8BITMIME"]
        return keywords

    @staticmethod
    def _reply(code: int, text: str) -> bytes:
        return f"{code} {text}\r\n".encode("utf-8", "surrogateescape")

    def _line(self, line: bytes) -> list[_Action]:
        if self._in_data:
            if line == b".":
                self._in_data = False
                self._reset_transaction()
                self.queued += 1
                if self.config.mailbox is not None:
                    self.config.mailbox.deliver(b"".join(ln + b"\r\n" for ln in self._data))
                self._data = []
                return [self._reply(250, f"2.0.0 Ok: queued as FAKE{self.queued:04d}")]
            if self.config.mailbox is not None:
                # RFC 5321 §4.5.2: remove the dot that transparency added.
                self._data.append(line[1:] if line.startswith(b".") else line)
            return []
        self._record(line)
        if self._auth_state is not None:
            return self._auth_continue(line)
        verb, _, rest = line.decode("utf-8", "surrogateescape").partition(" ")
        verb = verb.upper()
        rest = rest.strip()
        if verb == "QUIT":
            return [self._reply(221, "2.0.0 Bye"), _Signal.CLOSE]
        if self._refusing:
            return [self._reply(503, "5.5.1 Error: no service here, send QUIT")]
        if verb == "EHLO":
            if not rest:
                return [self._reply(501, "5.5.4 Syntax: EHLO hostname")]
            refusal = self._mx_reply("ehlo")
            if refusal is not None:
                return [refusal]
            self._greeted = True
            self._reset_transaction()
            lines = [self.config.hostname, *self.ehlo_keywords()]
            text = "".join(f"250-{ln}\r\n" for ln in lines[:-1]) + f"250 {lines[-1]}\r\n"
            return [text.encode()]
        if verb == "HELO":
            if not rest:
                return [self._reply(501, "5.5.4 Syntax: HELO hostname")]
            self._greeted = True
            self._reset_transaction()
            return [self._reply(250, self.config.hostname)]
        if verb == "NOOP":
            return [self._reply(250, "2.0.0 Ok")]
        if verb == "RSET":
            self._reset_transaction()
            return [self._reply(250, "2.0.0 Ok")]
        if verb == "VRFY":
            return [self._reply(252, "2.0.0 Cannot VRFY user, but will accept message")]
        if verb == "STARTTLS":
            return self._starttls(rest)
        if verb == "AUTH":
            return self._auth(rest)
        if verb in ("MAIL", "RCPT", "DATA"):
            return self._transaction(verb)
        return [self._reply(502, "5.5.2 Error: command not recognized")]

    def _starttls(self, rest: str) -> list[_Action]:
        mode = self.config.starttls
        if self.tls_active:
            return [self._reply(554, "5.5.1 Error: TLS already active")]
        if mode is _StartTls.ABSENT:
            return [self._reply(502, "5.5.1 Error: command not recognized")]
        if rest:
            return [self._reply(501, "5.5.4 Syntax: STARTTLS")]
        if mode is _StartTls.REFUSE:
            return [self._reply(454, "4.7.0 TLS not available")]
        ok = self._reply(220, "2.0.0 Ready to start TLS")
        if self.config.starttls_injection:
            ok += b"250-" + self.config.hostname.encode() + b"\r\n250 AUTH PLAIN LOGIN\r\n"
        return [ok, _Signal.STALL_TLS if mode is _StartTls.STALL else _Signal.START_TLS]

    def _auth(self, rest: str) -> list[_Action]:
        if not self._greeted:
            return [self._reply(503, "5.5.1 Error: send HELO/EHLO first")]
        if self.authenticated:
            return [self._reply(503, "5.5.1 Error: already authenticated")]
        if not self._may_authenticate:
            # RFC 3207 §4: a server may require TLS before AUTH.
            return [self._reply(530, "5.7.0 Must issue a STARTTLS command first")]
        mechanism, _, initial = rest.partition(" ")
        mechanism = mechanism.upper()
        if mechanism == "PLAIN":
            if initial:
                return self._auth_plain(b"" if initial == "=" else initial.encode())
            self._auth_state = "plain"
            return [b"334 \r\n"]
        if mechanism == "LOGIN":
            if initial:
                user = _b64decode_text(initial.encode())
                if user is None:
                    return [self._reply(501, "5.5.2 Cannot decode response")]
                self._auth_user = user
                self._auth_state = "login-pass"
                return [b"334 UGFzc3dvcmQ6\r\n"]  # "Password:"
            self._auth_state = "login-user"
            return [b"334 VXNlcm5hbWU6\r\n"]  # "Username:"
        return [self._reply(504, "5.5.4 Unrecognized authentication type")]

    def _auth_continue(self, line: bytes) -> list[_Action]:
        state, self._auth_state = self._auth_state, None
        if line == b"*":  # RFC 4954 §4: the client cancelled
            return [self._reply(501, "5.7.0 Authentication aborted")]
        if state == "plain":
            return self._auth_plain(line)
        text = _b64decode_text(line)
        if text is None:
            return [self._reply(501, "5.5.2 Cannot decode response")]
        if state == "login-user":
            self._auth_user = text
            self._auth_state = "login-pass"
            return [b"334 UGFzc3dvcmQ6\r\n"]
        return self._authenticated(self._auth_user, text)

    def _auth_plain(self, response: bytes) -> list[_Action]:
        creds = _decode_sasl_plain(response)
        if creds is None:
            return [self._reply(501, "5.5.2 Cannot decode response")]
        return self._authenticated(*creds)

    def _authenticated(self, user: str, password: str | None) -> list[_Action]:
        refusal = self._refusal(user)
        if refusal is not None:
            return [refusal.encode("utf-8", "surrogateescape") + b"\r\n"]
        if self._auth_temporarily_down:
            return [self._reply(454, "4.7.0 Temporary authentication failure")]
        if not self._check_login(user, password):
            return [self._reply(535, "5.7.8 Authentication credentials invalid")]
        self.authenticated = True
        return [self._reply(235, "2.7.0 Authentication successful")]

    def _transaction(self, verb: str) -> list[_Action]:
        if not self._greeted:
            return [self._reply(503, "5.5.1 Error: send HELO/EHLO first")]
        if self.config.mx_replies is not None:
            return self._mx_transaction(verb)
        if not self.authenticated:
            # RFC 6409 §4.3: submission requires authentication.
            return [self._reply(530, "5.7.0 Authentication required")]
        if verb == "MAIL":
            if self._mail_from:
                return [self._reply(503, "5.5.1 Error: nested MAIL command")]
            if self.config.mail_from_reply is not None:
                return [f"{self.config.mail_from_reply}\r\n".encode()]
            self._mail_from = True
            return [self._reply(250, "2.1.0 Ok")]
        if verb == "RCPT":
            if not self._mail_from:
                return [self._reply(503, "5.5.1 Error: need MAIL command")]
            self._recipients += 1
            return [self._reply(250, "2.1.5 Ok")]
        if not self._recipients:
            return [self._reply(503, "5.5.1 Error: need RCPT command")]
        self._in_data = True
        return [self._reply(354, "End data with <CR><LF>.<CR><LF>")]

    def _mx_transaction(self, verb: str) -> list[_Action]:
        """Port 25: anyone may name a sender and recipients; DATA is refused (and recorded)."""
        if verb == "MAIL":
            reply = self._mx_reply("mail") or self._reply(250, "2.1.0 Ok")
            self._mail_from = reply.startswith(b"2")
            return [reply]
        if verb == "RCPT":
            if not self._mail_from:
                return [self._reply(503, "5.5.1 Error: need MAIL command")]
            return [self._mx_reply("rcpt") or self._reply(250, "2.1.5 Ok")]
        return [self._reply(554, "5.5.1 Error: this fake MX takes no DATA")]


_SESSIONS: Mapping[str, type[_Session]] = {
    "imap": _ImapSession,
    "pop3": _Pop3Session,
    "smtp": _SmtpSession,
}


# --------------------------------------------------------------------------
# Transport
# --------------------------------------------------------------------------


def _http_garbage(rng: random.Random) -> bytes:
    """What a web server says when a mail client knocks on its door."""
    alphabet = string.ascii_letters + string.digits + " .,;:-_!?"
    junk = "".join(rng.choice(alphabet) for _ in range(300))
    body = (
        "<html><head><title>400 Bad Request</title></head>"
        f"<body><h1>400 Bad Request</h1><p>{junk}</p></body></html>\r\n"
    ).encode()
    head = (
        "HTTP/1.1 400 Bad Request\r\n"
        "Server: nginx\r\n"
        "Content-Type: text/html\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "\r\n"
    ).encode()
    return head + body


# Sizes SPLIT_REPLIES cuts replies into, cycling: single bytes and odd chunks,
# so a CRLF or a status code is regularly split across two segments.
_SPLIT_SIZES = (1, 1, 2, 3, 1, 5, 7, 1, 4)
_SPLIT_PAUSE = 0.001
_HUGE_CHUNK = b"x" * 65536
_LINGER = 1.0  # seconds to drain a client after we closed our side


class _Stopping(Exception):
    pass


class FakeMailServer:
    """One listening endpoint that speaks IMAP, POP3 or SMTP and misbehaves on demand.

    ``delay`` is the greeting delay of SLOW_GREETING and the banner wait of
    EARLY_TALKER_REJECT (0.5 s when left at 0). ``quota`` is (used KiB,
    limit KiB) for IMAP GETQUOTAROOT, None for a server without QUOTA.
    ``messages`` is the number of fake messages in INBOX. ``idle_timeout``
    closes connections whose client went quiet. ``mailbox`` (a FakeMailbox
    shared with the other servers of a host) replaces the per-session INBOX
    of IMAP and receives what SMTP submission accepts. ``smtp_size`` is the
    EHLO SIZE limit in bytes (None: no SIZE line); ``mail_from_reply`` the
    line that answers MAIL FROM after a login (None: "250 2.1.0 Ok").
    ``login_refusal`` is a provider's refusal sent to every login (IMAP: the
    status and text after the tag). ``login_alerts`` are IMAP [ALERT] texts
    sent with every successful login.
    ``mx_replies`` makes an SMTP server an MX on port 25 (see
    ``_SessionConfig.mx_replies``).
    ``folders`` are the IMAP folders besides INBOX with their special use
    (empty, STATUS only), shown as ``folder_style`` says.

    Port 0 picks a free port; read it back from ``port`` after ``start()``.
    """

    def __init__(
        self,
        protocol: str,
        address: str,
        port: int,
        *,
        implicit_tls: bool,
        behaviour: Behaviour = Behaviour.HEALTHY,
        ssl_context: ssl.SSLContext | None = None,
        delay: float = 0.0,
        users: Mapping[str, str] | None = None,
        hostname: str = "mail.example.test",
        quota: Quota = (51200, 1048576),
        messages: int = 3,
        idle_timeout: float = 60.0,
        mailbox: FakeMailbox | None = None,
        gauge: ConnectionGauge | None = None,
        login_failure_delay: float = 0.0,
        echo_failed_logins: bool = False,
        smtp_size: int | None = 35882577,
        mail_from_reply: str | None = None,
        login_refusal: str | None = None,
        login_alerts: tuple[str, ...] = (),
        mx_replies: Mapping[str, str] | None = None,
        folders: tuple[tuple[str, str | None], ...] = DEFAULT_FOLDERS,
        folder_style: FolderStyle = FolderStyle.SPECIAL_USE,
    ) -> None:
        if protocol not in _SESSIONS:
            raise ValueError(f"unknown protocol {protocol!r}; expected one of {sorted(_SESSIONS)}")
        behaviour = Behaviour(behaviour)
        if implicit_tls and ssl_context is None and behaviour not in _NO_TLS_NEEDED:
            raise ValueError(
                f"{protocol} on port {port} uses implicit TLS and needs an ssl_context"
            )
        self.protocol = protocol
        self.address = address
        self.port = port
        self.implicit_tls = implicit_tls
        self.behaviour = behaviour
        self.ssl_context = ssl_context
        self.delay = delay
        self.hostname = hostname
        self.idle_timeout = idle_timeout
        self._config = _SessionConfig(
            hostname=hostname,
            users=dict(DEFAULT_USERS if users is None else users),
            starttls=self._starttls_mode(behaviour, ssl_context),
            plaintext_auth=behaviour is Behaviour.PLAINTEXT_LOGIN,
            quota=quota,
            messages=messages,
            auth_fault=behaviour if behaviour in _AUTH_FAULTS else None,
            mailbox=mailbox,
            login_failure_delay=login_failure_delay,
            echo_failed_logins=echo_failed_logins,
            smtp_size=smtp_size,
            mail_from_reply=mail_from_reply,
            starttls_injection=behaviour is Behaviour.STARTTLS_INJECTION,
            login_refusal=login_refusal,
            login_alerts=login_alerts,
            mx_replies=mx_replies,
            folders=folders,
            folder_style=FolderStyle(folder_style),
        )
        # One lock guards every counter, the live-socket table and the lists;
        # the condition lets tests wait for a state instead of sleeping.
        self._lock = threading.RLock()  # re-entrant: wait_for predicates read properties
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._fillers: list[socket.socket] = []
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._live: dict[int, socket.socket] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._received: list[ReceivedCommand] = []
        self.gauge = gauge
        self._gauged: set[int] = set()
        self._errors: list[BaseException] = []
        self._rng = random.Random(port)  # reproducible junk for GARBAGE/BINARY
        self.connections_total = 0
        self.current_connections = 0
        self.max_concurrent_connections = 0
        self.failed_logins = 0
        self.successful_logins = 0
        self.tls_handshakes = 0
        self.tls_handshake_failures = 0
        self.bytes_sent = 0
        self.injected_bytes = 0

    @staticmethod
    def _starttls_mode(behaviour: Behaviour, ctx: ssl.SSLContext | None) -> _StartTls:
        if behaviour is Behaviour.NO_STARTTLS:
            return _StartTls.ABSENT
        if behaviour is Behaviour.STARTTLS_REFUSED:
            return _StartTls.REFUSE
        if behaviour is Behaviour.TLS_STALL:
            return _StartTls.STALL
        # Without a certificate there is nothing to upgrade to.
        return _StartTls.OFFER if ctx is not None else _StartTls.ABSENT

    def __repr__(self) -> str:
        tls = "tls" if self.implicit_tls else "plain"
        return f"<FakeMailServer {self.protocol}/{tls} {self.address}:{self.port} {self.behaviour}>"

    # -- observations -----------------------------------------------------------

    @property
    def commands(self) -> list[bytes]:
        """Every command line received so far, in order (a snapshot copy)."""
        with self._lock:
            return [r.line for r in self._received]

    @property
    def plaintext_commands(self) -> list[bytes]:
        """The command lines received outside TLS (a snapshot copy)."""
        with self._lock:
            return [r.line for r in self._received if not r.tls]

    @property
    def received(self) -> list[ReceivedCommand]:
        """Commands with their connection number and TLS state (a snapshot copy)."""
        with self._lock:
            return list(self._received)

    @property
    def errors(self) -> list[BaseException]:
        """Unexpected exceptions raised while serving (a broken fake, not a rude client)."""
        with self._lock:
            return list(self._errors)

    def wait_for(self, predicate: Callable[[FakeMailServer], bool], timeout: float = 5.0) -> bool:
        """Wait until ``predicate(self)`` holds; False if it still doesn't after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    # -- lifecycle ---------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        if self._listener is not None or self._stopping.is_set():
            raise RuntimeError(f"{self!r} can only be started once")
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.address, self.port))
            self.port = listener.getsockname()[1]
            if self.behaviour is Behaviour.FILTERED:
                self._listener = listener
                self._fill_accept_queue(family)
                return self
            listener.listen(min(socket.SOMAXCONN, 1024))
            listener.setblocking(False)
        except BaseException:
            listener.close()
            self._close_fillers()
            self._listener = None
            raise
        self._listener = listener
        self._wake_r, self._wake_w = socket.socketpair()
        self._accept_thread = threading.Thread(
            target=self._accept_loop,
            name=f"fake-mail-accept-{self.address}:{self.port}",
            daemon=True,
        )
        self._accept_thread.start()
        return self

    def _fill_accept_queue(self, family: int) -> None:
        """Make the port drop SYNs, so a client's connect() times out.

        No firewall needed (and none is installed here): with listen(0) the
        accept queue holds one connection. We never accept(), and take that
        slot with a connection of our own. While the queue is full, Linux's
        tcp_conn_request() drops every new SYN ("goto drop" after
        sk_acceptq_is_full(), counted as TcpExtListenOverflows), and that
        check comes after the syncookie decision, so syncookies do not
        answer either. tcp_abort_on_overflow only matters for the final ACK
        of a handshake, which never happens here. The client sees what a
        filtering firewall gives it: silence, then its own timeout.

        Rather than trust the theory, check it: add our own connections
        until one times out. At least one must have fitted first (listen(0)
        still queues one), so a slow connect cannot pass for a full queue.
        """
        assert self._listener is not None
        self._listener.listen(0)
        for _ in range(8):
            probe = socket.socket(family, socket.SOCK_STREAM)
            probe.settimeout(0.1)
            try:
                probe.connect((self.address, self.port))
            except TimeoutError:
                probe.close()
                if self._fillers:
                    return
                continue
            except OSError:
                probe.close()
                raise
            self._fillers.append(probe)
        raise RuntimeError(
            f"cannot emulate a filtered port on {self.address}:{self.port}: "
            "the kernel keeps accepting connections into a full accept queue"
        )

    def _close_fillers(self) -> None:
        for s in self._fillers:
            s.close()
        self._fillers.clear()

    def stop(self, timeout: float = 2.0) -> None:
        """Close the listener and every connection; wait for the threads to end."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        if self._accept_thread is not None:
            self._accept_thread.join(timeout)
        for s in (self._listener, self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        self._close_fillers()
        with self._lock:
            for conn in self._live.values():
                # socket.socket.shutdown, not SSLSocket.shutdown: the latter
                # tears down SSL state another thread is using. Shutting the
                # descriptor down wakes that thread's blocking recv/send/
                # handshake; the thread then closes its own socket. The lock
                # guarantees the descriptor was not closed and reused yet.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(conn, socket.SHUT_RDWR)
            threads = list(self._threads.values())
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        leftover = [t.name for t in threads if t.is_alive()]
        if leftover:
            log.warning("%r: connection threads still running after stop: %s", self, leftover)

    # -- accepting ---------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None and self._wake_r is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r:
                        return
                    try:
                        conn, _peer = self._listener.accept()
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        # EMFILE and friends: back off instead of spinning.
                        log.warning("%r: accept failed: %s", self, exc)
                        self._stopping.wait(0.05)
                        continue
                    self._spawn(conn)

    def _spawn(self, conn: socket.socket) -> None:
        conn.settimeout(self.idle_timeout)
        # SPLIT_REPLIES depends on each small send leaving as its own segment.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._changed:
            if self._stopping.is_set():
                conn.close()
                return
            self.connections_total += 1
            conn_id = self.connections_total
            self.current_connections += 1
            self.max_concurrent_connections = max(
                self.max_concurrent_connections, self.current_connections
            )
            self._live[conn_id] = conn
            if self.gauge is not None:
                self.gauge.enter()
                self._gauged.add(conn_id)
            thread = threading.Thread(
                target=self._serve,
                args=(conn_id,),
                name=f"fake-mail-{self.protocol}-{self.address}:{self.port}#{conn_id}",
                daemon=True,
            )
            self._threads[conn_id] = thread
            self._changed.notify_all()
        thread.start()

    # -- one connection ----------------------------------------------------------

    def _serve(self, conn_id: int) -> None:
        try:
            self._converse(conn_id)
        except (_Stopping, OSError):
            # The client hung up, reset, timed out or failed TLS (SSLError is
            # an OSError): all normal for a server that provokes clients.
            pass
        except Exception as exc:  # a bug in the fake itself: make it visible
            log.exception("%r: connection %d failed", self, conn_id)
            with self._lock:
                self._errors.append(exc)
        finally:
            self._ungauge(conn_id)
            with self._changed:
                conn = self._live.pop(conn_id)
                conn.close()
                self._threads.pop(conn_id, None)
                self.current_connections -= 1
                self._changed.notify_all()

    def _ungauge(self, conn_id: int) -> None:
        with self._lock:
            if conn_id in self._gauged:
                self._gauged.discard(conn_id)
                assert self.gauge is not None
                self.gauge.leave()

    def _conn(self, conn_id: int) -> socket.socket:
        with self._lock:
            return self._live[conn_id]

    def _new_session(self, conn_id: int, tls_active: bool) -> _Session:
        def on_command(line: bytes, tls: bool) -> None:
            with self._changed:
                self._received.append(ReceivedCommand(conn_id, tls, line))
                self._changed.notify_all()

        def on_login(user: str, ok: bool) -> None:
            with self._changed:
                if ok:
                    self.successful_logins += 1
                else:
                    self.failed_logins += 1
                self._changed.notify_all()

        hooks = _Hooks(command=on_command, login=on_login)
        return _SESSIONS[self.protocol](self._config, tls_active=tls_active, hooks=hooks)

    def _converse(self, conn_id: int) -> None:
        b = self.behaviour
        if b is Behaviour.CLOSE_IMMEDIATELY:
            return
        tls = False
        if self.implicit_tls and b not in (
            Behaviour.PLAINTEXT_ON_TLS_PORT,
            Behaviour.THROTTLE_BEFORE_TLS,
        ):
            if b is Behaviour.TLS_STALL:
                self._hold(conn_id)  # read the ClientHello and never answer it
                return
            self._handshake(conn_id)
            tls = True
        session = self._new_session(conn_id, tls)

        if b is Behaviour.NEVER_GREET:
            self._hold(conn_id)
            return
        if b is Behaviour.SLOW_GREETING and self._stopping.wait(self.delay):
            return
        if b is Behaviour.EARLY_TALKER_REJECT:
            early = self._early_talk(conn_id, self.delay or 0.5)
            if early is None:
                return  # the client gave up during the wait
            if early:
                self._record_raw(conn_id, session, early)
                self._send(conn_id, session.early_talker())
                self._close_gently(conn_id)
                return
        if b in (Behaviour.THROTTLE, Behaviour.THROTTLE_BEFORE_TLS):
            self._send(conn_id, session.throttled())
            self._close_gently(conn_id)
            return
        if b is Behaviour.GARBAGE:
            self._send(conn_id, _http_garbage(self._rng))
            self._close_gently(conn_id)
            return
        if b is Behaviour.BINARY:
            # Start with bytes that are neither text nor a TLS record header.
            self._send(conn_id, b"\x00\xff\xfe" + self._rng.randbytes(4093))
            self._hold(conn_id)
            return
        if b is Behaviour.HUGE_LINE:
            self._stream_huge_line(conn_id, session.huge_line_prefix())
            self._hold(conn_id)
            return

        if b is Behaviour.UNAVAILABLE:
            if self._run_actions(conn_id, session, session.unavailable()):
                return
        elif b is Behaviour.PREAUTH and isinstance(session, _ImapSession):
            self._send(conn_id, session.preauth_greeting())
        else:
            self._send(conn_id, session.greeting())
        if b is Behaviour.CLOSE_AFTER_GREETING:
            self._close_gently(conn_id)
            return

        while True:
            try:
                data = self._conn(conn_id).recv(65536)
            except TimeoutError:
                self._send(conn_id, session.idle_timeout())
                return
            if not data:
                return
            if self._run_actions(conn_id, session, session.receive(data)):
                return

    def _run_actions(self, conn_id: int, session: _Session, actions: list[_Action]) -> bool:
        """Carry out a session's actions; True when the connection is finished."""
        if _Signal.CLOSE in actions:
            self._ungauge(conn_id)  # the goodbye is on its way: no longer counted
        for action in actions:
            if isinstance(action, bytes):
                self._send(conn_id, action)
            elif action is _Signal.START_TLS:
                with self._lock:
                    self.injected_bytes += session.injected_bytes
                session.injected_bytes = 0
                self._handshake(conn_id)
                session.tls_started()
            elif isinstance(action, _Pause):
                if self._stopping.wait(action.seconds):
                    return True
            elif action is _Signal.STALL_TLS:
                self._hold(conn_id)
                return True
            else:
                self._close_gently(conn_id)
                return True
        return False

    def _record_raw(self, conn_id: int, session: _Session, data: bytes) -> None:
        for line in data.splitlines() or [data]:
            session._hooks.command(line, session.tls_active)

    def _handshake(self, conn_id: int) -> None:
        assert self.ssl_context is not None
        with self._lock:
            if self._stopping.is_set():
                raise _Stopping
            # wrap_socket detaches the plain socket object; swap the new one
            # into the live table under the lock so stop() can always reach
            # the descriptor.
            tls = self.ssl_context.wrap_socket(
                self._live[conn_id], server_side=True, do_handshake_on_connect=False
            )
            self._live[conn_id] = tls
        assert isinstance(tls, ssl.SSLSocket)
        try:
            tls.do_handshake()
        except OSError:
            if not self._stopping.is_set():
                with self._changed:
                    self.tls_handshake_failures += 1
                    self._changed.notify_all()
            raise
        with self._changed:
            self.tls_handshakes += 1
            self._changed.notify_all()

    def _send(self, conn_id: int, data: bytes) -> None:
        conn = self._conn(conn_id)
        if self.behaviour is not Behaviour.SPLIT_REPLIES:
            conn.sendall(data)
            self._count_sent(len(data))
            return
        pos, i = 0, 0
        while pos < len(data):
            if self._stopping.is_set():
                raise _Stopping
            size = _SPLIT_SIZES[i % len(_SPLIT_SIZES)]
            conn.sendall(data[pos : pos + size])
            self._count_sent(min(size, len(data) - pos))
            pos += size
            i += 1
            time.sleep(_SPLIT_PAUSE)

    def _count_sent(self, n: int) -> None:
        with self._lock:
            self.bytes_sent += n

    def _stream_huge_line(self, conn_id: int, prefix: bytes) -> None:
        """Stream HUGE_LINE_BYTES without a newline, in 64 KiB pieces.

        Memory stays at one chunk whatever the length; a client that gives
        up makes sendall fail (EPIPE/ECONNRESET), a client that stops
        reading makes it time out: either ends the stream.
        """
        conn = self._conn(conn_id)
        conn.sendall(prefix)
        self._count_sent(len(prefix))
        remaining = HUGE_LINE_BYTES - len(prefix)
        while remaining > 0:
            if self._stopping.is_set():
                raise _Stopping
            chunk = _HUGE_CHUNK if remaining >= len(_HUGE_CHUNK) else _HUGE_CHUNK[:remaining]
            conn.sendall(chunk)
            self._count_sent(len(chunk))
            remaining -= len(chunk)

    def _hold(self, conn_id: int) -> None:
        """Keep the connection open, saying nothing, until the client leaves.

        Whatever the client sends is read and dropped (a ClientHello for
        TLS_STALL) so it never blocks on a full window.
        """
        conn = self._conn(conn_id)
        while not self._stopping.is_set():
            try:
                if not conn.recv(65536):
                    return
            except TimeoutError:
                return

    def _early_talk(self, conn_id: int, wait: float) -> bytes | None:
        """Like Postfix postscreen's pregreet test: does the client talk first?

        Returns b"" if the client stayed quiet for ``wait`` seconds, what it
        said if it did not, or None if it hung up.
        """
        conn = self._conn(conn_id)
        if isinstance(conn, ssl.SSLSocket) and conn.pending():
            return conn.recv(65536) or None
        readable, _, _ = select.select([conn], [], [], wait)
        if self._stopping.is_set():
            raise _Stopping
        if not readable:
            return b""
        try:
            data = conn.recv(65536)
        except ssl.SSLWantReadError:  # a TLS record that carried no data
            return b""
        return data or None

    def _close_gently(self, conn_id: int) -> None:
        """Send FIN, then drain briefly before the final close.

        Closing a socket that still has unread input makes the kernel send a
        RST, and a RST can overtake our last reply: the client would see
        "connection reset" instead of the 421 or BYE it should diagnose.
        """
        conn = self._conn(conn_id)
        with contextlib.suppress(OSError):
            socket.socket.shutdown(conn, socket.SHUT_WR)
        raw = socket.socket.recv  # the TLS layer is done; read raw bytes
        conn.settimeout(_LINGER)
        deadline = time.monotonic() + _LINGER
        while time.monotonic() < deadline and not self._stopping.is_set():
            try:
                if not raw(conn, 65536):
                    return
            except (TimeoutError, OSError):
                return


class FakeMailHost:
    """All six standard mail endpoints of one host on one address, and its MX on 25.

    ``behaviours`` maps endpoint keys (see ``ENDPOINTS``) to a Behaviour; a
    missing key is HEALTHY and None means nothing listens (connection
    refused). ``ports`` overrides the standard port of any key.
    ``login_refusals`` maps a protocol ("imap", "pop3", "smtp") to the
    ``login_refusal`` of its servers. ``mx`` (default True) also listens on
    port 25 as an MX that accepts every recipient (``host.mx``). Other keyword
    arguments are passed to every FakeMailServer.
    """

    def __init__(
        self,
        address: str,
        ssl_context: ssl.SSLContext | None,
        *,
        behaviours: Mapping[str, Behaviour | None] | None = None,
        hostname: str = "mail.example.test",
        users: Mapping[str, str] | None = None,
        ports: Mapping[str, int] | None = None,
        delay: float = 0.0,
        quota: Quota = (51200, 1048576),
        messages: int = 3,
        idle_timeout: float = 60.0,
        mailbox: FakeMailbox | None = None,
        login_failure_delay: float = 0.0,
        echo_failed_logins: bool = False,
        smtp_size: int | None = 35882577,
        mail_from_reply: str | None = None,
        login_refusals: Mapping[str, str] | None = None,
        login_alerts: tuple[str, ...] = (),
        folders: tuple[tuple[str, str | None], ...] = DEFAULT_FOLDERS,
        folder_style: FolderStyle = FolderStyle.SPECIAL_USE,
        mx: bool = True,
    ) -> None:
        behaviours = dict(behaviours or {})
        ports = dict(ports or {})
        unknown = (set(behaviours) | set(ports)) - set(ENDPOINTS)
        if unknown:
            raise ValueError(f"unknown endpoint keys {sorted(unknown)}; use {list(ENDPOINTS)}")
        self.address = address
        self.hostname = hostname
        self.gauge = ConnectionGauge()  # connections to this address, all ports
        self.servers: dict[str, FakeMailServer] = {}
        for key, (protocol, port, implicit_tls) in ENDPOINTS.items():
            behaviour = behaviours.get(key, Behaviour.HEALTHY)
            if behaviour is None:
                continue
            if implicit_tls and ssl_context is None and behaviour not in _NO_TLS_NEEDED:
                raise ValueError(
                    f"endpoint {key!r} uses implicit TLS and needs an ssl_context; "
                    f"pass behaviours={{{key!r}: None}} to leave it closed"
                )
            self.servers[key] = FakeMailServer(
                protocol,
                address,
                ports.get(key, port),
                implicit_tls=implicit_tls,
                behaviour=behaviour,
                ssl_context=ssl_context,
                delay=delay,
                users=users,
                hostname=hostname,
                quota=quota,
                messages=messages,
                idle_timeout=idle_timeout,
                mailbox=mailbox,
                gauge=self.gauge,
                login_failure_delay=login_failure_delay,
                echo_failed_logins=echo_failed_logins,
                smtp_size=smtp_size,
                mail_from_reply=mail_from_reply,
                login_refusal=(login_refusals or {}).get(protocol),
                login_alerts=login_alerts,
                folders=folders,
                folder_style=folder_style,
            )
        # Port 25 as the domain's MX, accepting mail for any address (no DATA),
        # as a provider's mail host does: a check with --user asks it about the
        # address. Not in ``servers``, which are the six client endpoints.
        self.mx: FakeMailServer | None = (
            FakeMailServer(
                "smtp",
                address,
                25,
                implicit_tls=False,
                ssl_context=ssl_context,
                hostname=hostname,
                idle_timeout=idle_timeout,
                gauge=self.gauge,
                mx_replies={},
            )
            if mx
            else None
        )

    def __getitem__(self, key: str) -> FakeMailServer:
        return self.servers[key]

    def port(self, key: str) -> int:
        """The port of an endpoint (also for a closed one: its would-be port)."""
        if key in self.servers:
            return self.servers[key].port
        return ENDPOINTS[key][1]

    def _all(self) -> list[FakeMailServer]:
        return [*self.servers.values(), *([self.mx] if self.mx is not None else [])]

    def start(self) -> Self:
        started: list[FakeMailServer] = []
        try:
            for server in self._all():
                started.append(server.start())
        except BaseException:
            for server in started:
                server.stop()
            raise
        return self

    def stop(self) -> None:
        for server in self._all():
            server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
