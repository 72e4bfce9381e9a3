"""What the customer typed: one client setting, probed as that client would, and judged.

A setting is written as mail clients label it, ``PROTO:HOST:PORT:SECURITY``
with SECURITY ``none``, ``starttls`` or ``ssl`` (SSL/TLS: encrypted from the
first byte). The probe of a typed setting never sends the password: the
login is judged on the domain's own endpoints, and a wrong setting must not
count against a lockout.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .dns import InvalidDomain, to_ascii
from .finding_codes import FindingCode
from .findings import CATALOGUE, make_finding, render_text
from .model import (
    Diagnosis,
    Discovery,
    Endpoint,
    Finding,
    Outcome,
    ProbeResult,
    Protocol,
    Security,
    Severity,
    SourceKind,
    Thresholds,
    TlsFailure,
    TypedJudgement,
    TypedVerdict,
)
from .protocols.registry import BY_KEY, spec

TYPED_SECURITY = {"none": Security.PLAIN, "starttls": Security.STARTTLS, "ssl": Security.TLS}
SECURITY_WORDS = {v: k for k, v in TYPED_SECURITY.items()}
_ENCRYPTION = {Security.PLAIN: "none", Security.STARTTLS: "STARTTLS", Security.TLS: "SSL/TLS"}
# How a suggested setting reads in a fix; translated as "typed/suggestion".
SUGGESTION = "{protocol}, server {host}, port {port}, {encryption}"
NO_SUGGESTION = "no setting that works was found in this check (see the findings)"


class TypedSettingError(ValueError):
    pass


def parse_typed(text: str) -> Endpoint:
    """``imap:mail.example.org:143:starttls`` as an endpoint (source ``typed``)."""
    parts = text.strip().split(":")
    if len(parts) != 4:
        raise TypedSettingError(
            f"{text!r}: expected PROTO:HOST:PORT:SECURITY, e.g. imap:mail.example.org:993:ssl"
        )
    protocol_text, host, port_text, security_text = (p.strip() for p in parts)
    protocol = BY_KEY.get(protocol_text.lower())
    if protocol is None:
        raise TypedSettingError(f"{text!r}: PROTO must be imap, pop3 or smtp")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise TypedSettingError(f"{text!r}: PORT must be a number from 1 to 65535")
    security = TYPED_SECURITY.get(security_text.lower())
    if security is None:
        raise TypedSettingError(f"{text!r}: SECURITY must be none, starttls or ssl")
    try:
        ascii_host = to_ascii(host)
    except InvalidDomain as exc:
        raise TypedSettingError(f"{text!r}: {exc}") from None
    return Endpoint(protocol, ascii_host, int(port_text), security, (SourceKind.TYPED.source(),))


def setting_json(endpoint: Endpoint) -> dict[str, object]:
    """A setting in the typed vocabulary (``ssl``, ``starttls``, ``none``)."""
    return {
        "protocol": endpoint.protocol.value,
        "host": endpoint.host,
        "port": endpoint.port,
        "security": SECURITY_WORDS[endpoint.security],
    }


def judge(
    typed: Endpoint,
    result: ProbeResult,
    diagnosis: Diagnosis,
    thresholds: Thresholds,
    timeout: float,
) -> TypedVerdict:
    """How ``typed`` fares, in the customer's terms, and what to type instead."""
    own = _endpoint_findings(typed, result, diagnosis, thresholds, timeout)
    suggested = _suggest(typed, diagnosis)
    facts: dict[str, Any] = {
        "what": spec(typed.protocol).name,
        "encryption": _ENCRYPTION[typed.security],
        "suggested": setting_json(suggested) if suggested else None,
        "suggestion": suggestion_text(suggested),
        "command": spec(typed.protocol).starttls_command,
    }
    specific = [
        make_finding(code, typed, **facts) for code in _typed_codes(typed, result, diagnosis)
    ]
    findings = [*specific, *own]
    worst = max((f.severity.rank for f in findings), default=0)
    if worst >= Severity.CRITICAL.rank:
        verdict = TypedJudgement.FAILS
    elif worst >= Severity.WARNING.rank:
        verdict = TypedJudgement.WARNING
    else:
        verdict = TypedJudgement.WORKS
    if verdict is TypedJudgement.WORKS:
        return TypedVerdict(
            typed, verdict, None, (make_finding(FindingCode.TYPED_WORKS, typed, **facts),)
        )
    return TypedVerdict(typed, verdict, suggested, tuple(findings))


def suggestion_text(endpoint: Endpoint | None, template: str = SUGGESTION) -> str:
    if endpoint is None:
        return NO_SUGGESTION
    return render_text(
        template,
        {
            "protocol": spec(endpoint.protocol).name,
            "host": endpoint.host,
            "port": endpoint.port,
            "encryption": _ENCRYPTION[endpoint.security],
        },
    )


def _typed_codes(
    typed: Endpoint, result: ProbeResult, diagnosis: Diagnosis
) -> Iterable[FindingCode]:
    protocol, port = typed.protocol, typed.port
    if protocol is Protocol.SMTP and port == 25:
        yield FindingCode.TYPED_PORT_25
        return
    if typed.security is Security.TLS and (
        result.tls_failure is TlsFailure.PLAINTEXT
        or (port == spec(protocol).starttls_port and result.outcome is Outcome.TLS_FAILED)
    ):
        yield FindingCode.TYPED_SSL_ON_STARTTLS_PORT
    elif typed.security is Security.STARTTLS and port == spec(protocol).tls_port:
        if result.outcome in (Outcome.NO_GREETING, Outcome.PROTOCOL_ERROR, Outcome.CLOSED):
            yield FindingCode.TYPED_STARTTLS_ON_TLS_PORT
    elif typed.security is Security.PLAIN and result.outcome is Outcome.OK:
        yield (
            FindingCode.TYPED_NO_ENCRYPTION_REFUSED
            if result.plaintext_login_offered is False
            else FindingCode.TYPED_NO_ENCRYPTION
        )
    if protocol is Protocol.POP3 and _works(diagnosis, Protocol.IMAP):
        yield FindingCode.TYPED_USE_IMAP


def _works(diagnosis: Diagnosis, protocol: Protocol) -> bool:
    from .settings import best

    return best(diagnosis, protocol) is not None


def _suggest(typed: Endpoint, diagnosis: Diagnosis) -> Endpoint | None:
    """The setting to type instead: same port with the right encryption if that works, else the
    best working endpoint (IMAP instead of POP3, submission instead of port 25)."""
    from .settings import best, usable

    protocol = typed.protocol
    if protocol is Protocol.POP3 and _works(diagnosis, Protocol.IMAP):
        protocol = Protocol.IMAP
    working = [
        r.endpoint
        for r in diagnosis.results
        if r.endpoint.protocol is protocol and usable(r, diagnosis)
    ]
    same_port = [e for e in working if e.port == typed.port and e.host == typed.host]
    if same_port:
        return _bare(same_port[0])
    chosen = best(diagnosis, protocol)
    return _bare(chosen.endpoint) if chosen else None


def _bare(endpoint: Endpoint) -> Endpoint:
    return Endpoint(endpoint.protocol, endpoint.host, endpoint.port, endpoint.security)


def _endpoint_findings(
    typed: Endpoint,
    result: ProbeResult,
    diagnosis: Diagnosis,
    thresholds: Thresholds,
    timeout: float,
) -> list[Finding]:
    """What analysis says about this one endpoint (not about the domain as a whole)."""
    discovery = Discovery(diagnosis.domain, diagnosis.domain_ascii, True, endpoints=(typed,))
    from .analysis import analyse

    findings = analyse(discovery, (result,), thresholds, timeout=timeout)
    # Said in the customer's terms by the TYPED_* codes already.
    redundant = {
        FindingCode.TLS_PORT_SPEAKS_PLAINTEXT,
        FindingCode.ENDPOINT_OK,
        FindingCode.PLAINTEXT_AUTH_ALLOWED,
        FindingCode.PLAINTEXT_AUTH_UNCLEAR,
    }
    return [
        f
        for f in findings
        if f.endpoint == typed and f.code not in redundant and f.code in CATALOGUE
    ]
