"""One small dialogue per protocol: greeting, capabilities, STARTTLS.

Each session pairs a ``Connection`` with the sans-IO parser of its protocol;
the probe drives all three through the same steps, so the order of phases,
their timing and the classification of failures live in one place
(``maildiag.probes.connect``).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import cast

from ..protocols import imap, pop3, smtp
from ..protocols.lines import ProtocolError
from ..transport import Connection, ReadTimeout

CLIENT_NAME = "maildiag.invalid"  # RFC 6761 .invalid: an EHLO name that claims nothing


class GreetingKind(enum.Enum):
    READY = "ready"
    REFUSED = "refused"  # permanent: BYE, -ERR, 554
    THROTTLED = "throttled"  # temporary: 421, [SYS/TEMP], BYE "too many connections"
    # IMAP "* PREAUTH": already authenticated, before STARTTLS or any login.
    PREAUTH = "preauth"


@dataclass(frozen=True)
class GreetingInfo:
    kind: GreetingKind
    text: str


@dataclass(frozen=True)
class CapabilityInfo:
    capabilities: tuple[str, ...]
    starttls: bool
    login_mechanisms: tuple[str, ...]  # ways to log in on this channel, as announced

    @property
    def login_offered(self) -> bool:
        return bool(self.login_mechanisms)


@dataclass(frozen=True)
class StarttlsAnswer:
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


class ImapSession:
    protocol_name = "IMAP"
    starttls_command = "STARTTLS"

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.parser = imap.ResponseParser()
        self.commands = imap.CommandBuilder()
        self._greeting_caps: tuple[str, ...] | None = None

    def _next(self) -> imap.Untagged | imap.Tagged | imap.Continuation:
        # mypy cannot solve the TypeVar of receive() for a union-returning parser.
        response = self.conn.receive(self.parser.next_response, self.parser.feed)
        return cast("imap.Untagged | imap.Tagged | imap.Continuation", response)

    def run(self, name: str, *args: str | bytes) -> tuple[list[imap.Untagged], imap.Tagged]:
        tag, line = self.commands.command(name, *args)
        self.conn.send(line)
        untagged: list[imap.Untagged] = []
        # One step for the whole command: every untagged line would restart a
        # per-read timeout, and a server can send them without end.
        end = time.monotonic() + self.conn.deadline.step_timeout(self.conn.timeout)
        while True:
            response = self._next()
            if isinstance(response, imap.Tagged) and response.tag == tag:
                return untagged, response
            if time.monotonic() > end:
                raise ReadTimeout(
                    f"no answer to {name} within {self.conn.timeout:g} s, only untagged noise"
                )
            if isinstance(response, imap.Untagged):
                if response.keyword == "BYE":
                    raise SessionRefused(response.text, temporary=_temporary_text(response.text))
                untagged.append(response)
            elif isinstance(response, imap.Continuation):
                raise ProtocolError(f"unexpected continuation request after {name}")

    def greeting(self) -> GreetingInfo:
        response = self._next()
        if not isinstance(response, imap.Untagged):
            raise ProtocolError("the first line is not an untagged IMAP greeting")
        greeting = imap.parse_greeting(response)
        self._greeting_caps = greeting.capabilities
        if greeting.status == "BYE":
            kind = (
                GreetingKind.THROTTLED if _temporary_text(greeting.text) else GreetingKind.REFUSED
            )
            return GreetingInfo(kind, greeting.text)
        if greeting.status == "PREAUTH":
            return GreetingInfo(GreetingKind.PREAUTH, greeting.text)
        return GreetingInfo(GreetingKind.READY, greeting.text)

    def capabilities(self) -> CapabilityInfo:
        untagged, done = self.run("CAPABILITY")
        caps = imap.capabilities_from([*untagged, done])
        if caps is None:
            if done.status != "OK":
                raise ProtocolError(f"CAPABILITY failed: {done.status} {done.text}")
            caps = self._greeting_caps or ()
        mechanisms = tuple(c.split("=", 1)[1] for c in caps if c.startswith("AUTH="))
        # RFC 3501 §6.2.3: LOGIN is always available unless LOGINDISABLED says otherwise.
        login = mechanisms if "LOGINDISABLED" in caps else ("LOGIN", *mechanisms)
        return CapabilityInfo(tuple(caps), "STARTTLS" in caps, login)

    def starttls(self) -> StarttlsAnswer:
        _, done = self.run("STARTTLS")
        if done.status == "OK":
            self.parser.end_plaintext()
        return StarttlsAnswer(done.status == "OK", f"{done.status} {done.text}".strip())

    def after_tls(self) -> None:
        # RFC 3501 §6.2.1: capabilities learned before TLS must be discarded.
        self.parser = imap.ResponseParser()
        self._greeting_caps = None

    def close(self) -> None:
        self.run("LOGOUT")


class Pop3Session:
    protocol_name = "POP3"
    starttls_command = "STLS"

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.parser = pop3.ResponseParser()

    def _next(self, multiline: bool = False) -> pop3.Response:
        return self.conn.receive(
            lambda: self.parser.next_response(multiline=multiline), self.parser.feed
        )

    def run(self, command: bytes, multiline: bool = False) -> pop3.Response:
        self.conn.send(command)
        return self._next(multiline)

    def greeting(self) -> GreetingInfo:
        response = self._next()
        if response.ok:
            return GreetingInfo(GreetingKind.READY, response.text)
        temporary = response.code in ("SYS/TEMP", "IN-USE") or _temporary_text(response.text)
        return GreetingInfo(
            GreetingKind.THROTTLED if temporary else GreetingKind.REFUSED, response.text
        )

    def capabilities(self) -> CapabilityInfo:
        response = self.run(pop3.CAPA_COMMAND, multiline=True)
        if not response.ok:
            # RFC 2449 is optional; a server without CAPA can still do USER/PASS.
            return CapabilityInfo((), False, ("USER",))
        capa = pop3.parse_capa(response)
        login = (("USER",) if capa.user else ()) + capa.sasl_mechanisms
        return CapabilityInfo(capa.capabilities, capa.stls, login)

    def starttls(self) -> StarttlsAnswer:
        response = self.run(pop3.STLS_COMMAND)
        if response.ok:
            self.parser.end_plaintext()
        return StarttlsAnswer(response.ok, response.text)

    def after_tls(self) -> None:
        self.parser = pop3.ResponseParser()

    def close(self) -> None:
        self.run(pop3.QUIT_COMMAND)


class SmtpSession:
    protocol_name = "SMTP"
    starttls_command = "STARTTLS"

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.parser = smtp.ReplyParser()

    def _next(self) -> smtp.Reply:
        return self.conn.receive(self.parser.next_reply, self.parser.feed)

    def run(self, command: bytes) -> smtp.Reply:
        self.conn.send(command)
        reply = self._next()
        if reply.code == 421:
            # RFC 5321 §3.8: 421 may come as the answer to any command, then the server closes.
            raise SessionRefused(f"{reply.code} {reply.text}", temporary=True)
        return reply

    def greeting(self) -> GreetingInfo:
        # The banner is read before anything is sent: strict servers (postscreen,
        # Exim's smtp_enforce_sync) drop clients that talk first.
        reply = self._next()
        text = f"{reply.code} {reply.text}"
        if reply.code == 220:
            return GreetingInfo(GreetingKind.READY, text)
        if reply.is_transient:
            return GreetingInfo(GreetingKind.THROTTLED, text)
        if reply.is_permanent:
            return GreetingInfo(GreetingKind.REFUSED, text)
        raise ProtocolError(f"unexpected greeting code {reply.code}")

    def capabilities(self) -> CapabilityInfo:
        reply = self.run(smtp.ehlo_command(CLIENT_NAME))
        if not reply.is_positive:
            if reply.is_transient:
                raise SessionRefused(f"{reply.code} {reply.text}", temporary=True)
            raise ProtocolError(f"EHLO refused: {reply.code} {reply.text}")
        ehlo = smtp.parse_ehlo(reply)
        return CapabilityInfo(ehlo.capabilities, ehlo.starttls, ehlo.auth_mechanisms)

    def starttls(self) -> StarttlsAnswer:
        reply = self.run(smtp.STARTTLS_COMMAND)
        if reply.code == 220:
            self.parser.end_plaintext()
        return StarttlsAnswer(reply.code == 220, f"{reply.code} {reply.text}")

    def after_tls(self) -> None:
        self.parser = smtp.ReplyParser()

    def close(self) -> None:
        # RFC 5321 §4.1.1.10: the client SHOULD wait for the reply to QUIT.
        self.run(smtp.QUIT_COMMAND)


Session = ImapSession | Pop3Session | SmtpSession
