"""Logging in on IMAP, POP3 and SMTP submission, and classifying the answer.

Each ``*_login`` function drives one login over an open (normally encrypted)
session and turns the server's answer into an ``AuthResult`` whose status
tells a wrong password from a disabled account, a refusal to log in before
TLS, a missing mechanism and a temporary failure, and whose cause names what
the reply says (an app password required, SMTP AUTH off, ...): the table of
known replies is ``maildiag.login_replies``. The password is revealed
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

from .. import login_replies
from ..credentials_input import Credentials
from ..deadline import Deadline
from ..finding_codes import FindingCode
from ..model import AuthResult, AuthStatus, LoginHint
from ..protocols import imap, pop3, smtp
from ..quoting import SecretScrubber
from .sessions import ImapSession, Pop3Session, SessionRefused, SmtpSession

# Statuses that say "these credentials do not work here": trying them on the
# other endpoints would only add failed logins (or, for a password the
# provider does not take this way, the same refusal again).
CREDENTIAL_REFUSALS = frozenset(
    {
        AuthStatus.WRONG_CREDENTIALS,
        AuthStatus.ACCOUNT_DISABLED,
        AuthStatus.PASSWORD_LOGIN_DISABLED,
    }
)
# Statuses after which no other endpoint of the run may try the password: the
# refusals, and a login that got no verdict in time. Courier's authdaemon
# answers a wrong password only after ~5 s; with a shorter timeout the server
# has counted a failure we never saw, and the next pilot would add another.
STOPS_FURTHER_LOGINS = CREDENTIAL_REFUSALS | {AuthStatus.NO_ANSWER}


def stops_further_logins(result: AuthResult) -> bool:
    """No other endpoint of the run may send the password after this result."""
    return result.status in STOPS_FURTHER_LOGINS or result.cause in login_replies.STOPPING_CAUSES


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
    cause: FindingCode | None = None,
    alerts: Iterable[str] = (),
    hint: LoginHint | None = None,
) -> AuthResult:
    return AuthResult(
        status=status,
        mechanism=mechanism,
        detail=_scrub(detail, creds),
        seconds=time.perf_counter() - started,
        cause=cause,
        alerts=tuple(_scrub(alert, creds) or "" for alert in alerts),
        hint=hint,
    )


def _refusal(
    verdict: login_replies.Verdict,
    mechanism: str | None,
    detail: str,
    creds: Credentials,
    started: float,
) -> AuthResult:
    return _result(
        verdict.status, mechanism, detail, creds, started, verdict.cause, hint=verdict.hint
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


def imap_login(
    session: ImapSession, creds: Credentials, capabilities: Iterable[str], *, host: str = ""
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
        # RFC 3501 §7.1: the provider's notice for the user ("mailbox almost full").
        alerts = login_replies.imap_alerts([*untagged, answer])
        return _result(AuthStatus.OK, shown, text, creds, started, alerts=alerts), tuple(after)
    assert not isinstance(answer, imap.Continuation)
    code = f"[{answer.code}] " if answer.code else ""
    label = answer.status if isinstance(answer, imap.Tagged) else answer.keyword
    detail = f"{label} {code}{answer.text}".strip()
    reply = login_replies.from_imap(answer, untagged, encrypted=session.conn.is_tls, host=host)
    if reply.alerts:
        # RFC 3501 §7.1: an [ALERT] text must be shown to the user.
        detail += "".join(f" (ALERT: {alert})" for alert in reply.alerts)
    verdict = login_replies.classify(reply)
    return _refusal(verdict, shown, detail, creds, started), caps


# --- POP3 -------------------------------------------------------------------------


def pop3_login(
    session: Pop3Session, creds: Credentials, capabilities: Iterable[str], *, host: str = ""
) -> AuthResult:
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
    verdict = login_replies.classify(
        login_replies.from_pop3(response, encrypted=session.conn.is_tls, host=host)
    )
    return _refusal(verdict, shown, str(response), creds, started)


# --- SMTP -------------------------------------------------------------------------


def smtp_login(
    session: SmtpSession, creds: Credentials, capabilities: Iterable[str], *, host: str = ""
) -> AuthResult:
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
        code, _, text = exc.text.partition(" ")
        reply = smtp.Reply(int(code) if code.isdigit() else 421, (text,))
        verdict = login_replies.classify(
            login_replies.from_smtp(reply, encrypted=session.conn.is_tls, host=host)
        )
        return _refusal(verdict, mechanism, exc.text, creds, started)
    if reply.code == 334:
        session.run(smtp.AUTH_CANCEL)
        detail = "the server keeps asking for more authentication data"
        return _result(AuthStatus.FAILED, mechanism, detail, creds, started)
    if reply.code == 235:
        return _result(AuthStatus.OK, mechanism, str(reply), creds, started)
    verdict = login_replies.classify(
        login_replies.from_smtp(reply, encrypted=session.conn.is_tls, host=host)
    )
    return _refusal(verdict, mechanism, str(reply), creds, started)


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
    login lets them all go; wrong credentials, a disabled account, a password
    the provider does not take this way, a server throttling this address
    (``stops_further_logins``) or a login without an answer (None or
    NO_ANSWER) make them skip; any other outcome
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
            elif stops_further_logins(result) and self._refusal is None:
                self._refusal = Verdict(where, result)
            self._cond.notify_all()

    @property
    def refusal(self) -> Verdict | None:
        with self._cond:
            return self._refusal
