"""The fault suite (issue #11): every scenario a world of misbehaving servers, DNS and input.

Each scenario is one row of ``SCENARIOS``: how to set up the world (the fake
servers' behaviour per port, the DNS zone, an autoconfig server, the command
line) and what a correct diagnosis looks like. Every row runs the real CLI
(``maildiag check``; in-process through ``maildiag.cli.main``, a few as a
subprocess of the installed console script where process behaviour matters)
and every row is held to the same invariants:

* the exit code;
* the run ended within its ``--deadline`` (plus a margin for start-up);
* no traceback and no exception class name on stderr;
* no secret anywhere: the password (set in MAILDIAG_PASSWORD for every run),
  its base64, and the base64 of the AUTH PLAIN blobs ``\\0user\\0password``
  and ``user\\0user\\0password``;
* the JSON report validates against ``maildiag/schema/report.schema.json``
  (with format checking);
* the root cause: the expected finding codes are present and the codes of a
  known misdiagnosis absent (a plaintext 421 on 465 is throttling, not a
  failed TLS handshake).

Input errors may not produce JSON: they must print one line on stderr and
exit 3.
"""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from maildiag.cli import main
from tests.lab import faults
from tests.lab.certs import ServerCert, TestPKI
from tests.lab.dns_server import DnsServer
from tests.lab.fake_servers import ENDPOINTS, Behaviour, FakeMailHost
from tests.lab.faults import Dialogue, EchoingDialogue, ScriptedServer
from tests.lab.https_server import HttpsServer, Reply

ROOT = Path(__file__).parents[1]
SCHEMA = json.loads((ROOT / "maildiag/schema/report.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
CONSOLE_SCRIPT = Path(sys.executable).parent / "maildiag"

DOMAIN = "kunde.test"
HOST = "mail.kunde.test"
USER = "alice@kunde.test"
# Distinctive, so that any leak is unmistakable (and not a substring of anything else).
SECRET = "Qx7!fault-suite-Secret-93"
SECRET_FORMS = (
    SECRET,
    base64.b64encode(SECRET.encode()).decode(),
    base64.b64encode(f"\0{USER}\0{SECRET}".encode()).decode(),
    base64.b64encode(f"{USER}\0{USER}\0{SECRET}".encode()).decode(),
)
DNS_ADDRESS = "127.0.5.1"
WEB_ADDRESS = "127.0.5.2"  # autoconfig HTTPS on :443
FOREIGN_ADDRESS = "127.0.5.3"  # servers of another domain (cross-domain autoconfig)
START_MARGIN = 1.5  # seconds past --deadline for an in-process run to return
PROCESS_MARGIN = 3.0  # ... for a subprocess (interpreter start-up, imports)
KEYS = tuple(ENDPOINTS)
EXCEPTION_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception|Interrupt)\b|Traceback")


# --------------------------------------------------------------------------
# The world a scenario sets up
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scripted:
    """One port served by a script (see tests/lab/faults.py) instead of FakeMailHost."""

    make: Callable[[World], faults.Script]
    tls: bool = False  # wrap in TLS before the script runs (implicit-TLS port)


Port = Behaviour | Scripted | None


@dataclass
class World:
    pki: TestPKI
    address: str
    cert: ServerCert
    context: Any  # ssl.SSLContext of the mail servers
    host: FakeMailHost | None = None
    scripted: dict[str, ScriptedServer] = field(default_factory=dict)
    dns: DnsServer | None = None
    web: Any = None
    foreign: dict[str, ScriptedServer] = field(default_factory=dict)

    def logins(self) -> int:
        """Login attempts that carried the password, over every server of the world."""
        count = sum(s.logins for s in (*self.scripted.values(), *self.foreign.values()))
        if self.host is not None:
            count += sum(s.failed_logins + s.successful_logins for s in self.host.servers.values())
        return count


@dataclass
class Run:
    code: int
    out: str
    err: str
    seconds: float
    report: dict | None


def standard_zone(address: str, **extra: Any) -> dict:
    records: dict[str, Any] = {
        "@": {"MX": ["10 mail"]},
        "mail": {"A": [address]},
        "_imap._tcp": {"SRV": ["0 1 143 mail"]},
        "_imaps._tcp": {"SRV": ["0 1 993 mail"]},
        "_pop3._tcp": {"SRV": ["0 1 110 mail"]},
        "_pop3s._tcp": {"SRV": ["0 1 995 mail"]},
        "_submission._tcp": {"SRV": ["0 1 587 mail"]},
        "_submissions._tcp": {"SRV": ["0 1 465 mail"]},
        "autoconfig": {"A": [WEB_ADDRESS]},
    }
    records.update(extra)
    return records


@dataclass(frozen=True)
class Scenario:
    name: str
    ports: Mapping[str, Port] = field(default_factory=dict)  # missing keys: HEALTHY
    cert: Callable[[TestPKI], ServerCert] | None = None
    context: Callable[[ServerCert], Any] | None = None  # server SSLContext from the cert
    zone: Callable[[str], Mapping[str, Any]] | None = None  # address -> all zones
    autoconfig: Callable[[World], Any] | None = None  # a context manager on WEB_ADDRESS:443
    foreign: Mapping[str, Scripted] = field(default_factory=dict)  # on FOREIGN_ADDRESS
    users: Mapping[str, str] | None = None  # FakeMailHost users (default: USER -> SECRET)
    quota: tuple[int, int] = (51200, 1048576)
    delay: float = 0.0  # FakeMailHost delay (SLOW_GREETING, EARLY_TALKER_REJECT)
    domain: str = DOMAIN
    args: tuple[str, ...] = ()
    user: bool = False  # log in (--user USER; MAILDIAG_PASSWORD is always set)
    timeout: float = 1.0
    deadline: float = 3.0
    autoconfig_on: bool = False  # without it --no-autoconfig is passed
    trust_cert_root: bool = False  # --ca-file is the root of the scenario's certificate
    fmt: str = "json"
    subprocess: bool = False
    env: Mapping[str, str | None] = field(default_factory=dict)
    # Expectations
    exit: int | tuple[int, ...] = 0
    present: tuple[str, ...] = ()  # "CODE" or "CODE@port"
    present_any: tuple[str, ...] = ()  # at least one of these
    absent: tuple[str, ...] = ()  # "CODE" or "CODE@port"
    input_error: str | None = None  # a regex the one stderr line must match
    check: Callable[[World, Run], None] | None = None
    raw_args: tuple[str, ...] | None = None  # replaces the whole command line (input errors)


# --------------------------------------------------------------------------
# Small builders for the table
# --------------------------------------------------------------------------


def dialogue(protocol: str, **kw: Any) -> Scripted:
    """A Dialogue on a STARTTLS port (STARTTLS upgrades with the world's certificate)."""
    return Scripted(lambda w: Dialogue(protocol, context=w.context, **kw))


def dialogue_tls(protocol: str, **kw: Any) -> Scripted:
    return Scripted(lambda w: Dialogue(protocol, context=w.context, **kw), tls=True)


def raw(script: faults.Script, tls: bool = False) -> Scripted:
    return Scripted(lambda w: script, tls=tls)


def every_port(behaviour: Port) -> dict[str, Port]:
    return dict.fromkeys(KEYS, behaviour)


def only(keys: tuple[str, ...], port: Port = Behaviour.HEALTHY) -> dict[str, Port]:
    """``port`` on ``keys``, nothing listening elsewhere."""
    return {key: (port if key in keys else None) for key in KEYS}


def autoconfig_xml(imap_host: str, smtp_host: str) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1"><emailProvider id="{DOMAIN}"><domain>{DOMAIN}</domain>
<incomingServer type="imap"><hostname>{imap_host}</hostname><port>993</port>
<socketType>SSL</socketType><username>%EMAILADDRESS%</username></incomingServer>
<outgoingServer type="smtp"><hostname>{smtp_host}</hostname><port>465</port>
<socketType>SSL</socketType><username>%EMAILADDRESS%</username></outgoingServer>
</emailProvider></clientConfig>""".encode()


def web(routes: Mapping[str, Reply | bytes]) -> Callable[[World], Any]:
    def make(world: World) -> HttpsServer:
        # HttpsServer takes a trustme leaf: one from the lab's intermediate CA.
        cert = world.pki.intermediate.issue_cert(f"autoconfig.{DOMAIN}", DOMAIN)
        return HttpsServer(routes, cert, address=WEB_ADDRESS)

    return make


AUTOCONFIG_ROUTE = f"autoconfig.{DOMAIN}/mail/config-v1.1.xml"
WELL_KNOWN_ROUTE = f"{DOMAIN}/.well-known/autoconfig/mail/config-v1.1.xml"

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE clientConfig [
  <!ENTITY a "aaaaaaaaaa">
  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
  <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
  <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
  <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
  <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
  <!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">
  <!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">
  <!ENTITY i "&h;&h;&h;&h;&h;&h;&h;&h;&h;&h;">
]>
<clientConfig><emailProvider><incomingServer type="imap">
<hostname>&i;</hostname><port>993</port><socketType>SSL</socketType>
</incomingServer></emailProvider></clientConfig>
"""


def slow_web(world: World) -> ScriptedServer:
    """An autoconfig server that sends its response one byte per second."""
    cert = world.pki.good([f"autoconfig.{DOMAIN}", DOMAIN])

    def script(conn: faults.ScriptConn) -> None:
        while conn.readline():  # the request head
            pass
        body = autoconfig_xml(HOST, HOST)
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        conn.drip(head + body, 1.0)

    return ScriptedServer(WEB_ADDRESS, 443, script, tls=cert.server_context())


def no_zone_srv(address: str) -> dict:
    zone = standard_zone(address)
    return {DOMAIN: {k: v for k, v in zone.items() if not k.startswith("_")}}


def zones(**extra: Any) -> Callable[[str], dict]:
    return lambda address: {
        DOMAIN: standard_zone(address, **extra),
        "müller.test": standard_zone(address),
    }


def zones_without(*names: str, **extra: Any) -> Callable[[str], dict]:
    def make(address: str) -> dict:
        zone = standard_zone(address, **extra)
        for name in names:
            zone.pop(name, None)
        return {DOMAIN: zone}

    return make


def endpoints(run: Run) -> list[dict]:
    assert run.report is not None
    return run.report["endpoints"]


def findings(run: Run, code: str) -> list[dict]:
    assert run.report is not None
    return [f for f in run.report["findings"] if f["code"] == code]


# -- extra checks ---------------------------------------------------------------


def logins_exactly(n: int) -> Callable[[World, Run], None]:
    def check(world: World, run: Run) -> None:
        assert world.logins() == n, f"{world.logins()} logins reached the servers, expected {n}"

    return check


def injection_quoted(injected: bytes) -> Callable[[World, Run], None]:
    """The injected line is quoted (escaped) in the finding, and nothing was sent after it."""

    def check(world: World, run: Run) -> None:
        (finding,) = findings(run, "STARTTLS_INJECTION")
        assert injected.decode() in finding["details"]["injected"]
        assert "\\x0d\\x0a" in finding["details"]["injected"]  # line ends shown, not kept
        assert world.host is not None
        (server,) = (
            s for s in world.host.servers.values() if s.behaviour is Behaviour.STARTTLS_INJECTION
        )
        assert server.tls_handshakes == 0 and not any(c.tls for c in server.received)
        assert server.failed_logins + server.successful_logins == 0

    return check


def no_foreign_login(world: World, run: Run) -> None:
    for server in world.foreign.values():
        assert server.logins == 0, "the password went to a host of another domain"
        assert not any(SECRET.encode() in line for line in server.lines)


def no_port_zero(world: World, run: Run) -> None:
    ports = {(e["protocol"], e["security"]): e["port"] for e in endpoints(run)}
    assert 0 not in ports.values()
    assert ports.get(("imap", "tls")) == 993


def no_pop3_endpoint(world: World, run: Run) -> None:
    assert not [
        e for e in endpoints(run) if e["protocol"] == "pop3" and e["security"] == "starttls"
    ]


def autoconfig_refused(world: World, run: Run) -> None:
    assert run.report is not None
    results = run.report["discovery"]["autoconfig"]
    assert results and all(r.get("error") for r in results), results
    assert not any("autoconfig" in e["sources"] for e in endpoints(run))


def autoconfig_used(world: World, run: Run) -> None:
    assert run.report is not None
    assert any("autoconfig" in e["sources"] for e in endpoints(run)), run.report["discovery"]


def reset_after(data: bytes) -> faults.Script:
    def script(conn: faults.ScriptConn) -> None:
        conn.send(data)
        conn.wait(0.05)
        conn.reset()

    return script


def no_escape_bytes(world: World, run: Run) -> None:
    assert "\x1b" not in run.out and "\x1b" not in run.err
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", run.out)


def no_plaintext_password(world: World, run: Run) -> None:
    assert world.host is not None
    for server in world.host.servers.values():
        assert not any(SECRET.encode() in line for line in server.plaintext_commands)
    assert world.logins() == 0


def quota_message_advice(world: World, run: Run) -> None:
    assert run.report is not None
    texts = [
        f"{f['title']} {f['explanation']} {f['fix']}"
        for f in run.report["findings"]
        if f["code"].startswith("QUOTA") and f["severity"] == "critical"
    ]
    assert texts, "a mailbox at 100 % of its message quota is critical"
    for text in texts:
        assert "attachments" not in text, (
            "a message-count quota is not fixed by deleting large attachments"
        )
        assert "message" in text.lower()


def greeting_escaped_in_json(world: World, run: Run) -> None:
    # JSON escapes ESC as \\u001b anyway; what must not happen is a raw byte.
    no_escape_bytes(world, run)


# --------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------

ANSI_554 = b"554 \x1b[2J\x1b[31mmail.kunde.test\x07 go away\x1b]0;owned\x07\r\n"
PLAIN_421 = (
    b"421 Too many concurrent SMTP connections from this IP address; please try again later.\r\n"
)

S = Scenario
TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
# An IMAP server whose only quota is the number of messages, used up.
MESSAGE_QUOTA: dict[str, Any] = {
    "caps_tls": "IMAP4rev1 AUTH=PLAIN QUOTA",
    "login": b"{tag} OK Logged in\r\n",
    "extra": {
        "GETQUOTAROOT": b'* QUOTAROOT INBOX "q"\r\n* QUOTA "q" (MESSAGE 1000 1000)\r\n'
        b"{tag} OK done\r\n"
    },
}
# Input-error rows still bound the run, in case the bad value slips through to the network.
QUICK = ("--timeout", "1", "--deadline", "3", "--no-autoconfig")
SCENARIOS: list[Scenario] = [
    # --- healthy baseline ---------------------------------------------------------
    S(
        "healthy_host",
        exit=0,
        present=("ENDPOINT_OK",),
        absent=("PROTOCOL_ERROR", "TLS_HANDSHAKE_FAILED"),
    ),
    S("healthy_host_text", fmt="text", exit=0),
    # --- IMAP ---------------------------------------------------------------------
    S("imap_never_greets", {"imap": Behaviour.NEVER_GREET}, exit=1, present=("NO_GREETING@143",)),
    S(
        "imaps_never_greets_inside_tls",
        {"imaps": Behaviour.NEVER_GREET},
        exit=1,
        present=("NO_GREETING@993",),
        absent=("TLS_HANDSHAKE_TIMEOUT@993",),
    ),
    S(
        "imap_close_after_greeting",
        {"imap": Behaviour.CLOSE_AFTER_GREETING},
        exit=(1, 2),
        present=("CONNECTION_CLOSED@143",),
    ),
    S("imap_http_garbage", {"imap": Behaviour.GARBAGE}, exit=2, present=("PROTOCOL_ERROR@143",)),
    S("imap_binary_junk", {"imap": Behaviour.BINARY}, exit=2, present=("PROTOCOL_ERROR@143",)),
    S("imap_10mb_line", {"imap": Behaviour.HUGE_LINE}, exit=2, present=("PROTOCOL_ERROR@143",)),
    S(
        "imap_bye_too_many_connections",
        {"imap": Behaviour.THROTTLE},
        exit=1,
        present=("SERVER_THROTTLED@143",),
        absent=("SERVICE_UNAVAILABLE@143",),
    ),
    S(
        "imap_bye_service_disabled",
        {"imap": Behaviour.UNAVAILABLE},
        exit=2,
        present=("SERVICE_UNAVAILABLE@143",),
    ),
    S(
        "imap_greeting_split_in_many_packets",
        {"imap": Behaviour.SPLIT_REPLIES, "imaps": Behaviour.SPLIT_REPLIES},
        timeout=2,
        exit=0,
        absent=("PROTOCOL_ERROR",),
    ),
    S(
        "imap_greeting_dripped_bytewise",
        {
            "imap": dialogue(
                "imap",
                greeting=b"",
                after_greeting=lambda c: c.drip(b"* OK slow but fine\r\n", 0.02),
            )
        },
        timeout=2,
        exit=0,
        absent=("PROTOCOL_ERROR", "NO_GREETING"),
    ),
    S(
        "imap_slow_greeting_within_timeout",
        every_port(Behaviour.SLOW_GREETING),
        delay=0.4,
        timeout=2,
        exit=0,
        present=("ENDPOINT_OK",),
    ),
    S(
        "imap_preauth_greeting_on_143",
        {
            "imap": dialogue(
                "imap", greeting=b"* PREAUTH [CAPABILITY IMAP4rev1] logged in as alice\r\n"
            )
        },
        exit=(1, 2),
        present=("IMAP_PREAUTH@143",),
        absent=("ENDPOINT_OK@143",),
    ),
    S(
        "imap_capability_literal_99999999",
        {"imap": dialogue("imap", capability=b"* CAPABILITY {99999999}\r\n")},
        exit=2,
        present=("PROTOCOL_ERROR@143",),
    ),
    S(
        "imap_bare_lf_line_endings",
        {
            "imap": dialogue(
                "imap",
                greeting=b"* OK lf only\n",
                capability=b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\n",
            )
        },
        exit=(0, 2),
        present_any=("ENDPOINT_OK", "PROTOCOL_ERROR"),
    ),
    S(
        "imap_starttls_refused",
        {"imap": Behaviour.STARTTLS_REFUSED},
        exit=2,
        present=("STARTTLS_FAILED@143",),
    ),
    S(
        "imap_no_starttls",
        {"imap": Behaviour.NO_STARTTLS},
        exit=2,
        present=("STARTTLS_MISSING@143",),
    ),
    # Plaintext behind the go-ahead is reported as injection however it is
    # segmented: in the same read as the go-ahead (the parser's buffer) or
    # in place of the ServerHello (the handshake's first bytes).
    S(
        "imap_starttls_ok_then_plaintext",
        {"imap": dialogue("imap", starttls="plaintext", extra={})},
        exit=2,
        present=("STARTTLS_INJECTION@143",),
        absent=("ENDPOINT_OK@143", "PROTOCOL_ERROR@143", "TLS_HANDSHAKE_FAILED@143"),
    ),
    S(
        "imap_starttls_injection",
        {"imap": Behaviour.STARTTLS_INJECTION},
        user=True,
        exit=2,
        present=("STARTTLS_INJECTION@143", "ENDPOINT_OK@993"),
        absent=("ENDPOINT_OK@143", "PROTOCOL_ERROR@143"),
        check=injection_quoted(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN]"),
    ),
    S(
        "imap_starttls_answers_hello_in_plaintext",
        {"imap": dialogue("imap", starttls="answer_hello")},
        exit=2,
        present=("STARTTLS_INJECTION@143",),
        absent=("ENDPOINT_OK@143", "TLS_HANDSHAKE_FAILED@143"),
    ),
    S(
        "imap_starttls_then_tls_stall",
        {"imap": Behaviour.TLS_STALL},
        exit=2,
        present=("TLS_HANDSHAKE_TIMEOUT@143",),
    ),
    S(
        "imap_bye_instead_of_capability",
        {"imap": dialogue("imap", capability=b"* BYE Server shutting down.\r\n")},
        exit=(1, 2),
        present_any=("CONNECTION_CLOSED", "SERVICE_UNAVAILABLE", "SERVER_THROTTLED"),
        absent=("ENDPOINT_OK@143",),
    ),
    S(
        "imap_plaintext_login_allowed",
        {"imap": Behaviour.PLAINTEXT_LOGIN},
        exit=1,
        present=("PLAINTEXT_AUTH_ALLOWED@143",),
    ),
    S(
        "imap_reset_after_greeting",
        {"imap": raw(reset_after(b"* OK hello\r\n"))},
        exit=(1, 2),
        present=("CONNECTION_CLOSED@143",),
        absent=("ENDPOINT_OK@143",),
    ),
    S(
        "imap_nul_and_control_bytes_in_greeting",
        {"imap": dialogue("imap", greeting=b"* OK hel\x00lo\x07\x1b[5m world\r\n")},
        exit=(0, 2),
        present_any=("ENDPOINT_OK@143", "PROTOCOL_ERROR@143"),
        check=no_escape_bytes,
    ),
    # Every line resets a per-read timeout; only the run's deadline can end this.
    S(
        "imap_untagged_noise_forever",
        {"imap": raw(faults.endless_multiline(b"* OK ready\r\n", b"* OK noise\r\n"))},
        timeout=1,
        deadline=5,
        exit=(1, 2),
        present_any=("SERVER_STALLED@143", "PROTOCOL_ERROR@143"),
        absent=("ENDPOINT_OK@143", "DEADLINE_EXCEEDED@143"),
    ),
    # --- POP3 ---------------------------------------------------------------------
    S("pop3_never_greets", {"pop3": Behaviour.NEVER_GREET}, exit=1, present=("NO_GREETING@110",)),
    S(
        "pop3_http_garbage",
        {"pop3": Behaviour.GARBAGE},
        exit=(1, 2),
        present=("PROTOCOL_ERROR@110",),
    ),
    S("pop3_err_sys_temp", {"pop3": Behaviour.THROTTLE}, exit=1, present=("SERVER_THROTTLED@110",)),
    S(
        "pop3_err_sys_perm",
        {"pop3": Behaviour.UNAVAILABLE},
        exit=(1, 2),
        present=("SERVICE_UNAVAILABLE@110",),
    ),
    S(
        "pop3s_tls_stall",
        {"pop3s": Behaviour.TLS_STALL},
        exit=(1, 2),
        present=("TLS_HANDSHAKE_TIMEOUT@995",),
    ),
    S(
        "pop3_stls_injection",
        {"pop3": Behaviour.STARTTLS_INJECTION},
        user=True,
        exit=2,
        present=("STARTTLS_INJECTION@110",),
        absent=("ENDPOINT_OK@110", "PROTOCOL_ERROR@110"),
        check=injection_quoted(b"+OK Capability list follows"),
    ),
    S(
        "pop3_stls_refused",
        {"pop3": Behaviour.STARTTLS_REFUSED},
        exit=(1, 2),
        present=("STARTTLS_FAILED@110",),
    ),
    S(
        "pop3_capa_never_ends",
        {"pop3": raw(faults.endless_multiline(b"+OK ready\r\n", b"X-CAPA-LINE\r\n"))},
        exit=(1, 2),
        present_any=("PROTOCOL_ERROR", "SERVER_STALLED"),
        absent=("ENDPOINT_OK@110",),
    ),
    S(
        "pop3_10mb_line",
        {"pop3": Behaviour.HUGE_LINE},
        exit=(1, 2),
        present=("PROTOCOL_ERROR@110",),
    ),
    S(
        "pop3_user_before_tls",
        {"pop3": Behaviour.PLAINTEXT_LOGIN},
        exit=1,
        present=("PLAINTEXT_AUTH_ALLOWED@110",),
    ),
    # --- SMTP submission ---------------------------------------------------------
    S(
        "smtp_421_on_587",
        {"submission": Behaviour.THROTTLE},
        exit=1,
        present_any=("SMTP_THROTTLED", "SERVER_THROTTLED"),
        absent=("SERVICE_UNAVAILABLE",),
    ),
    S(
        "smtp_421_answer_to_ehlo",
        {"submission": dialogue("smtp", capability=b"421 4.3.2 Service shutting down\r\n")},
        exit=1,
        present_any=("SMTP_THROTTLED@587", "SERVER_THROTTLED@587"),
        absent=("PROTOCOL_ERROR@587", "SERVICE_UNAVAILABLE@587"),
    ),
    S(
        "smtp_10mb_greeting_line",
        {"submission": Behaviour.HUGE_LINE},
        exit=2,
        present=("PROTOCOL_ERROR@587",),
    ),
    S(
        "smtp_554_greeting",
        {"submission": Behaviour.UNAVAILABLE},
        exit=2,
        present=("SERVICE_UNAVAILABLE@587",),
    ),
    S(
        "smtp_ehlo_10000_lines",
        {
            "submission": dialogue(
                "smtp",
                capability=b"".join(b"250-X-LINE-%05d\r\n" % i for i in range(10000))
                + b"250 STARTTLS\r\n",
            )
        },
        timeout=2,
        exit=(0, 2),
        present_any=("ENDPOINT_OK", "PROTOCOL_ERROR"),
    ),
    S(
        "smtp_multiline_reply_never_ends",
        {"submission": raw(faults.endless_multiline(b"220-hello\r\n", b"220-more\r\n"))},
        exit=(1, 2),
        present_any=("PROTOCOL_ERROR@587", "SERVER_STALLED@587", "NO_GREETING@587"),
        absent=("ENDPOINT_OK@587",),
    ),
    S(
        "smtp_ehlo_reply_never_finishes",
        {
            "submission": dialogue(
                "smtp", capability=b"", extra={"EHLO": b"250-fault.test\r\n250-PIPELINING\r\n"}
            )
        },
        exit=(1, 2),
        present_any=("SERVER_STALLED@587", "PROTOCOL_ERROR@587"),
        absent=("ENDPOINT_OK@587",),
    ),
    S(
        "smtp_ehlo_refused_502",
        {"submission": dialogue("smtp", capability=b"502 5.5.2 no EHLO\r\n")},
        exit=(1, 2),
        absent=("ENDPOINT_OK@587",),
    ),
    S(
        "smtp_multiline_banner_is_fine",
        {
            "submission": dialogue(
                "smtp", greeting=b"220-fault.test ESMTP\r\n220-no UCE\r\n220 ok\r\n"
            )
        },
        exit=0,
        absent=("PROTOCOL_ERROR",),
    ),
    S(
        "smtp_early_talker_reject_not_provoked",
        {"submission": Behaviour.EARLY_TALKER_REJECT},
        delay=0.3,
        timeout=2,
        exit=0,
        present=("ENDPOINT_OK",),
    ),
    S(
        "smtp_close_immediately",
        {"submission": Behaviour.CLOSE_IMMEDIATELY},
        exit=(1, 2),
        present=("CONNECTION_CLOSED@587",),
    ),
    S(
        "smtps_filtered",
        {"submissions": Behaviour.FILTERED},
        exit=1,
        present=("PORT_FILTERED@465",),
    ),
    S(
        "smtp_starttls_injection",
        {"submission": Behaviour.STARTTLS_INJECTION},
        user=True,
        exit=2,
        present=("STARTTLS_INJECTION@587", "ENDPOINT_OK@465"),
        absent=("ENDPOINT_OK@587", "PROTOCOL_ERROR@587"),
        check=injection_quoted(b"250 AUTH PLAIN LOGIN"),
    ),
    S(
        "smtp_starttls_answers_hello_in_plaintext",
        {"submission": dialogue("smtp", starttls="answer_hello")},
        exit=2,
        present=("STARTTLS_INJECTION@587",),
        absent=("ENDPOINT_OK@587", "TLS_HANDSHAKE_FAILED@587"),
    ),
    S(
        "smtp_starttls_454",
        {"submission": Behaviour.STARTTLS_REFUSED},
        exit=2,
        present=("STARTTLS_FAILED@587",),
    ),
    S(
        "smtp_no_auth_after_tls_without_user",
        {"submission": dialogue("smtp", caps_tls="PIPELINING,8BITMIME")},
        exit=(1, 2),
        present=("SUBMISSION_NO_AUTH@587",),
        absent=("ENDPOINT_OK@587",),
    ),
    S(
        "smtp_cram_md5_before_tls",
        {"submission": dialogue("smtp", caps="PIPELINING,STARTTLS,AUTH CRAM-MD5")},
        exit=0,
        absent=("PLAINTEXT_AUTH_ALLOWED",),
    ),
    S(
        "smtp_plain_before_tls",
        {"submission": dialogue("smtp", caps="PIPELINING,STARTTLS,AUTH PLAIN LOGIN")},
        exit=1,
        present=("PLAINTEXT_AUTH_ALLOWED@587",),
    ),
    S(
        "smtps_plaintext_421_is_throttling",
        {"submissions": raw(faults.send_then_close(PLAIN_421))},
        exit=1,
        present_any=("SMTP_THROTTLED@465", "SERVER_THROTTLED@465"),
        absent=("TLS_HANDSHAKE_FAILED", "TLS_HANDSHAKE_TIMEOUT"),
    ),
    S(
        "smtps_plaintext_220_banner",
        {"submissions": Behaviour.PLAINTEXT_ON_TLS_PORT},
        exit=2,
        present=("TLS_PORT_SPEAKS_PLAINTEXT@465",),
        absent=("TLS_HANDSHAKE_FAILED@465",),
    ),
    S(
        "smtp_ansi_escapes_in_554_text",
        {"submission": raw(faults.send_then_hold(ANSI_554))},
        fmt="text",
        args=("--color", "never"),
        exit=2,
        check=no_escape_bytes,
    ),
    S(
        "smtp_ansi_escapes_in_554_json",
        {"submission": raw(faults.send_then_hold(ANSI_554))},
        exit=2,
        present=("SERVICE_UNAVAILABLE@587",),
        check=greeting_escaped_in_json,
    ),
    # --- TLS ------------------------------------------------------------------------
    S("tls_expired", cert=lambda p: p.expired([HOST]), exit=2, present=("TLS_CERT_EXPIRED",)),
    S(
        "tls_not_yet_valid",
        cert=lambda p: p.not_yet_valid([HOST]),
        exit=2,
        present=("TLS_CERT_NOT_YET_VALID",),
    ),
    S(
        "tls_self_signed",
        cert=lambda p: p.self_signed([HOST]),
        exit=2,
        present=("TLS_CERT_SELF_SIGNED",),
    ),
    S(
        "tls_untrusted_root",
        cert=lambda p: p.untrusted_ca([HOST]),
        exit=2,
        present=("TLS_CERT_UNTRUSTED",),
    ),
    S(
        "tls_hostname_mismatch",
        cert=lambda p: p.wrong_host(["web1.provider.test"]),
        exit=2,
        present=("TLS_HOSTNAME_MISMATCH",),
    ),
    S(
        "tls_expiring_in_15_days",
        cert=lambda p: p.expiring_in(15, [HOST]),
        exit=1,
        present=("TLS_CERT_EXPIRING",),
        absent=("TLS_CERT_EXPIRED",),
    ),
    S(
        "tls_cn_only_certificate",
        cert=lambda p: p.common_name_only(HOST),
        exit=2,
        present=("TLS_CERT_NO_SAN",),
        absent=("ENDPOINT_OK", "TLS_HOSTNAME_MISMATCH"),
    ),
    S(
        "tls_rsa_1024_key",
        cert=lambda p: p.weak_key([HOST]),
        exit=(1, 2),
        present=("TLS_KEY_WEAK",),
        absent=("ENDPOINT_OK",),
    ),
    S(
        "tls_sha1_signed_leaf",
        cert=lambda p: p.weak_signature([HOST]),
        trust_cert_root=True,  # weak_signature issues from its own RSA root
        exit=(1, 2),
        present=("TLS_SIGNATURE_WEAK",),
        absent=("ENDPOINT_OK", "TLS_CERT_INVALID", "TLS_CERT_UNTRUSTED"),
    ),
    S(
        "tls_chain_incomplete_without_aia",
        cert=lambda p: p.missing_intermediate([HOST]),
        exit=2,
        present=("TLS_CHAIN_INCOMPLETE",),
        check=lambda w, r: assert_severity(r, "TLS_CHAIN_INCOMPLETE", "critical"),
    ),
    S(
        "tls_chain_incomplete_with_aia",
        cert=lambda p: p.missing_intermediate_with_aia([HOST], "http://ca.provider.test/int.der"),
        exit=1,
        present=("TLS_CHAIN_INCOMPLETE",),
        check=lambda w, r: assert_severity(r, "TLS_CHAIN_INCOMPLETE", "warning"),
    ),
    S(
        "tls_1_0_and_1_1_only",
        context=lambda c: c.legacy_server_context(),
        exit=2,
        present=("TLS_PROTOCOL_OUTDATED",),
        check=lambda w, r: assert_severity(r, "TLS_PROTOCOL_OUTDATED", "critical"),
    ),
    S(
        "tls_forged_signature",
        cert=lambda p: p.forged([HOST]),
        exit=2,
        present=("TLS_CERT_INVALID",),
    ),
    S(
        "tls_client_auth_only_certificate",
        cert=lambda p: p.client_only([HOST]),
        exit=2,
        present=("TLS_CERT_INVALID",),
    ),
    # TLS 1.2: the client waits for the server's Finished, and gets a RST instead.
    S(
        "tls12_certificate_then_reset",
        {
            "imaps": Scripted(
                lambda w: faults.tls_then_reset(w.cert.server_context(maximum_version=TLS12))
            )
        },
        exit=2,
        present=("TLS_HANDSHAKE_FAILED@993",),
        absent=("ENDPOINT_OK@993",),
    ),
    # TLS 1.3: the client is done after its own Finished; the RST hits the greeting.
    S(
        "tls13_handshake_then_reset",
        {
            "imaps": Scripted(
                lambda w: faults.tls_then_reset(w.cert.server_context(minimum_version=TLS13))
            )
        },
        exit=1,
        present=("CONNECTION_CLOSED@993",),
        absent=("ENDPOINT_OK@993",),
    ),
    S(
        "tls_handshake_stall_993",
        {"imaps": Behaviour.TLS_STALL},
        exit=2,
        present=("TLS_HANDSHAKE_TIMEOUT@993",),
    ),
    S(
        "tls_plaintext_imap_on_993",
        {"imaps": Behaviour.PLAINTEXT_ON_TLS_PORT},
        exit=2,
        present=("TLS_PORT_SPEAKS_PLAINTEXT@993",),
        absent=("TLS_HANDSHAKE_FAILED@993",),
    ),
    S(
        "tls_http_on_995",
        {
            "pop3s": raw(
                faults.send_then_close(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            )
        },
        exit=(1, 2),
        absent=("ENDPOINT_OK@995",),
    ),
    # --- DNS ------------------------------------------------------------------------
    S(
        "dns_domain_does_not_exist",
        domain="nothere.kunde.test",
        exit=2,
        present=("DOMAIN_NOT_FOUND",),
        absent=("HOST_UNRESOLVED",),
    ),
    S(
        "dns_servfail_everywhere",
        zone=lambda a: {DOMAIN: "SERVFAIL"},
        exit=3,
        present=("DNS_LOOKUP_FAILED",),
        absent=("DOMAIN_NOT_FOUND",),
    ),
    S(
        "dns_nameserver_drops_everything",
        zone=lambda a: {DOMAIN: "DROP"},
        exit=3,
        deadline=2.5,
        present=("DNS_LOOKUP_FAILED",),
        absent=("DOMAIN_NOT_FOUND", "HOST_UNRESOLVED"),
    ),
    S(
        "dns_cname_loop",
        zone=zones(mail={"CNAME": ["mail2"]}, mail2={"CNAME": ["mail"]}),
        exit=2,
        present_any=("HOST_UNRESOLVED", "DNS_LOOKUP_FAILED"),
    ),
    S(
        "dns_srv_target_without_address",
        zone=zones(**{"_imaps._tcp": {"SRV": ["0 1 993 ghost"]}}),
        exit=(1, 2),
        present_any=("HOST_UNRESOLVED", "DISCOVERY_CONTRADICTION"),
    ),
    S(
        "dns_srv_port_0",
        zone=zones(**{"_imaps._tcp": {"SRV": ["0 1 0 mail"]}}),
        exit=1,
        present=("SRV_INVALID",),
        check=no_port_zero,
    ),
    S(
        "dns_srv_not_offered",
        zone=zones(**{"_pop3._tcp": {"SRV": ["0 0 0 ."]}}),
        exit=0,
        present=("SRV_NOT_OFFERED",),
        check=no_pop3_endpoint,
    ),
    S("dns_no_mx", zone=zones_without("@"), exit=1, present=("MX_MISSING",)),
    # RFC 7505 null MX: the domain accepts no mail; submission may still work.
    S("dns_null_mx", zone=zones(**{"@": {"MX": ["0 ."]}}), exit=(0, 1, 2)),
    S(
        "dns_mail_host_servfail",
        zone=zones(mail="SERVFAIL"),
        exit=(2, 3),
        present_any=("HOST_UNRESOLVED", "DNS_LOOKUP_FAILED"),
    ),
    S(
        "dns_discovery_eats_the_deadline",
        zone=zones(mail={"A": "DROP", "AAAA": "DROP"}),
        timeout=5,
        deadline=2,
        exit=(1, 2, 3),
        present=("DEADLINE_EXCEEDED",),
        absent=("HOST_UNRESOLVED",),
    ),
    S("dns_nothing_published", zone=lambda a: {DOMAIN: {}}, exit=2, present=("NO_MAIL_ENDPOINTS",)),
    S(
        "dns_idn_domain",
        domain="müller.test",
        zone=zones(),
        cert=lambda p: p.good([HOST, "mail.xn--mller-kva.test"]),
        exit=0,
    ),
    S("dns_domain_with_trailing_dot", domain="kunde.test.", exit=0, present=("ENDPOINT_OK",)),
    S("dns_domain_in_capitals", domain="KUNDE.Test", exit=0, present=("ENDPOINT_OK",)),
    # --- autoconfig --------------------------------------------------------------------
    S(
        "autoconfig_healthy",
        zone=no_zone_srv,
        autoconfig_on=True,
        autoconfig=web({AUTOCONFIG_ROUTE: autoconfig_xml(HOST, HOST)}),
        exit=0,
        check=autoconfig_used,
    ),
    S(
        "autoconfig_billion_laughs_refused",
        zone=no_zone_srv,
        autoconfig_on=True,
        autoconfig=web({AUTOCONFIG_ROUTE: BILLION_LAUGHS, WELL_KNOWN_ROUTE: BILLION_LAUGHS}),
        exit=0,
        check=autoconfig_refused,
    ),
    S(
        "autoconfig_redirect_loop",
        zone=no_zone_srv,
        autoconfig_on=True,
        autoconfig=web(
            {
                AUTOCONFIG_ROUTE: Reply(
                    302, headers={"Location": f"https://autoconfig.{DOMAIN}/mail/config-v1.1.xml"}
                ),
                WELL_KNOWN_ROUTE: Reply(
                    301,
                    headers={
                        "Location": f"https://{DOMAIN}/.well-known/autoconfig/mail/config-v1.1.xml"
                    },
                ),
            }
        ),
        exit=0,
        check=autoconfig_refused,
    ),
    S(
        "autoconfig_redirect_to_http",
        zone=no_zone_srv,
        autoconfig_on=True,
        autoconfig=web({AUTOCONFIG_ROUTE: Reply(302, headers={"Location": "http://evil.test/x"})}),
        exit=0,
        check=autoconfig_refused,
    ),
    S(
        "autoconfig_body_too_large",
        zone=no_zone_srv,
        autoconfig_on=True,
        autoconfig=web({AUTOCONFIG_ROUTE: b"<clientConfig>" + b" " * (3 * 1024 * 1024)}),
        exit=0,
        check=autoconfig_refused,
    ),
    S(
        "autoconfig_not_xml",
        zone=no_zone_srv,
        autoconfig_on=True,
        autoconfig=web({AUTOCONFIG_ROUTE: b"<html>hello</html"}),
        exit=0,
        check=autoconfig_refused,
    ),
    S(
        "autoconfig_cross_domain_hosts",
        autoconfig_on=True,
        user=True,
        timeout=2,
        deadline=5,
        zone=lambda a: {
            DOMAIN: {k: v for k, v in standard_zone(a).items() if not k.startswith("_")},
            "evil.test": {"imap": {"A": [FOREIGN_ADDRESS]}, "smtp": {"A": [FOREIGN_ADDRESS]}},
        },
        autoconfig=web({AUTOCONFIG_ROUTE: autoconfig_xml("imap.evil.test", "smtp.evil.test")}),
        foreign={
            "imaps": Scripted(
                lambda w: Dialogue("imap", login=b"{tag} OK Logged in\r\n"), tls=True
            ),
            "submissions": Scripted(
                lambda w: Dialogue("smtp", login=b"235 2.7.0 ok\r\n"), tls=True
            ),
        },
        exit=(1, 2),
        present=("AUTOCONFIG_FOREIGN_HOST", "AUTH_SKIPPED_FOREIGN_HOST@993"),
        absent=("AUTH_OK@993", "AUTH_OK@465"),
        check=no_foreign_login,
    ),
    S(
        "autoconfig_drips_one_byte_per_second",
        zone=no_zone_srv,
        autoconfig_on=True,
        autoconfig=slow_web,
        timeout=4,
        deadline=8,
        exit=(0, 1, 2, 3),
    ),
    # --- credentials ---------------------------------------------------------------------
    S("creds_login_ok", user=True, timeout=2, exit=0, present=("AUTH_OK",)),
    S(
        "creds_wrong_password_costs_one_failure",
        user=True,
        users={USER: "another"},
        timeout=2,
        exit=2,
        present=("AUTH_FAILED", "AUTH_SKIPPED_LOCKOUT"),
        absent=("AUTH_OK",),
        check=logins_exactly(1),
    ),
    S(
        "creds_wrong_password_answered_after_5s",
        {
            k: (dialogue_tls if ENDPOINTS[k][2] else dialogue)(ENDPOINTS[k][0], login_delay=5.0)
            for k in KEYS
        },
        user=True,
        timeout=4,
        deadline=8,
        exit=(1, 2),
        present=("AUTH_NO_ANSWER",),
        absent=("AUTH_OK", "AUTH_FAILED"),
        check=logins_exactly(1),
    ),
    S(
        "creds_error_reply_echoes_sasl_blob",
        {
            k: Scripted(
                (lambda proto: lambda w: EchoingDialogue(proto, context=w.context))(
                    ENDPOINTS[k][0]
                ),
                tls=ENDPOINTS[k][2],
            )
            for k in KEYS
        },
        user=True,
        timeout=2,
        exit=2,
        present=("AUTH_FAILED",),
        check=logins_exactly(1),
    ),
    S(
        "creds_untrusted_certificate_no_login",
        user=True,
        cert=lambda p: p.untrusted_ca([HOST]),
        timeout=2,
        exit=2,
        present=("AUTH_SKIPPED_UNTRUSTED",),
        check=logins_exactly(0),
    ),
    S(
        "creds_no_tls_anywhere_no_plaintext_login",
        {
            "imap": Behaviour.NO_STARTTLS,
            "pop3": Behaviour.NO_STARTTLS,
            "submission": Behaviour.NO_STARTTLS,
            "imaps": None,
            "pop3s": None,
            "submissions": None,
        },
        user=True,
        timeout=2,
        exit=2,
        present=("STARTTLS_MISSING@143",),
        absent=("AUTH_OK",),
        check=no_plaintext_password,
    ),
    S(
        "creds_temporary_failure",
        every_port(Behaviour.AUTH_TEMPORARY_FAILURE),
        user=True,
        timeout=2,
        exit=1,
        present=("AUTH_TEMPORARY_FAILURE",),
        absent=("AUTH_FAILED",),
    ),
    S(
        "creds_no_login_mechanism",
        every_port(Behaviour.NO_LOGIN_MECHANISM),
        user=True,
        timeout=2,
        exit=(1, 2),
        present=("AUTH_MECHANISM_UNAVAILABLE",),
    ),
    S(
        "creds_quota_storage_full",
        user=True,
        quota=(1048576, 1048576),
        timeout=2,
        exit=2,
        present=("QUOTA_FULL",),
    ),
    S(
        "creds_quota_message_count_full",
        user=True,
        timeout=2,
        exit=2,
        ports={
            key: maker("imap", **MESSAGE_QUOTA)
            for key, maker in (("imap", dialogue), ("imaps", dialogue_tls))
        },
        check=quota_message_advice,
    ),
    S(
        "creds_password_file_world_readable",
        user=True,
        exit=3,
        env={"MAILDIAG_PASSWORD": None},
        args=("--password-file", "/etc/hostname"),
        input_error=r"password|permission|readable",
    ),
    S(
        "creds_user_without_any_password",
        user=True,
        env={"MAILDIAG_PASSWORD": None},
        exit=3,
        input_error=r"password",
    ),
    # --- input ------------------------------------------------------------------------
    *(
        S(
            f"input_nameserver_{label}",
            raw_args=("check", DOMAIN, "--nameserver", value, *QUICK),
            exit=3,
            input_error=r"nameserver",
        )
        for label, value in (
            ("garbage", "garbage"),
            ("port_99999", "1.2.3.4:99999"),
            ("host_name", "ns1.example.net"),
            ("unclosed_bracket", "[::1"),
            ("spaces", "127.0.0.1 53"),
            ("empty", ""),
        )
    ),
    # After "--" a leading hyphen reaches the domain check instead of click's option parser.
    S(
        "input_domain_leading_hyphen",
        raw_args=("check", *QUICK, "--", "-x.test"),
        exit=3,
        input_error=r".",
    ),
    S(
        "input_timeout_nan",
        raw_args=(
            "check",
            DOMAIN,
            "--timeout",
            "nan",
            "--deadline",
            "3",
            "--no-autoconfig",
            "--nameserver",
            "127.0.0.1:9",
        ),
        exit=3,
        input_error=r"timeout",
    ),
    S(
        "input_deadline_nan",
        raw_args=(
            "check",
            DOMAIN,
            "--deadline",
            "nan",
            "--timeout",
            "1",
            "--no-autoconfig",
            "--nameserver",
            "127.0.0.1:9",
        ),
        exit=3,
        input_error=r"deadline",
    ),
    S(
        "input_timeout_negative",
        raw_args=("check", DOMAIN, "--timeout", "-1", "--nameserver", "127.0.0.1:9"),
        exit=3,
        input_error=r"timeout",
    ),
    *(
        S(
            f"input_domain_{label}",
            raw_args=("check", value, "--nameserver", "127.0.0.1:9", *QUICK),
            exit=3,
            input_error=r".",
        )
        for label, value in (
            ("double_dot", "bad..domain"),
            ("email_address", "alice@kunde.test"),
            ("300_characters", "a" * 300 + ".test"),
            ("label_64_characters", "a" * 64 + ".test"),
            ("space_inside", "kunde test"),
            ("empty", ""),
            ("control_character", "kunde\x1b[31m.test"),
        )
    ),
    # --- the real process ---------------------------------------------------------
    S(
        "process_every_port_silent_ends_at_deadline",
        every_port(Behaviour.NEVER_GREET),
        subprocess=True,
        timeout=30,
        deadline=2,
        exit=1,
        present_any=("NO_GREETING", "DEADLINE_EXCEEDED"),
    ),
    S(
        "process_dns_drops_everything",
        zone=lambda a: {DOMAIN: "DROP"},
        subprocess=True,
        deadline=2,
        exit=3,
        present=("DNS_LOOKUP_FAILED",),
    ),
    S(
        "process_ansi_greeting_text",
        {"submission": raw(faults.send_then_hold(ANSI_554))},
        subprocess=True,
        fmt="text",
        exit=2,
        check=no_escape_bytes,
    ),
    S(
        "process_bad_nameserver",
        raw_args=("check", DOMAIN, "--nameserver", "[::1", *QUICK),
        subprocess=True,
        exit=3,
        input_error=r"nameserver",
    ),
    S(
        "process_wrong_password_login_timeout",
        {
            k: (dialogue_tls if ENDPOINTS[k][2] else dialogue)(ENDPOINTS[k][0], login_delay=5.0)
            for k in KEYS
        },
        subprocess=True,
        user=True,
        timeout=2,
        deadline=4,
        exit=(1, 2),
        check=logins_exactly(1),
    ),
]


def assert_severity(run: Run, code: str, severity: str) -> None:
    found = findings(run, code)
    assert found and {f["severity"] for f in found} == {severity}, found


# --------------------------------------------------------------------------
# Running a scenario
# --------------------------------------------------------------------------


def _build_world(scenario: Scenario, pki: TestPKI, address: str, stack: ExitStack) -> World:
    cert = (scenario.cert or (lambda p: p.good([HOST])))(pki)
    context = (scenario.context or (lambda c: c.server_context()))(cert)
    world = World(pki, address, cert, context)
    scripted = {k: p for k, p in scenario.ports.items() if isinstance(p, Scripted)}
    behaviours = {k: (None if isinstance(p, Scripted) else p) for k, p in scenario.ports.items()}
    world.host = stack.enter_context(
        FakeMailHost(
            address,
            context,
            hostname=HOST,
            behaviours=behaviours,
            users=scenario.users or {USER: SECRET},
            quota=scenario.quota,
            delay=scenario.delay,
            idle_timeout=10,
        )
    )
    for key, port in scripted.items():
        server = ScriptedServer(
            address, ENDPOINTS[key][1], port.make(world), tls=context if port.tls else None
        )
        world.scripted[key] = stack.enter_context(server)
    for key, port in scenario.foreign.items():
        foreign_cert = pki.good(["imap.evil.test", "smtp.evil.test"])
        server = ScriptedServer(
            FOREIGN_ADDRESS,
            ENDPOINTS[key][1],
            port.make(world),
            tls=foreign_cert.server_context() if port.tls else None,
        )
        world.foreign[key] = stack.enter_context(server)
    all_zones = (scenario.zone or zones())(address)
    world.dns = stack.enter_context(DnsServer(all_zones, DNS_ADDRESS))
    if scenario.autoconfig is not None:
        world.web = stack.enter_context(scenario.autoconfig(world))
    return world


def _argv(scenario: Scenario, world: World | None) -> list[str]:
    if scenario.raw_args is not None:
        return list(scenario.raw_args)
    assert world is not None and world.dns is not None
    argv = [
        "check",
        scenario.domain,
        "--format",
        scenario.fmt,
        "--nameserver",
        world.dns.nameserver,
        "--ca-file",
        str(world.cert.ca_path if scenario.trust_cert_root else world.pki.ca_pem_path),
        "--timeout",
        str(scenario.timeout),
        "--deadline",
        str(scenario.deadline),
    ]
    if not scenario.autoconfig_on:
        argv.append("--no-autoconfig")
    if scenario.user:
        argv += ["--user", USER]
    return argv + list(scenario.args)


def _run(scenario: Scenario, argv: list[str], capsys, monkeypatch) -> tuple[int, str, str, float]:
    env_changes: dict[str, str | None] = {"MAILDIAG_PASSWORD": SECRET, "NO_COLOR": None}
    env_changes.update(scenario.env)
    if scenario.subprocess:
        env = dict(os.environ)
        for name, value in env_changes.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        started = time.monotonic()
        done = subprocess.run(
            [str(CONSOLE_SCRIPT), *argv],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=scenario.deadline + 30,
        )
        return done.returncode, done.stdout, done.stderr, time.monotonic() - started
    for name, value in env_changes.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    capsys.readouterr()
    started = time.monotonic()
    code = main(argv)
    seconds = time.monotonic() - started
    captured = capsys.readouterr()
    return code, captured.out, captured.err, seconds


def _has(run: Run, spec: str) -> bool:
    code, _, port = spec.partition("@")
    assert run.report is not None
    for finding in run.report["findings"]:
        if finding["code"] != code:
            continue
        if not port or (finding["endpoint"] and finding["endpoint"]["port"] == int(port)):
            return True
    return False


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_fault_scenario(scenario: Scenario, pki, loopback_address, capsys, monkeypatch) -> None:
    with ExitStack() as stack:
        world = None
        if scenario.raw_args is None:
            world = _build_world(scenario, pki, loopback_address, stack)
        argv = _argv(scenario, world)
        code, out, err, seconds = _run(scenario, argv, capsys, monkeypatch)
        run = Run(code, out, err, seconds, None)

        # Invariants of every run.
        margin = PROCESS_MARGIN if scenario.subprocess else START_MARGIN
        deadline = scenario.deadline if scenario.raw_args is None else 60.0
        assert seconds <= deadline + margin, f"took {seconds:.1f} s, deadline {deadline} s"
        assert not EXCEPTION_NAME.search(err), f"exception on stderr: {err!r}"
        assert "Traceback" not in out
        for form in SECRET_FORMS:
            assert form not in out and form not in err, "a form of the password leaked"
        expected_exit = scenario.exit if isinstance(scenario.exit, tuple) else (scenario.exit,)

        if scenario.input_error is not None:
            lines = err.strip().splitlines()
            assert code == 3, (code, err)
            assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
            assert re.search(scenario.input_error, lines[0], re.IGNORECASE), lines[0]
            return

        if scenario.fmt == "json":
            run.report = json.loads(out)
            errors = sorted(VALIDATOR.iter_errors(run.report), key=str)
            assert not errors, errors[0].message
            assert run.report["exit_code"] == code
        else:
            assert out.strip(), "the text report is empty"
        assert code in expected_exit, f"exit {code}, expected {expected_exit}; {_summary(run)}"
        if run.report is not None:
            for spec in scenario.present:
                assert _has(run, spec), f"{spec} missing; {_summary(run)}"
            if scenario.present_any:
                assert any(_has(run, spec) for spec in scenario.present_any), (
                    f"none of {scenario.present_any}; {_summary(run)}"
                )
            for spec in scenario.absent:
                assert not _has(run, spec), f"{spec} present (misdiagnosis); {_summary(run)}"
        if scenario.check is not None:
            scenario.check(world, run)  # type: ignore[arg-type]


def _summary(run: Run) -> str:
    if run.report is None:
        return run.out[-2000:]
    codes = [
        f"{f['code']}@{f['endpoint']['port'] if f['endpoint'] else '-'}:{f['severity']}"
        for f in run.report["findings"]
    ]
    return f"findings {codes}"


def test_the_suite_has_at_least_60_scenarios() -> None:
    names = [s.name for s in SCENARIOS]
    assert len(names) == len(set(names)), "scenario names must be unique"
    assert len(names) >= 60
