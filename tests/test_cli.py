"""The CLI through its entry point, against local DNS and mail servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import jsonschema
import pytest

from maildiag.cli import main
from tests.lab.dns_server import DnsServer
from tests.lab.fake_servers import Behaviour, FakeMailHost
from tests.lab.https_server import HttpsServer, Reply

SCHEMA = json.loads((Path(__file__).parents[1] / "maildiag/schema/report.schema.json").read_text())
DNS_ADDRESS = "127.0.3.1"


def zone(address: str, extra: dict | None = None) -> dict:
    records = {
        "@": {"MX": ["10 mail"]},
        "mail": {"A": [address]},
        "_imaps._tcp": {"SRV": ["0 1 993 mail"]},
        "_submission._tcp": {"SRV": ["0 1 587 mail"]},
    }
    records.update(extra or {})
    return records


@pytest.fixture
def lab(pki, loopback_address):
    """Starts DNS for kunde.test (+ IDN müller.test) and a mail host; yields a runner."""
    stack = ExitStack()

    def start(behaviours=None, cert=None, extra_zone=None, zones=None):
        cert = cert or pki.good(["mail.kunde.test", "mail.xn--mller-kva.test"])
        host = FakeMailHost(
            loopback_address,
            cert.server_context(),
            hostname="mail.kunde.test",
            behaviours=behaviours or {},
        )
        stack.enter_context(host)
        all_zones = zones or {
            "kunde.test": zone(loopback_address, extra_zone),
            "müller.test": zone(loopback_address),
        }
        dns = stack.enter_context(DnsServer(all_zones, DNS_ADDRESS))
        return dns

    yield start
    stack.close()


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def base_args(dns, pki, timeout="2") -> list[str]:
    return [
        "--nameserver",
        dns.nameserver,
        "--ca-file",
        str(pki.ca_pem_path),
        "--timeout",
        timeout,
        "--no-autoconfig",
    ]


def test_healthy_domain_exits_ok_and_json_matches_the_schema(lab, pki, capsys):
    dns = lab()
    code, out, _ = run_cli(capsys, "check", "kunde.test", "--format", "json", *base_args(dns, pki))
    report = json.loads(out)
    jsonschema.validate(report, SCHEMA)
    assert code == 0 and report["status"] == "OK" and report["exit_code"] == 0
    assert len(report["endpoints"]) == 6
    for endpoint in report["endpoints"]:
        assert endpoint["outcome"] == "ok"
        assert isinstance(endpoint["port"], int)
        assert endpoint["security"] in ("starttls", "tls")
        assert endpoint["timings"]["connect"] >= 0 and endpoint["timings"]["tls"] > 0
    sources = {e["port"]: e["sources"][0] for e in report["endpoints"]}
    assert sources[993] == "srv:_imaps._tcp" and sources[587] == "srv:_submission._tcp"
    assert {f["code"] for f in report["findings"]} == {"ENDPOINT_OK"}


def test_hostname_mismatch_exits_critical_and_explains_the_fix(lab, pki, capsys):
    dns = lab(cert=pki.wrong_host(["web123.provider.test"]))
    code, out, _ = run_cli(capsys, "check", "kunde.test", "--color", "never", *base_args(dns, pki))
    assert code == 2
    assert "CRITICAL" in out.splitlines()[0]
    assert "TLS_HOSTNAME_MISMATCH" in out
    assert "Why: " in out and "Fix: " in out
    assert "web123.provider.test" in out
    assert "\033[" not in out


def test_certificate_expiring_soon_is_a_warning(lab, pki, capsys):
    dns = lab(cert=pki.expiring_in(15, ["mail.kunde.test"]))
    code, out, _ = run_cli(capsys, "check", "kunde.test", "--format", "json", *base_args(dns, pki))
    assert code == 1
    report = json.loads(out)
    assert {f["code"] for f in report["findings"] if f["severity"] == "warning"} == {
        "TLS_CERT_EXPIRING"
    }
    # The same certificate with tighter thresholds is fine.
    code, _, _ = run_cli(capsys, "check", "kunde.test", "-w", "10", "-c", "5", *base_args(dns, pki))
    assert code == 0


def test_broken_endpoints_are_each_explained(lab, pki, capsys):
    dns = lab(
        behaviours={
            "imap": Behaviour.NO_STARTTLS,
            "pop3s": None,
            "submission": Behaviour.THROTTLE,
            "submissions": Behaviour.FILTERED,
        }
    )
    code, out, _ = run_cli(
        capsys, "check", "kunde.test", "--format", "json", *base_args(dns, pki, timeout="1")
    )
    report = json.loads(out)
    jsonschema.validate(report, SCHEMA)
    codes = {f["code"] for f in report["findings"]}
    assert {"STARTTLS_MISSING", "PORT_CLOSED", "SMTP_THROTTLED", "PORT_FILTERED"} <= codes
    assert code == 2
    for finding in report["findings"]:
        assert finding["explanation"] and finding["fix"]


def test_idn_domain(lab, pki, capsys):
    dns = lab()
    code, out, _ = run_cli(capsys, "check", "müller.test", "--format", "json", *base_args(dns, pki))
    report = json.loads(out)
    assert report["domain"] == "müller.test"
    assert report["domain_ascii"] == "xn--mller-kva.test"
    assert {e["host"] for e in report["endpoints"]} == {"mail.xn--mller-kva.test"}
    assert code == 0


def test_host_override_wins_over_discovery(lab, pki, capsys):
    dns = lab(extra_zone={"other": {"A": ["127.0.0.254"]}})
    code, out, _ = run_cli(
        capsys,
        "check",
        "kunde.test",
        "--format",
        "json",
        "--imap-host",
        "other.kunde.test",
        *base_args(dns, pki, timeout="1"),
    )
    report = json.loads(out)
    imap = [e for e in report["endpoints"] if e["protocol"] == "imap"]
    assert {e["host"] for e in imap} == {"other.kunde.test"}
    assert all(e["sources"][0] == "option" for e in imap)


def test_nonexistent_domain_is_critical(lab, pki, capsys):
    dns = lab()
    code, out, err = run_cli(capsys, "check", "nothere.kunde.test", *base_args(dns, pki))
    assert code == 2
    assert "DOMAIN_NOT_FOUND" in out
    assert "Traceback" not in out + err


@pytest.mark.parametrize("domain", ["", "bad..domain", "alice@kunde.test", "-x.test", "a" * 300])
def test_malformed_domain_gives_one_line_and_exit_3(domain, capsys):
    code, out, err = run_cli(capsys, "check", domain, "--nameserver", "127.0.0.1:9")
    assert code == 3
    assert out == ""
    assert err.startswith("maildiag: ") or "Error" in err
    assert "Traceback" not in err


def test_bad_arguments_exit_3(capsys):
    code, _, err = run_cli(capsys, "check", "kunde.test", "--timeout", "-1")
    assert code == 3 and "timeout" in err
    code, _, _ = run_cli(capsys, "check", "kunde.test", "-w", "3", "-c", "10")
    assert code == 3


def test_unreachable_nameserver_stays_within_the_deadline(capsys):
    started = time.monotonic()
    code, out, err = run_cli(
        capsys,
        "check",
        "kunde.test",
        "--nameserver",
        "127.0.3.9:53",
        "--timeout",
        "1",
        "--deadline",
        "3",
        "--no-autoconfig",
    )
    assert time.monotonic() - started < 6
    assert code == 3
    assert "DNS_LOOKUP_FAILED" in out
    assert "Traceback" not in err


def test_every_endpoint_silent_ends_at_the_deadline(lab, pki, capsys):
    silent = {
        key: Behaviour.NEVER_GREET
        for key in ("imap", "imaps", "pop3", "pop3s", "submission", "submissions")
    }
    dns = lab(behaviours=silent)
    started = time.monotonic()
    code, out, _ = run_cli(
        capsys,
        "check",
        "kunde.test",
        "--format",
        "json",
        "--nameserver",
        dns.nameserver,
        "--timeout",
        "30",
        "--deadline",
        "2",
        "--no-autoconfig",
        "--ca-file",
        str(pki.ca_pem_path),
    )
    assert time.monotonic() - started < 6
    report = json.loads(out)
    assert {e["outcome"] for e in report["endpoints"]} <= {"deadline", "stalled", "no_greeting"}
    assert code == 1


def test_colour_only_when_asked_and_never_with_no_color(lab, pki, capsys, monkeypatch):
    dns = lab(cert=pki.wrong_host(["web123.provider.test"]))
    _, out, _ = run_cli(capsys, "check", "kunde.test", "--color", "always", *base_args(dns, pki))
    assert "\033[31m" in out
    monkeypatch.setenv("NO_COLOR", "1")
    _, out, _ = run_cli(capsys, "check", "kunde.test", *base_args(dns, pki))
    assert "\033[" not in out


def test_console_script_and_module_entry_points():
    for command in (["maildiag", "--version"], [sys.executable, "-m", "maildiag", "--version"]):
        if command[0] == "maildiag" and not any(
            (Path(p) / "maildiag").exists() for p in os.environ.get("PATH", "").split(os.pathsep)
        ):
            command = [str(Path(sys.executable).parent / "maildiag"), "--version"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and "maildiag" in done.stdout


def test_help_documents_the_exit_codes(capsys):
    code, out, _ = run_cli(capsys, "check", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN" in text
    assert "CRITICAL includes a domain that does not exist (DOMAIN_NOT_FOUND)" in text


def test_codes_lists_the_catalogue(capsys):
    code, out, _ = run_cli(capsys, "codes", "--format", "json")
    entries = json.loads(out)
    assert code == 0
    assert {
        "TLS_HOSTNAME_MISMATCH",
        "PORT_FILTERED",
        "STARTTLS_MISSING",
        "SMTP_THROTTLED",
        "PLAINTEXT_AUTH_ALLOWED",
        "TLS_CERT_EXPIRED",
    } <= {e["code"] for e in entries}


def test_a_dripping_autoconfig_server_leaves_the_probes_their_time(lab, pki, capsys):
    # One byte every 0.3 s: each read is quick, the whole answer never comes.
    web_address = "127.0.3.80"
    dns = lab(extra_zone={"autoconfig": {"A": [web_address]}})
    slow = Reply(body=b"<clientConfig/>" * 50, drip=0.3)
    routes = {
        "autoconfig.kunde.test/mail/config-v1.1.xml": slow,
        "kunde.test/.well-known/autoconfig/mail/config-v1.1.xml": slow,
    }
    cert = pki.intermediate.issue_cert("autoconfig.kunde.test", "kunde.test")
    with HttpsServer(routes, cert, address=web_address):
        started = time.monotonic()
        code, out, err = run_cli(
            capsys,
            "check",
            "kunde.test",
            "--format",
            "json",
            "--nameserver",
            dns.nameserver,
            "--ca-file",
            str(pki.ca_pem_path),
            "--timeout",
            "30",
            "--deadline",
            "5",
        )
        elapsed = time.monotonic() - started
    assert elapsed < 5.5, elapsed
    report = json.loads(out)
    outcomes = {e["port"]: e["outcome"] for e in report["endpoints"]}
    assert {993, 587} <= set(outcomes) and set(outcomes.values()) == {"ok"}, outcomes
    codes = [f["code"] for f in report["findings"]]
    assert "HOST_UNRESOLVED" not in codes
    assert all(r.get("error") for r in report["discovery"]["autoconfig"])
    assert code == 0 and "Traceback" not in err


HOSTILE_AUTOCONFIG = b"""<?xml version="1.0"?>
<!DOCTYPE clientConfig [
  <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
  <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
  <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
  <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
  <!ENTITY x SYSTEM "file:///etc/passwd">
]>
<clientConfig><emailProvider><incomingServer type="imap">
<hostname>&e;&x;</hostname><port>993</port><socketType>SSL</socketType>
</incomingServer></emailProvider></clientConfig>
"""

HEALTHY_AUTOCONFIG = b"""<?xml version="1.0"?>
<clientConfig><emailProvider><incomingServer type="imap">
<hostname>imap.kunde.test</hostname><port>993</port><socketType>SSL</socketType>
</incomingServer></emailProvider></clientConfig>
"""


@pytest.mark.parametrize("hostile", [True, False], ids=["hostile", "healthy"])
def test_a_hostile_autoconfig_document_is_an_error_not_a_hang(lab, pki, capsys, hostile):
    # Billion laughs plus an external entity (issue 10, item 7): the check
    # finishes at once with the document refused; its twin is read.
    web_address = "127.0.3.81"
    dns = lab(extra_zone={"autoconfig": {"A": [web_address]}})
    document = HOSTILE_AUTOCONFIG if hostile else HEALTHY_AUTOCONFIG
    cert = pki.intermediate.issue_cert("autoconfig.kunde.test", "kunde.test")
    with HttpsServer({"autoconfig.kunde.test/mail/config-v1.1.xml": document}, cert, web_address):
        started = time.monotonic()
        code, out, err = run_cli(
            capsys,
            "check",
            "kunde.test",
            "--format",
            "json",
            "--nameserver",
            dns.nameserver,
            "--ca-file",
            str(pki.ca_pem_path),
            "--timeout",
            "5",
        )
        elapsed = time.monotonic() - started
    assert elapsed < 5.0, elapsed
    assert code == 0 and "Traceback" not in err
    report = json.loads(out)
    first = report["discovery"]["autoconfig"][0]
    if hostile:
        assert "DOCTYPE" in first["error"] and "refused" in first["error"]
        assert "root:" not in out  # nothing of /etc/passwd
    else:
        assert first.get("error") is None
        assert first["servers"], first
    outcomes = {e["port"]: e["outcome"] for e in report["endpoints"]}
    assert {993, 587} <= set(outcomes) and set(outcomes.values()) == {"ok"}, outcomes


def test_the_deadline_counts_from_the_start_of_the_process(lab, pki, capsys):
    # The console script passes the moment it started; time spent importing
    # click, dnspython and cryptography is part of --deadline.
    silent = dict.fromkeys(
        ("imap", "imaps", "pop3", "pop3s", "submission", "submissions"), Behaviour.NEVER_GREET
    )
    dns = lab(behaviours=silent)
    started = time.monotonic() - 1.5  # as if start-up had taken 1.5 s
    code = main(
        [
            "check",
            "kunde.test",
            "--format",
            "json",
            *base_args(dns, pki, "30"),
            "--deadline",
            "2.5",
        ],
        started=started,
    )
    out = capsys.readouterr().out
    assert time.monotonic() - started < 2.5 + 0.8
    assert {e["outcome"] for e in json.loads(out)["endpoints"]} <= {"deadline"}
    assert code == 1
