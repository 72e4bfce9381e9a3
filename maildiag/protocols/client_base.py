"""What the IMAP, POP3 and SMTP clients share: states, final errors, SASL lines.

Each client (``imap_client``, ``pop3_client``, ``smtp_client``) wraps its
protocol's parser; this base holds the parts that do not differ.
"""

from __future__ import annotations

import enum
from typing import Generic, Protocol, TypeVar

from .lines import ProtocolError
from .sasl import SaslExchange

CANCEL = b"*\r\n"  # abandons a SASL exchange: IMAP (RFC 3501 §6.2.2), POP3, SMTP (RFC 4954 §4)


class State(enum.Enum):
    GREETING = "greeting"  # waiting for the server's first words
    READY = "ready"  # no command in flight
    BUSY = "busy"  # a command was sent, its answer has not come
    IDLING = "idling"  # IMAP: IDLE was accepted; DONE ends it
    DATA = "data"  # SMTP: DATA got its 354, the message comes next
    TLS = "tls"  # STARTTLS/STLS was accepted: the handshake comes next
    CLOSED = "closed"  # the server ended the session, or the stream broke


class _Parser(Protocol):
    def feed(self, data: bytes) -> None: ...

    @property
    def pending(self) -> int: ...


P = TypeVar("P", bound=_Parser)
E = TypeVar("E")


class ClientBase(Generic[P, E]):
    def __init__(self, parser: P) -> None:
        self._parser = parser
        self.state = State.GREETING
        self._error: ProtocolError | None = None
        self._exchange: SaslExchange | None = None

    def _new_parser(self) -> P:
        raise NotImplementedError

    def receive_data(self, data: bytes) -> None:
        self._parser.feed(data)

    @property
    def pending(self) -> int:
        """Bytes received but not yet made into events."""
        return self._parser.pending

    def next_event(self) -> E | None:
        """The next event, or None until more bytes are needed.

        ``ProtocolError`` when the peer broke the protocol; it is final: every
        later call raises it again, as the stream cannot be trusted any more.
        """
        if self._error is not None:
            raise self._error
        try:
            return self._next_event()
        except ProtocolError as exc:
            self._error = exc
            self.state = State.CLOSED
            raise

    def _next_event(self) -> E | None:
        raise NotImplementedError

    def _check_ready(self, what: str) -> None:
        if self.state is not State.READY:
            raise RuntimeError(f"cannot send {what} while {self.state.value}")

    def _sasl_line(self, challenge: str) -> bytes:
        """The next SASL line for ``challenge``, or the cancel when the exchange has none."""
        if self.state is not State.BUSY:
            raise RuntimeError("no command is in flight")
        response = None if self._exchange is None else self._exchange.respond(challenge)
        if response is None:
            self._exchange = None
            return CANCEL
        return response + b"\r\n"

    def cancel(self) -> bytes:
        """Abandons the exchange in flight (a challenge where none belongs)."""
        if self.state is not State.BUSY:
            raise RuntimeError("no command is in flight")
        self._exchange = None
        return CANCEL

    @property
    def exchanging(self) -> bool:
        """A SASL exchange is in flight and may still send something."""
        return self._exchange is not None

    def tls_started(self) -> None:
        """The handshake after the go-ahead succeeded: a fresh parser for the TLS stream."""
        if self.state is not State.TLS:
            raise RuntimeError("STARTTLS was not accepted")
        self._parser = self._new_parser()
        self.state = State.READY


class LineCommandClient(ClientBase[P, E]):
    """POP3 and SMTP: a command is one line; its verb says what answer to expect."""

    _verb = ""

    def _start(self, command: bytes) -> bytes:
        self._check_ready("a command")
        if not command.endswith(b"\r\n"):
            raise ValueError("a command ends with CRLF")
        words = command.split()
        self._verb = words[0].upper().decode("ascii", errors="replace") if words else ""
        self.state = State.BUSY
        return command
