"""Is this client's address blocked by the server? Judged from finished results (pure).

fail2ban bans an address after a few failed logins (one phone with an old
password is enough) and a firewall rule can do the same; from outside, the
mail service then looks down although it works for everybody else. Three
signs, each about one server address, never one refused port alone:

* every mail port refuses or does not answer, while the same address answers
  on a web port (``maildiag.probes.webports``): the machine is up;
* every mail port accepts the connection and drops it at once;
* a refusal that says so (``421 ... blocked``, ``-ERR [SYS/TEMP] ... banned``).

A refusal that speaks of too many *connections* is a connection limit, not a
ban: that stays SMTP_THROTTLED / SERVER_THROTTLED.

A dual-stack host is judged per address, over both families: the probe of
the other family (``ProbeResult.other_family``) counts as an attempt at its
own address. fail2ban bans each client address on its own, so a ban often
holds for one family only; when the same endpoints work over the other
family, the finding names the family and address that is blocked and the
one that works (``BLOCK_FAMILIES``), instead of "this client" as a whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from msgspec.structs import replace

from .finding_codes import FindingCode
from .findings import BLOCK_EVIDENCE, BLOCK_FAMILIES, BlockEvidence, make_finding, render_text
from .model import (
    AuthStatus,
    Finding,
    IpFamily,
    Outcome,
    Phase,
    PortCheck,
    PortState,
    ProbeResult,
)

CODE = FindingCode.CLIENT_ADDRESS_BLOCKED

# Words of a refusal that blames the client's address (Postfix/Exim DNSBL
# rejections "Client host [198.51.100.7] blocked using ...", fail2ban-style
# "your IP has been banned", "too many failed logins").
_BLAMES_ADDRESS = re.compile(
    r"\b(?:blocked|blocklisted|blacklisted|banned|denylisted|access denied"
    r"|too many (?:failed |invalid |bad |unsuccessful )?(?:login|logon|auth\w*)"
    r"(?: attempts| failures| errors)?)\b",
    re.IGNORECASE,
)
# Outcomes of a connect that says nothing about the service (it never got
# to answer); a ban by REJECT refuses, one by DROP times out.
_NOT_CONNECTED = (Outcome.REFUSED, Outcome.TIMEOUT)
# Where a connection dropped right after it was accepted: at the greeting or
# the first command after it, before any login.
_DROPPED_PHASES = (Phase.GREETING, Phase.CAPABILITIES, Phase.CAPABILITIES_TLS)
# The findings that a block explains, on the endpoints it concerns.
SYMPTOMS = frozenset(
    {
        FindingCode.PORT_CLOSED,
        FindingCode.PORT_FILTERED,
        FindingCode.CONNECTION_CLOSED,
        FindingCode.DISCOVERY_CONTRADICTION,
        FindingCode.SERVICE_UNAVAILABLE,
        FindingCode.SMTP_THROTTLED,
        FindingCode.SERVER_THROTTLED,
        FindingCode.AUTH_TEMPORARY_FAILURE,
        FindingCode.IPV4_FAILS,
        FindingCode.IPV6_FAILS,
        FindingCode.AUTH_RATE_LIMITED,  # "too many failed logins" (maildiag.login_replies)
    }
)


def blames_address(reply: str | None) -> bool:
    """The server's refusal says that the client's address is blocked."""
    return bool(reply) and _BLAMES_ADDRESS.search(reply or "") is not None


def blocked_findings(
    results: Iterable[ProbeResult], port_checks: Iterable[PortCheck] = ()
) -> list[Finding]:
    """One CLIENT_ADDRESS_BLOCKED per server address that shows a sign of a block."""
    pairs = [_both_families(result) for result in results]
    by_address: dict[str, list[ProbeResult]] = {}
    for pair in pairs:
        for attempt in pair:
            if attempt.address is not None:
                by_address.setdefault(attempt.address, []).append(attempt)
    open_ports: dict[str, list[PortCheck]] = {}
    for check in port_checks:
        if check.state is PortState.OPEN:
            open_ports.setdefault(check.address, []).append(check)
    found = []
    for address, probed in by_address.items():
        finding = _judge(address, probed, open_ports.get(address, []), pairs)
        if finding is not None:
            found.append(finding)
    return found


def _both_families(result: ProbeResult) -> tuple[ProbeResult, ...]:
    """The endpoint's attempt at its main address, and the one over its other family."""
    other = result.other_family
    if other is None:
        return (result,)
    over_other = ProbeResult(
        result.endpoint,
        other.outcome,
        failed_phase=other.failed_phase,
        error=other.error,
        address=other.address,
        local_address=other.local_address,
    )
    return (result, over_other)


def _working_over_the_other_family(
    address: str, pairs: Sequence[tuple[ProbeResult, ...]]
) -> list[ProbeResult]:
    """The attempts over the other family that worked, of the endpoints tried at ``address``."""
    family = IpFamily.of(address)
    return [
        attempt
        for pair in pairs
        if any(a.address == address for a in pair)
        for attempt in pair
        if attempt.address is not None
        and IpFamily.of(attempt.address) is not family
        and attempt.outcome is Outcome.OK
    ]


def _judge(
    address: str,
    probed: Sequence[ProbeResult],
    open_ports: Sequence[PortCheck],
    pairs: Sequence[tuple[ProbeResult, ...]] = (),
) -> Finding | None:
    working = _working_over_the_other_family(address, pairs)
    several_ports = len({r.endpoint.port for r in probed}) >= 2
    if several_ports and open_ports and all(r.outcome in _NOT_CONNECTED for r in probed):
        web = open_ports[0]
        return _finding(
            BlockEvidence.WEB_ANSWERS,
            address,
            probed,
            web.local_address,
            working,
            web_port=web.port,
            reply="",
        )
    if several_ports and all(_dropped(r) for r in probed):
        return _finding(
            BlockEvidence.DROPPED,
            address,
            probed,
            _local(probed),
            working,
            web_port="",
            reply="",
        )
    blaming = [r for r in probed if blames_address(_refusal(r))]
    if blaming:
        first = blaming[0]
        return _finding(
            BlockEvidence.REPLY,
            address,
            blaming,
            _local(blaming),
            working,
            web_port="",
            reply=_refusal(first) or "",
        )
    return None


def _dropped(result: ProbeResult) -> bool:
    return result.outcome is Outcome.CLOSED and result.failed_phase in _DROPPED_PHASES


def _refusal(result: ProbeResult) -> str | None:
    """The server's refusal of the session or of the login, if it refused."""
    if result.outcome in (Outcome.THROTTLED, Outcome.UNAVAILABLE):
        return result.server_reply
    auth = result.auth
    if auth is not None and auth.status == AuthStatus.TEMPORARY_FAILURE:
        return auth.detail
    return None


def _local(results: Sequence[ProbeResult]) -> str | None:
    return next((r.local_address for r in results if r.local_address), None)


def _finding(
    evidence: BlockEvidence,
    address: str,
    results: Sequence[ProbeResult],
    local_address: str | None,
    working: Sequence[ProbeResult] = (),
    **facts: Any,
) -> Finding:
    ports = sorted({r.endpoint.port for r in results})
    facts.update(
        evidence=evidence,
        hosts=", ".join(dict.fromkeys(r.endpoint.host for r in results)),
        server_address=address,
        local_address=local_address or "?",
        ports=", ".join(str(p) for p in ports),
        first_port=ports[0],
        endpoints=[r.endpoint.key for r in results],
        blocked_family=IpFamily.of(address).value,
    )
    families = ""
    if working:
        first = working[0]
        assert first.address is not None
        facts.update(
            blocked_family_name=IpFamily.of(address).label,
            working_family=IpFamily.of(first.address).label,
            working_address=first.address,
            working_local_address=first.local_address or "?",
            working_ports=", ".join(str(p) for p in sorted({r.endpoint.port for r in working})),
        )
        families = render_text(BLOCK_FAMILIES, facts)
    return make_finding(
        CODE,
        seen=render_text(BLOCK_EVIDENCE[evidence], facts),
        families=families,
        **facts,
    )


def explain_symptoms(findings: Sequence[Finding], blocked: Sequence[Finding]) -> list[Finding]:
    """``findings`` with the symptoms of each block marked as explained by it."""
    explained = {key for b in blocked for key in _endpoint_keys(b)}
    return [
        replace(f, explained_by=CODE)
        if f.code in SYMPTOMS and f.endpoint is not None and f.endpoint.key in explained
        else f
        for f in findings
    ]


def _endpoint_keys(finding: Finding) -> list[str]:
    keys = finding.details.get("endpoints")
    return [str(k) for k in keys] if isinstance(keys, list) else []
