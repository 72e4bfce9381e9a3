"""SMTP submission, sans-IO: reply parsing, EHLO facts, and command bytes.

``ReplyParser`` turns received bytes into ``Reply`` objects (RFC 5321 §4.2);
the functions below build the exact bytes of the commands a probe sends.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from msgspec import Struct
from msgspec.structs import replace

from .lines import (
    LineBuffer,
    ProtocolError,
    check_command_text,
    sasl_decode,
    sasl_encode,
    sasl_plain,
)

STARTTLS_COMMAND = b"STARTTLS\r\n"
QUIT_COMMAND = b"QUIT\r\n"
NOOP_COMMAND = b"NOOP\r\n"
RSET_COMMAND = b"RSET\r\n"
DATA_COMMAND = b"DATA\r\n"
DATA_END = b".\r\n"  # RFC 5321 §4.1.1.4: CRLF "." CRLF, the first CRLF ends the last line
AUTH_CANCEL = b"*\r\n"  # RFC 4954 §4: abandons an AUTH exchange

# RFC 3463 §2: class "." subject "." detail; the class must be 2, 4 or 5.
_ENHANCED = re.compile(r"([245]\.\d{1,3}\.\d{1,3})(?:[ \t]|$)")


class Reply(Struct, frozen=True):
    """One complete (possibly multi-line) SMTP reply."""

    code: int
    lines: tuple[str, ...]  # text after "ddd-"/"ddd " of each line

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    @property
    def is_positive(self) -> bool:
        return 200 <= self.code < 300

    @property
    def is_intermediate(self) -> bool:
        return 300 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return 500 <= self.code < 600

    @property
    def enhanced_status(self) -> str | None:
        """The RFC 3463 status ("5.7.8") that starts the first line, if any."""
        if not self.lines:
            return None
        match = _ENHANCED.match(self.lines[0])
        return match.group(1) if match else None

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()


class ReplyParser:
    """Reassembles SMTP replies from bytes split at arbitrary points.

    The start of a line that can never become a reply line ("HTTP/1.1", a TLS
    record) fails at once instead of waiting for a line end. Once the peer has
    broken the protocol, every later ``next_reply`` raises again: the stream
    cannot be re-synchronised.
    """

    def __init__(self, max_line_length: int = 64 * 1024, max_lines: int = 1000) -> None:
        self._buffer = LineBuffer(max_line_length)
        self._max_lines = max_lines
        self._code: int | None = None
        self._lines: list[str] = []
        self._error: ProtocolError | None = None

    def feed(self, data: bytes) -> None:
        self._buffer.feed(data)

    @property
    def pending(self) -> int:
        """Bytes received beyond the replies handed out so far.

        Non-zero right after the reply to STARTTLS means plaintext was sent
        that would be read as if it came over TLS (CVE-2011-0411).
        """
        return self._buffer.pending

    def end_plaintext(self) -> None:
        """Call right after the go-ahead to STARTTLS: the plaintext stream ends there.

        The go-ahead (RFC 3207 §4) is the last plaintext the server may send.
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

    def next_reply(self) -> Reply | None:
        if self._error is not None:
            raise self._error
        try:
            return self._next_reply()
        except ProtocolError as exc:
            self._error = exc
            raise

    def _next_reply(self) -> Reply | None:
        while True:
            line = self._buffer.next_line()
            if line is None:
                _check_partial_line(self._buffer.peek(4))
                return None
            code, last, text = _split_reply_line(line)
            if self._code is None:
                self._code = code
            elif code != self._code:
                # RFC 5321 §4.2.1: every line of a multi-line reply carries the same code.
                raise ProtocolError(
                    f"reply code changed from {self._code} to {code} inside a multi-line reply"
                )
            self._lines.append(text)
            if len(self._lines) > self._max_lines:
                raise ProtocolError(f"a reply has more than {self._max_lines} lines")
            if last:
                reply = Reply(self._code, tuple(self._lines))
                self._code = None
                self._lines = []
                return reply


def _split_reply_line(line: bytes) -> tuple[int, bool, str]:
    # RFC 5321 §4.2: Reply-code [ ("-" / SP) textstring ], Reply-code = %x32-35 DIGIT DIGIT.
    head = line[:3]
    if len(head) < 3 or not head.isdigit() or head[0] not in b"2345":
        raise ProtocolError(f"not an SMTP reply line: {_excerpt(line)}")
    sep = line[3:4]
    if sep not in (b"", b" ", b"-"):
        raise ProtocolError(f"not an SMTP reply line: {_excerpt(line)}")
    return int(head), sep != b"-", line[4:].decode("utf-8", errors="replace")


def _check_partial_line(head: bytes) -> None:
    # Fail on the first bytes that can never start a reply line (a TLS alert,
    # "HTTP/1.1", "SSH-2.0") instead of waiting for a line end that may never come.
    digits = head[:3]
    if (
        not (digits.isdigit() or not digits)
        or (digits and digits[0] not in b"2345")
        or head[3:4] not in (b"", b" ", b"-", b"\r")
    ):
        raise ProtocolError(f"not an SMTP reply line: {_excerpt(head)}")


def _excerpt(line: bytes, limit: int = 60) -> str:
    shown = line[:limit].decode("ascii", errors="backslashreplace")
    return repr(shown + ("..." if len(line) > limit else ""))


class EhloInfo(Struct, frozen=True):
    """What a 250 reply to EHLO announces (RFC 5321 §4.1.1.1)."""

    server_name: str
    keywords: Mapping[str, tuple[str, ...]]  # upper-cased keyword -> parameters
    capabilities: tuple[str, ...]  # extension lines as announced
    starttls: bool
    auth_mechanisms: tuple[str, ...]
    size_limit: int | None  # None when SIZE is absent, has no number, or is 0 (no limit)

    def has(self, keyword: str) -> bool:
        return keyword.upper() in self.keywords


def parse_ehlo(reply: Reply) -> EhloInfo:
    """Extracts the extensions from a 250 reply to EHLO.

    ``ValueError`` if the reply is not positive (check ``is_positive`` first);
    ``ProtocolError`` for a positive reply other than 250.
    """
    if not reply.is_positive:
        raise ValueError(f"EHLO was refused ({reply.code}); there is nothing to parse")
    if reply.code != 250:
        raise ProtocolError(f"EHLO answered with {reply.code} instead of 250")
    first = reply.lines[0].split() if reply.lines else []
    return replace(parse_extensions(reply.lines[1:]), server_name=first[0] if first else "")


def parse_extensions(lines: Iterable[str]) -> EhloInfo:
    """The extension lines of an EHLO reply (all but its first), as kept in ``capabilities``.

    ``server_name`` is empty: the first line, which names the server, is not among them.
    """
    keywords: dict[str, tuple[str, ...]] = {}
    capabilities: list[str] = []
    mechanisms: list[str] = []
    for line in lines:
        words = line.split()
        if not words:
            continue
        capabilities.append(line.strip())
        keyword, params = words[0].upper(), tuple(words[1:])
        if keyword.startswith("AUTH="):
            # Pre-RFC 2554 form ("AUTH=LOGIN PLAIN"), still sent for old Outlook
            # clients by Postfix (broken_sasl_auth_clients) and old Exchange.
            mechanisms.extend(m.upper() for m in (keyword[5:], *params) if m)
            continue
        if keyword == "AUTH":
            mechanisms.extend(m.upper() for m in params)
        keywords.setdefault(keyword, params)
    auth = tuple(dict.fromkeys(mechanisms))
    if auth or "AUTH" in keywords:
        keywords["AUTH"] = auth
    return EhloInfo(
        server_name="",
        keywords=keywords,
        capabilities=tuple(capabilities),
        starttls="STARTTLS" in keywords,
        auth_mechanisms=auth,
        size_limit=_size_limit(keywords.get("SIZE")),
    )


def _size_limit(params: tuple[str, ...] | None) -> int | None:
    # RFC 1870 §4: "SIZE" alone or "SIZE 0" means no fixed limit is announced.
    if not params or not params[0].isascii() or not params[0].isdigit() or len(params[0]) > 20:
        return None
    value = int(params[0])
    return value or None


def size_limit_from(capabilities: Iterable[str]) -> int | None:
    """The SIZE limit (RFC 1870) among EHLO extension lines (``EhloInfo.capabilities``)."""
    for line in capabilities:
        words = line.split()
        if words and words[0].upper() == "SIZE":
            return _size_limit(tuple(words[1:]))
    return None


# RFC 3463 §3.2 X.1.7 / X.1.8: bad sender mailbox / sender system address;
# Microsoft 365 answers 5.7.60 "SendAsDenied" when the login may not send as
# the address.
_SENDER_STATUSES = frozenset({"5.1.7", "5.1.8", "5.7.60"})
# Postfix: "553 5.7.1 <a@b>: Sender address rejected: not owned by user x"; Exim
# and others word it "sender ... not allowed / not authorized / send as".
_SENDER_WORDS = (
    "sender address rejected",
    "not owned by",
    "send as",
    "sendas",
    "send-as",
    "sender not allowed",
    "sender not authorized",
    "not authorized to send",
    "not allowed to send",
)


def refuses_sender(reply: Reply) -> bool:
    """Whether a permanent refusal names the sender, not the recipient.

    Needed at RCPT TO: Postfix evaluates its sender restrictions only there
    (smtpd_delay_reject = yes, the default), so a refused sender comes as the
    answer to RCPT. A refusal of MAIL FROM is about the sender by definition.
    """
    if not reply.is_permanent:
        return False
    if reply.enhanced_status in _SENDER_STATUSES:
        return True
    text = reply.text.lower()
    return any(words in text for words in _SENDER_WORDS)


def ehlo_command(client_name: str) -> bytes:
    _check_client_name(client_name)
    return f"EHLO {client_name}\r\n".encode("ascii")


def helo_command(client_name: str) -> bytes:
    """For servers that refuse EHLO (RFC 5321 §3.2)."""
    _check_client_name(client_name)
    return f"HELO {client_name}\r\n".encode("ascii")


def _check_client_name(name: str) -> None:
    if not name or not name.isascii() or any(c.isspace() or not c.isprintable() for c in name):
        raise ValueError("the EHLO name must be non-empty printable ASCII without spaces")


def auth_plain_command(user: str, password: str) -> bytes:
    """AUTH PLAIN with an initial response (RFC 4954 §4, RFC 4616)."""
    return b"AUTH PLAIN " + sasl_plain(user, password) + b"\r\n"


def auth_login_command() -> bytes:
    return b"AUTH LOGIN\r\n"


def auth_login_response(value: str) -> bytes:
    """One base64 line answering an AUTH LOGIN 334 challenge (user name, then password)."""
    return sasl_encode(value) + b"\r\n"


def decode_challenge(reply: Reply) -> str:
    """The decoded text of a 334 challenge (RFC 4954 §4); ``ProtocolError`` if not base64."""
    if reply.code != 334:
        raise ValueError(f"a {reply.code} reply is not a SASL challenge")
    return sasl_decode(reply.lines[0] if reply.lines else "").decode("utf-8", errors="replace")


def mail_from_command(addr: str, params: Iterable[str] = ()) -> bytes:
    """MAIL FROM:<addr> [params] (RFC 5321 §4.1.1.2); "" is the null reverse-path.

    Non-ASCII addresses are sent as UTF-8, which needs SMTPUTF8 (RFC 6531).
    """
    _check_path(addr, "the sender address")
    return _with_params(f"MAIL FROM:<{addr}>", params)


def rcpt_to_command(addr: str, params: Iterable[str] = ()) -> bytes:
    if not addr:
        raise ValueError("the recipient address must not be empty")
    _check_path(addr, "the recipient address")
    return _with_params(f"RCPT TO:<{addr}>", params)


def _check_path(addr: str, what: str) -> None:
    check_command_text(addr, what)
    if "<" in addr or ">" in addr:
        raise ValueError(f"{what} must be given without angle brackets")


def _with_params(command: str, params: Iterable[str]) -> bytes:
    parts = [command]
    for param in params:
        check_command_text(param, "an ESMTP parameter")
        if not param or " " in param:
            raise ValueError("an ESMTP parameter must be one non-empty word")
        parts.append(param)
    return (" ".join(parts) + "\r\n").encode("utf-8")


_LINE_END = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)


def dot_stuff(message: bytes) -> bytes:
    """The message body as it must travel after DATA, without the final ".\\r\\n".

    Every line end becomes CRLF: RFC 5321 §2.3.8 forbids bare CR and LF, and
    servers that interpret them differently are how SMTP smuggling works.
    Lines starting with "." get another "." (RFC 5321 §4.5.2). The result
    ends with CRLF (or is empty), so ``DATA_END`` can follow directly.
    """
    text = _LINE_END.sub(b"\r\n", message)
    if text and not text.endswith(b"\r\n"):
        text += b"\r\n"
    return _LEADING_DOT.sub(b"..", text)


def data_payload(message: bytes) -> bytes:
    """Everything to send after the 354 reply to DATA: the stuffed body and the end marker."""
    return dot_stuff(message) + DATA_END
