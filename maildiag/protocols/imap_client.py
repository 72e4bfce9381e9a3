"""The client side of an IMAP connection, sans-IO (in the manner of h11).

``send`` turns a command into bytes and remembers its tag; ``receive_data``
takes what the server sent; ``next_event`` hands out what that amounts to,
or None while more bytes are needed. The client owns what every IMAP
dialogue needs: tags, gathering the untagged responses until the tagged
reply of the command in flight (RFC 3501 §2.2.2), continuation requests
where a command expects them (AUTHENTICATE, IDLE, LOGIN with a literal),
SASL answers and the end of the plaintext at STARTTLS' go-ahead. It never
touches a socket or a clock: the caller bounds every wait.
"""

from __future__ import annotations

from msgspec import Struct

from . import imap
from .client_base import CANCEL, ClientBase, State
from .imap import Continuation, Greeting, Tagged, Untagged
from .lines import ProtocolError
from .sasl import SaslExchange

__all__ = [
    "CANCEL",
    "Bye",
    "Command",
    "Completed",
    "ContinuationRequest",
    "Event",
    "Greeting",
    "ImapClient",
    "State",
    "Unsolicited",
]

DONE = b"DONE\r\n"  # RFC 2177 §3: ends IDLE

# Commands a server may answer with "+" before the tagged reply.
_CONTINUED = frozenset({"AUTHENTICATE", "IDLE", "LOGIN", "APPEND"})
# More untagged responses to one command than any real account needs (a LIST
# of every folder of a large shared namespace stays far below).
MAX_UNTAGGED = 100_000


class Command:
    """One IMAP command: ``Command("STATUS", "INBOX", b"(MESSAGES)")``.

    ``args`` as for ``imap.CommandBuilder.command``. They stay out of
    ``repr``: LOGIN carries the password.
    """

    __slots__ = ("args", "name")

    def __init__(self, name: str, *args: str | bytes) -> None:
        self.name = name
        self.args = args

    def __repr__(self) -> str:
        return f"Command({self.name!r}, ...)" if self.args else f"Command({self.name!r})"


class Completed(Struct, frozen=True):
    """The tagged reply of the command in flight, with the untagged responses before it."""

    name: str  # the command's name, upper-case
    untagged: tuple[Untagged, ...]
    tagged: Tagged

    @property
    def ok(self) -> bool:
        return self.tagged.ok

    @property
    def responses(self) -> tuple[Untagged | Tagged, ...]:
        return (*self.untagged, self.tagged)


class Bye(Struct, frozen=True):
    """The server ended the session ("* BYE") while a command was in flight."""

    response: Untagged
    untagged: tuple[Untagged, ...]

    @property
    def text(self) -> str:
        return self.response.text


class ContinuationRequest(Struct, frozen=True):
    """ "+ text": the command in flight waits for more from us (a SASL step, IDLE begun).

    For IDLE, ``untagged`` holds the responses that came before the "+": from
    here on they come one by one, as ``Unsolicited``.
    """

    text: str
    untagged: tuple[Untagged, ...] = ()


class Unsolicited(Struct, frozen=True):
    """An untagged response during IDLE, handed out as it arrives (RFC 2177)."""

    response: Untagged


Event = Greeting | Completed | Bye | ContinuationRequest | Unsolicited


class ImapClient(ClientBase[imap.ResponseParser, "Event"]):
    """One IMAP connection as seen from the client; see the module's doc."""

    def __init__(
        self,
        tag_prefix: str = "a",
        *,
        max_line_length: int = 64 * 1024,
        max_literal: int = 10 * 1024 * 1024,
        max_untagged: int = MAX_UNTAGGED,
    ) -> None:
        self._options = (max_line_length, max_literal)
        super().__init__(self._new_parser())
        self._commands = imap.CommandBuilder(tag_prefix)
        self._max_untagged = max_untagged
        self._name = ""
        self._tag: str | None = None
        self._untagged: list[Untagged] = []
        self._capabilities: tuple[str, ...] | None = None

    def _new_parser(self) -> imap.ResponseParser:
        return imap.ResponseParser(*self._options)

    def _next_event(self) -> Event | None:
        if self.state not in (State.GREETING, State.BUSY, State.IDLING):
            # Nothing is asked: bytes wait, as they arrived, for the next command.
            return None
        while True:
            response = self._parser.next_response()
            if response is None:
                return None
            event = self._handle(response)
            if event is not None:
                return event

    def _handle(self, response: Untagged | Tagged | Continuation) -> Event | None:
        if self.state is State.GREETING:
            return self._greeting(response)
        if isinstance(response, Untagged):
            return self._untagged_response(response)
        if isinstance(response, Continuation):
            return self._continuation(response)
        if response.tag != self._tag:
            return None  # a stray tagged reply (not ours): nothing waits for it
        return self._completed(response)

    def _greeting(self, response: Untagged | Tagged | Continuation) -> Greeting:
        if not isinstance(response, Untagged):
            raise ProtocolError("the first line is not an untagged IMAP greeting")
        greeting = imap.parse_greeting(response)
        self._capabilities = greeting.capabilities
        self.state = State.CLOSED if greeting.status == "BYE" else State.READY
        return greeting

    def _untagged_response(self, response: Untagged) -> Event | None:
        self._note_capabilities(response)
        if self.state is State.IDLING:
            return Unsolicited(response)
        if response.keyword == "BYE" and self.state is State.BUSY:
            untagged = tuple(self._untagged)
            self._end_command(State.CLOSED)
            return Bye(response, untagged)
        if len(self._untagged) >= self._max_untagged:
            raise ProtocolError(
                f"more than {self._max_untagged} untagged responses to {self._name}"
            )
        self._untagged.append(response)
        return None

    def _continuation(self, response: Continuation) -> Event | None:
        if self.state is State.IDLING:
            return None  # a repeated "+ idling": nothing new
        if self.state is not State.BUSY or self._name not in _CONTINUED:
            raise ProtocolError(f"unexpected continuation request after {self._name or 'nothing'}")
        if self._name == "IDLE":
            self.state = State.IDLING
            untagged, self._untagged = tuple(self._untagged), []
            return ContinuationRequest(response.text, untagged)
        return ContinuationRequest(response.text)

    def _completed(self, response: Tagged) -> Completed:
        self._note_capabilities(response)
        event = Completed(self._name, tuple(self._untagged), response)
        if self._name == "STARTTLS" and response.ok:
            self._end_command(State.CLOSED)
            # RFC 3501 §6.2.1: the go-ahead is the last plaintext; anything
            # behind it would be read as if it had come inside TLS.
            self._parser.end_plaintext()
            self.state = State.TLS
        else:
            self._end_command(State.READY)
        return event

    def _end_command(self, state: State) -> None:
        self.state = state
        self._tag = None
        self._untagged = []
        self._exchange = None

    def _note_capabilities(self, response: Untagged | Tagged) -> None:
        found = imap.capabilities_from([response])
        if found is not None:
            self._capabilities = found

    # -- commands out ------------------------------------------------------------

    def send(self, command: Command) -> bytes:
        """The bytes of ``command``; one command at a time (no pipelining)."""
        self._check_ready(command.name)
        tag, line = self._commands.command(command.name, *command.args)
        self._name = command.name.upper()
        self._tag = tag
        self.state = State.BUSY
        return line

    def authenticate(self, exchange: SaslExchange) -> bytes:
        """AUTHENTICATE with ``exchange``'s mechanism (its initial response per RFC 4959)."""
        first = exchange.first()
        args: tuple[bytes, ...] = () if first is None else (first,)
        # RFC 4959 §3: an empty initial response is sent as "=".
        line = self.send(Command("AUTHENTICATE", exchange.mechanism.encode("ascii"), *args))
        self._exchange = exchange
        return line

    def answer(self, challenge: ContinuationRequest) -> bytes:
        """The next SASL line for ``challenge``, or the cancel ("*") when the exchange has none."""
        return self._sasl_line(challenge.text)

    def done(self) -> bytes:
        """Ends IDLE; the tagged reply of IDLE follows."""
        if self.state is not State.IDLING:
            raise RuntimeError("not idling")
        self.state = State.BUSY
        return DONE

    def tls_started(self) -> None:
        """The TLS handshake after STARTTLS succeeded: a fresh parser, no old capabilities.

        RFC 3501 §6.2.1: capabilities learned before TLS must be discarded.
        """
        super().tls_started()
        self._capabilities = None

    @property
    def capabilities(self) -> tuple[str, ...] | None:
        """The latest capabilities the server announced on this channel (upper-case)."""
        return self._capabilities
