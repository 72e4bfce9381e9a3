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
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from .finding_codes import FindingCode
from .findings import BLOCK_EVIDENCE, BlockEvidence, make_finding, render_text
from .model import (
    AuthStatus,
    Finding,
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
    by_address: dict[str, list[ProbeResult]] = {}
    for result in results:
        if result.address is not None:
            by_address.setdefault(result.address, []).append(result)
    open_ports: dict[str, list[PortCheck]] = {}
    for check in port_checks:
        if check.state is PortState.OPEN:
            open_ports.setdefault(check.address, []).append(check)
    found = []
    for address, probed in by_address.items():
        finding = _judge(address, probed, open_ports.get(address, []))
        if finding is not None:
            found.append(finding)
    return found


def _judge(
    address: str, probed: Sequence[ProbeResult], open_ports: Sequence[PortCheck]
) -> Finding | None:
    several_ports = len({r.endpoint.port for r in probed}) >= 2
    if several_ports and open_ports and all(r.outcome in _NOT_CONNECTED for r in probed):
        web = open_ports[0]
        return _finding(
            BlockEvidence.WEB_ANSWERS,
            address,
            probed,
            web.local_address,
            web_port=web.port,
            reply="",
        )
    if several_ports and all(_dropped(r) for r in probed):
        return _finding(
            BlockEvidence.DROPPED, address, probed, _local(probed), web_port="", reply=""
        )
    blaming = [r for r in probed if blames_address(_refusal(r))]
    if blaming:
        first = blaming[0]
        return _finding(
            BlockEvidence.REPLY,
            address,
            blaming,
            _local(blaming),
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
    )
    return make_finding(CODE, seen=render_text(BLOCK_EVIDENCE[evidence], facts), **facts)


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
