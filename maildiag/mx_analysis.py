"""Findings about where incoming mail goes: the MX records and the inbound check (pure).

Part of ``maildiag.analysis``, kept apart because it judges the path of
mail *to* the mailbox, while the rest judges the client endpoints.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from .finding_codes import FindingCode
from .findings import make_finding
from .model import (
    Discovery,
    Finding,
    InboundResult,
    InboundStep,
    InboundVerdict,
    MxAttempt,
    MxHost,
    MxOutcome,
    ProbeResult,
    Severity,
)
from .protocols.registry import INCOMING
from .providers import inside, is_ip_literal, provider_domain, same_provider

# Only these protocols hold the mailbox (submission servers are often elsewhere).


def mx_findings(
    discovery: Discovery, results: Iterable[ProbeResult], inbound: InboundResult | None = None
) -> Iterator[Finding]:
    """Null MX, MX hosts without an address or behind a CNAME, MX at another provider,
    and what the MX servers said about the address (``inbound``).

    With an address (--user, --address) a null MX certainly concerns a
    mailbox that should receive mail: critical.
    """
    address_known = inbound is not None
    domain = discovery.domain
    if any(m.null for m in discovery.mx):
        yield make_finding(
            FindingCode.MX_NULL,
            domain=domain,
            severity=Severity.CRITICAL if address_known else None,
        )
    any_resolves = any(h.resolves for h in discovery.mx_hosts)
    for host in discovery.mx_hosts:
        preference = _preference(discovery, host.host)
        if host.error_kind is not None and host.error_kind.is_answer:
            yield make_finding(
                FindingCode.MX_HOST_UNRESOLVED,
                severity=Severity.WARNING if any_resolves else None,
                domain=domain,
                mx_host=host.host,
                detail=host.error or "",
                preference=preference,
            )
        if host.cname:
            yield make_finding(
                FindingCode.MX_CNAME,
                domain=domain,
                mx_host=host.host,
                cname=host.cname,
                preference=preference,
            )
    other = _other_provider(discovery, tuple(results))
    if other is not None:
        yield other
    if inbound is not None:
        yield from _inbound_findings(discovery, inbound)


_VERDICT_CODES = {
    InboundVerdict.ACCEPTED: FindingCode.INBOUND_ACCEPTED,
    InboundVerdict.UNKNOWN_USER: FindingCode.INBOUND_UNKNOWN_USER,
    InboundVerdict.MAILBOX_FULL: FindingCode.INBOUND_MAILBOX_FULL,
    InboundVerdict.RELAY_DENIED: FindingCode.INBOUND_RELAY_DENIED,
    InboundVerdict.GREYLISTED: FindingCode.INBOUND_GREYLISTED,
    InboundVerdict.BLOCKED: FindingCode.INBOUND_BLOCKED,
    InboundVerdict.REJECTED: FindingCode.INBOUND_REJECTED,
    InboundVerdict.DEFERRED: FindingCode.INBOUND_DEFERRED,
}
# Every finding of the inbound check: the decisive MX's verdict, or what kept
# every MX from giving one (the renderers file them under the MX hosts).
INBOUND_CODES = frozenset(
    {
        *_VERDICT_CODES.values(),
        FindingCode.INBOUND_NULL_SENDER_REFUSED,
        FindingCode.INBOUND_NOT_FINISHED,
        FindingCode.INBOUND_INCONCLUSIVE,
        FindingCode.INBOUND_MX_UNREACHABLE,
    }
)
# Connections that got nothing back: what a network blocking port 25 looks like.
_SILENT = (MxOutcome.TIMEOUT, MxOutcome.NO_BANNER)


def inbound_findings_by_mx(
    inbound: InboundResult, findings: Iterable[Finding]
) -> dict[int, list[Finding]]:
    """The inbound check's findings by the MX they are about (index in ``attempts``).

    The verdict is about the decisive MX; a finding that no MX gave one
    (inconclusive, unreachable, deadline) is about every MX that was tried.
    """
    inbound_only = [f for f in findings if f.code in INBOUND_CODES]
    decisive = inbound.decisive
    by_mx: dict[int, list[Finding]] = {}
    for index, attempt in enumerate(inbound.attempts):
        if attempt is decisive or (
            decisive is None and attempt.outcome is not MxOutcome.UNRESOLVED
        ):
            by_mx[index] = inbound_only
    return by_mx


def _inbound_findings(discovery: Discovery, inbound: InboundResult) -> Iterator[Finding]:
    """One finding: the verdict of the MX a sender would get its answer from.

    Senders try the MX hosts in preference order and stop at the first that
    answers, so the first verdict decides; MX hosts that cannot be reached
    only matter when none answers. A null MX or an MX host without an
    address has its own finding already.
    """
    facts: dict[str, Any] = {"domain": discovery.domain, "address": inbound.address}
    decisive = inbound.decisive
    if decisive is not None:
        assert decisive.verdict is not None
        code = _VERDICT_CODES[decisive.verdict]
        if decisive.step is InboundStep.MAIL and decisive.verdict in (
            InboundVerdict.REJECTED,
            InboundVerdict.DEFERRED,
        ):
            code = FindingCode.INBOUND_NULL_SENDER_REFUSED
        yield make_finding(
            code,
            mx_host=decisive.host,
            mx_address=decisive.address or "",
            reply=decisive.reply or "",
            step=decisive.step.value,
            implicit_mx=decisive.implicit,
            **facts,
        )
        return
    tried = [a for a in inbound.attempts if a.outcome is not MxOutcome.UNRESOLVED]
    hosts = ", ".join(a.host for a in tried)
    if inbound.unfinished:
        yield make_finding(FindingCode.INBOUND_NOT_FINISHED, mx_hosts=hosts, **facts)
    elif tried and all(a.outcome in _SILENT for a in tried):
        yield make_finding(FindingCode.INBOUND_INCONCLUSIVE, mx_hosts=hosts, **facts)
    elif tried:
        yield make_finding(
            FindingCode.INBOUND_MX_UNREACHABLE,
            failures="; ".join(_failure(a) for a in tried),
            mx_hosts=hosts,
            **facts,
        )


def _failure(attempt: MxAttempt) -> str:
    where = f"{attempt.host} ({attempt.address})" if attempt.address else attempt.host
    return f"{where}: {attempt.error or attempt.outcome.value.replace('_', ' ')}"


def _preference(discovery: Discovery, host: str) -> int:
    return min((m.preference for m in discovery.mx if m.host == host), default=10)


def _other_provider(discovery: Discovery, results: tuple[ProbeResult, ...]) -> Finding | None:
    """MX_OTHER_PROVIDER when the primary MX and the mailbox servers share nothing.

    Only names outside the customer's own domain say which provider runs a
    server (mail.kunde.example may point anywhere), and an address in common
    says it is the same machine whatever the names. Backup MX hosts (higher
    preference) are often a separate service and are not compared.
    """
    domain = discovery.domain_ascii
    usable = [m for m in discovery.mx if not m.null]
    if not usable:
        return None
    best = min(m.preference for m in usable)
    primary = [m.host for m in usable if m.preference == best]
    hosts_by_name = {h.host: h for h in discovery.mx_hosts}
    mailbox = [r for r in results if r.endpoint.protocol in INCOMING and r.reachable]
    mailbox_hosts = [
        r.endpoint.host
        for r in mailbox
        if not is_ip_literal(r.endpoint.host) and not inside(r.endpoint.host, domain)
    ]
    primary_named = [h for h in primary if not is_ip_literal(h) and not inside(h, domain)]
    if not mailbox_hosts or not primary_named or len(primary_named) < len(primary):
        return None
    mailbox_addresses = {r.address for r in mailbox if r.address}
    for host in primary:
        record = hosts_by_name.get(host, MxHost(host))
        if mailbox_addresses & set(record.addresses):
            return None
        if any(same_provider(host, m) for m in mailbox_hosts):
            return None
        if record.cname and any(same_provider(record.cname, m) for m in mailbox_hosts):
            return None
    shown = list(dict.fromkeys(mailbox_hosts))
    return make_finding(
        FindingCode.MX_OTHER_PROVIDER,
        domain=discovery.domain,
        mx_host=primary[0],
        mx_provider=provider_domain(primary[0]),
        mailbox_hosts=", ".join(shown),
        mailbox_provider=", ".join(dict.fromkeys(provider_domain(h) for h in shown)),
    )
