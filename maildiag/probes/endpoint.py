"""Probe one endpoint: connect, TLS, greeting, capabilities, STARTTLS.

Every phase is timed; the first failure ends the probe and is classified
into an ``Outcome``, so the report can tell "port blocked" from "service
down" from "TLS broken". A probe never raises: whatever happens ends up in
the ``ProbeResult``.
"""

from __future__ import annotations

import ipaddress
import time
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from msgspec import Struct, field

from .. import tls
from ..deadline import Deadline, DeadlineExceeded
from ..limits import HostLimiter
from ..model import (
    CheckAttempt,
    CheckId,
    Endpoint,
    IpFamily,
    Outcome,
    Phase,
    ProbeResult,
    TlsFacts,
    TlsFailure,
)
from ..protocols.lines import LineTooLong, ProtocolError, StarttlsInjection
from ..transport import (
    Connection,
    ConnectRefused,
    ConnectTimeout,
    PeerClosed,
    PlaintextInsteadOfTls,
    ReadTimeout,
    TlsHandshakeError,
    TransportError,
    Unreachable,
)
from .sessions import (
    Dialogue,
    GreetingKind,
    Session,
    SessionRefused,
    Stop,
    establish,
    open_session,
)

AddressLookup = Callable[[str, Deadline], list[str]]
SessionHook = Callable[[Session, "ProbeRecorder"], None]


class ConnectWatcher(typing.Protocol):
    """Told about every TCP connect a probe makes (see ``maildiag.probes.webports``)."""

    def connecting(self, address: str) -> None: ...

    def connected(self, address: str, ok: bool) -> None: ...


class ProbeSettings(Struct, frozen=True):
    timeout: float = 10.0  # per network step
    ca_file: str | None = None
    # When the connect step must be done by (time.monotonic()): the run's start
    # plus the timeout. Not part of what a cached probe is shared by (`shared_by`).
    connect_by: float | None = None

    @property
    def shared_by(self) -> tuple[float, str | None]:
        """What a probe made with these settings may be shared by (see ``runner.ProbeCache``)."""
        return (self.timeout, self.ca_file)

    def connect_timeout(self) -> float:
        """How long a connect may wait: what is left of the run's first ``timeout`` seconds.

        A silent port is given up ``timeout`` seconds after the check started
        (as the monitoring plugins' ``-t`` counts from the plugin's start), not
        that long after start-up and discovery; but never less than half the
        timeout, so a slow name server cannot shorten a connect to nothing.
        """
        if self.connect_by is None:
            return self.timeout
        left = self.connect_by - time.monotonic()
        return min(self.timeout, max(self.timeout / 2, left))


class ProbeRecorder(Struct):
    """What a probe has learned so far; frozen into a ``ProbeResult`` at the end."""

    endpoint: Endpoint
    timings: dict[str, float] = field(default_factory=dict)
    phase: Phase = Phase.DNS
    address: str | None = None
    local_address: str | None = None
    greeting: str | None = None
    server_reply: str | None = None
    capabilities: tuple[str, ...] = ()
    capabilities_tls: tuple[str, ...] = ()
    starttls_offered: bool | None = None
    plaintext_login_offered: bool | None = None
    tls: TlsFacts | None = None
    starttls_injection: str | None = None
    tls_failure: TlsFailure | None = None
    # The checks run inside the session (login, mailbox, sending), by check id.
    attempts: dict[CheckId, CheckAttempt[Any]] = field(default_factory=dict)

    @contextmanager
    def timing(self, phase: Phase) -> Iterator[None]:
        self.phase = phase
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.timings[phase.value] = self.timings.get(phase.value, 0.0) + elapsed

    def result(self, outcome: Outcome, error: str | None = None) -> ProbeResult:
        return ProbeResult(
            endpoint=self.endpoint,
            outcome=outcome,
            failed_phase=None if outcome is Outcome.OK else self.phase,
            error=error,
            address=self.address,
            local_address=self.local_address,
            timings=dict(self.timings),
            greeting=self.greeting,
            server_reply=self.server_reply,
            capabilities=self.capabilities,
            capabilities_tls=self.capabilities_tls,
            starttls_offered=self.starttls_offered,
            plaintext_login_offered=self.plaintext_login_offered,
            tls=self.tls,
            tls_failure=self.tls_failure,
            starttls_injection=self.starttls_injection,
            attempts=dict(self.attempts),
        )


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def probe_endpoint(
    endpoint: Endpoint,
    lookup: AddressLookup,
    settings: ProbeSettings,
    deadline: Deadline,
    after_capabilities: SessionHook | None = None,
    *,
    host_limiter: HostLimiter | None = None,
    watcher: ConnectWatcher | None = None,
    family: IpFamily | None = None,
) -> ProbeResult:
    """Runs the whole dialogue against one endpoint and classifies how it ended.

    ``after_capabilities`` is called inside the (encrypted) session once the
    endpoint is known to work; the mailbox checks log in from there.
    ``host_limiter`` caps simultaneous connections per server address: the
    probe holds a slot while its connection is open. ``watcher`` hears when
    the TCP connect starts and how it ended. ``family``: connect to the
    host's first address of that family instead of its first address.
    """
    rec = ProbeRecorder(endpoint)
    try:
        return _probe(
            endpoint,
            lookup,
            settings,
            deadline,
            rec,
            after_capabilities,
            host_limiter,
            watcher,
            family,
        )
    except DeadlineExceeded as exc:
        return rec.result(Outcome.DEADLINE, str(exc))
    except Exception as exc:  # noqa: BLE001 - a probe must always return a result
        return rec.result(Outcome.PROTOCOL_ERROR, f"maildiag internal error: {exc!r}")


def _probe(
    endpoint: Endpoint,
    lookup: AddressLookup,
    settings: ProbeSettings,
    deadline: Deadline,
    rec: ProbeRecorder,
    after_capabilities: SessionHook | None,
    host_limiter: HostLimiter | None = None,
    watcher: ConnectWatcher | None = None,
    family: IpFamily | None = None,
) -> ProbeResult:
    from ..dns import DnsLookupError

    with rec.timing(Phase.DNS):
        if _is_ip_literal(endpoint.host):
            addresses = [endpoint.host]
        else:
            try:
                addresses = lookup(endpoint.host, deadline)
            except (DnsLookupError, TimeoutError) as exc:
                # Time running out is not a DNS verdict: the name may resolve fine.
                if deadline.expired or not isinstance(exc, DnsLookupError):
                    return rec.result(
                        Outcome.DEADLINE, f"{endpoint.host}: not resolved before the deadline"
                    )
                return rec.result(Outcome.UNRESOLVED, f"{endpoint.host}: {exc.detail}")
        if family is not None:
            addresses = [a for a in addresses if IpFamily.of(a) is family]
        if not addresses:
            which = f"{family.label} " if family is not None else ""
            return rec.result(Outcome.UNRESOLVED, f"{endpoint.host} has no {which}address")
    rec.address = addresses[0]
    if host_limiter is None:
        return _connect_and_talk(endpoint, settings, deadline, rec, after_capabilities, watcher)
    rec.phase = Phase.CONNECT  # time spent queueing for a slot is not connect time
    with host_limiter.hold(rec.address, deadline):
        return _connect_and_talk(endpoint, settings, deadline, rec, after_capabilities, watcher)


def _connect_and_talk(
    endpoint: Endpoint,
    settings: ProbeSettings,
    deadline: Deadline,
    rec: ProbeRecorder,
    after_capabilities: SessionHook | None,
    watcher: ConnectWatcher | None = None,
) -> ProbeResult:
    assert rec.address is not None
    if watcher is not None:
        watcher.connecting(rec.address)
    try:
        with rec.timing(Phase.CONNECT):
            conn = Connection.open(
                rec.address,
                endpoint.port,
                timeout=settings.timeout,
                connect_timeout=settings.connect_timeout(),
                deadline=deadline,
            )
    except ConnectRefused as exc:
        _tell(watcher, rec.address, False)
        return rec.result(Outcome.REFUSED, str(exc))
    except (ConnectTimeout, Unreachable) as exc:
        _tell(watcher, rec.address, False)
        return rec.result(Outcome.TIMEOUT, str(exc))
    except TransportError as exc:
        _tell(watcher, rec.address, False)
        return rec.result(Outcome.REFUSED, str(exc))
    _tell(watcher, rec.address, True)
    rec.local_address = conn.local_address

    try:
        return _dialogue(endpoint, conn, settings, rec, after_capabilities)
    except TlsHandshakeError as exc:
        if exc.reason is not None:
            rec.tls_failure = exc.reason
        return rec.result(Outcome.STALLED if exc.stalled else Outcome.TLS_FAILED, str(exc))
    except ReadTimeout as exc:
        if rec.phase is Phase.GREETING:
            return rec.result(Outcome.NO_GREETING, str(exc))
        return rec.result(Outcome.STALLED, str(exc))
    except PeerClosed as exc:
        return rec.result(Outcome.CLOSED, str(exc))
    except StarttlsInjection as exc:
        rec.starttls_injection = exc.text
        return rec.result(Outcome.PROTOCOL_ERROR, str(exc))
    except LineTooLong as exc:
        return rec.result(Outcome.PROTOCOL_ERROR, f"reply line too long ({exc})")
    except ProtocolError as exc:
        return rec.result(Outcome.PROTOCOL_ERROR, str(exc))
    except SessionRefused as exc:
        rec.server_reply = exc.text
        outcome = Outcome.THROTTLED if exc.temporary else Outcome.UNAVAILABLE
        return rec.result(outcome, exc.text)
    except TransportError as exc:
        return rec.result(Outcome.CLOSED, str(exc))
    finally:
        conn.close()


def _tell(watcher: ConnectWatcher | None, address: str, ok: bool) -> None:
    if watcher is not None:
        watcher.connected(address, ok)


def _dialogue(
    endpoint: Endpoint,
    conn: Connection,
    settings: ProbeSettings,
    rec: ProbeRecorder,
    after_capabilities: SessionHook | None,
) -> ProbeResult:
    session = open_session(endpoint.protocol, conn)
    server_name = None if _is_ip_literal(endpoint.host) else endpoint.host
    dialogue = Dialogue()
    try:
        establish(
            session,
            endpoint.security,
            lambda: _handshake(conn, server_name, endpoint, settings, rec),
            rec.timing,
            dialogue,
        )
    except PlaintextInsteadOfTls as exc:
        return _plaintext_instead_of_tls(session, conn, rec, exc)
    finally:
        _record(rec, dialogue)
    greeting = dialogue.greeting
    assert greeting is not None
    if greeting.kind is GreetingKind.PREAUTH:
        # RFC 3501 §6.2.1: STARTTLS only in the not-authenticated state, so
        # on a plaintext port this connection can never be encrypted; and a
        # session nobody logged in to is no place for a password. Nothing
        # else is sent but LOGOUT (the session hook, which logs in, is skipped).
        rec.server_reply = greeting.text
        _polite_close(session)
        return rec.result(Outcome.PREAUTH, f"PREAUTH greeting: {greeting.text}")
    if greeting.kind is not GreetingKind.READY:
        rec.server_reply = greeting.text
        outcome = (
            Outcome.THROTTLED if greeting.kind is GreetingKind.THROTTLED else Outcome.UNAVAILABLE
        )
        return rec.result(outcome, greeting.text)
    if dialogue.stop is Stop.STARTTLS_MISSING:
        _polite_close(session)
        return rec.result(
            Outcome.STARTTLS_MISSING,
            f"{session.starttls_command} is not among the server's capabilities",
        )
    if dialogue.stop is Stop.STARTTLS_REFUSED:
        assert dialogue.starttls is not None
        rec.server_reply = dialogue.starttls.text
        _polite_close(session)
        return rec.result(Outcome.STARTTLS_FAILED, dialogue.starttls.text)

    if after_capabilities is not None:
        after_capabilities(session, rec)
    _polite_close(session)
    return rec.result(Outcome.OK)


def _record(rec: ProbeRecorder, dialogue: Dialogue) -> None:
    if dialogue.greeting is not None:
        rec.greeting = dialogue.greeting.text
    if dialogue.plain is not None:
        rec.capabilities = dialogue.plain.capabilities
        rec.starttls_offered = dialogue.plain.starttls
        rec.plaintext_login_offered = dialogue.plain.login_offered
    if dialogue.tls is not None:
        rec.capabilities_tls = dialogue.tls.capabilities


# Enough for any greeting or refusal (Exim's 421 is 86 bytes); more without a
# complete reply is not a mail server greeting in plaintext.
PLAINTEXT_READ_LIMIT = 4096


def _plaintext_instead_of_tls(
    session: Session, conn: Connection, rec: ProbeRecorder, exc: PlaintextInsteadOfTls
) -> ProbeResult:
    """The server answered the ClientHello in plaintext: read it as this protocol's greeting.

    A 421 / "* BYE" / "-ERR [SYS/TEMP]" is throttling (Exim refuses a
    connection over smtp_accept_max_per_host before it starts TLS, even on
    465), a refusal is a refusal, and a normal greeting means the port speaks
    plaintext where clients expect implicit TLS. Bounded by the step's
    timeout and PLAINTEXT_READ_LIMIT bytes.
    """
    conn.limit_reads(PLAINTEXT_READ_LIMIT)
    try:
        with rec.timing(Phase.GREETING):
            greeting = session.greeting()
    except (ProtocolError, TransportError) as unreadable:
        rec.phase = Phase.TLS
        rec.tls_failure = TlsFailure.PLAINTEXT
        return rec.result(Outcome.TLS_FAILED, f"{exc}, but not with a greeting ({unreadable})")
    rec.greeting = greeting.text
    # A plaintext PREAUTH is a plaintext greeting like "* OK": the port speaks
    # plaintext, which is what clients set to SSL/TLS trip over.
    if greeting.kind not in (GreetingKind.READY, GreetingKind.PREAUTH):
        rec.server_reply = greeting.text
        outcome = (
            Outcome.THROTTLED if greeting.kind is GreetingKind.THROTTLED else Outcome.UNAVAILABLE
        )
        return rec.result(outcome, f"before TLS: {greeting.text}")
    _polite_close(session)
    rec.phase = Phase.TLS
    rec.tls_failure = TlsFailure.PLAINTEXT
    return rec.result(Outcome.TLS_FAILED, f"{exc}: {greeting.text}")


def _handshake(
    conn: Connection,
    server_name: str | None,
    endpoint: Endpoint,
    settings: ProbeSettings,
    rec: ProbeRecorder,
) -> None:
    seconds = conn.start_tls(tls.client_context(settings.ca_file), server_name)
    sock = conn.tls_socket
    cipher = sock.cipher()
    rec.tls = tls.analyse(
        tls.peer_chain_der(sock),
        endpoint.host,
        version=sock.version() or "unknown",
        cipher=cipher[0] if cipher else "unknown",
        cipher_bits=cipher[2] if cipher else None,
        handshake_seconds=seconds,
        ca_file=settings.ca_file,
    )


def _polite_close(session: Session) -> None:
    """Says goodbye (LOGOUT/QUIT) without letting a rude server fail the probe."""
    try:
        session.close()
    except (TransportError, ProtocolError, SessionRefused, DeadlineExceeded):
        pass
