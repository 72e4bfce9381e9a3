"""The diagnosis for people: one table row per endpoint, then the findings.

Colour only when writing to a terminal and ``NO_COLOR`` is not set
(https://no-color.org); the caller decides and passes ``colour``.
"""

from __future__ import annotations

import textwrap

from tabulate import tabulate

from ..model import AuthStatus, Diagnosis, Finding, Outcome, ProbeResult, Severity, Status

_COLOURS = {
    Severity.OK: "32",
    Severity.INFO: "36",
    Severity.WARNING: "33",
    Severity.CRITICAL: "31",
}
_STATUS_SEVERITY = {
    Status.OK: Severity.OK,
    Status.WARNING: Severity.WARNING,
    Status.CRITICAL: Severity.CRITICAL,
    Status.UNKNOWN: Severity.WARNING,
}
WIDTH = 100


def _paint(text: str, severity: Severity, colour: bool) -> str:
    return f"\033[{_COLOURS[severity]}m{text}\033[0m" if colour else text


def _latency(result: ProbeResult) -> str:
    return f"{result.total_seconds * 1000:.0f} ms" if result.timings else "-"


def _expiry(result: ProbeResult) -> str:
    tls = result.tls
    if tls is None or tls.leaf is None:
        return "-"
    days = tls.days_remaining
    date = tls.leaf.not_after.date().isoformat()
    if days is None:
        return date
    return f"{date} ({int(days)} d)" if days >= 0 else f"{date} (EXPIRED)"


def _worst(findings: list[Finding]) -> Severity:
    return max((f.severity for f in findings), key=lambda s: s.rank, default=Severity.OK)


def _outcome(result: ProbeResult, findings: list[Finding], colour: bool) -> str:
    worst = _worst(findings)
    if result.outcome is Outcome.OK:
        label = "ok" if worst.rank < Severity.WARNING.rank else f"ok, {worst.value}"
        return _paint(label, worst, colour)
    label = result.outcome.value.replace("_", " ")
    return _paint(label, Severity.CRITICAL if worst is Severity.CRITICAL else worst, colour)


_LOGIN_LABELS = {
    AuthStatus.OK: "ok",
    AuthStatus.WRONG_CREDENTIALS: "wrong password",
    AuthStatus.ACCOUNT_DISABLED: "account disabled",
    AuthStatus.PLAINTEXT_REFUSED: "refused w/o TLS",
    AuthStatus.MECHANISM_UNAVAILABLE: "no mechanism",
    AuthStatus.TEMPORARY_FAILURE: "temporary failure",
    AuthStatus.FAILED: "refused",
    AuthStatus.SKIPPED: "skipped",
}


def _login(result: ProbeResult) -> str:
    if result.auth is None:
        return "-"
    try:
        return _LOGIN_LABELS[AuthStatus(result.auth.status)]
    except ValueError:
        return result.auth.status


def _quota(result: ProbeResult) -> str:
    box = result.mailbox
    if box is None:
        return "-"
    limited = [q for q in box.quota if q.limit > 0]
    if limited:
        worst = max(limited, key=lambda q: q.usage / q.limit)
        return f"{worst.usage / worst.limit * 100:.0f} % {worst.name.lower()}"
    if box.inbox_messages is not None:
        # POP3 (STAT) and servers without QUOTA: at least the INBOX's size.
        return f"{box.inbox_messages} msgs"
    return "n/a"


def endpoint_table(diagnosis: Diagnosis, colour: bool = False) -> str:
    with_login = any(r.auth is not None for r in diagnosis.results)
    rows = []
    for result in diagnosis.results:
        endpoint = result.endpoint
        own = [f for f in diagnosis.findings if f.endpoint == endpoint]
        tls = result.tls
        row = [
            endpoint.protocol.value.upper(),
            endpoint.host,
            endpoint.port,
            endpoint.security.value,
            _outcome(result, own, colour),
            _latency(result),
            tls.version if tls else "-",
            _expiry(result),
        ]
        if with_login:
            row += [_login(result), _quota(result)]
        rows.append([*row, endpoint.sources[0] if endpoint.sources else ""])
    headers = [
        "Protocol",
        "Host",
        "Port",
        "Security",
        "Outcome",
        "Latency",
        "TLS",
        "Certificate expires",
        *(["Login", "Quota"] if with_login else []),
        "Found via",
    ]
    return str(tabulate(rows, headers=headers, tablefmt="simple"))


def _seconds(value: float | None, method: str | None) -> str:
    if value is None:
        return "not measured"
    return f"{value:.2f} s ({method or '?'})"


def sync_lines(diagnosis: Diagnosis) -> list[str]:
    sync = diagnosis.sync
    if sync is None:
        return []
    delivery = _seconds(sync.delivery_latency_s, sync.delivery_method)
    flag = _seconds(sync.flag_sync_latency_s, sync.flag_sync_method)
    removed = "test message removed" if sync.cleaned_up else "test message NOT removed"
    lines = [f"Sync: delivery {delivery}, flag change {flag}, {removed}"]
    if sync.error:
        lines.append(f"  {sync.error}")
    return lines


def _wrap(label: str, text: str) -> str:
    return textwrap.fill(
        text, WIDTH, initial_indent=f"    {label}", subsequent_indent=" " * (4 + len(label))
    )


def finding_block(finding: Finding, colour: bool = False) -> str:
    where = f" — {finding.endpoint.label}" if finding.endpoint else ""
    head = _paint(f"[{finding.severity.value.upper()}] {finding.code}", finding.severity, colour)
    return "\n".join(
        [
            f"  {head}{where}",
            f"    {finding.title}",
            _wrap("Why: ", finding.explanation),
            _wrap("Fix: ", finding.fix),
        ]
    )


def render(diagnosis: Diagnosis, colour: bool = False, verbose: bool = False) -> str:
    status = _paint(diagnosis.status.name, _STATUS_SEVERITY[diagnosis.status], colour)
    name = diagnosis.domain
    if diagnosis.domain_ascii != diagnosis.domain:
        name = f"{diagnosis.domain} ({diagnosis.domain_ascii})"
    lines = [f"maildiag check {name}: {status}  ({diagnosis.seconds:.2f} s)", ""]
    discovery = diagnosis.discovery
    if discovery.mx:
        lines.append("MX: " + ", ".join(f"{m.host} ({m.preference})" for m in discovery.mx))
    offered = [s for s in discovery.srv if not s.not_offered]
    if offered:
        lines.append("SRV: " + ", ".join(f"{s.service} → {s.target}:{s.port}" for s in offered))
    if discovery.mx or offered:
        lines.append("")
    if diagnosis.user:
        lines += [f"User: {diagnosis.user}", ""]
    if diagnosis.results:
        lines += [endpoint_table(diagnosis, colour), ""]
    if diagnosis.sync is not None:
        lines += [*sync_lines(diagnosis), ""]
    shown = [f for f in diagnosis.findings if verbose or f.severity is not Severity.OK]
    if shown:
        lines.append("Findings:")
        for finding in shown:
            lines += [finding_block(finding, colour), ""]
    else:
        lines += ["No problems found.", ""]
    return "\n".join(lines)
