"""Which login mechanisms put the password itself on the wire.

A login offered before TLS is a risk only when it sends the password in a
form an eavesdropper can read back. That is the case for SASL PLAIN and LOGIN
(RFC 4616, draft-murchison-sasl-login: base64 is an encoding, not a cipher),
the IMAP LOGIN command (RFC 3501 §6.2.3) and POP3 USER/PASS (RFC 1939 §7).
Challenge-response (CRAM-MD5, DIGEST-MD5, SCRAM-*, NTLM, APOP), Kerberos
(GSSAPI, GS2-KRB5), certificates (EXTERNAL) and one-time passwords send
something else. OAuth bearer tokens (XOAUTH2, OAUTHBEARER) are secrets too,
but not the password: a captured token expires, the password does not.

One ambiguity: POP3's CAPA "USER" (RFC 2449 §6.6) says only that the USER
command exists, not that it is accepted now — Courier with POP3_TLS_REQUIRED=1
lists USER before STLS and answers "-ERR TLS required to log in." to it. The
only way to know is to send USER, which some servers log as a login attempt
(and a password-guessing filter may count), so maildiag does not: such a
listing is UNCLEAR, reported at info level.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from .lines import check_command_text, sasl_encode, sasl_plain


class Exposure(enum.Enum):
    PASSWORD = "password"  # the password itself goes over the connection
    UNCLEAR = "unclear"  # announced, but whether it works before TLS is not said
    NONE = "none"  # something other than the password (a proof, a ticket, a token)


# IMAP's LOGIN command and POP3's USER/PASS are listed under these names by
# the sessions (see maildiag.probes.sessions), next to the SASL mechanisms.
IMAP_LOGIN_COMMAND = "LOGIN"
POP3_USER_COMMAND = "USER"

_PASSWORD = frozenset({"PLAIN", "LOGIN"})
_NOT_PASSWORD = frozenset(
    {
        "CRAM-MD5",
        "CRAM-SHA1",  # Courier's own
        "CRAM-SHA256",  # Courier's own
        "DIGEST-MD5",
        "NTLM",  # challenge-response; weak, but the password is not sent
        "GSSAPI",
        "GSS-SPNEGO",
        "KERBEROS_V4",
        "EXTERNAL",
        "ANONYMOUS",
        "OTP",
        "SKEY",
        "SRP",
        "XOAUTH",
        "XOAUTH2",  # a bearer token, not the password
        "OAUTHBEARER",  # RFC 7628: a bearer token, not the password
        "APOP",
    }
)
_NOT_PASSWORD_PREFIXES = ("SCRAM-", "GS2-")  # RFC 5802 / RFC 7677, RFC 5801


def exposure(mechanism: str) -> Exposure:
    """How much of the password ``mechanism`` reveals to someone reading the connection.

    ``mechanism`` is a SASL name or ``POP3_USER_COMMAND`` / ``IMAP_LOGIN_COMMAND``
    (the IMAP LOGIN command exposes the password like SASL LOGIN does). Unknown
    names are UNCLEAR: neither a warning nor silence.
    """
    name = mechanism.strip().upper()
    if name in _PASSWORD:
        return Exposure.PASSWORD
    if name == POP3_USER_COMMAND:
        return Exposure.UNCLEAR
    if name in _NOT_PASSWORD or name.startswith(_NOT_PASSWORD_PREFIXES):
        return Exposure.NONE
    return Exposure.UNCLEAR


# --- the client's side of an exchange ------------------------------------------

PASSWORD_MECHANISMS = ("PLAIN", "LOGIN")  # in the order maildiag prefers them


class SaslExchange:
    """maildiag's side of one SASL exchange with a password: PLAIN or LOGIN.

    The same for IMAP AUTHENTICATE (RFC 3501 §6.2.2), POP3 AUTH (RFC 5034) and
    SMTP AUTH (RFC 4954): the protocol client frames the lines, this says what
    goes in them. PLAIN (RFC 4616) sends its one message, as the initial
    response or after the first challenge; LOGIN sends the user name, then
    the password, one per challenge. A challenge beyond those steps gets
    None: the client cancels ("*") instead of sending the password again.
    The password never shows in ``repr``.
    """

    __slots__ = ("_password", "_steps", "initial_response", "mechanism", "user")

    def __init__(
        self, mechanism: str, user: str, password: str, *, initial_response: bool = False
    ) -> None:
        name = mechanism.upper()
        if name not in PASSWORD_MECHANISMS:
            raise ValueError(f"no password exchange for the SASL mechanism {name}")
        if name == "LOGIN" and initial_response:
            raise ValueError("LOGIN has no initial response")
        self.mechanism = name
        self.user = user
        self._password = password
        self.initial_response = initial_response
        if name == "PLAIN":
            self._steps: list[bytes] = [sasl_plain(user, password)]
        else:
            check_command_text(user, "the user name")
            check_command_text(password, "the password")
            self._steps = [sasl_encode(user), sasl_encode(password)]

    def first(self, max_length: int | None = None) -> bytes | None:
        """The initial response (base64), when the command carries one; else None.

        One longer than ``max_length`` is kept for the first challenge instead
        (RFC 5034 §4: a POP3 command line has at most 255 octets).
        """
        if not self.initial_response:
            return None
        if max_length is not None and len(self._steps[0]) > max_length:
            self.initial_response = False
            return None
        return self._steps.pop(0)

    def respond(self, challenge: str) -> bytes | None:
        """The base64 answer to the server's next challenge; None when nothing is left."""
        del challenge  # PLAIN ignores it, LOGIN answers in order ("Username:", "Password:")
        if not self._steps:
            return None
        return self._steps.pop(0)

    @property
    def finished(self) -> bool:
        """Everything was sent; another challenge means the server wants more than we have."""
        return not self._steps

    def __repr__(self) -> str:
        return f"SaslExchange({self.mechanism})"


def password_mechanism(offered: Iterable[str]) -> str | None:
    """PLAIN when offered, else LOGIN, else None (from upper-case SASL names)."""
    names = set(offered)
    return next((m for m in PASSWORD_MECHANISMS if m in names), None)
