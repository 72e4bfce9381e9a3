"""The inbound path: would the domain's MX accept mail for the address?

For each MX, in preference order and all at once: connect to port 25, wait
for the banner, EHLO, STARTTLS when offered, then ``MAIL FROM:<>`` and
``RCPT TO:<address>``, then ``RSET`` and ``QUIT``. DATA is never sent, so
nothing is delivered. The null reverse-path is what bounces and sender
verification callouts use (RFC 5321 §4.5.5); an MX must accept it.

Every step has the run's per-step timeout and ends with the run's deadline.
Like every probe, this never raises: what happened is an ``MxAttempt``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import NoReturn

from msgspec import Struct, field

from .. import tls
from ..deadline import Deadline, DeadlineExceeded
from ..limits import HostLimiter
from ..model import (
    Discovery,
    InboundResult,
    InboundStep,
    InboundVerdict,
    MxAttempt,
    MxOutcome,
    TlsFacts,
)
from ..protocols import smtp
from ..protocols.lines import ProtocolError
from ..transport import (
    Connection,
    ConnectRefused,
    ConnectTimeout,
    PeerClosed,
    ReadTimeout,
    TlsHandshakeError,
    TransportError,
    Unreachable,
)
from .endpoint import ProbeSettings
from .sessions import CLIENT_NAME, GreetingKind, SessionRefused, SmtpSession

SMTP_PORT = 25
# MX hosts talked to; senders rarely go further down the list either.
MAX_MX = 5

AddressLookup = Callable[[str, Deadline], list[str]]

# --------------------------------------------------------------------------
# What a reply means (no I/O)

_GREY = ("greylist", "graylist", "grey-list", "gray-list", "greylisted", "graylisted")
_FULL = ("quota", "mailbox full", "mailbox is full", "insufficient storage")
_UNKNOWN = (
    "user unknown",
    "unknown user",
    "no such user",
    "no such mailbox",
    "unknown recipient",
    "recipient unknown",
    "does not exist",
    "invalid recipient",
    "mailbox unavailable",
    "recipientnotfound",
    # Microsoft 365's directory-based edge blocking: the tenant has no such recipient.
    "recipient address rejected: access denied",
)
_RELAY = ("relay", "not local", "non-accepted domain", "not permitted to relay", "no such domain")
_BLOCK = (
    "block",
    "blacklist",
    "denylist",
    "spamhaus",
    "spamcop",
    "barracuda",
    "dnsbl",
    "rbl",
    "listed",
    "reputation",
    "banned",
    "client host",
    "helo",
    "ehlo",
    "reverse dns",
    "rdns",
    "ptr record",
    "not allowed to connect",
)
# RFC 3463 §3.2: X.1.1 bad destination mailbox, X.1.0 other address status,
# X.1.6 mailbox moved; 5.1.10 is Microsoft's "recipient not found".
_UNKNOWN_STATUS = re.compile(r"[45]\.1\.(?:0|1|6|10)$")


def classify_reply(code: int, enhanced: str | None, text: str, step: InboundStep) -> InboundVerdict:
    """The verdict of one SMTP reply to our dialogue (a pure function of its words)."""
    if 200 <= code < 300:
        return InboundVerdict.ACCEPTED
    words = text.lower()
    at_rcpt = step is InboundStep.RCPT
    if any(w in words for w in _GREY):
        return InboundVerdict.GREYLISTED
    # RFC 3463 §3.3: X.2.2 mailbox full; RFC 5321 §4.2.2: 552 exceeded storage allocation.
    if (
        (enhanced or "").endswith(".2.2")
        or (at_rcpt and code == 552)
        or any(w in words for w in _FULL)
    ):
        return InboundVerdict.MAILBOX_FULL
    if at_rcpt and (_UNKNOWN_STATUS.match(enhanced or "") or any(w in words for w in _UNKNOWN)):
        return InboundVerdict.UNKNOWN_USER
    # 551 user not local (RFC 5321 §4.2.2); Postfix "554 5.7.1 Relay access denied";
    # Exchange "550 5.7.54 Unable to relay recipient in non-accepted domain".
    if at_rcpt and (code == 551 or any(w in words for w in _RELAY)):
        return InboundVerdict.RELAY_DENIED
    if any(w in words for w in _BLOCK) or (
        step in (InboundStep.BANNER, InboundStep.EHLO) and code >= 500
    ):
        return InboundVerdict.BLOCKED
    # Greylisting answers 450/451 with any detail; X.3 (mail system) and X.4
    # (network, routing) are the MX's own trouble, not a request to retry.
    if at_rcpt and code in (450, 451) and not (enhanced or "").startswith(("4.3.", "4.4.")):
        return InboundVerdict.GREYLISTED
    return InboundVerdict.DEFERRED if code < 500 else InboundVerdict.REJECTED


# --------------------------------------------------------------------------
# Running the dialogues


def check_inbound(
    address: str,
    discovery: Discovery,
    lookup: AddressLookup,
    settings: ProbeSettings,
    deadline: Deadline,
    *,
    host_limiter: HostLimiter | None = None,
) -> InboundResult:
    """Asks every MX of the domain (at most ``MAX_MX``) about ``address``, all at once.

    The MX hosts' addresses come from discovery; without MX records the
    domain itself is the implicit MX (RFC 5321 §5.1), and a null MX
    (RFC 7505) means there is nobody to ask.
    """
    targets = _targets(discovery)
    if not targets:
        return InboundResult(address)
    with ThreadPoolExecutor(max_workers=len(targets), thread_name_prefix="inbound") as pool:
        futures = [
            pool.submit(_attempt, target, address, lookup, settings, deadline, host_limiter)
            for target in targets
        ]
        _, pending = wait(futures, timeout=deadline.wait_timeout())
        if pending:
            # Every step is bounded by the deadline already; this shuts down
            # the sockets still open, so no dialogue is left blocked.
            deadline.cancel()
        # Leaving the block waits for every dialogue: none outlives the run.
    attempts = tuple(f.result() for f in futures)
    unfinished = any(a.outcome is MxOutcome.DEADLINE for a in attempts)
    return InboundResult(address, attempts, unfinished=unfinished)


class _Target(Struct, frozen=True):
    preference: int
    host: str
    addresses: tuple[str, ...] | None  # None: still to be looked up
    implicit: bool = False
    dns_error: str | None = None


def _targets(discovery: Discovery) -> list[_Target]:
    if any(m.null for m in discovery.mx):
        return []
    if not discovery.mx:
        if not discovery.domain_exists:
            return []
        return [_Target(0, discovery.domain_ascii, None, implicit=True)]
    resolved = {h.host: h for h in discovery.mx_hosts}
    targets = []
    for record in discovery.mx[:MAX_MX]:
        host = resolved.get(record.host)
        if host is None:
            targets.append(_Target(record.preference, record.host, None))
        else:
            targets.append(
                _Target(record.preference, record.host, host.addresses, dns_error=host.error)
            )
    return targets


class _Recorder(Struct):
    """What one dialogue has learned so far; frozen into an ``MxAttempt`` at the end."""

    target: _Target
    step: InboundStep = InboundStep.DNS
    address: str | None = None
    banner: str | None = None
    starttls_offered: bool | None = None
    tls: TlsFacts | None = None
    tls_error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timing(self, step: InboundStep) -> Iterator[None]:
        self.step = step
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.timings[step.value] = self.timings.get(step.value, 0.0) + elapsed

    def ended(
        self,
        outcome: MxOutcome,
        *,
        error: str | None = None,
        verdict: InboundVerdict | None = None,
        reply: str | None = None,
    ) -> MxAttempt:
        return MxAttempt(
            preference=self.target.preference,
            host=self.target.host,
            outcome=outcome,
            step=self.step,
            address=self.address,
            implicit=self.target.implicit,
            verdict=verdict,
            reply=reply,
            error=error,
            banner=self.banner,
            starttls_offered=self.starttls_offered,
            tls=self.tls,
            tls_error=self.tls_error,
            timings=dict(self.timings),
        )


class _Verdict(Exception):
    """The MX answered something that decides the attempt (raised out of the dialogue)."""

    def __init__(self, reply: smtp.Reply | str, code: int, enhanced: str | None) -> None:
        super().__init__(str(reply))
        self.text = str(reply)
        self.code = code
        self.enhanced = enhanced


def _attempt(
    target: _Target,
    address: str,
    lookup: AddressLookup,
    settings: ProbeSettings,
    deadline: Deadline,
    host_limiter: HostLimiter | None,
) -> MxAttempt:
    rec = _Recorder(target)
    try:
        return _resolve_and_talk(rec, address, lookup, settings, deadline, host_limiter)
    except DeadlineExceeded as exc:
        return rec.ended(MxOutcome.DEADLINE, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - an attempt must always return a result
        return rec.ended(MxOutcome.PROTOCOL_ERROR, error=f"maildiag internal error: {exc!r}")


def _resolve_and_talk(
    rec: _Recorder,
    address: str,
    lookup: AddressLookup,
    settings: ProbeSettings,
    deadline: Deadline,
    host_limiter: HostLimiter | None,
) -> MxAttempt:
    from ..dns import DnsLookupError

    target = rec.target
    with rec.timing(InboundStep.DNS):
        addresses = target.addresses
        if addresses is None:
            try:
                addresses = tuple(lookup(target.host, deadline))
            except (DnsLookupError, TimeoutError) as exc:
                if deadline.expired or not isinstance(exc, DnsLookupError):
                    return rec.ended(MxOutcome.DEADLINE, error=f"{target.host}: not resolved")
                return rec.ended(MxOutcome.UNRESOLVED, error=f"{target.host}: {exc.detail}")
    if not addresses:
        return rec.ended(
            MxOutcome.UNRESOLVED, error=f"{target.host}: {target.dns_error or 'no address'}"
        )
    rec.address = addresses[0]
    if host_limiter is None:
        return _talk(rec, address, settings, deadline, use_tls=True)
    with host_limiter.hold(rec.address, deadline):
        return _talk(rec, address, settings, deadline, use_tls=True)


def _talk(
    rec: _Recorder, address: str, settings: ProbeSettings, deadline: Deadline, *, use_tls: bool
) -> MxAttempt:
    assert rec.address is not None
    try:
        with rec.timing(InboundStep.CONNECT):
            conn = Connection.open(
                rec.address, SMTP_PORT, timeout=settings.timeout, deadline=deadline
            )
    except ConnectRefused as exc:
        return rec.ended(MxOutcome.REFUSED, error=str(exc))
    except (ConnectTimeout, Unreachable) as exc:
        return rec.ended(MxOutcome.TIMEOUT, error=str(exc))
    except TransportError as exc:
        return rec.ended(MxOutcome.REFUSED, error=str(exc))
    session = SmtpSession(conn)
    try:
        _dialogue(rec, session, address, settings, use_tls=use_tls)
    except _Verdict as answer:
        verdict = classify_reply(answer.code, answer.enhanced, answer.text, rec.step)
        if answer.code != 421:  # after a 421 the server has closed (RFC 5321 §3.8)
            _goodbye(session, reset=rec.step in (InboundStep.MAIL, InboundStep.RCPT))
        return rec.ended(MxOutcome.ANSWERED, verdict=verdict, reply=answer.text)
    except _TlsFailed as failed:
        # Opportunistic TLS (RFC 7435): a sender whose handshake fails tries
        # again without TLS, as Postfix does at smtp_tls_security_level = may.
        rec.tls_error = str(failed)
        conn.close()
        return _talk(rec, address, settings, deadline, use_tls=False)
    except ReadTimeout as exc:
        if rec.step is InboundStep.BANNER:
            return rec.ended(MxOutcome.NO_BANNER, error=str(exc))
        return rec.ended(MxOutcome.STALLED, error=str(exc))
    except PeerClosed as exc:
        return rec.ended(MxOutcome.CLOSED, error=str(exc))
    except ProtocolError as exc:
        return rec.ended(MxOutcome.PROTOCOL_ERROR, error=str(exc))
    except TransportError as exc:
        return rec.ended(MxOutcome.CLOSED, error=str(exc))
    finally:
        conn.close()


class _TlsFailed(Exception):
    pass


def _dialogue(
    rec: _Recorder, session: SmtpSession, address: str, settings: ProbeSettings, *, use_tls: bool
) -> NoReturn:
    """Up to RCPT TO; the MX's decisive reply comes out as ``_Verdict``."""
    with rec.timing(InboundStep.BANNER):
        banner = session.greeting()
    rec.banner = banner.text
    if banner.kind is not GreetingKind.READY:
        code = int(banner.text[:3]) if banner.text[:3].isdigit() else 554
        raise _Verdict(banner.text, code, _enhanced(banner.text))
    with rec.timing(InboundStep.EHLO):
        ehlo = _ehlo(session)
    rec.starttls_offered = ehlo.starttls if ehlo is not None else False
    if use_tls and ehlo is not None and ehlo.starttls:
        with rec.timing(InboundStep.STARTTLS):
            answer = _command(session, smtp.STARTTLS_COMMAND)
        if answer.code == 220:
            with rec.timing(InboundStep.TLS):
                try:
                    _handshake(session.conn, rec, settings)
                except TlsHandshakeError as exc:
                    if exc.stalled:
                        raise ReadTimeout(str(exc)) from None
                    raise _TlsFailed(str(exc)) from None
            session.after_tls()
            # RFC 3207 §4.2: forget what was learned before TLS; EHLO again.
            with rec.timing(InboundStep.EHLO):
                _ehlo(session)
        # Otherwise (454 TLS not available) senders go on in plaintext, and so do we.
    with rec.timing(InboundStep.MAIL):
        reply = _command(session, smtp.mail_from_command(""))
    if not reply.is_positive:
        raise _Verdict(reply, reply.code, reply.enhanced_status)
    with rec.timing(InboundStep.RCPT):
        reply = _command(session, smtp.rcpt_to_command(address))
    raise _Verdict(reply, reply.code, reply.enhanced_status)


def _command(session: SmtpSession, command: bytes) -> smtp.Reply:
    try:
        return session.run(command)
    except SessionRefused as exc:
        # RFC 5321 §3.8: 421 to any command, then the server closes.
        raise _Verdict(exc.text, 421, _enhanced(exc.text)) from None


def _ehlo(session: SmtpSession) -> smtp.EhloInfo | None:
    """EHLO, or HELO for a server that refuses it (RFC 5321 §4.1.4); None after HELO."""
    reply = _command(session, smtp.ehlo_command(CLIENT_NAME))
    if reply.is_positive:
        return smtp.parse_ehlo(reply)
    if reply.code in (500, 502):
        reply = _command(session, smtp.helo_command(CLIENT_NAME))
        if reply.is_positive:
            return None
    raise _Verdict(reply, reply.code, reply.enhanced_status)


def _handshake(conn: Connection, rec: _Recorder, settings: ProbeSettings) -> None:
    host = rec.target.host
    seconds = conn.start_tls(tls.client_context(settings.ca_file), host)
    sock = conn.tls_socket
    cipher = sock.cipher()
    rec.tls = tls.analyse(
        tls.peer_chain_der(sock),
        host,
        version=sock.version() or "unknown",
        cipher=cipher[0] if cipher else "unknown",
        cipher_bits=cipher[2] if cipher else None,
        handshake_seconds=seconds,
        ca_file=settings.ca_file,
    )


def _goodbye(session: SmtpSession, *, reset: bool) -> None:
    """RSET (ending the transaction) and QUIT, without letting a rude server spoil a verdict."""
    if not session.ready:
        return  # an answer is still owed: nothing can follow it
    try:
        if reset:
            session.run(smtp.RSET_COMMAND)
        session.run(smtp.QUIT_COMMAND)
    except (TransportError, ProtocolError, SessionRefused, DeadlineExceeded):
        pass


def _enhanced(text: str) -> str | None:
    """The RFC 3463 status in "554 5.7.1 ..." (a reply as one line of text)."""
    match = re.match(r"\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})(?:\s|$)", text)
    return match.group(1) if match else None
