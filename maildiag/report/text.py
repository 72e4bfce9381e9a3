"""The diagnosis for people: one table row per endpoint, then the findings.

Colour only when writing to a terminal and ``NO_COLOR`` is not set
(https://no-color.org); the caller decides and passes ``colour``.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from tabulate import tabulate

from .. import i18n
from ..finding_codes import FindingCode
from ..findings import render_text
from ..model import (
    AuthStatus,
    Diagnosis,
    Finding,
    Outcome,
    ProbeResult,
    Severity,
    Status,
    TypedJudgement,
)
from .grouping import FindingGroup, affected, group_findings, root_causes
from .vocabulary import MX_OUTCOMES, MX_VERDICTS, OUTCOMES

if TYPE_CHECKING:
    from .formats import RenderOptions

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
WIDTH = 80  # when the caller does not know the terminal's width

# Every text of the report, in English; translations in the gettext catalogue
# under the context "report" (tests/translations.py collects them).
TEXTS: Mapping[str, str] = {
    "status/OK": "OK",
    "status/WARNING": "WARNING",
    "status/CRITICAL": "CRITICAL",
    "status/UNKNOWN": "UNKNOWN",
    "severity/ok": "OK",
    "severity/info": "INFO",
    "severity/warning": "WARNING",
    "severity/critical": "CRITICAL",
    "why": "Why: ",
    "fix": "Fix: ",
    "findings": "Findings:",
    "no_problems": "No problems found.",
    "user": "User: {user}",
    "Protocol": "Protocol",
    "Host": "Host",
    "Port": "Port",
    "Security": "Security",
    "Outcome": "Outcome",
    "Latency": "Latency",
    "TLS": "TLS",
    "Certificate expires": "Certificate expires",
    "Login": "Login",
    "Quota": "Quota",
    "Found via": "Found via",
    "expired": "EXPIRED",
    "typed": "What the customer typed:",
    "verdict/works": "works",
    "verdict/warning": "works, with a warning",
    "verdict/fails": "does not work",
    "type_instead": "Type instead: {suggestion}.",
    "explained_by": "(a consequence of {code})",
}


# What the table's Outcome column says for a working endpoint whose worst
# finding is one of these (one thing per row); other findings use their title.
SHORT: Mapping[str, str] = {
    FindingCode.TLS_CERT_EXPIRED: "certificate expired",
    FindingCode.TLS_CERT_EXPIRING: "certificate expires soon",
    FindingCode.TLS_CERT_NOT_YET_VALID: "certificate not yet valid",
    FindingCode.TLS_CERT_SELF_SIGNED: "self-signed certificate",
    FindingCode.TLS_CERT_UNTRUSTED: "certificate not trusted",
    FindingCode.TLS_HOSTNAME_MISMATCH: "certificate for another name",
    FindingCode.TLS_CHAIN_INCOMPLETE: "intermediate missing",
    FindingCode.TLS_CERT_INVALID: "certificate invalid",
    FindingCode.TLS_CERT_NO_SAN: "name only in CN",
    FindingCode.TLS_KEY_WEAK: "weak key",
    FindingCode.TLS_SIGNATURE_WEAK: "weak signature",
    FindingCode.TLS_PROTOCOL_OUTDATED: "outdated TLS",
    FindingCode.TLS_CIPHER_WEAK: "weak cipher",
    FindingCode.STARTTLS_MISSING: "no STARTTLS",
    FindingCode.PLAINTEXT_AUTH_ALLOWED: "login before TLS",
    FindingCode.SUBMISSION_NO_AUTH: "no AUTH",
    FindingCode.AUTH_FAILED: "wrong password",
    FindingCode.AUTH_ACCOUNT_DISABLED: "account disabled",
    FindingCode.AUTH_APP_PASSWORD_REQUIRED: "app password needed",
    FindingCode.AUTH_SMTP_AUTH_DISABLED_M365: "SMTP AUTH off",
    FindingCode.AUTH_OAUTH_ONLY: "OAuth only",
    FindingCode.QUOTA_FULL: "mailbox full",
    FindingCode.QUOTA_NEAR_LIMIT: "mailbox almost full",
    FindingCode.IMAP_PREAUTH: "PREAUTH",
    FindingCode.IPV6_FAILS: "fails over IPv6",
    FindingCode.IPV4_FAILS: "fails over IPv4",
}
LOGIN_LABELS: Mapping[AuthStatus, str] = {
    AuthStatus.OK: "ok",
    AuthStatus.WRONG_CREDENTIALS: "wrong password",
    AuthStatus.ACCOUNT_DISABLED: "account disabled",
    AuthStatus.PLAINTEXT_REFUSED: "refused w/o TLS",
    AuthStatus.MECHANISM_UNAVAILABLE: "no mechanism",
    AuthStatus.TEMPORARY_FAILURE: "temporary failure",
    AuthStatus.FAILED: "refused",
    AuthStatus.PASSWORD_LOGIN_DISABLED: "password login off",
    AuthStatus.NO_ANSWER: "no answer",
    AuthStatus.SKIPPED: "skipped",
}
# Columns left out, in this order, until the table fits the width.
_DROPPABLE = ("Found via", "Latency", "TLS", "Certificate expires", "Security", "Quota")


def all_texts() -> list[tuple[str, str]]:
    """(context, English) of every text of the report, for the translation catalogue."""
    pairs = [("report", text) for text in TEXTS.values()]
    pairs += [("report/outcome", text) for text in (*SHORT.values(), *OUTCOMES.values())]
    pairs += [("report/outcome", text) for text in (*MX_VERDICTS.values(), *MX_OUTCOMES.values())]
    pairs += [("report/login", text) for text in LOGIN_LABELS.values()]
    from ..typed import NO_SUGGESTION, SUGGESTION

    pairs += [("typed/suggestion", SUGGESTION), ("typed/suggestion", NO_SUGGESTION)]
    pairs.append(("typed/security", "none"))  # STARTTLS and SSL/TLS read the same
    return list(dict.fromkeys(pairs))


class _Words:
    def __init__(self, lang: str) -> None:
        self.lang = lang

    def __call__(self, key: str, **facts: object) -> str:
        return render_text(i18n.text(self.lang, "report", TEXTS[key]), facts)

    def outcome(self, english: str) -> str:
        return i18n.text(self.lang, "report/outcome", english)

    def login(self, english: str) -> str:
        return i18n.text(self.lang, "report/login", english)


def _paint(text: str, severity: Severity, colour: bool) -> str:
    return f"\033[{_COLOURS[severity]}m{text}\033[0m" if colour else text


def _latency(result: ProbeResult) -> str:
    return f"{result.total_seconds * 1000:.0f} ms" if result.timings else "-"


def _expiry(result: ProbeResult, words: _Words) -> str:
    tls = result.tls
    if tls is None or tls.leaf is None:
        return "-"
    days = tls.days_remaining
    date = tls.leaf.not_after.date().isoformat()
    if days is None:
        return date
    return f"{date} ({int(days)} d)" if days >= 0 else f"{date} ({words('expired')})"


def _worst(findings: list[Finding]) -> Finding | None:
    return max(findings, key=lambda f: f.severity.rank, default=None)


def _outcome(result: ProbeResult, findings: list[Finding], colour: bool, words: _Words) -> str:
    worst = _worst(findings)
    severity = worst.severity if worst else Severity.OK
    if (
        result.outcome is Outcome.OK
        and worst is not None
        and severity.rank >= Severity.WARNING.rank
    ):
        # One thing per row: what is wrong, not "ok" next to "critical".
        english = SHORT.get(worst.code)
        label = words.outcome(english) if english else worst.title
        return _paint(label, severity, colour)
    label = words.outcome(OUTCOMES.get(result.outcome, result.outcome.value))
    if result.outcome is not Outcome.OK and severity.rank < Severity.WARNING.rank:
        severity = Severity.INFO
    return _paint(label, severity, colour)


def _login(result: ProbeResult, words: _Words) -> str:
    if result.auth is None:
        return "-"
    try:
        return words.login(LOGIN_LABELS[AuthStatus(result.auth.status)])
    except (ValueError, KeyError):
        return str(result.auth.status)


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


def endpoint_table(
    diagnosis: Diagnosis, colour: bool = False, lang: str = "en", width: int = WIDTH
) -> str:
    """One row per endpoint; columns are left out until the table fits ``width``."""
    words = _Words(lang)
    with_login = any(r.auth is not None for r in diagnosis.results)
    columns = ["Protocol", "Host", "Port", "Security", "Outcome", "Latency", "TLS"]
    columns += ["Certificate expires", *(["Login", "Quota"] if with_login else []), "Found via"]
    rows = []
    for result in diagnosis.results:
        endpoint = result.endpoint
        own = [f for f in diagnosis.findings if f.endpoint == endpoint]
        tls = result.tls
        cells = {
            "Protocol": endpoint.protocol.value.upper(),
            "Host": endpoint.host,
            "Port": endpoint.port,
            "Security": i18n.text(lang, "fact/security", endpoint.security.value),
            "Outcome": _outcome(result, own, colour, words),
            "Latency": _latency(result),
            "TLS": tls.version if tls else "-",
            "Certificate expires": _expiry(result, words),
            "Login": _login(result, words),
            "Quota": _quota(result),
            "Found via": endpoint.sources[0] if endpoint.sources else "",
        }
        rows.append(cells)
    droppable = [c for c in _DROPPABLE if c in columns]
    while True:
        table = str(
            tabulate(
                [[row[c] for c in columns] for row in rows],
                headers=[words(c) for c in columns],
                tablefmt="simple",
            )
        )
        if _visible_width(table) <= width or not droppable:
            return table
        columns.remove(droppable.pop(0))


_ANSI = re.compile(r"\033\[[0-9;]*m")


def _visible_width(text: str) -> int:
    return max((len(_ANSI.sub("", line)) for line in text.splitlines()), default=0)


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


def _fill(text: str, width: int, first: str, rest: str) -> str:
    return textwrap.fill(
        text,
        max(width, len(first) + 20),
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _where(group: FindingGroup) -> str:
    endpoints = group.endpoints
    if not endpoints:
        return ""
    if len(endpoints) == 1:
        return f" — {endpoints[0].label}"
    hosts = sorted({e.host for e in endpoints})
    return f" — {', '.join(hosts)}: {affected(endpoints)}"


def finding_block(
    finding: Finding | FindingGroup, colour: bool = False, lang: str = "en", width: int = WIDTH
) -> str:
    group = finding if isinstance(finding, FindingGroup) else FindingGroup((finding,))
    words = _Words(lang)
    first = group.first
    tag = words(f"severity/{first.severity.value}")
    head = _paint(f"[{tag}] {first.code}", first.severity, colour)
    why, fix = words("why"), words("fix")
    label = max(len(why), len(fix))
    title = first.title
    if group.explained_by is not None:
        title += " " + words("explained_by", code=group.explained_by)
    return "\n".join(
        [
            _fill(f"{head}{_where(group)}", width, "  ", "      "),
            _fill(title, width, "    ", "    "),
            _fill(first.explanation, width, f"    {why:<{label}}", " " * (4 + label)),
            _fill(first.fix, width, f"    {fix:<{label}}", " " * (4 + label)),
        ]
    )


# A sentence ends at ".", "!" or "?" after a word of two letters or more
# (so "z. B." and "e.g." do not end one) and before a capital letter.
_SENTENCE_END = re.compile(r"(?<=[\w)'\"“”‘’]{2}[.!?])\s+(?=[A-ZÄÖÜ„\"'(])")


def first_sentence(text: str) -> str:
    return _SENTENCE_END.split(text.strip(), maxsplit=1)[0]


def verdict_lines(groups: Sequence[FindingGroup], colour: bool, lang: str, width: int) -> list[str]:
    """Each root cause in one sentence with its fix: what the technician says first."""
    words = _Words(lang)
    lines = []
    for group in root_causes(groups):
        tag = _paint(words(f"status/{group.severity.name}"), group.severity, colour)
        where = ""
        if group.endpoints:
            hosts = sorted({e.host for e in group.endpoints})
            where = f" ({', '.join(hosts)}: {affected(group.endpoints)})"
        sentence = f"{tag}: {group.first.title}{where}. {first_sentence(group.first.fix)}"
        lines.append(_fill(sentence, width, "", "  "))
    return lines


def typed_lines(diagnosis: Diagnosis, colour: bool, lang: str, width: int) -> list[str]:
    """One paragraph per setting the customer typed: verdict, why, what to type instead."""
    from ..typed import NO_SUGGESTION, SUGGESTION, suggestion_text

    if not diagnosis.typed:
        return []
    words = _Words(lang)
    lines = [words("typed")]
    for typed in diagnosis.typed:
        setting = typed.setting
        findings = [i18n.localise(f, lang) for f in typed.findings]
        worst = max(findings, key=lambda f: f.severity.rank)
        name = f"{setting.protocol.value.upper()} {setting.host}:{setting.port} "
        security = {"plain": "none", "starttls": "STARTTLS", "tls": "SSL/TLS"}
        name += i18n.text(lang, "typed/security", security[setting.security.value])
        verdict = _paint(words(f"verdict/{typed.verdict}"), worst.severity, colour)
        head = f"{name}: {verdict}"
        if typed.verdict is not TypedJudgement.WORKS:
            titles = ". ".join(  # each title is a sentence of its own
                dict.fromkeys(f.title for f in findings if f.severity.rank >= Severity.WARNING.rank)
            )
            template = i18n.text(lang, "typed/suggestion", SUGGESTION)
            instead = words(
                "type_instead",
                suggestion=suggestion_text(typed.suggested, template)
                if typed.suggested
                else i18n.text(lang, "typed/suggestion", NO_SUGGESTION),
            )
            head += f" — {titles}. {instead}"
        lines.append(_fill(head, width, "  ", "    "))
        if typed.verdict is not TypedJudgement.WORKS:
            lines.append(_fill(worst.explanation, width, "    ", "    "))
    return [*lines, ""]


def render(
    diagnosis: Diagnosis,
    colour: bool = False,
    verbose: bool = False,
    *,
    lang: str = "en",
    width: int = WIDTH,
) -> str:
    words = _Words(lang)
    findings = [i18n.localise(f, lang) for f in diagnosis.findings]
    groups = group_findings(diagnosis, findings)
    status_word = words(f"status/{diagnosis.status.name}")
    status = _paint(status_word, _STATUS_SEVERITY[diagnosis.status], colour)
    name = diagnosis.domain
    if diagnosis.domain_ascii != diagnosis.domain:
        name = f"{diagnosis.domain} ({diagnosis.domain_ascii})"
    lines = [f"maildiag check {name}: {status}  ({diagnosis.seconds:.2f} s)"]
    verdict = verdict_lines(groups, colour, lang, width)
    lines += [*verdict, ""]
    lines += typed_lines(diagnosis, colour, lang, width)
    discovery = diagnosis.discovery
    if discovery.mx:
        mx = "MX: " + ", ".join(f"{m.host} ({m.preference})" for m in discovery.mx)
        lines.append(_fill(mx, width, "", "    "))
    offered = [s for s in discovery.srv if not s.not_offered]
    if offered:
        # No-break spaces keep "service → target" on one line when wrapped.
        srv = "SRV: " + ", ".join(f"{s.service}\u00a0→\u00a0{s.target}:{s.port}" for s in offered)
        lines.append(_fill(srv, width, "", "     "))
    if discovery.mx or offered:
        lines.append("")
    if diagnosis.user:
        lines += [words("user", user=diagnosis.user), ""]
    if diagnosis.results:
        lines += [endpoint_table(diagnosis, colour, lang, width), ""]
    if diagnosis.sync is not None:
        lines += [*sync_lines(diagnosis), ""]
    shown = [g for g in groups if verbose or g.severity is not Severity.OK]
    if shown:
        lines.append(words("findings"))
        for group in shown:
            lines += [finding_block(group, colour, lang, width), ""]
    else:
        lines += [words("no_problems"), ""]
    return "\n".join(lines)


def render_report(diagnosis: Diagnosis, options: RenderOptions) -> str:
    report = render(
        diagnosis, options.colour, options.verbose, lang=options.lang, width=options.width
    )
    return report + "\n"


def render_bad_request(domain: str, message: str, kind: str, options: RenderOptions) -> str:
    return ""  # people read the one line on stderr
