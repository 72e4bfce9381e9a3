"""Plain data passed between discovery, probes, analysis and renderers.

Nothing here does I/O. Every result is a frozen record so a finished
diagnosis can be handed to any renderer (text, JSON, monitoring) unchanged.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from msgspec import Struct, field, structs

if TYPE_CHECKING:
    from .finding_codes import FindingCode


class Protocol(enum.StrEnum):
    IMAP = "imap"
    POP3 = "pop3"
    SMTP = "smtp"  # message submission (RFC 6409 / RFC 8314), never port 25

    def __str__(self) -> str:
        return self.value


class Security(enum.StrEnum):
    STARTTLS = "starttls"  # plaintext greeting, upgraded with STARTTLS/STLS
    TLS = "tls"  # implicit TLS from the first byte (RFC 8314)
    PLAIN = "plain"  # deliberately unencrypted (only when asked for)

    def __str__(self) -> str:
        return self.value


class Severity(enum.StrEnum):
    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]

    def __str__(self) -> str:
        return self.value


_SEVERITY_RANK = {Severity.OK: 0, Severity.INFO: 1, Severity.WARNING: 2, Severity.CRITICAL: 3}


class Phase(enum.StrEnum):
    """The steps of one probe, in the order they happen."""

    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"  # implicit-TLS handshake, or the handshake after STARTTLS
    GREETING = "greeting"
    CAPABILITIES = "capabilities"  # before TLS on STARTTLS endpoints
    STARTTLS = "starttls"  # the STARTTLS/STLS command and its answer
    CAPABILITIES_TLS = "capabilities_tls"  # capabilities again, inside TLS
    AUTH = "auth"
    QUOTA = "quota"
    MAILBOX = "mailbox"
    SEND = "send"  # MAIL FROM / RCPT TO / RSET after a submission login
    SYNC = "sync"

    def __str__(self) -> str:
        return self.value


class Outcome(enum.StrEnum):
    """How a probe of one endpoint ended."""

    OK = "ok"
    UNRESOLVED = "unresolved"  # the host name has no address
    REFUSED = "refused"  # TCP RST: nothing listens, the service is down
    TIMEOUT = "timeout"  # no answer to the connect: a firewall drops packets
    NO_GREETING = "no_greeting"  # connected, but the server never said hello
    CLOSED = "closed"  # the server hung up in the middle of the dialogue
    STALLED = "stalled"  # the server stopped answering in the middle of the dialogue
    UNAVAILABLE = "unavailable"  # the server greeted with a refusal (BYE, -ERR, 554)
    THROTTLED = "throttled"  # temporary refusal (SMTP 421/4xx): inconclusive
    PROTOCOL_ERROR = "protocol_error"  # garbage, a wrong protocol, an over-long line
    STARTTLS_MISSING = "starttls_missing"  # plaintext port without a TLS upgrade
    STARTTLS_FAILED = "starttls_failed"  # STARTTLS offered, but the command was refused
    TLS_FAILED = "tls_failed"  # the TLS handshake failed or stalled
    # IMAP "* PREAUTH" greeting (RFC 3501 §7.1.4): logged in before any
    # credentials, so STARTTLS is impossible (RFC 3501 §6.2.1); not probed further.
    PREAUTH = "preauth"
    DEADLINE = "deadline"  # the run's overall deadline ended the probe

    def __str__(self) -> str:
        return self.value


class TlsFailure(enum.StrEnum):
    """Why a TLS handshake failed, where the client can tell more than "it failed"."""

    # The server answered the ClientHello with plaintext (a greeting, a 421...):
    # a plaintext service on a port clients expect to speak implicit TLS.
    PLAINTEXT = "plaintext"
    # No protocol version in common although the client accepts TLS 1.0 to
    # 1.3: the server speaks only versions older than that (SSL 3.0).
    OUTDATED_PROTOCOL = "outdated_protocol"

    def __str__(self) -> str:
        return self.value


class TrustStatus(enum.StrEnum):
    TRUSTED = "trusted"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    SELF_SIGNED = "self_signed"
    UNTRUSTED_ROOT = "untrusted_root"  # the chain ends at a CA nobody here trusts
    INCOMPLETE_CHAIN = "incomplete_chain"  # an intermediate certificate is missing
    INVALID = "invalid"  # broken signature, wrong usage, unparsable, ...
    NO_CERTIFICATE = "no_certificate"

    def __str__(self) -> str:
        return self.value


class SourceKind(enum.StrEnum):
    """Where discovery found an endpoint. A source reads "<kind>" or "<kind>:<detail>"
    ("srv:_imaps._tcp", "guess:mail.example.org"), as the reports print it."""

    OPTION = "option"  # --imap-host, --imap-port, ...
    SRV = "srv"  # an SRV record (RFC 6186); the detail is its service
    AUTOCONFIG = "autoconfig"  # an autoconfig document
    GUESS = "guess"  # a usual host name that resolves; the detail is the name
    MX = "mx"  # the domain's MX host, as a last resort
    TYPED = "typed"  # a setting the customer typed (check --typed)

    def source(self, detail: str | None = None) -> str:
        return f"{self.value}:{detail}" if detail else self.value

    @classmethod
    def of(cls, source: str) -> SourceKind | None:
        kind, _, _ = source.partition(":")
        try:
            return cls(kind)
        except ValueError:
            return None

    @staticmethod
    def detail(source: str) -> str:
        return source.partition(":")[2]

    @property
    def announced(self) -> bool:
        """Someone published (or gave) this endpoint: it is not a guess."""
        return self in (SourceKind.OPTION, SourceKind.SRV, SourceKind.AUTOCONFIG)

    def __str__(self) -> str:
        return self.value


class Endpoint(Struct, frozen=True):
    """One thing to probe: a protocol on host:port with a kind of security."""

    protocol: Protocol
    host: str  # ASCII (IDNA) host name or an IP literal
    port: int
    security: Security
    sources: tuple[str, ...] = ()  # where discovery found it, best first (see SourceKind)

    @property
    def key(self) -> str:
        return f"{self.protocol.value}:{self.security.value}:{self.host}:{self.port}"

    @property
    def source_kinds(self) -> tuple[SourceKind | None, ...]:
        """The kind of each source, in order (None for one no kind describes)."""
        return tuple(SourceKind.of(s) for s in self.sources)

    @property
    def label(self) -> str:
        return f"{self.protocol.value.upper()} {self.host}:{self.port} ({self.security.value})"


class CertificateInfo(Struct, frozen=True):
    """What a certificate says, whether or not it verified."""

    subject: str
    issuer: str
    common_name: str | None
    sans: tuple[str, ...]  # DNS names (as in the certificate, A-labels) and IP addresses
    not_before: datetime  # timezone-aware UTC
    not_after: datetime
    serial: str
    fingerprint_sha256: str
    self_issued: bool  # subject == issuer
    key_description: str  # "RSA 2048", "EC secp256r1", ...
    signature_algorithm: str
    key_type: str = ""  # "RSA", "EC", "DSA", "Ed25519", "Ed448"; "" when unsupported
    key_bits: int | None = None  # RSA/DSA modulus, EC curve size
    signature_hash: str | None = None  # "sha256", "sha1", "md5"; None for Ed25519 or unknown
    ca_issuers: tuple[str, ...] = ()  # AIA caIssuers URLs (RFC 5280 §4.2.2.1)


class TlsFacts(Struct, frozen=True):
    """A finished TLS handshake and everything learned about its certificate."""

    version: str  # "TLSv1.3"
    cipher: str
    cipher_bits: int | None
    chain: tuple[CertificateInfo, ...]  # as the server sent it, leaf first
    trust: TrustStatus
    trust_detail: str | None  # why verification failed, in words
    hostname: str  # the name that was checked (Unicode form for display)
    hostname_matches: bool
    days_remaining: float | None  # of the leaf; negative when expired
    handshake_seconds: float
    # The verdict INVALID is only due to a weak key or signature hash (see
    # tls.weak_key / tls.weak_signature): reported by those findings instead.
    rejected_as_weak: bool = False

    @property
    def leaf(self) -> CertificateInfo | None:
        return self.chain[0] if self.chain else None


class AuthStatus(enum.StrEnum):
    """How a login attempt ended; the values of ``AuthResult.status``."""

    OK = "ok"
    WRONG_CREDENTIALS = "wrong_credentials"  # IMAP [AUTHENTICATIONFAILED], POP3 [AUTH], 535
    PLAINTEXT_REFUSED = "plaintext_refused"  # login refused before TLS: that is good
    MECHANISM_UNAVAILABLE = "mechanism_unavailable"  # no mechanism maildiag can use
    TEMPORARY_FAILURE = "temporary_failure"  # [UNAVAILABLE], [SYS/TEMP], [IN-USE], 454
    ACCOUNT_DISABLED = "account_disabled"  # [CONTACTADMIN], [EXPIRED], [AUTHORIZATIONFAILED]
    FAILED = "failed"  # refused for another (permanent) reason
    # The password may be right, but the provider does not take it for this
    # kind of login: app password required (Gmail 534 5.7.9), SMTP AUTH off
    # (Microsoft 365 535 5.7.139), OAuth only, sign-in blocked until confirmed on the web.
    PASSWORD_LOGIN_DISABLED = "password_login_disabled"
    # Sent, but no verdict came back in time (or the server hung up): the
    # password may have been judged wrong all the same, so nobody else tries it.
    NO_ANSWER = "no_answer"
    SKIPPED = "skipped"  # not tried; ``detail`` says why

    def __str__(self) -> str:
        return self.value


class SkipReason(enum.StrEnum):
    """Why a login was not tried (``AuthResult.skipped_because``)."""

    LOCKOUT = "lockout"  # an earlier verdict of the run holds the password back
    UNTRUSTED_CERTIFICATE = "untrusted_certificate"
    PLAINTEXT = "plaintext"  # unencrypted, and --allow-plaintext not given
    NO_PILOT_VERDICT = "no_pilot_verdict"  # the run's first login did not finish in time
    FOREIGN_HOST = "foreign_host"  # only a foreign autoconfig document names the server

    def __str__(self) -> str:
        return self.value


class LoginHint(enum.StrEnum):
    """A likely cause behind a refusal, beyond what the reply says (``AuthResult.hint``).

    Not a verdict: the reply still decides the status and the finding code;
    the hint adds a sentence to the fix (``maildiag.findings.LOGIN_HINTS``).
    """

    # Google's "Username and Password not accepted" / "Invalid credentials":
    # usually the normal password where Google takes only an app password.
    GOOGLE_APP_PASSWORD = "google_app_password"

    def __str__(self) -> str:
        return self.value


class LockoutKind(enum.StrEnum):
    """Which earlier verdict holds the password back (the fact ``lockout``)."""

    REFUSED = "refused"  # a server refused these credentials
    NO_ANSWER = "no_answer"  # a login got no answer in time
    LIMITED = "limited"  # a server limits logins from this address

    def __str__(self) -> str:
        return self.value


class AuthResult(Struct, frozen=True):
    """The outcome of one login attempt (filled in by the mailbox checks)."""

    status: AuthStatus
    mechanism: str | None
    detail: str | None
    seconds: float | None = None
    # Why a login was not tried (status SKIPPED).
    skipped_because: SkipReason | None = None
    # For LOCKOUT: which earlier verdict holds the password back, as facts
    # (lockout = a LockoutKind, where, status, cause).
    skipped_facts: tuple[tuple[str, str], ...] = ()
    # The finding code of the cause the server's reply names (maildiag.login_replies),
    # finer than ``status``: AUTH_APP_PASSWORD_REQUIRED, AUTH_IN_USE, ...
    cause: FindingCode | None = None
    # The [ALERT] texts of a successful IMAP login (RFC 3501 §7.1: the client
    # must show them to the user): the provider's notices, such as a mailbox
    # almost full or a password about to expire. A refusal's alerts are in ``detail``.
    alerts: tuple[str, ...] = ()
    # What usually lies behind this refusal at this provider (maildiag.login_replies).
    hint: LoginHint | None = None

    def __post_init__(self) -> None:
        # Built from a plain value (a test, a JSON record): the members, so
        # that ``is`` comparisons hold.
        structs.force_setattr(self, "status", AuthStatus(self.status))
        if self.hint is not None:
            structs.force_setattr(self, "hint", LoginHint(self.hint))
        if self.skipped_because is not None:
            structs.force_setattr(self, "skipped_because", SkipReason(self.skipped_because))


class QuotaResource(Struct, frozen=True):
    name: str  # STORAGE (in KiB per RFC 9208), MESSAGE, ...
    usage: int
    limit: int

    @property
    def ratio(self) -> float | None:
        return self.usage / self.limit if self.limit else None


class FolderListing(enum.StrEnum):
    """How the folders were listed, which says how their special use could be seen."""

    SPECIAL_USE = "special-use"  # LIST "" "*" RETURN (SPECIAL-USE) (RFC 6154 with RFC 5258)
    LIST = "list"  # plain LIST: carries the attributes when SPECIAL-USE is announced
    XLIST = "xlist"  # Gmail's pre-RFC 6154 XLIST
    FAILED = "failed"  # the server refused the command; no folders known

    def __str__(self) -> str:
        return self.value


class Folder(Struct, frozen=True):
    """One mailbox of the account, as LIST shows it (and STATUS measured it)."""

    name: str  # for people (modified UTF-7 decoded)
    special_use: tuple[str, ...] = ()  # "\\Sent", "\\Trash", ... (RFC 6154; XLIST mapped)
    messages: int | None = None  # STATUS MESSAGES, only when the quota is pressing
    size_bytes: int | None = None  # STATUS SIZE (RFC 8438), where offered


class MailboxFacts(Struct, frozen=True):
    """Read-only facts about a mailbox (filled in by the mailbox checks)."""

    quota_root: str | None = None
    quota: tuple[QuotaResource, ...] = ()
    quota_supported: bool | None = None
    inbox_messages: int | None = None
    inbox_size_bytes: int | None = None
    # IMAP: the folders and how they were listed (None: not listed, e.g. POP3),
    # whether IDLE (RFC 2177, push) is offered after the login.
    folder_listing: FolderListing | None = None
    folders: tuple[Folder, ...] = ()
    idle: bool | None = None


class SendStatus(enum.StrEnum):
    """How the sending check after a submission login ended (``SendCheck.status``)."""

    ACCEPTED = "accepted"  # MAIL FROM and RCPT TO both 250: the login may send as the address
    SENDER_REJECTED = "sender_rejected"  # 553 / 5.7.1 "not owned by user": a send-as problem
    REFUSED = "refused"  # another permanent refusal of MAIL FROM or RCPT TO
    TEMPORARY = "temporary"  # 4xx (or 421): inconclusive
    NO_ANSWER = "no_answer"  # the server stopped answering in the middle
    SKIPPED = "skipped"  # not tried; ``detail`` says why

    def __str__(self) -> str:
        return self.value


class SendCheck(Struct, frozen=True):
    """MAIL FROM and RCPT TO after a submission login, then RSET: nothing is sent."""

    status: SendStatus
    sender: str | None  # the address tried as sender and recipient
    size_limit: int | None = None  # EHLO SIZE (RFC 1870) in bytes; None when not announced
    mail_reply: str | None = None  # the server's answer to MAIL FROM
    rcpt_reply: str | None = None  # the server's answer to RCPT TO (None when not reached)
    detail: str | None = None  # why it was skipped or broke off

    def __post_init__(self) -> None:
        structs.force_setattr(self, "status", SendStatus(self.status))


class SyncMethod(enum.StrEnum):
    """How the second session learned of the change it waited for."""

    IDLE = "idle"  # IMAP IDLE (RFC 2177): the server pushed it
    NOOP_POLL = "noop-poll"  # NOOP in a loop: the server has no IDLE

    def __str__(self) -> str:
        return self.value


class SyncResult(Struct, frozen=True):
    delivery_latency_s: float | None
    delivery_method: SyncMethod | None
    flag_sync_latency_s: float | None
    flag_sync_method: SyncMethod | None
    cleaned_up: bool
    error: str | None = None
    # Nothing could be measured: no endpoint of IMAP or submission took the login.
    not_measured: bool = False


class IpFamily(enum.StrEnum):
    IPV4 = "ipv4"
    IPV6 = "ipv6"

    @classmethod
    def of(cls, address: str) -> IpFamily:
        return cls.IPV6 if ":" in address else cls.IPV4

    @property
    def label(self) -> str:
        return "IPv6" if self is IpFamily.IPV6 else "IPv4"

    @property
    def other(self) -> IpFamily:
        return IpFamily.IPV4 if self is IpFamily.IPV6 else IpFamily.IPV6

    def __str__(self) -> str:
        return self.value


class FamilyProbe(Struct, frozen=True):
    """The same endpoint probed over the host's other IP family, without a login.

    Made when the host name has both A and AAAA records. Clients prefer IPv6
    (RFC 6724 §10.3, RFC 8305), so a service that works over one family only
    fails for some customers and not for others.
    """

    address: str
    outcome: Outcome
    failed_phase: Phase | None = None
    error: str | None = None
    local_address: str | None = None
    seconds: float = 0.0

    @property
    def family(self) -> IpFamily:
        return IpFamily.of(self.address)


class CheckId(enum.StrEnum):
    """The checks of one endpoint (the registry: ``maildiag.probes.checks``)."""

    ENDPOINT = "endpoint"  # connect, TLS, greeting, capabilities, STARTTLS: the probe itself
    OTHER_FAMILY = "other_family"  # the same endpoint over the host's other IP family
    AUTH = "auth"  # the login, with the run's credentials
    MAILBOX = "mailbox"  # quota, INBOX size, folders (IMAP, POP3), after the login
    SEND = "send"  # MAIL FROM / RCPT TO / RSET (submission), after the login

    def __str__(self) -> str:
        return self.value


class AttemptStatus(enum.StrEnum):
    """How one check of an endpoint went (as sslyze's ScanCommandAttemptStatusEnum)."""

    COMPLETED = "completed"  # it ran to its verdict, whatever the verdict
    NOT_SCHEDULED = "not_scheduled"  # not run: ``error_reason`` says why
    ERROR = "error"  # it broke off: ``error_reason`` says how

    def __str__(self) -> str:
        return self.value


class CheckError(enum.StrEnum):
    """Why a check did not run, or did not finish."""

    NEEDS_UNMET = "needs_unmet"  # a check it needs did not succeed (no login, ...)
    NOT_APPLICABLE = "not_applicable"  # nothing to check here (one IP family only)
    NO_ANSWER = "no_answer"  # the server stopped answering or hung up in the middle
    DEADLINE = "deadline"  # the run's deadline passed in the middle
    BROKEN_REPLY = "broken_reply"  # the server's reply made no sense (a protocol error)
    BUG = "bug"  # maildiag itself failed

    def __str__(self) -> str:
        return self.value


R = TypeVar("R")


class CheckAttempt(Struct, Generic[R], frozen=True):
    """One check of one endpoint: its status, why it failed, what it found.

    A check that broke off may still have a result (a login sent without an
    answer is the verdict NO_ANSWER); one not scheduled never has.
    """

    check: CheckId
    status: AttemptStatus
    result: R | None = None
    error_reason: CheckError | None = None
    error: str | None = None  # for people

    @classmethod
    def completed(cls, check: CheckId, result: R) -> CheckAttempt[R]:
        return cls(check, AttemptStatus.COMPLETED, result)


# The results of attempts that ``ProbeResult.of`` takes by name.
_RESULT_KEYWORDS = {
    "auth": CheckId.AUTH,
    "mailbox": CheckId.MAILBOX,
    "send": CheckId.SEND,
    "other_family": CheckId.OTHER_FAMILY,
}


class ProbeResult(Struct, frozen=True):
    """Everything one probe of one endpoint learned, and how it ended.

    The fields are the endpoint check's own findings; every other check of
    the endpoint (login, mailbox, sending, the other IP family) is an attempt
    in ``attempts``, keyed by its check id. ``auth``, ``mailbox``, ``send``
    and ``other_family`` read their results; ``of`` takes them as keywords.
    """

    endpoint: Endpoint
    outcome: Outcome
    failed_phase: Phase | None = None
    error: str | None = None  # what went wrong, for people
    address: str | None = None  # the IP address actually connected to
    local_address: str | None = None  # this machine's address on that connection
    timings: Mapping[str, float] = field(default_factory=dict)  # Phase value -> seconds
    greeting: str | None = None
    server_reply: str | None = None  # the refusal or throttling text, when there is one
    capabilities: tuple[str, ...] = ()  # before TLS (STARTTLS endpoints)
    capabilities_tls: tuple[str, ...] = ()  # inside TLS
    starttls_offered: bool | None = None
    plaintext_login_offered: bool | None = None  # login allowed before TLS
    tls: TlsFacts | None = None
    tls_failure: TlsFailure | None = None  # set when the handshake failed for a known reason
    # Plaintext the server sent behind its go-ahead to STARTTLS, before the
    # handshake (outcome PROTOCOL_ERROR): injected by a man in the middle or a
    # broken server, never read as part of the session.
    starttls_injection: str | None = None
    # Taken from a probe of the same endpoint made for another domain of a
    # batch moments before (see ``runner.ProbeCache``), not probed again.
    shared: bool = False
    attempts: Mapping[CheckId, CheckAttempt[Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, endpoint: Endpoint, outcome: Outcome, **fields: Any) -> ProbeResult:
        """A result whose attempts' results are given by name (``auth=``,
        ``mailbox=``, ``send=``, ``other_family=``): each a completed attempt."""
        attempts = dict(fields.pop("attempts", None) or {})
        for name, check in _RESULT_KEYWORDS.items():
            if name not in fields:
                continue
            result = fields.pop(name)
            if result is None:
                attempts.pop(check, None)
            else:
                attempts[check] = CheckAttempt.completed(check, result)
        return cls(endpoint, outcome, attempts=attempts, **fields)

    def _result(self, check: CheckId, kind: type[R]) -> R | None:
        attempt = self.attempts.get(check)
        result = None if attempt is None else attempt.result
        return result if isinstance(result, kind) else None

    @property
    def auth(self) -> AuthResult | None:
        return self._result(CheckId.AUTH, AuthResult)

    @property
    def mailbox(self) -> MailboxFacts | None:
        return self._result(CheckId.MAILBOX, MailboxFacts)

    @property
    def send(self) -> SendCheck | None:
        """Submission endpoints, after a successful login."""
        return self._result(CheckId.SEND, SendCheck)

    @property
    def other_family(self) -> FamilyProbe | None:
        """The probe over the other IP family (IPv6 when ``address`` is IPv4),
        when the host name has addresses of both."""
        return self._result(CheckId.OTHER_FAMILY, FamilyProbe)

    @property
    def total_seconds(self) -> float:
        return sum(self.timings.values())

    @property
    def reachable(self) -> bool:
        """The service answered on this port (even if something later failed)."""
        return self.outcome not in (
            Outcome.UNRESOLVED,
            Outcome.REFUSED,
            Outcome.TIMEOUT,
            Outcome.DEADLINE,
        )


class PortState(enum.StrEnum):
    """How a plain TCP connect to one port ended."""

    OPEN = "open"  # the connection was accepted (and closed again at once)
    REFUSED = "refused"
    TIMEOUT = "timeout"  # no answer in time, or the network said unreachable

    def __str__(self) -> str:
        return self.value


class PortCheck(Struct, frozen=True):
    """A plain TCP connect to a port that is not a mail port of a mail server's address.

    Made only when the mail ports of that address fail to connect: a host
    whose web server answers while every mail port refuses is up, and is
    refusing this client (a fail2ban ban or a firewall rule against it).
    """

    address: str
    port: int
    state: PortState
    local_address: str | None = None  # this machine's address, when the port was open
    seconds: float = 0.0


class MxRecord(Struct, frozen=True):
    preference: int
    host: str  # "." for a null MX (RFC 7505: the domain accepts no mail)

    @property
    def null(self) -> bool:
        return self.host in ("", ".")


class MxHost(Struct, frozen=True):
    """What the host an MX record names resolves to (looked up during discovery)."""

    host: str
    addresses: tuple[str, ...] = ()
    # The canonical name when the host is an alias (CNAME), which RFC 2181
    # §10.3 and RFC 5321 §5.1 forbid for an MX target.
    cname: str | None = None
    error_kind: DnsFailure | None = None  # why it did not resolve
    error: str | None = None

    @property
    def resolves(self) -> bool:
        return bool(self.addresses)


class SrvRecord(Struct, frozen=True):
    service: str  # "_imaps._tcp"
    priority: int
    weight: int
    port: int
    target: str  # "." means the service is deliberately not offered (RFC 2782)

    @property
    def not_offered(self) -> bool:
        return self.target in ("", ".")

    @property
    def invalid(self) -> bool:
        """A target with port 0: no service can listen there (RFC 6335 §6 reserves
        port 0), so the record cannot be used (RFC 6186 §3.3 falls back as if absent)."""
        return not self.not_offered and not 0 < self.port < 65536


class AutoconfigServer(Struct, frozen=True):
    protocol: Protocol
    host: str
    port: int
    security: Security


class AutoconfigResult(Struct, frozen=True):
    url: str
    servers: tuple[AutoconfigServer, ...] = ()
    error: str | None = None  # why this URL gave nothing
    # Where the document came from when redirects led away from ``url``.
    final_url: str | None = None


class DnsFailure(enum.StrEnum):
    """Why a DNS lookup gave no records."""

    NXDOMAIN = "nxdomain"  # the name does not exist (RFC 8020: nor anything below it)
    NODATA = "nodata"  # the name exists without records of that type
    SERVFAIL = "servfail"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    NO_NAMESERVERS = "no_nameservers"  # none configured, or none reachable
    ERROR = "error"

    @property
    def is_answer(self) -> bool:
        """NXDOMAIN and NODATA are answers about the name, not failures to ask."""
        return self in (DnsFailure.NXDOMAIN, DnsFailure.NODATA)


class DnsProblem(Struct, frozen=True):
    query: str  # "example.org MX"
    kind: DnsFailure
    detail: str


class Discovery(Struct, frozen=True):
    """What DNS and autoconfig say about a domain, and the endpoints to probe."""

    domain: str  # as the user typed it (may be Unicode)
    domain_ascii: str  # IDNA A-label form
    domain_exists: bool
    mx: tuple[MxRecord, ...] = ()
    # The hosts of the MX records (except a null MX's "."), in preference order.
    mx_hosts: tuple[MxHost, ...] = ()
    srv: tuple[SrvRecord, ...] = ()
    autoconfig: tuple[AutoconfigResult, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    problems: tuple[DnsProblem, ...] = ()
    seconds: float = 0.0
    # Hosts that only autoconfig names and that belong to neither the domain
    # nor its MX provider (or came through a redirect to another domain):
    # probed, but never given the password.
    foreign_hosts: tuple[str, ...] = ()


class Finding(Struct, frozen=True):
    code: FindingCode  # stable, documented, never renamed
    severity: Severity
    title: str
    explanation: str
    fix: str
    endpoint: Endpoint | None = None
    details: Mapping[str, object] = field(default_factory=dict)
    # The code of the finding that explains this one (a port refused *because*
    # this client's address is blocked): listed, but not a cause of its own.
    explained_by: FindingCode | None = None


class TypedJudgement(enum.StrEnum):
    """What a typed client setting gets, from the worst of its findings."""

    WORKS = "works"
    WARNING = "warning"
    FAILS = "fails"

    def __str__(self) -> str:
        return self.value


class TypedVerdict(Struct, frozen=True):
    """A client setting the customer typed (check --typed), probed and judged."""

    setting: Endpoint
    verdict: TypedJudgement
    suggested: Endpoint | None  # what to type instead; None when it works (or nothing does)
    findings: tuple[Finding, ...]


class InboundVerdict(enum.StrEnum):
    """What an MX answered about the address (at RCPT, or earlier by refusing us)."""

    ACCEPTED = "accepted"  # 250/251/252 to RCPT TO
    UNKNOWN_USER = "unknown_user"  # 550 5.1.1: no such mailbox
    MAILBOX_FULL = "mailbox_full"  # 552 / 5.2.2 (4.2.2 when temporary)
    RELAY_DENIED = "relay_denied"  # 554 5.7.1: the MX does not receive mail for the domain
    GREYLISTED = "greylisted"  # 450/451: try again later, as greylisting asks
    BLOCKED = "blocked"  # the MX refuses this client (blocklist, reputation, HELO, ...)
    REJECTED = "rejected"  # another permanent refusal
    DEFERRED = "deferred"  # another temporary refusal

    def __str__(self) -> str:
        return self.value


class InboundStep(enum.StrEnum):
    """The steps of the port-25 dialogue with one MX, in order. Never DATA."""

    DNS = "dns"
    CONNECT = "connect"
    BANNER = "banner"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    TLS = "tls"
    MAIL = "mail"  # MAIL FROM:<>
    RCPT = "rcpt"  # RCPT TO:<address>

    def __str__(self) -> str:
        return self.value


class MxOutcome(enum.StrEnum):
    """How the dialogue with one MX ended."""

    ANSWERED = "answered"  # the MX gave a verdict (see ``MxAttempt.verdict``)
    UNRESOLVED = "unresolved"
    REFUSED = "refused"  # TCP RST on port 25
    TIMEOUT = "timeout"  # no answer to the connect: port 25 filtered somewhere
    NO_BANNER = "no_banner"  # connected, but no banner came
    CLOSED = "closed"
    STALLED = "stalled"
    PROTOCOL_ERROR = "protocol_error"
    DEADLINE = "deadline"

    def __str__(self) -> str:
        return self.value


class MxAttempt(Struct, frozen=True):
    """The port-25 dialogue with one MX host, up to RCPT TO and no further."""

    preference: int
    host: str
    outcome: MxOutcome
    step: InboundStep  # where it ended: the step of the verdict, or of the failure
    address: str | None = None
    # No MX record: RFC 5321 §5.1 has senders use the domain itself.
    implicit: bool = False
    verdict: InboundVerdict | None = None
    reply: str | None = None  # the MX's words for the verdict
    error: str | None = None  # what went wrong, for people
    banner: str | None = None
    starttls_offered: bool | None = None
    # Certificate facts of the STARTTLS handshake. Senders rarely check MX
    # certificates (opportunistic TLS, RFC 7435), so none of this is a failure.
    tls: TlsFacts | None = None
    tls_error: str | None = None  # the handshake failed; the dialogue went on in plaintext
    timings: Mapping[str, float] = field(default_factory=dict)  # InboundStep value -> seconds


class InboundResult(Struct, frozen=True):
    """Would mail to ``address`` get in? Every MX asked, in preference order."""

    address: str
    attempts: tuple[MxAttempt, ...] = ()
    # The run's deadline came before every MX had answered.
    unfinished: bool = False

    @property
    def decisive(self) -> MxAttempt | None:
        """The MX a sender's mail would get its answer from: the first that gave a verdict."""
        return next((a for a in self.attempts if a.outcome is MxOutcome.ANSWERED), None)


class Status(enum.IntEnum):
    """Exit status, as in the monitoring-plugins guidelines."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


class Diagnosis(Struct, frozen=True):
    """The complete answer for one domain."""

    domain: str
    domain_ascii: str
    started_at: datetime
    seconds: float
    discovery: Discovery
    results: tuple[ProbeResult, ...]
    findings: tuple[Finding, ...]
    status: Status
    user: str | None = None
    sync: SyncResult | None = None
    typed: tuple[TypedVerdict, ...] = ()
    # Web ports (443, 80) of mail servers whose mail ports did not connect.
    port_checks: tuple[PortCheck, ...] = ()
    inbound: InboundResult | None = None  # check --address, or --user with an address


class Thresholds(Struct, frozen=True):
    cert_warning_days: float = 21.0
    cert_critical_days: float = 7.0
    # Quota use in percent of the limit (--quota-warning / --quota-critical).
    quota_warning_percent: float = 90.0
    quota_critical_percent: float = 100.0
    # An INBOX above either size syncs badly on slow links: clients fetch the
    # headers of every message on first sync and after a UIDVALIDITY change.
    inbox_large_messages: int = 10_000
    inbox_large_bytes: int = 2 * 1024**3
    # Seconds: delivery through submission to the INBOX, and a flag change
    # from one IMAP session to another (IDLE is near-instant; clients that
    # poll do so every few seconds at best).
    sync_delivery_slow_s: float = 10.0
    sync_flag_slow_s: float = 5.0
    # Bytes (decimal MB, as providers state limits): below this EHLO SIZE,
    # ordinary attachments (photos, scanned PDFs) bounce.
    send_size_small_bytes: int = 10_000_000
