"""From finished results to findings: a pure function, no I/O, no clock.

Everything a report says about what is wrong and what to do is decided
here, from the ``Discovery`` and the ``ProbeResult``s alone, so the same
results always give the same findings whatever renders them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .findings import make_finding
from .model import (
    Discovery,
    Endpoint,
    Finding,
    Outcome,
    Phase,
    ProbeResult,
    Protocol,
    Security,
    Severity,
    Status,
    TlsFacts,
    TrustStatus,
)


@dataclass(frozen=True)
class Thresholds:
    cert_warning_days: float = 21.0
    cert_critical_days: float = 7.0


PROTOCOL_NAMES = {Protocol.IMAP: "IMAP", Protocol.POP3: "POP3", Protocol.SMTP: "SMTP submission"}
STARTTLS_COMMANDS = {Protocol.IMAP: "STARTTLS", Protocol.POP3: "STLS", Protocol.SMTP: "STARTTLS"}
IMPLICIT_TLS_PORTS = {Protocol.IMAP: 993, Protocol.POP3: 995, Protocol.SMTP: 465}
SRV_SERVICES = {
    "_imap._tcp": "IMAP with STARTTLS",
    "_imaps._tcp": "IMAP over TLS",
    "_pop3._tcp": "POP3 with STLS",
    "_pop3s._tcp": "POP3 over TLS",
    "_submission._tcp": "mail submission with STARTTLS",
    "_submissions._tcp": "mail submission over TLS",
}
# Sources that mean "someone published this endpoint", as opposed to a guessed name.
ANNOUNCED_SOURCE_PREFIXES = ("srv:", "autoconfig", "option")
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
) -> tuple[Finding, ...]:
    results = tuple(results)
    findings = [
        *_discovery_findings(discovery),
        *(
            f
            for result in results
            for f in _endpoint_findings(result, thresholds, timeout, deadline)
        ),
        *_protocol_findings(discovery, results),
    ]
    return tuple(sorted(findings, key=lambda f: -f.severity.rank))


def overall_status(discovery: Discovery, findings: Iterable[Finding]) -> Status:
    """Monitoring-plugins status: the worst severity, UNKNOWN when nothing could be judged."""
    codes = {f.code for f in findings}
    if "DOMAIN_NOT_FOUND" in codes and not discovery.endpoints:
        return Status.UNKNOWN
    if "NO_MAIL_ENDPOINTS" in codes and discovery.problems:
        return Status.UNKNOWN
    worst = max((f.severity.rank for f in findings), default=0)
    if worst >= Severity.CRITICAL.rank:
        return Status.CRITICAL
    if worst >= Severity.WARNING.rank:
        return Status.WARNING
    return Status.OK


def _what(endpoint: Endpoint) -> str:
    return PROTOCOL_NAMES[endpoint.protocol]


def _announced(endpoint: Endpoint) -> bool:
    return bool(endpoint.sources) and endpoint.sources[0].startswith(ANNOUNCED_SOURCE_PREFIXES)


def _discovery_findings(discovery: Discovery) -> Iterator[Finding]:
    domain = discovery.domain
    if not discovery.domain_exists:
        yield make_finding("DOMAIN_NOT_FOUND", domain=domain)
    failures: dict[tuple[str, str], list[str]] = {}
    for problem in discovery.problems:
        if problem.kind in ("nxdomain", "nodata"):
            continue  # an absent record is an answer, not a failed lookup
        failures.setdefault((problem.kind, problem.detail), []).append(problem.query)
    for (kind, detail), queries in failures.items():
        # One finding per cause: a dead name server fails every lookup the same way.
        shown = ", ".join(queries[:4]) + (
            f" and {len(queries) - 4} more" if len(queries) > 4 else ""
        )
        yield make_finding(
            "DNS_LOOKUP_FAILED", query=shown, detail=detail, kind=kind, queries=queries
        )
    mx_failed = any(
        p.query.endswith(" MX") and p.kind not in ("nxdomain", "nodata") for p in discovery.problems
    )
    if discovery.domain_exists and not discovery.mx and not mx_failed:
        yield make_finding("MX_MISSING", domain=domain)
    for record in discovery.srv:
        if record.not_offered:
            yield make_finding(
                "SRV_NOT_OFFERED",
                service=record.service,
                what=SRV_SERVICES.get(record.service, record.service),
            )
    if not discovery.endpoints and discovery.domain_exists:
        yield make_finding("NO_MAIL_ENDPOINTS", domain=domain)


def _endpoint_findings(
    result: ProbeResult, thresholds: Thresholds, timeout: float, deadline: float
) -> Iterator[Finding]:
    endpoint = result.endpoint
    what = _what(endpoint)
    facts: dict[str, object] = {"what": what, "timeout": timeout}
    found: list[Finding] = []
    outcome = result.outcome
    phase = result.failed_phase.value if result.failed_phase else "the dialogue"
    minor = None if _announced(endpoint) else Severity.INFO

    if outcome is Outcome.UNRESOLVED:
        found.append(make_finding("HOST_UNRESOLVED", endpoint, detail=result.error or "", **facts))
    elif outcome is Outcome.REFUSED:
        found.append(make_finding("PORT_CLOSED", endpoint, severity=minor, **facts))
    elif outcome is Outcome.TIMEOUT:
        found.append(make_finding("PORT_FILTERED", endpoint, severity=minor, **facts))
    elif outcome is Outcome.NO_GREETING:
        found.append(make_finding("NO_GREETING", endpoint, **facts))
    elif outcome is Outcome.STALLED and result.failed_phase is Phase.TLS:
        found.append(make_finding("TLS_HANDSHAKE_TIMEOUT", endpoint, **facts))
    elif outcome is Outcome.STALLED:
        found.append(make_finding("SERVER_STALLED", endpoint, phase=phase, **facts))
    elif outcome is Outcome.CLOSED:
        found.append(make_finding("CONNECTION_CLOSED", endpoint, phase=phase, **facts))
    elif outcome is Outcome.UNAVAILABLE:
        found.append(
            make_finding("SERVICE_UNAVAILABLE", endpoint, reply=result.server_reply or "", **facts)
        )
    elif outcome is Outcome.THROTTLED:
        code = "SMTP_THROTTLED" if endpoint.protocol is Protocol.SMTP else "SERVER_THROTTLED"
        found.append(make_finding(code, endpoint, reply=result.server_reply or "", **facts))
    elif outcome is Outcome.PROTOCOL_ERROR:
        found.append(make_finding("PROTOCOL_ERROR", endpoint, detail=result.error or "", **facts))
    elif outcome is Outcome.TLS_FAILED:
        found.append(
            make_finding("TLS_HANDSHAKE_FAILED", endpoint, detail=result.error or "", **facts)
        )
    elif outcome is Outcome.DEADLINE:
        found.append(
            make_finding("DEADLINE_EXCEEDED", endpoint, phase=phase, deadline=deadline, **facts)
        )
    elif outcome in (Outcome.STARTTLS_MISSING, Outcome.STARTTLS_FAILED):
        code = "STARTTLS_MISSING" if outcome is Outcome.STARTTLS_MISSING else "STARTTLS_FAILED"
        found.append(
            make_finding(
                code,
                endpoint,
                command=STARTTLS_COMMANDS[endpoint.protocol],
                tls_port=IMPLICIT_TLS_PORTS[endpoint.protocol],
                reply=result.server_reply or "",
                **facts,
            )
        )

    if result.plaintext_login_offered and endpoint.security is not Security.TLS:
        found.append(
            make_finding(
                "PLAINTEXT_AUTH_ALLOWED",
                endpoint,
                command=STARTTLS_COMMANDS[endpoint.protocol],
                mechanisms=", ".join(_login_names(result)),
                **facts,
            )
        )

    if result.tls is not None:
        found.extend(_tls_findings(endpoint, result.tls, thresholds))

    if (
        _announced(endpoint)
        and endpoint.sources[0] != "option"
        and outcome not in (Outcome.OK, *INCONCLUSIVE)
    ):
        found.append(
            make_finding(
                "DISCOVERY_CONTRADICTION",
                endpoint,
                source=_source_name(endpoint.sources[0]),
                outcome=outcome.value.replace("_", " "),
                **facts,
            )
        )

    if outcome is Outcome.OK and not any(f.severity.rank >= Severity.WARNING.rank for f in found):
        found.append(make_finding("ENDPOINT_OK", endpoint, **facts))
    yield from found


def _login_names(result: ProbeResult) -> list[str]:
    names = [c.split("=", 1)[1] for c in result.capabilities if c.upper().startswith("AUTH=")]
    if result.endpoint.protocol is Protocol.IMAP and "LOGINDISABLED" not in result.capabilities:
        names.insert(0, "LOGIN")
    if result.endpoint.protocol is Protocol.POP3:
        names = [c for c in result.capabilities if c.upper() in ("USER",)]
        names += [
            m for c in result.capabilities if c.upper().startswith("SASL") for m in c.split()[1:]
        ]
    if result.endpoint.protocol is Protocol.SMTP:
        names = [
            m
            for c in result.capabilities
            if c.upper().startswith("AUTH")
            for m in c.replace("=", " ").split()[1:]
        ]
    return names or ["login"]


def _source_name(source: str) -> str:
    if source.startswith("srv:"):
        return f"SRV record {source[4:]}"
    if source.startswith("autoconfig"):
        return "autoconfig file"
    return source


def _tls_findings(endpoint: Endpoint, facts: TlsFacts, thresholds: Thresholds) -> Iterator[Finding]:
    leaf = facts.leaf
    base: dict[str, object] = {"what": _what(endpoint)}
    if leaf is not None:
        base.update(
            subject=leaf.subject,
            issuer=leaf.issuer,
            not_before=leaf.not_before.date().isoformat(),
            not_after=leaf.not_after.date().isoformat(),
        )
    detail = facts.trust_detail or facts.trust.value.replace("_", " ")
    trust_codes = {
        TrustStatus.EXPIRED: "TLS_CERT_EXPIRED",
        TrustStatus.NOT_YET_VALID: "TLS_CERT_NOT_YET_VALID",
        TrustStatus.SELF_SIGNED: "TLS_CERT_SELF_SIGNED",
        TrustStatus.UNTRUSTED_ROOT: "TLS_CERT_UNTRUSTED",
        TrustStatus.INCOMPLETE_CHAIN: "TLS_CHAIN_INCOMPLETE",
        TrustStatus.INVALID: "TLS_CERT_INVALID",
        TrustStatus.NO_CERTIFICATE: "TLS_CERT_INVALID",
    }
    if facts.trust in trust_codes:
        days_ago = int(-(facts.days_remaining or 0))
        yield make_finding(
            trust_codes[facts.trust], endpoint, detail=detail, days_ago=days_ago, **base
        )
    if not facts.hostname_matches and leaf is not None:
        names = [n for n in leaf.sans] or ([leaf.common_name] if leaf.common_name else [])
        yield make_finding(
            "TLS_HOSTNAME_MISMATCH",
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
                "TLS_CERT_EXPIRING",
                endpoint,
                severity=Severity.CRITICAL,
                days_left=int(days),
                **base,
            )
        elif days <= thresholds.cert_warning_days:
            yield make_finding("TLS_CERT_EXPIRING", endpoint, days_left=int(days), **base)
    if facts.version in OUTDATED_TLS_VERSIONS:
        yield make_finding("TLS_PROTOCOL_OUTDATED", endpoint, version=facts.version, **base)
    weak_bits = facts.cipher_bits is not None and facts.cipher_bits < 128
    if weak_bits or any(marker in facts.cipher.upper() for marker in WEAK_CIPHER_MARKERS):
        yield make_finding(
            "TLS_CIPHER_WEAK", endpoint, cipher=facts.cipher, bits=facts.cipher_bits, **base
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
        working[result.endpoint.protocol] = working.get(result.endpoint.protocol, False) or ok
    groups = {
        Protocol.IMAP: ("IMAP_UNREACHABLE", {"_imap._tcp", "_imaps._tcp"}),
        Protocol.POP3: ("POP3_UNREACHABLE", {"_pop3._tcp", "_pop3s._tcp"}),
        Protocol.SMTP: ("SUBMISSION_UNREACHABLE", {"_submission._tcp", "_submissions._tcp"}),
    }
    for protocol, (code, services) in groups.items():
        if working.get(protocol) or services <= declined:
            continue
        severity = None
        if protocol is Protocol.POP3 and working.get(Protocol.IMAP):
            severity = Severity.INFO
        yield make_finding(code, severity=severity)
