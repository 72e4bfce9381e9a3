"""One cause, one entry: findings that share a cause, grouped for the reader.

The same expired certificate on six ports of one host is one problem with
six symptoms; the text report prints it once and lists the ports. Findings
are grouped by code, severity and host, and certificate findings also by the
certificate itself, so two different certificates on one host stay apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from msgspec import Struct

from ..finding_codes import FindingCode
from ..model import Diagnosis, Endpoint, Finding, Security, Severity
from ..protocols.registry import ORDER

# Findings that follow from others (no IMAP server works *because* its ports
# fail; a login is skipped *because* the certificate failed): in the verdict
# only when nothing else explains the status.
CONSEQUENCES = frozenset(
    {
        FindingCode.IMAP_UNREACHABLE,
        FindingCode.POP3_UNREACHABLE,
        FindingCode.SUBMISSION_UNREACHABLE,
        FindingCode.AUTH_SKIPPED_LOCKOUT,
        FindingCode.AUTH_SKIPPED_UNTRUSTED,
        FindingCode.AUTH_SKIPPED_FOREIGN_HOST,
        FindingCode.AUTH_SKIPPED_PLAINTEXT,
    }
)


class FindingGroup(Struct, frozen=True):
    findings: tuple[Finding, ...]  # the first one speaks for the group

    @property
    def first(self) -> Finding:
        return self.findings[0]

    @property
    def code(self) -> FindingCode:
        return self.first.code

    @property
    def severity(self) -> Severity:
        return self.first.severity

    @property
    def explained_by(self) -> FindingCode | None:
        """The code of the finding that explains every member of the group, if one does."""
        causes = {f.explained_by for f in self.findings}
        return causes.pop() if len(causes) == 1 else None

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(f.endpoint for f in self.findings if f.endpoint is not None)


# Findings about an endpoint's certificate or handshake: the same certificate
# on several endpoints is one cause.
_CERTIFICATE_CODES = frozenset(
    {
        FindingCode.TLS_HANDSHAKE_FAILED,
        FindingCode.TLS_HANDSHAKE_TIMEOUT,
        FindingCode.TLS_PORT_SPEAKS_PLAINTEXT,
        FindingCode.TLS_HOSTNAME_MISMATCH,
        FindingCode.TLS_CERT_EXPIRED,
        FindingCode.TLS_CERT_EXPIRING,
        FindingCode.TLS_CERT_NOT_YET_VALID,
        FindingCode.TLS_CERT_SELF_SIGNED,
        FindingCode.TLS_CERT_UNTRUSTED,
        FindingCode.TLS_CHAIN_INCOMPLETE,
        FindingCode.TLS_CERT_INVALID,
        FindingCode.TLS_CERT_NO_SAN,
        FindingCode.TLS_KEY_WEAK,
        FindingCode.TLS_SIGNATURE_WEAK,
        FindingCode.TLS_PROTOCOL_OUTDATED,
        FindingCode.TLS_CIPHER_WEAK,
    }
)


def _certificate(diagnosis: Diagnosis, finding: Finding) -> str | None:
    if finding.code not in _CERTIFICATE_CODES or finding.endpoint is None:
        return None
    for result in diagnosis.results:
        if result.endpoint == finding.endpoint and result.tls and result.tls.leaf:
            return result.tls.leaf.fingerprint_sha256
    return None


# Facts that only name the protocol or port (STARTTLS or STLS, 993 or 995):
# findings that differ in nothing else share a cause. Any other fact (a
# server's reply, a quota) keeps findings apart.
_PROTOCOL_FACTS = frozenset(
    {"what", "command", "tls_port", "starttls_port", "standard_port", "plain_name", "tls_name"}
)


def _case_facts(finding: Finding) -> str:
    facts = {k: v for k, v in finding.details.items() if k not in _PROTOCOL_FACTS}
    return json.dumps(facts, sort_keys=True, default=str)


def group_findings(diagnosis: Diagnosis, findings: Iterable[Finding]) -> tuple[FindingGroup, ...]:
    """``findings`` grouped by cause, in the order of each group's first finding."""
    groups: dict[object, list[Finding]] = {}
    for index, finding in enumerate(findings):
        if finding.endpoint is None:
            key: object = index  # a finding about the domain stands alone
        else:
            key = (
                finding.code,
                finding.severity,
                finding.endpoint.host,
                _certificate(diagnosis, finding),
                _case_facts(finding),
            )
        groups.setdefault(key, []).append(finding)
    return tuple(FindingGroup(tuple(members)) for members in groups.values())


def root_causes(groups: Sequence[FindingGroup]) -> tuple[FindingGroup, ...]:
    """The groups that explain a WARNING or CRITICAL status, worst first.

    Left out are consequences: codes that always follow from others
    (``CONSEQUENCES``) and findings that another finding explains (a refused
    port of a server that blocks this client, see ``maildiag.blocking``).
    """
    serious = [g for g in groups if g.severity.rank >= Severity.WARNING.rank]
    causes = [
        g for g in serious if g.code not in CONSEQUENCES and g.explained_by is None
    ] or serious
    return tuple(sorted(causes, key=lambda g: -g.severity.rank))


def affected(endpoints: Sequence[Endpoint]) -> str:
    """``IMAP 143, 993 · POP3 110, 995 · SMTP 587, 465`` (one host is given elsewhere)."""
    parts = []
    for protocol in ORDER:
        # STARTTLS first, as providers list them ("Port 143 / SSL: 993").
        mine = sorted(
            (e for e in endpoints if e.protocol is protocol),
            key=lambda e: (e.security is not Security.STARTTLS, e.port),
        )
        ports = list(dict.fromkeys(e.port for e in mine))
        if ports:
            # No-break spaces: one protocol's ports stay on one line when wrapped.
            numbers = ",\u00a0".join(str(p) for p in ports)
            parts.append(f"{protocol.value.upper()}\u00a0{numbers}")
    return " · ".join(parts)
