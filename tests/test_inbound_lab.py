"""The inbound path against the real lab: Postfix on port 25 as the MX of lab.test.

Postfix refuses a full mailbox at RCPT with 552 5.2.2 through Dovecot's
quota-status policy service (check_policy_service), an unknown user with
550 5.1.1 from its virtual mailbox map, and a domain it does not receive
for with 554 5.7.1 (reject_unauth_destination). The message counts of the
mailboxes before and after prove that nothing was delivered.
"""

from __future__ import annotations

import contextlib
import io
import json

import jsonschema
import pytest
import xmlschema

from maildiag.cli import main
from maildiag.credentials_input import Credentials, Secret
from maildiag.model import InboundStep, InboundVerdict, MxOutcome, Severity
from maildiag.report import junit, nagios
from maildiag.runner import CheckRequest, diagnose
from tests.lab.dns_server import DnsServer
from tests.lab.real import MailLab
from tests.test_report_json import SCHEMA
from tests.test_report_junit import XSD, read_report
from tests.test_report_nagios import read_output

pytestmark = pytest.mark.lab

DNS_ADDRESS = "127.0.4.21"
SHARED_DNS_ADDRESS = "127.0.4.22"


def _lab_zone(mail_lab: MailLab, mx: str) -> dict:
    zone: dict = {"@": {"MX": [f"10 {mx}."]}}
    for name, address in mail_lab.dns.items():
        zone[name.removesuffix(f".{mail_lab.domain}")] = {"A": [address]}
    return zone


@pytest.fixture(scope="module")
def dns(mail_lab: MailLab):
    zones = {
        mail_lab.domain: _lab_zone(mail_lab, mail_lab.good.name),
        # A domain whose MX is the lab's Postfix, which does not receive mail for it.
        "fremd.test": {"@": {"MX": [f"10 {mail_lab.good.name}."]}},
    }
    with DnsServer(zones, DNS_ADDRESS) as server:
        yield server


def check(mail_lab: MailLab, dns: DnsServer, address: str, *, user=None):
    credentials = None if user is None else Credentials(user.address, Secret(user.password))
    return diagnose(
        CheckRequest(
            address.rpartition("@")[2],
            nameserver=dns.nameserver,
            ca_file=str(mail_lab.ca_pem_path),
            autoconfig=False,
            timeout=5,
            deadline=30,
            address=None if user is not None else address,
            credentials=credentials,
        )
    )


def inbound(diagnosis) -> dict[str, Severity]:
    return {f.code: f.severity for f in diagnosis.findings if f.code.startswith("INBOUND_")}


@pytest.mark.parametrize("who", ["carol", "erin"])
def test_a_full_mailbox_is_refused_at_rcpt_and_named(mail_lab, dns, who):
    user = getattr(mail_lab, who)  # carol: storage full; erin: message count full
    before = mail_lab.inbox_state(user.address)
    diagnosis = check(mail_lab, dns, user.address)
    assert mail_lab.inbox_state(user.address) == before
    assert inbound(diagnosis) == {"INBOUND_MAILBOX_FULL": Severity.CRITICAL}
    finding = next(f for f in diagnosis.findings if f.code == "INBOUND_MAILBOX_FULL")
    assert user.address in finding.explanation
    assert "552 5.2.2" in finding.explanation and "Mailbox is full" in finding.explanation
    (attempt,) = diagnosis.inbound.attempts
    assert (attempt.host, attempt.address) == (mail_lab.good.name, mail_lab.good.address)
    assert attempt.step is InboundStep.RCPT


def test_a_normal_user_gets_no_inbound_problem_and_nothing_is_delivered(mail_lab, dns):
    user = mail_lab.alice
    before = mail_lab.inbox_state(user.address)
    diagnosis = check(mail_lab, dns, user.address, user=user)  # --user: login and inbound path
    assert mail_lab.inbox_state(user.address) == before
    assert inbound(diagnosis) == {"INBOUND_ACCEPTED": Severity.OK}
    (attempt,) = diagnosis.inbound.attempts
    assert attempt.verdict is InboundVerdict.ACCEPTED
    # Postfix offers STARTTLS on 25 with the lab certificate of mail.lab.test.
    assert attempt.starttls_offered and attempt.tls is not None
    assert attempt.tls.hostname_matches and attempt.tls_error is None
    assert any(f.code == "AUTH_OK" for f in diagnosis.findings)


def test_an_unknown_user_gets_550_5_1_1(mail_lab, dns):
    diagnosis = check(mail_lab, dns, f"niemand@{mail_lab.domain}")
    assert inbound(diagnosis) == {"INBOUND_UNKNOWN_USER": Severity.CRITICAL}
    assert diagnosis.inbound.decisive.reply.startswith("550 5.1.1")


def test_an_mx_that_does_not_receive_for_the_domain_denies_relaying(mail_lab, dns):
    diagnosis = check(mail_lab, dns, "info@fremd.test")
    assert inbound(diagnosis) == {"INBOUND_RELAY_DENIED": Severity.CRITICAL}
    assert "Relay access denied" in diagnosis.inbound.decisive.reply


def test_an_mx_certificate_for_another_name_is_recorded_not_a_failure(mail_lab):
    """The MX is wronghost.lab.test, whose certificate names web123.provider.test."""
    zones = {mail_lab.domain: _lab_zone(mail_lab, mail_lab.wrong_host.name)}
    with DnsServer(zones, SHARED_DNS_ADDRESS) as shared:
        before = mail_lab.inbox_state(mail_lab.alice.address)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            main(
                [
                    "check",
                    mail_lab.domain,
                    "--address",
                    mail_lab.alice.address,
                    "--format",
                    "json",
                    "--nameserver",
                    shared.nameserver,
                    "--ca-file",
                    str(mail_lab.ca_pem_path),
                    "--no-autoconfig",
                    "--timeout",
                    "5",
                ]
            )
        assert mail_lab.inbox_state(mail_lab.alice.address) == before
    document = json.loads(out.getvalue())
    jsonschema.validate(document, SCHEMA)
    assert document["inbound"]["verdict"] == "accepted"
    (attempt,) = document["inbound"]["attempts"]
    assert attempt["outcome"] == MxOutcome.ANSWERED.value
    assert attempt["tls"]["hostname_matches"] is False
    assert attempt["tls"]["certificate"]["sans"] == [mail_lab.wrong_host_name]
    inbound_codes = [f["code"] for f in document["findings"] if f["endpoint"] is None]
    assert "INBOUND_ACCEPTED" in inbound_codes
    assert not [c for c in inbound_codes if c.startswith("TLS_")]


def test_monitoring_formats_show_the_real_mx_verdict(mail_lab, dns):
    # Nagios perfdata and the JUnit test case of the lab's Postfix, for a full
    # mailbox (552 at RCPT) and its healthy twin (250).
    label = "inbound_" + mail_lab.good.name.replace(".", "_").replace("-", "_")
    schema = xmlschema.XMLSchema(XSD)
    for user, accepted, code in ((mail_lab.carol, "0", "552"), (mail_lab.alice, "1", "250")):
        diagnosis = check(mail_lab, dns, user.address)
        _, _, perf = read_output(nagios.render(diagnosis))
        assert perf["inbound_accepted"]["value"] == accepted
        assert perf[f"{label}_reply"]["value"] == code
        root = read_report(junit.render(diagnosis), schema)
        (case,) = [
            c for c in root.iter("testcase") if c.get("name") == f"MX {mail_lab.good.name}:25"
        ]
        assert (case.find("failure") is not None) is (accepted == "0")
