"""What a server's capabilities mean, derived once: IMAP CAPABILITY, POP3 CAPA, SMTP EHLO.

``Capabilities`` is plain data made from the capability strings as announced
(and as ``ProbeResult`` keeps them). Everything that asks "may we log in
here, and how", "is there QUOTA", "IDLE", "a SIZE limit" reads it, instead of
looking into the strings again.
"""

from __future__ import annotations

from collections.abc import Iterable

from msgspec import Struct

from ..model import Protocol
from . import imap, pop3, smtp
from .sasl import IMAP_LOGIN_COMMAND, POP3_USER_COMMAND, password_mechanism


class Capabilities(Struct, frozen=True):
    protocol: Protocol
    announced: tuple[str, ...]  # as the server sent them (IMAP's upper-cased by the parser)
    mechanisms: tuple[str, ...]  # SASL mechanisms, upper-case, each once, in announced order
    starttls: bool
    login_disabled: bool = False  # IMAP LOGINDISABLED (RFC 3501 §6.2.3)
    user_command: bool = False  # POP3 USER (RFC 2449 §6.6)
    # POP3: CAPA was answered (RFC 2449 is optional; without it USER/PASS is presumed).
    listed: bool = True
    sasl_ir: bool = False  # IMAP SASL-IR (RFC 4959)
    quota: bool = False  # IMAP QUOTA (RFC 9208 §3.1; RFC 2087 servers send only "QUOTA")
    idle: bool = False  # IMAP IDLE (RFC 2177)
    special_use: bool = False  # IMAP SPECIAL-USE (RFC 6154)
    list_extended: bool = False  # IMAP LIST-EXTENDED (RFC 5258)
    xlist: bool = False  # Gmail's XLIST
    status_size: bool = False  # IMAP STATUS=SIZE (RFC 8438)
    uidplus: bool = False  # IMAP UIDPLUS (RFC 4315)
    smtputf8: bool = False  # SMTP SMTPUTF8 (RFC 6531)
    size_limit: int | None = None  # SMTP SIZE (RFC 1870); None: none announced

    @property
    def login_names(self) -> tuple[str, ...]:
        """The ways to log in, as announced: SASL names, IMAP LOGIN, POP3 USER."""
        if self.protocol is Protocol.IMAP:
            login = () if self.login_disabled else (IMAP_LOGIN_COMMAND,)
            return (*login, *self.mechanisms)
        if self.protocol is Protocol.POP3:
            if not self.listed:
                return (POP3_USER_COMMAND,)
            user = (POP3_USER_COMMAND,) if self.user_command else ()
            return (*user, *self.mechanisms)
        return self.mechanisms

    @property
    def login_offered(self) -> bool:
        return bool(self.login_names)

    def password_login(self) -> str | None:
        """How maildiag logs in with a password here, or None when it cannot.

        SASL PLAIN first (one round trip, RFC 4616); else IMAP LOGIN unless
        LOGINDISABLED (RFC 3501 §6.2.3), POP3 USER/PASS (RFC 1939 §7), SMTP
        AUTH LOGIN. Returns "PLAIN", "LOGIN" or "USER".
        """
        if "PLAIN" in self.mechanisms:
            return "PLAIN"
        if self.protocol is Protocol.IMAP:
            return None if self.login_disabled else IMAP_LOGIN_COMMAND
        if self.protocol is Protocol.POP3:
            return POP3_USER_COMMAND if self.user_command or not self.listed else None
        return password_mechanism(self.mechanisms)

    def has(self, name: str) -> bool:
        """Whether the capability (IMAP atom, CAPA tag, EHLO keyword) ``name`` is announced."""
        wanted = name.upper()
        return any(_keyword(c) == wanted for c in self.announced)


def _keyword(capability: str) -> str:
    words = capability.split(maxsplit=1)
    return words[0].upper() if words else ""


def parse(
    protocol: Protocol, announced: Iterable[str], *, listed: bool | None = None
) -> Capabilities:
    """The meaning of ``announced`` for ``protocol``.

    ``listed`` (POP3): whether CAPA was answered; by default, whether anything
    was announced.
    """
    caps = tuple(announced)
    if protocol is Protocol.IMAP:
        return _imap(caps)
    if protocol is Protocol.POP3:
        return _pop3(caps, bool(caps) if listed is None else listed)
    return _smtp(caps)


def _imap(caps: tuple[str, ...]) -> Capabilities:
    upper = frozenset(c.upper() for c in caps)
    return Capabilities(
        Protocol.IMAP,
        caps,
        imap.auth_mechanisms(caps),
        starttls="STARTTLS" in upper,
        login_disabled="LOGINDISABLED" in upper,
        sasl_ir="SASL-IR" in upper,
        quota=any(c == "QUOTA" or c.startswith("QUOTA=") for c in upper),
        idle="IDLE" in upper,
        special_use="SPECIAL-USE" in upper,
        list_extended="LIST-EXTENDED" in upper,
        xlist="XLIST" in upper,
        status_size="STATUS=SIZE" in upper,
        uidplus="UIDPLUS" in upper,
    )


def _pop3(caps: tuple[str, ...], listed: bool) -> Capabilities:
    capa = pop3.parse_capa(pop3.Response(True, "", caps))
    return Capabilities(
        Protocol.POP3,
        caps,
        capa.sasl_mechanisms,
        starttls=capa.stls,
        user_command=capa.user,
        listed=listed,
    )


def _smtp(caps: tuple[str, ...]) -> Capabilities:
    ehlo = smtp.parse_extensions(caps)
    return Capabilities(
        Protocol.SMTP,
        caps,
        ehlo.auth_mechanisms,
        starttls=ehlo.starttls,
        smtputf8=ehlo.has("SMTPUTF8"),
        size_limit=ehlo.size_limit,
    )
