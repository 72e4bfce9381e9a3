"""The inbound path against scripted MX servers on port 25 (tests/lab/fake_servers.py).

Each test gives a domain its own zone on the lab DNS server, with MX hosts
on 127.0.6.x, and runs the whole check with ``--address``: greylisting,
relay denied, a blocked client, MX hosts that never answer on port 25
(inconclusive, not "down"), MX hosts that refuse, a null MX, the deadline.
What the fake MX received proves the dialogue stopped before DATA.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import time
from collections.abc import Iterator

import jsonschema
import pytest

from maildiag.cli import main
from maildiag.model import InboundStep, InboundVerdict, MxOutcome, Severity
from maildiag.probes.inbound import classify_reply
from maildiag.runner import CheckRequest, diagnose
from tests.lab.certs import TestPKI
from tests.lab.dns_server import DnsServer
from tests.lab.fake_servers import Behaviour, FakeMailServer
from tests.test_report_json import SCHEMA

DNS_ADDRESS = "127.0.6.1"
_HOSTS = itertools.count(10)


# -- what a reply means: recorded replies of real servers --------------------------

RCPT = InboundStep.RCPT
REPLIES = [
    # Postfix, virtual_mailbox_maps without the address
    (
        550,
        "5.1.1",
        "<x@lab.test>: Recipient address rejected: User unknown in virtual mailbox table",
        RCPT,
        InboundVerdict.UNKNOWN_USER,
    ),
    # Gmail
    (
        550,
        "5.1.1",
        "The email account that you tried to reach does not exist.",
        RCPT,
        InboundVerdict.UNKNOWN_USER,
    ),
    # Microsoft 365 directory-based edge blocking
    (
        550,
        "5.4.1",
        "Recipient address rejected: Access denied. AS(201806281)",
        RCPT,
        InboundVerdict.UNKNOWN_USER,
    ),
    # Dovecot quota-status behind Postfix check_policy_service
    (
        552,
        "5.2.2",
        "<carol@lab.test>: Recipient address rejected: Mailbox is full",
        RCPT,
        InboundVerdict.MAILBOX_FULL,
    ),
    (
        552,
        "5.2.2",
        "The email account that you tried to reach is over quota.",
        RCPT,
        InboundVerdict.MAILBOX_FULL,
    ),
    (452, "4.2.2", "Mailbox full", RCPT, InboundVerdict.MAILBOX_FULL),
    # Postfix reject_unauth_destination; Exchange for a domain it does not accept
    (554, "5.7.1", "<x@other.test>: Relay access denied", RCPT, InboundVerdict.RELAY_DENIED),
    (
        550,
        "5.7.54",
        "SMTP; Unable to relay recipient in non-accepted domain",
        RCPT,
        InboundVerdict.RELAY_DENIED,
    ),
    # postgrey, sqlgrey, rspamd
    (
        450,
        "4.2.0",
        "<x@lab.test>: Recipient address rejected: Greylisted, see https://postgrey.schweikert.ch/help/lab.test.html",
        RCPT,
        InboundVerdict.GREYLISTED,
    ),
    (
        451,
        "4.7.1",
        "Greylisting in action, please come back later",
        RCPT,
        InboundVerdict.GREYLISTED,
    ),
    (451, "4.7.1", "Try again later", RCPT, InboundVerdict.GREYLISTED),
    # Postfix: a lookup table failed; not greylisting
    (451, "4.3.0", "<x@lab.test>: Temporary lookup failure", RCPT, InboundVerdict.DEFERRED),
    # blocklists and client checks, at the banner and at RCPT
    (
        554,
        "5.7.1",
        "Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
        InboundStep.BANNER,
        InboundVerdict.BLOCKED,
    ),
    (
        554,
        None,
        "mx.example.test ESMTP not accepting messages",
        InboundStep.BANNER,
        InboundVerdict.BLOCKED,
    ),
    (
        450,
        "4.7.1",
        "<maildiag.invalid>: Helo command rejected: Host not found",
        RCPT,
        InboundVerdict.BLOCKED,
    ),
    (250, "2.1.5", "Ok", RCPT, InboundVerdict.ACCEPTED),
    (550, "5.7.1", "Recipient address rejected: mailbox suspended", RCPT, InboundVerdict.REJECTED),
    (
        553,
        "5.1.8",
        "<>: Sender address rejected: Domain not found",
        InboundStep.MAIL,
        InboundVerdict.REJECTED,
    ),
]


@pytest.mark.parametrize(("code", "enhanced", "text", "step", "verdict"), REPLIES)
def test_recorded_replies_get_their_verdict(code, enhanced, text, step, verdict):
    assert classify_reply(code, enhanced, text, step) is verdict


# -- the dialogue, end to end --------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("pki"))


@contextlib.contextmanager
def mx_domain(
    *servers: dict, pki: TestPKI | None = None, extra: dict | None = None
) -> Iterator[tuple[str, list[FakeMailServer]]]:
    """A domain whose MX records name one scripted port-25 server each (preference 10, 20, ...).

    Each dict is FakeMailServer keyword arguments; {"listen": False} leaves the
    address closed (connection refused).
    """
    number = next(_HOSTS)
    domain = f"kunde{number}.test"
    zone: dict = {"@": {"MX": []}}
    started: list[FakeMailServer] = []
    with contextlib.ExitStack() as stack:
        for index, options in enumerate(servers):
            address = f"127.0.6.{number % 50 * 5 + index + 2}"
            name = f"mx{index + 1}"
            zone["@"]["MX"].append(f"{10 * (index + 1)} {name}.{domain}.")
            zone[name] = {"A": [address]}
            options = dict(options)
            if not options.pop("listen", True):
                continue
            context = pki.good("mx.provider.test").server_context() if pki else None
            server = FakeMailServer(
                "smtp",
                address,
                25,
                implicit_tls=False,
                ssl_context=context,
                hostname="mx.provider.test",
                mx_replies=options.pop("mx_replies", {}),
                **options,
            )
            started.append(stack.enter_context(server))
        zone.update(extra or {})
        dns = stack.enter_context(DnsServer({domain: zone}, DNS_ADDRESS))
        global _NAMESERVER
        _NAMESERVER = dns.nameserver
        yield domain, started


_NAMESERVER = ""


def check(domain: str, *, timeout: float = 2.0, deadline: float = 20.0, pki=None):
    return diagnose(
        CheckRequest(
            domain,
            nameserver=_NAMESERVER,
            autoconfig=False,
            timeout=timeout,
            deadline=deadline,
            ca_file=str(pki.ca_pem_path) if pki else None,
            address=f"info@{domain}",
        )
    )


def inbound_codes(diagnosis) -> dict[str, Severity]:
    return {
        f.code: f.severity for f in diagnosis.findings if f.code.startswith(("INBOUND_", "MX_"))
    }


def test_an_accepting_mx_is_asked_up_to_rcpt_and_nothing_is_delivered(pki):
    with mx_domain({}, pki=pki) as (domain, (mx,)):
        diagnosis = check(domain, pki=pki)
        lines = [c.decode() for c in mx.commands]
    assert lines == [
        "EHLO maildiag.invalid",
        "STARTTLS",
        "EHLO maildiag.invalid",
        "MAIL FROM:<>",
        f"RCPT TO:<info@{domain}>",
        "RSET",
        "QUIT",
    ]
    assert [r.tls for r in mx.received][2:] == [True] * 5  # MAIL and RCPT inside TLS
    assert inbound_codes(diagnosis) == {"INBOUND_ACCEPTED": Severity.OK}
    (attempt,) = diagnosis.inbound.attempts
    assert attempt.verdict is InboundVerdict.ACCEPTED and attempt.step is InboundStep.RCPT
    # The certificate is for mx.provider.test, not mx1.<domain>: recorded, not judged.
    assert attempt.tls is not None and attempt.tls.hostname_matches is False
    assert attempt.starttls_offered is True and attempt.tls_error is None
    assert not any(f.code.startswith("TLS_") and f.endpoint is None for f in diagnosis.findings)


def test_greylisting_is_reported_as_normal(pki):
    greylisted = "450 4.2.0 <info@x>: Recipient address rejected: Greylisted, see postgrey"
    with mx_domain({"mx_replies": {"rcpt": greylisted}}) as (domain, (mx,)):
        diagnosis = check(domain)
        assert b"DATA" not in mx.commands
    assert inbound_codes(diagnosis) == {"INBOUND_GREYLISTED": Severity.INFO}
    finding = next(f for f in diagnosis.findings if f.code == "INBOUND_GREYLISTED")
    assert "normal" in finding.explanation and "Greylisted" in finding.explanation


def test_relay_denied_says_the_mx_is_not_responsible_for_the_domain():
    denied = "554 5.7.1 <info@x>: Relay access denied"
    with mx_domain({"mx_replies": {"rcpt": denied}}) as (domain, _):
        diagnosis = check(domain)
    assert inbound_codes(diagnosis) == {"INBOUND_RELAY_DENIED": Severity.CRITICAL}
    finding = next(f for f in diagnosis.findings if f.code == "INBOUND_RELAY_DENIED")
    assert "responsible" in finding.explanation and domain in finding.fix


def test_a_blocked_client_is_not_a_verdict_about_the_mailbox():
    banner = "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org"
    with mx_domain({"mx_replies": {"banner": banner}}) as (domain, (mx,)):
        diagnosis = check(domain)
        assert mx.commands == [b"QUIT"]
    assert inbound_codes(diagnosis) == {"INBOUND_BLOCKED": Severity.WARNING}
    assert diagnosis.inbound.decisive.step is InboundStep.BANNER


def test_the_first_mx_that_answers_decides():
    unknown = "550 5.1.1 <info@x>: Recipient address rejected: User unknown"
    with mx_domain({"listen": False}, {"mx_replies": {"rcpt": unknown}}) as (domain, _):
        diagnosis = check(domain)
    first, second = diagnosis.inbound.attempts
    assert first.outcome is MxOutcome.REFUSED and first.preference == 10
    assert second.verdict is InboundVerdict.UNKNOWN_USER
    assert inbound_codes(diagnosis) == {"INBOUND_UNKNOWN_USER": Severity.CRITICAL}


def test_mx_hosts_that_never_answer_on_port_25_are_inconclusive_not_down():
    silent = {"behaviour": Behaviour.NEVER_GREET}
    with mx_domain(silent, silent) as (domain, _):
        started = time.monotonic()
        diagnosis = check(domain, timeout=1.0)
        elapsed = time.monotonic() - started
    assert {a.outcome for a in diagnosis.inbound.attempts} == {MxOutcome.NO_BANNER}
    assert inbound_codes(diagnosis) == {"INBOUND_INCONCLUSIVE": Severity.INFO}
    finding = next(f for f in diagnosis.findings if f.code == "INBOUND_INCONCLUSIVE")
    assert "port 25" in finding.explanation
    # Both MX hosts at once: one timeout, not two.
    assert elapsed < 1.9


def test_filtered_port_25_everywhere_is_inconclusive_too():
    filtered = {"behaviour": Behaviour.FILTERED}
    with mx_domain(filtered, filtered) as (domain, _):
        diagnosis = check(domain, timeout=1.0)
    assert {a.outcome for a in diagnosis.inbound.attempts} == {MxOutcome.TIMEOUT}
    assert inbound_codes(diagnosis) == {"INBOUND_INCONCLUSIVE": Severity.INFO}


def test_mx_hosts_that_refuse_are_unreachable_not_inconclusive():
    with mx_domain({"listen": False}, {"listen": False}) as (domain, _):
        diagnosis = check(domain)
    assert inbound_codes(diagnosis) == {"INBOUND_MX_UNREACHABLE": Severity.CRITICAL}
    finding = next(f for f in diagnosis.findings if f.code == "INBOUND_MX_UNREACHABLE")
    assert "refused" in finding.explanation and f"mx2.{domain}" in finding.explanation


def test_a_null_mx_is_critical_when_an_address_is_known():
    with mx_domain() as (domain, _):
        pass
    with DnsServer({domain: {"@": {"MX": ["0 ."]}}}, DNS_ADDRESS) as dns:
        global _NAMESERVER
        _NAMESERVER = dns.nameserver
        diagnosis = check(domain)
    assert diagnosis.inbound is not None and diagnosis.inbound.attempts == ()
    assert inbound_codes(diagnosis) == {"MX_NULL": Severity.CRITICAL}


def test_the_deadline_ends_the_inbound_check_on_time():
    with mx_domain({"behaviour": Behaviour.NEVER_GREET}) as (domain, _):
        started = time.monotonic()
        diagnosis = check(domain, timeout=30.0, deadline=2.0)
        elapsed = time.monotonic() - started
    assert elapsed < 3.0
    assert diagnosis.inbound.unfinished
    assert "INBOUND_NOT_FINISHED" in inbound_codes(diagnosis)


def test_the_inbound_check_runs_beside_the_probes_not_after_them():
    """IMAP that never greets (1 s) and an MX that never greets (1 s): 1 s in all, not 2."""
    silent = {"behaviour": Behaviour.NEVER_GREET}
    with mx_domain(silent) as (domain, (mx,)):
        imap = FakeMailServer(
            "imap", mx.address, 143, implicit_tls=False, behaviour=Behaviour.NEVER_GREET
        )
        with imap:
            started = time.monotonic()
            diagnosis = check(domain, timeout=1.0)
            elapsed = time.monotonic() - started
    outcomes = {r.endpoint.port: r.outcome.value for r in diagnosis.results}
    assert outcomes[143] == "no_greeting"
    assert diagnosis.inbound.attempts[0].outcome is MxOutcome.NO_BANNER
    assert elapsed < 1.9


def test_cli_address_gives_a_valid_json_report_without_a_login():
    denied = "554 5.7.1 <info@x>: Relay access denied"
    with mx_domain({"mx_replies": {"rcpt": denied}}) as (domain, (mx,)):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(
                [
                    "check",
                    domain,
                    "--address",
                    f"info@{domain}",
                    "--format",
                    "json",
                    "--nameserver",
                    _NAMESERVER,
                    "--no-autoconfig",
                    "--timeout",
                    "2",
                ]
            )
        assert not any(line.startswith(b"AUTH") for line in mx.commands)
    document = json.loads(out.getvalue())
    jsonschema.validate(document, SCHEMA)
    assert code == 2 and document["user"] is None
    assert document["inbound"]["verdict"] == "relay_denied"
    assert document["inbound"]["mx"] == f"mx1.{domain}"
    (attempt,) = document["inbound"]["attempts"]
    assert attempt["step"] == "rcpt" and "Relay access denied" in attempt["reply"]


def test_without_an_address_there_is_no_inbound_check():
    with mx_domain({}) as (domain, (mx,)):
        diagnosis = diagnose(
            CheckRequest(domain, nameserver=_NAMESERVER, autoconfig=False, timeout=2)
        )
        assert mx.commands == []
    assert diagnosis.inbound is None


@pytest.mark.parametrize("address", ["info@elsewhere.test", "info", "<info@x>", "a b@kunde.test"])
def test_cli_address_must_be_an_address_at_the_domain(address, capsys):
    code = main(["check", "kunde.test", "--address", address, "--no-autoconfig"])
    assert code == 3
    assert "--address" in capsys.readouterr().err
