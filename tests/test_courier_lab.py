"""maildiag against a real Courier-IMAP / Courier POP3 (tests/lab/courier.py), through the CLI.

Courier differs from Dovecot where it matters for a diagnosis:

- it answers a wrong password only after about 5 s, so a short --timeout
  leaves the first login without a verdict although Courier counts it;
- its POP3 lists USER in CAPA before STLS and refuses it only when used
  ("-ERR TLS required to log in."), so the capability alone does not say
  whether a password could go out unencrypted;
- its IMAP announces LOGINDISABLED before STARTTLS (IMAP_TLS_REQUIRED=1).

The lab is shared by the session; each test has a user of its own and
compares Courier's log counts before and after.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import pytest

from maildiag.cli import main
from tests.lab.courier import CourierLab
from tests.lab.dns_server import DnsServer

pytestmark = pytest.mark.lab

SCHEMA = json.loads((Path(__file__).parents[1] / "maildiag/schema/report.schema.json").read_text())
DNS_ADDRESS = "127.0.4.40"
DOMAIN = "courier.test"
ENDPOINTS = [("imap", 143), ("imap", 993), ("pop3", 110), ("pop3", 995)]
# Longer than Courier's ~5 s pause after a wrong password, so it gets a verdict.
PATIENT_TIMEOUT = "8"


@pytest.fixture(scope="module")
def dns(courier_lab: CourierLab):
    zones = {
        courier_lab.domain: {
            courier_lab.hostname.removesuffix(f".{courier_lab.domain}"): {
                "A": [courier_lab.address]
            }
        },
        DOMAIN: {
            "@": {"MX": [f"10 {courier_lab.hostname}."]},
            # RFC 6186 §3.4: submission is declared not offered; Courier here is IMAP/POP3 only.
            "_submission._tcp": {"SRV": ["0 0 0 ."]},
            "_submissions._tcp": {"SRV": ["0 0 0 ."]},
        },
    }
    with DnsServer(zones, DNS_ADDRESS) as server:
        yield server


@pytest.fixture
def check(courier_lab: CourierLab, dns: DnsServer, capsys, monkeypatch):
    """`maildiag check courier.test --imap-host/--pop3-host courier.lab.test ... --format json`."""

    def run(
        *args: str,
        user: str | None = None,
        password: str | None = None,
        timeout: str = PATIENT_TIMEOUT,
    ) -> tuple[int, dict]:
        if password is None:
            monkeypatch.delenv("MAILDIAG_PASSWORD", raising=False)
        else:
            monkeypatch.setenv("MAILDIAG_PASSWORD", password)
        argv = [
            "check",
            DOMAIN,
            "--nameserver",
            dns.nameserver,
            "--no-autoconfig",
            "--imap-host",
            courier_lab.hostname,
            "--pop3-host",
            courier_lab.hostname,
            "--imap-port",
            str(courier_lab.IMAP),
            "--imaps-port",
            str(courier_lab.IMAPS),
            "--pop3-port",
            str(courier_lab.POP3),
            "--pop3s-port",
            str(courier_lab.POP3S),
            "--ca-file",
            str(courier_lab.ca_pem_path),
            "--timeout",
            timeout,
            "--format",
            "json",
            *args,
        ]
        if user is not None:
            argv += ["--user", user]
        code = main(argv)
        out, _ = capsys.readouterr()
        report = json.loads(out)
        jsonschema.validate(report, SCHEMA)
        if password is not None:
            assert password not in out
        return code, report

    return run


def _codes(report: dict) -> list[str]:
    return [f["code"] for f in report["findings"]]


def _auth(report: dict) -> dict[tuple[str, int], dict]:
    return {(e["protocol"], e["port"]): e.get("auth") or {} for e in report["endpoints"]}


def _statuses(report: dict) -> list[str]:
    return sorted(a.get("status", "-") for a in _auth(report).values())


def test_the_right_password_logs_in_everywhere_with_quota(courier_lab: CourierLab, check):
    alice = courier_lab.alice
    before = courier_lab.failed_logins(alice.address)
    code, report = check(user=alice.address, password=alice.password)
    assert sorted(_auth(report)) == sorted(ENDPOINTS)
    assert _statuses(report) == ["ok"] * 4, report["endpoints"]
    assert {e["outcome"] for e in report["endpoints"]} == {"ok"}
    imaps = next(e for e in report["endpoints"] if e["port"] == 993)
    storage = next(q for q in imaps["mailbox"]["quota"] if q["resource"] == "STORAGE")
    assert storage["limit"] == courier_lab.quota_bytes // 1024 and 0 < storage["usage"] < 100
    assert imaps["mailbox"]["inbox_messages"] == 3
    assert "QUOTA_OK" in _codes(report)
    # Courier IMAP says LOGINDISABLED before STARTTLS: a refusal, reported as good.
    refused = [f for f in report["findings"] if f["code"] == "AUTH_PLAINTEXT_REFUSED"]
    assert [f["endpoint"]["port"] for f in refused] == [143]
    assert "PLAINTEXT_AUTH_ALLOWED" not in _codes(report)
    # Debian's Courier announces no SPECIAL-USE (RFC 6154): no folder is marked
    # as Sent or Trash, so clients pick them by name. And the lab's Courier has
    # no gam_server (package gamin), so its imapd sends "[ALERT] Filesystem
    # notification initialization error" at every IMAP login, as a real Courier
    # without gamin does: the server's fault, not a notice for the customer.
    # Those warnings are right, and they are the only ones.
    warnings = [f["code"] for f in report["findings"] if f["severity"] in ("warning", "critical")]
    assert sorted(warnings) == [
        "FOLDERS_SPECIAL_USE_MISSING",
        "IMAP_SERVER_NOTIFY_ERROR",
        "IMAP_SERVER_NOTIFY_ERROR",
    ], warnings
    notify = [f for f in report["findings"] if f["code"] == "IMAP_SERVER_NOTIFY_ERROR"]
    assert sorted(f["endpoint"]["port"] for f in notify) == [143, 993]
    assert "IMAP_ALERT" not in _codes(report)
    assert imaps["mailbox"]["folder_listing"] == "list"
    assert code == 1, _codes(report)
    assert courier_lab.logins(alice.address) >= 4
    assert courier_lab.failed_logins(alice.address) == before


def test_a_wrong_password_is_auth_failed_and_reaches_courier_once(courier_lab: CourierLab, check):
    bob = courier_lab.bob
    before = courier_lab.failed_logins(bob.address)
    lines_before = courier_lab.login_failed_lines()
    started = time.monotonic()
    code, report = check(user=bob.address, password="not-" + bob.password)
    # Courier's pause: the verdict comes after ~5 s, within the 8 s timeout.
    assert time.monotonic() - started >= 4.5
    assert _statuses(report) == ["skipped"] * 3 + ["wrong_credentials"]
    codes = _codes(report)
    assert codes.count("AUTH_FAILED") == 1 and codes.count("AUTH_SKIPPED_LOCKOUT") == 3
    assert code == 2
    # Give a second attempt (there must be none) time to show in the log.
    courier_lab.wait_for_failed_logins(bob.address, before + 2, timeout=1.0)
    assert courier_lab.failed_logins(bob.address) == before + 1
    assert courier_lab.login_failed_lines() == lines_before + 1


def test_a_login_courier_answers_too_late_is_sent_only_once(courier_lab: CourierLab, check):
    # --timeout 4 < Courier's ~5 s pause: the pilot login gets no verdict in
    # time, but Courier judges (and counts) it all the same. Sending the
    # password to the other three endpoints would make four failures of one
    # check — enough to lock an account with a strict fail2ban.
    carol = courier_lab.carol
    before = courier_lab.failed_logins(carol.address)
    lines_before = courier_lab.login_failed_lines()
    code, report = check(user=carol.address, password="not-" + carol.password, timeout="4")
    codes = _codes(report)
    statuses = _statuses(report)
    # Wait until Courier has judged whatever reached it (pause ~5 s + slack).
    seen = courier_lab.wait_for_failed_logins(carol.address, before + 2, timeout=6.5)
    assert seen == before + 1, courier_lab.log_tail()
    # The login programs' own "LOGIN FAILED" lines (any user) agree.
    assert courier_lab.login_failed_lines() == lines_before + 1
    assert courier_lab.logins(carol.address) == 0
    assert statuses == ["no_answer"] + ["skipped"] * 3, report["endpoints"]
    assert codes.count("AUTH_NO_ANSWER") == 1
    for wrong in ("AUTH_REFUSED", "AUTH_FAILED", "IMAP_UNREACHABLE", "POP3_UNREACHABLE"):
        assert wrong not in codes
    assert code == 1


def test_courier_pop3_user_before_stls_is_unclear_not_a_warning(courier_lab: CourierLab, check):
    # CAPA before STLS lists USER, but POP3_TLS_REQUIRED=1 makes Courier answer
    # "-ERR TLS required to log in." to it. RFC 2449 §6.5: USER only says the
    # command exists. maildiag must neither warn nor send a password to find out.
    before = {u: (courier_lab.logins(u), courier_lab.failed_logins(u)) for u in courier_lab.users}
    code, report = check()
    pop3 = next(e for e in report["endpoints"] if e["port"] == 110)
    assert "USER" in pop3["capabilities"] and "STLS" in pop3["capabilities"]
    assert "PLAINTEXT_AUTH_ALLOWED" not in _codes(report)
    unclear = [f for f in report["findings"] if f["code"] == "PLAINTEXT_AUTH_UNCLEAR"]
    assert [(f["endpoint"]["port"], f["severity"]) for f in unclear] == [(110, "info")]
    assert unclear[0]["details"]["software"] == "Courier"
    assert "POP3_TLS_REQUIRED=1" in unclear[0]["fix"]
    assert code == 0, _codes(report)
    after = {u: (courier_lab.logins(u), courier_lab.failed_logins(u)) for u in courier_lab.users}
    assert after == before
