"""POP3, sans-IO: response parsing (RFC 1939, RFC 2449), CAPA facts, command bytes."""

from __future__ import annotations

import re

from msgspec import Struct

from .lines import LineBuffer, ProtocolError, check_command_text, sasl_decode, sasl_plain

CAPA_COMMAND = b"CAPA\r\n"
STLS_COMMAND = b"STLS\r\n"
QUIT_COMMAND = b"QUIT\r\n"
STAT_COMMAND = b"STAT\r\n"
NOOP_COMMAND = b"NOOP\r\n"
AUTH_PLAIN_COMMAND = b"AUTH PLAIN\r\n"  # without initial response: wait for "+ "
AUTH_CANCEL = b"*\r\n"  # RFC 5034 §4: abandons an AUTH exchange

# RFC 2449 §4: a command line is at most 255 octets, CRLF included.
MAX_COMMAND_LENGTH = 255


class Response(Struct, frozen=True):
    """A status line, and for multi-line responses the body.

    ``continuation`` marks an RFC 5034 "+ " challenge during AUTH; then ``ok``
    is True and ``text`` is the (base64) challenge.
    """

    ok: bool
    text: str
    lines: tuple[str, ...] = ()  # dot-unstuffed, without the final "."
    continuation: bool = False

    @property
    def code(self) -> str | None:
        """The extended response code (RFC 2449 §8), e.g. "IN-USE" or "SYS/TEMP"."""
        if not self.text.startswith("["):
            return None
        end = self.text.find("]")
        if end <= 1:
            return None
        return self.text[1:end].strip().upper() or None

    def __str__(self) -> str:
        if self.continuation:
            return f"+ {self.text}".rstrip()
        return f"{'+OK' if self.ok else '-ERR'} {self.text}".rstrip()


class ResponseParser:
    """Reassembles POP3 responses from bytes split at arbitrary points.

    Only the caller knows whether a command answers with a multi-line body
    (RFC 1939 §3), so it says so with ``multiline``. The start of a status
    line that can never become "+OK", "-ERR" or "+ " fails at once instead of
    waiting for a line end. Errors are final: after a ``ProtocolError`` every
    call raises again.
    """

    def __init__(self, max_line_length: int = 64 * 1024, max_lines: int = 100_000) -> None:
        self._buffer = LineBuffer(max_line_length)
        self._max_lines = max_lines
        self._status: tuple[bool, str] | None = None  # a +OK whose body is still arriving
        self._lines: list[str] = []
        self._error: ProtocolError | None = None

    def feed(self, data: bytes) -> None:
        self._buffer.feed(data)

    @property
    def pending(self) -> int:
        """Bytes received beyond the responses handed out (see CVE-2011-0411 after STLS)."""
        return self._buffer.pending

    def end_plaintext(self) -> None:
        """Call right after the go-ahead to STLS: the plaintext stream ends there.

        The go-ahead (RFC 2595 §4) is the last plaintext the server may send.
        ``StarttlsInjection`` (final, like every ``ProtocolError``) when bytes
        were received behind it; they are discarded unread.
        """
        if self._error is not None:
            raise self._error
        try:
            self._buffer.end_plaintext()
        except ProtocolError as exc:
            self._error = exc
            raise

    def next_response(self, multiline: bool = False) -> Response | None:
        if self._error is not None:
            raise self._error
        if self._status is not None and not multiline:
            raise RuntimeError("a multi-line response is half read; ask with multiline=True")
        try:
            return self._next_response(multiline)
        except ProtocolError as exc:
            self._error = exc
            raise

    def _next_response(self, multiline: bool) -> Response | None:
        if self._status is None:
            line = self._buffer.next_line()
            if line is None:
                _check_partial_status(self._buffer.peek(5))
                return None
            response = _status_line(line)
            # RFC 1939 §3: a negative answer is always one line.
            if not multiline or not response.ok or response.continuation:
                return response
            self._status = (response.ok, response.text)
        while True:
            line = self._buffer.next_line()
            if line is None:
                return None
            if line == b".":
                ok, text = self._status
                body = tuple(self._lines)
                self._status = None
                self._lines = []
                return Response(ok, text, body)
            if line.startswith(b"."):
                line = line[1:]  # RFC 1939 §3: byte-stuffed termination octet
            self._lines.append(line.decode("utf-8", errors="replace"))
            if len(self._lines) > self._max_lines:
                raise ProtocolError(f"a multi-line response has more than {self._max_lines} lines")


def _status_line(line: bytes) -> Response:
    # RFC 1939 §3 names the indicators in upper case; some servers differ, and
    # a case-blind match costs nothing.
    head = line[:4].upper()
    if head[:3] == b"+OK" and line[3:4] in (b"", b" "):
        return Response(True, _decode(line[4:]))
    if head == b"-ERR" and line[4:5] in (b"", b" "):
        return Response(False, _decode(line[5:]))
    if line[:1] == b"+" and line[1:2] in (b"", b" "):
        # RFC 5034 §4: "+" SP [base64]; some servers omit the space when empty.
        return Response(True, _decode(line[2:]), continuation=True)
    shown = line[:60].decode("ascii", errors="backslashreplace")
    raise ProtocolError(f"not a POP3 status line: {shown!r}")


_STATUS_STARTS = tuple(
    indicator + end for indicator in (b"+OK", b"-ERR", b"+") for end in (b" ", b"\r", b"\n")
)


def _check_partial_status(head: bytes) -> None:
    # Fail on the first bytes that can never start a status line (a TLS alert,
    # "* OK" from an IMAP server) instead of waiting for a line end.
    head = head.upper()
    if head and not any(s.startswith(head) or head.startswith(s) for s in _STATUS_STARTS):
        shown = head.decode("ascii", errors="backslashreplace")
        raise ProtocolError(f"not a POP3 status line: {shown!r}")


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def user_command(user: str) -> bytes:
    check_command_text(user, "the user name")
    return f"USER {user}\r\n".encode()


def pass_command(password: str) -> bytes:
    """PASS; RFC 1939 §7 lets the password contain spaces (it is the rest of the line)."""
    check_command_text(password, "the password")
    return f"PASS {password}\r\n".encode()


def auth_plain_command(user: str, password: str) -> bytes:
    """AUTH PLAIN with an initial response (RFC 5034 §4).

    ``ValueError`` when the line would exceed 255 octets: RFC 5034 then
    requires ``AUTH_PLAIN_COMMAND`` and ``auth_plain_response`` after "+ ".
    """
    line = b"AUTH PLAIN " + sasl_plain(user, password) + b"\r\n"
    if len(line) > MAX_COMMAND_LENGTH:
        raise ValueError("credentials too long for an initial response; use AUTH_PLAIN_COMMAND")
    return line


def auth_plain_response(user: str, password: str) -> bytes:
    """The base64 PLAIN line answering the server's "+ " (RFC 5034 §4)."""
    return sasl_plain(user, password) + b"\r\n"


def decode_challenge(response: Response) -> str:
    if not response.continuation:
        raise ValueError("the response is not a '+ ' continuation")
    return sasl_decode(response.text).decode("utf-8", errors="replace")


class CapaInfo(Struct, frozen=True):
    """What CAPA announces (RFC 2449 §6)."""

    capabilities: tuple[str, ...]
    stls: bool
    user: bool
    sasl_mechanisms: tuple[str, ...]
    login_delay: int | None  # seconds between logins
    expire: str | None  # "NEVER" or a number of days, as announced
    implementation: str | None

    def has(self, tag: str) -> bool:
        tag = tag.upper()
        return any(c.split(maxsplit=1)[0].upper() == tag for c in self.capabilities)


def parse_capa(response: Response) -> CapaInfo:
    """``ValueError`` for a -ERR (CAPA is optional, RFC 2449 §5: check ``ok`` first)."""
    if not response.ok or response.continuation:
        raise ValueError("CAPA was refused; there is nothing to parse")
    capabilities: list[str] = []
    tags: dict[str, list[str]] = {}
    implementation: str | None = None
    for line in response.lines:
        words = line.split()
        if not words:
            continue
        capabilities.append(line.strip())
        tag = words[0].upper()
        tags.setdefault(tag, words[1:])
        if tag == "IMPLEMENTATION" and implementation is None:
            implementation = line.strip()[len(words[0]) :].strip() or None
    delay = tags.get("LOGIN-DELAY")
    expire = tags.get("EXPIRE")
    return CapaInfo(
        capabilities=tuple(capabilities),
        stls="STLS" in tags,
        user="USER" in tags,
        sasl_mechanisms=tuple(dict.fromkeys(m.upper() for m in tags.get("SASL", ()))),
        # RFC 2449 §6.5/§6.7: a trailing "USER" means the value may vary per user.
        login_delay=_small_int(delay[0]) if delay else None,
        expire=expire[0].upper() if expire else None,
        implementation=implementation,
    )


def _small_int(text: str) -> int | None:
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    return None


_STAT = re.compile(r"([0-9]{1,18}) ([0-9]{1,18})(?: |$)")


def parse_stat(response: Response) -> tuple[int, int]:
    """(messages, octets) from "+OK nn mm" (RFC 1939 §5)."""
    if not response.ok or response.continuation:
        raise ValueError("STAT was refused; there is nothing to parse")
    match = _STAT.match(response.text)
    if match is None:
        raise ProtocolError(f"malformed STAT answer: {response.text[:60]!r}")
    return int(match.group(1)), int(match.group(2))


# RFC 1939 §7: the APOP timestamp is a msg-id, "<" ... "@" ... ">", in the greeting.
_TIMESTAMP = re.compile(r"<[^<>\s@]*@[^<>\s]*>")


def apop_timestamp(greeting: Response) -> str | None:
    if not greeting.ok or greeting.continuation:
        return None
    match = _TIMESTAMP.search(greeting.text)
    return match.group(0) if match else None
