"""The client side of a POP3 connection, sans-IO (in the manner of h11).

``send`` takes a command line and returns its bytes; ``receive_data`` takes
what the server sent; ``next_event`` hands out the greeting and one reply
per command, or None while more bytes are needed. The client knows which
commands are answered with a multi-line body (RFC 1939 §3, RFC 2449 §5),
drives SASL exchanges (RFC 5034) and ends the plaintext at STLS' go-ahead
(RFC 2595 §4). No socket, no clock.
"""

from __future__ import annotations

from msgspec import Struct

from . import pop3
from .client_base import CANCEL, LineCommandClient, State
from .sasl import SaslExchange

__all__ = ["CANCEL", "Event", "Greeting", "Pop3Client", "Reply", "State", "expects_body"]


class Greeting(Struct, frozen=True):
    response: pop3.Response

    @property
    def ok(self) -> bool:
        return self.response.ok


class Reply(Struct, frozen=True):
    """The answer to the command in flight; a "+ " challenge during AUTH included."""

    command: str  # the command's verb, upper-case
    response: pop3.Response

    @property
    def ok(self) -> bool:
        return self.response.ok and not self.response.continuation

    @property
    def challenge(self) -> bool:
        return self.response.continuation


Event = Greeting | Reply


def expects_body(command: bytes) -> bool:
    """Whether a +OK to ``command`` carries a multi-line body.

    RFC 1939 §5: LIST and UIDL without an argument, RETR and TOP; RFC 2449 §5: CAPA.
    """
    words = command.split()
    if not words:
        return False
    verb = words[0].upper()
    if verb in (b"LIST", b"UIDL"):
        return len(words) == 1
    return verb in (b"RETR", b"TOP", b"CAPA")


class Pop3Client(LineCommandClient[pop3.ResponseParser, Event]):
    """One POP3 connection as seen from the client; see the module's doc."""

    def __init__(self, *, max_line_length: int = 64 * 1024, max_lines: int = 100_000) -> None:
        self._options = (max_line_length, max_lines)
        super().__init__(self._new_parser())
        self._multiline = False

    def _new_parser(self) -> pop3.ResponseParser:
        return pop3.ResponseParser(*self._options)

    def _next_event(self) -> Event | None:
        if self.state is State.GREETING:
            response = self._parser.next_response()
            if response is None:
                return None
            self.state = State.READY
            return Greeting(response)
        if self.state is not State.BUSY:
            return None  # bytes out of turn wait for the next command, as they arrived
        response = self._parser.next_response(multiline=self._multiline)
        if response is None:
            return None
        event = Reply(self._verb, response)
        if response.continuation:
            return event  # still BUSY: ``answer`` (or ``cancel``) says what follows
        self._exchange = None
        if self._verb == "STLS" and response.ok:
            self._parser.end_plaintext()  # raises StarttlsInjection when bytes follow
            self.state = State.TLS
        else:
            self.state = State.READY
        return event

    def send(self, command: bytes) -> bytes:
        """``command`` is one line with its CRLF (``pop3.user_command`` and friends)."""
        line = self._start(command)
        self._multiline = expects_body(command)
        return line

    def authenticate(self, exchange: SaslExchange) -> bytes:
        """AUTH with ``exchange``'s mechanism; RFC 5034 §4 keeps the line within 255 octets."""
        line = b"AUTH " + exchange.mechanism.encode("ascii")
        first = exchange.first(max_length=pop3.MAX_COMMAND_LENGTH - len(line) - 3)
        if first is not None:
            line += b" " + first
        sent = self.send(line + b"\r\n")
        self._exchange = exchange
        return sent

    def answer(self, challenge: Reply) -> bytes:
        """The next SASL line for a "+ " challenge, or the cancel ("*") when nothing is left."""
        if not challenge.challenge:
            raise RuntimeError("no challenge to answer")
        return self._sasl_line(challenge.response.text)
