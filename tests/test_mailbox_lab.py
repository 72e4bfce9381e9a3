"""The mailbox checks (--user, --sync) against the real Dovecot/Postfix lab, through the CLI.

DNS for the lab's names comes from a local DnsServer. Zones of their own
("imap-only.test", ...) publish one protocol and declare the others not
offered (SRV target "."), so a test can aim at one protocol at a time.

The lab is shared by the whole test session: every assertion about the
server's state compares before and after (failed logins, INBOX contents).
"""

from __future__ import annotations

import json
import os
import smtplib
import stat
import time
from pathlib import Path

import jsonschema
import pytest

from maildiag.cli import main
from tests.lab.dns_server import DnsServer
from tests.lab.real import MailLab

pytestmark = pytest.mark.lab

SCHEMA = json.loads((Path(__file__).parents[1] / "maildiag/schema/report.schema.json").read_text())
DNS_ADDRESS = "127.0.4.1"
SERVICES = {
    "imap": ("_imap._tcp", "_imaps._tcp", 143, 993),
    "pop3": ("_pop3._tcp", "_pop3s._tcp", 110, 995),
    "smtp": ("_submission._tcp", "_submissions._tcp", 587, 465),
}


def _zones(lab: MailLab) -> dict:
    target = f"{lab.hostname}."
    lab_zone: dict = {"@": {"MX": [f"10 {target}"]}}
    for name, address in lab.dns.items():
        lab_zone[name.removesuffix(f".{lab.domain}")] = {"A": [address]}
    for starttls, tls, plain_port, tls_port in SERVICES.values():
        lab_zone[starttls] = {"SRV": [f"0 1 {plain_port} {target}"]}
        lab_zone[tls] = {"SRV": [f"0 1 {tls_port} {target}"]}
    zones = {lab.domain: lab_zone}
    for protocol, (starttls, tls, plain_port, tls_port) in SERVICES.items():
        zone: dict = {
            "@": {"MX": [f"10 {target}"]},
            starttls: {"SRV": [f"0 1 {plain_port} {target}"]},
            tls: {"SRV": [f"0 1 {tls_port} {target}"]},
        }
        for other, services in SERVICES.items():
            if other != protocol:
                # RFC 6186 §3.4: "." says the service is not offered; no guessing.
                zone.update({service: {"SRV": ["0 0 0 ."]} for service in services[:2]})
        zones[f"{protocol}-only.test"] = zone
    return zones


@pytest.fixture(scope="module")
def dns(mail_lab: MailLab):
    with DnsServer(_zones(mail_lab), DNS_ADDRESS) as server:
        yield server


@pytest.fixture
def check(mail_lab: MailLab, dns: DnsServer, capsys, monkeypatch):
    """Runs `maildiag check DOMAIN --user USER ...` with the password in MAILDIAG_PASSWORD."""

    def run(
        *args: str, user: str | None = None, password: str | None = None, domain: str = "lab.test"
    ):
        if password is None:
            monkeypatch.delenv("MAILDIAG_PASSWORD", raising=False)
        else:
            monkeypatch.setenv("MAILDIAG_PASSWORD", password)
        argv = [
            "check",
            domain,
            "--nameserver",
            dns.nameserver,
            "--ca-file",
            str(mail_lab.ca_pem_path),
            "--no-autoconfig",
            "--timeout",
            "5",
            *args,
        ]
        if user is not None:
            argv += ["--user", user]
        code = main(argv)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _json(out: str) -> dict:
    report = json.loads(out)
    jsonschema.validate(report, SCHEMA)
    return report


def _codes(report: dict, severity: str | None = None) -> list[str]:
    return [f["code"] for f in report["findings"] if severity in (None, f["severity"])]


def _auth(report: dict) -> dict[str, str]:
    return {
        f"{e['protocol']}:{e['port']}": (e.get("auth") or {}).get("status")
        for e in report["endpoints"]
    }


# -- login on every endpoint --------------------------------------------------------


def test_login_and_mailbox_facts_on_all_six_endpoints(mail_lab: MailLab, check):
    alice = mail_lab.alice
    code, out, _ = check("--format", "json", user=alice.address, password=alice.password)
    report = _json(out)
    assert code == 0, _codes(report)
    assert report["user"] == alice.address
    assert set(_auth(report).values()) == {"ok"}
    assert _codes(report).count("AUTH_OK") == 6
    # Postfix and Dovecot refuse logins before STARTTLS: reported as good, not a problem.
    refused = [f for f in report["findings"] if f["code"] == "AUTH_PLAINTEXT_REFUSED"]
    assert sorted(f["endpoint"]["port"] for f in refused) == [110, 143, 587]
    assert {f["severity"] for f in refused} == {"ok"}
    imap = next(e for e in report["endpoints"] if e["port"] == 993)
    assert imap["mailbox"]["quota_supported"] is True
    storage = next(q for q in imap["mailbox"]["quota"] if q["resource"] == "STORAGE")
    assert storage["limit"] == 1024 and 0 < storage["usage"] < 100
    assert imap["mailbox"]["inbox_messages"] >= 3
    pop3 = next(e for e in report["endpoints"] if e["port"] == 995)
    assert pop3["mailbox"]["inbox_messages"] == imap["mailbox"]["inbox_messages"]
    assert "auth" in imap["timings"] and "quota" in imap["timings"]
    assert "mailbox" in imap["timings"]
    assert "QUOTA_OK" in _codes(report) and "ADVICE_USE_IMAP" in _codes(report)


def test_without_user_there_is_no_login_at_all(mail_lab: MailLab, check):
    code, out, _ = check("--format", "json")
    report = _json(out)
    assert code == 0
    assert report["user"] is None
    assert all("auth" not in e for e in report["endpoints"])
    assert not [c for c in _codes(report) if c.startswith(("AUTH_", "QUOTA_", "ADVICE_"))]
    # Dovecot and Postfix send nothing behind their go-ahead to STARTTLS/STLS
    # (the injecting twin: tests/test_fault_suite.py, *_starttls_injection).
    upgraded = [e for e in report["endpoints"] if e["port"] in (143, 110, 587)]
    assert len(upgraded) == 3 and {e["outcome"] for e in upgraded} == {"ok"}
    assert "STARTTLS_INJECTION" not in _codes(report)


@pytest.mark.parametrize("protocol", ["imap", "pop3", "smtp"])
def test_login_works_per_protocol(mail_lab: MailLab, check, protocol):
    alice = mail_lab.alice
    code, out, _ = check(
        "--format",
        "json",
        user=alice.address,
        password=alice.password,
        domain=f"{protocol}-only.test",
    )
    report = _json(out)
    assert {e["protocol"] for e in report["endpoints"]} == {protocol}
    assert set(_auth(report).values()) == {"ok"}, report["endpoints"]
    assert code == 0


@pytest.mark.parametrize("protocol", ["imap", "pop3", "smtp"])
def test_wrong_password_per_protocol_is_auth_failed_once(mail_lab: MailLab, check, protocol):
    alice = mail_lab.alice
    before = mail_lab.failed_logins(alice.address)
    code, out, _ = check(
        "--format",
        "json",
        user=alice.address,
        password="not-the-password",
        domain=f"{protocol}-only.test",
    )
    report = _json(out)
    assert code == 2
    statuses = sorted(_auth(report).values())
    assert statuses == ["skipped", "wrong_credentials"]
    failed = next(f for f in report["findings"] if f["code"] == "AUTH_FAILED")
    assert failed["severity"] == "critical"
    assert "AUTH_SKIPPED_LOCKOUT" in _codes(report)
    assert mail_lab.wait_for_failed_logins(alice.address, before + 1) == before + 1


def test_a_login_without_the_domain_is_told_about_the_full_address_and_tried_once(
    mail_lab: MailLab, check
):
    # Dovecot knows only "alice@lab.test": "alice" is refused with
    # [AUTHENTICATIONFAILED]. The finding names the other form; maildiag does
    # not try it (that would be a second failed login).
    alice = mail_lab.alice
    local = alice.address.split("@")[0]
    before = mail_lab.failed_logins(local)
    before_full = mail_lab.failed_logins(alice.address)
    code, out, _ = check("--format", "json", user=local, password=alice.password)
    report = _json(out)
    assert code == 2
    statuses = sorted(_auth(report).values())
    assert statuses == ["skipped"] * 5 + ["wrong_credentials"]
    failed = next(f for f in report["findings"] if f["code"] == "AUTH_FAILED")
    assert "complete e-mail address" in failed["explanation"]
    assert f"'{local}'" in failed["explanation"]
    assert mail_lab.wait_for_failed_logins(local, before + 1) == before + 1
    # The full address was never tried: no attempt of it reached Dovecot.
    assert mail_lab.failed_logins(alice.address) == before_full


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [
        ("imap", "account_disabled"),  # NO [CONTACTADMIN] Account disabled ...
        ("pop3", "account_disabled"),  # -ERR [AUTH] Account disabled ...
        # Postfix asks Dovecot's auth service, which checks the password only:
        # "nologin" applies to mailbox logins, so submission lets dave in.
        ("smtp", "ok"),
    ],
)
def test_disabled_account_per_protocol(mail_lab: MailLab, check, protocol, expected):
    dave = mail_lab.dave
    before = mail_lab.failed_logins(dave.address)
    code, out, _ = check(
        "--format",
        "json",
        user=dave.address,
        password=dave.password,
        domain=f"{protocol}-only.test",
    )
    report = _json(out)
    assert expected in _auth(report).values()
    if expected == "account_disabled":
        disabled = next(f for f in report["findings"] if f["code"] == "AUTH_ACCOUNT_DISABLED")
        assert mail_lab.dave.disabled_reason in disabled["explanation"]
        assert code == 2
    else:
        assert code == 0
    # The right password for a disabled account is not a failed login.
    assert mail_lab.failed_logins(dave.address) == before


def test_disabled_account_on_the_whole_domain(mail_lab: MailLab, check):
    dave = mail_lab.dave
    code, out, _ = check("--format", "json", user=dave.address, password=dave.password)
    report = _json(out)
    assert code == 2
    assert "AUTH_ACCOUNT_DISABLED" in _codes(report, "critical")
    assert "QUOTA_FULL" not in _codes(report)


# -- lockout safety -------------------------------------------------------------------


def test_a_wrong_password_reaches_the_server_only_once(mail_lab: MailLab, check):
    alice = mail_lab.alice
    before = mail_lab.failed_logins(alice.address)
    code, out, _ = check("--format", "json", user=alice.address, password="wrong-Secret-9")
    report = _json(out)
    assert code == 2
    statuses = list(_auth(report).values())
    assert statuses.count("wrong_credentials") == 1
    assert statuses.count("skipped") == 5
    skipped = [e for e in report["endpoints"] if e["auth"]["status"] == "skipped"]
    assert {e["auth"]["skipped_because"] for e in skipped} == {"lockout"}
    # The probes of the other endpoints still ran in full (TLS checked, no DEADLINE).
    assert {e["outcome"] for e in report["endpoints"]} == {"ok"}
    mail_lab.wait_for_failed_logins(alice.address, before + 2, timeout=1.5)
    assert mail_lab.failed_logins(alice.address) == before + 1


def test_the_right_password_adds_no_failed_login(mail_lab: MailLab, check):
    alice = mail_lab.alice
    before = mail_lab.failed_logins(alice.address)
    code, _, _ = check(user=alice.address, password=alice.password)
    assert code == 0
    mail_lab.wait_for_failed_logins(alice.address, before + 1, timeout=1.0)
    assert mail_lab.failed_logins(alice.address) == before


# -- quota ----------------------------------------------------------------------------


def test_bob_at_95_percent_is_a_quota_warning(mail_lab: MailLab, check):
    bob = mail_lab.bob
    code, out, _ = check("--format", "json", user=bob.address, password=bob.password)
    report = _json(out)
    assert code == 1
    near = next(f for f in report["findings"] if f["code"] == "QUOTA_NEAR_LIMIT")
    assert near["severity"] == "warning"
    assert "95 %" in near["explanation"] and "973 KiB" in near["explanation"]
    assert near["details"]["resource"] == "STORAGE"


def test_bob_below_a_higher_warning_threshold_is_fine(mail_lab: MailLab, check):
    bob = mail_lab.bob
    code, out, _ = check(
        "--format", "json", "--quota-warning", "96", user=bob.address, password=bob.password
    )
    report = _json(out)
    assert code == 0
    assert "QUOTA_NEAR_LIMIT" not in _codes(report) and "QUOTA_OK" in _codes(report)


def test_carol_at_100_percent_is_quota_full_with_the_bounce_explained(mail_lab: MailLab, check):
    carol = mail_lab.carol
    code, out, _ = check(user=carol.address, password=carol.password)
    assert code == 2
    assert "[CRITICAL] QUOTA_FULL" in out
    flat = " ".join(out.split())
    assert "mailbox full" in flat and "552" in flat
    assert "empty Trash" in flat  # what to do
    assert "100 % storage" in out  # the Quota column of the table


def test_carol_with_a_higher_critical_threshold_is_only_a_warning(mail_lab: MailLab, check):
    carol = mail_lab.carol
    code, out, _ = check(
        "--format", "json", "--quota-critical", "101", user=carol.address, password=carol.password
    )
    report = _json(out)
    assert "QUOTA_NEAR_LIMIT" in _codes(report) and "QUOTA_FULL" not in _codes(report)
    # The threshold is the quota's; the MX refusing mail at RCPT (--user at the
    # domain checks the inbound path) stays critical whatever it is.
    critical = {f["code"] for f in report["findings"] if f["severity"] == "critical"}
    assert critical == {"INBOUND_MAILBOX_FULL"} and code == 2


def test_erin_with_a_full_message_count_quota_gets_the_message_advice(mail_lab: MailLab, check):
    # Dovecot quota_rule *:storage=1024k:messages=3 with three messages: GETQUOTAROOT
    # reports MESSAGE 3 3 next to a nearly empty STORAGE (RFC 9208 §5).
    erin = mail_lab.erin
    code, out, _ = check("--format", "json", user=erin.address, password=erin.password)
    report = _json(out)
    full = next(f for f in report["findings"] if f["code"] == "QUOTA_FULL")
    assert code == 2
    assert full["details"]["resource"] == "MESSAGE"
    assert "3 messages of 3 messages" in full["explanation"]
    assert "number of messages, not their size" in full["fix"]
    assert "large attachments" not in full["fix"]
    imap = next(e for e in report["endpoints"] if e["port"] == 993)
    resources = {q["resource"] for q in imap["mailbox"]["quota"]}
    assert resources == {"STORAGE", "MESSAGE"}


# -- read-only by default, --sync writes and cleans up --------------------------------


def test_a_default_run_leaves_the_mailbox_exactly_as_it_was(mail_lab: MailLab, check):
    alice = mail_lab.alice
    before = mail_lab.inbox_state(alice.address)
    for output in ("text", "json"):
        code, _, _ = check("--format", output, user=alice.address, password=alice.password)
        assert code == 0
    assert mail_lab.inbox_state(alice.address) == before


def test_sync_measures_both_latencies_and_removes_its_message(mail_lab: MailLab, check):
    alice = mail_lab.alice
    before = mail_lab.inbox_state(alice.address)
    code, out, _ = check("--format", "json", "--sync", user=alice.address, password=alice.password)
    report = _json(out)
    sync = report["sync"]
    assert sync["error"] is None, sync
    assert 0 < sync["delivery_latency_s"] < 10
    assert 0 <= sync["flag_sync_latency_s"] < 5
    # Dovecot offers IDLE (RFC 2177).
    assert sync["delivery_method"] == "idle" and sync["flag_sync_method"] == "idle"
    assert sync["cleaned_up"] is True
    assert "SYNC_OK" in _codes(report)
    assert code == 0
    assert mail_lab.find_messages(alice.address, "maildiag sync probe") == []
    assert mail_lab.inbox_state(alice.address) == before


def test_sync_text_report_shows_the_latencies(mail_lab: MailLab, check):
    alice = mail_lab.alice
    code, out, _ = check("--sync", user=alice.address, password=alice.password)
    assert code == 0
    line = next(ln for ln in out.splitlines() if ln.startswith("Sync:"))
    assert "delivery" in line and "(idle)" in line and "test message removed" in line
    assert mail_lab.find_messages(alice.address, "maildiag sync probe") == []


def test_sync_with_a_wrong_password_sends_nothing(mail_lab: MailLab, check):
    alice = mail_lab.alice
    before = mail_lab.inbox_state(alice.address)
    code, out, _ = check("--format", "json", "--sync", user=alice.address, password="Bad-Pass-42")
    report = _json(out)
    assert code == 2
    assert report["sync"]["delivery_latency_s"] is None
    assert report["sync"]["error"].startswith("not measured")
    assert report["sync"]["cleaned_up"] is True
    assert "SYNC_FAILED" in _codes(report, "info")
    assert mail_lab.inbox_state(alice.address) == before


def test_sync_needs_a_user(check):
    code, _, err = check("--sync")
    assert code == 3
    assert "--sync needs --user" in err


# -- the password stays secret -------------------------------------------------------


@pytest.mark.parametrize("output", ["text", "json", "nagios", "junit"])
def test_the_password_appears_in_no_output(mail_lab: MailLab, check, output):
    alice = mail_lab.alice
    for password in (alice.password, "Wrong-" + alice.password):
        code, out, err = check(
            "--format",
            output,
            "-v" if output == "text" else "--no-autoconfig",
            user=alice.address,
            password=password,
        )
        assert code in (0, 2)
        assert password not in out + err
    code, out, err = check(
        "--format", output, "--sync", user=alice.address, password=alice.password
    )
    assert alice.password not in out + err


def test_password_file_readable_by_others_is_refused(mail_lab: MailLab, check, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(mail_lab.alice.password + "\n")
    secret.chmod(0o644)
    code, out, err = check("--password-file", str(secret), user=mail_lab.alice.address)
    assert code == 3
    assert "chmod 600" in err and "0644" in err
    assert mail_lab.alice.password not in out + err


def test_private_password_file_is_used(mail_lab: MailLab, check, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(mail_lab.alice.password + "\n")
    secret.chmod(0o600)
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    code, out, err = check(
        "--format", "json", "--password-file", str(secret), user=mail_lab.alice.address
    )
    assert code == 0, err
    assert set(_auth(_json(out)).values()) == {"ok"}


def test_no_password_and_no_terminal_is_a_clear_error(check):
    code, out, err = check(user="alice@lab.test")
    assert code == 3
    assert "MAILDIAG_PASSWORD" in err and "--password-file" in err
    assert out == ""


# -- sending: MAIL FROM / RCPT TO / RSET after the submission login -----------------


def _sends(report: dict) -> dict[int, dict]:
    return {e["port"]: e["send"] for e in report["endpoints"] if "send" in e}


def test_sending_as_the_own_address_is_accepted_and_nothing_is_sent(mail_lab: MailLab, check):
    alice = mail_lab.alice
    inbox_before = len(mail_lab.inbox_state(alice.address))
    queued_before = mail_lab.queued_from(alice.address)
    code, out, _ = check(
        "--format", "json", user=alice.address, password=alice.password, domain="smtp-only.test"
    )
    report = _json(out)
    assert code == 0, _codes(report)
    sends = _sends(report)
    assert set(sends) == {587, 465}
    for send in sends.values():
        assert send["status"] == "accepted" and send["sender"] == alice.address
        assert send["mail_reply"].startswith("250") and send["rcpt_reply"].startswith("250")
        # Postfix's default message_size_limit: 10240000 bytes, above the warning level.
        assert send["size_limit"] == 10240000
    assert _codes(report).count("SEND_OK") == 2
    assert _codes(report).count("SEND_SIZE_LIMIT") == 2
    assert "SEND_SIZE_SMALL" not in _codes(report)
    size = next(f for f in report["findings"] if f["code"] == "SEND_SIZE_LIMIT")
    assert "10.2 MB" in size["explanation"] and "7.7 MB" in size["explanation"]
    timings = next(e["timings"] for e in report["endpoints"] if e["port"] == 465)
    assert "send" in timings
    time.sleep(0.3)  # a queued message would show in the log by now (postlogd lags ms)
    assert mail_lab.queued_from(alice.address) == queued_before
    assert len(mail_lab.inbox_state(alice.address)) == inbox_before


def test_a_login_that_does_not_own_its_address_is_a_send_as_finding(mail_lab: MailLab, check):
    henry = mail_lab.henry
    inbox_before = len(mail_lab.inbox_state(henry.address))
    queued_before = mail_lab.queued_from(henry.address)
    code, out, _ = check(
        "--format", "json", user=henry.address, password=henry.password, domain="smtp-only.test"
    )
    report = _json(out)
    assert code == 2, _codes(report)
    assert set(_auth(report).values()) == {"ok"}  # the login itself works
    sends = _sends(report)
    assert {s["status"] for s in sends.values()} == {"sender_rejected"}
    for send in sends.values():
        # smtpd_delay_reject: Postfix judges the sender only at RCPT TO.
        assert send["mail_reply"].startswith("250")
        assert send["rcpt_reply"].startswith("553 5.7.1")
        assert "not owned by user" in send["rcpt_reply"]
    rejected = [f for f in report["findings"] if f["code"] == "SEND_SENDER_REJECTED"]
    assert len(rejected) == 2 and {f["severity"] for f in rejected} == {"critical"}
    assert "not owned by user" in rejected[0]["explanation"]
    assert "SEND_OK" not in _codes(report)
    time.sleep(0.3)
    assert mail_lab.queued_from(henry.address) == queued_before
    assert len(mail_lab.inbox_state(henry.address)) == inbox_before


def test_the_send_as_refusal_reads_in_german(mail_lab: MailLab, check):
    henry = mail_lab.henry
    _, out, _ = check(
        "--lang", "de", user=henry.address, password=henry.password, domain="smtp-only.test"
    )
    assert "Absender" in out and "not owned by user" in out


def test_queued_from_counts_a_message_that_really_was_sent(mail_lab: MailLab):
    # The twin of the "nothing was sent" checks above: the count they compare
    # does move when a message is submitted.
    alice = mail_lab.alice
    before = mail_lab.queued_from(alice.address)
    subject = f"maildiag queued_from {time.time_ns()}"
    with smtplib.SMTP_SSL(
        mail_lab.address, mail_lab.SUBMISSIONS, context=mail_lab.client_context(), timeout=5
    ) as smtp:
        smtp.login(alice.address, alice.password)
        smtp.sendmail(alice.address, [alice.address], f"Subject: {subject}\r\n\r\nHello.\r\n")
    mail_lab.wait_for_message(alice.address, subject, timeout=5)
    assert mail_lab.queued_from(alice.address) == before + 1


# -- folders and push: LIST (SPECIAL-USE), IDLE, STATUS per folder --------------------


def _imap(report: dict, port: int = 993) -> dict:
    return next(e for e in report["endpoints"] if e["port"] == port)


def test_special_use_folders_are_found_when_dovecot_marks_them(mail_lab: MailLab, check):
    alice = mail_lab.alice
    _, out, _ = check(
        "--format", "json", user=alice.address, password=alice.password, domain="imap-only.test"
    )
    report = _json(out)
    box = _imap(report)["mailbox"]
    assert box["folder_listing"] == "special-use"  # Dovecot: SPECIAL-USE and LIST-EXTENDED
    uses = {f["name"]: f["special_use"] for f in box["folders"]}
    assert uses["Sent"] == ["\\Sent"] and uses["Trash"] == ["\\Trash"]
    assert uses["Drafts"] == ["\\Drafts"] and uses["Junk"] == ["\\Junk"]
    assert uses["INBOX"] == []
    assert box["idle"] is True
    # The quota is far from its warning level: no STATUS round trip per folder.
    assert {f["messages"] for f in box["folders"]} == {None}
    assert "FOLDERS_SPECIAL_USE_OK" in _codes(report)
    ok = next(f for f in report["findings"] if f["code"] == "FOLDERS_SPECIAL_USE_OK")
    assert "\\Sent Sent" in ok["explanation"] and "\\Junk Junk" in ok["explanation"]
    assert not {"FOLDERS_SPECIAL_USE_MISSING", "IMAP_IDLE_MISSING"} & set(_codes(report))


def test_folders_without_special_use_are_a_finding_naming_what_is_missing(mail_lab: MailLab, check):
    ivy = mail_lab.ivy
    code, out, _ = check(
        "--format", "json", user=ivy.address, password=ivy.password, domain="imap-only.test"
    )
    report = _json(out)
    box = _imap(report)["mailbox"]
    names = {f["name"] for f in box["folders"]}
    assert {"INBOX", "Sent", "Gesendete Elemente", "Trash"} <= names
    assert all(f["special_use"] == [] for f in box["folders"])
    missing = next(f for f in report["findings"] if f["code"] == "FOLDERS_SPECIAL_USE_MISSING")
    assert missing["severity"] == "warning" and code == 1
    assert missing["details"]["missing_uses"] == ["\\Sent", "\\Drafts", "\\Trash", "\\Junk"]
    assert "Gesendete Elemente" in missing["explanation"]
    assert "FOLDERS_SPECIAL_USE_OK" not in _codes(report)


def test_a_quota_near_its_limit_names_the_folders_that_hold_the_space(mail_lab: MailLab, check):
    jack = mail_lab.jack
    before = mail_lab.inbox_state(jack.address)
    _, out, _ = check(
        "--format", "json", user=jack.address, password=jack.password, domain="imap-only.test"
    )
    report = _json(out)
    box = _imap(report)["mailbox"]
    sizes = {f["name"]: f["size_bytes"] for f in box["folders"]}
    # STATUS=SIZE (RFC 8438): the seeded shares of the 1 MiB quota, exactly.
    assert sizes["Trash"] == round(mail_lab.quota_bytes * 0.6)
    assert sizes["Sent"] == sizes["Junk"] == round(mail_lab.quota_bytes * 0.1)
    assert sizes["INBOX"] == round(mail_lab.quota_bytes * 0.15)
    near = next(f for f in report["findings"] if f["code"] == "QUOTA_NEAR_LIMIT")
    assert "Here, emptying Trash (614 KiB), Junk (102 KiB) frees the most." in near["fix"]
    assert "The largest other folders: INBOX (154 KiB), Sent (102 KiB)." in near["fix"]
    assert [s["name"] for s in near["details"]["folder_space"]] == [
        "Trash",
        "Junk",
        "INBOX",
        "Sent",
    ]
    assert mail_lab.inbox_state(jack.address) == before  # STATUS and LIST only


def test_the_folder_advice_reads_in_german(mail_lab: MailLab, check):
    jack = mail_lab.jack
    _, out, _ = check(
        "--lang", "de", user=jack.address, password=jack.password, domain="imap-only.test"
    )
    assert "das Leeren von Trash (614 KiB), Junk (102 KiB)." in " ".join(out.split())
