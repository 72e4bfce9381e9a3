"""The session driver: a protocol client (``maildiag.protocols.*_client``) on a ``Connection``.

Every probe talks to servers through these sessions: the endpoint probe,
the logins, the mailbox and sending checks, inbound delivery and the sync
measurement. So the wait for an IMAP tagged reply, the SASL steps and the
connect / greet / STARTTLS dialogue (``establish``) exist once. Every wait
for an answer is one ``Connection.receive``: bounded as a whole by the
step's timeout and the run's deadline, however many untagged lines or
challenges a server sends meanwhile.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol as TypingProtocol
from typing import TypeVar, cast

from msgspec import Struct

from ..model import Phase, Protocol, Security
from ..protocols import capabilities as caps_data
from ..protocols import imap, imap_client, pop3, pop3_client, smtp, smtp_client
from ..protocols.capabilities import Capabilities
from ..protocols.client_base import CANCEL, State
from ..protocols.imap_client import (
    Bye,
    Command,
    Completed,
    ContinuationRequest,
    ImapClient,
    Unsolicited,
)
from ..protocols.lines import ProtocolError, StarttlsInjection
from ..protocols.pop3_client import Pop3Client
from ..protocols.registry import spec
from ..protocols.sasl import SaslExchange
from ..protocols.smtp_client import SmtpClient
from ..transport import Connection, PlaintextInsteadOfTls, ReadTimeout

CLIENT_NAME = "maildiag.invalid"  # RFC 6761 .invalid: an EHLO name that claims nothing
KEEPS_ASKING = "the server keeps asking for more authentication data"


class GreetingKind(enum.Enum):
    READY = "ready"
    REFUSED = "refused"  # permanent: BYE, -ERR, 554
    THROTTLED = "throttled"  # temporary: 421, [SYS/TEMP], BYE "too many connections"
    # IMAP "* PREAUTH": already authenticated, before STARTTLS or any login.
    PREAUTH = "preauth"


class GreetingInfo(Struct, frozen=True):
    kind: GreetingKind
    text: str


class CapabilityInfo(Struct, frozen=True):
    """The capabilities of one channel: the strings as announced and what they mean."""

    data: Capabilities

    @property
    def capabilities(self) -> tuple[str, ...]:
        return self.data.announced

    @property
    def starttls(self) -> bool:
        return self.data.starttls

    @property
    def login_mechanisms(self) -> tuple[str, ...]:
        return self.data.login_names

    @property
    def login_offered(self) -> bool:
        return self.data.login_offered


class StarttlsAnswer(Struct, frozen=True):
    """The answer to STARTTLS/STLS.

    ``starttls()`` raises ``StarttlsInjection`` instead when more bytes came
    behind a go-ahead: nothing the server sends may be read before TLS starts.
    """

    accepted: bool
    text: str


class SessionRefused(Exception):
    """The server refused a command with a temporary or permanent error mid-session."""

    def __init__(self, text: str, *, temporary: bool) -> None:
        super().__init__(text)
        self.text = text
        self.temporary = temporary


def _temporary_text(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in ("too many", "try again", "temporar", "later", "busy"))


class _Session:
    protocol: Protocol
    client: ImapClient | Pop3Client | SmtpClient

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @property
    def protocol_name(self) -> str:
        return spec(self.protocol).name

    @property
    def starttls_command(self) -> str:
        return spec(self.protocol).starttls_command

    @property
    def ready(self) -> bool:
        """No command is in flight: the session can take the next one."""
        return self.client.state is State.READY

    def close(self) -> None:
        """Says goodbye (LOGOUT/QUIT) and waits for the answer, when the session can.

        After a broken exchange (an answer that never came, STARTTLS accepted
        but no TLS) there is nothing to say goodbye on: the caller closes the
        connection.
        """
        if self.ready:
            self._goodbye()

    def _goodbye(self) -> None:
        raise NotImplementedError


class _Step(TypingProtocol):
    @property
    def challenge(self) -> bool: ...


_Reply = TypeVar("_Reply", bound=_Step)


def _sasl_steps(
    conn: Connection, first: bytes, read: Callable[[], _Reply], answer: Callable[[_Reply], bytes]
) -> _Reply | None:
    """Sends AUTH, answers each challenge; the final reply, or None after a cancel.

    A cancel ("*", RFC 4954 §4 / RFC 5034 §4) comes when the server asks for
    more than the mechanism has: whatever it says to that, the login did not happen.
    """
    conn.send(first)
    reply = read()
    while reply.challenge:
        line = answer(reply)
        conn.send(line)
        reply = read()
        if line == CANCEL:
            return None
    return reply


# --- IMAP -------------------------------------------------------------------------


class ImapSession(_Session):
    protocol = Protocol.IMAP
    client: ImapClient

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self.client = ImapClient()

    def _event(self) -> imap_client.Event:
        # mypy cannot solve the TypeVar of receive() for a union-returning client.
        event = self.conn.receive(self.client.next_event, self.client.receive_data)
        return cast("imap_client.Event", event)

    def run(self, name: str, *args: str | bytes) -> tuple[list[imap.Untagged], imap.Tagged]:
        """One command and its tagged reply, with the untagged responses before it.

        The whole wait is one step: every untagged line would restart a
        per-read timeout, and a server can send them without end. A BYE
        raises ``SessionRefused``.
        """
        self.conn.send(self.client.send(Command(name, *args)))
        event = self._event()
        if isinstance(event, Bye):
            raise SessionRefused(event.text, temporary=_temporary_text(event.text))
        if not isinstance(event, Completed):
            raise ProtocolError(f"unexpected continuation request after {name}")
        return list(event.untagged), event.tagged

    def exchange(
        self, first: bytes
    ) -> tuple[list[imap.Untagged], imap.Tagged | imap.Untagged | None]:
        """Sends ``first`` (an AUTHENTICATE or LOGIN) and answers the server's challenges.

        Returns the untagged responses and the final answer: the tagged reply,
        a BYE, or None when the server still asks after the cancel.
        """
        self.conn.send(first)
        untagged: list[imap.Untagged] = []
        cancelled = False
        while True:
            event = self._event()
            if isinstance(event, ContinuationRequest):
                if cancelled:
                    return untagged, None
                line = self.client.answer(event) if self.client.exchanging else self.client.cancel()
                cancelled = line == CANCEL
                self.conn.send(line)
                continue
            assert isinstance(event, Completed | Bye)
            untagged += event.untagged
            return untagged, event.tagged if isinstance(event, Completed) else event.response

    def authenticate(
        self, exchange: SaslExchange
    ) -> tuple[list[imap.Untagged], imap.Tagged | imap.Untagged | None]:
        return self.exchange(self.client.authenticate(exchange))

    def login_command(
        self, user: str, password: str
    ) -> tuple[list[imap.Untagged], imap.Tagged | imap.Untagged | None]:
        return self.exchange(self.client.send(Command("LOGIN", user, password)))

    def greeting(self) -> GreetingInfo:
        greeting = self._event()
        assert isinstance(greeting, imap.Greeting)
        if greeting.status == "BYE":
            kind = (
                GreetingKind.THROTTLED if _temporary_text(greeting.text) else GreetingKind.REFUSED
            )
            return GreetingInfo(kind, greeting.text)
        if greeting.status == "PREAUTH":
            return GreetingInfo(GreetingKind.PREAUTH, greeting.text)
        return GreetingInfo(GreetingKind.READY, greeting.text)

    def capabilities(self) -> CapabilityInfo:
        greeting_caps = self.client.capabilities
        untagged, done = self.run("CAPABILITY")
        found = imap.capabilities_from([*untagged, done])
        if found is None:
            if done.status != "OK":
                raise ProtocolError(f"CAPABILITY failed: {done.status} {done.text}")
            found = greeting_caps or ()
        return CapabilityInfo(caps_data.parse(Protocol.IMAP, found))

    def starttls(self) -> StarttlsAnswer:
        _, done = self.run("STARTTLS")
        return StarttlsAnswer(done.status == "OK", f"{done.status} {done.text}".strip())

    def after_tls(self) -> None:
        self.client.tls_started()

    # IDLE (RFC 2177), for the sync measurement.

    def idle(self) -> list[imap.Untagged]:
        """Sends IDLE; returns the untagged responses before the "+" (``SyncError``-free)."""
        self.conn.send(self.client.send(Command("IDLE")))
        event = self._event()
        if isinstance(event, ContinuationRequest):
            return list(event.untagged)
        if isinstance(event, Bye):
            raise SessionRefused(event.text, temporary=_temporary_text(event.text))
        assert isinstance(event, Completed)
        raise IdleRefused(event)

    def next_unsolicited(self, seconds: float) -> imap.Untagged:
        """The next untagged response while idling, waiting at most ``seconds``."""
        saved = self.conn.timeout
        self.conn.timeout = max(0.001, seconds)
        try:
            event = self._event()
        finally:
            self.conn.timeout = saved
        if isinstance(event, Completed):  # the server ended IDLE itself
            raise IdleRefused(event)
        assert isinstance(event, Unsolicited)
        return event.response

    def end_idle(self) -> list[imap.Untagged]:
        """DONE; returns the untagged responses before IDLE's tagged reply."""
        self.conn.send(self.client.done())
        event = self._event()
        if isinstance(event, Bye):
            raise SessionRefused(event.text, temporary=_temporary_text(event.text))
        assert isinstance(event, Completed)
        return list(event.untagged)

    def _goodbye(self) -> None:
        self.run("LOGOUT")


class IdleRefused(Exception):
    """IDLE got a tagged reply instead of its "+"."""

    def __init__(self, completed: Completed) -> None:
        super().__init__(f"{completed.tagged.status} {completed.tagged.text}".strip())
        self.completed = completed


# --- POP3 -------------------------------------------------------------------------


class Pop3Session(_Session):
    protocol = Protocol.POP3
    client: Pop3Client

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self.client = Pop3Client()

    def _event(self) -> pop3_client.Event:
        event = self.conn.receive(self.client.next_event, self.client.receive_data)
        return cast("pop3_client.Event", event)

    def _reply(self) -> pop3_client.Reply:
        event = self._event()
        assert isinstance(event, pop3_client.Reply)
        return event

    def run(self, command: bytes) -> pop3.Response:
        """One command and its answer; the client knows whether it has a multi-line body."""
        self.conn.send(self.client.send(command))
        return self._reply().response

    def authenticate(self, exchange: SaslExchange) -> pop3.Response | None:
        """AUTH with ``exchange``: the final answer, or None after a cancel (RFC 5034 §4).

        Whatever the server says to the "*", the login did not happen.
        """
        reply = _sasl_steps(
            self.conn, self.client.authenticate(exchange), self._reply, self.client.answer
        )
        return None if reply is None else reply.response

    def greeting(self) -> GreetingInfo:
        greeting = self._event()
        assert isinstance(greeting, pop3_client.Greeting)
        response = greeting.response
        if response.ok:
            return GreetingInfo(GreetingKind.READY, response.text)
        temporary = response.code in ("SYS/TEMP", "IN-USE") or _temporary_text(response.text)
        return GreetingInfo(
            GreetingKind.THROTTLED if temporary else GreetingKind.REFUSED, response.text
        )

    def capabilities(self) -> CapabilityInfo:
        response = self.run(pop3.CAPA_COMMAND)
        if not response.ok:
            # RFC 2449 is optional; a server without CAPA can still do USER/PASS.
            return CapabilityInfo(caps_data.parse(Protocol.POP3, (), listed=False))
        capa = pop3.parse_capa(response)
        return CapabilityInfo(caps_data.parse(Protocol.POP3, capa.capabilities, listed=True))

    def starttls(self) -> StarttlsAnswer:
        response = self.run(pop3.STLS_COMMAND)
        return StarttlsAnswer(response.ok, response.text)

    def after_tls(self) -> None:
        self.client.tls_started()

    def _goodbye(self) -> None:
        self.run(pop3.QUIT_COMMAND)


# --- SMTP -------------------------------------------------------------------------


class SmtpSession(_Session):
    protocol = Protocol.SMTP
    client: SmtpClient

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self.client = SmtpClient()

    def _event(self) -> smtp_client.Event:
        event = self.conn.receive(self.client.next_event, self.client.receive_data)
        return cast("smtp_client.Event", event)

    def _reply(self) -> smtp_client.Reply:
        event = self._event()
        assert isinstance(event, smtp_client.Reply)
        if event.reply.code == 421:
            # RFC 5321 §3.8: 421 may come as the answer to any command, then the server closes.
            raise SessionRefused(f"{event.reply.code} {event.reply.text}", temporary=True)
        return event

    def run(self, command: bytes) -> smtp.Reply:
        self.conn.send(self.client.send(command))
        return self._reply().reply

    def send_message(self, message: bytes) -> smtp.Reply:
        """The message after DATA's 354, and the server's verdict on it."""
        self.conn.send(self.client.send_message(message))
        return self._reply().reply

    def authenticate(self, exchange: SaslExchange) -> smtp.Reply | None:
        """AUTH with ``exchange``: the final reply, or None when a 334 came after all steps."""
        reply = _sasl_steps(
            self.conn, self.client.authenticate(exchange), self._reply, self.client.answer
        )
        return None if reply is None else reply.reply

    def greeting(self) -> GreetingInfo:
        # The banner is read before anything is sent: strict servers (postscreen,
        # Exim's smtp_enforce_sync) drop clients that talk first.
        greeting = self._event()
        assert isinstance(greeting, smtp_client.Greeting)
        reply = greeting.reply
        text = f"{reply.code} {reply.text}"
        if reply.code == 220:
            return GreetingInfo(GreetingKind.READY, text)
        if reply.is_transient:
            return GreetingInfo(GreetingKind.THROTTLED, text)
        if reply.is_permanent:
            return GreetingInfo(GreetingKind.REFUSED, text)
        raise ProtocolError(f"unexpected greeting code {reply.code}")

    def ehlo(self) -> smtp.Reply:
        return self.run(smtp.ehlo_command(CLIENT_NAME))

    def capabilities(self) -> CapabilityInfo:
        reply = self.ehlo()
        if not reply.is_positive:
            if reply.is_transient:
                raise SessionRefused(f"{reply.code} {reply.text}", temporary=True)
            raise ProtocolError(f"EHLO refused: {reply.code} {reply.text}")
        ehlo = smtp.parse_ehlo(reply)
        return CapabilityInfo(caps_data.parse(Protocol.SMTP, ehlo.capabilities))

    def starttls(self) -> StarttlsAnswer:
        reply = self.run(smtp.STARTTLS_COMMAND)
        return StarttlsAnswer(reply.code == 220, f"{reply.code} {reply.text}")

    def after_tls(self) -> None:
        self.client.tls_started()

    def _goodbye(self) -> None:
        # RFC 5321 §4.1.1.10: the client SHOULD wait for the reply to QUIT.
        self.run(smtp.QUIT_COMMAND)


Session = ImapSession | Pop3Session | SmtpSession

SESSIONS: dict[Protocol, type[ImapSession] | type[Pop3Session] | type[SmtpSession]] = {
    Protocol.IMAP: ImapSession,
    Protocol.POP3: Pop3Session,
    Protocol.SMTP: SmtpSession,
}


def open_session(protocol: Protocol, conn: Connection) -> Session:
    return SESSIONS[protocol](conn)


# --- the dialogue every connection starts with --------------------------------------


class Stop(enum.Enum):
    """Why ``establish`` ended before the session was ready for a login."""

    GREETING = "greeting"  # not a ready greeting: see ``Dialogue.greeting.kind``
    STARTTLS_MISSING = "starttls_missing"
    STARTTLS_REFUSED = "starttls_refused"


class Dialogue(Struct):
    """What the opening dialogue learned, filled in as it goes (so a failure keeps it)."""

    greeting: GreetingInfo | None = None
    plain: CapabilityInfo | None = None  # before TLS (STARTTLS and plaintext endpoints)
    tls: CapabilityInfo | None = None  # inside TLS
    starttls: StarttlsAnswer | None = None
    stop: Stop | None = None
    # The capabilities that count for a login: inside TLS when there is TLS.
    current: CapabilityInfo | None = None


Timing = Callable[[Phase], AbstractContextManager[None]]


def establish(
    session: Session,
    security: Security,
    handshake: Callable[[], None],
    timing: Timing,
    dialogue: Dialogue,
) -> Dialogue:
    """Greeting, capabilities, STARTTLS and the capabilities again inside TLS.

    For implicit TLS, ``handshake`` runs first (``PlaintextInsteadOfTls``
    passes to the caller, who can read the plaintext greeting). ``timing``
    times each phase. Returns early with ``dialogue.stop`` set when the
    session cannot go on; never sends STARTTLS unless it is announced.
    """
    if security is Security.TLS:
        with timing(Phase.TLS):
            handshake()
    with timing(Phase.GREETING):
        dialogue.greeting = session.greeting()
    if dialogue.greeting.kind is not GreetingKind.READY:
        dialogue.stop = Stop.GREETING
        return dialogue
    if security is Security.TLS:
        with timing(Phase.CAPABILITIES_TLS):
            dialogue.tls = dialogue.current = session.capabilities()
        return dialogue
    with timing(Phase.CAPABILITIES):
        dialogue.plain = dialogue.current = session.capabilities()
    if security is not Security.STARTTLS:
        return dialogue
    if not dialogue.plain.starttls:
        dialogue.stop = Stop.STARTTLS_MISSING
        return dialogue
    with timing(Phase.STARTTLS):
        dialogue.starttls = session.starttls()
    if not dialogue.starttls.accepted:
        dialogue.stop = Stop.STARTTLS_REFUSED
        return dialogue
    with timing(Phase.TLS):
        try:
            handshake()
        except PlaintextInsteadOfTls as exc:
            # The plaintext came behind the go-ahead in a later segment than
            # the go-ahead itself (the client saw none of it).
            raise StarttlsInjection(exc.received) from exc
    session.after_tls()
    with timing(Phase.CAPABILITIES_TLS):
        dialogue.tls = dialogue.current = session.capabilities()
    return dialogue


__all__ = [
    "CLIENT_NAME",
    "KEEPS_ASKING",
    "CapabilityInfo",
    "Dialogue",
    "GreetingInfo",
    "GreetingKind",
    "IdleRefused",
    "ImapSession",
    "Pop3Session",
    "ReadTimeout",
    "Session",
    "SessionRefused",
    "SmtpSession",
    "StarttlsAnswer",
    "Stop",
    "establish",
    "open_session",
]
