"""The mailbox checks inside each probe: log in, then read quota, INBOX size and
folders (IMAP, POP3) or check that the login may send as its address (SMTP).

``MailboxChecks`` is built once per run; ``hook_for(endpoint)`` gives the
session hook that ``probe_endpoint`` calls inside the encrypted session. All
hooks of a run share one ``LoginGate`` (see ``maildiag.probes.auth``).

Read-only by design: IMAP uses GETQUOTAROOT, LIST and STATUS, never SELECT (which
would reset \\Recent and may change flags), and POP3 uses STAT, never DELE.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from msgspec import Struct

from .. import login_replies
from ..credentials_input import Credentials
from ..deadline import DeadlineExceeded
from ..finding_codes import FindingCode
from ..model import (
    AttemptStatus,
    AuthResult,
    AuthStatus,
    CheckAttempt,
    CheckId,
    Endpoint,
    LockoutKind,
    MailboxFacts,
    Phase,
    Protocol,
    QuotaResource,
    Security,
    SendCheck,
    SkipReason,
    SourceKind,
    TrustStatus,
)
from ..protocols import imap, pop3
from ..protocols.capabilities import parse as parse_capabilities
from ..protocols.lines import ProtocolError
from ..protocols.registry import spec
from ..transport import PeerClosed, ReadTimeout
from . import auth, folders, sending
from .checks import reason_for, run_session_checks
from .endpoint import ProbeRecorder
from .sessions import ImapSession, Pop3Session, Session, SmtpSession

# Why a login was not tried, when nothing about it varies: fixed sentences, so
# that maildiag.i18n can give them in the report's language.
NOT_TRIED = "not tried: "
NO_PILOT_VERDICT = "the first login of this run did not finish before the deadline"
FOREIGN_HOST = (
    "only an autoconfig document that the domain's DNS does not vouch "
    "for names this server (--imap-host/--pop3-host/--smtp-host to try it)"
)
NOT_ENCRYPTED = "the connection is not encrypted (--allow-plaintext to try)"
UNTRUSTED_CERTIFICATE = "the server's certificate did not verify"
FIXED_REASONS = (NO_PILOT_VERDICT, FOREIGN_HOST, NOT_ENCRYPTED, UNTRUSTED_CERTIFICATE)
# Why the password is held back after an earlier verdict of the run; the
# translations come from the catalogue ("fact/lockout/<kind>").
LOCKOUT_REASONS = {
    LockoutKind.NO_ANSWER: "the login on {where} got no answer in time",
    LockoutKind.LIMITED: "{where} limits logins from this address ({cause})",
    LockoutKind.REFUSED: "{where} already refused these credentials ({status})",
}


class MailboxChecks:
    """Login and mailbox facts for every endpoint of one run."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        allow_plaintext: bool = False,
        foreign_hosts: Collection[str] = (),
        address: str | None = None,
        quota_warning_percent: float = 90.0,
    ) -> None:
        self.credentials = credentials
        # From this quota use on, the folder sizes are measured (one STATUS each).
        self.quota_warning_percent = quota_warning_percent
        # The address the sending check tries: the login when it is one, else
        # the one given (None: the check is skipped and says why).
        self.sender = sending.sender_for(credentials.user, address)
        self.allow_plaintext = allow_plaintext
        # Hosts only an autoconfig document from elsewhere vouches for.
        self.foreign_hosts = frozenset(foreign_hosts)
        self.gate = auth.LoginGate()

    def hook_for(self, endpoint: Endpoint) -> Callable[[Session, ProbeRecorder], None]:
        def hook(session: Session, rec: ProbeRecorder) -> None:
            self.run(endpoint, session, rec)

        return hook

    def run(self, endpoint: Endpoint, session: Session, rec: ProbeRecorder) -> None:
        """The registered session checks (login, then mailbox or sending) on ``session``."""
        encrypted = session.conn.is_tls
        capabilities = rec.capabilities_tls if encrypted else rec.capabilities
        ctx = SessionContext(self, endpoint, session, rec, rec.attempts, capabilities)
        run_session_checks(ctx)

    def reason_not_to_try(
        self,
        endpoint: Endpoint,
        rec: ProbeRecorder,
        encrypted: bool,
        capabilities: tuple[str, ...],
    ) -> AuthResult | None:
        """A result when the password must not (or cannot) be sent here; None to go on."""
        only_autoconfig = all(k is SourceKind.AUTOCONFIG for k in endpoint.source_kinds)
        if endpoint.host in self.foreign_hosts and only_autoconfig:
            return AuthResult(
                AuthStatus.SKIPPED,
                None,
                NOT_TRIED + FOREIGN_HOST,
                skipped_because=SkipReason.FOREIGN_HOST,
            )
        if not encrypted:
            # Only reached on deliberately unencrypted endpoints (Security.PLAIN).
            if rec.plaintext_login_offered is False:
                return AuthResult(
                    AuthStatus.PLAINTEXT_REFUSED,
                    None,
                    "the server offers no login before TLS",
                )
            if not self.allow_plaintext:
                return AuthResult(
                    AuthStatus.SKIPPED,
                    None,
                    NOT_TRIED + NOT_ENCRYPTED,
                    skipped_because=SkipReason.PLAINTEXT,
                )
        elif (
            rec.tls is None
            or rec.tls.trust is not TrustStatus.TRUSTED
            or not (rec.tls.hostname_matches)
        ):
            # The certificate does not prove who is on the other end; a password
            # sent there may be sent to an impostor.
            return AuthResult(
                AuthStatus.SKIPPED,
                None,
                NOT_TRIED + UNTRUSTED_CERTIFICATE,
                skipped_because=SkipReason.UNTRUSTED_CERTIFICATE,
            )
        if auth.mechanism_for(endpoint.protocol, capabilities) is None:
            oauth = login_replies.oauth_only(endpoint.protocol, capabilities)
            if oauth:
                return AuthResult(
                    AuthStatus.MECHANISM_UNAVAILABLE,
                    None,
                    f"the server offers only {', '.join(oauth)} {_where(endpoint)}, "
                    "no login with a password",
                    cause=FindingCode.AUTH_OAUTH_ONLY,
                )
            return AuthResult(
                AuthStatus.MECHANISM_UNAVAILABLE,
                None,
                _no_mechanism_detail(endpoint, capabilities),
            )
        return None


class SessionContext(Struct):
    """What a check inside an endpoint's session gets (``checks.Stage.SESSION``)."""

    checks: MailboxChecks
    endpoint: Endpoint
    session: Session
    rec: ProbeRecorder
    attempts: dict[CheckId, CheckAttempt[Any]]
    # The capabilities that count: inside TLS (before it on a plaintext
    # endpoint); after the login, those the server announced then.
    capabilities: tuple[str, ...]


def login_check(ctx: SessionContext) -> CheckAttempt[AuthResult]:
    """The registered check ``AUTH``: the login, unless the password must be held back."""
    checks, endpoint, session, rec = ctx.checks, ctx.endpoint, ctx.session, ctx.rec
    encrypted = session.conn.is_tls
    skip = checks.reason_not_to_try(endpoint, rec, encrypted, ctx.capabilities)
    if skip is not None:
        return CheckAttempt.completed(CheckId.AUTH, skip)

    turn, token = checks.gate.wait_turn(session.conn.deadline)
    if turn is auth.Turn.SKIP:
        verdict = checks.gate.refusal
        assert verdict is not None
        if verdict.result.status is AuthStatus.NO_ANSWER:
            kind = LockoutKind.NO_ANSWER
        elif verdict.result.status is AuthStatus.TEMPORARY_FAILURE:
            kind = LockoutKind.LIMITED
        else:
            kind = LockoutKind.REFUSED
        earlier = {
            "where": verdict.where,
            "status": str(verdict.result.status),
            "cause": str(verdict.result.cause),
        }
        why = LOCKOUT_REASONS[kind].format(**earlier)
        held_back = AuthResult(
            AuthStatus.SKIPPED,
            None,
            f"not tried: {why}",
            skipped_because=SkipReason.LOCKOUT,
            skipped_facts=(("lockout", kind), *earlier.items()),
        )
        return CheckAttempt.completed(CheckId.AUTH, held_back)
    if turn is auth.Turn.GIVE_UP:
        no_pilot = AuthResult(
            AuthStatus.SKIPPED,
            None,
            NOT_TRIED + NO_PILOT_VERDICT,
            skipped_because=SkipReason.NO_PILOT_VERDICT,
        )
        return CheckAttempt.completed(CheckId.AUTH, no_pilot)

    result: AuthResult | None = None
    mechanism = auth.mechanism_for(endpoint.protocol, ctx.capabilities)
    try:
        with rec.timing(Phase.AUTH):
            result, after = _login(session, checks.credentials, ctx.capabilities, endpoint.host)
    except Exception as exc:
        result = AuthResult(AuthStatus.NO_ANSWER, mechanism, f"no answer to the login: {exc}")
        broken = CheckAttempt(CheckId.AUTH, AttemptStatus.ERROR, result, reason_for(exc), f"{exc}")
        if not isinstance(exc, (ReadTimeout, PeerClosed, DeadlineExceeded)):
            ctx.attempts[CheckId.AUTH] = broken
            raise  # the probe classifies the broken connection
        # The endpoint worked up to here; only the login has no verdict. The
        # connection is given up (a goodbye would wait behind the answer).
        session.conn.close()
        return broken
    finally:
        checks.gate.report(token, endpoint.label, result)
    ctx.capabilities = after
    return CheckAttempt.completed(CheckId.AUTH, result)


def mailbox_check(ctx: SessionContext) -> CheckAttempt[MailboxFacts]:
    """The registered check ``MAILBOX``: quota, INBOX size and folders, read-only."""
    facts = _mailbox_facts(ctx.session, ctx.rec, ctx.capabilities, ctx.checks.quota_warning_percent)
    assert facts is not None  # registered for IMAP and POP3 only
    return CheckAttempt.completed(CheckId.MAILBOX, facts)


def send_check(ctx: SessionContext) -> CheckAttempt[SendCheck]:
    """The registered check ``SEND``: may the login send as its address? Nothing is sent."""
    assert isinstance(ctx.session, SmtpSession)  # registered for SMTP only
    with ctx.rec.timing(Phase.SEND):
        checked = sending.check_sending(
            ctx.session, ctx.checks.sender, ctx.capabilities, ctx.checks.credentials.user
        )
    return CheckAttempt.completed(CheckId.SEND, checked)


def session_name(endpoint: Endpoint) -> str:
    return spec(endpoint.protocol).name


def _where(endpoint: Endpoint) -> str:
    return "before TLS" if endpoint.security is Security.PLAIN else "inside TLS"


def _no_mechanism_detail(endpoint: Endpoint, capabilities: tuple[str, ...]) -> str:
    where = _where(endpoint)
    if endpoint.protocol is Protocol.IMAP:
        offered = ", ".join(parse_capabilities(Protocol.IMAP, capabilities).mechanisms) or "none"
        return f"no AUTH=PLAIN and LOGINDISABLED {where} (SASL mechanisms: {offered})"
    if endpoint.protocol is Protocol.POP3:
        return f"CAPA announces neither USER nor SASL PLAIN {where}"
    return f"EHLO announces neither AUTH PLAIN nor AUTH LOGIN {where}"


def _login(
    session: Session, creds: Credentials, capabilities: tuple[str, ...], host: str = ""
) -> tuple[AuthResult, tuple[str, ...]]:
    if isinstance(session, ImapSession):
        return auth.imap_login(session, creds, capabilities, host=host)
    if isinstance(session, Pop3Session):
        return auth.pop3_login(session, creds, capabilities, host=host), capabilities
    assert isinstance(session, SmtpSession)
    return auth.smtp_login(session, creds, capabilities, host=host), capabilities


def _mailbox_facts(
    session: Session, rec: ProbeRecorder, capabilities: tuple[str, ...], measure_from: float
) -> MailboxFacts | None:
    if isinstance(session, ImapSession):
        return imap_mailbox_facts(session, rec, capabilities, measure_folders_from=measure_from)
    if isinstance(session, Pop3Session):
        with rec.timing(Phase.MAILBOX):
            response = session.run(pop3.STAT_COMMAND)
        try:
            messages, size = pop3.parse_stat(response)
        except (ValueError, ProtocolError):
            return MailboxFacts()
        return MailboxFacts(inbox_messages=messages, inbox_size_bytes=size)
    return None


def imap_mailbox_facts(
    session: ImapSession,
    rec: ProbeRecorder | None,
    capabilities: tuple[str, ...],
    *,
    measure_folders_from: float | None = None,
) -> MailboxFacts:
    """Quota (GETQUOTAROOT INBOX), the INBOX's size (STATUS) and the folders (LIST).

    All read-only. When a quota is used to ``measure_folders_from`` percent
    or more, every folder's size (or message count) is asked with STATUS too.
    """
    caps = parse_capabilities(Protocol.IMAP, tuple(c.upper() for c in capabilities))
    quota_root: str | None = None
    resources: list[QuotaResource] = []
    supported = caps.quota
    if supported:
        with _timing(rec, Phase.QUOTA):
            untagged, _done = session.run("GETQUOTAROOT", "INBOX")
        for response in untagged:
            try:
                if response.keyword == "QUOTAROOT":
                    _, roots = imap.parse_quotaroot(response)
                    # RFC 9208 §4.3: a mailbox may have several quota roots, or none.
                    quota_root = quota_root or (roots[0] if roots else None)
                elif response.keyword == "QUOTA":
                    root, usage = imap.parse_quota(response)
                    quota_root = quota_root or root
                    resources += [QuotaResource(u.name, u.usage, u.limit) for u in usage]
            except (ValueError, ProtocolError):
                continue
    # RFC 8438: STATUS=SIZE adds the mailbox size; MESSAGES is RFC 3501 §6.3.10.
    items = b"(MESSAGES SIZE)" if caps.status_size else b"(MESSAGES)"
    messages: int | None = None
    size: int | None = None
    with _timing(rec, Phase.MAILBOX):
        untagged, done = session.run("STATUS", "INBOX", items)
    if done.ok:
        for response in untagged:
            if response.keyword != "STATUS":
                continue
            try:
                _, values = imap.parse_status(response)
            except (ValueError, ProtocolError):
                continue
            messages = values.get("MESSAGES", messages)
            size = values.get("SIZE", size)
    with _timing(rec, Phase.MAILBOX):
        listing, entries = folders.list_folders(session, caps)
        measured: dict[str, tuple[int | None, int | None]] = {}
        if measure_folders_from is not None and _pressing(resources, measure_folders_from):
            measured = folders.measure(session, entries, caps, (messages, size))
    return MailboxFacts(
        quota_root=quota_root,
        quota=tuple(resources),
        quota_supported=supported,
        inbox_messages=messages,
        inbox_size_bytes=size,
        folder_listing=listing,
        folders=folders.folders_from(entries, measured),
        # RFC 2177; the capabilities after the login are the ones that count.
        idle=caps.idle,
    )


def _pressing(resources: list[QuotaResource], percent: float) -> bool:
    return any(q.limit > 0 and q.usage * 100 >= percent * q.limit for q in resources)


def _timing(rec: ProbeRecorder | None, phase: Phase) -> AbstractContextManager[None]:
    return rec.timing(phase) if rec is not None else nullcontext()
