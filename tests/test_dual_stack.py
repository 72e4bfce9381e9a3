"""IPv4 and IPv6 (issue 9, item 6): a host name with A and AAAA records, probed over both.

The lab's IPv6 address is ``::1`` (``ip link set lo up`` in the test's
network namespace gives it). The AAAA record points there; a server that
listens on 127.0.2.x only is the IPv4-only server that a dual-stack name
should not point to, one on both addresses is the working twin.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path

import jsonschema
import pytest

from maildiag.cli import main
from tests.lab.dns_server import DnsServer
from tests.lab.fake_servers import ENDPOINTS, Behaviour, FakeMailHost
from tests.test_blocked_address import web_port_open

ROOT = Path(__file__).parents[1]
SCHEMA = json.loads((ROOT / "maildiag/schema/report.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
DOMAIN = "kunde.test"
HOST = "mail.kunde.test"
USER = "alice@kunde.test"
SECRET = "dual-stack-Secret-41"
DNS_ADDRESS = "127.0.6.2"
IPV6 = "::1"
KEYS = tuple(ENDPOINTS)
Behaviours = Mapping[str, Behaviour | None]
NOTHING: Behaviours = dict.fromkeys(KEYS)  # nothing listens: every port refused


def zone(ipv4: str, aaaa: bool = True) -> dict:
    services = {"_imap": 143, "_imaps": 993, "_pop3": 110, "_pop3s": 995}
    services |= {"_submission": 587, "_submissions": 465}
    mail: dict = {"A": [ipv4]}
    if aaaa:
        mail["AAAA"] = [IPV6]
    records: dict = {"@": {"MX": ["10 mail"]}, "mail": mail}
    for service, port in services.items():
        records[f"{service}._tcp"] = {"SRV": [f"0 1 {port} mail"]}
    return {DOMAIN: records}


@pytest.fixture
def run(pki, loopback_address, capsys, monkeypatch):
    """Mail servers on 127.0.2.x (``ipv4``) and on ::1 (``ipv6``); runs the CLI."""
    monkeypatch.setenv("MAILDIAG_PASSWORD", SECRET)

    def go(
        ipv4: Behaviours = {},  # noqa: B006 - read only
        ipv6: Behaviours = {},  # noqa: B006
        *,
        aaaa: bool = True,
        user: bool = False,
        timeout: float = 1.0,
        fmt: str = "json",
        args: tuple[str, ...] = (),
        web: tuple[str, ...] = (),  # "ipv4", "ipv6": port 443 answers on that address
    ):
        context = pki.good([HOST]).server_context()
        hosts = {}
        with ExitStack() as stack:
            for address, behaviours in ((loopback_address, ipv4), (IPV6, ipv6)):
                host = FakeMailHost(
                    address, context, hostname=HOST, behaviours=behaviours, users={USER: SECRET}
                )
                hosts[address] = stack.enter_context(host)
                if ("ipv6" if address == IPV6 else "ipv4") in web:
                    stack.enter_context(web_port_open(address))
            dns = stack.enter_context(DnsServer(zone(loopback_address, aaaa), DNS_ADDRESS))
            argv = ["check", DOMAIN, "--format", fmt, "--no-autoconfig"]
            argv += ["--nameserver", dns.nameserver, "--ca-file", str(pki.ca_pem_path)]
            argv += ["--timeout", str(timeout), "--deadline", "8"]
            if user:
                argv += ["--user", USER]
            argv += args
            capsys.readouterr()
            started = time.monotonic()
            code = main(argv)
            seconds = time.monotonic() - started
            out = capsys.readouterr().out
        logins = {
            address: sum(s.failed_logins + s.successful_logins for s in h.servers.values())
            for address, h in hosts.items()
        }
        if fmt != "json":
            return code, out, seconds, logins
        report = json.loads(out)
        errors = sorted(VALIDATOR.iter_errors(report), key=str)
        assert not errors, errors[0].message
        return code, report, seconds, logins

    return go


def found(report: dict, code: str) -> list[dict]:
    return [f for f in report["findings"] if f["code"] == code]


def test_an_ipv4_only_server_behind_an_aaaa_record_fails_over_ipv6(run, loopback_address):
    code, report, _, _ = run(ipv6=NOTHING)
    assert code == 1
    failing = found(report, "IPV6_FAILS")
    assert sorted(f["endpoint"]["port"] for f in failing) == sorted(
        p for _, p, _ in ENDPOINTS.values()
    )
    first = failing[0]
    assert first["severity"] == "warning"  # refused: Happy Eyeballs clients fall back
    assert first["details"]["works_address"] == loopback_address
    assert first["details"]["fails_address"] == IPV6
    assert "works over IPv4" in first["explanation"] and "refused" in first["explanation"]
    for endpoint in report["endpoints"]:
        assert endpoint["address"] == loopback_address and endpoint["outcome"] == "ok"
        assert endpoint["other_family"]["family"] == "ipv6"
        assert endpoint["other_family"]["address"] == IPV6
        assert endpoint["other_family"]["outcome"] == "refused"
        assert endpoint["ok"] is False  # not ok for the customers with IPv6
    assert "IMAP_UNREACHABLE" not in [f["code"] for f in report["findings"]]


def test_a_server_on_both_families_has_no_family_finding(run):
    code, report, _, _ = run()
    assert code == 0
    codes = [f["code"] for f in report["findings"]]
    assert "IPV6_FAILS" not in codes and "IPV4_FAILS" not in codes
    for endpoint in report["endpoints"]:
        assert endpoint["other_family"]["outcome"] == "ok"
        assert endpoint["other_family"]["local_address"] == IPV6
        assert endpoint["ok"] is True


def test_a_name_without_aaaa_is_probed_once(run):
    code, report, _, _ = run(ipv6=NOTHING, aaaa=False)
    assert code == 0
    assert all("other_family" not in e for e in report["endpoints"])


def test_accepted_then_dropped_over_ipv6_is_critical(run):
    # No client falls back to IPv4 once the IPv6 connection was accepted.
    code, report, _, _ = run(ipv6=dict.fromkeys(KEYS, Behaviour.CLOSE_AFTER_GREETING))
    assert code == 2
    failing = found(report, "IPV6_FAILS")
    assert len(failing) == 6 and {f["severity"] for f in failing} == {"critical"}
    assert {e["other_family"]["outcome"] for e in report["endpoints"]} == {"closed"}


def test_works_over_ipv6_only_is_ipv4_fails_and_the_service_is_not_unreachable(
    run, loopback_address
):
    code, report, _, _ = run(ipv4=NOTHING)
    failing = found(report, "IPV4_FAILS")
    assert len(failing) == 6
    assert failing[0]["details"]["works_address"] == IPV6
    assert failing[0]["details"]["fails_address"] == loopback_address
    assert "works over IPv6" in failing[0]["explanation"]
    codes = [f["code"] for f in report["findings"]]
    for unreachable in ("IMAP_UNREACHABLE", "POP3_UNREACHABLE", "SUBMISSION_UNREACHABLE"):
        assert unreachable not in codes


def test_the_text_report_says_which_family_fails(run):
    code, text, _, _ = run(ipv6=NOTHING, fmt="text")
    verdict = text.split("\n\n", 1)[0]
    assert "Works over IPv4, fails over IPv6" in verdict
    assert "fails over IPv6" in text.split("Findings:")[0]  # the table's outcome column


def test_the_password_goes_to_one_family_only(run):
    # (The exit code is not this test's business: with --user the inbound
    # check also asks the MX on port 25, which nothing serves here.)
    code, report, _, logins = run(user=True)
    ok = [e for e in report["endpoints"] if e.get("auth", {}).get("status") == "ok"]
    assert ok, "no login worked over IPv4"
    assert logins[IPV6] == 0, "the other family was given the password"
    assert all(e["other_family"]["outcome"] == "ok" for e in report["endpoints"])


def test_both_families_filtered_cost_one_timeout_not_two(run):
    # The other family is probed alongside the main probe, not after it.
    filtered = dict.fromkeys(KEYS, Behaviour.FILTERED)
    code, report, seconds, _ = run(ipv4=filtered, ipv6=filtered, timeout=2.5)
    assert {e["outcome"] for e in report["endpoints"]} == {"timeout"}
    assert {e["other_family"]["outcome"] for e in report["endpoints"]} == {"timeout"}
    codes = [f["code"] for f in report["findings"]]
    assert "IPV6_FAILS" not in codes and "IPV4_FAILS" not in codes
    assert seconds < 2.5 + 1.5, f"{seconds:.1f} s: the families were probed one after the other"


def test_in_german_the_failure_is_in_the_words_of_the_table(run):
    code, report, _, _ = run(ipv6=NOTHING, args=("--lang", "de"))
    failing = found(report, "IPV6_FAILS")[0]
    assert failing["title"] == "Funktioniert über IPv4, aber nicht über IPv6"
    assert "(::1: abgelehnt)" in failing["explanation"]
    assert failing["details"]["failure"] == "refused"  # the facts stay as they are


# -- a ban judged over both families ----------------------------------------


def test_a_ban_over_ipv4_while_ipv6_works_names_the_ipv4_address(run, loopback_address):
    # Every mail port refuses over IPv4 while the IPv4 address answers on 443;
    # over IPv6 everything works: the IPv4 address is blocked, not "the client".
    code, report, _, _ = run(ipv4=NOTHING, web=("ipv4",))
    (blocked,) = found(report, "CLIENT_ADDRESS_BLOCKED")
    facts = blocked["details"]
    assert facts["server_address"] == loopback_address
    assert facts["blocked_family"] == "ipv4"
    assert (facts["working_family"], facts["working_address"]) == ("IPv6", IPV6)
    assert facts["working_local_address"] == IPV6
    local = facts["local_address"]
    assert local.startswith("127.")
    assert f"this client's IPv4 address {local}" in blocked["explanation"]
    assert f"Over IPv6 ({IPV6}) the same server works from here" in blocked["explanation"]
    assert f"unbanip {local}" in blocked["fix"]
    # The per-port IPv4 failures follow from it.
    failing = found(report, "IPV4_FAILS")
    assert len(failing) == 6 and {f["explained_by"] for f in failing} == {"CLIENT_ADDRESS_BLOCKED"}


def test_a_ban_over_ipv6_while_ipv4_works_names_the_ipv6_address(run, loopback_address):
    # The reverse, judged from the probes of the other family: ::1 refuses
    # every mail port and answers on 443, IPv4 works.
    code, report, _, _ = run(ipv6=NOTHING, web=("ipv6",))
    assert code == 2
    (blocked,) = found(report, "CLIENT_ADDRESS_BLOCKED")
    facts = blocked["details"]
    assert facts["server_address"] == IPV6 and facts["blocked_family"] == "ipv6"
    assert facts["local_address"] == IPV6
    assert (facts["working_family"], facts["working_address"]) == ("IPv4", loopback_address)
    assert f"this client's IPv6 address {IPV6}" in blocked["explanation"]
    assert f"Over IPv4 ({loopback_address})" in blocked["explanation"]
    assert any(c["address"] == IPV6 and c["state"] == "open" for c in report["port_checks"])
    failing = found(report, "IPV6_FAILS")
    assert len(failing) == 6 and {f["explained_by"] for f in failing} == {"CLIENT_ADDRESS_BLOCKED"}


def test_ipv6_refused_without_a_web_answer_is_no_ban(run):
    # The twin: nothing says the IPv6 host is up, so IPv6 simply fails.
    code, report, _, _ = run(ipv6=NOTHING)
    assert found(report, "CLIENT_ADDRESS_BLOCKED") == []
    assert len(found(report, "IPV6_FAILS")) == 6


def test_a_ban_over_both_families_names_no_working_family(run, loopback_address):
    # The twin: nothing works over IPv6 either, so the note on the other family is not given.
    code, report, _, _ = run(ipv4=NOTHING, ipv6=NOTHING, web=("ipv4",))
    (blocked,) = found(report, "CLIENT_ADDRESS_BLOCKED")
    assert blocked["details"]["server_address"] == loopback_address
    assert blocked["details"]["families"] == ""
    assert "working_family" not in blocked["details"]
    assert "Over IPv6" not in blocked["explanation"]


def test_healthy_families_ask_no_web_port(run):
    code, report, _, _ = run()
    assert code == 0
    assert report["port_checks"] == []
    assert found(report, "CLIENT_ADDRESS_BLOCKED") == []


def test_the_family_of_a_ban_reads_in_german(run, loopback_address):
    code, report, _, _ = run(ipv4=NOTHING, web=("ipv4",), args=("--lang", "de"))
    (blocked,) = found(report, "CLIENT_ADDRESS_BLOCKED")
    local = blocked["details"]["local_address"]
    assert f"Über IPv6 ({IPV6}) funktioniert derselbe Server" in blocked["explanation"]
    assert f"die IPv4-Adresse {local}" in blocked["explanation"]
    assert "{" not in blocked["explanation"]
