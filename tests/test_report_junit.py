"""`maildiag check --format junit`: valid for the consumers' schemas, counts right.

Every report is validated with xmlschema against ``fixtures/junit/junit.xsd``
(our strict common subset of the Ant/Jenkins format) and against the Jenkins
xUnit plugin's own ``fixtures/junit/junit-10.xsd`` (which rejects a report
that does not validate), and read back with ElementTree and with junitparser,
the way CI servers and their tooling read it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import junitparser
import pytest
import xmlschema

from maildiag.cli import main
from maildiag.model import (
    Diagnosis,
    Discovery,
    Endpoint,
    Outcome,
    ProbeResult,
    Protocol,
    Security,
    Status,
)
from maildiag.report import junit
from tests.lab.certs import TestPKI
from tests.lab.dns_server import DnsServer
from tests.lab.fake_servers import Behaviour, FakeMailHost

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "junit"
XSD = FIXTURES / "junit.xsd"
JENKINS_XSD = FIXTURES / "junit-10.xsd"  # jenkinsci/xunit-plugin, see its header


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(XSD)


@pytest.fixture(scope="module")
def jenkins_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(JENKINS_XSD)


def jenkins_names(classname: str) -> tuple[str, str]:
    """(package, class) as Jenkins' JUnit model shows a classname: split at the
    last dot, "(root)" for a classname without one."""
    package, dot, name = classname.rpartition(".")
    return (package if dot else "(root)"), name


def check_counts(root: ET.Element) -> None:
    """What XSD 1.0 cannot say: every count attribute matches the elements."""
    assert "skipped" not in root.attrib  # junit-10.xsd allows it on <testsuite> only
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for suite in root.iter("testsuite"):
        cases = suite.findall("testcase")
        counted = {
            "tests": len(cases),
            "failures": sum(1 for c in cases if c.find("failure") is not None),
            "errors": sum(1 for c in cases if c.find("error") is not None),
            "skipped": sum(1 for c in cases if c.find("skipped") is not None),
        }
        for key, value in counted.items():
            assert int(suite.get(key, "-1")) == value, (suite.get("name"), key)
            totals[key] += value
    for key in ("tests", "failures", "errors"):
        assert int(root.get(key, "-1")) == totals[key], key


def check_with_junitparser(text: str) -> None:
    """junitparser reads the same suites, cases and results as ElementTree."""
    document = junitparser.JUnitXml.fromstring(text)
    kinds = {
        "failures": junitparser.Failure,
        "errors": junitparser.Error,
        "skipped": junitparser.Skipped,
    }
    for suite in document:
        cases = list(suite)
        assert suite.tests == len(cases)
        for attribute, kind in kinds.items():
            counted = sum(1 for c in cases if any(isinstance(r, kind) for r in c.result))
            assert getattr(suite, attribute) == counted, (suite.name, attribute)
        for case in cases:
            assert case.name and case.classname
            assert len(case.result) <= 1


_JENKINS = xmlschema.XMLSchema(JENKINS_XSD)


def read_report(text: str, schema: xmlschema.XMLSchema) -> ET.Element:
    schema.validate(text)
    _JENKINS.validate(text)
    root = ET.fromstring(text)
    check_counts(root)
    check_with_junitparser(text)
    return root


# -- the schema proves something (failure twins) ------------------------------------

VALID = """<testsuites><testsuite name="s" tests="1" failures="1" errors="0">
<testcase classname="c" name="n" time="0.5"><failure type="critical" message="m">t</failure>
</testcase></testsuite></testsuites>"""


def test_schema_accepts_a_minimal_report(schema: xmlschema.XMLSchema) -> None:
    schema.validate(VALID)


@pytest.mark.parametrize(
    "broken",
    [
        VALID.replace(' name="n"', ""),  # a test case needs a name
        VALID.replace('type="critical" ', ""),  # a failure needs a type
        VALID.replace("</failure>", "</failure><failure type='x'>again</failure>"),  # only one
        VALID.replace('time="0.5"', 'time="-1"'),  # no negative durations
        VALID.replace('tests="1"', 'tests="one"'),
        VALID.replace("<testsuite ", "<testsuite timestamp='2024-05-01T12:00:00Z' "),  # no zone
        VALID.replace("<failure", "<system-out>x</system-out><failure"),  # order matters
    ],
)
def test_schema_rejects_broken_reports(schema: xmlschema.XMLSchema, broken: str) -> None:
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        schema.validate(broken)


def test_jenkins_schema_accepts_a_minimal_report(jenkins_schema: xmlschema.XMLSchema) -> None:
    jenkins_schema.validate(VALID)


def test_jenkins_schema_rejects_skipped_on_testsuites(
    jenkins_schema: xmlschema.XMLSchema, schema: xmlschema.XMLSchema
) -> None:
    """The bug of issue #11: every report had skipped="N" on <testsuites>."""
    broken = VALID.replace("<testsuites>", '<testsuites skipped="0">')
    with pytest.raises(xmlschema.XMLSchemaValidationError, match="skipped"):
        jenkins_schema.validate(broken)
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        schema.validate(broken)  # our subset says the same


def test_count_check_notices_wrong_counts(schema: xmlschema.XMLSchema) -> None:
    wrong = VALID.replace('failures="1"', 'failures="0"')
    schema.validate(wrong)  # the schema cannot tell...
    with pytest.raises(AssertionError):
        check_counts(ET.fromstring(wrong))  # ...but the count check can


# -- hand-made results ------------------------------------------------------------


def _diagnosis(domain: str, *results: ProbeResult, status: Status = Status.OK) -> Diagnosis:
    return Diagnosis(
        domain=domain,
        domain_ascii=domain,
        started_at=datetime(2024, 5, 1, tzinfo=UTC),
        seconds=0.25,
        discovery=Discovery(domain, domain, True),
        results=results,
        findings=(),
        status=status,
    )


def test_control_characters_from_servers_are_replaced(schema: xmlschema.XMLSchema) -> None:
    endpoint = Endpoint(Protocol.IMAP, "mail.kunde.test", 143, Security.STARTTLS)
    result = ProbeResult(
        endpoint, Outcome.PROTOCOL_ERROR, error="junk \x00\x1b[31m\x7f", greeting="\x07hello\ud800"
    )
    root = read_report(
        junit.render(_diagnosis("kunde.test", result, status=Status.CRITICAL)), schema
    )
    out = root.find(".//testcase[@classname='maildiag.kunde_test.imap']/system-out")
    assert out is not None and "junk \ufffd\ufffd[31m" in (out.text or "")


def test_several_domains_make_several_suites(schema: xmlschema.XMLSchema) -> None:
    text = junit.render([_diagnosis("a.test"), _diagnosis("b.test")])
    root = read_report(text, schema)
    assert [s.get("name") for s in root.findall("testsuite")] == ["a.test", "b.test"]
    assert root.get("tests") == "14"  # (1 domain case + 6 skipped slots) per domain


def test_jenkins_shows_one_package_per_domain(schema: xmlschema.XMLSchema) -> None:
    """Dots of the domain must not split Jenkins' package/class: kunde.example.de
    was shown as class "de" of package "maildiag.kunde.example"."""
    endpoint = Endpoint(Protocol.IMAP, "mail.kunde.example.de", 993, Security.TLS)
    result = ProbeResult(endpoint, Outcome.OK, timings={"connect": 0.01})
    root = read_report(junit.render(_diagnosis("kunde.example.de", result)), schema)
    names = {jenkins_names(case.get("classname", "")) for case in root.iter("testcase")}
    assert {package for package, _ in names} == {"maildiag.kunde_example_de"}
    assert {name for _, name in names} == {"discovery", "imap", "pop3", "smtp"}
    suite = root.find("testsuite")
    assert suite is not None and suite.get("package") == "maildiag.kunde_example_de"


def test_error_report_for_an_invalid_domain(schema: xmlschema.XMLSchema) -> None:
    root = read_report(junit.render_error("a@b", "not a domain"), schema)
    error = root.find(".//testcase/error")
    assert error is not None and error.get("type") == "invalid_domain"
    assert root.get("errors") == "1"


# -- the real CLI against fake servers ------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    pki = TestPKI(tmp_path_factory.mktemp("pki"))
    zones = {
        "good.test": {"@": {"MX": ["10 mail.good.test."]}, "mail": {"A": ["127.0.0.84"]}},
        "mixed.test": {
            "@": {"MX": ["10 mail.mixed.test."]},
            "mail": {"A": ["127.0.0.85"]},
            "_pop3._tcp": {"SRV": ["0 0 0 ."]},  # RFC 6186 §3.4: POP3 with STLS not offered
        },
    }
    hosts = [
        FakeMailHost(
            "127.0.0.84", pki.good("mail.good.test").server_context(), hostname="mail.good.test"
        ),
        FakeMailHost(
            "127.0.0.85",
            pki.expiring_in(10, "mail.mixed.test").server_context(),
            hostname="mail.mixed.test",
            behaviours={"submission": Behaviour.NO_STARTTLS, "pop3s": None, "pop3": None},
        ),
    ]
    with DnsServer(zones, "127.0.0.84") as dns:
        for host in hosts:
            host.start()
        try:
            yield [
                "--nameserver",
                dns.nameserver,
                "--ca-file",
                str(pki.ca_pem_path),
                "--no-autoconfig",
                "--timeout",
                "3",
            ]
        finally:
            for host in hosts:
                host.stop()


def run_check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["check", "--format", "junit", *args])
    return code, capsys.readouterr().out


def cases(root: ET.Element) -> dict[str, ET.Element]:
    return {case.get("name", ""): case for case in root.iter("testcase")}


def test_healthy_domain_passes_every_case(lab, capsys, schema) -> None:
    code, text = run_check(capsys, "good.test", *lab)
    root = read_report(text, schema)
    assert code == 0
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "good.test"
    assert (
        suite.get("tests"),
        suite.get("failures"),
        suite.get("errors"),
        suite.get("skipped"),
    ) == ("7", "0", "0", "0")
    by_name = cases(root)
    imaps = by_name["IMAP mail.good.test:993 (tls)"]
    assert imaps.get("classname") == "maildiag.good_test.imap"
    assert 0 < float(imaps.get("time", "0")) < 3
    assert by_name["SMTP mail.good.test:587 (starttls)"].get("classname") == (
        "maildiag.good_test.smtp"
    )
    assert by_name["Domain good.test (DNS and discovery)"].get("classname") == (
        "maildiag.good_test.discovery"
    )
    properties = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert properties["status"] == "OK"


def test_problems_become_failures_and_skips(lab, capsys, schema) -> None:
    code, text = run_check(capsys, "mixed.test", *lab)
    root = read_report(text, schema)
    assert code == 2
    by_name = cases(root)

    starttls = by_name["SMTP mail.mixed.test:587 (starttls)"].find("failure")
    assert starttls is not None
    assert starttls.get("type") == "critical"
    assert starttls.get("message") == "No encryption offered on this port"
    body = starttls.text or ""
    assert "STARTTLS_MISSING" in body and "sends the password" in body and "Fix: " in body

    expiring = by_name["IMAP mail.mixed.test:993 (tls)"].find("failure")
    assert expiring is not None
    assert (expiring.get("type"), expiring.get("message")) == (
        "warning",
        "The certificate expires soon",
    )

    # STLS declared not offered by SRV; POP3 over TLS guessed, but nothing listens.
    declined = by_name["POP3 (starttls)"].find("skipped")
    assert declined is not None and "_pop3._tcp" in declined.get("message", "")
    refused = by_name["POP3 mail.mixed.test:995 (tls)"].find("skipped")
    assert refused is not None and "not applicable" in refused.get("message", "")

    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("failures"), suite.get("skipped"), suite.get("errors")) == ("4", "2", "0")


def test_missing_domain_is_a_failure(lab, capsys, schema) -> None:
    """Behaviour change (issue #11): NXDOMAIN is CRITICAL (exit 2), a checked answer,
    so a <failure>; <error> stays for what could not be judged."""
    code, text = run_check(capsys, "absent.good.test", *lab)
    root = read_report(text, schema)
    assert code == 2
    failure = cases(root)["Domain absent.good.test (DNS and discovery)"].find("failure")
    assert failure is not None
    assert failure.get("message") == "The domain does not exist in DNS"
    assert failure.get("type") == "critical"
    suite = root.find("testsuite")
    assert suite is not None and suite.get("skipped") == "6"
    assert root.get("errors") == "0"


def test_invalid_domain_still_gives_a_valid_report(lab, capsys, schema) -> None:
    code, text = run_check(capsys, "https://good.test/", *lab)
    root = read_report(text, schema)
    assert code == 3
    assert root.get("errors") == "1"
