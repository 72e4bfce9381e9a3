"""The diagnosis as JSON: the contract for scripts and monitoring.

The shape is described by ``maildiag/schema/report.schema.json``; bump
``SCHEMA_VERSION`` on any incompatible change.

Version 2 (issue #11): ``endpoints[].ok`` is true only when no warning or
critical finding concerns the endpoint (it was true for any completed
dialogue, an expired certificate included); a domain that does not exist is
``CRITICAL``/2 instead of ``UNKNOWN``/3; the schema closes every object.

Version 3 (issue #8): ``lang`` (the language of every text a person reads;
codes and keys never change with it) and ``causes`` (the findings grouped by
cause, as the text report prints them) are added, both always present.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import __version__, i18n
from ..model import (
    CertificateInfo,
    Diagnosis,
    Discovery,
    Endpoint,
    Finding,
    InboundResult,
    Outcome,
    PortCheck,
    ProbeResult,
    Severity,
    TlsFacts,
    TypedVerdict,
)
from .grouping import group_findings

if TYPE_CHECKING:
    from .formats import RenderOptions

SCHEMA_VERSION = 3


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def endpoint_ref(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "id": endpoint.key,
        "protocol": endpoint.protocol.value,
        "host": endpoint.host,
        "port": endpoint.port,
        "security": endpoint.security.value,
    }


def certificate_json(cert: CertificateInfo) -> dict[str, Any]:
    return {
        "subject": cert.subject,
        "issuer": cert.issuer,
        "common_name": cert.common_name,
        "sans": list(cert.sans),
        "not_before": cert.not_before.isoformat(),
        "not_after": cert.not_after.isoformat(),
        "serial": cert.serial,
        "fingerprint_sha256": cert.fingerprint_sha256,
        "self_issued": cert.self_issued,
        "key": cert.key_description,
        "key_type": cert.key_type,
        "key_bits": cert.key_bits,
        "signature_algorithm": cert.signature_algorithm,
        "signature_hash": cert.signature_hash,
        "ca_issuers": list(cert.ca_issuers),
    }


def tls_json(facts: TlsFacts) -> dict[str, Any]:
    return {
        "version": facts.version,
        "cipher": facts.cipher,
        "cipher_bits": facts.cipher_bits,
        "trust": facts.trust.value,
        "trust_detail": facts.trust_detail,
        "hostname": facts.hostname,
        "hostname_matches": facts.hostname_matches,
        "days_remaining": None if facts.days_remaining is None else round(facts.days_remaining, 3),
        "handshake_s": _seconds(facts.handshake_seconds),
        "certificate": certificate_json(facts.leaf) if facts.leaf else None,
        "chain": [certificate_json(c) for c in facts.chain],
    }


def endpoint_ok(result: ProbeResult, findings: Sequence[Finding]) -> bool:
    """What a user means by "this endpoint is ok": it answered, and no warning or
    critical finding concerns it (a completed dialogue with an expired
    certificate is not ok)."""
    return result.outcome is Outcome.OK and not any(
        f.endpoint == result.endpoint and f.severity.rank >= Severity.WARNING.rank for f in findings
    )


def result_json(result: ProbeResult, findings: Sequence[Finding] = ()) -> dict[str, Any]:
    data = endpoint_ref(result.endpoint)
    data.update(
        sources=list(result.endpoint.sources),
        outcome=result.outcome.value,
        ok=endpoint_ok(result, findings),
        failed_phase=result.failed_phase.value if result.failed_phase else None,
        error=result.error,
        address=result.address,
        local_address=result.local_address,
        timings={phase: _seconds(seconds) for phase, seconds in result.timings.items()},
        total_s=_seconds(result.total_seconds),
        greeting=result.greeting,
        server_reply=result.server_reply,
        capabilities=list(result.capabilities),
        capabilities_tls=list(result.capabilities_tls),
        starttls_offered=result.starttls_offered,
        plaintext_login_offered=result.plaintext_login_offered,
        tls=tls_json(result.tls) if result.tls else None,
    )
    if result.shared:
        data["shared"] = True
    if result.other_family is not None:
        other = result.other_family
        data["other_family"] = {
            "family": other.family.value,
            "address": other.address,
            "outcome": other.outcome.value,
            "failed_phase": other.failed_phase.value if other.failed_phase else None,
            "error": other.error,
            "local_address": other.local_address,
            "total_s": _seconds(other.seconds),
        }
    if result.auth is not None:
        data["auth"] = {
            "status": result.auth.status,
            "mechanism": result.auth.mechanism,
            "detail": result.auth.detail,
            "seconds": _seconds(result.auth.seconds),
            "skipped_because": result.auth.skipped_because,
            "cause": result.auth.cause,
            "alerts": list(result.auth.alerts),
            "hint": result.auth.hint,
        }
    if result.mailbox is not None:
        box = result.mailbox
        data["mailbox"] = {
            "quota_supported": box.quota_supported,
            "quota_root": box.quota_root,
            "quota": [
                {
                    "resource": q.name,
                    "usage": q.usage,
                    "limit": q.limit,
                    "ratio": None if q.ratio is None else round(q.ratio, 4),
                }
                for q in box.quota
            ],
            "inbox_messages": box.inbox_messages,
            "inbox_size_bytes": box.inbox_size_bytes,
        }
        if box.folder_listing is not None:
            data["mailbox"].update(
                folder_listing=box.folder_listing.value,
                folders=[
                    {
                        "name": f.name,
                        "special_use": list(f.special_use),
                        "messages": f.messages,
                        "size_bytes": f.size_bytes,
                    }
                    for f in box.folders
                ],
                idle=box.idle,
            )
    if result.send is not None:
        send = result.send
        data["send"] = {
            "status": send.status,
            "sender": send.sender,
            "size_limit": send.size_limit,
            "mail_reply": send.mail_reply,
            "rcpt_reply": send.rcpt_reply,
            "detail": send.detail,
        }
    return data


def _plain(value: object) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def finding_json(finding: Finding) -> dict[str, Any]:
    data = {
        "code": finding.code,
        "severity": finding.severity.value,
        "title": finding.title,
        "endpoint": endpoint_ref(finding.endpoint) if finding.endpoint else None,
        "explanation": finding.explanation,
        "fix": finding.fix,
        "details": _plain(finding.details),
    }
    if finding.explained_by is not None:
        data["explained_by"] = finding.explained_by
    return data


def port_check_json(check: PortCheck) -> dict[str, Any]:
    return {
        "address": check.address,
        "port": check.port,
        "state": check.state.value,
        "local_address": check.local_address,
        "seconds": _seconds(check.seconds),
    }


def discovery_json(discovery: Discovery) -> dict[str, Any]:
    return {
        "domain_exists": discovery.domain_exists,
        "mx": [{"preference": m.preference, "host": m.host} for m in discovery.mx],
        "mx_hosts": [
            {
                "host": h.host,
                "addresses": list(h.addresses),
                "cname": h.cname,
                "error_kind": h.error_kind,
                "error": h.error,
            }
            for h in discovery.mx_hosts
        ],
        "srv": [
            {
                "service": s.service,
                "priority": s.priority,
                "weight": s.weight,
                "port": s.port,
                "target": s.target,
                "not_offered": s.not_offered,
            }
            for s in discovery.srv
        ],
        "autoconfig": [
            {
                "url": a.url,
                "final_url": a.final_url,
                "error": a.error,
                "servers": [
                    {
                        "protocol": s.protocol.value,
                        "host": s.host,
                        "port": s.port,
                        "security": s.security.value,
                    }
                    for s in a.servers
                ],
            }
            for a in discovery.autoconfig
        ],
        "foreign_hosts": list(discovery.foreign_hosts),
        "problems": [
            {"query": p.query, "kind": p.kind, "detail": p.detail} for p in discovery.problems
        ],
        "duration_s": _seconds(discovery.seconds),
    }


def causes_json(diagnosis: Diagnosis, findings: Sequence[Finding]) -> list[dict[str, Any]]:
    """The findings grouped by cause, as the text report prints them (indexes into findings)."""
    index = {id(finding): n for n, finding in enumerate(findings)}
    causes = []
    for group in group_findings(diagnosis, findings):
        cause: dict[str, Any] = {
            "code": group.code,
            "severity": group.severity.value,
            "title": group.first.title,
            "endpoints": [endpoint_ref(e) for e in group.endpoints],
            "findings": [index[id(f)] for f in group.findings],
        }
        if group.explained_by is not None:
            cause["explained_by"] = group.explained_by
        causes.append(cause)
    return causes


def typed_json(verdict: TypedVerdict, lang: str = "en") -> dict[str, Any]:
    from ..typed import setting_json

    return {
        "setting": setting_json(verdict.setting),
        "suggested": setting_json(verdict.suggested) if verdict.suggested else None,
        "verdict": verdict.verdict,
        "findings": [finding_json(i18n.localise(f, lang)) for f in verdict.findings],
    }


def inbound_json(inbound: InboundResult) -> dict[str, Any]:
    decisive = inbound.decisive
    return {
        "address": inbound.address,
        "verdict": decisive.verdict.value if decisive and decisive.verdict else None,
        "mx": decisive.host if decisive else None,
        "unfinished": inbound.unfinished,
        "attempts": [
            {
                "preference": a.preference,
                "host": a.host,
                "implicit": a.implicit,
                "address": a.address,
                "outcome": a.outcome.value,
                "step": a.step.value,
                "verdict": a.verdict.value if a.verdict else None,
                "reply": a.reply,
                "error": a.error,
                "banner": a.banner,
                "starttls_offered": a.starttls_offered,
                "tls": tls_json(a.tls) if a.tls else None,
                "tls_error": a.tls_error,
                "timings": {step: _seconds(seconds) for step, seconds in a.timings.items()},
            }
            for a in inbound.attempts
        ],
    }


def diagnosis_json(diagnosis: Diagnosis, lang: str = "en") -> dict[str, Any]:
    counts = {severity.value: 0 for severity in Severity}
    for finding in diagnosis.findings:
        counts[finding.severity.value] += 1
    findings = [i18n.localise(f, lang) for f in diagnosis.findings]
    return {
        "schema_version": SCHEMA_VERSION,
        "lang": lang,
        "tool": {"name": "maildiag", "version": __version__},
        "domain": diagnosis.domain,
        "domain_ascii": diagnosis.domain_ascii,
        "user": diagnosis.user,
        "started_at": diagnosis.started_at.isoformat(),
        "duration_s": _seconds(diagnosis.seconds),
        "status": diagnosis.status.name,
        "exit_code": int(diagnosis.status),
        "summary": counts,
        "discovery": discovery_json(diagnosis.discovery),
        "endpoints": [result_json(r, diagnosis.findings) for r in diagnosis.results],
        "findings": [finding_json(f) for f in findings],
        "causes": causes_json(diagnosis, findings),
        "port_checks": [port_check_json(c) for c in diagnosis.port_checks],
        "typed": [typed_json(v, lang) for v in diagnosis.typed],
        "sync": None
        if diagnosis.sync is None
        else {
            "delivery_latency_s": _seconds(diagnosis.sync.delivery_latency_s),
            "delivery_method": diagnosis.sync.delivery_method,
            "flag_sync_latency_s": _seconds(diagnosis.sync.flag_sync_latency_s),
            "flag_sync_method": diagnosis.sync.flag_sync_method,
            "cleaned_up": diagnosis.sync.cleaned_up,
            "error": diagnosis.sync.error,
        },
        "inbound": None if diagnosis.inbound is None else inbound_json(diagnosis.inbound),
    }


def render(diagnosis: Diagnosis, lang: str = "en") -> str:
    return json.dumps(diagnosis_json(diagnosis, lang), indent=2, ensure_ascii=False) + "\n"


def render_report(diagnosis: Diagnosis, options: RenderOptions) -> str:
    return render(diagnosis, options.lang)


def render_bad_request(domain: str, message: str, kind: str, options: RenderOptions) -> str:
    """The report's shape with status UNKNOWN and the reason: ``| jq`` keeps working."""
    from ..batch import error_json

    document = error_json(domain, message, kind, options.lang)
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
