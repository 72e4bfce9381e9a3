"""maildiag against real Exim 4 submission servers (tests/lab/exim.py), through the CLI.

Each Exim setup has a zone of its own (healthy.test, throttled.test, ...)
that publishes submission on 587 and 465 and declares IMAP and POP3 not
offered (SRV target "."), so every check sees only that Exim.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from maildiag.cli import main
from tests.lab.dns_server import DnsServer
from tests.lab.exim import EximLab, EximSetup

pytestmark = pytest.mark.lab

SCHEMA = json.loads((Path(__file__).parents[1] / "maildiag/schema/report.schema.json").read_text())
DNS_ADDRESS = "127.0.4.44"


def _zone_name(setup: EximSetup) -> str:
    return f"{setup.value.replace('_', '-')}.test"


def _zones(lab: EximLab) -> dict:
    zones: dict = {}
    for setup, host in lab.hosts.items():
        target = f"{host.name}."
        zones[_zone_name(setup)] = {
            "@": {"MX": [f"10 {target}"]},
            "_submission._tcp": {"SRV": [f"0 1 587 {target}"]},
            "_submissions._tcp": {"SRV": [f"0 1 465 {target}"]},
            # RFC 6186 §3.4: "." says the service is not offered; no guessing.
            **{s: {"SRV": ["0 0 0 ."]} for s in ("_imap._tcp", "_imaps._tcp")},
            **{s: {"SRV": ["0 0 0 ."]} for s in ("_pop3._tcp", "_pop3s._tcp")},
        }
    zones[lab.domain] = {
        name.removesuffix(f".{lab.domain}"): {"A": [address]} for name, address in lab.dns.items()
    }
    return zones


@pytest.fixture(scope="module")
def dns(exim_lab: EximLab):
    with DnsServer(_zones(exim_lab), DNS_ADDRESS) as server:
        yield server


@pytest.fixture
def check(exim_lab: EximLab, dns: DnsServer, capsys, monkeypatch):
    """`maildiag check <zone of setup> --format json ...`; returns (exit code, report)."""

    def run(setup: EximSetup, *args: str, password: str | None = None):
        if password is None:
            monkeypatch.delenv("MAILDIAG_PASSWORD", raising=False)
        else:
            monkeypatch.setenv("MAILDIAG_PASSWORD", password)
        argv = [
            "check",
            _zone_name(setup),
            "--nameserver",
            dns.nameserver,
            "--ca-file",
            str(exim_lab.ca_pem_path),
            "--no-autoconfig",
            "--timeout",
            "5",
            "--format",
            "json",
            *args,
        ]
        code = main(argv)
        out, _ = capsys.readouterr()
        report = json.loads(out)
        jsonschema.validate(report, SCHEMA)
        assert exim_lab.password not in out
        return code, report

    return run


def _codes(report: dict, port: int | None = None) -> set[str]:
    return {
        f["code"]
        for f in report["findings"]
        if port is None or (f.get("endpoint") or {}).get("port") == port
    }


def _serious(report: dict) -> list[str]:
    return [f["code"] for f in report["findings"] if f["severity"] in ("warning", "critical")]


def _auth(report: dict) -> dict[int, str | None]:
    return {e["port"]: (e.get("auth") or {}).get("status") for e in report["endpoints"]}


# -- (a) healthy ---------------------------------------------------------------------


def test_healthy_exim_without_user_has_no_warnings(check):
    code, report = check(EximSetup.HEALTHY)
    assert _serious(report) == [], report["findings"]
    assert code == 0
    assert {"ENDPOINT_OK"} <= _codes(report, 587) and {"ENDPOINT_OK"} <= _codes(report, 465)
    tls_caps = {e["port"]: e["capabilities_tls"] for e in report["endpoints"]}
    assert any(c.startswith("AUTH") and "PLAIN" in c for c in tls_caps[587])


def test_healthy_exim_login_works_on_587_and_465(exim_lab: EximLab, check):
    code, report = check(EximSetup.HEALTHY, "--user", exim_lab.user, password=exim_lab.password)
    assert code == 0, report["findings"]
    assert _auth(report) == {587: "ok", 465: "ok"}
    assert "AUTH_OK" in _codes(report, 587) and "AUTH_OK" in _codes(report, 465)


def test_healthy_exim_wrong_password_is_auth_failed(exim_lab: EximLab, check):
    code, report = check(EximSetup.HEALTHY, "--user", exim_lab.user, password="wrong-password")
    assert code == 2
    assert "AUTH_FAILED" in _codes(report)


# -- (b) throttled: 421 before TLS on 465 ----------------------------------------------


def test_exim_421_on_465_is_throttling_not_a_tls_failure(exim_lab: EximLab, check):
    # While one connection is open, Exim answers every further one from this
    # address with a plaintext 421 - on 465 before any TLS (Exim's daemon
    # refuses the connection before it forks, so it never starts TLS).
    with exim_lab.held_connection(EximSetup.THROTTLED):
        _, report = check(EximSetup.THROTTLED, "--submission-port", "1")
    codes = _codes(report, 465)
    assert "TLS_HANDSHAKE_FAILED" not in _codes(report)
    assert "SMTP_THROTTLED" in codes, report["findings"]
    (throttled,) = [
        f
        for f in report["findings"]
        if f["code"] == "SMTP_THROTTLED" and f["endpoint"]["port"] == 465
    ]
    assert "Too many concurrent SMTP connections" in throttled["explanation"]
    assert throttled["severity"] == "warning"


def test_exim_throttled_setup_without_a_held_connection_works(check):
    # The twin: the same daemon, one connection at a time, is healthy. Ports
    # are probed one after the other (a second concurrent probe would be
    # refused), so only 465 is checked here.
    code, report = check(EximSetup.THROTTLED, "--submission-port", "1")
    assert "ENDPOINT_OK" in _codes(report, 465), report["findings"]
    assert "SMTP_THROTTLED" not in _codes(report, 465)


# -- (c) no AUTH at all --------------------------------------------------------------


def test_exim_without_authenticators_is_reported_without_user(check):
    code, report = check(EximSetup.NO_AUTH)
    assert "SUBMISSION_NO_AUTH" in _codes(report, 587), report["findings"]
    assert "SUBMISSION_NO_AUTH" in _codes(report, 465)
    assert code == 2


# -- (d) CRAM-MD5 before TLS -----------------------------------------------------------


def test_exim_cram_md5_before_tls_is_not_plaintext_login(check):
    # CRAM-MD5 sends no password over the wire; the analysis that knows that
    # belongs to the plaintext-login checks (PLAINTEXT_AUTH_ALLOWED).
    _, report = check(EximSetup.CRAM_BEFORE_TLS)
    assert "PLAINTEXT_AUTH_ALLOWED" not in _codes(report), report["findings"]
