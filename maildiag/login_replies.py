"""Why a server refused a login, told by its reply: a table of known replies, as data.

Sans-IO. A refusal comes in as a ``LoginReply`` (the parts of an IMAP, POP3
or SMTP answer a rule can match: the status word, the RFC 5530 / RFC 2449
response code, the SMTP reply code and RFC 3463 enhanced status, the text
and any IMAP [ALERT] texts), and ``classify`` returns a ``Verdict``: the
``AuthStatus`` the login gate acts on, and the finding code of the cause.

``RULES`` is tried in order and the first rule whose every given field
matches decides. Provider wordings come before the generic codes they share:
Microsoft's ``535 5.7.139 ... SmtpClientAuthentication is disabled`` before
every other 535 (it contains the word "disabled", which is not about the
account), Gmail's ``534 5.7.9 Application-specific password required``
before RFC 4954's meaning of 5.7.9 ("mechanism too weak"). The last rules
of each protocol catch every reply, so a refusal always gets a verdict.

Each rule's ``seen`` says where its shape comes from; every rule is tested
against a recorded transcript and against a failure twin (a reply that looks
alike and must be decided by another rule), see tests/test_login_replies.py.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from msgspec import Struct

from .finding_codes import FindingCode
from .model import AuthStatus, LoginHint, Protocol
from .protocols import imap, pop3, smtp
from .protocols.capabilities import Capabilities
from .protocols.capabilities import parse as parse_capabilities


class LoginReply(Struct, frozen=True):
    """The matchable parts of a server's answer to a login."""

    protocol: Protocol
    kind: str  # IMAP "NO" / "BAD" / "BYE", POP3 "-ERR", SMTP "4xx" / "5xx"
    text: str  # the human-readable text, without codes
    code: str | None = None  # IMAP response-code atom (RFC 5530), POP3 code (RFC 2449 §8)
    reply_code: int | None = None  # SMTP (RFC 5321 §4.2)
    enhanced: str | None = None  # SMTP enhanced status (RFC 3463), "5.7.8"
    alerts: tuple[str, ...] = ()  # IMAP [ALERT] texts sent with the refusal (RFC 3501 §7.1)
    encrypted: bool = True  # the login went over TLS
    host: str = ""  # the server's name, for replies only one provider words so

    @property
    def words(self) -> str:
        """Everything a text rule searches: the text and the alerts."""
        return " ".join((self.text, *self.alerts))


@functools.cache
def _case_blind(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


class Rule(Struct, frozen=True):
    """One known reply: what it looks like, and what it means."""

    id: str  # stable name, for tests and debugging
    protocol: Protocol
    status: AuthStatus
    cause: FindingCode  # the finding code (maildiag.findings.CATALOGUE)
    seen: str  # where this shape was recorded
    kind: str | None = None
    code: str | None = None
    reply_code: int | None = None
    enhanced: str | None = None
    text: str | None = None  # a regular expression, searched case-blind in LoginReply.words
    encrypted: bool | None = None  # None: either
    host: str | None = None  # a regular expression, searched case-blind in LoginReply.host
    # What usually lies behind this reply at this provider: a sentence for the fix.
    hint: LoginHint | None = None

    def __post_init__(self) -> None:
        for pattern in (self.text, self.host):
            if pattern is not None:
                _case_blind(pattern)  # a rule with a broken expression fails here, not in a probe

    def matches(self, reply: LoginReply) -> bool:
        return (
            reply.protocol is self.protocol
            and self.kind in (None, reply.kind)
            and self.code in (None, reply.code)
            and self.reply_code in (None, reply.reply_code)
            and self.enhanced in (None, reply.enhanced)
            and self.encrypted in (None, reply.encrypted)
            and (self.text is None or _case_blind(self.text).search(reply.words) is not None)
            and (self.host is None or _case_blind(self.host).search(reply.host) is not None)
        )


class Verdict(Struct, frozen=True):
    status: AuthStatus
    cause: FindingCode  # a finding code
    rule: str | None  # the id of the rule that decided; None for the catch-all
    hint: LoginHint | None = None


_S = AuthStatus
IMAP, POP3, SMTP = Protocol.IMAP, Protocol.POP3, Protocol.SMTP

# Text patterns shared by the three protocols.
APP_PASSWORD = r"application-specific password|app password"
# Google ("Please log in via your web browser", "Web login required"),
# Outlook.com ("Login to your account via a web browser to verify your
# identity"), Yahoo ("Please verify your account by going to ...").
WEB_LOGIN = (
    r"log ?in (to your account )?via (a|your) web browser|web login required|"
    r"please verify your account"
)
TOO_MANY_CONNECTIONS = (
    r"too many (simultaneous |concurrent )?connections|maximum number of connections"
)
# A server that counts failed logins or errors and now refuses (Postfix
# smtpd_hard_error_limit: "Error: too many errors"; Dovecot/Cyrus lockouts).
RATE_LIMITED = (
    r"too many (errors|auth|authentication|login|failed|invalid|bad)|temporarily (locked|blocked)|"
    r"rate limit"
)
PLAINTEXT = r"plaintext|ssl/tls|tls required|starttls|encryption required|non-secure"
DISABLED = r"disabled|expired|locked|suspended|blocked"
# Microsoft's hosted mail (Microsoft 365, Outlook.com): IMAP and POP3 take only
# OAuth since Microsoft switched basic authentication off (Exchange Online in
# October 2022, Outlook.com in September 2024); a password login gets the same
# codeless refusal as a wrong password there.
MICROSOFT_HOSTED = r"(^|\.)(office365|outlook|hotmail|live)\.com\.?$"
# Google's own servers (Gmail and Google Workspace): imap.gmail.com,
# pop.gmail.com, smtp.gmail.com, their googlemail.com aliases.
GOOGLE_HOSTED = r"(^|\.)(gmail|googlemail)\.com\.?$"
TEMPORARY = r"temporar|try again|later|busy|unavailable"
MECHANISM = r"mechanism|unsupported auth|unrecognized auth|unrecognised auth"

RULES: tuple[Rule, ...] = (
    # --- IMAP (RFC 3501, RFC 5530) -------------------------------------------------
    Rule(
        "imap-app-password",
        IMAP,
        _S.PASSWORD_LOGIN_DISABLED,
        FindingCode.AUTH_APP_PASSWORD_REQUIRED,
        "Gmail with 2-Step Verification: NO [ALERT] Application-specific password required",
        kind="NO",
        text=APP_PASSWORD,
    ),
    Rule(
        "imap-web-login",
        IMAP,
        _S.PASSWORD_LOGIN_DISABLED,
        FindingCode.AUTH_WEB_LOGIN_REQUIRED,
        "Gmail NO [ALERT] Please log in via your web browser; Outlook.com 'Account is "
        "blocked. Login to your account via a web browser'; Yahoo (#MBR1240)",
        kind="NO",
        text=WEB_LOGIN,
    ),
    Rule(
        "imap-microsoft-basic-auth-off",
        IMAP,
        _S.PASSWORD_LOGIN_DISABLED,
        FindingCode.AUTH_OAUTH_ONLY,
        "Microsoft 365 / Outlook.com, outlook.office365.com: NO LOGIN failed. / NO "
        "AUTHENTICATE failed.",
        kind="NO",
        text=r"^(LOGIN|AUTHENTICATE) failed",
        host=MICROSOFT_HOSTED,
    ),
    Rule(
        "imap-plaintext-over-tls",
        IMAP,
        _S.FAILED,
        FindingCode.AUTH_REFUSED_AS_UNENCRYPTED,
        "Dovecot behind a TLS proxy that does not count as secure: NO [PRIVACYREQUIRED]",
        code="PRIVACYREQUIRED",
        encrypted=True,
    ),
    Rule(
        "imap-privacy-required",
        IMAP,
        _S.PLAINTEXT_REFUSED,
        FindingCode.AUTH_PLAINTEXT_REFUSED,
        "Dovecot, plaintext port: NO [PRIVACYREQUIRED] Plaintext authentication disallowed",
        code="PRIVACYREQUIRED",
        encrypted=False,
    ),
    # Still wrong credentials, but at Google the usual cause is the normal
    # password where only an app password is taken (a hint, not a verdict:
    # Gmail's reply for a missing app password is the one above).
    Rule(
        "imap-google-invalid-credentials",
        IMAP,
        _S.WRONG_CREDENTIALS,
        FindingCode.AUTH_FAILED,
        "imap.gmail.com: NO [AUTHENTICATIONFAILED] Invalid credentials (Failure); "
        "NO [ALERT] Invalid credentials (Failure)",
        kind="NO",
        text=r"invalid credentials",
        host=GOOGLE_HOSTED,
        hint=LoginHint.GOOGLE_APP_PASSWORD,
    ),
    Rule(
        "imap-authentication-failed",
        IMAP,
        _S.WRONG_CREDENTIALS,
        FindingCode.AUTH_FAILED,
        "Dovecot, Gmail, Yahoo: NO [AUTHENTICATIONFAILED]",
        code="AUTHENTICATIONFAILED",
    ),
    Rule(
        "imap-authorization-failed",
        IMAP,
        _S.ACCOUNT_DISABLED,
        FindingCode.AUTH_NOT_AUTHORIZED,
        "Dovecot, Cyrus: NO [AUTHORIZATIONFAILED] (the identity may not use this mailbox)",
        code="AUTHORIZATIONFAILED",
    ),
    Rule(
        "imap-expired",
        IMAP,
        _S.ACCOUNT_DISABLED,
        FindingCode.AUTH_PASSWORD_EXPIRED,
        "RFC 5530 §3, Zimbra, Cyrus: NO [EXPIRED]",
        code="EXPIRED",
    ),
    Rule(
        "imap-contactadmin-disabled",
        IMAP,
        _S.ACCOUNT_DISABLED,
        FindingCode.AUTH_ACCOUNT_DISABLED,
        "Dovecot nologin with a reason: NO [CONTACTADMIN] Account disabled ...",
        code="CONTACTADMIN",
        text=DISABLED,
    ),
    Rule(
        "imap-contactadmin",
        IMAP,
        _S.ACCOUNT_DISABLED,
        FindingCode.AUTH_CONTACT_ADMIN,
        "RFC 5530 §3, Dovecot: NO [CONTACTADMIN]",
        code="CONTACTADMIN",
    ),
    Rule(
        "imap-in-use",
        IMAP,
        _S.TEMPORARY_FAILURE,
        FindingCode.AUTH_IN_USE,
        "RFC 5530 §3, Cyrus, Dovecot: NO [INUSE] (mailbox locked by another session)",
        code="INUSE",
    ),
    Rule(
        "imap-limit",
        IMAP,
        _S.TEMPORARY_FAILURE,
        FindingCode.AUTH_TOO_MANY_CONNECTIONS,
        "RFC 5530 §3, Gmail: NO [LIMIT] too many simultaneous connections",
        code="LIMIT",
    ),
    Rule(
        "imap-too-many-connections",
        IMAP,
        _S.TEMPORARY_FAILURE,
        FindingCode.AUTH_TOO_MANY_CONNECTIONS,
        "Dovecot: * BYE Maximum number of connections from user+IP exceeded",
        text=TOO_MANY_CONNECTIONS,
    ),
    Rule(
        "imap-rate-limited",
        IMAP,
        _S.TEMPORARY_FAILURE,
        FindingCode.AUTH_RATE_LIMITED,
        "Cyrus, Zimbra: NO account temporarily locked after too many failed logins",
        text=RATE_LIMITED,
    ),
    Rule(
        "imap-unavailable",
        IMAP,
        _S.TEMPORARY_FAILURE,
        FindingCode.AUTH_TEMPORARY_FAILURE,
        "Dovecot: NO [UNAVAILABLE] Temporary authentication failure",
        code="UNAVAILABLE",
    ),
    Rule(
        "imap-serverbug",
        IMAP,
        _S.FAILED,
        FindingCode.AUTH_REFUSED,
        "RFC 5530 §3, Dovecot: NO [SERVERBUG]",
        code="SERVERBUG",
    ),
    Rule(
        "imap-temporary-words",
        IMAP,
        _S.TEMPORARY_FAILURE,
        FindingCode.AUTH_TEMPORARY_FAILURE,
        "Courier, Exchange: NO ... try again later",
        text=TEMPORARY,
    ),
    Rule(
        "imap-bye",
        IMAP,
        _S.TEMPORARY_FAILURE,
        FindingCode.AUTH_TEMPORARY_FAILURE,
        "a server hanging up instead of answering the login: * BYE",
        kind="BYE",
    ),
    Rule(
        "imap-mechanism-words",
        IMAP,
        _S.MECHANISM_UNAVAILABLE,
        FindingCode.AUTH_MECHANISM_UNAVAILABLE,
        "Dovecot, Exchange: NO Unsupported authentication mechanism",
        text=MECHANISM,
    ),
    Rule(
        "imap-bad",
        IMAP,
        _S.FAILED,
        FindingCode.AUTH_REFUSED,
        "a BAD to the login command (a syntax the server does not take)",
        kind="BAD",
    ),
    # A plain NO without an RFC 5530 code (Exchange, Courier: "LOGIN failed") is
    # almost always a wrong password; treating it so keeps the lockout gate safe.
    Rule(
        "imap-no",
        IMAP,
        _S.WRONG_CREDENTIALS,
        FindingCode.AUTH_FAILED,
        "Exchange, Microsoft 365: NO LOGIN failed; Courier: NO Login failed",
        kind="NO",
    ),
    # --- POP3 (RFC 2449 §8, RFC 3206) ------------------------------------------------
    Rule(
        "pop3-app-password",
        POP3,
        _S.PASSWORD_LOGIN_DISABLED,
        FindingCode.AUTH_APP_PASSWORD_REQUIRED,
        "Gmail: -ERR [AUTH] Application-specific password required",
        text=APP_PASSWORD,
    ),
    Rule(
        "pop3-web-login",
        POP3,
        _S.PASSWORD_LOGIN_DISABLED,
        FindingCode.AUTH_WEB_LOGIN_REQUIRED,
        "Gmail: -ERR [AUTH] Web login required",
        text=WEB_LOGIN,
    ),
    Rule(
        "pop3-microsoft-basic-auth-off",
        POP3,
        _S.PASSWORD_LOGIN_DISABLED,
        FindingCode.AUTH_OAUTH_ONLY,
        "Microsoft 365 / Outlook.com, outlook.office365.com: -ERR Logon failure: unknown user "
        "name or bad password.",
        text=r"^Logon failure",
        host=MICROSOFT_HOSTED,
    ),
    Rule(
        "pop3-plaintext-over-tls",
        POP3,
        _S.FAILED,
        FindingCode.AUTH_REFUSED_AS_UNENCRYPTED,
        "Dovecot behind a TLS proxy: -ERR [AUTH] Plaintext authentication disallowed ...",
        text=PLAINTEXT,
        encrypted=True,
    ),
    Rule(
        "pop3-plaintext",
        POP3,
        _S.PLAINTEXT_REFUSED,
        FindingCode.AUTH_PLAINTEXT_REFUSED,
        "Dovecot: -ERR [AUTH] Plaintext authentication disallowed; Courier: -ERR TLS required",
        text=PLAINTEXT,
        encrypted=False,
    ),
    Rule(
        "pop3-in-use",
        POP3,
        _S.TEMPORARY_FAILURE,
        FindingCode.AUTH_IN_USE,
        "Dovecot, Courier: -ERR [IN-USE] Mailbox is locked (another POP3 session)",
        code="IN-USE",
    ),
    Rule(
        "pop3-login-delay",
        POP3,
        _S.TEMPORARY_FAILURE,
        FindingCode.AUTH_LOGIN_DELAY,
        "RFC 2449 §8.1.1, Courier, Gmail: -ERR [LOGIN-DELAY]",
        code="LOGIN-DELAY",
    ),
    Rule(
        "pop3-too-many-connections",
        POP3,
        _S.TEMPORARY_FAILURE,
        FindingCode.AUTH_TOO_MANY_CONNECTIONS,
        "Dovecot: -ERR [SYS/TEMP] Maximum number of connections ... exceeded",
        text=TOO_MANY_CONNECTIONS,
    ),
    Rule(
        "pop3-rate-limited",
        POP3,
        _S.TEMPORARY_FAILURE,
        FindingCode.AUTH_RATE_LIMITED,
        "Cyrus, qpopper: -ERR too many failed login attempts",
        text=RATE_LIMITED,
    ),
    Rule(
        "pop3-sys-temp",
        POP3,
        _S.TEMPORARY_FAILURE,
        FindingCode.AUTH_TEMPORARY_FAILURE,
        "Dovecot: -ERR [SYS/TEMP] Temporary authentication failure",
        code="SYS/TEMP",
    ),
    Rule(
        "pop3-disabled",
        POP3,
        _S.ACCOUNT_DISABLED,
        FindingCode.AUTH_ACCOUNT_DISABLED,
        "Dovecot nologin with a reason: -ERR [AUTH] Account disabled ... (POP3 has no code for it)",
        text=DISABLED,
    ),
    Rule(
        "pop3-google-not-accepted",
        POP3,
        _S.WRONG_CREDENTIALS,
        FindingCode.AUTH_FAILED,
        "pop.gmail.com: -ERR [AUTH] Username and password not accepted.",
        code="AUTH",
        text=r"not accepted",
        host=GOOGLE_HOSTED,
        hint=LoginHint.GOOGLE_APP_PASSWORD,
    ),
    Rule(
        "pop3-auth",
        POP3,
        _S.WRONG_CREDENTIALS,
        FindingCode.AUTH_FAILED,
        "RFC 3206 §4, Dovecot, Gmail: -ERR [AUTH]",
        code="AUTH",
    ),
    Rule(
        "pop3-sys-perm",
        POP3,
        _S.FAILED,
        FindingCode.AUTH_REFUSED,
        "RFC 3206 §4: -ERR [SYS/PERM]",
        code="SYS/PERM",
    ),
    Rule(
        "pop3-temporary-words",
        POP3,
        _S.TEMPORARY_FAILURE,
        FindingCode.AUTH_TEMPORARY_FAILURE,
        "Courier, Exchange: -ERR ... try again later",
        text=TEMPORARY,
    ),
    Rule(
        "pop3-mechanism-words",
        POP3,
        _S.MECHANISM_UNAVAILABLE,
        FindingCode.AUTH_MECHANISM_UNAVAILABLE,
        "Dovecot: -ERR Unsupported authentication mechanism",
        text=MECHANISM,
    ),
    Rule(
        "pop3-err",
        POP3,
        _S.WRONG_CREDENTIALS,
        FindingCode.AUTH_FAILED,
        "Microsoft 365: -ERR Logon failure: unknown user name or bad password; Courier",
        kind="-ERR",
    ),
    # --- SMTP submission (RFC 4954 §6, RFC 3463, RFC 5248) ---------------------------
    Rule(
        "smtp-m365-smtp-auth-disabled",
        SMTP,
        _S.PASSWORD_LOGIN_DISABLED,
        FindingCode.AUTH_SMTP_AUTH_DISABLED_M365,
        "Microsoft 365: 535 5.7.139 ... SmtpClientAuthentication is disabled for the "
        "Tenant (or: for the Mailbox)",
        enhanced="5.7.139",
        text=r"SmtpClientAuthentication is disabled",
    ),
    Rule(
        "smtp-m365-basic-auth-disabled",
        SMTP,
        _S.PASSWORD_LOGIN_DISABLED,
        FindingCode.AUTH_OAUTH_ONLY,
        "Microsoft 365: 535 5.7.139 ... basic authentication is disabled; ... locked by "
        "your organization's security defaults policy",
        enhanced="5.7.139",
        text=r"basic authentication is disabled|security defaults",
    ),
    Rule(
        "smtp-m365-conditional-access",
        SMTP,
        _S.ACCOUNT_DISABLED,
        FindingCode.AUTH_CONTACT_ADMIN,
        "Microsoft 365 conditional access: 535 5.7.139 ... the request did not meet the "
        "criteria to be authenticated successfully. Contact your administrator.",
        enhanced="5.7.139",
        text=r"did not meet the criteria|contact your administrator",
    ),
    Rule(
        "smtp-app-password",
        SMTP,
        _S.PASSWORD_LOGIN_DISABLED,
        FindingCode.AUTH_APP_PASSWORD_REQUIRED,
        "Gmail with 2-Step Verification: 534 5.7.9 Application-specific password required",
        text=APP_PASSWORD,
    ),
    Rule(
        "smtp-web-login",
        SMTP,
        _S.PASSWORD_LOGIN_DISABLED,
        FindingCode.AUTH_WEB_LOGIN_REQUIRED,
        "Gmail: 534 5.7.14 Please log in via your web browser and then try again",
        text=WEB_LOGIN,
    ),
    # Google's link names the case wherever its SMTP service answers (also
    # smtp-relay.gmail.com and Workspace's own names), so no host is needed.
    Rule(
        "smtp-google-bad-credentials",
        SMTP,
        _S.WRONG_CREDENTIALS,
        FindingCode.AUTH_FAILED,
        "smtp.gmail.com: 535-5.7.8 Username and Password not accepted. For more information, "
        "go to https://support.google.com/mail/?p=BadCredentials",
        reply_code=535,
        text=r"support\.google\.com/mail/\?p=BadCredentials",
        hint=LoginHint.GOOGLE_APP_PASSWORD,
    ),
    Rule(
        "smtp-account-disabled",
        SMTP,
        _S.ACCOUNT_DISABLED,
        FindingCode.AUTH_ACCOUNT_DISABLED,
        "RFC 5248: 525 5.7.13 User account disabled",
        enhanced="5.7.13",
    ),
    Rule(
        "smtp-plaintext-over-tls",
        SMTP,
        _S.FAILED,
        FindingCode.AUTH_REFUSED_AS_UNENCRYPTED,
        "a TLS proxy in front of Postfix: 530 5.7.0 Must issue a STARTTLS command first, "
        "inside TLS",
        text=PLAINTEXT,
        encrypted=True,
    ),
    Rule(
        "smtp-starttls-first",
        SMTP,
        _S.PLAINTEXT_REFUSED,
        FindingCode.AUTH_PLAINTEXT_REFUSED,
        "RFC 3207 §4, Postfix: 530 5.7.0 Must issue a STARTTLS command first",
        reply_code=530,
        text=PLAINTEXT,
        encrypted=False,
    ),
    Rule(
        "smtp-encryption-required",
        SMTP,
        _S.PLAINTEXT_REFUSED,
        FindingCode.AUTH_PLAINTEXT_REFUSED,
        "RFC 4954 §6, Postfix: 538 5.7.11 Encryption required for requested authentication "
        "mechanism",
        enhanced="5.7.11",
        encrypted=False,
    ),
    Rule(
        "smtp-too-many-errors",
        SMTP,
        _S.TEMPORARY_FAILURE,
        FindingCode.AUTH_RATE_LIMITED,
        "Postfix smtpd_hard_error_limit: 421 4.7.0 mail.example.org Error: too many errors",
        text=RATE_LIMITED,
    ),
    Rule(
        "smtp-too-many-connections",
        SMTP,
        _S.TEMPORARY_FAILURE,
        FindingCode.AUTH_TOO_MANY_CONNECTIONS,
        "Exim, Exchange: 421 4.7.0 Too many concurrent connections",
        text=TOO_MANY_CONNECTIONS,
    ),
    Rule(
        "smtp-disabled-words",
        SMTP,
        _S.ACCOUNT_DISABLED,
        FindingCode.AUTH_ACCOUNT_DISABLED,
        "Exim, hosting panels: 535 5.7.8 Account disabled / suspended",
        reply_code=535,
        text=DISABLED,
    ),
    Rule(
        "smtp-wrong-credentials",
        SMTP,
        _S.WRONG_CREDENTIALS,
        FindingCode.AUTH_FAILED,
        "Postfix, Gmail, Dovecot: 535 5.7.8; Exchange 2013-2019: 535 5.7.3 Authentication "
        "unsuccessful; Microsoft 365: 535 5.7.139 ... the user credentials were incorrect; "
        "Exim: 535 Incorrect authentication data",
        reply_code=535,
    ),
    Rule(
        "smtp-5.7.8",
        SMTP,
        _S.WRONG_CREDENTIALS,
        FindingCode.AUTH_FAILED,
        "RFC 4954 §6: 5.7.8 Authentication credentials invalid, under another reply code",
        enhanced="5.7.8",
    ),
    Rule(
        "smtp-mechanism",
        SMTP,
        _S.MECHANISM_UNAVAILABLE,
        FindingCode.AUTH_MECHANISM_UNAVAILABLE,
        "RFC 4954 §6: 504 5.5.4 Unrecognized authentication type; 534 5.7.9 Authentication "
        "mechanism is too weak",
        text=r"mechanism|unrecognized authentication type|too weak",
    ),
    Rule(
        "smtp-454",
        SMTP,
        _S.TEMPORARY_FAILURE,
        FindingCode.AUTH_TEMPORARY_FAILURE,
        "RFC 4954 §6, Postfix: 454 4.7.0 Temporary authentication failure; Gmail 421 4.7.0 "
        "Try again later",
        kind="4xx",
    ),
    Rule(
        "smtp-5xx",
        SMTP,
        _S.FAILED,
        FindingCode.AUTH_REFUSED,
        "any other permanent refusal",
        kind="5xx",
    ),
)


def classify(reply: LoginReply, rules: Iterable[Rule] = RULES) -> Verdict:
    for rule in rules:
        if rule.matches(reply):
            return Verdict(rule.status, rule.cause, rule.id, rule.hint)
    return Verdict(AuthStatus.FAILED, FindingCode.AUTH_REFUSED, None)


# Causes after which no other endpoint of the run may try the password, beyond
# the statuses that say so (see maildiag.probes.auth.STOPS_FURTHER_LOGINS): a
# server that already counts failures from this address would count more.
STOPPING_CAUSES = frozenset({FindingCode.AUTH_RATE_LIMITED})


# --- from the protocols' answers --------------------------------------------------


def from_imap(
    answer: imap.Tagged | imap.Untagged,
    untagged: Iterable[imap.Untagged] = (),
    *,
    encrypted: bool = True,
    host: str = "",
) -> LoginReply:
    """A refusal (tagged NO/BAD, or a BYE) and the untagged responses before it."""
    kind = answer.status if isinstance(answer, imap.Tagged) else answer.keyword
    alerts = tuple(imap_alerts(untagged))
    return LoginReply(
        IMAP,
        kind,
        answer.text,
        code=imap.response_code_name(answer.code),
        alerts=alerts,
        encrypted=encrypted,
        host=host,
    )


class AlertRule(Struct, frozen=True):
    """An [ALERT] that reports the server's own fault, not a notice for the user."""

    id: str
    cause: FindingCode
    text: str  # a regular expression, searched case-blind in the alert's text
    seen: str


# Tried in order; an alert no rule matches is the provider's notice (IMAP_ALERT).
ALERT_RULES: tuple[AlertRule, ...] = (
    AlertRule(
        "courier-fam",
        FindingCode.IMAP_SERVER_NOTIFY_ERROR,
        r"filesystem notification initiali[sz]ation error|\bFAM\b.*\bGamin\b",
        "Courier-IMAP 4/5 (imapd.c) on every login when FAMOpen fails: Debian's "
        "courier-imap without the gamin package, or a broken FAM/Gamin daemon",
    ),
)


def alert_cause(alert: str, rules: Iterable[AlertRule] = ALERT_RULES) -> FindingCode:
    """The finding an [ALERT] text calls for: a known server fault, else IMAP_ALERT."""
    for rule in rules:
        if re.search(rule.text, alert, re.IGNORECASE):
            return rule.cause
    return FindingCode.IMAP_ALERT


def imap_alerts(responses: Iterable[imap.Untagged | imap.Tagged]) -> Iterable[str]:
    """The texts of "* OK/NO/BAD [ALERT] ..." (RFC 3501 §7.1: meant for the user).

    A tagged reply may carry the code as well ("a1 OK [ALERT] ..."), so a
    successful login's alerts are read from its untagged responses and its OK.
    """
    for response in responses:
        if imap.response_code_name(response.code) == "ALERT" and response.text:
            yield response.text


def from_pop3(response: pop3.Response, *, encrypted: bool = True, host: str = "") -> LoginReply:
    code = response.code
    text = response.text
    if code is not None:
        # The text after "[CODE] " (RFC 2449 §8).
        text = text[text.find("]") + 1 :].strip()
    # RFC 2449 §8: codes are hierarchical ("SYS/TEMP"); the rules name whole codes.
    return LoginReply(POP3, "-ERR", text, code=code, encrypted=encrypted, host=host)


def from_smtp(reply: smtp.Reply, *, encrypted: bool = True, host: str = "") -> LoginReply:
    enhanced = reply.enhanced_status
    # The enhanced status opens every line of a multi-line reply (Gmail): the
    # text is what follows it.
    lines = [
        line[len(enhanced) :].strip() if enhanced and line.startswith(enhanced) else line
        for line in reply.lines
    ]
    return LoginReply(
        SMTP,
        f"{reply.code // 100}xx",
        " ".join(line for line in lines if line),
        reply_code=reply.code,
        enhanced=enhanced,
        encrypted=encrypted,
        host=host,
    )


# --- servers that take only OAuth ------------------------------------------------

# RFC 7628 OAUTHBEARER, Google's and Microsoft's XOAUTH2, Google's older XOAUTH.
OAUTH_MECHANISMS = ("XOAUTH2", "OAUTHBEARER", "XOAUTH")


def oauth_only(protocol: Protocol, capabilities: Iterable[str]) -> tuple[str, ...]:
    """The OAuth mechanisms of a server that offers no password login beside them.

    Empty when a password login is offered (IMAP LOGIN without LOGINDISABLED
    or AUTH=PLAIN, POP3 USER or SASL PLAIN, SMTP AUTH PLAIN or LOGIN) or no
    OAuth mechanism is. IMAP's LOGINDISABLED after TLS with AUTH=XOAUTH2
    (Microsoft 365, Gmail for Workspace with password logins off) is the
    common case.
    """
    data = parse_capabilities(protocol, (c.strip() for c in capabilities if c.strip()))
    if _password_login_offered(data):
        return ()
    return tuple(m for m in OAUTH_MECHANISMS if m in data.mechanisms)


def _password_login_offered(data: Capabilities) -> bool:
    # SASL LOGIN counts too, though maildiag logs in to IMAP with the LOGIN command.
    if "PLAIN" in data.mechanisms or (data.protocol is not POP3 and "LOGIN" in data.mechanisms):
        return True
    if data.protocol is IMAP:
        return not data.login_disabled
    if data.protocol is POP3:
        return data.user_command
    return False
