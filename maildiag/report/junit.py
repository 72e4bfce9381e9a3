"""The diagnosis as JUnit XML, so CI systems list each endpoint as a test case.

One ``<testsuite>`` per domain inside ``<testsuites>``:

* one test case per probed endpoint (classname ``maildiag.<domain>.<protocol>``,
  name the endpoint's label, time its total seconds);
* one test case for the findings that belong to no endpoint (DNS, discovery,
  "no working IMAP server"), classname ``maildiag.<domain>.discovery``;
* with an address (``--user``, ``--address``), one test case per MX host of
  the inbound path (classname ``maildiag.<domain>.inbound``, name
  ``MX <host>:25``, time its dialogue): it fails with the inbound finding
  about that MX (mailbox full, unknown user, ...), passes when the MX
  accepted the address or another MX decided, and is skipped when it could
  not be asked and another MX answered;
* one skipped test case for each protocol/security slot that does not apply:
  declared "not offered" by SRV, nothing found for it, or only a guessed port
  where nothing listens (an INFO finding).

Choices, so that CI dashboards stay meaningful:

* Warnings are failures too, with ``type="warning"`` (critical ones have
  ``type="critical"``): a CI job is a gate, and a certificate that expires in
  ten days should stop it; consumers that want to let warnings pass can filter
  on the type.
* A test case carries at most one ``<failure>`` (Ant's format allows one, and
  several consumers read only the first): its message is the title of the
  worst finding, its text lists every finding of the endpoint with
  explanation and fix.
* ``<error>`` means "could not judge": the domain's test case when the
  overall status is UNKNOWN (the domain does not exist, DNS failed), or a
  domain that was not a valid name at all.

Class names: Jenkins (and the xUnit plugin) split a classname at its last
dot into package and class, so the dots of the domain would make
``maildiag.kunde.example.de`` the class ``de`` of package
``maildiag.kunde.example``. ``<domain>`` is therefore the A-label form with
every dot (and anything but letters, digits, ``-`` and ``_``) as ``_``:
package ``maildiag.kunde_example_de``, classes ``imap``, ``pop3``, ``smtp``
and ``discovery``.

The format follows ``fixtures/junit/junit.xsd`` (our strict subset) and the
Jenkins xUnit plugin's ``fixtures/junit/junit-10.xsd``, which validates every
report and allows no ``skipped`` count on ``<testsuites>`` (only on each
``<testsuite>``).

Language: the messages and texts of failures, errors and skips are in the
report's language; class and test case names stay English, because CI
systems keep a test's history by its name.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .. import __version__
from ..model import (
    Diagnosis,
    Finding,
    InboundResult,
    MxAttempt,
    Outcome,
    ProbeResult,
    Protocol,
    Security,
    Severity,
    Status,
)
from ..mx_analysis import inbound_findings_by_mx
from ..protocols.registry import SLOTS, SRV_SERVICES
from .vocabulary import Words, localised, mx_word, outcome_word

if TYPE_CHECKING:
    from .formats import RenderOptions

# The texts of failures, errors and skips (context "junit" in the catalogue).
TEXTS = {
    "fix": "Fix: {fix}",
    "nothing_checked": "nothing could be checked",
    "not_applicable": "not applicable: {reason}",
    "srv_declined": "not applicable: the SRV record {service} says the service is not offered",
    "no_server": "not applicable: no server found for it",
}

# XML 1.0 §2.2: characters a document may contain. A server greeting may hold
# anything, and one control byte would make the whole report unreadable.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: str) -> str:
    return _NOT_XML.sub("\ufffd", value)


def package_name(domain: str) -> str:
    """``maildiag.<domain with dots as underscores>``: one Jenkins package per domain."""
    return "maildiag." + (re.sub(r"[^0-9A-Za-z_-]", "_", domain) or "_")


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"


def _timestamp(moment: datetime) -> str:
    # Ant writes local time without a zone; UTC keeps reports comparable.
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _finding_text(findings: Sequence[Finding], words: Words) -> str:
    blocks = [
        f"[{f.severity.value.upper()}] {f.code}: {f.title}\n{f.explanation}\n"
        + words("fix", fix=f.fix)
        for f in findings
    ]
    return _text("\n\n".join(blocks))


def _worst(findings: Sequence[Finding]) -> Finding:
    return max(findings, key=lambda f: f.severity.rank)


class _Suite:
    def __init__(self, name: str, words: Words) -> None:
        self.words = words
        self.element = ET.Element("testsuite", name=_text(name))
        self.tests = self.failures = self.errors = self.skipped = 0
        self.time = 0.0

    def case(self, classname: str, name: str, seconds: float | None = None) -> ET.Element:
        self.tests += 1
        attrs = {"classname": _text(classname), "name": _text(name)}
        if seconds is not None:
            attrs["time"] = _seconds(seconds)
        return ET.SubElement(self.element, "testcase", attrs)

    def fail(self, case: ET.Element, findings: Sequence[Finding]) -> None:
        worst = _worst(findings)
        self.failures += 1
        failure = ET.SubElement(
            case, "failure", message=_text(worst.title), type=worst.severity.value
        )
        failure.text = _finding_text(findings, self.words)

    def error(self, case: ET.Element, message: str, text: str, kind: str = "unknown") -> None:
        self.errors += 1
        element = ET.SubElement(case, "error", message=_text(message), type=kind)
        element.text = _text(text)

    def skip(self, case: ET.Element, message: str) -> None:
        self.skipped += 1
        ET.SubElement(case, "skipped", message=_text(message))

    def finish(self, seconds: float, timestamp: datetime | None = None) -> ET.Element:
        self.time = seconds
        attrs = {
            "tests": str(self.tests),
            "failures": str(self.failures),
            "errors": str(self.errors),
            "skipped": str(self.skipped),
            "time": _seconds(seconds),
        }
        if timestamp is not None:
            attrs["timestamp"] = _timestamp(timestamp)
        self.element.attrib.update(attrs)
        return self.element


def _out(case: ET.Element, lines: Iterable[str]) -> None:
    text = "\n".join(lines)
    if text:
        ET.SubElement(case, "system-out").text = _text(text)


def _timings_line(timings: Mapping[str, float]) -> str:
    return "timings: " + ", ".join(
        f"{step} {seconds * 1000:.1f} ms" for step, seconds in timings.items()
    )


def _endpoint_facts(result: ProbeResult) -> list[str]:
    lines = [f"outcome: {result.outcome.value}"]
    if result.error:
        lines.append(f"error: {result.error}")
    if result.address:
        lines.append(f"address: {result.address}")
    if result.endpoint.sources:
        lines.append("found via: " + ", ".join(result.endpoint.sources))
    if result.timings:
        lines.append(_timings_line(result.timings))
    if result.greeting:
        lines.append(f"greeting: {result.greeting}")
    tls = result.tls
    if tls is not None:
        lines.append(f"tls: {tls.version} {tls.cipher}, certificate {tls.trust.value}")
        if tls.leaf is not None:
            lines.append(
                f"certificate: {tls.leaf.subject}, expires {tls.leaf.not_after.isoformat()}"
            )
    return lines


def _mx_facts(inbound: InboundResult, attempt: MxAttempt) -> list[str]:
    lines = [f"address checked: {inbound.address}", f"preference: {attempt.preference}"]
    lines.append(f"outcome: {attempt.outcome.value}, at {attempt.step.value}")
    if attempt.verdict is not None:
        lines.append(f"verdict: {attempt.verdict.value}")
    if attempt.reply:
        lines.append(f"reply: {attempt.reply}")
    if attempt.error:
        lines.append(f"error: {attempt.error}")
    if attempt.address:
        lines.append(f"address: {attempt.address}")
    if attempt.timings:
        lines.append(_timings_line(attempt.timings))
    if attempt.banner:
        lines.append(f"banner: {attempt.banner}")
    return lines


def _inbound_cases(
    suite: _Suite, base: str, inbound: InboundResult, by_mx: dict[int, list[Finding]], lang: str
) -> None:
    for index, attempt in enumerate(inbound.attempts):
        seconds = sum(attempt.timings.values())
        case = suite.case(f"{base}.inbound", f"MX {attempt.host}:25", seconds)
        own = by_mx.get(index, [])
        bad = [f for f in own if f.severity.rank >= Severity.WARNING.rank]
        if bad:
            suite.fail(case, bad)
        elif attempt.verdict is None:
            # Not asked, like an endpoint that did not answer: port 25 blocked
            # on this network (an INFO finding), or another MX decided.
            info = [f for f in own if f.severity is Severity.INFO]
            reason = info[0].title if info else mx_word(attempt, lang)
            suite.skip(case, suite.words("not_applicable", reason=reason))
        _out(case, _mx_facts(inbound, attempt))


def _domain_facts(diagnosis: Diagnosis) -> list[str]:
    discovery = diagnosis.discovery
    lines = [f"status: {diagnosis.status.name}", f"domain exists: {discovery.domain_exists}"]
    if discovery.mx:
        lines.append("MX: " + ", ".join(f"{m.preference} {m.host}" for m in discovery.mx))
    for record in discovery.srv:
        lines.append(
            f"SRV {record.service}: {record.priority} {record.weight} {record.port} {record.target}"
        )
    for problem in discovery.problems:
        lines.append(f"DNS problem: {problem.query}: {problem.kind} ({problem.detail})")
    return lines


def _testsuite(diagnosis: Diagnosis, index: int, lang: str) -> ET.Element:
    words = Words(lang, "junit", TEXTS)
    diagnosis = localised(diagnosis, lang)
    suite = _Suite(diagnosis.domain, words)
    suite.element.set("id", str(index))
    base = package_name(diagnosis.domain_ascii)
    suite.element.set("package", base)
    properties = ET.SubElement(suite.element, "properties")
    for name, value in (
        ("maildiag.version", __version__),
        ("domain_ascii", diagnosis.domain_ascii),
        ("status", diagnosis.status.name),
        ("exit_code", str(int(diagnosis.status))),
    ):
        ET.SubElement(properties, "property", name=name, value=_text(value))

    inbound = diagnosis.inbound
    by_mx = inbound_findings_by_mx(inbound, diagnosis.findings) if inbound else {}
    # The inbound check's findings go to the test cases of their MX hosts.
    filed = {id(f) for found in by_mx.values() for f in found}
    general = [f for f in diagnosis.findings if f.endpoint is None and id(f) not in filed]
    case = suite.case(
        f"{base}.discovery",
        f"Domain {diagnosis.domain} (DNS and discovery)",
        diagnosis.discovery.seconds,
    )
    bad = [f for f in general if f.severity.rank >= Severity.WARNING.rank]
    if diagnosis.status is Status.UNKNOWN:
        reason = _worst(bad).title if bad else words("nothing_checked")
        suite.error(case, reason, _finding_text(bad or general, words))
    elif bad:
        suite.fail(case, bad)
    _out(case, _domain_facts(diagnosis))

    probed = set()
    for result in diagnosis.results:
        endpoint = result.endpoint
        probed.add((endpoint.protocol, endpoint.security))
        own = [f for f in diagnosis.findings if f.endpoint == endpoint]
        case = suite.case(f"{base}.{endpoint.protocol.value}", endpoint.label, result.total_seconds)
        bad = [f for f in own if f.severity.rank >= Severity.WARNING.rank]
        if bad:
            suite.fail(case, bad)
        elif result.outcome is not Outcome.OK:
            info = [f for f in own if f.severity is Severity.INFO]
            reason = info[0].title if info else outcome_word(result.outcome, lang)
            suite.skip(case, words("not_applicable", reason=reason))
        _out(case, _endpoint_facts(result))

    if inbound is not None:
        _inbound_cases(suite, base, inbound, by_mx, lang)

    declined = _declined_slots(diagnosis)
    for protocol, security, _ in SLOTS:
        if (protocol, security) in probed:
            continue
        label = f"{protocol.value.upper()} ({security.value})"
        case = suite.case(f"{base}.{protocol.value}", label, 0.0)
        if (protocol, security) in declined:
            suite.skip(case, words("srv_declined", service=declined[protocol, security]))
        else:
            suite.skip(case, words("no_server"))
    return suite.finish(diagnosis.seconds, diagnosis.started_at)


def _declined_slots(diagnosis: Diagnosis) -> dict[tuple[Protocol, Security], str]:
    return {
        SRV_SERVICES[record.service]: record.service
        for record in diagnosis.discovery.srv
        if record.not_offered and record.service in SRV_SERVICES
    }


def _document(suites: Iterable[ET.Element]) -> str:
    root = ET.Element("testsuites", name="maildiag")
    # junit-10.xsd (Jenkins xUnit) has no "skipped" on <testsuites>: the
    # per-suite counts carry it.
    totals = dict.fromkeys(("tests", "failures", "errors"), 0)
    seconds = 0.0
    for suite in suites:
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
        seconds += float(suite.get("time", "0"))
    root.attrib.update({key: str(value) for key, value in totals.items()})
    root.set("time", _seconds(seconds))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def render(diagnoses: Diagnosis | Iterable[Diagnosis], lang: str = "en") -> str:
    """A JUnit XML document for one diagnosis or several (one testsuite each)."""
    if isinstance(diagnoses, Diagnosis):
        diagnoses = [diagnoses]
    return _document(_testsuite(d, i, lang) for i, d in enumerate(diagnoses))


def render_error(domain: str, message: str, kind: str = "invalid_domain", lang: str = "en") -> str:
    """A report for a domain that could not be checked at all (one test case, in error)."""
    suite = _Suite(domain or "(empty)", Words(lang, "junit", TEXTS))
    case = suite.case(f"{package_name(domain)}.discovery", f"Domain {domain or '(empty)'}", 0.0)
    suite.error(case, message, message, kind)
    return _document([suite.finish(0.0)])


def render_report(diagnosis: Diagnosis, options: RenderOptions) -> str:
    return render(diagnosis, options.lang)


def render_bad_request(domain: str, message: str, kind: str, options: RenderOptions) -> str:
    return render_error(domain, message, kind, options.lang)
