"""Logging in on IMAP, POP3 and SMTP submission, and classifying the answer.

Each ``*_login`` function drives one login over an open (normally encrypted)
session and turns the server's answer into an ``AuthResult`` whose status
tells a wrong password from a disabled account, a refusal to log in before
TLS, a missing mechanism and a temporary failure. The password is revealed
only to build the bytes sent to the server, and every text kept from the
server is scrubbed of it.

``LoginGate`` keeps a wrong password from being tried everywhere: hosting
servers ban an address after a few failed logins (fail2ban), and the
endpoints of one run are probed concurrently.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..credentials_input import Credentials
from ..deadline import Deadline
from ..model import AuthResult, AuthStatus
from ..protocols import imap, pop3, smtp
from ..quoting import SecretScrubber
from .sessions import ImapSession, Pop3Session, SessionRefused, SmtpSession

# Statuses that say "these credentials do not work here": trying them on the
# other endpoints would only add failed logins.
CREDENTIAL_REFUSALS = frozenset({AuthStatus.WRONG_CREDENTIALS, AuthStatus.ACCOUNT_DISABLED})
# Statuses after which no other endpoint of the run may try the password: the
# refusals, and a login that got no verdict in time. Courier's authdaemon
# answers a wrong password only after ~5 s; with a shorter timeout the server
# has counted a failure we never saw, and the next pilot would add another.
STOPS_FURTHER_LOGINS = CREDENTIAL_REFUSALS | {AuthStatus.NO_ANSWER}

# RFC 5530 response codes, as answers to LOGIN/AUTHENTICATE.
_IMAP_CODES = {
    "AUTHENTICATIONFAILED": AuthStatus.WRONG_CREDENTIALS,
    "AUTHORIZATIONFAILED": AuthStatus.ACCOUNT_DISABLED,
    "EXPIRED": AuthStatus.ACCOUNT_DISABLED,
    "CONTACTADMIN": AuthStatus.ACCOUNT_DISABLED,
    "PRIVACYREQUIRED": AuthStatus.PLAINTEXT_REFUSED,
    "UNAVAILABLE": AuthStatus.TEMPORARY_FAILURE,
    "INUSE": AuthStatus.TEMPORARY_FAILURE,
    "LIMIT": AuthStatus.TEMPORARY_FAILURE,
    "SERVERBUG": AuthStatus.FAILED,
}
# RFC 2449 §8 / RFC 3206 extended response codes.
_POP3_CODES = {
    "AUTH": AuthStatus.WRONG_CREDENTIALS,
    "SYS/TEMP": AuthStatus.TEMPORARY_FAILURE,
    "IN-USE": AuthStatus.TEMPORARY_FAILURE,
    "LOGIN-DELAY": AuthStatus.TEMPORARY_FAILURE,
    "SYS/PERM": AuthStatus.FAILED,
}
# Words servers use when the password was right but the account may not log in
# (Dovecot: "-ERR [AUTH] Account disabled ...", where POP3 has no code for it).
_DISABLED_WORDS = ("disabled", "expired", "locked", "suspended", "blocked", "contact")
_TEMPORARY_WORDS = ("temporar", "try again", "later", "busy", "unavailable")
_MECHANISM_WORDS = ("mechanism", "unsupported auth", "unrecognized auth")


def _has(text: str, words: Iterable[str]) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in words)


def _scrub(text: str | None, creds: Credentials) -> str | None:
    """Server text with the password, in every form we sent it, blotted out."""
    if not text:
        return text
    return SecretScrubber(creds.user, creds.password.reveal())(text)


def _result(
    status: AuthStatus,
    mechanism: str | None,
    detail: str | None,
    creds: Credentials,
    started: float,
) -> AuthResult:
    return AuthResult(
        status=status,
        mechanism=mechanism,
        detail=_scrub(detail, creds),
        seconds=time.perf_counter() - started,
    )


# --- which mechanism --------------------------------------------------------------


def imap_mechanism(capabilities: Iterable[str]) -> str | None:
    """PLAIN when announced (RFC 3501 §6.2.2), else LOGIN unless LOGINDISABLED (§6.2.3)."""
    caps = tuple(c.upper() for c in capabilities)
    if "PLAIN" in imap.auth_mechanisms(caps):
        return "PLAIN"
    if "LOGINDISABLED" not in caps:
        return "LOGIN"
    return None


def pop3_mechanism(capabilities: Iterable[str]) -> str | None:
    """AUTH PLAIN when SASL PLAIN is announced (RFC 5034), else USER/PASS (RFC 1939 §7).

    A server without CAPA (empty capabilities) is assumed to take USER/PASS.
    """
    caps = tuple(capabilities)
    if not caps:
        return "USER"
    words = {w.upper() for c in caps if c.upper().startswith("SASL") for w in c.split()[1:]}
    if "PLAIN" in words:
        return "PLAIN"
    if any(c.split()[0].upper() == "USER" for c in caps if c.split()):
        return "USER"
    return None


def smtp_mechanism(capabilities: Iterable[str]) -> str | None:
    """AUTH PLAIN, else AUTH LOGIN, from the EHLO lines (RFC 4954)."""
    mechanisms: set[str] = set()
    for line in capabilities:
        words = line.replace("=", " ").split()
        if words and words[0].upper() == "AUTH":
            mechanisms.update(w.upper() for w in words[1:])
    for name in ("PLAIN", "LOGIN"):
        if name in mechanisms:
            return name
    return None


def mechanism_for(protocol_name: str, capabilities: Iterable[str]) -> str | None:
    chooser = {"IMAP": imap_mechanism, "POP3": pop3_mechanism, "SMTP": smtp_mechanism}
    return chooser[protocol_name](capabilities)


# --- IMAP -------------------------------------------------------------------------


def _imap_read_until(
    session: ImapSession, tag: str
) -> tuple[list[imap.Untagged], imap.Tagged | imap.Untagged | imap.Continuation]:
    """Responses until the tagged answer to ``tag``, a continuation request, or a BYE."""
    untagged: list[imap.Untagged] = []
    while True:
        response = session.conn.receive(session.parser.next_response, session.parser.feed)
        if isinstance(response, imap.Tagged) and response.tag == tag:
            return untagged, response
        if isinstance(response, imap.Continuation):
            return untagged, response
        if isinstance(response, imap.Untagged):
            if response.keyword == "BYE":
                return untagged, response
            untagged.append(response)


def _imap_status(answer: imap.Tagged | imap.Untagged) -> AuthStatus:
    name = imap.response_code_name(answer.code)
    if name in _IMAP_CODES:
        return _IMAP_CODES[name]
    if _has(answer.text, _TEMPORARY_WORDS) or (
        isinstance(answer, imap.Untagged) and answer.keyword == "BYE"
    ):
        return AuthStatus.TEMPORARY_FAILURE
    if _has(answer.text, _MECHANISM_WORDS):
        return AuthStatus.MECHANISM_UNAVAILABLE
    if isinstance(answer, imap.Tagged) and answer.status == "BAD":
        return AuthStatus.FAILED
    # A plain NO without an RFC 5530 code (Exchange, Courier: "LOGIN failed") is
    # almost always a wrong password; treating it so keeps the lockout gate safe.
    return AuthStatus.WRONG_CREDENTIALS


def imap_login(
    session: ImapSession, creds: Credentials, capabilities: Iterable[str]
) -> tuple[AuthResult, tuple[str, ...]]:
    """Logs in; returns the result and the capabilities valid after the login.

    RFC 3501 §6.2.2 / RFC 4959: AUTHENTICATE PLAIN with the initial response on
    the command line when SASL-IR is announced, else after the "+" request.
    """
    caps = tuple(c.upper() for c in capabilities)
    started = time.perf_counter()
    mechanism = imap_mechanism(caps)
    if mechanism is None:
        detail = "the server announces LOGINDISABLED and no AUTH=PLAIN"
        return _result(AuthStatus.MECHANISM_UNAVAILABLE, None, detail, creds, started), caps
    try:
        if mechanism == "PLAIN":
            message = imap.authenticate_plain_initial(creds.user, creds.password.reveal())
        else:
            imap.quote(creds.user)
            imap.quote(creds.password.reveal())
            message = b""
    except ValueError as exc:
        return _result(AuthStatus.FAILED, mechanism, str(exc), creds, started), caps

    if mechanism == "PLAIN" and "SASL-IR" in caps:
        shown = "PLAIN (SASL-IR)"
        tag, line = session.commands.command("AUTHENTICATE", "PLAIN", message)
        session.conn.send(line)
        untagged, answer = _imap_read_until(session, tag)
    elif mechanism == "PLAIN":
        shown = "PLAIN"
        tag, line = session.commands.command("AUTHENTICATE", "PLAIN")
        session.conn.send(line)
        untagged, answer = _imap_read_until(session, tag)
        if isinstance(answer, imap.Continuation):
            session.conn.send(message + b"\r\n")
            more, answer = _imap_read_until(session, tag)
            untagged += more
    else:
        shown = "LOGIN"
        tag, line = session.commands.command("LOGIN", creds.user, creds.password.reveal())
        session.conn.send(line)
        untagged, answer = _imap_read_until(session, tag)

    if isinstance(answer, imap.Continuation):
        # A challenge where none belongs (PLAIN has one step): cancel (RFC 3501 §6.2.2).
        session.conn.send(b"*\r\n")
        _, answer = _imap_read_until(session, tag)
        if isinstance(answer, imap.Continuation):
            detail = "the server keeps asking for more authentication data"
            return _result(AuthStatus.FAILED, shown, detail, creds, started), caps
    if isinstance(answer, imap.Tagged) and answer.ok:
        after = imap.capabilities_from([*untagged, answer])
        if after is None:
            more, done = session.run("CAPABILITY")
            after = imap.capabilities_from([*more, done]) or caps
        text = f"{answer.status} {answer.text}".strip()
        return _result(AuthStatus.OK, shown, text, creds, started), tuple(after)
    assert not isinstance(answer, imap.Continuation)
    code = f"[{answer.code}] " if answer.code else ""
    label = answer.status if isinstance(answer, imap.Tagged) else answer.keyword
    detail = f"{label} {code}{answer.text}".strip()
    return _result(_imap_status(answer), shown, detail, creds, started), caps


# --- POP3 -------------------------------------------------------------------------


def _pop3_status(response: pop3.Response) -> AuthStatus:
    code = response.code
    if code == "AUTH" and _has(response.text, _DISABLED_WORDS):
        return AuthStatus.ACCOUNT_DISABLED
    if code in _POP3_CODES:
        return _POP3_CODES[code]
    if _has(response.text, ("plaintext", "ssl/tls", "tls required", "encryption")):
        return AuthStatus.PLAINTEXT_REFUSED
    if _has(response.text, _TEMPORARY_WORDS):
        return AuthStatus.TEMPORARY_FAILURE
    if _has(response.text, _MECHANISM_WORDS):
        return AuthStatus.MECHANISM_UNAVAILABLE
    if _has(response.text, _DISABLED_WORDS):
        return AuthStatus.ACCOUNT_DISABLED
    return AuthStatus.WRONG_CREDENTIALS


def pop3_login(session: Pop3Session, creds: Credentials, capabilities: Iterable[str]) -> AuthResult:
    """AUTH PLAIN (RFC 5034) when SASL PLAIN is announced, else USER/PASS (RFC 1939 §7)."""
    started = time.perf_counter()
    mechanism = pop3_mechanism(capabilities)
    user, password = creds.user, creds.password.reveal()
    if mechanism is None:
        detail = "CAPA announces neither USER nor SASL PLAIN"
        return _result(AuthStatus.MECHANISM_UNAVAILABLE, None, detail, creds, started)
    try:
        if mechanism == "PLAIN":
            try:
                response = session.run(pop3.auth_plain_command(user, password))
            except ValueError:
                # RFC 5034 §4: an initial response over 255 octets goes after "+ ".
                response = session.run(pop3.AUTH_PLAIN_COMMAND)
            if response.continuation:
                response = session.run(pop3.auth_plain_response(user, password))
            if response.continuation:
                session.run(pop3.AUTH_CANCEL)
                detail = "the server keeps asking for more authentication data"
                return _result(AuthStatus.FAILED, "PLAIN", detail, creds, started)
            shown = "PLAIN"
        else:
            shown = "USER/PASS"
            user_line = pop3.user_command(user)
            pass_line = pop3.pass_command(password)
            response = session.run(user_line)
            if response.ok:
                response = session.run(pass_line)
    except ValueError as exc:
        return _result(AuthStatus.FAILED, mechanism, str(exc), creds, started)
    if response.ok and not response.continuation:
        return _result(AuthStatus.OK, shown, str(response), creds, started)
    return _result(_pop3_status(response), shown, str(response), creds, started)


# --- SMTP -------------------------------------------------------------------------


def _smtp_status(reply: smtp.Reply) -> AuthStatus:
    enhanced = reply.enhanced_status or ""
    if enhanced == "5.7.13" or (reply.code == 535 and _has(reply.text, _DISABLED_WORDS)):
        return AuthStatus.ACCOUNT_DISABLED  # RFC 5248 registry: 5.7.13 user account disabled
    if reply.code == 535 or enhanced == "5.7.8":
        return AuthStatus.WRONG_CREDENTIALS
    if reply.code in (530, 538) or enhanced in ("5.7.11",):
        # RFC 3207 §4 / RFC 4954 §6: AUTH only after STARTTLS, or encryption required.
        return AuthStatus.PLAINTEXT_REFUSED
    if reply.code in (504, 534) or enhanced == "5.7.9":
        return AuthStatus.MECHANISM_UNAVAILABLE
    if reply.is_transient:
        return AuthStatus.TEMPORARY_FAILURE  # 454 4.7.0 and friends (RFC 4954 §6)
    return AuthStatus.FAILED


def smtp_login(session: SmtpSession, creds: Credentials, capabilities: Iterable[str]) -> AuthResult:
    """AUTH PLAIN with an initial response, else AUTH LOGIN (RFC 4954)."""
    started = time.perf_counter()
    mechanism = smtp_mechanism(capabilities)
    user, password = creds.user, creds.password.reveal()
    if mechanism is None:
        detail = "EHLO announces no AUTH PLAIN or LOGIN"
        return _result(AuthStatus.MECHANISM_UNAVAILABLE, None, detail, creds, started)
    try:
        if mechanism == "PLAIN":
            reply = session.run(smtp.auth_plain_command(user, password))
        else:
            reply = session.run(smtp.auth_login_command())
            if reply.code == 334:
                reply = session.run(smtp.auth_login_response(user))
            if reply.code == 334:
                reply = session.run(smtp.auth_login_response(password))
    except ValueError as exc:
        return _result(AuthStatus.FAILED, mechanism, str(exc), creds, started)
    except SessionRefused as exc:  # 421: the server closes the connection
        return _result(AuthStatus.TEMPORARY_FAILURE, mechanism, exc.text, creds, started)
    if reply.code == 334:
        session.run(smtp.AUTH_CANCEL)
        detail = "the server keeps asking for more authentication data"
        return _result(AuthStatus.FAILED, mechanism, detail, creds, started)
    if reply.code == 235:
        return _result(AuthStatus.OK, mechanism, str(reply), creds, started)
    return _result(_smtp_status(reply), mechanism, str(reply), creds, started)


# --- lockout safety -----------------------------------------------------------------


class Turn(enum.Enum):
    PILOT = "pilot"  # log in now; others wait for the outcome
    GO = "go"  # someone logged in with these credentials: log in too
    SKIP = "skip"  # the credentials were refused elsewhere: do not try
    GIVE_UP = "give_up"  # no verdict before the deadline


@dataclass(frozen=True)
class Verdict:
    """The refusal that stops further attempts: where, and what the server said."""

    where: str  # the endpoint's label
    result: AuthResult


class LoginGate:
    """Lets one endpoint of a run try the credentials before the others do.

    The first probe to reach its login becomes the pilot; the others wait
    (their connection and TLS checks already done in parallel). A successful
    login lets them all go; wrong credentials, a disabled account or a login
    without an answer (None or NO_ANSWER) make them skip; any other outcome
    (mechanism missing, temporary failure) hands the pilot's role to the next
    waiter. A stop reported at any time stops the endpoints that have not
    tried yet: hosting servers count failed logins per address (fail2ban), so
    one wrong password must cost one failure, not six.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pilot: object | None = None
        self._success = False
        self._refusal: Verdict | None = None

    def wait_turn(self, deadline: Deadline, margin: float = 0.5) -> tuple[Turn, object]:
        """(turn, token); pass the token to ``report``. Blocks while another pilot flies."""
        token = object()
        with self._cond:
            while True:
                if self._refusal is not None:
                    return Turn.SKIP, token
                if self._success:
                    return Turn.GO, token
                if self._pilot is None:
                    self._pilot = token
                    return Turn.PILOT, token
                left = deadline.remaining() - margin
                if left <= 0:
                    return Turn.GIVE_UP, token
                self._cond.wait(left)

    def report(self, token: object, where: str, result: AuthResult | None) -> None:
        """The outcome of a login (None: it broke off without an answer)."""
        if result is None:
            result = AuthResult(AuthStatus.NO_ANSWER, None, "the login broke off")
        with self._cond:
            if self._pilot is token:
                self._pilot = None
            if result.status == AuthStatus.OK:
                self._success = True
            elif result.status in STOPS_FURTHER_LOGINS and self._refusal is None:
                self._refusal = Verdict(where, result)
            self._cond.notify_all()

    @property
    def refusal(self) -> Verdict | None:
        with self._cond:
            return self._refusal
