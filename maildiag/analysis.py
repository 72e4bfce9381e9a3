"""From finished results to findings: a pure function, no I/O, no clock.

Everything a report says about what is wrong and what to do is decided
here, from the ``Discovery`` and the ``ProbeResult``s alone, so the same
results always give the same findings whatever renders them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from .blocking import blocked_findings, explain_symptoms
from .dualstack import family_findings
from .finding_codes import FindingCode
from .findings import (
    CHAIN_INCOMPLETE_CLIENTS,
    LOGIN_HINTS,
    QUOTA_ADVICE,
    USE_IMAP_TEXTS,
    USER_FORM_TEXTS,
    WHERE,
    make_finding,
    quota_advice,
    render_text,
)
from .i18n import SIGNED, SIZE_UNKNOWN, SOURCE_AUTOCONFIG, SOURCE_SRV, TLS_NAME
from .model import (
    AuthStatus,
    Discovery,
    Endpoint,
    Finding,
    Folder,
    FolderListing,
    InboundResult,
    MailboxFacts,
    Outcome,
    Phase,
    PortCheck,
    ProbeResult,
    Protocol,
    Security,
    SendCheck,
    SendStatus,
    Severity,
    SkipReason,
    SourceKind,
    Status,
    SyncResult,
    Thresholds,
    TlsFacts,
    TlsFailure,
    TrustStatus,
)
from .mx_analysis import mx_findings
from .protocols import sasl
from .protocols.capabilities import parse as parse_capabilities
from .protocols.registry import ORDER, PROBED_SECURITIES, SRV_SERVICES, spec
from .servers import (
    cleartext_login_setting,
    identify_software,
    implicit_tls_setting,
    submission_auth_setting,
    tls_min_version_setting,
)
from .tls import WEAK_SIGNATURE_HASHES, weak_key, weak_signature

WEAK_CIPHER_MARKERS = ("RC4", "3DES", "DES-CBC", "NULL", "EXPORT", "MD5")
OUTDATED_TLS_VERSIONS = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1")
# Outcomes that say nothing bad about the endpoint itself (yet).
INCONCLUSIVE = (Outcome.THROTTLED, Outcome.DEADLINE)


def analyse(
    discovery: Discovery,
    results: Iterable[ProbeResult],
    thresholds: Thresholds = Thresholds(),
    *,
    timeout: float = 10.0,
    deadline: float = 60.0,
    user: str | None = None,
    sync: SyncResult | None = None,
    port_checks: Iterable[PortCheck] = (),
    inbound: InboundResult | None = None,
) -> tuple[Finding, ...]:
    """``port_checks``: the web ports of servers whose mail ports did not connect."""
    results = tuple(results)
    findings = [
        *_discovery_findings(discovery),
        *(
            f
            for result in results
            for f in _endpoint_findings(result, thresholds, timeout, deadline)
        ),
        *_protocol_findings(discovery, results),
        *mx_findings(discovery, results, inbound),
        *mailbox_findings(results, thresholds, user=user, sync=sync),
    ]
    blocked = blocked_findings(results, port_checks)
    findings = [*blocked, *explain_symptoms(findings, blocked)]
    return tuple(sorted(findings, key=lambda f: -f.severity.rank))


def overall_status(discovery: Discovery, findings: Iterable[Finding]) -> Status:
    """Monitoring-plugins status: the worst severity, UNKNOWN when nothing could be judged.

    A domain that does not exist (NXDOMAIN) is an answer, not a failure to
    judge: the mail of that domain is broken, so it is CRITICAL through its
    finding's severity, as check_dns reports a missing name. UNKNOWN stays for
    "could not find out" (DNS failed) and for bad input (the CLI's exit 3).
    """
    findings = tuple(findings)
    # Nothing found, and DNS failed on the way: nothing could be judged.
    if not discovery.endpoints and discovery.domain_exists and discovery.problems:
        return Status.UNKNOWN
    worst = max((f.severity.rank for f in findings), default=0)
    if worst >= Severity.CRITICAL.rank:
        return Status.CRITICAL
    if worst >= Severity.WARNING.rank:
        return Status.WARNING
    return Status.OK


def _srv_description(service: str) -> str:
    """ "IMAP with STARTTLS", "mail submission over TLS": what an SRV service announces."""
    if service not in SRV_SERVICES:
        return service
    protocol, security = SRV_SERVICES[service]
    protocol_spec = spec(protocol)
    if security is Security.TLS:
        return f"{protocol_spec.service_name} over TLS"
    return f"{protocol_spec.service_name} with {protocol_spec.starttls_command}"


def _srv_standard_port(service: str) -> int | str:
    if service not in SRV_SERVICES:
        return "PORT"
    protocol, security = SRV_SERVICES[service]
    return spec(protocol).port(security)


def _what(endpoint: Endpoint) -> str:
    return spec(endpoint.protocol).long_name


def _announced(endpoint: Endpoint) -> bool:
    first = endpoint.source_kinds[0] if endpoint.sources else None
    return first is not None and first.announced


def _discovery_findings(discovery: Discovery) -> Iterator[Finding]:
    domain = discovery.domain
    if not discovery.domain_exists:
        yield make_finding(FindingCode.DOMAIN_NOT_FOUND, domain=domain)
    failures: dict[tuple[str, str], list[str]] = {}
    for problem in discovery.problems:
        if problem.kind.is_answer:
            continue  # an absent record is an answer, not a failed lookup
        failures.setdefault((problem.kind, problem.detail), []).append(problem.query)
    for (kind, detail), queries in failures.items():
        # One finding per cause: a dead name server fails every lookup the same way.
        shown = ", ".join(queries[:4]) + (
            f" and {len(queries) - 4} more" if len(queries) > 4 else ""
        )
        yield make_finding(
            FindingCode.DNS_LOOKUP_FAILED, query=shown, detail=detail, kind=kind, queries=queries
        )
    mx_failed = any(p.query.endswith(" MX") and not p.kind.is_answer for p in discovery.problems)
    if discovery.domain_exists and not discovery.mx and not mx_failed:
        yield make_finding(FindingCode.MX_MISSING, domain=domain)
    for result in discovery.autoconfig:
        foreign = [s.host for s in result.servers if s.host in discovery.foreign_hosts]
        if foreign:
            via = (
                f" It was reached through a redirect to {result.final_url}."
                if result.final_url
                else ""
            )
            yield make_finding(
                FindingCode.AUTOCONFIG_FOREIGN_HOST,
                domain=domain,
                url=result.url,
                final_url=result.final_url,
                hosts=", ".join(dict.fromkeys(foreign)),
                redirect=via,
            )
    for record in discovery.srv:
        if record.invalid:
            yield make_finding(
                FindingCode.SRV_INVALID,
                service=record.service,
                target=record.target,
                domain=discovery.domain_ascii,
                port=record.port,
                standard_port=_srv_standard_port(record.service),
                what=_srv_description(record.service),
            )
        if record.not_offered:
            yield make_finding(
                FindingCode.SRV_NOT_OFFERED,
                service=record.service,
                what=_srv_description(record.service),
            )
    if not discovery.endpoints and discovery.domain_exists:
        yield make_finding(FindingCode.NO_MAIL_ENDPOINTS, domain=domain)


def _endpoint_findings(
    result: ProbeResult, thresholds: Thresholds, timeout: float, deadline: float
) -> Iterator[Finding]:
    endpoint = result.endpoint
    what = _what(endpoint)
    facts: dict[str, Any] = {"what": what, "timeout": timeout}
    found: list[Finding] = []
    outcome = result.outcome
    phase = result.failed_phase.value if result.failed_phase else "the dialogue"
    minor = None if _announced(endpoint) else Severity.INFO

    if outcome is Outcome.UNRESOLVED:
        found.append(
            make_finding(FindingCode.HOST_UNRESOLVED, endpoint, detail=result.error or "", **facts)
        )
    elif outcome is Outcome.REFUSED:
        found.append(make_finding(FindingCode.PORT_CLOSED, endpoint, severity=minor, **facts))
    elif outcome is Outcome.TIMEOUT:
        found.append(make_finding(FindingCode.PORT_FILTERED, endpoint, severity=minor, **facts))
    elif outcome is Outcome.NO_GREETING:
        found.append(make_finding(FindingCode.NO_GREETING, endpoint, **facts))
    elif outcome is Outcome.STALLED and result.failed_phase is Phase.TLS:
        found.append(make_finding(FindingCode.TLS_HANDSHAKE_TIMEOUT, endpoint, **facts))
    elif outcome is Outcome.STALLED:
        found.append(make_finding(FindingCode.SERVER_STALLED, endpoint, phase=phase, **facts))
    elif outcome is Outcome.CLOSED:
        found.append(make_finding(FindingCode.CONNECTION_CLOSED, endpoint, phase=phase, **facts))
    elif outcome is Outcome.UNAVAILABLE:
        found.append(
            make_finding(
                FindingCode.SERVICE_UNAVAILABLE, endpoint, reply=result.server_reply or "", **facts
            )
        )
    elif outcome is Outcome.THROTTLED:
        code = (
            FindingCode.SMTP_THROTTLED
            if endpoint.protocol is Protocol.SMTP
            else FindingCode.SERVER_THROTTLED
        )
        found.append(make_finding(code, endpoint, reply=result.server_reply or "", **facts))
    elif outcome is Outcome.PROTOCOL_ERROR and result.starttls_injection is not None:
        found.append(
            make_finding(
                FindingCode.STARTTLS_INJECTION,
                endpoint,
                command=spec(endpoint.protocol).starttls_command,
                tls_port=spec(endpoint.protocol).tls_port,
                injected=result.starttls_injection,
                **facts,
            )
        )
    elif outcome is Outcome.PROTOCOL_ERROR:
        found.append(
            make_finding(FindingCode.PROTOCOL_ERROR, endpoint, detail=result.error or "", **facts)
        )
    elif outcome is Outcome.TLS_FAILED:
        found.append(_tls_failed_finding(result, facts))
    elif outcome is Outcome.PREAUTH:
        # Critical where clients expect STARTTLS (or nothing): the session is
        # authenticated in plaintext and can never be encrypted. Inside
        # implicit TLS it is encrypted, but still a mailbox without a login.
        found.append(
            make_finding(
                FindingCode.IMAP_PREAUTH,
                endpoint,
                severity=Severity.WARNING if endpoint.security is Security.TLS else None,
                greeting=result.greeting or "",
                tls_port=spec(endpoint.protocol).tls_port,
                **facts,
            )
        )
    elif outcome is Outcome.DEADLINE:
        found.append(
            make_finding(
                FindingCode.DEADLINE_EXCEEDED, endpoint, phase=phase, deadline=deadline, **facts
            )
        )
    elif outcome in (Outcome.STARTTLS_MISSING, Outcome.STARTTLS_FAILED):
        code = (
            FindingCode.STARTTLS_MISSING
            if outcome is Outcome.STARTTLS_MISSING
            else FindingCode.STARTTLS_FAILED
        )
        found.append(
            make_finding(
                code,
                endpoint,
                command=spec(endpoint.protocol).starttls_command,
                tls_port=spec(endpoint.protocol).tls_port,
                reply=result.server_reply or "",
                **facts,
            )
        )

    if result.plaintext_login_offered and endpoint.security is not Security.TLS:
        found.extend(_cleartext_login_findings(result, facts))

    if result.tls is not None:
        found.extend(_tls_findings(endpoint, result.tls, thresholds, _software(result)))

    found.extend(family_findings(result, facts))

    if outcome is Outcome.OK and endpoint.protocol is Protocol.SMTP and not _offers_auth(result):
        # Found without credentials: the EHLO inside TLS already says that no
        # client can log in to send (Postfix smtpd_sasl_auth_enable = no, Exim
        # without authenticators). Critical: for the customer, sending fails.
        found.append(
            make_finding(
                FindingCode.SUBMISSION_NO_AUTH,
                endpoint,
                where=" after TLS" if endpoint.security is not Security.PLAIN else "",
                setting=submission_auth_setting(_software(result)),
                **facts,
            )
        )

    if (
        _announced(endpoint)
        and endpoint.source_kinds[0] is not SourceKind.OPTION
        and outcome not in (Outcome.OK, *INCONCLUSIVE)
    ):
        found.append(
            make_finding(
                FindingCode.DISCOVERY_CONTRADICTION,
                endpoint,
                source=_source_name(endpoint.sources[0]),
                outcome=outcome.value.replace("_", " "),
                **facts,
            )
        )

    if outcome is Outcome.OK and not any(f.severity.rank >= Severity.WARNING.rank for f in found):
        found.append(make_finding(FindingCode.ENDPOINT_OK, endpoint, **facts))
    yield from found


def _software(result: ProbeResult) -> Any:
    return identify_software(result.greeting, (*result.capabilities, *result.capabilities_tls))


def _offers_auth(result: ProbeResult) -> bool:
    # The EHLO inside TLS counts; a deliberately unencrypted endpoint has only the other.
    caps = (
        result.capabilities
        if result.endpoint.security is Security.PLAIN
        else (result.capabilities_tls)
    )
    # No EHLO keywords at all means no EHLO was recorded: nothing to judge.
    if not caps:
        return True
    return any(c.upper() == "AUTH" or c.upper().startswith(("AUTH ", "AUTH=")) for c in caps)


OUTDATED_ONLY = "a protocol older than TLS 1.0 (no version in common)"


def _tls_failed_finding(result: ProbeResult, facts: dict[str, Any]) -> Finding:
    endpoint = result.endpoint
    protocol = endpoint.protocol
    if result.tls_failure is TlsFailure.PLAINTEXT and endpoint.security is Security.TLS:
        return make_finding(
            FindingCode.TLS_PORT_SPEAKS_PLAINTEXT,
            endpoint,
            greeting=result.greeting or result.error or "",
            plain_name=spec(protocol).name,
            tls_name=TLS_NAME.format(name=spec(protocol).tls_name),
            tls_name_of=spec(protocol).tls_name,
            starttls_port=spec(protocol).starttls_port,
            tls_port=spec(protocol).tls_port,
            setting=implicit_tls_setting(_software(result), protocol),
            **facts,
        )
    if result.tls_failure is TlsFailure.OUTDATED_PROTOCOL:
        return make_finding(
            FindingCode.TLS_PROTOCOL_OUTDATED,
            endpoint,
            version=OUTDATED_ONLY,
            setting=tls_min_version_setting(_software(result)),
            **facts,
        )
    return make_finding(
        FindingCode.TLS_HANDSHAKE_FAILED, endpoint, detail=result.error or "", **facts
    )


def _cleartext_login_findings(result: ProbeResult, facts: dict[str, Any]) -> Iterator[Finding]:
    """PLAINTEXT_AUTH_ALLOWED only for logins that send the password itself.

    CRAM-MD5, SCRAM-*, GSSAPI, OAuth tokens ... before TLS expose no password
    (maildiag.protocols.sasl). POP3's USER capability is ambiguous (RFC 2449
    §6.6: the command exists, not that it is accepted before STLS), and so is an
    unknown mechanism: an info finding, and nothing sent to find out.
    """
    endpoint = result.endpoint
    names = _login_names(result)
    exposing = [n for n in names if sasl.exposure(n) is sasl.Exposure.PASSWORD]
    unclear = [n for n in names if sasl.exposure(n) is sasl.Exposure.UNCLEAR]
    if not (exposing or unclear):
        return
    software = identify_software(result.greeting, (*result.capabilities, *result.capabilities_tls))
    yield make_finding(
        FindingCode.PLAINTEXT_AUTH_ALLOWED if exposing else FindingCode.PLAINTEXT_AUTH_UNCLEAR,
        endpoint,
        command=spec(endpoint.protocol).starttls_command,
        mechanisms=", ".join(exposing or unclear),
        software=str(software.product) if software else None,
        setting=cleartext_login_setting(software, endpoint.protocol),
        **facts,
    )


def _login_names(result: ProbeResult) -> list[str]:
    # Without CAPA (RFC 2449 is optional) POP3's USER/PASS is presumed.
    names = parse_capabilities(result.endpoint.protocol, result.capabilities).login_names
    return list(names) or ["login"]


def _source_name(source: str) -> str:
    kind = SourceKind.of(source)
    if kind is SourceKind.SRV:
        return SOURCE_SRV.format(record=SourceKind.detail(source))
    if kind is SourceKind.AUTOCONFIG:
        return SOURCE_AUTOCONFIG
    return source


def _tls_findings(
    endpoint: Endpoint, facts: TlsFacts, thresholds: Thresholds, software: Any = None
) -> Iterator[Finding]:
    leaf = facts.leaf
    base: dict[str, Any] = {"what": _what(endpoint)}
    if leaf is not None:
        base.update(
            subject=leaf.subject,
            issuer=leaf.issuer,
            not_before=leaf.not_before.date().isoformat(),
            not_after=leaf.not_after.date().isoformat(),
        )
    detail = facts.trust_detail or facts.trust.value.replace("_", " ")
    trust_codes = {
        TrustStatus.EXPIRED: FindingCode.TLS_CERT_EXPIRED,
        TrustStatus.NOT_YET_VALID: FindingCode.TLS_CERT_NOT_YET_VALID,
        TrustStatus.SELF_SIGNED: FindingCode.TLS_CERT_SELF_SIGNED,
        TrustStatus.UNTRUSTED_ROOT: FindingCode.TLS_CERT_UNTRUSTED,
        TrustStatus.INCOMPLETE_CHAIN: FindingCode.TLS_CHAIN_INCOMPLETE,
        TrustStatus.INVALID: FindingCode.TLS_CERT_INVALID,
        TrustStatus.NO_CERTIFICATE: FindingCode.TLS_CERT_INVALID,
    }
    # A chain refused only for its weak key or signature hash is reported by
    # TLS_KEY_WEAK / TLS_SIGNATURE_WEAK below, which say what to replace.
    if facts.trust in trust_codes and not facts.rejected_as_weak:
        days_ago = int(-(facts.days_remaining or 0))
        code = trust_codes[facts.trust]
        extra: dict[str, Any] = {}
        if code == FindingCode.TLS_CHAIN_INCOMPLETE:
            # Without an AIA caIssuers URL (RFC 5280 §4.2.2.1) no client can
            # fetch the missing intermediate: critical, not "some clients".
            urls = leaf.ca_issuers if leaf is not None else ()
            extra = {
                "severity": Severity.WARNING if urls else Severity.CRITICAL,
                "clients": CHAIN_INCOMPLETE_CLIENTS[bool(urls)].format(ca_issuers=", ".join(urls)),
                "ca_issuers": list(urls),
            }
        yield make_finding(code, endpoint, detail=detail, days_ago=days_ago, **extra, **base)
    yield from _weak_crypto_findings(endpoint, facts, base)
    if leaf is not None and not leaf.sans:
        # RFC 9525 §6.3: the CN is no identifier any more; TLS_HOSTNAME_MISMATCH
        # would tell the customer to use the CN, which fails just the same.
        yield make_finding(
            FindingCode.TLS_CERT_NO_SAN,
            endpoint,
            hostname=facts.hostname,
            common_name=leaf.common_name or "none",
            **base,
        )
    elif not facts.hostname_matches and leaf is not None:
        names = [n for n in leaf.sans] or ([leaf.common_name] if leaf.common_name else [])
        yield make_finding(
            FindingCode.TLS_HOSTNAME_MISMATCH,
            endpoint,
            hostname=facts.hostname,
            valid_for=", ".join(names) or "no name at all",
            suggestion=_suggest_name(names),
            valid_names=names,
            **base,
        )
    days = facts.days_remaining
    if days is not None and facts.trust is not TrustStatus.EXPIRED and days >= 0:
        if days <= thresholds.cert_critical_days:
            yield make_finding(
                FindingCode.TLS_CERT_EXPIRING,
                endpoint,
                severity=Severity.CRITICAL,
                days_left=int(days),
                **base,
            )
        elif days <= thresholds.cert_warning_days:
            yield make_finding(FindingCode.TLS_CERT_EXPIRING, endpoint, days_left=int(days), **base)
    if facts.version in OUTDATED_TLS_VERSIONS:
        # The probe offers up to TLS 1.3, so the version negotiated is the
        # newest the server has: below 1.2, current clients cannot connect.
        yield make_finding(
            FindingCode.TLS_PROTOCOL_OUTDATED,
            endpoint,
            version=facts.version,
            setting=tls_min_version_setting(software),
            **base,
        )
    weak_bits = facts.cipher_bits is not None and facts.cipher_bits < 128
    if weak_bits or any(marker in facts.cipher.upper() for marker in WEAK_CIPHER_MARKERS):
        yield make_finding(
            FindingCode.TLS_CIPHER_WEAK,
            endpoint,
            cipher=facts.cipher,
            bits=facts.cipher_bits,
            **base,
        )


def _weak_crypto_findings(
    endpoint: Endpoint, facts: TlsFacts, base: dict[str, Any]
) -> Iterator[Finding]:
    # Every certificate the server sent, except self-issued roots beyond the
    # leaf: clients take roots from their own store, and a root's
    # self-signature is never checked.
    sent = [c for i, c in enumerate(facts.chain) if i == 0 or not c.self_issued]
    keys = [c for c in sent if weak_key(c)]
    if keys:
        yield make_finding(
            FindingCode.TLS_KEY_WEAK,
            endpoint,
            weak_keys="; ".join(f"{c.subject}: {c.key_description}" for c in keys),
            certificates=[c.subject for c in keys],
            **base,
        )
    signatures = [c for c in sent if weak_signature(c) and not c.self_issued]
    signed = [
        {
            "place": "leaf" if c is facts.chain[0] else "intermediate",
            "subject": c.subject,
            "hash": WEAK_SIGNATURE_HASHES[c.signature_hash or ""],
            "algorithm": c.signature_algorithm,
        }
        for c in signatures
    ]
    if signatures:
        yield make_finding(
            FindingCode.TLS_SIGNATURE_WEAK,
            endpoint,
            weak_signatures="; ".join(SIGNED[c["place"]].format(**c) for c in signed),
            signed=signed,
            certificates=[c.subject for c in signatures],
            **base,
        )


def _suggest_name(names: list[str]) -> str:
    """The name to tell the customer: the first concrete DNS name on the certificate."""
    concrete = [n for n in names if not n.startswith("*.") and not n.replace(".", "").isdigit()]
    if concrete:
        return f"'{concrete[0]}'"
    if names:
        return f"a name matching '{names[0]}'"
    return "the provider's server name"


def _protocol_findings(discovery: Discovery, results: tuple[ProbeResult, ...]) -> Iterator[Finding]:
    if not discovery.endpoints:
        return
    declined = {r.service for r in discovery.srv if r.not_offered}
    working: dict[Protocol, bool] = {}
    for result in results:
        ok = result.outcome is Outcome.OK or result.outcome in INCONCLUSIVE
        # Working over the other IP family is working (IPV4_FAILS says the rest).
        ok = ok or (result.other_family is not None and result.other_family.outcome is Outcome.OK)
        working[result.endpoint.protocol] = working.get(result.endpoint.protocol, False) or ok
    for protocol in ORDER:
        protocol_spec = spec(protocol)
        services = {protocol_spec.srv_service(s) for s in PROBED_SECURITIES}
        if working.get(protocol) or services <= declined:
            continue
        severity = None
        if protocol is Protocol.POP3 and working.get(Protocol.IMAP):
            severity = Severity.INFO  # the seeds' advice: IMAP is what to use anyway
        yield make_finding(protocol_spec.unreachable_code, severity=severity)


# --- mailbox checks (with credentials) ------------------------------------------

_AUTH_CODES = {
    AuthStatus.OK: FindingCode.AUTH_OK,
    AuthStatus.WRONG_CREDENTIALS: FindingCode.AUTH_FAILED,
    AuthStatus.ACCOUNT_DISABLED: FindingCode.AUTH_ACCOUNT_DISABLED,
    AuthStatus.PLAINTEXT_REFUSED: FindingCode.AUTH_PLAINTEXT_REFUSED,
    AuthStatus.MECHANISM_UNAVAILABLE: FindingCode.AUTH_MECHANISM_UNAVAILABLE,
    AuthStatus.TEMPORARY_FAILURE: FindingCode.AUTH_TEMPORARY_FAILURE,
    AuthStatus.FAILED: FindingCode.AUTH_REFUSED,
    AuthStatus.NO_ANSWER: FindingCode.AUTH_NO_ANSWER,
    AuthStatus.PASSWORD_LOGIN_DISABLED: FindingCode.AUTH_REFUSED,
}
_SKIP_CODES = {
    SkipReason.LOCKOUT: FindingCode.AUTH_SKIPPED_LOCKOUT,
    SkipReason.NO_PILOT_VERDICT: FindingCode.AUTH_SKIPPED_LOCKOUT,
    SkipReason.UNTRUSTED_CERTIFICATE: FindingCode.AUTH_SKIPPED_UNTRUSTED,
    SkipReason.PLAINTEXT: FindingCode.AUTH_SKIPPED_PLAINTEXT,
    SkipReason.FOREIGN_HOST: FindingCode.AUTH_SKIPPED_FOREIGN_HOST,
}


def mailbox_findings(
    results: Iterable[ProbeResult],
    thresholds: Thresholds = Thresholds(),
    *,
    user: str | None = None,
    sync: SyncResult | None = None,
) -> Iterator[Finding]:
    """Login, quota, INBOX size, IMAP/POP3 advice and sync: only where they were measured."""
    tried = [r for r in results if r.auth is not None]
    who = user or "the user"
    for result in tried:
        yield from _auth_findings(result, who, user_form(user))
        if result.send is not None:
            yield from _send_findings(result, result.send, thresholds, who)
    yield from _quota_findings(tried, thresholds, who)
    yield from _folder_findings(tried)
    yield from _inbox_findings(tried, thresholds, who)
    yield from _advice(tried)
    if sync is not None:
        yield from _sync_findings(sync, thresholds, who)


def user_form(user: str | None) -> str:
    """The key of USER_FORM_TEXTS for a login name: which other form to mention."""
    if user is None:
        return ""
    return "address" if "@" in user else "local_part"


def _auth_findings(result: ProbeResult, user: str, form: str = "") -> Iterator[Finding]:
    auth = result.auth
    assert auth is not None
    endpoint = result.endpoint
    facts: dict[str, Any] = {
        "what": _what(endpoint),
        "user": user,
        "mechanism": auth.mechanism or "-",
        "reply": auth.detail or "",
        "detail": auth.detail or "",
        "command": spec(endpoint.protocol).starttls_command,
        "tls_port": spec(endpoint.protocol).tls_port,
    }
    # RFC 8314 §3 / RFC 3207 §4: refusing logins before STARTTLS is the safe
    # setting; the capabilities before TLS already say so, no password needed.
    refused_before_tls = (
        endpoint.security is Security.STARTTLS and result.plaintext_login_offered is False
    )
    if refused_before_tls or auth.status is AuthStatus.PLAINTEXT_REFUSED:
        yield make_finding(FindingCode.AUTH_PLAINTEXT_REFUSED, endpoint, **facts)
    if auth.status is AuthStatus.PLAINTEXT_REFUSED:
        return
    if auth.status is AuthStatus.SKIPPED:
        # A skip without a recorded reason holds the password back like a lockout.
        code = _SKIP_CODES[auth.skipped_because or SkipReason.LOCKOUT]
        reason = (auth.detail or "skipped").removeprefix("not tried: ")
        # The earlier verdict as facts, so the reason can be worded in any language.
        held_back: dict[str, Any] = {
            f"lockout_{k}" if k != "lockout" else k: v for k, v in auth.skipped_facts
        }
        yield make_finding(code, endpoint, reason=reason, **held_back, **facts)
        return
    # The cause the server's reply names (maildiag.login_replies), else the status's.
    if auth.cause is not None:
        code = auth.cause
    else:
        code = _AUTH_CODES.get(auth.status, FindingCode.AUTH_REFUSED)
    if code is FindingCode.AUTH_FAILED:
        facts["user_form"] = render_text(USER_FORM_TEXTS.get(form, ""), {"user": user})
        facts["user_form_key"] = form
        facts["hint"] = LOGIN_HINTS[auth.hint] if auth.hint is not None else ""
        facts["hint_key"] = auth.hint
    yield make_finding(code, endpoint, **facts)
    # Imported here: only a check with a login has replies to read (and has
    # imported it for its probes already).
    from . import login_replies

    # One finding per notice: two different texts are two things to tell the customer.
    for alert in dict.fromkeys(auth.alerts):
        yield make_finding(
            login_replies.alert_cause(alert), endpoint, what=facts["what"], user=user, alert=alert
        )


_SEND_CODES = {
    SendStatus.ACCEPTED: FindingCode.SEND_OK,
    SendStatus.SENDER_REJECTED: FindingCode.SEND_SENDER_REJECTED,
    SendStatus.REFUSED: FindingCode.SEND_REFUSED,
    SendStatus.TEMPORARY: FindingCode.SEND_REFUSED,
    SendStatus.NO_ANSWER: FindingCode.SEND_REFUSED,
    SendStatus.SKIPPED: FindingCode.SEND_SKIPPED,
}


def _send_findings(
    result: ProbeResult, send: SendCheck, thresholds: Thresholds, user: str
) -> Iterator[Finding]:
    endpoint = result.endpoint
    status = send.status
    # The answer that decided: RCPT's once MAIL was accepted, else MAIL's.
    accepted_mail = (send.mail_reply or "").startswith("2")
    reply = send.rcpt_reply if accepted_mail and send.rcpt_reply else send.mail_reply
    inconclusive = status in (SendStatus.TEMPORARY, SendStatus.NO_ANSWER)
    if inconclusive and send.detail:
        reply = f"{reply} ({send.detail})" if reply else send.detail
    facts: dict[str, Any] = {
        "user": user,
        "sender": send.sender or "-",
        "reply": reply or "",
        "mail_reply": send.mail_reply,
        "rcpt_reply": send.rcpt_reply,
        "status": status.value,
    }
    if status is SendStatus.SKIPPED:
        reason = (send.detail or "skipped").removeprefix("not tried: ")
        yield make_finding(FindingCode.SEND_SKIPPED, endpoint, reason=reason, **facts)
    else:
        # A temporary refusal or a broken-off dialogue says nothing yet about the address.
        severity = Severity.INFO if inconclusive else None
        yield make_finding(_SEND_CODES[status], endpoint, severity=severity, **facts)
    if send.size_limit is not None:
        size: dict[str, Any] = {
            "size": _megabytes(send.size_limit),
            "attachments": _megabytes(send.size_limit * 3 // 4),
            "size_bytes": send.size_limit,
            "threshold_bytes": thresholds.send_size_small_bytes,
        }
        small = send.size_limit < thresholds.send_size_small_bytes
        yield make_finding(
            FindingCode.SEND_SIZE_SMALL if small else FindingCode.SEND_SIZE_LIMIT, endpoint, **size
        )


def _megabytes(n: int) -> str:
    # Decimal, as providers and clients state message size limits ("25 MB").
    return f"{n / 1_000_000:.1f} MB" if n >= 100_000 else f"{n / 1000:.0f} kB"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit in ("bytes", "KiB") else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"


def _amount(resource: str, value: int) -> str:
    # RFC 9208 §5.1: STORAGE is counted in units of 1024 octets.
    if resource == "STORAGE":
        return _size(value * 1024)
    if resource == "MESSAGE":
        return f"{value} messages"
    return str(value)


def _quota_findings(
    tried: list[ProbeResult], thresholds: Thresholds, user: str
) -> Iterator[Finding]:
    imap_logins = [
        r
        for r in tried
        if r.endpoint.protocol is Protocol.IMAP
        and r.auth is not None
        and r.auth.status == AuthStatus.OK
        and r.mailbox is not None
    ]
    with_quota = [r for r in imap_logins if r.mailbox and r.mailbox.quota]
    if not with_quota:
        if imap_logins and not any(r.mailbox and r.mailbox.quota_supported for r in imap_logins):
            yield make_finding(FindingCode.QUOTA_UNSUPPORTED, user=user)
        return
    # The quota belongs to the mailbox, not the endpoint: one finding, from the
    # first endpoint that reported it.
    mailbox = with_quota[0].mailbox
    assert mailbox is not None
    limited = [q for q in mailbox.quota if q.limit > 0]
    if not limited:
        return
    worst = max(limited, key=lambda q: q.usage / q.limit)
    percent = worst.usage / worst.limit * 100
    # The advice follows every resource that is over the threshold being
    # reported, worst first: a full MESSAGE quota wants many mails deleted,
    # a full STORAGE quota large ones.
    threshold = (
        thresholds.quota_critical_percent
        if percent >= thresholds.quota_critical_percent
        else thresholds.quota_warning_percent
    )
    pressing = sorted(
        (q for q in limited if q.usage / q.limit * 100 >= threshold),
        key=lambda q: -q.usage / q.limit,
    )
    advice_keys = list(
        dict.fromkeys(q.name.upper() if q.name.upper() in QUOTA_ADVICE else "" for q in pressing)
    )
    folder_space = _folder_space(mailbox, worst.name)
    advice = quota_advice(advice_keys, folder_space, lambda _context, english: english)
    facts: dict[str, Any] = {
        "user": user,
        "resource": worst.name,
        "percent": percent,
        "used": _amount(worst.name, worst.usage),
        "limit": _amount(worst.name, worst.limit),
        "quota_root": mailbox.quota_root,
        "resources": [
            {"resource": q.name, "usage": q.usage, "limit": q.limit} for q in mailbox.quota
        ],
    }
    if percent >= thresholds.quota_critical_percent:
        yield make_finding(
            FindingCode.QUOTA_FULL,
            advice=advice,
            advice_for=advice_keys,
            folder_space=folder_space,
            **facts,
        )
    elif percent >= thresholds.quota_warning_percent:
        yield make_finding(
            FindingCode.QUOTA_NEAR_LIMIT,
            advice=advice,
            advice_for=advice_keys,
            folder_space=folder_space,
            **facts,
        )
    else:
        yield make_finding(FindingCode.QUOTA_OK, **facts)


# Folders whose content the user can simply throw away (RFC 6154 §2).
_EMPTYABLE = frozenset({"\\Trash", "\\Junk"})
_LARGEST_SHOWN = 3


def _folder_space(mailbox: MailboxFacts, resource: str) -> list[dict[str, Any]]:
    """The folders that hold the quota: Trash and Junk (when they hold a tenth or more of
    it), then the largest others.

    By size where STATUS=SIZE gave it (and the quota is not a message count),
    else by message count; empty folders are left out.
    """
    by_size = resource.upper() != "MESSAGE" and any(f.size_bytes for f in mailbox.folders)

    def amount(folder: Folder) -> int:
        return (folder.size_bytes if by_size else folder.messages) or 0

    measured = sorted((f for f in mailbox.folders if amount(f) > 0), key=amount, reverse=True)
    total = sum(amount(f) for f in measured)
    # Trash and Junk are named as the first step only when that step matters.
    emptyable = [f for f in measured if _EMPTYABLE & set(f.special_use) and amount(f) * 10 >= total]
    others = [f for f in measured if f not in emptyable][:_LARGEST_SHOWN]
    return [
        {
            "name": f.name,
            "size": _size(amount(f)) if by_size else None,
            "size_bytes": f.size_bytes,
            "messages": f.messages,
            "empty": f in emptyable,
        }
        for f in (*emptyable, *others)
    ]


# RFC 6154 §2: the four a mail client needs to place sent, drafted, deleted and spam mail.
_NEEDED_SPECIAL_USE = ("\\Sent", "\\Drafts", "\\Trash", "\\Junk")
_FOLDERS_SHOWN = 12


def _folder_findings(tried: list[ProbeResult]) -> Iterator[Finding]:
    """Special-use marks and IDLE: facts of the mailbox, from the first IMAP login that listed."""
    listed = [
        r.mailbox
        for r in tried
        if r.endpoint.protocol is Protocol.IMAP
        and r.auth is not None
        and r.auth.status == AuthStatus.OK
        and r.mailbox is not None
        and r.mailbox.folder_listing not in (None, FolderListing.FAILED)
    ]
    if not listed:
        return
    mailbox = listed[0]
    marked = {use for f in mailbox.folders for use in f.special_use}
    missing = [use for use in _NEEDED_SPECIAL_USE if use not in marked]
    names = [f.name for f in mailbox.folders]
    shown = ", ".join(names[:_FOLDERS_SHOWN]) + (", ..." if len(names) > _FOLDERS_SHOWN else "")
    facts: dict[str, Any] = {
        "listing": str(mailbox.folder_listing),
        "folder_names": names,
        "special_use": {f.name: list(f.special_use) for f in mailbox.folders if f.special_use},
    }
    if missing:
        # Sent and Trash are where mail "vanishes"; Drafts and Junk matter less.
        severity = None if {"\\Sent", "\\Trash"} & set(missing) else Severity.INFO
        yield make_finding(
            FindingCode.FOLDERS_SPECIAL_USE_MISSING,
            severity=severity,
            missing=", ".join(missing),
            missing_uses=missing,
            folders=shown or "-",
            **facts,
        )
    else:
        pairs = [
            f"{use} {f.name}"
            for use in _NEEDED_SPECIAL_USE
            for f in mailbox.folders
            if use in f.special_use
        ]
        yield make_finding(FindingCode.FOLDERS_SPECIAL_USE_OK, marked=", ".join(pairs), **facts)
    if mailbox.idle is False:
        yield make_finding(FindingCode.IMAP_IDLE_MISSING)


def _inbox_findings(
    tried: list[ProbeResult], thresholds: Thresholds, user: str
) -> Iterator[Finding]:
    boxes = [r.mailbox for r in tried if r.mailbox is not None]
    messages = max((b.inbox_messages or 0 for b in boxes), default=0)
    size = max((b.inbox_size_bytes or 0 for b in boxes), default=0)
    if messages >= thresholds.inbox_large_messages or size >= thresholds.inbox_large_bytes:
        yield make_finding(
            FindingCode.INBOX_LARGE,
            user=user,
            messages=messages,
            size=_size(size) if size else SIZE_UNKNOWN,
            size_bytes=size or None,
            max_messages=thresholds.inbox_large_messages,
            max_size=_size(thresholds.inbox_large_bytes),
        )


def _advice(tried: list[ProbeResult]) -> Iterator[Finding]:
    def working(protocol: Protocol) -> list[ProbeResult]:
        found = [
            r
            for r in tried
            if r.endpoint.protocol is protocol and r.auth and r.auth.status == AuthStatus.OK
        ]
        return sorted(found, key=lambda r: r.endpoint.security is not Security.TLS)

    imap_ok, pop_ok = working(Protocol.IMAP), working(Protocol.POP3)
    candidates = imap_ok or pop_ok
    if not candidates:
        return
    endpoint = candidates[0].endpoint
    where = {
        "host": endpoint.host,
        "port": endpoint.port,
        "encryption": "SSL/TLS" if endpoint.security is Security.TLS else "STARTTLS",
    }
    if imap_ok:
        keys = ("imap_and_pop3_work" if pop_ok else "imap_works", "use_imap")
    else:
        keys = ("only_pop3", "keep_copy")
    place = render_text(WHERE, where)
    yield make_finding(
        FindingCode.ADVICE_USE_IMAP,
        situation=render_text(USE_IMAP_TEXTS[keys[0]], {"where": place}),
        advice=render_text(USE_IMAP_TEXTS[keys[1]], {"where": place}),
        imap=endpoint.key if imap_ok else None,
        pop3=bool(pop_ok),
        texts=list(keys),
        where=where,
    )


def _sync_findings(sync: SyncResult, thresholds: Thresholds, user: str) -> Iterator[Finding]:
    facts: dict[str, Any] = {
        "user": user,
        "delivery": sync.delivery_latency_s,
        "delivery_method": sync.delivery_method or "-",
        "flag": sync.flag_sync_latency_s,
        "flag_method": sync.flag_sync_method or "-",
    }
    reason = sync.error or "no reason recorded"
    problems = False
    if sync.delivery_latency_s is None or sync.flag_sync_latency_s is None:
        problems = True
        yield make_finding(
            FindingCode.SYNC_FAILED,
            severity=Severity.INFO if sync.not_measured else None,
            reason=reason,
            **facts,
        )
    if sync.delivery_latency_s is not None and (
        sync.delivery_latency_s > thresholds.sync_delivery_slow_s
    ):
        problems = True
        yield make_finding(
            FindingCode.SYNC_DELIVERY_SLOW, limit=thresholds.sync_delivery_slow_s, **facts
        )
    if sync.flag_sync_latency_s is not None and (
        sync.flag_sync_latency_s > thresholds.sync_flag_slow_s
    ):
        problems = True
        yield make_finding(FindingCode.SYNC_FLAG_SLOW, limit=thresholds.sync_flag_slow_s, **facts)
    if not sync.cleaned_up:
        problems = True
        yield make_finding(FindingCode.SYNC_CLEANUP_FAILED, reason=reason, **facts)
    if not problems:
        yield make_finding(FindingCode.SYNC_OK, **facts)
