"""Line framing shared by the IMAP, POP3 and SMTP parsers.

Bytes go in with ``feed``; complete lines (or, for IMAP literals, exact byte
counts) come out. Nothing here reads a socket or a clock.
"""

from __future__ import annotations

import base64


class ProtocolError(Exception):
    """The peer broke the protocol: garbage, a different protocol, bad framing.

    Our own mistakes (calling a parser the wrong way, bad arguments to a
    command builder) raise ``ValueError``/``RuntimeError`` instead, so a caller
    can tell "the server is broken" from "maildiag is broken".
    """


class LineTooLong(ProtocolError):
    """A line grew past the bound before its line end arrived."""


class StarttlsInjection(ProtocolError):
    """The server sent more bytes after its go-ahead for TLS, before the handshake.

    Whatever follows "OK Begin TLS" / "+OK" / "220" in plaintext can only be
    read as if it had come inside TLS (CVE-2011-0411 on the server side; the
    client-side response injection of Poddebniak et al., "Why TLS is better
    without STARTTLS", USENIX Security 2021). A careful client never reads it:
    a man in the middle, or a broken server, put it there. ``received`` is the
    start of those bytes (at most ``SHOWN`` of them), ``size`` how many there were.
    """

    SHOWN = 200

    def __init__(self, received: bytes, size: int | None = None) -> None:
        self.received = received[: self.SHOWN]
        self.size = len(received) if size is None else size
        shown = self.received.decode("ascii", errors="backslashreplace")
        more = "..." if self.size > len(self.received) else ""
        super().__init__(
            f"the server sent {self.size} more bytes in plaintext after agreeing to start TLS,"
            f" before the handshake: {shown + more!r}"
        )

    @property
    def text(self) -> str:
        """The injected bytes as text, for quoting (escaped later like all server text)."""
        return self.received.decode("utf-8", errors="replace")


class LineBuffer:
    """Buffers received bytes and hands them out as lines or as exact byte counts.

    ``max_line_length`` bounds a line without its line end. It is checked as
    data arrives, so a peer that streams megabytes without a newline is caught
    after ``max_line_length`` bytes rather than when (if ever) the newline comes.
    """

    def __init__(self, max_line_length: int = 64 * 1024) -> None:
        if max_line_length < 1:
            raise ValueError("max_line_length must be positive")
        self._max = max_line_length
        self._buf = bytearray()
        # Where the search for b"\n" resumes: bytes before it are known to hold
        # none, so feeding one byte at a time stays linear.
        self._scanned = 0
        self._error: LineTooLong | None = None

    def feed(self, data: bytes) -> None:
        if self._error is not None:
            return  # the stream is already condemned; do not grow the buffer
        self._buf += data

    @property
    def pending(self) -> int:
        """Bytes received but not yet handed out."""
        return len(self._buf)

    def next_line(self) -> bytes | None:
        """One line without its line end (CRLF, or a bare LF), or None for "need more"."""
        if self._error is not None:
            raise self._error
        # A line may be max bytes plus CR LF: looking further is never needed.
        limit = self._max + 2
        idx = self._buf.find(b"\n", self._scanned, limit)
        if idx < 0:
            size = len(self._buf)
            self._scanned = min(size, limit)
            if size > self._max + 1 or (size == self._max + 1 and self._buf[-1] != 0x0D):
                self._fail()
            return None
        end = idx - 1 if idx > 0 and self._buf[idx - 1] == 0x0D else idx
        if end > self._max:
            self._fail()
        line = bytes(self._buf[:end])
        # CPython deletes from the front of a bytearray in O(1) (it moves a start offset).
        del self._buf[: idx + 1]
        self._scanned = 0
        return line

    def end_plaintext(self) -> None:
        """The peer said "go ahead" to TLS: nothing may be buffered behind that reply.

        ``StarttlsInjection`` with the leftover bytes otherwise; they are then
        discarded, so no caller can read them as if they had come inside TLS.
        """
        if self._buf:
            leftover = bytes(self._buf)
            self._buf.clear()
            self._scanned = 0
            raise StarttlsInjection(leftover)

    def peek(self, n: int) -> bytes:
        """Up to ``n`` buffered bytes, without consuming them.

        Lets a parser reject the start of a line that can never become valid
        (a TLS record, an HTTP status line) before the line end arrives.
        """
        return bytes(self._buf[:n])

    def take_bytes(self, n: int) -> bytes | None:
        """Exactly ``n`` raw bytes (an IMAP literal), or None until that many are buffered."""
        if n < 0:
            raise ValueError("n must not be negative")
        if self._error is not None:
            raise self._error
        if len(self._buf) < n:
            return None
        data = bytes(self._buf[:n])
        del self._buf[:n]
        self._scanned = 0
        return data

    def _fail(self) -> None:
        self._error = LineTooLong(f"a line is longer than {self._max} bytes")
        self._buf.clear()
        self._scanned = 0
        raise self._error


def check_command_text(value: str, what: str) -> None:
    """Refuses text that would break command framing.

    The message names only ``what``: the value may be a password.
    """
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"{what} must not contain CR, LF or NUL")


def sasl_plain(user: str, password: str, authzid: str = "") -> bytes:
    """The base64 SASL PLAIN message (RFC 4616 §2): authzid NUL authcid NUL passwd.

    Shared by SMTP AUTH (RFC 4954), POP3 AUTH (RFC 5034) and IMAP AUTHENTICATE
    (RFC 3501 §6.2.2, SASL-IR RFC 4959). Returned without a line end.
    """
    parts = {"authorization identity": authzid, "user": user, "password": password}
    for what, value in parts.items():
        if "\0" in value:
            raise ValueError(f"the {what} must not contain NUL")
    message = b"\0".join(v.encode("utf-8") for v in (authzid, user, password))
    return base64.b64encode(message)


def sasl_encode(value: str) -> bytes:
    """base64 of UTF-8 text, for a SASL response line (e.g. AUTH LOGIN)."""
    return base64.b64encode(value.encode("utf-8"))


def sasl_decode(text: str) -> bytes:
    """Decodes a base64 SASL challenge, tolerating whitespace and missing padding."""
    cleaned = "".join(text.split())
    if cleaned in ("", "="):
        return b""
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except ValueError as exc:  # binascii.Error is a ValueError
        raise ProtocolError("the server's SASL challenge is not valid base64") from exc
