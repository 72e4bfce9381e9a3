"""Sync latency (opt-in, because it writes to the mailbox).

Two measurements, on connections of their own after the probes:

1. Delivery: a uniquely marked message goes from the user to the user through
   SMTP submission; the clock runs from the moment its last byte is handed to
   the submission server until an IMAP session watching the INBOX sees it
   (IDLE where offered, RFC 2177, else NOOP polling).
2. Cross-client sync: with two IMAP sessions on the INBOX, one sets
   \\Flagged on the probe message (by UID) and the clock runs until the other
   is told.

Then exactly that message is removed: UID STORE +FLAGS (\\Deleted) and UID
EXPUNGE (RFC 4315, UIDPLUS). Without UIDPLUS a plain EXPUNGE would also remove
every other message the user marked \\Deleted, so it is only sent when SEARCH
DELETED finds nothing but the probe; otherwise the message is left marked
and the report says so. A final UID SEARCH by header checks it is gone.
"""

from __future__ import annotations

import secrets
import ssl
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from email.utils import formatdate

from msgspec import Struct

from .. import tls
from ..credentials_input import Credentials
from ..deadline import Deadline, DeadlineExceeded
from ..model import (
    AuthStatus,
    Outcome,
    Phase,
    ProbeResult,
    Protocol,
    Security,
    SyncMethod,
    SyncResult,
)
from ..protocols import imap, smtp
from ..protocols.lines import ProtocolError
from ..transport import Connection, ReadTimeout, TransportError
from . import auth
from .endpoint import ProbeSettings, _is_ip_literal
from .sessions import (
    Dialogue,
    IdleRefused,
    ImapSession,
    Session,
    SessionRefused,
    SmtpSession,
    Stop,
    establish,
    open_session,
)

# How long to wait for the probe message, and for the flag change, at most
# (both also bounded by the run's deadline).
DELIVERY_WAIT_SECONDS = 60.0
FLAG_WAIT_SECONDS = 20.0
# NOOP polling interval when IDLE is not offered: short enough that the
# measured latency is the server's, not ours.
POLL_INTERVAL_SECONDS = 0.05
# Left of the run's deadline when a wait gives up, for the clean-up and LOGOUT.
CLEANUP_RESERVE_SECONDS = 1.5
SUBJECT_PREFIX = "maildiag sync probe"


class SyncError(Exception):
    """A step of the sync measurement failed; the message says which, for people."""


class _Measured(Struct):
    delivery_latency_s: float | None = None
    delivery_method: SyncMethod | None = None
    flag_sync_latency_s: float | None = None
    flag_sync_method: SyncMethod | None = None
    sent: bool = False
    cleaned_up: bool = True
    cleanup_note: str | None = None

    def result(self, error: str | None = None, *, not_measured: bool = False) -> SyncResult:
        notes = [n for n in (error, self.cleanup_note) if n]
        return SyncResult(
            not_measured=not_measured,
            delivery_latency_s=self.delivery_latency_s,
            delivery_method=self.delivery_method,
            flag_sync_latency_s=self.flag_sync_latency_s,
            flag_sync_method=self.flag_sync_method,
            cleaned_up=self.cleaned_up,
            error="; ".join(notes) or None,
        )


def pick_endpoint(results: tuple[ProbeResult, ...], protocol: Protocol) -> ProbeResult | None:
    """A probed endpoint of ``protocol`` where the login worked; implicit TLS first."""
    usable = [
        r
        for r in results
        if r.endpoint.protocol is protocol
        and r.outcome is Outcome.OK
        and r.address is not None
        and r.endpoint.security is not Security.PLAIN
        and r.auth is not None
        and r.auth.status == AuthStatus.OK
    ]
    usable.sort(key=lambda r: r.endpoint.security is not Security.TLS)
    return usable[0] if usable else None


def probe_address(user: str, domain: str) -> str:
    """The address the probe message goes from and to: the user name, or user@domain."""
    return user if "@" in user else f"{user}@{domain}"


def probe_message(address: str, token: str) -> bytes:
    lines = [
        f"From: {address}",
        f"To: {address}",
        f"Subject: {SUBJECT_PREFIX} {token}",
        f"Date: {formatdate(localtime=False, usegmt=True)}",
        f"Message-ID: <{token}@maildiag.invalid>",
        # RFC 3834 §5: no vacation or other automatic replies to this message.
        "Auto-Submitted: auto-generated",
        f"X-Maildiag-Probe: {token}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "maildiag sent this message to itself to measure how long delivery and",
        "synchronisation take, and deletes it again right away. If you can read",
        "it, the clean-up failed: it is safe to delete.",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def measure_sync(
    results: tuple[ProbeResult, ...],
    credentials: Credentials,
    settings: ProbeSettings,
    deadline: Deadline,
    *,
    domain: str,
) -> SyncResult:
    """Runs both measurements and the clean-up; never raises."""
    imap_result = pick_endpoint(results, Protocol.IMAP)
    smtp_result = pick_endpoint(results, Protocol.SMTP)
    if imap_result is None or smtp_result is None:
        missing = " and ".join(
            name
            for name, found in (("IMAP", imap_result), ("SMTP submission", smtp_result))
            if found is None
        )
        return _Measured().result(
            f"not measured: no {missing} endpoint where the login worked", not_measured=True
        )
    measured = _Measured()
    run = _SyncRun(imap_result, smtp_result, credentials, settings, deadline, domain, measured)
    try:
        run.measure()
    except (SyncError, TransportError, ProtocolError, SessionRefused, DeadlineExceeded) as exc:
        run.try_cleanup_after_error()
        return measured.result(str(exc) or type(exc).__name__)
    finally:
        run.close()
    return measured.result()


class _SyncRun:
    def __init__(
        self,
        imap_result: ProbeResult,
        smtp_result: ProbeResult,
        credentials: Credentials,
        settings: ProbeSettings,
        deadline: Deadline,
        domain: str,
        measured: _Measured,
    ) -> None:
        self.imap_result = imap_result
        self.smtp_result = smtp_result
        self.creds = credentials
        self.settings = settings
        self.deadline = deadline
        self.address = probe_address(credentials.user, domain)
        self.token = "maildiag-" + secrets.token_hex(12)
        self.measured = measured
        self.sessions: list[Session] = []
        self.watcher: ImapSession | None = None
        self.writer: ImapSession | None = None
        self.writer_caps: tuple[str, ...] = ()
        self.uid: int | None = None

    # -- connections -------------------------------------------------------------

    def _open(self, result: ProbeResult) -> tuple[Session, tuple[str, ...]]:
        endpoint = result.endpoint
        assert result.address is not None
        conn = Connection.open(
            result.address, endpoint.port, timeout=self.settings.timeout, deadline=self.deadline
        )
        session = open_session(endpoint.protocol, conn)
        self.sessions.append(session)
        name = None if _is_ip_literal(endpoint.host) else endpoint.host
        context = tls.client_context(self.settings.ca_file)
        dialogue = establish(
            session,
            endpoint.security,
            lambda: _start_tls(conn, context, name),
            _untimed,
            Dialogue(),
        )
        if dialogue.stop is Stop.GREETING:
            assert dialogue.greeting is not None
            raise SyncError(f"{endpoint.label} refused the session: {dialogue.greeting.text}")
        if dialogue.stop is not None:
            raise SyncError(f"{endpoint.label} refused STARTTLS this time")
        assert dialogue.current is not None
        self._check_same_certificate(result, conn)
        if dialogue.current.data.password_login() is None:
            raise SyncError(f"{endpoint.label} no longer offers a login mechanism")
        return session, dialogue.current.capabilities

    @staticmethod
    def _check_same_certificate(result: ProbeResult, conn: Connection) -> None:
        # The probe verified this server's certificate before logging in; the
        # password goes only to a server presenting that same certificate.
        expected = result.tls.leaf.fingerprint_sha256 if result.tls and result.tls.leaf else None
        chain = tls.peer_chain_der(conn.tls_socket)
        seen = tls.describe_certificate(chain[0]).fingerprint_sha256 if chain else None
        if expected is None or seen != expected:
            raise SyncError(
                f"{result.endpoint.label} presented another certificate than during the probe"
            )

    def _imap_session(self) -> tuple[ImapSession, tuple[str, ...]]:
        session, caps = self._open(self.imap_result)
        assert isinstance(session, ImapSession)
        result, after = auth.imap_login(session, self.creds, caps)
        if result.status != AuthStatus.OK:
            raise SyncError(f"IMAP login failed this time: {result.detail}")
        untagged, done = session.run("SELECT", "INBOX")
        if not done.ok:
            raise SyncError(f"SELECT INBOX failed: {done.status} {done.text}")
        return session, tuple(c.upper() for c in after)

    def close(self) -> None:
        for session in self.sessions:
            try:
                session.close()
            except (TransportError, ProtocolError, SessionRefused, DeadlineExceeded):
                pass
            finally:
                session.conn.close()
        self.sessions.clear()

    # -- the measurement -----------------------------------------------------------

    def measure(self) -> None:
        self.watcher, watcher_caps = self._imap_session()
        self.writer, self.writer_caps = self._imap_session()
        idle = "IDLE" in watcher_caps
        method = SyncMethod.IDLE if idle else SyncMethod.NOOP_POLL

        waiter = _Waiter(self.watcher, idle)
        waiter.start()
        sent_at = self._submit()
        until = time.monotonic() + self._budget(DELIVERY_WAIT_SECONDS)
        while True:
            seen_at = waiter.wait(lambda r: r.keyword == "EXISTS", until)
            if seen_at is None:
                waiter.stop()
                raise SyncError(f"the probe message did not arrive within {until - sent_at:.0f} s")
            waiter.stop()
            uid = self._find(self.watcher)
            if uid is not None:
                break
            waiter.start()
        self.uid = uid
        self.measured.delivery_latency_s = max(0.0, seen_at - sent_at)
        self.measured.delivery_method = method

        seq = self._sequence_number(self.watcher, uid)
        # The writer must know the message before it may change it.
        self.writer.run("NOOP")
        waiter.start()
        changed_at = time.monotonic()
        _, done = self.writer.run("UID STORE", str(uid), "+FLAGS.SILENT", b"(\\Flagged)")
        if not done.ok:
            waiter.stop()
            raise SyncError(f"setting \\Flagged failed: {done.status} {done.text}")
        until = time.monotonic() + self._budget(FLAG_WAIT_SECONDS)
        seen_at = waiter.wait(lambda r: _flagged(r, seq, uid), until)
        waiter.stop()
        if seen_at is None:
            self._cleanup()
            raise SyncError(
                f"the other IMAP session was not told about the flag change within "
                f"{until - changed_at:.0f} s"
            )
        self.measured.flag_sync_latency_s = max(0.0, seen_at - changed_at)
        self.measured.flag_sync_method = method
        self._cleanup()

    def _budget(self, limit: float) -> float:
        return max(0.0, min(limit, self.deadline.remaining() - CLEANUP_RESERVE_SECONDS))

    def _submit(self) -> float:
        """Sends the probe message; returns when its last byte left (monotonic)."""
        session, caps = self._open(self.smtp_result)
        assert isinstance(session, SmtpSession)
        result = auth.smtp_login(session, self.creds, caps)
        if result.status != AuthStatus.OK:
            raise SyncError(f"SMTP login failed this time: {result.detail}")
        steps: list[tuple[bytes, Callable[[smtp.Reply], bool], str]] = [
            (smtp.mail_from_command(self.address), lambda r: r.code == 250, "MAIL FROM"),
            (smtp.rcpt_to_command(self.address), lambda r: r.code in (250, 251), "RCPT TO"),
            (smtp.DATA_COMMAND, lambda r: r.code == 354, "DATA"),
        ]
        for command, accepted, name in steps:
            reply = session.run(command)
            if not accepted(reply):
                raise SyncError(f"the submission server refused {name}: {reply}")
        sent_at = time.monotonic()
        self.measured.sent = True
        self.measured.cleaned_up = False
        reply = session.send_message(probe_message(self.address, self.token))
        if reply.code != 250:
            self.measured.cleaned_up = True  # refused: nothing was queued
            raise SyncError(f"the submission server refused the message: {reply}")
        return sent_at

    def _find(self, session: ImapSession) -> int | None:
        untagged, done = session.run("UID SEARCH", "HEADER", "Message-ID", self.token)
        if not done.ok:
            raise SyncError(f"UID SEARCH failed: {done.status} {done.text}")
        uids = [uid for r in untagged if r.keyword == "SEARCH" for uid in imap.parse_search(r)]
        return max(uids) if uids else None

    @staticmethod
    def _sequence_number(session: ImapSession, uid: int) -> int | None:
        untagged, _ = session.run("UID FETCH", str(uid), b"(FLAGS)")
        for response in untagged:
            if response.keyword == "FETCH":
                return response.number
        return None

    # -- clean-up ------------------------------------------------------------------

    def _cleanup(self) -> None:
        session = self.writer
        assert session is not None
        if self.uid is None:
            self.uid = self._find(session)
        if self.uid is None:
            # Not (yet) delivered: nothing to remove now, but it may still arrive.
            self.measured.cleaned_up = False
            self.measured.cleanup_note = (
                f"the probe message (subject '{SUBJECT_PREFIX} {self.token}') was not found "
                "to delete; if it arrives later it stays in the INBOX"
            )
            return
        uid = str(self.uid)
        _, done = session.run("UID STORE", uid, "+FLAGS.SILENT", b"(\\Deleted)")
        if not done.ok:
            raise SyncError(f"marking the probe message deleted failed: {done.text}")
        if "UIDPLUS" in self.writer_caps:
            _, done = session.run("UID EXPUNGE", uid)  # RFC 4315 §2.1
        else:
            untagged, _ = session.run("UID SEARCH", "DELETED")
            deleted = {n for r in untagged if r.keyword == "SEARCH" for n in imap.parse_search(r)}
            others = deleted - {self.uid}
            if others:
                self.measured.cleaned_up = False
                self.measured.cleanup_note = (
                    f"the server has no UIDPLUS and {len(others)} other message(s) are marked "
                    "deleted, which a plain EXPUNGE would remove too; the probe message was "
                    "left in the INBOX, marked deleted"
                )
                return
            # The window between SEARCH and EXPUNGE is a round trip; another
            # client marking a message deleted inside it is the remaining risk.
            _, done = session.run("EXPUNGE")
        if not done.ok:
            raise SyncError(f"expunging the probe message failed: {done.status} {done.text}")
        self.measured.cleaned_up = self._find(session) is None
        if not self.measured.cleaned_up:
            self.measured.cleanup_note = "the probe message is still there after EXPUNGE"

    def try_cleanup_after_error(self) -> None:
        if not self.measured.sent or self.measured.cleaned_up or self.writer is None:
            return
        if self.measured.cleanup_note is not None:
            return  # the clean-up already ran and said what it left
        try:
            self._cleanup()
        except (SyncError, TransportError, ProtocolError, SessionRefused, DeadlineExceeded):
            self.measured.cleaned_up = False
            if self.measured.cleanup_note is None:
                self.measured.cleanup_note = (
                    "the probe message could not be removed; look for the subject "
                    f"'{SUBJECT_PREFIX} {self.token}'"
                )
        if not self.measured.cleaned_up and self.measured.cleanup_note is None:
            self.measured.cleanup_note = (
                f"the probe message '{SUBJECT_PREFIX} {self.token}' may still be in the INBOX"
            )


def _flagged(response: imap.Untagged, seq: int | None, uid: int) -> bool:
    if response.keyword != "FETCH":
        return False
    try:
        data = imap.parse_fetch(response)
    except (ValueError, ProtocolError):
        return False
    if data.get("UID", uid) != uid or (seq is not None and response.number != seq):
        return False
    flags = data.get("FLAGS", ())
    return isinstance(flags, tuple) and any(str(f).lower() == "\\flagged" for f in flags)


class _Waiter:
    """Waits on one IMAP session for an untagged response: in IDLE, or by NOOP polling."""

    def __init__(self, session: ImapSession, idle: bool) -> None:
        self.session = session
        self.idle = idle
        self._idling = False
        self._pending: list[imap.Untagged] = []

    def start(self) -> None:
        if not self.idle:
            return
        try:
            self._pending += self.session.idle()
        except IdleRefused as exc:
            raise SyncError(f"IDLE was refused: {exc}") from exc  # RFC 2177 §3: "+ idling"
        self._idling = True

    def stop(self) -> None:
        if not self._idling:
            return
        self._idling = False
        self._pending += self.session.end_idle()

    def wait(self, wanted: Callable[[imap.Untagged], bool], until: float) -> float | None:
        """The monotonic time a ``wanted`` response arrived; None when ``until`` passed."""
        pending, self._pending = self._pending, []
        if any(wanted(r) for r in pending):
            return time.monotonic()
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return None
            if self.idle:
                try:
                    response = self.session.next_unsolicited(left)
                except ReadTimeout:
                    return None
                except IdleRefused as exc:
                    self._idling = False
                    raise SyncError(f"the server ended IDLE: {exc}") from exc
                if wanted(response):
                    return time.monotonic()
                continue
            untagged, _ = self.session.run("NOOP")
            if any(wanted(r) for r in untagged):
                return time.monotonic()
            time.sleep(min(POLL_INTERVAL_SECONDS, max(0.0, until - time.monotonic())))


def _start_tls(conn: Connection, context: ssl.SSLContext, name: str | None) -> None:
    conn.start_tls(context, name)


def _untimed(phase: Phase) -> AbstractContextManager[None]:
    return nullcontext()


__all__ = ["SyncError", "measure_sync", "pick_endpoint", "probe_message"]
