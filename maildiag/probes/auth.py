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

from msgspec import Struct

from .. import login_replies
from ..credentials_input import Credentials
from ..deadline import Deadline
from ..finding_codes import FindingCode
from ..model import AuthResult, AuthStatus, LoginHint, Protocol
from ..protocols import capabilities as capabilities_data
from ..protocols import imap, pop3, smtp
from ..protocols.sasl import SaslExchange
from ..quoting import SecretScrubber
from .sessions import KEEPS_ASKING, ImapSession, Pop3Session, SessionRefused, SmtpSession

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


def mechanism_for(protocol: Protocol, capabilities: Iterable[str]) -> str | None:
    """How maildiag logs in with a password given these capabilities (None: it cannot)."""
    return capabilities_data.parse(protocol, capabilities).password_login()


# --- IMAP -------------------------------------------------------------------------


def imap_login(
    session: ImapSession, creds: Credentials, capabilities: Iterable[str], *, host: str = ""
) -> tuple[AuthResult, tuple[str, ...]]:
    """Logs in; returns the result and the capabilities valid after the login.

    RFC 3501 §6.2.2 / RFC 4959: AUTHENTICATE PLAIN with the initial response on
    the command line when SASL-IR is announced, else after the "+" request.
    """
    caps = tuple(c.upper() for c in capabilities)
    data = capabilities_data.parse(Protocol.IMAP, caps)
    started = time.perf_counter()
    mechanism = data.password_login()
    if mechanism is None:
        detail = "the server announces LOGINDISABLED and no AUTH=PLAIN"
        return _result(AuthStatus.MECHANISM_UNAVAILABLE, None, detail, creds, started), caps
    try:
        if mechanism == "PLAIN":
            exchange = SaslExchange(
                "PLAIN", creds.user, creds.password.reveal(), initial_response=data.sasl_ir
            )
            shown = "PLAIN (SASL-IR)" if data.sasl_ir else "PLAIN"
            untagged, answer = session.authenticate(exchange)
        else:
            shown = "LOGIN"
            imap.quote(creds.user)
            imap.quote(creds.password.reveal())
            untagged, answer = session.login_command(creds.user, creds.password.reveal())
    except ValueError as exc:
        return _result(AuthStatus.FAILED, mechanism, str(exc), creds, started), caps

    if answer is None:
        return _result(AuthStatus.FAILED, shown, KEEPS_ASKING, creds, started), caps
    if isinstance(answer, imap.Tagged) and answer.ok:
        after = imap.capabilities_from([*untagged, answer])
        if after is None:
            more, done = session.run("CAPABILITY")
            after = imap.capabilities_from([*more, done]) or caps
        text = f"{answer.status} {answer.text}".strip()
        # RFC 3501 §7.1: the provider's notice for the user ("mailbox almost full").
        alerts = login_replies.imap_alerts([*untagged, answer])
        return _result(AuthStatus.OK, shown, text, creds, started, alerts=alerts), tuple(after)
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
    mechanism = mechanism_for(Protocol.POP3, capabilities)
    user, password = creds.user, creds.password.reveal()
    if mechanism is None:
        detail = "CAPA announces neither USER nor SASL PLAIN"
        return _result(AuthStatus.MECHANISM_UNAVAILABLE, None, detail, creds, started)
    try:
        if mechanism == "PLAIN":
            shown = "PLAIN"
            exchange = SaslExchange("PLAIN", user, password, initial_response=True)
            answer = session.authenticate(exchange)
            if answer is None:
                return _result(AuthStatus.FAILED, shown, KEEPS_ASKING, creds, started)
            response = answer
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
    mechanism = mechanism_for(Protocol.SMTP, capabilities)
    user, password = creds.user, creds.password.reveal()
    if mechanism is None:
        detail = "EHLO announces no AUTH PLAIN or LOGIN"
        return _result(AuthStatus.MECHANISM_UNAVAILABLE, None, detail, creds, started)
    try:
        exchange = SaslExchange(mechanism, user, password, initial_response=mechanism == "PLAIN")
        reply = session.authenticate(exchange)
    except ValueError as exc:
        return _result(AuthStatus.FAILED, mechanism, str(exc), creds, started)
    except SessionRefused as exc:  # 421: the server closes the connection
        code, _, text = exc.text.partition(" ")
        refused = smtp.Reply(int(code) if code.isdigit() else 421, (text,))
        verdict = login_replies.classify(
            login_replies.from_smtp(refused, encrypted=session.conn.is_tls, host=host)
        )
        return _refusal(verdict, mechanism, exc.text, creds, started)
    if reply is None:
        return _result(AuthStatus.FAILED, mechanism, KEEPS_ASKING, creds, started)
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


class Verdict(Struct, frozen=True):
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
