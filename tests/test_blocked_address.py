"""A server that blocks this client's address (issue 9, item 2), through the real CLI.

Each sign of a block has its twin that is not one: every mail port refused
while 443 answers (banned) against nothing answering at all (the host is
down) and against one refused port (that service is down); every port
dropping the connection after its greeting against one port doing so; a
421 that blames the address against a 421 about too many connections
(throttling, as before).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

import jsonschema
import pytest

from maildiag.blocking import blames_address
from maildiag.cli import main
from maildiag.report.grouping import CONSEQUENCES
from tests.lab.dns_server import DnsServer
from tests.lab.fake_servers import ENDPOINTS, Behaviour, FakeMailHost, FakeMailServer
from tests.lab.faults import Dialogue, ScriptedServer

ROOT = Path(__file__).parents[1]
SCHEMA = json.loads((ROOT / "maildiag/schema/report.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
DOMAIN = "kunde.test"
HOST = "mail.kunde.test"
DNS_ADDRESS = "127.0.6.1"
KEYS = tuple(ENDPOINTS)
CODE = "CLIENT_ADDRESS_BLOCKED"


def zone(address: str) -> dict:
    services = {"_imap": 143, "_imaps": 993, "_pop3": 110, "_pop3s": 995}
    services |= {"_submission": 587, "_submissions": 465}
    records: dict = {"@": {"MX": ["10 mail"]}, "mail": {"A": [address]}}
    for service, port in services.items():
        records[f"{service}._tcp"] = {"SRV": [f"0 1 {port} mail"]}
    return {DOMAIN: records}


@contextmanager
def web_port_open(address: str, port: int = 443) -> Iterator[None]:
    """A port that completes the TCP handshake (the kernel does it; nobody accepts)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(16)
    try:
        yield
    finally:
        listener.close()


def argv(pki, dns: DnsServer, *, timeout: float, fmt: str, deadline: float = 6.0) -> list[str]:
    return [
        *("check", DOMAIN, "--format", fmt, "--no-autoconfig", "--nameserver", dns.nameserver),
        *("--ca-file", str(pki.ca_pem_path), "--timeout", str(timeout)),
        *("--deadline", str(deadline)),
    ]


@pytest.fixture
def run(pki, loopback_address, capsys):
    """Sets up the mail host (``behaviours``), its web ports and DNS; runs the CLI."""

    def go(
        behaviours: Mapping[str, Behaviour | None],
        *,
        web: str = "closed",  # "open", "closed" (refused) or "filtered"
        scripted: Mapping[str, Dialogue] | None = None,
        timeout: float = 1.0,
        fmt: str = "json",
        lang: str = "en",
    ):
        cert = pki.good([HOST])
        context = cert.server_context()
        with ExitStack() as stack:
            stack.enter_context(
                FakeMailHost(loopback_address, context, hostname=HOST, behaviours=behaviours)
            )
            for key, script in (scripted or {}).items():
                stack.enter_context(ScriptedServer(loopback_address, ENDPOINTS[key][1], script))
            if web == "open":
                stack.enter_context(web_port_open(loopback_address))
            elif web == "filtered":
                for port in (443, 80):
                    server = FakeMailServer(
                        "imap",
                        loopback_address,
                        port,
                        implicit_tls=False,
                        behaviour=Behaviour.FILTERED,
                    )
                    stack.enter_context(server)
            dns = stack.enter_context(DnsServer(zone(loopback_address), DNS_ADDRESS))
            capsys.readouterr()
            started = time.monotonic()
            code = main([*argv(pki, dns, timeout=timeout, fmt=fmt), "--lang", lang])
            seconds = time.monotonic() - started
            out = capsys.readouterr().out
        if fmt != "json":
            return code, out, seconds
        report = json.loads(out)
        errors = sorted(VALIDATOR.iter_errors(report), key=str)
        assert not errors, errors[0].message
        return code, report, seconds

    return go


def codes(report: dict) -> list[str]:
    return [f["code"] for f in report["findings"]]


def blocked(report: dict) -> dict:
    (finding,) = [f for f in report["findings"] if f["code"] == CODE]
    return finding


# -- every mail port refused: is the machine up? ----------------------------


def test_every_mail_port_refused_while_443_answers_is_a_suspected_ban(run, loopback_address):
    code, report, _ = run(dict.fromkeys(KEYS), web="open")
    assert code == 2
    finding = blocked(report)
    assert finding["severity"] == "critical"
    assert finding["details"]["evidence"] == "web_answers"
    assert finding["details"]["server_address"] == loopback_address
    # The address maildiag connected from is named, and it is the one on the socket.
    (web,) = [c for c in report["port_checks"] if c["port"] == 443]
    assert web["state"] == "open" and web["local_address"]
    local = web["local_address"]
    assert finding["details"]["local_address"] == local
    assert local in finding["explanation"]
    assert f"fail2ban-client set dovecot unbanip {local}" in finding["fix"]
    assert "443" in finding["explanation"]
    # The six refused ports are its consequences, not six causes.
    closed = [f for f in report["findings"] if f["code"] == "PORT_CLOSED"]
    assert len(closed) == 6 and all(f["explained_by"] == CODE for f in closed)
    roots = [
        c["code"]
        for c in report["causes"]
        if c["severity"] in ("warning", "critical")
        and "explained_by" not in c
        and c["code"] not in CONSEQUENCES
    ]
    assert roots == [CODE]


def test_the_text_verdict_names_the_ban_and_not_the_ports(run):
    code, text, _ = run(dict.fromkeys(KEYS), web="open", fmt="text")
    print(text)
    verdict = text.split("\n\n", 1)[0]
    assert "block this client's address" in verdict
    assert "Connection refused" not in verdict
    assert "(a consequence of CLIENT_ADDRESS_BLOCKED)" in " ".join(text.split())


def test_in_german_the_sign_is_rebuilt_in_german(run):
    code, report, _ = run(dict.fromkeys(KEYS), web="open", lang="de")
    finding = blocked(report)
    assert finding["explanation"].startswith("Alle Mail-Ports von mail.kunde.test")
    assert "Port 443" in finding["explanation"]
    assert finding["details"]["evidence"] == "web_answers"  # the facts stay as they are
    (closed, *_) = [f for f in report["findings"] if f["code"] == "PORT_CLOSED"]
    assert closed["explained_by"] == CODE


def test_nothing_answering_at_all_is_a_host_down_not_a_ban(run, loopback_address):
    code, report, _ = run(dict.fromkeys(KEYS), web="closed")
    assert code == 2
    assert CODE not in codes(report)
    assert "PORT_CLOSED" in codes(report)
    assert all("explained_by" not in f for f in report["findings"])
    # The web ports were asked, and refused.
    states = {c["port"]: c["state"] for c in report["port_checks"]}
    assert states == {443: "refused", 80: "refused"}


def test_one_refused_port_is_no_ban_even_when_443_answers(run):
    code, report, _ = run({"pop3": None}, web="open")
    assert CODE not in codes(report)
    (closed,) = [f for f in report["findings"] if f["code"] == "PORT_CLOSED"]
    assert "explained_by" not in closed


def test_every_port_filtered_while_443_answers_is_a_suspected_ban_without_a_serial_wait(run):
    # The mail connects time out after --timeout; the web ports are asked
    # after SLOW_CONNECT, alongside, not after them.
    code, report, seconds = run(dict.fromkeys(KEYS, Behaviour.FILTERED), web="open", timeout=2.5)
    assert blocked(report)["details"]["evidence"] == "web_answers"
    filtered = [f for f in report["findings"] if f["code"] == "PORT_FILTERED"]
    assert len(filtered) == 6 and all(f["explained_by"] == CODE for f in filtered)
    assert seconds < 2.5 + 1.5


def test_a_host_that_drops_everything_costs_one_timeout_not_two(run):
    # The twin: 443 and 80 drop the SYNs as well. No ban verdict, and the
    # web check (started while the mail connects still wait) ends with them.
    code, report, seconds = run(
        dict.fromkeys(KEYS, Behaviour.FILTERED), web="filtered", timeout=2.5
    )
    assert CODE not in codes(report)
    assert "PORT_FILTERED" in codes(report)
    assert {c["state"] for c in report["port_checks"]} == {"timeout"}
    assert seconds < 2.5 + 1.5, f"{seconds:.1f} s: the web check waited for the mail ports"


def test_healthy_mail_ports_ask_no_web_port(run):
    code, report, _ = run({}, web="open")
    assert code in (0, 1)
    assert report["port_checks"] == []
    assert CODE not in codes(report)


# -- greeted, then dropped ----------------------------------------------------


def test_greeting_then_drop_on_every_port_is_a_suspected_ban(run):
    code, report, _ = run(dict.fromkeys(KEYS, Behaviour.CLOSE_AFTER_GREETING))
    finding = blocked(report)
    assert finding["details"]["evidence"] == "dropped"
    local = finding["details"]["local_address"]
    assert local in finding["explanation"] and local in finding["fix"]
    # Recorded from the socket of each probe.
    assert {e["local_address"] for e in report["endpoints"]} == {local}
    dropped = [f for f in report["findings"] if f["code"] == "CONNECTION_CLOSED"]
    assert len(dropped) == 6 and all(f["explained_by"] == CODE for f in dropped)


def test_greeting_then_drop_on_one_port_is_no_ban(run):
    code, report, _ = run({"imap": Behaviour.CLOSE_AFTER_GREETING})
    assert CODE not in codes(report)
    (dropped,) = [f for f in report["findings"] if f["code"] == "CONNECTION_CLOSED"]
    assert "explained_by" not in dropped


# -- what the server says -------------------------------------------------------


def test_421_too_many_connections_stays_throttling(run):
    code, report, _ = run(dict.fromkeys(KEYS, Behaviour.THROTTLE))
    assert CODE not in codes(report)
    throttled = [
        f for f in report["findings"] if f["code"] in ("SMTP_THROTTLED", "SERVER_THROTTLED")
    ]
    assert throttled and all("explained_by" not in f for f in throttled)


def test_421_that_blames_the_address_is_a_suspected_ban(run):
    reply = b"421 4.7.1 Client host [127.0.0.1] blocked after too many failed logins\r\n"
    code, report, _ = run(
        {"submission": None}, scripted={"submission": Dialogue("smtp", greeting=reply)}
    )
    finding = blocked(report)
    assert finding["details"]["evidence"] == "reply"
    assert "blocked after too many failed logins" in finding["explanation"]
    (throttled,) = [f for f in report["findings"] if f["code"] == "SMTP_THROTTLED"]
    assert throttled["explained_by"] == CODE


@pytest.mark.parametrize(
    ("reply", "blames"),
    [
        ("421 4.7.0 Your IP address has been blocked", True),
        ("-ERR [SYS/TEMP] Login blocked for this address", True),
        ("* BYE [UNAVAILABLE] You are banned", True),
        (
            "554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using zen.spamhaus.org",
            True,
        ),
        ("421 4.7.0 Too many failed login attempts, try later", True),
        ("-ERR [SYS/TEMP] too many authentication failures", True),
        ("421 4.7.0 Too many connections, try again later", False),
        ("421 Too many concurrent SMTP connections from this IP address", False),
        ("-ERR [SYS/TEMP] too many connections", False),
        ("* BYE Too many invalid IMAP commands.", False),
        ("-ERR [IN-USE] mailbox locked", False),
        ("", False),
        (None, False),
    ],
)
def test_which_replies_blame_the_address(reply, blames):
    assert blames_address(reply) is blames


def test_in_a_batch_the_domains_sharing_a_blocked_server_all_hear_of_it(pki, loopback_address):
    # The second domain reuses the first one's probes (runner.ProbeCache),
    # without connecting: the block is judged for it all the same.
    from maildiag.runner import CheckRequest, ProbeCache, diagnose

    zones = zone(loopback_address)
    zones["zwei.test"] = {
        "@": {"MX": [f"10 {HOST}."]},
        **{k: v for k, v in zones[DOMAIN].items() if k.startswith("_")},
    }
    for records in zones["zwei.test"].values():
        if "SRV" in records:
            records["SRV"] = [r.replace(" mail", f" {HOST}.") for r in records["SRV"]]
    cache = ProbeCache()
    context = pki.good([HOST]).server_context()
    with (
        FakeMailHost(loopback_address, context, hostname=HOST, behaviours=dict.fromkeys(KEYS)),
        web_port_open(loopback_address),
        DnsServer(zones, DNS_ADDRESS) as dns,
    ):
        diagnoses = [
            diagnose(
                CheckRequest(
                    domain,
                    nameserver=dns.nameserver,
                    ca_file=str(pki.ca_pem_path),
                    timeout=1.0,
                    deadline=6.0,
                    autoconfig=False,
                ),
                probe_cache=cache,
            )
            for domain in (DOMAIN, "zwei.test")
        ]
    first, second = diagnoses
    assert {r.endpoint.host for r in second.results} == {HOST}
    assert all(r.shared for r in second.results)
    for diagnosis in diagnoses:
        assert CODE in [f.code for f in diagnosis.findings], diagnosis.domain
