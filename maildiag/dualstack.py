"""IPv4 against IPv6 on one endpoint: works over one family, fails over the other (pure).

Mail clients on a network with IPv6 connect to the AAAA address first
(RFC 6724 §10.3). An endpoint that works over IPv4 only therefore fails for
the customers who have IPv6 (more and more mobile and fibre lines) and works
for the rest: the "sometimes it works" ticket. A refused or silent IPv6
connect is retried over IPv4 by clients with Happy Eyeballs (RFC 8305),
after a delay; a connection that is accepted and then fails is not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .finding_codes import FindingCode
from .findings import make_finding
from .model import Finding, Outcome, Phase, ProbeResult, Severity

# Outcomes that say nothing about the service either way.
_INCONCLUSIVE = (Outcome.THROTTLED, Outcome.DEADLINE)
_CODES = {"ipv6": FindingCode.IPV6_FAILS, "ipv4": FindingCode.IPV4_FAILS}


def _fails(outcome: Outcome) -> bool:
    return outcome is not Outcome.OK and outcome not in _INCONCLUSIVE


def family_findings(result: ProbeResult, facts: dict[str, Any]) -> Iterator[Finding]:
    """IPV6_FAILS or IPV4_FAILS when the endpoint works over one family only."""
    other = result.other_family
    if other is None or result.address is None:
        return
    if result.outcome is Outcome.OK and _fails(other.outcome):
        works, fails = result.address, other.address
        outcome, phase, family = other.outcome, other.failed_phase, other.family
    elif _fails(result.outcome) and other.outcome is Outcome.OK:
        works, fails = other.address, result.address
        outcome, phase = result.outcome, result.failed_phase
        family = other.family.other
    else:
        return
    # Refused or silent: Happy Eyeballs clients fall back, after a wait.
    # Accepted and then broken: no client falls back.
    at_connect = phase in (None, Phase.DNS, Phase.CONNECT)
    # The outcome only: the error names the port, and one cause on six ports
    # is one finding group (report.grouping); the error is in ``other_family``.
    failure = outcome.value.replace("_", " ")
    yield make_finding(
        _CODES[family.value],
        result.endpoint,
        severity=Severity.WARNING if at_connect else Severity.CRITICAL,
        works_address=works,
        fails_address=fails,
        failure=failure,
        fails_outcome=outcome.value,
        **facts,
    )
