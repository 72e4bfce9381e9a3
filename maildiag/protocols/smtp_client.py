"""The client side of an SMTP submission connection, sans-IO (in the manner of h11).

``send`` takes a command line and returns its bytes; ``receive_data`` takes
what the server sent; ``next_event`` hands out the greeting and one reply
(multi-line replies whole, RFC 5321 §4.2.1) per command, or None while more
bytes are needed. The client drives SASL exchanges (RFC 4954 §4: 334
challenges), the message after a 354 to DATA, and ends the plaintext at
STARTTLS' go-ahead (RFC 3207 §4). No pipelining: one command at a time,
which strict servers (Exim's smtp_enforce_sync) insist on anyway. No
socket, no clock.
"""

from __future__ import annotations

from msgspec import Struct

from . import smtp
from .client_base import CANCEL, LineCommandClient, State
from .sasl import SaslExchange

__all__ = ["CANCEL", "Event", "Greeting", "Reply", "SmtpClient", "State"]


class Greeting(Struct, frozen=True):
    reply: smtp.Reply


class Reply(Struct, frozen=True):
    """The reply to the command in flight (a 334 challenge during AUTH included)."""

    command: str  # the command's verb, upper-case ("" for the message after DATA)
    reply: smtp.Reply

    @property
    def challenge(self) -> bool:
        return self.reply.code == 334


Event = Greeting | Reply


class SmtpClient(LineCommandClient[smtp.ReplyParser, Event]):
    """One submission connection as seen from the client; see the module's doc."""

    def __init__(self, *, max_line_length: int = 64 * 1024, max_lines: int = 1000) -> None:
        self._options = (max_line_length, max_lines)
        super().__init__(self._new_parser())

    def _new_parser(self) -> smtp.ReplyParser:
        return smtp.ReplyParser(*self._options)

    def _next_event(self) -> Event | None:
        if self.state is State.GREETING:
            reply = self._parser.next_reply()
            if reply is None:
                return None
            self.state = State.READY
            return Greeting(reply)
        if self.state is not State.BUSY:
            return None  # bytes out of turn wait for the next command, as they arrived
        reply = self._parser.next_reply()
        if reply is None:
            return None
        event = Reply(self._verb, reply)
        if reply.code == 334 and self._verb == "AUTH":
            return event  # still BUSY: ``answer`` (or ``cancel``) says what follows
        self._exchange = None
        if self._verb == "STARTTLS" and reply.code == 220:
            self._parser.end_plaintext()  # raises StarttlsInjection when bytes follow
            self.state = State.TLS
        elif self._verb == "DATA" and reply.code == 354:
            self.state = State.DATA
        else:
            self.state = State.READY
        return event

    def send(self, command: bytes) -> bytes:
        """``command`` is one line with its CRLF (``smtp.ehlo_command`` and friends)."""
        return self._start(command)

    def send_message(self, message: bytes) -> bytes:
        """The message after DATA's 354: dot-stuffed, CRLF line ends, the end marker."""
        if self.state is not State.DATA:
            raise RuntimeError("DATA was not accepted")
        self._verb = ""
        self.state = State.BUSY
        return smtp.data_payload(message)

    def authenticate(self, exchange: SaslExchange) -> bytes:
        """AUTH with ``exchange``'s mechanism and its initial response (RFC 4954 §4)."""
        first = exchange.first()
        line = b"AUTH " + exchange.mechanism.encode("ascii")
        if first is not None:
            line += b" " + first
        sent = self.send(line + b"\r\n")
        self._exchange = exchange
        return sent

    def answer(self, challenge: Reply) -> bytes:
        """The next SASL line for a 334, or the cancel ("*") when nothing is left."""
        if not challenge.challenge:
            raise RuntimeError("no challenge to answer")
        return self._sasl_line(challenge.reply.lines[0] if challenge.reply.lines else "")
