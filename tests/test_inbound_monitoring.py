"""The inbound path in the monitoring formats: Nagios perfdata and a JUnit test case per MX.

Scripted MX servers on port 25 (see tests/test_inbound.py) answer as a
provider's MX would; the reports are read the way their consumers read
them (the Nagios, Icinga 2 and nagiosplugin readers of
tests/test_report_nagios.py, the JUnit schemas and junitparser of
tests/test_report_junit.py). Perfdata labels and JUnit names are an API:
the inbound ones are new, and a run without an address has exactly the
labels and cases it had before.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import xmlschema

from maildiag.report import junit, nagios
from maildiag.runner import CheckRequest, diagnose
from tests import test_inbound
from tests.lab.fake_servers import Behaviour
from tests.test_inbound import check, mx_domain
from tests.test_report_junit import XSD, read_report
from tests.test_report_nagios import read_output

FULL = "552 5.2.2 <info@x>: Recipient address rejected: Mailbox is full"
GREYLISTED = "450 4.2.0 <info@x>: Recipient address rejected: Greylisted, see postgrey"


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(XSD)


def _label(host: str) -> str:
    return "inbound_" + host.replace(".", "_").replace("-", "_")


def _mx_cases(root: ET.Element) -> dict[str, ET.Element]:
    return {
        c.get("name", ""): c
        for c in root.iter("testcase")
        if c.get("classname", "").endswith(".inbound")
    }


def _discovery_case(root: ET.Element) -> ET.Element:
    (case,) = [c for c in root.iter("testcase") if c.get("classname", "").endswith(".discovery")]
    return case


def test_an_accepting_mx_is_perfdata_1_and_a_passing_test_case(schema):
    with mx_domain({}) as (domain, _):
        diagnosis = check(domain)
    mx = f"mx1.{domain}"
    _, long_text, perf = read_output(nagios.render(diagnosis))
    assert perf["inbound_accepted"]["value"] == "1"
    assert perf[f"{_label(mx)}_accepted"]["value"] == "1"
    assert perf[f"{_label(mx)}_reply"]["value"] == "250"
    assert perf[f"{_label(mx)}_time"]["uom"] == "s"
    assert any(line.startswith(f"MX 10 {mx} (") and ": accepted," in line for line in long_text)
    root = read_report(junit.render(diagnosis), schema)
    case = _mx_cases(root)[f"MX {mx}:25"]
    assert case.get("classname") == f"maildiag.{domain.replace('.', '_')}.inbound"
    assert list(case) and case.find("failure") is None and case.find("skipped") is None
    assert f"address checked: info@{domain}" in (case.findtext("system-out") or "")


def test_a_full_mailbox_is_perfdata_0_552_and_a_failing_test_case_of_its_mx(schema):
    with mx_domain({"mx_replies": {"rcpt": FULL}}) as (domain, _):
        diagnosis = check(domain)
    mx = f"mx1.{domain}"
    status, long_text, perf = read_output(nagios.render(diagnosis))
    assert status.startswith("MAILDIAG CRITICAL")
    assert perf["inbound_accepted"]["value"] == "0"
    assert perf[f"{_label(mx)}_accepted"]["value"] == "0"
    assert perf[f"{_label(mx)}_reply"]["value"] == "552"
    assert any(": mailbox full," in line and "Mailbox is full" in line for line in long_text)
    root = read_report(junit.render(diagnosis), schema)
    failure = _mx_cases(root)[f"MX {mx}:25"].find("failure")
    assert failure is not None and failure.get("type") == "critical"
    assert "INBOUND_MAILBOX_FULL" in (failure.text or "")
    # Filed under its MX, not again under the domain's discovery case.
    assert "INBOUND_MAILBOX_FULL" not in ET.tostring(_discovery_case(root), "unicode")


def test_the_mx_that_decides_fails_and_the_one_that_could_not_be_asked_is_skipped(schema):
    unknown = "550 5.1.1 <info@x>: Recipient address rejected: User unknown"
    with mx_domain({"listen": False}, {"mx_replies": {"rcpt": unknown}}) as (domain, _):
        diagnosis = check(domain)
    first, second = f"mx1.{domain}", f"mx2.{domain}"
    _, long_text, perf = read_output(nagios.render(diagnosis))
    assert perf["inbound_accepted"]["value"] == "0"
    assert f"{_label(first)}_accepted" not in perf and f"{_label(first)}_reply" not in perf
    assert f"{_label(first)}_time" in perf
    assert perf[f"{_label(second)}_reply"]["value"] == "550"
    assert any(line.startswith(f"MX 10 {first}") and ": refused" in line for line in long_text)
    cases = _mx_cases(read_report(junit.render(diagnosis), schema))
    assert set(cases) == {f"MX {first}:25", f"MX {second}:25"}
    assert cases[f"MX {first}:25"].find("skipped") is not None
    failure = cases[f"MX {second}:25"].find("failure")
    assert failure is not None and "INBOUND_UNKNOWN_USER" in (failure.text or "")


def test_greylisting_passes_and_reports_its_450(schema):
    # Greylisting is normal (an INFO finding): no failure, but the reply is graphed.
    with mx_domain({"mx_replies": {"rcpt": GREYLISTED}}) as (domain, _):
        diagnosis = check(domain)
    mx = f"mx1.{domain}"
    _, _, perf = read_output(nagios.render(diagnosis))
    assert perf[f"{_label(mx)}_accepted"]["value"] == "0"
    assert perf[f"{_label(mx)}_reply"]["value"] == "450"
    case = _mx_cases(read_report(junit.render(diagnosis), schema))[f"MX {mx}:25"]
    assert case.find("failure") is None and case.find("skipped") is None


def test_port_25_blocked_everywhere_is_no_number_and_skipped_cases(schema):
    silent = {"behaviour": Behaviour.NEVER_GREET}
    with mx_domain(silent, silent) as (domain, _):
        diagnosis = check(domain, timeout=1.0)
    _, _, perf = read_output(nagios.render(diagnosis))
    assert "inbound_accepted" not in perf  # no "U": Icinga 2 cannot parse it
    assert {f"{_label(f'mx{n}.{domain}')}_time" for n in (1, 2)} <= set(perf)
    cases = _mx_cases(read_report(junit.render(diagnosis), schema))
    assert len(cases) == 2
    for case in cases.values():
        skipped = case.find("skipped")
        assert skipped is not None and case.find("failure") is None
        assert "port 25 seems blocked from this network" in skipped.get("message", "")


def test_without_an_address_the_labels_and_cases_are_those_of_before(schema):
    # The twin: a run without --address/--user has no inbound item and no MX case,
    # and every label of it is also in the run with an address (none renamed).
    with mx_domain({}) as (domain, _):
        with_address = check(domain)
        without = diagnose(
            CheckRequest(domain, nameserver=test_inbound._NAMESERVER, autoconfig=False, timeout=2)
        )
    assert without.inbound is None
    _, _, plain_perf = read_output(nagios.render(without))
    _, _, inbound_perf = read_output(nagios.render(with_address))
    assert not [label for label in plain_perf if label.startswith("inbound_")]
    assert set(plain_perf) <= set(inbound_perf)
    assert _mx_cases(read_report(junit.render(without), schema)) == {}
    plain_names = {
        c.get("name") for c in read_report(junit.render(without), schema).iter("testcase")
    }
    names = {
        c.get("name") for c in read_report(junit.render(with_address), schema).iter("testcase")
    }
    assert plain_names <= names


def test_the_mx_lines_read_in_german_and_the_labels_do_not_change(schema):
    with mx_domain({"mx_replies": {"rcpt": FULL}}) as (domain, _):
        diagnosis = check(domain)
    _, long_text, perf = read_output(nagios.render(diagnosis, lang="de"))
    _, _, english = read_output(nagios.render(diagnosis))
    assert set(perf) == set(english)
    assert any(line.startswith(f"Eingangsweg für info@{domain}") for line in long_text)
    assert any(": Postfach voll," in line for line in long_text)
    names = {
        c.get("name") for c in read_report(junit.render(diagnosis, "de"), schema).iter("testcase")
    }
    assert f"MX mx1.{domain}:25" in names
