"""`maildiag check --format nagios`: status line, long text, perfdata, exit codes.

The output is parsed with the grammar of the monitoring-plugins guidelines
(https://www.monitoring-plugins.org/doc/guidelines.html#AEN200), not with
maildiag's own code, and the checks run through the real CLI against fake
mail servers and a test DNS server on loopback.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from maildiag.cli import main
from maildiag.model import (
    Diagnosis,
    Discovery,
    Endpoint,
    MailboxFacts,
    Outcome,
    ProbeResult,
    Protocol,
    QuotaResource,
    Security,
    Status,
)
from maildiag.report import nagios
from tests.lab.certs import TestPKI
from tests.lab.dns_server import DnsServer
from tests.lab.fake_servers import Behaviour, FakeMailHost

# 'label'=value[UOM];[warn];[crit];[min];[max] — the label is quoted when it
# holds spaces, '=' or quotes ('' inside quotes), the value is a plain
# decimal or U, UOM one of the listed units, thresholds are ranges.
_NUMBER = r"-?[0-9]+(?:\.[0-9]+)?"
_RANGE = rf"@?(?:~|{_NUMBER})?(?::(?:{_NUMBER})?)?"
PERF_ITEM = re.compile(
    rf"(?P<label>'(?:[^']|'')+'|[^'=\s]+)="
    rf"(?P<value>{_NUMBER}|U)(?P<uom>s|ms|us|%|B|KB|MB|TB|c)?"
    rf"(?:;(?P<warn>{_RANGE})?(?:;(?P<crit>{_RANGE})?(?:;(?P<min>{_NUMBER})?"
    rf"(?:;(?P<max>{_NUMBER})?)?)?)?)?"
)
STATUS_LINE = re.compile(r"MAILDIAG (OK|WARNING|CRITICAL|UNKNOWN) - \S.*")


def parse_plugin_output(output: str) -> tuple[str, list[str], dict[str, dict[str, str]]]:
    """(status text, long text lines, perfdata by unquoted label) per the plugin API.

    Line 1 is ``TEXT | PERF``; long text follows; a ``|`` in the long text
    starts more perfdata, which continues on the following lines.
    """
    lines = output.rstrip("\n").split("\n")
    head, _, head_perf = lines[0].partition("|")
    perf_texts = [head_perf]
    long_text: list[str] = []
    in_perf = False
    for line in lines[1:]:
        if in_perf:
            perf_texts.append(line)
        elif "|" in line:
            text, _, perf = line.partition("|")
            long_text.append(text.rstrip())
            perf_texts.append(perf)
            in_perf = True
        else:
            long_text.append(line)
    perfdata: dict[str, dict[str, str]] = {}
    for text in perf_texts:
        position = 0
        text = text.strip()
        while position < len(text):
            match = PERF_ITEM.match(text, position)
            assert match, f"not perfdata grammar at {text[position:]!r}"
            label = match["label"]
            if label.startswith("'"):
                label = label[1:-1].replace("''", "'")
            assert label not in perfdata, f"duplicate label {label}"
            perfdata[label] = {k: v for k, v in match.groupdict().items() if v is not None}
            position = match.end()
            assert position == len(text) or text[position] == " ", text[position:]
            position += 1
    return head.rstrip(), long_text, perfdata


# -- the grammar itself, and its failure twin ------------------------------------


def test_grammar_accepts_the_guidelines_examples() -> None:
    _, _, perf = parse_plugin_output("X OK - fine | time=0.01s;1;2;0 'a b'=5%;;;0;100 c=U")
    assert perf["time"] == {"label": "time", "value": "0.01", "uom": "s", "warn": "1",
                            "crit": "2", "min": "0"}
    assert perf["a b"]["uom"] == "%"
    assert perf["c"]["value"] == "U"


@pytest.mark.parametrize("bad", ["a b=1s", "x=1e5s", "x=1parsecs", "'x=1", "x=1;;;;;"])
def test_grammar_rejects_malformed_perfdata(bad: str) -> None:
    with pytest.raises(AssertionError):
        parse_plugin_output(f"X OK - fine | {bad}")


def test_labels_are_quoted_only_when_needed() -> None:
    assert nagios.perf_label("imap_993_tls_connect") == "imap_993_tls_connect"
    assert nagios.perf_label("quota root") == "'quota root'"
    assert nagios.perf_label("a=b") == "'a=b'"
    assert nagios.perf_label("it's") == "'it''s'"
    _, _, perf = parse_plugin_output(
        "X OK - y | " + nagios.perf_item("it's here", 1.5, "s", minimum=0))
    assert perf["it's here"]["value"] == "1.5"


def test_numbers_never_use_exponents() -> None:
    assert nagios.perf_number(1e-7) == "0"
    assert nagios.perf_number(0.000123456) == "0.000123"
    assert nagios.perf_number(12345678.0) == "12345678"
    assert nagios.perf_number(-0.0) == "0"


# -- hand-made results: quota and hostile texts ------------------------------------


def _diagnosis(*results: ProbeResult, status: Status = Status.OK) -> Diagnosis:
    return Diagnosis(
        domain="kunde.test", domain_ascii="kunde.test",
        started_at=datetime(2024, 5, 1, tzinfo=UTC), seconds=0.5,
        discovery=Discovery("kunde.test", "kunde.test", True),
        results=results, findings=(), status=status,
    )


IMAPS = Endpoint(Protocol.IMAP, "mail.kunde.test", 993, Security.TLS)


def test_quota_usage_is_perfdata_in_percent_and_bytes() -> None:
    mailbox = MailboxFacts(quota=(QuotaResource("STORAGE", 512, 2048),
                                  QuotaResource("MESSAGE", 10, 0)))
    result = ProbeResult(IMAPS, Outcome.OK, timings={"connect": 0.01}, mailbox=mailbox)
    _, _, perf = parse_plugin_output(nagios.render(_diagnosis(result)))
    assert perf["imap_993_tls_quota_storage"]["value"] == "25"
    assert perf["imap_993_tls_quota_storage"]["uom"] == "%"
    assert perf["imap_993_tls_quota_storage"]["max"] == "100"
    used = perf["imap_993_tls_quota_storage_used"]
    assert (used["value"], used["uom"], used["max"]) == ("524288", "B", "2097152")
    # A resource without a limit has no ratio to report.
    assert "imap_993_tls_quota_message" not in perf


def test_without_quota_there_is_no_quota_perfdata() -> None:
    result = ProbeResult(IMAPS, Outcome.OK, timings={"connect": 0.01})
    _, _, perf = parse_plugin_output(nagios.render(_diagnosis(result)))
    assert not [label for label in perf if "quota" in label]


def test_pipes_and_newlines_from_servers_cannot_break_the_output() -> None:
    result = ProbeResult(IMAPS, Outcome.UNAVAILABLE, timings={"connect": 0.01},
                         error="* BYE go away | now\r\nreally")
    output = nagios.render(_diagnosis(result, status=Status.CRITICAL))
    head, long_text, perf = parse_plugin_output(output)
    assert "go away / now really" in long_text[0]
    assert set(perf) >= {"time", "endpoints_ok", "imap_993_tls_connect"}


# -- the real CLI against fake servers ----------------------------------------------

ADDRESS = {"ok": "127.0.0.80", "expiring": "127.0.0.81", "broken": "127.0.0.82"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    pki = TestPKI(tmp_path_factory.mktemp("pki"))
    zones = {
        f"{name}.test": {"@": {"MX": [f"10 mail.{name}.test."]}, "mail": {"A": [address]}}
        for name, address in ADDRESS.items()
    }
    hosts = [
        FakeMailHost(ADDRESS["ok"], pki.good("mail.ok.test").server_context(),
                     hostname="mail.ok.test"),
        FakeMailHost(ADDRESS["expiring"],
                     pki.expiring_in(10, "mail.expiring.test").server_context(),
                     hostname="mail.expiring.test"),
        FakeMailHost(ADDRESS["broken"], pki.good("mail.broken.test").server_context(),
                     hostname="mail.broken.test",
                     behaviours={"submission": Behaviour.NO_STARTTLS}),
    ]
    with DnsServer(zones, "127.0.0.83") as dns:
        for host in hosts:
            host.start()
        try:
            yield ["--nameserver", dns.nameserver, "--ca-file", str(pki.ca_pem_path),
                   "--no-autoconfig", "--timeout", "3"]
        finally:
            for host in hosts:
                host.stop()


def run_check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["check", "--format", "nagios", *args])
    return code, capsys.readouterr().out


def test_ok_domain_exits_0_with_perfdata_per_endpoint(lab, capsys) -> None:
    code, output = run_check(capsys, "ok.test", *lab)
    head, long_text, perf = parse_plugin_output(output)
    assert code == 0
    assert STATUS_LINE.fullmatch(head) and head.startswith("MAILDIAG OK - ok.test")
    assert "6/6 endpoints ok" in head
    assert len([line for line in long_text if ": ok," in line]) == 6
    assert not [line for line in long_text if line.startswith("[")]  # no problems listed
    assert perf["endpoints_ok"]["value"] == "6" and perf["endpoints_ok"]["max"] == "6"
    for prefix in ("imap_143_starttls", "imap_993_tls", "pop3_110_starttls", "pop3_995_tls",
                   "smtp_587_starttls", "smtp_465_tls"):
        assert perf[f"{prefix}_connect"]["uom"] == "s"
        assert perf[f"{prefix}_tls"]["uom"] == "s"
        assert perf[f"{prefix}_time"]["uom"] == "s"
        days = perf[f"{prefix}_cert_days"]
        assert "uom" not in days  # days have no unit of measurement
        assert (days["warn"], days["crit"]) == ("21:", "7:")
        assert float(days["value"]) > 21


def test_expiring_certificate_exits_1(lab, capsys) -> None:
    code, output = run_check(capsys, "expiring.test", *lab)
    head, long_text, perf = parse_plugin_output(output)
    assert code == 1
    assert head.startswith("MAILDIAG WARNING - expiring.test: TLS_CERT_EXPIRING")
    assert any(line.startswith("[WARNING] TLS_CERT_EXPIRING IMAP mail.expiring.test:993")
               for line in long_text)
    assert 9 <= float(perf["imap_993_tls_cert_days"]["value"]) <= 10


def test_thresholds_from_w_and_c_reach_status_and_perfdata(lab, capsys) -> None:
    code, output = run_check(capsys, "expiring.test", "-w", "30", "-c", "15", *lab)
    head, _, perf = parse_plugin_output(output)
    assert code == 2
    assert head.startswith("MAILDIAG CRITICAL")
    assert (perf["smtp_465_tls_cert_days"]["warn"], perf["smtp_465_tls_cert_days"]["crit"]) == (
        "30:", "15:")


def test_broken_endpoint_exits_2_and_names_the_code(lab, capsys) -> None:
    code, output = run_check(capsys, "broken.test", *lab)
    head, long_text, perf = parse_plugin_output(output)
    assert code == 2
    assert head.startswith("MAILDIAG CRITICAL - broken.test: STARTTLS_MISSING")
    assert "5/6 endpoints ok" in head
    assert "SMTP mail.broken.test:587 (starttls): starttls missing" in "\n".join(long_text)
    assert any(line.startswith("[CRITICAL] STARTTLS_MISSING SMTP mail.broken.test:587")
               for line in long_text)
    assert "smtp_587_starttls_tls" not in perf  # never got as far as TLS
    assert perf["smtp_587_starttls_connect"]["uom"] == "s"


def test_missing_domain_exits_3(lab, capsys) -> None:
    code, output = run_check(capsys, "nothing-here.ok.test", *lab)
    head, long_text, perf = parse_plugin_output(output)
    assert code == 3
    assert head.startswith("MAILDIAG UNKNOWN - nothing-here.ok.test: DOMAIN_NOT_FOUND")
    assert perf["endpoints_ok"]["value"] == "0"


def test_invalid_domain_exits_3_with_a_status_line(lab, capsys) -> None:
    code, output = run_check(capsys, "alice@ok.test", *lab)
    head, long_text, perf = parse_plugin_output(output)
    assert code == 3
    assert STATUS_LINE.fullmatch(head)
    assert head.startswith("MAILDIAG UNKNOWN - ") and "email address" in head
    assert not long_text and not perf


def test_quota_perfdata_after_a_login(lab, capsys, monkeypatch) -> None:
    # The fake servers accept alice@example.test with this password (DEFAULT_USERS).
    monkeypatch.setenv("MAILDIAG_PASSWORD", "wonderland")
    code, output = run_check(capsys, "ok.test", "--user", "alice@example.test", *lab)
    _, _, perf = parse_plugin_output(output)
    assert code == 0
    quota = perf["imap_993_tls_quota_storage"]
    assert (quota["uom"], quota["min"], quota["max"]) == ("%", "0", "100")
    assert 0 < float(quota["value"]) < 100
    assert perf["imap_993_tls_quota_storage_used"]["uom"] == "B"


def test_a_failed_login_is_critical_and_has_no_quota(lab, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MAILDIAG_PASSWORD", "not-the-password")
    code, output = run_check(capsys, "ok.test", "--user", "alice@example.test", *lab)
    head, long_text, perf = parse_plugin_output(output)
    assert code == 2
    assert "AUTH_FAILED" in head
    assert any(line.startswith("[CRITICAL] AUTH_FAILED") for line in long_text)
    assert not [label for label in perf if "quota" in label]
