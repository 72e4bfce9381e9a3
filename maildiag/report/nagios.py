"""The diagnosis as a Nagios/Icinga plugin answer (monitoring-plugins guidelines).

Shape::

    MAILDIAG CRITICAL - kunde.test: The certificate has expired on mail.kunde.test \
      (IMAP 993, POP3 995) | time=0.8s;;;0 endpoints_ok=0;;;0;2 imap_993_tls_connect=...
    [CRITICAL] TLS_CERT_EXPIRED IMAP mail.kunde.test:993 (tls): The certificate has expired
    [CRITICAL] TLS_CERT_EXPIRED POP3 mail.kunde.test:995 (tls): The certificate has expired
    Endpoints (0 of 2 without problems):
    IMAP mail.kunde.test:993 (tls): CRITICAL, 41 ms, TLSv1.3, certificate EXPIRED
    POP3 mail.kunde.test:995 (tls): CRITICAL, 38 ms, TLSv1.3, certificate EXPIRED

(The first line is one line; it is wrapped here.) Every perfdata item is on
the first line, after its only ``|``. The plugin API would let perfdata
continue after a ``|`` in the long text, but Icinga 2
(``PluginUtility::ParseCheckOutput``) takes only the part after a ``|`` on
each line and treats every other line as text, and pynag and several
graphers read the first line only; the ``nagiosplugin`` library writes all
perfdata on the first line for the same reason. Items are separated by one
space: Icinga 2 splits at every space, so a second one would become part of
the next label.

The status line says in words what is wrong and where, worst first; the long
text lists the problems grouped by severity (critical, warning, info), then
one line per endpoint.

Perfdata labels are stable across runs (protocol, port, security, metric),
so graphs keep their history when a server's address changes; a second
endpoint in the same slot (two host names on port 993) gets its host name
appended instead of a duplicate label.

With an address (``--user``, ``--address``), the inbound path adds
``inbound_accepted`` (1: the MX a sender's mail would reach accepted the
address at RCPT, 0: it refused; left out when no MX answered) and per MX
host ``inbound_<host>_accepted`` (the same, for that MX),
``inbound_<host>_reply`` (the SMTP reply code of its verdict: 250, 450, 550,
552, ...; both left out for an MX without a verdict) and
``inbound_<host>_time``, with the host name's dots and dashes as ``_``
(``inbound_mx1_kunde_de_accepted``); the long text gets one line per MX.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..model import (
    Diagnosis,
    Endpoint,
    Finding,
    InboundResult,
    InboundVerdict,
    MxAttempt,
    Outcome,
    ProbeResult,
    Severity,
    Status,
    Thresholds,
)
from .vocabulary import Words, localised, mx_word, outcome_word

if TYPE_CHECKING:
    from ..finding_codes import FindingCode
    from .formats import RenderOptions

PLUGIN = "MAILDIAG"
# The texts of the plugin output (context "nagios" in the catalogue). The
# status keyword (OK, WARNING, CRITICAL, UNKNOWN) and the severities in
# brackets stay English in every language: they are the plugin API's words,
# which people and scripts grep for, like the finding codes.
TEXTS = {
    "ok": "ok",
    "more_subjects": "+{count} more",
    "one_more_problem": "+1 more problem",
    "more_problems": "+{count} more problems",
    "endpoints_ok": "{ok}/{total} endpoints ok",
    "nothing": "nothing to check",
    "and": " and ",
    "endpoints": "Endpoints ({ok} of {total} without problems):",
    "cert_expired": "certificate EXPIRED",
    "cert_days": "certificate {days} days",
    "inbound": "Inbound path for {address} (MX on port 25, in preference order):",
}
# How many problems the status line names before it says "+N more".
SUMMARY_CODES = 3

_NEEDS_QUOTES = re.compile(r"[\s='|]")


def perf_label(label: str) -> str:
    """A label in the perfdata grammar: quoted when it holds spaces, '=' or quotes.

    The guidelines escape a single quote inside a quoted label by doubling it.
    (Icinga 2 cannot read a label with '=' even when quoted — it splits at the
    first '=' — so maildiag's own labels never contain one.)
    """
    label = label.strip()
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
    # Trailing empty fields are left out, the last ";" with them ("reply=250").
    return (f"{perf_label(label)}={shown};" + ";".join(fields)).rstrip(";")


def _threshold_below(days: float) -> str:
    # Nagios range "N:" alerts when the value drops below N.
    return perf_number(days) + ":"


def _threshold_above(value: float) -> str:
    # Nagios range "N" (= "0:N") alerts when the value rises above N.
    return perf_number(value)


def _clean(text: str) -> str:
    """Plugin output is line based and '|' starts perfdata: keep both out of texts."""
    return " ".join(text.replace("|", "/").split())


def _endpoint_prefix(endpoint: Endpoint) -> str:
    return f"{endpoint.protocol.value}_{endpoint.port}_{endpoint.security.value}"


def _prefixes(results: Sequence[ProbeResult]) -> list[str]:
    """One label prefix per result, unique within the output."""
    prefixes: list[str] = []
    for result in results:
        prefix = _endpoint_prefix(result.endpoint)
        if prefix in prefixes:
            # Word characters only, so no consumer needs to quote or re-split it.
            prefix = f"{prefix}_{re.sub(r'[^0-9A-Za-z_]', '_', result.endpoint.host)}"
        while prefix in prefixes:
            prefix += "_"
        prefixes.append(prefix)
    return prefixes


def endpoint_perfdata(
    result: ProbeResult,
    warning_days: float,
    critical_days: float,
    *,
    prefix: str | None = None,
    thresholds: Thresholds | None = None,
) -> list[str]:
    prefix = prefix or _endpoint_prefix(result.endpoint)
    limits = thresholds or Thresholds()
    items = []
    timings = result.timings
    for metric, phase in (("connect", "connect"), ("tls", "tls")):
        if phase in timings:
            items.append(perf_item(f"{prefix}_{metric}", timings[phase], "s", minimum=0))
    items.append(perf_item(f"{prefix}_time", result.total_seconds, "s", minimum=0))
    tls = result.tls
    if tls is not None and tls.days_remaining is not None:
        items.append(
            perf_item(
                f"{prefix}_cert_days",
                tls.days_remaining,
                warn=_threshold_below(warning_days),
                crit=_threshold_below(critical_days),
            )
        )
    if result.mailbox is not None:
        warn_pct, crit_pct = limits.quota_warning_percent, limits.quota_critical_percent
        for quota in result.mailbox.quota:
            name = quota.name.lower()
            if quota.ratio is not None:
                items.append(
                    perf_item(
                        f"{prefix}_quota_{name}",
                        quota.ratio * 100,
                        "%",
                        warn=_threshold_above(warn_pct),
                        crit=_threshold_above(crit_pct),
                        minimum=0,
                        maximum=100,
                    )
                )
            if name == "storage":
                # RFC 9208 §5.1: STORAGE is counted in units of 1024 octets.
                limit = quota.limit * 1024
                items.append(
                    perf_item(
                        f"{prefix}_quota_storage_used",
                        quota.usage * 1024,
                        "B",
                        warn=_threshold_above(limit * warn_pct / 100) if limit else "",
                        crit=_threshold_above(limit * crit_pct / 100) if limit else "",
                        minimum=0,
                        maximum=limit or None,
                    )
                )
    return items


def _accepted(attempt: MxAttempt | None) -> int | None:
    """1 when the MX accepted the address, 0 when it refused it, None without a verdict."""
    if attempt is None or attempt.verdict is None:
        return None
    return 1 if attempt.verdict is InboundVerdict.ACCEPTED else 0


def _reply_code(attempt: MxAttempt) -> int | None:
    match = re.match(r"[2-5]\d\d\b", attempt.reply or "")
    return int(match.group()) if attempt.verdict is not None and match else None


def _mx_prefixes(attempts: Sequence[MxAttempt]) -> list[str]:
    """``inbound_<host>`` per MX, in word characters, unique within the output."""
    prefixes: list[str] = []
    for attempt in attempts:
        prefix = "inbound_" + re.sub(r"[^0-9A-Za-z_]", "_", attempt.host.rstrip("."))
        while prefix in prefixes:
            prefix += "_"
        prefixes.append(prefix)
    return prefixes


def inbound_perfdata(inbound: InboundResult) -> list[str]:
    """Whether mail for the address gets in: overall, then per MX host.

    An MX without a verdict (unreachable, port 25 blocked here) has no
    ``_accepted`` and ``_reply`` item rather than "U": Icinga 2 cannot parse a
    "U" value (``Convert::ToDouble``), and its perfdata writers drop such an item
    with a warning; a gap in the graph says the same.
    """
    items = []
    overall = _accepted(inbound.decisive)
    if overall is not None:
        items.append(perf_item("inbound_accepted", overall, minimum=0, maximum=1))
    for attempt, prefix in zip(inbound.attempts, _mx_prefixes(inbound.attempts), strict=True):
        accepted, code = _accepted(attempt), _reply_code(attempt)
        if accepted is not None:
            items.append(perf_item(f"{prefix}_accepted", accepted, minimum=0, maximum=1))
        if code is not None:
            items.append(perf_item(f"{prefix}_reply", code))
        items.append(perf_item(f"{prefix}_time", sum(attempt.timings.values()), "s", minimum=0))
    return items


def mx_line(attempt: MxAttempt, *, lang: str = "en") -> str:
    """One MX, like an endpoint line: its verdict and time, or how talking to it ended."""
    where = f"MX {attempt.preference} {attempt.host}"
    if attempt.address:
        where += f" ({attempt.address})"
    word = mx_word(attempt, lang)
    if attempt.verdict is not None:
        ms = sum(attempt.timings.values()) * 1000
        shown = "" if attempt.verdict is InboundVerdict.ACCEPTED else f" - {attempt.reply or ''}"
        return _clean(f"{where}: {word}, {ms:.0f} ms{shown}")
    detail = f" - {attempt.error}" if attempt.error else ""
    return _clean(f"{where}: {word}{detail}")


def _bad(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity.rank >= Severity.WARNING.rank]


def _days(result: ProbeResult, words: Words) -> str:
    tls = result.tls
    if tls is None or tls.days_remaining is None:
        return ""
    if tls.days_remaining < 0:
        return ", " + words("cert_expired")
    return ", " + words("cert_days", days=int(tls.days_remaining))


def endpoint_line(
    result: ProbeResult, findings: Sequence[Finding] = (), *, lang: str = "en"
) -> str:
    """One endpoint: "ok" only when it answered and no warning or critical finding
    concerns it; otherwise the worst severity (a working connection with an expired
    certificate is not ok)."""
    words = Words(lang, "nagios", TEXTS)
    label = result.endpoint.label
    if result.outcome is Outcome.OK:
        own = _bad([f for f in findings if f.endpoint == result.endpoint])
        state = max(own, key=lambda f: f.severity.rank).severity.name if own else words("ok")
        version = f", {result.tls.version}" if result.tls else ""
        days = _days(result, words)
        return _clean(f"{label}: {state}, {result.total_seconds * 1000:.0f} ms{version}{days}")
    detail = f" - {result.error}" if result.error else ""
    return _clean(f"{label}: {outcome_word(result.outcome, lang)}{detail}")


def finding_lines(findings: Sequence[Finding], *, lang: str = "en") -> list[str]:
    """One line per non-ok finding, worst severity first; repeats of a code on the
    same endpoint share a line (a broken name server fails a dozen lookups, which
    is one problem)."""
    groups: dict[tuple[Severity, FindingCode, str], list[str]] = {}
    for finding in sorted(findings, key=lambda f: -f.severity.rank):
        if finding.severity is Severity.OK:
            continue
        where = f" {finding.endpoint.label}" if finding.endpoint else ""
        subjects = groups.setdefault((finding.severity, finding.code, where), [])
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
            more_text = Words(lang, "nagios", TEXTS)("more_subjects", count=more)
            about += f", {more_text})" if more > 0 else ")"
        lines.append(_clean(f"[{severity.name}] {code}{where}: {titles[code]}{about}"))
    return lines


def _where(findings: Sequence[Finding], words: Words) -> str:
    """ "mail.kunde.test (IMAP 993, POP3 995)" for the endpoints of one problem."""
    by_host: dict[str, list[str]] = {}
    for finding in findings:
        endpoint = finding.endpoint
        if endpoint is None:
            continue
        slot = f"{endpoint.protocol.name} {endpoint.port}"
        slots = by_host.setdefault(endpoint.host, [])
        if slot not in slots:
            slots.append(slot)
    return words("and").join(f"{host} ({', '.join(slots)})" for host, slots in by_host.items())


def _clean_count(diagnosis: Diagnosis) -> int:
    """Endpoints that answered and that no warning or critical finding concerns."""
    bad = {f.endpoint for f in _bad(diagnosis.findings)}
    return sum(1 for r in diagnosis.results if r.outcome is Outcome.OK and r.endpoint not in bad)


def _summary(diagnosis: Diagnosis, words: Words) -> str:
    """The status line in words: the worst problems and where they are."""
    problems: dict[str, list[Finding]] = {}
    for finding in sorted(_bad(diagnosis.findings), key=lambda f: -f.severity.rank):
        problems.setdefault(finding.code, []).append(finding)
    if problems:
        parts = []
        for group in problems.values():
            where = _where(group, words)
            parts.append(group[0].title + (f": {where}" if where else ""))
        shown = "; ".join(parts[:SUMMARY_CODES])
        more = len(parts) - SUMMARY_CODES
        if more > 0:
            shown += "; " + (
                words("one_more_problem") if more == 1 else words("more_problems", count=more)
            )
        return _clean(f"{diagnosis.domain}: {shown}")
    if diagnosis.results:
        ok = words("endpoints_ok", ok=_clean_count(diagnosis), total=len(diagnosis.results))
        return _clean(f"{diagnosis.domain}: {ok}")
    return _clean(f"{diagnosis.domain}: {words('nothing')}")


def render(
    diagnosis: Diagnosis,
    warning_days: float | None = None,
    critical_days: float | None = None,
    *,
    thresholds: Thresholds | None = None,
    lang: str = "en",
) -> str:
    """The plugin output; the process exit code is ``int(diagnosis.status)``.

    ``thresholds`` (the check's own) set the perfdata's warn/crit fields;
    ``warning_days``/``critical_days`` override its certificate days.
    ``lang``: the language of the texts; perfdata labels never change.
    """
    diagnosis = localised(diagnosis, lang)
    words = Words(lang, "nagios", TEXTS)
    limits = thresholds or Thresholds()
    warning_days = limits.cert_warning_days if warning_days is None else warning_days
    critical_days = limits.cert_critical_days if critical_days is None else critical_days
    results = diagnosis.results
    ok = _clean_count(diagnosis)
    perf = [
        perf_item("time", diagnosis.seconds, "s", minimum=0),
        perf_item("endpoints_ok", ok, minimum=0, maximum=len(results)),
    ]
    for result, prefix in zip(results, _prefixes(results), strict=True):
        perf += endpoint_perfdata(
            result, warning_days, critical_days, prefix=prefix, thresholds=limits
        )
    inbound = diagnosis.inbound
    if inbound is not None:
        perf += inbound_perfdata(inbound)
    summary = _summary(diagnosis, words)
    lines = [f"{PLUGIN} {diagnosis.status.name} - {summary} | " + " ".join(perf)]
    lines += finding_lines(diagnosis.findings, lang=lang)
    if results:
        lines.append(words("endpoints", ok=ok, total=len(results)))
        lines += [endpoint_line(r, diagnosis.findings, lang=lang) for r in results]
    if inbound is not None and inbound.attempts:
        lines.append(words("inbound", address=inbound.address))
        lines += [mx_line(a, lang=lang) for a in inbound.attempts]
    return "\n".join(lines) + "\n"


def render_error(message: str, status: Status = Status.UNKNOWN) -> str:
    """A plugin answer when no diagnosis could be made (a bad domain, bad options)."""
    return f"{PLUGIN} {status.name} - {_clean(message)}\n"


def render_report(diagnosis: Diagnosis, options: RenderOptions) -> str:
    return render(diagnosis, thresholds=options.thresholds, lang=options.lang)


def render_bad_request(domain: str, message: str, kind: str, options: RenderOptions) -> str:
    return render_error(message)
