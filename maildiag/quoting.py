"""Server text made safe to show: control characters escaped, secrets scrubbed, length bounded.

Whatever a server sends is untrusted. A greeting with ANSI escapes would
recolour or rewrite the technician's terminal, and an error reply that
echoes the client's line (some servers quote the failed ``AUTH PLAIN``
blob) would put the password into the report in base64. Every string of a
run's results goes through ``Sanitizer`` before analysis quotes it, and the
finished diagnosis once more, so no renderer has to remember.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from msgspec import Struct, structs

T = TypeVar("T")

REDACTED = "********"
# Long enough for any real greeting or refusal; a 60 KB banner is noise.
MAX_QUOTED_CHARS = 1000

# C0 controls (tab and line breaks included: a quote is one line), DEL, C1
# controls, and the Unicode characters that reorder or hide text on a
# terminal (bidirectional overrides and isolates, CVE-2021-42574).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069]")
_BASE64_TOKEN = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}")


def escape_controls(text: str) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``, ``\\u202e``)."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def bound(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


class SecretScrubber:
    """Blots out a password in every form maildiag sends it in, wherever a server echoes it.

    The forms: the password itself (IMAP LOGIN, POP3 PASS), as an IMAP quoted
    string, base64 of it (SMTP AUTH LOGIN), and the base64 SASL PLAIN
    messages with and without an authorization identity. A base64 token that
    decodes to something containing the password (a server that re-encodes
    or cuts the blob at another offset) is blotted out as well, as is any
    piece of eight or more characters of one of the base64 forms.
    """

    def __init__(self, user: str, password: str) -> None:
        self._password = password
        self._password_bytes = password.encode("utf-8")
        quoted = password.replace("\\", "\\\\").replace('"', '\\"')
        encoded = [
            base64.b64encode(raw).decode("ascii")
            for raw in (
                self._password_bytes,
                b"\0" + user.encode() + b"\0" + self._password_bytes,
                user.encode() + b"\0" + user.encode() + b"\0" + self._password_bytes,
            )
        ]
        # Longest first, so a form is replaced before a shorter one inside it.
        self._forms = sorted({f for f in (password, quoted, *encoded) if f}, key=len, reverse=True)
        self._encoded = encoded

    def __call__(self, text: str) -> str:
        if not self._password:
            return text
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return _BASE64_TOKEN.sub(self._token, text)

    def _token(self, match: re.Match[str]) -> str:
        token = match.group()
        if any(token in form for form in self._encoded) or self._decodes_to_secret(token):
            return REDACTED
        return token

    def _decodes_to_secret(self, token: str) -> bool:
        stripped = token.rstrip("=")
        for offset in range(4):
            piece = stripped[offset:]
            if len(piece) % 4 == 1:
                piece = piece[:-1]  # a lone sextet holds no whole byte
            if not piece:
                continue
            piece += "=" * (-len(piece) % 4)
            try:
                decoded = base64.b64decode(piece, validate=True)
            except (binascii.Error, ValueError):
                continue
            if self._password_bytes in decoded:
                return True
        return False


class Sanitizer:
    """Applied to every string of a run's results: secrets scrubbed, controls escaped, bounded."""

    def __init__(self, scrubbers: Iterable[Callable[[str], str]] = (), *, limit: int | None = None):
        self._scrubbers = tuple(scrubbers)
        self._limit = limit

    @classmethod
    def for_credentials(cls, credentials: Any | None, *, limit: int | None = None) -> Sanitizer:
        if credentials is None:
            return cls(limit=limit)
        scrubber = SecretScrubber(credentials.user, credentials.password.reveal())
        return cls([scrubber], limit=limit)

    def text(self, text: str) -> str:
        cleaned = text
        for scrub in self._scrubbers:
            cleaned = scrub(cleaned)
        cleaned = escape_controls(cleaned)
        if self._limit:
            cleaned = bound(cleaned, self._limit)
        return text if cleaned == text else cleaned

    def __call__(self, value: T) -> T:
        """``value`` with every string inside it (records, tuples, lists, dicts) sanitized."""
        return self._walk(value)  # type: ignore[no-any-return]

    def _walk(self, value: Any) -> Any:
        if isinstance(value, enum.Enum) or value is None:
            return value  # our own vocabulary (StrEnum values are str too)
        if isinstance(value, str):
            return self.text(value) if value else value
        if isinstance(value, (int, float)):
            return value
        if isinstance(value, Struct):
            changes = {}
            for name in value.__struct_fields__:
                old = getattr(value, name)
                new = self._walk(old)
                if new is not old:
                    changes[name] = new
            return structs.replace(value, **changes) if changes else value
        if isinstance(value, tuple):
            items = tuple(self._walk(v) for v in value)
            if all(a is b for a, b in zip(items, value, strict=True)):
                return value
            return type(value)(*items) if hasattr(value, "_fields") else items
        if isinstance(value, list):
            walked = [self._walk(v) for v in value]
            return value if all(a is b for a, b in zip(walked, value, strict=True)) else walked
        if isinstance(value, dict):
            pairs = [(self._walk(k), self._walk(v)) for k, v in value.items()]
            if all(k is a and v is b for (k, v), (a, b) in zip(pairs, value.items(), strict=True)):
                return value
            return dict(pairs)
        return value
