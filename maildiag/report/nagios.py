"""The diagnosis as a Nagios/Icinga plugin answer (monitoring-plugins guidelines).

Shape, as in the plugin API's multi-line output::

    MAILDIAG CRITICAL - kunde.test: TLS_CERT_EXPIRED; 5/6 endpoints ok | time=0.8s;;;0 ...
    IMAP mail.kunde.test:993 (tls): ok, 41 ms, TLSv1.3, certificate 364 days
    [CRITICAL] TLS_CERT_EXPIRED IMAP mail.kunde.test:143 (starttls): The certificate has expired
    | imap_993_tls_connect=0.001s;;;0 imap_993_tls_cert_days=364.2;21:;7:;;
    imap_143_starttls_connect=...

The first line is the status and a summary; the long text follows; the
perfdata of the endpoints comes after a second ``|`` so the first line stays
short (the plugin API lets perfdata continue over the following lines).

Perfdata labels are stable across runs (protocol, port, security, metric),
so graphs keep their history when a server's address changes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..model import Diagnosis, Finding, Outcome, ProbeResult, Severity, Status

PLUGIN = "MAILDIAG"
# How many finding codes the status line names before it says "+N more".
SUMMARY_CODES = 3

_NEEDS_QUOTES = re.compile(r"[\s='|]")


def perf_label(label: str) -> str:
    """A label in the perfdata grammar: quoted when it holds spaces, '=' or quotes.

    The guidelines escape a single quote inside a quoted label by doubling it.
    """
    if _NEEDS_QUOTES.search(label):
        return "'" + label.replace("'", "''") + "'"
    return label


def perf_number(value: float) -> str:
    """A plain decimal number: the grammar allows [-0-9.], never an exponent."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def perf_item(
    label: str,
    value: float | None,
    uom: str = "",
    *,
    warn: str = "",
    crit: str = "",
    minimum: float | None = None,
    maximum: float | None = None,
) -> str:
    """``'label'=value[UOM];[warn];[crit];[min];[max]`` ("U" for a value not measured)."""
    shown = "U" if value is None else perf_number(value) + uom
    fields = [
        warn,
        crit,
        "" if minimum is None else perf_number(minimum),
        "" if maximum is None else perf_number(maximum),
    ]
    return f"{perf_label(label)}={shown};" + ";".join(fields).rstrip(";")


def _threshold_below(days: float) -> str:
    # Nagios range "N:" alerts when the value drops below N.
    return perf_number(days) + ":"


def _clean(text: str) -> str:
    """Plugin output is line based and '|' starts perfdata: keep both out of texts."""
    return " ".join(text.replace("|", "/").split())


def _endpoint_prefix(result: ProbeResult) -> str:
    e = result.endpoint
    return f"{e.protocol.value}_{e.port}_{e.security.value}"


def endpoint_perfdata(result: ProbeResult, warning_days: float, critical_days: float) -> list[str]:
    prefix = _endpoint_prefix(result)
    items = []
    timings = result.timings
    for metric, phase in (("connect", "connect"), ("tls", "tls")):
        if phase in timings:
            items.append(perf_item(f"{prefix}_{metric}", timings[phase], "s", minimum=0))
    items.append(perf_item(f"{prefix}_time", result.total_seconds, "s", minimum=0))
    tls = result.tls
    if tls is not None and tls.days_remaining is not None:
        items.append(perf_item(
            f"{prefix}_cert_days", tls.days_remaining,
            warn=_threshold_below(warning_days), crit=_threshold_below(critical_days),
        ))
    if result.mailbox is not None:
        for quota in result.mailbox.quota:
            name = quota.name.lower()
            if quota.ratio is not None:
                items.append(perf_item(f"{prefix}_quota_{name}", quota.ratio * 100, "%",
                                       minimum=0, maximum=100))
            if name == "storage":
                # RFC 9208 §5.1: STORAGE is counted in units of 1024 octets.
                items.append(perf_item(f"{prefix}_quota_storage_used", quota.usage * 1024, "B",
                                       minimum=0, maximum=quota.limit * 1024 or None))
    return items


def _days(result: ProbeResult) -> str:
    tls = result.tls
    if tls is None or tls.days_remaining is None:
        return ""
    if tls.days_remaining < 0:
        return ", certificate EXPIRED"
    return f", certificate {int(tls.days_remaining)} days"


def endpoint_line(result: ProbeResult) -> str:
    label = result.endpoint.label
    if result.outcome is Outcome.OK:
        version = f", {result.tls.version}" if result.tls else ""
        return _clean(f"{label}: ok, {result.total_seconds * 1000:.0f} ms{version}{_days(result)}")
    detail = f" - {result.error}" if result.error else ""
    return _clean(f"{label}: {result.outcome.value.replace('_', ' ')}{detail}")


def finding_lines(findings: Sequence[Finding]) -> list[str]:
    """One line per non-ok finding; repeats of a code on the same endpoint share a line
    (a broken name server fails a dozen lookups, which is one problem)."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for finding in findings:
        if finding.severity is Severity.OK:
            continue
        where = f" {finding.endpoint.label}" if finding.endpoint else ""
        key = (finding.severity.value.upper(), finding.code, where)
        subjects = groups.setdefault(key, [])
        query = finding.details.get("query")
        if query:
            subjects.append(str(query))
    lines = []
    titles = {f.code: f.title for f in findings}
    for (severity, code, where), subjects in groups.items():
        about = ""
        if subjects:
            more = len(subjects) - SUMMARY_CODES
            about = " (" + ", ".join(subjects[:SUMMARY_CODES])
            about += f", +{more} more)" if more > 0 else ")"
        lines.append(_clean(f"[{severity}] {code}{where}: {titles[code]}{about}"))
    return lines


def _summary(diagnosis: Diagnosis) -> str:
    bad = [f for f in diagnosis.findings if f.severity.rank >= Severity.WARNING.rank]
    codes: list[str] = []
    for finding in sorted(bad, key=lambda f: -f.severity.rank):
        if finding.code not in codes:
            codes.append(finding.code)
    ok = sum(1 for r in diagnosis.results if r.outcome is Outcome.OK)
    parts = []
    if codes:
        shown = ", ".join(codes[:SUMMARY_CODES])
        more = len(codes) - SUMMARY_CODES
        parts.append(shown + (f" (+{more} more)" if more > 0 else ""))
    if diagnosis.results:
        parts.append(f"{ok}/{len(diagnosis.results)} endpoints ok")
    elif not codes:
        parts.append("nothing to check")
    return _clean(f"{diagnosis.domain}: " + "; ".join(parts))


def render(diagnosis: Diagnosis, warning_days: float = 21.0, critical_days: float = 7.0) -> str:
    """The plugin output; the process exit code is ``int(diagnosis.status)``."""
    ok = sum(1 for r in diagnosis.results if r.outcome is Outcome.OK)
    head_perf = [
        perf_item("time", diagnosis.seconds, "s", minimum=0),
        perf_item("endpoints_ok", ok, minimum=0, maximum=len(diagnosis.results)),
    ]
    lines = [
        f"{PLUGIN} {diagnosis.status.name} - {_summary(diagnosis)} | " + " ".join(head_perf)
    ]
    lines += [endpoint_line(r) for r in diagnosis.results]
    lines += finding_lines(diagnosis.findings)
    perf = [
        item
        for result in diagnosis.results
        for item in endpoint_perfdata(result, warning_days, critical_days)
    ]
    if perf:
        lines[-1] += " | " + perf[0]
        lines += perf[1:]
    return "\n".join(lines) + "\n"


def render_error(message: str, status: Status = Status.UNKNOWN) -> str:
    """A plugin answer when no diagnosis could be made (a bad domain, bad options)."""
    return f"{PLUGIN} {status.name} - {_clean(message)}\n"

