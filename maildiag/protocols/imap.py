"""IMAP4rev1/IMAP4rev2, sans-IO: response framing, data parsing, command bytes.

``ResponseParser`` reassembles responses, literals included, from bytes split
at arbitrary points (RFC 3501 §7 / RFC 9051 §7). The ``parse_*`` functions turn
untagged data responses into plain values through one small tokenizer for
IMAP's s-expressions (atoms, quoted strings, literals, NIL, parenthesised lists).

``Untagged.text`` shows literal contents inlined as IMAP quoted strings (with
``\\`` and ``"`` escaped; any CR/LF inside a literal is kept as is), so the
text reads naturally in logs. ``Untagged.raw`` keeps the wire form (line ends
normalised to CRLF), and every ``parse_*`` function works from ``raw``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import TypeAlias

from msgspec import Struct

from .lines import LineBuffer, ProtocolError, sasl_plain

_STATUS_KEYWORDS = frozenset({"OK", "NO", "BAD", "BYE", "PREAUTH"})
_TAGGED_STATUS = frozenset({"OK", "NO", "BAD"})

# RFC 3501 §9: tag = 1*<any ASTRING-CHAR except "+">, ASTRING-CHAR = ATOM-CHAR / "]".
_TAG = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\+]+")
_KEYWORD = re.compile(rb"[A-Za-z][A-Za-z0-9._-]*")
_NUMBER = re.compile(rb"[0-9]{1,20}")

MAX_NESTING = 64  # parenthesised lists; real BODYSTRUCTUREs stay far below


class LiteralTooLarge(ProtocolError):
    """The server announced a literal bigger than the parser accepts."""


class Untagged(Struct, frozen=True):
    """A "* ..." response."""

    keyword: str  # upper-case: "OK", "CAPABILITY", "EXISTS", "FETCH", ...
    number: int | None  # "* 5 EXISTS" -> 5
    code: str | None  # response code without brackets (status responses only)
    text: str  # after the keyword (and code); literals inlined as quoted strings
    raw: bytes  # the whole response as received, CRLF line ends, literals included


class Tagged(Struct, frozen=True):
    """The completion of a command: "a1 OK ...", "a1 NO ...", "a1 BAD ..."."""

    tag: str
    status: str  # "OK" | "NO" | "BAD"
    code: str | None
    text: str

    @property
    def ok(self) -> bool:
        return self.status == "OK"


class Continuation(Struct, frozen=True):
    """A command continuation request: "+ text" (RFC 3501 §7.5)."""

    text: str


Response: TypeAlias = Untagged | Tagged | Continuation


class ResponseParser:
    """Reassembles IMAP responses from bytes split at arbitrary points.

    ``max_literal`` bounds one literal; ``max_response_size`` bounds a whole
    response (all its lines and literals), default ``2 * max_literal +
    max_line_length``. A literal over the bound fails as soon as it is
    announced, before any of it is buffered. The start of a line that can
    never become a response (a TLS record, binary noise) fails at once instead
    of waiting for a line end. Errors are final: after a ``ProtocolError``
    every call raises again.
    """

    def __init__(
        self,
        max_line_length: int = 64 * 1024,
        max_literal: int = 10 * 1024 * 1024,
        *,
        max_response_size: int | None = None,
    ) -> None:
        self._buffer = LineBuffer(max_line_length)
        self._max_literal = max_literal
        self._max_response = (
            max_response_size
            if max_response_size is not None
            else 2 * max_literal + max_line_length
        )
        self._error: ProtocolError | None = None
        # The untagged response being assembled while literals arrive.
        self._number: int | None = None
        self._keyword = ""
        self._raw: list[bytes] = []
        self._text: list[str] = []
        self._size = 0
        self._literal: int | None = None  # bytes of literal still expected

    def feed(self, data: bytes) -> None:
        self._buffer.feed(data)

    @property
    def pending(self) -> int:
        """Bytes received beyond the responses handed out (see CVE-2011-0411 after STARTTLS)."""
        return self._buffer.pending

    def end_plaintext(self) -> None:
        """Call right after the go-ahead to STARTTLS: the plaintext stream ends there.

        The go-ahead (RFC 3501 §6.2.1) is the last plaintext the server may send.
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

    def next_response(self) -> Untagged | Tagged | Continuation | None:
        if self._error is not None:
            raise self._error
        try:
            return self._next_response()
        except ProtocolError as exc:
            self._error = exc
            raise

    def _next_response(self) -> Untagged | Tagged | Continuation | None:
        while True:
            if self._literal is not None:
                data = self._buffer.take_bytes(self._literal)
                if data is None:
                    return None
                self._literal = None
                self._raw.append(data)
                self._text.append(_quote_for_text(data))
                continue
            line = self._buffer.next_line()
            if line is None:
                if not self._raw:
                    _check_partial_first_line(self._buffer.peek(64))
                return None
            if not self._raw:
                first = self._first_line(line)
                if first is not None:
                    return first
            else:
                self._raw.append(line + b"\r\n")
                self._add_size(len(line) + 2)
                rest = self._strip_literal(line)
                self._text.append(_decode(rest))
            if self._literal is None:
                return self._finish()

    def _first_line(self, line: bytes) -> Untagged | Tagged | Continuation | None:
        """Classifies a response's first line; None if literals follow."""
        if line[:1] == b"+":
            # RFC 3501 §7.5: "+" SP text; a bare "+" is common (e.g. before IDLE data).
            if line[1:2] not in (b"", b" "):
                raise ProtocolError(f"not an IMAP response: {_excerpt(line)}")
            return Continuation(_decode(line[2:]))
        if line[:2] == b"* ":
            return self._untagged_first_line(line)
        return _tagged(line)

    def _untagged_first_line(self, line: bytes) -> Untagged | None:
        pos = 2
        number: int | None = None
        match = _NUMBER.match(line, pos)
        if match is not None and line[match.end() : match.end() + 1] == b" ":
            number = int(match.group())
            pos = match.end() + 1
        match = _KEYWORD.match(line, pos)
        if match is None or line[match.end() : match.end() + 1] not in (b"", b" "):
            raise ProtocolError(f"not an IMAP response: {_excerpt(line)}")
        keyword = match.group().decode("ascii").upper()
        rest = line[match.end() + 1 :]
        if keyword in _STATUS_KEYWORDS:
            # resp-text is free text up to CRLF (RFC 3501 §9): a trailing "{5}"
            # there is words, never a literal.
            if number is not None:
                raise ProtocolError(f"a numbered {keyword} response: {_excerpt(line)}")
            code, text = _resp_text(rest)
            return Untagged(keyword, None, code, text, line + b"\r\n")
        self._number = number
        self._keyword = keyword
        self._raw = [line + b"\r\n"]
        self._size = 0
        self._add_size(len(line) + 2)
        self._text = [_decode(self._strip_literal(rest))]
        return None

    def _strip_literal(self, segment: bytes) -> bytes:
        """Notes a literal announced at the end of ``segment``; returns the text before it.

        A literal is "{n}", "{n+}" (RFC 7888) or "~{n}" (RFC 3516) ending the line.
        """
        if not segment.endswith(b"}"):
            return segment
        start = segment.rfind(b"{")
        digits = segment[start + 1 : -1]
        if digits.endswith(b"+"):
            digits = digits[:-1]
        if start < 0 or not digits.isdigit():
            return segment
        size = int(digits) if len(digits) <= 18 else self._max_literal + 1
        if size > self._max_literal:
            shown = digits[:20].decode("ascii") + ("..." if len(digits) > 20 else "")
            raise LiteralTooLarge(
                f"the server announced a {shown}-byte literal; the limit is {self._max_literal}"
            )
        self._add_size(size)
        self._literal = size
        if start > 0 and segment[start - 1] == 0x7E:  # "~"
            start -= 1
        return segment[:start]

    def _add_size(self, n: int) -> None:
        self._size += n
        if self._size > self._max_response:
            raise ProtocolError(f"a response is larger than {self._max_response} bytes")

    def _finish(self) -> Untagged:
        text = "".join(self._text)
        response = Untagged(self._keyword, self._number, None, text, b"".join(self._raw))
        self._number = None
        self._keyword = ""
        self._raw = []
        self._text = []
        self._size = 0
        return response


def _check_partial_first_line(head: bytes) -> None:
    # Fail on the first bytes that can never start a response (a TLS alert, a
    # binary banner) instead of waiting for a line end that may never come.
    if not head:
        return
    if head[:1] == b"*":
        if head[1:2] not in (b"", b" "):
            raise ProtocolError(f"not an IMAP response: {_excerpt(head)}")
        return
    if head[:1] == b"+":
        if head[1:2] not in (b"", b" ", b"\r"):
            raise ProtocolError(f"not an IMAP response: {_excerpt(head)}")
        return
    tag = head.split(b" ", 1)[0].rstrip(b"\r")
    if tag and not _TAG.fullmatch(tag):
        raise ProtocolError(f"not an IMAP response: {_excerpt(head)}")


def _tagged(line: bytes) -> Tagged:
    tag, _, rest = line.partition(b" ")
    if not _TAG.fullmatch(tag):
        raise ProtocolError(f"not an IMAP response: {_excerpt(line)}")
    status, _, rest = rest.partition(b" ")
    status_text = status.decode("ascii", errors="replace").upper()
    if status_text not in _TAGGED_STATUS:
        raise ProtocolError(f"not an IMAP response: {_excerpt(line)}")
    code, text = _resp_text(rest)
    return Tagged(tag.decode("ascii"), status_text, code, text)


def _resp_text(rest: bytes) -> tuple[str | None, str]:
    # RFC 3501 §9: resp-text = ["[" resp-text-code "]" SP] text. A code without
    # its "]" is kept as text: losing the text would hide what the server said.
    if rest[:1] == b"[":
        end = rest.find(b"]")
        if end > 0:
            code = _decode(rest[1:end]).strip()
            text = rest[end + 1 :]
            return code or None, _decode(text[1:] if text[:1] == b" " else text)
    return None, _decode(rest)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _quote_for_text(data: bytes) -> str:
    text = _decode(data)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _excerpt(line: bytes, limit: int = 60) -> str:
    shown = line[:limit].decode("ascii", errors="backslashreplace")
    return repr(shown + ("..." if len(line) > limit else ""))


# --- commands -----------------------------------------------------------------

_ATOM = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z^_`a-z|}~\[]+")  # ATOM-CHARs (ASCII)
_COMMAND_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*(?: [A-Za-z][A-Za-z0-9-]*)*")


def quote(s: str) -> str:
    """``s`` as an IMAP quoted string (RFC 3501 §4.3).

    Quoted strings cannot carry CR, LF or NUL: such values need a literal or
    AUTHENTICATE, so they raise ``ValueError`` (without echoing the value,
    which may be a password).
    """
    if "\r" in s or "\n" in s or "\0" in s:
        raise ValueError("a quoted string cannot contain CR, LF or NUL; use AUTHENTICATE")
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class CommandBuilder:
    """Numbers commands and renders them as bytes."""

    def __init__(self, prefix: str = "a") -> None:
        if not _TAG.fullmatch(prefix.encode("utf-8", errors="replace")):
            raise ValueError("the tag prefix must be ASCII tag characters (RFC 3501 §9)")
        self._prefix = prefix
        self._counter = 0

    def command(self, name: str, *args: str | bytes) -> tuple[str, bytes]:
        """(tag, line with CRLF).

        ``bytes`` arguments go out unchanged (atoms, sequence sets, lists such
        as ``b"(MESSAGES UIDNEXT)"``); ``str`` arguments go out as atoms when
        they are plain atoms and as quoted strings otherwise. Non-ASCII text is
        sent as UTF-8 in a quoted string, which needs UTF8=ACCEPT (RFC 6855).
        """
        if not _COMMAND_NAME.fullmatch(name):
            raise ValueError("the command name must be one or more atoms")
        parts = [name.encode("ascii")]
        for arg in args:
            if isinstance(arg, bytes):
                if not arg or any(b in arg for b in (0x00, 0x0A, 0x0D)):
                    raise ValueError("a raw argument must be non-empty, without CR, LF or NUL")
                parts.append(arg)
            elif _ATOM.fullmatch(arg):
                parts.append(arg.encode("ascii"))
            else:
                parts.append(quote(arg).encode("utf-8"))
        self._counter += 1
        tag = f"{self._prefix}{self._counter}"
        return tag, tag.encode("ascii") + b" " + b" ".join(parts) + b"\r\n"


def authenticate_plain_initial(user: str, password: str) -> bytes:
    """base64 PLAIN message for "AUTHENTICATE PLAIN <it>" (SASL-IR, RFC 4959) or after "+"."""
    return sasl_plain(user, password)


# --- greeting and capabilities ------------------------------------------------


class Greeting(Struct, frozen=True):
    status: str  # "OK" | "PREAUTH" | "BYE"
    capabilities: tuple[str, ...] | None
    text: str


def parse_greeting(resp: Untagged | Tagged | Continuation) -> Greeting:
    """RFC 3501 §7.1: greeting = "*" SP (resp-cond-auth / resp-cond-bye)."""
    if not isinstance(resp, Untagged) or resp.keyword not in ("OK", "PREAUTH", "BYE"):
        raise ProtocolError("the server's first response is not an IMAP greeting")
    return Greeting(resp.keyword, _code_capabilities(resp.code), resp.text)


def _code_capabilities(code: str | None) -> tuple[str, ...] | None:
    if code is None:
        return None
    words = code.split()
    if not words or words[0].upper() != "CAPABILITY":
        return None
    return tuple(w.upper() for w in words[1:])


def capabilities_from(
    responses: Iterable[Untagged | Tagged | Continuation],
) -> tuple[str, ...] | None:
    """The capabilities announced in ``responses``, upper-cased; the latest wins.

    Both "* CAPABILITY ..." and a "[CAPABILITY ...]" code count (RFC 3501
    §7.1, §7.2.1); None if neither appears.
    """
    found: tuple[str, ...] | None = None
    for resp in responses:
        if isinstance(resp, Untagged) and resp.keyword == "CAPABILITY":
            found = tuple(w.upper() for w in resp.text.split())
        elif isinstance(resp, Untagged | Tagged):
            caps = _code_capabilities(resp.code)
            if caps is not None:
                found = caps
    return found


def auth_mechanisms(capabilities: Iterable[str]) -> tuple[str, ...]:
    """SASL mechanisms from "AUTH=..." capabilities (RFC 3501 §6.2.2)."""
    names = (c[5:].upper() for c in capabilities if c.upper().startswith("AUTH="))
    return tuple(dict.fromkeys(n for n in names if n))


def response_code_name(code: str | None) -> str | None:
    """The atom that names a response code: "UIDVALIDITY 17" -> "UIDVALIDITY".

    Codes worth knowing for a diagnosis (RFC 5530): AUTHENTICATIONFAILED,
    AUTHORIZATIONFAILED, EXPIRED, PRIVACYREQUIRED, CONTACTADMIN, UNAVAILABLE,
    LIMIT, OVERQUOTA, INUSE, SERVERBUG, plus ALERT (RFC 3501 §7.1).
    """
    if not code:
        return None
    words = code.split(maxsplit=1)
    return words[0].upper() if words else None


# --- tokenizer ----------------------------------------------------------------


class Atom(str):
    """An IMAP atom (including NIL and numbers), as opposed to a string."""

    __slots__ = ()


# bytes: a quoted string or a literal, unescaped
Value: TypeAlias = "Atom | bytes | tuple[Value, ...]"

_ATOM_END = frozenset(b' ()"{') | frozenset(range(0x20)) | {0x7F}


def tokenize(data: bytes, max_depth: int = MAX_NESTING) -> tuple[Value, ...]:
    """Splits IMAP data into values: ``Atom``, ``bytes`` (strings) and tuples (lists).

    ``data`` is one response in wire form without its final CRLF; literals
    appear as "{n}" CRLF followed by n bytes. Atoms may carry a bracketed
    section with spaces, as in ``BODY[HEADER.FIELDS (SUBJECT)]<0>``.
    ``ProtocolError`` on anything malformed.
    """
    stack: list[list[Value]] = [[]]
    pos, end = 0, len(data)
    while pos < end:
        byte = data[pos]
        if byte == 0x20:
            pos += 1
        elif byte == 0x28:  # "("
            if len(stack) > max_depth:
                raise ProtocolError(f"lists nested deeper than {max_depth}")
            stack.append([])
            pos += 1
        elif byte == 0x29:  # ")"
            if len(stack) == 1:
                raise ProtocolError("unbalanced ')' in IMAP data")
            done = tuple(stack.pop())
            stack[-1].append(done)
            pos += 1
        elif byte == 0x22:  # '"'
            string, pos = _quoted(data, pos)
            stack[-1].append(string)
        elif byte == 0x7B or (byte == 0x7E and data[pos + 1 : pos + 2] == b"{"):  # "{" "~{"
            string, pos = _literal(data, pos + (byte == 0x7E))
            stack[-1].append(string)
        elif byte in _ATOM_END:
            raise ProtocolError(f"unexpected byte 0x{byte:02x} in IMAP data")
        else:
            atom, pos = _atom(data, pos)
            stack[-1].append(atom)
    if len(stack) != 1:
        raise ProtocolError("unbalanced '(' in IMAP data")
    return tuple(stack[0])


def _quoted(data: bytes, pos: int) -> tuple[bytes, int]:
    out = bytearray()
    pos += 1
    while pos < len(data):
        byte = data[pos]
        if byte == 0x22:
            return bytes(out), pos + 1
        if byte == 0x5C:  # "\": RFC 3501 quoted-specials are only \ and "
            pos += 1
            if pos >= len(data):
                break
            byte = data[pos]
        if byte in (0x0D, 0x0A):
            raise ProtocolError("a line end inside a quoted string")
        out.append(byte)
        pos += 1
    raise ProtocolError("an unterminated quoted string")


_LITERAL_HEAD = re.compile(rb"\{([0-9]{1,18})\+?\}\r\n")


def _literal(data: bytes, pos: int) -> tuple[bytes, int]:
    match = _LITERAL_HEAD.match(data, pos)
    if match is None:
        raise ProtocolError("a malformed literal in IMAP data")
    start = match.end()
    stop = start + int(match.group(1))
    if stop > len(data):
        raise ProtocolError("a literal runs past the end of the response")
    return data[start:stop], stop


def _atom(data: bytes, pos: int) -> tuple[Atom, int]:
    start = pos
    while pos < len(data) and data[pos] not in _ATOM_END:
        if data[pos] == 0x5B:  # "[": a section, which may hold spaces and parentheses
            close = data.find(b"]", pos)
            if close < 0 or any(b in (0x0D, 0x0A) for b in data[pos:close]):
                raise ProtocolError("an unterminated '[' in IMAP data")
            pos = close
        pos += 1
    return Atom(_decode(data[start:pos])), pos


def _payload(resp: Untagged, keyword: str) -> tuple[Value, ...]:
    """The values after "* [n] KEYWORD"; ``ValueError`` if ``resp`` is another response."""
    if resp.keyword != keyword:
        raise ValueError(f"expected a {keyword} response, got {resp.keyword}")
    raw = resp.raw[:-2] if resp.raw.endswith(b"\r\n") else resp.raw
    values = tokenize(raw)
    skip = 2 if resp.number is None else 3
    if len(values) < skip:
        raise ProtocolError(f"a truncated {keyword} response")
    return values[skip:]


def _astring(value: Value) -> str:
    if isinstance(value, Atom):
        return str(value)
    if isinstance(value, bytes):
        return _decode(value)
    raise ProtocolError("expected a string, found a list")


def _nstring(value: Value) -> bytes | None:
    if isinstance(value, Atom):
        if value.upper() == "NIL":
            return None
        raise ProtocolError(f"expected a string or NIL, found {value[:40]!r}")
    if isinstance(value, bytes):
        return value
    raise ProtocolError("expected a string or NIL, found a list")


def _number(value: Value) -> int:
    if isinstance(value, Atom) and _NUMBER.fullmatch(value.encode("utf-8")):
        return int(value)
    shown = value[:40] if isinstance(value, str | bytes) else "a list"
    raise ProtocolError(f"expected a number, found {shown!r}")


def _list(value: Value) -> tuple[Value, ...]:
    if isinstance(value, tuple):
        return value
    raise ProtocolError("expected a parenthesised list")


def to_python(value: Value) -> object:
    """A value as plain Python: atoms and strings as ``str``, NIL as None, lists as tuples."""
    if isinstance(value, tuple):
        return tuple(to_python(v) for v in value)
    if isinstance(value, Atom):
        return None if value.upper() == "NIL" else str(value)
    return _decode(value)


# --- data responses -----------------------------------------------------------


class QuotaResourceUsage(Struct, frozen=True):
    name: str  # upper-case: STORAGE (KiB, RFC 9208 §5.1), MESSAGE, MAILBOX, ...
    usage: int
    limit: int


def parse_quotaroot(resp: Untagged) -> tuple[str, tuple[str, ...]]:
    """RFC 9208 §7.1: "* QUOTAROOT" mailbox *(SP quota-root).

    A mailbox may have no quota root (no quota) or several (RFC 9208 §4.3).
    """
    values = _payload(resp, "QUOTAROOT")
    if not values:
        raise ProtocolError("a QUOTAROOT response without a mailbox")
    return _astring(values[0]), tuple(_astring(v) for v in values[1:])


def parse_quota(resp: Untagged) -> tuple[str, tuple[QuotaResourceUsage, ...]]:
    """RFC 9208 §7.2: "* QUOTA" quota-root SP "(" name usage limit *(...) ")"."""
    values = _payload(resp, "QUOTA")
    if len(values) != 2:
        raise ProtocolError("a QUOTA response must hold a root and one list")
    items = _list(values[1])
    if len(items) % 3:
        raise ProtocolError("a QUOTA list must hold (name usage limit) triples")
    resources = tuple(
        QuotaResourceUsage(_astring(items[i]).upper(), _number(items[i + 1]), _number(items[i + 2]))
        for i in range(0, len(items), 3)
    )
    return _astring(values[0]), resources


def parse_status(resp: Untagged) -> tuple[str, dict[str, int]]:
    """RFC 3501 §7.2.4: "* STATUS" mailbox SP "(" [name SP number *(...)] ")"."""
    values = _payload(resp, "STATUS")
    if len(values) != 2:
        raise ProtocolError("a STATUS response must hold a mailbox and one list")
    items = _list(values[1])
    if len(items) % 2:
        raise ProtocolError("a STATUS list must hold name/number pairs")
    return _astring(values[0]), {
        _astring(items[i]).upper(): _number(items[i + 1]) for i in range(0, len(items), 2)
    }


def parse_search(resp: Untagged) -> tuple[int, ...]:
    """RFC 3501 §7.2.5: "* SEARCH" *(SP nz-number).

    A trailing "(MODSEQ n)" (RFC 7162 §3.1.5) is skipped.
    """
    values = _payload(resp, "SEARCH")
    if values and isinstance(values[-1], tuple):
        values = values[:-1]
    return tuple(_number(v) for v in values)


_FETCH_NUMBERS = frozenset({"UID", "RFC822.SIZE", "X-GM-MSGID", "X-GM-THRID"})
_FETCH_CONTENT = frozenset({"RFC822", "RFC822.HEADER", "RFC822.TEXT"})


def parse_fetch(resp: Untagged) -> dict[str, object]:
    """RFC 3501 §7.4.2: "* n FETCH (" name SP value *(...) ")".

    Names are upper-cased. UID, RFC822.SIZE, BINARY.SIZE[...] and MODSEQ
    (RFC 7162) become ints; FLAGS a tuple of str; message content (BODY[...],
    BINARY[...], RFC822*) bytes or None; everything else ``to_python``.
    """
    values = _payload(resp, "FETCH")
    if resp.number is None or len(values) != 1:
        raise ProtocolError("a FETCH response must be '* n FETCH (...)'")
    items = _list(values[0])
    if len(items) % 2:
        raise ProtocolError("a FETCH list must hold name/value pairs")
    result: dict[str, object] = {}
    for i in range(0, len(items), 2):
        key = items[i]
        if not isinstance(key, Atom):
            raise ProtocolError("a FETCH item name must be an atom")
        name = key.upper()
        value = items[i + 1]
        if name in _FETCH_NUMBERS or name.startswith("BINARY.SIZE["):
            result[name] = _number(value)
        elif name == "MODSEQ":
            inner = _list(value)
            if len(inner) != 1:
                raise ProtocolError("MODSEQ must be '(number)'")
            result[name] = _number(inner[0])
        elif name == "FLAGS":
            result[name] = tuple(_flag(v) for v in _list(value))
        elif name in _FETCH_CONTENT or name.startswith(("BODY[", "BINARY[")):
            result[name] = _nstring(value)
        else:
            result[name] = to_python(value)
    return result


def _flag(value: Value) -> str:
    if not isinstance(value, Atom):
        raise ProtocolError("a flag must be an atom")
    return str(value)


# --- LIST / XLIST ---------------------------------------------------------------

# RFC 6154 §2: the special-use attributes.
SPECIAL_USE = frozenset(
    {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"}
)
# Gmail's XLIST (before RFC 6154) names two of them differently, adds \Inbox
# and other markers of its own (\Starred, \Important).
_XLIST_NAMES = {"\\ALLMAIL": "\\All", "\\SPAM": "\\Junk", "\\STARRED": "\\Flagged"}
_SPECIAL_BY_UPPER = {name.upper(): name for name in SPECIAL_USE}


class ListEntry(Struct, frozen=True):
    """One "* LIST" (or "* XLIST") response: a mailbox with its attributes."""

    name: str  # for people: modified UTF-7 decoded (RFC 3501 §5.1.3)
    wire_name: str  # as the server sent it, to name the mailbox in later commands
    delimiter: str | None  # None: a flat namespace (NIL)
    attributes: tuple[str, ...]  # as sent: "\\HasNoChildren", "\\Sent", ...

    @property
    def special_use(self) -> tuple[str, ...]:
        """The RFC 6154 attributes in their canonical spelling (XLIST's mapped)."""
        found: list[str] = []
        for attribute in self.attributes:
            upper = attribute.upper()
            name = _XLIST_NAMES.get(upper) or _SPECIAL_BY_UPPER.get(upper)
            if name is not None and name not in found:
                found.append(name)
        return tuple(found)

    @property
    def selectable(self) -> bool:
        # RFC 3501 §7.2.2 \Noselect; RFC 5258 §3 \NonExistent implies it.
        upper = {a.upper() for a in self.attributes}
        return not upper & {"\\NOSELECT", "\\NONEXISTENT"}


def parse_list(resp: Untagged) -> ListEntry:
    """RFC 3501 §7.2.2 / RFC 5258 §6: "* LIST" (attrs) SP delimiter SP mailbox [SP ext].

    Gmail's "* XLIST" has the same shape. Extended data after the name
    (RFC 5258 "CHILDINFO") is ignored.
    """
    keyword = resp.keyword if resp.keyword in ("LIST", "XLIST") else "LIST"
    values = _payload(resp, keyword)
    if len(values) < 3:
        raise ProtocolError(f"a {keyword} response must hold attributes, a delimiter and a name")
    attributes = tuple(_flag(v) for v in _list(values[0]))
    delimiter_value = _nstring(values[1])
    delimiter = None if delimiter_value is None else _decode(delimiter_value)
    if delimiter is not None and len(delimiter) != 1:
        raise ProtocolError("a LIST delimiter must be one character or NIL")
    wire_name = _astring(values[2])
    if not wire_name:
        raise ProtocolError("a LIST response without a mailbox name")
    return ListEntry(decode_mailbox_name(wire_name), wire_name, delimiter, attributes)


def decode_mailbox_name(name: str) -> str:
    """RFC 3501 §5.1.3 modified UTF-7 ("Entw&APw-rfe" -> "Entwürfe").

    A name that is not valid modified UTF-7 (a server sending raw UTF-8, as
    with UTF8=ACCEPT, RFC 6855) is returned unchanged.
    """
    if "&" not in name:
        return name
    out: list[str] = []
    pos = 0
    while pos < len(name):
        amp = name.find("&", pos)
        if amp < 0:
            out.append(name[pos:])
            break
        out.append(name[pos:amp])
        end = name.find("-", amp)
        if end < 0:
            return name
        chunk = name[amp + 1 : end]
        if not chunk:
            out.append("&")  # "&-" is a literal "&"
        else:
            decoded = _decode_utf7_chunk(chunk)
            if decoded is None:
                return name
            out.append(decoded)
        pos = end + 1
    return "".join(out)


def _decode_utf7_chunk(chunk: str) -> str | None:
    if not re.fullmatch(r"[A-Za-z0-9+,]+", chunk):
        return None
    data = chunk.replace(",", "/")
    data += "=" * (-len(data) % 4)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) % 2:
        return None  # not whole UTF-16 code units
    try:
        return raw.decode("utf-16-be")
    except UnicodeDecodeError:
        return None
