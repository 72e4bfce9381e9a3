"""Provider refusals end to end: scripted TLS servers answer every login as Gmail,
Microsoft 365 or an OAuth-only tenant would, and the CLI (JSON) must name the
cause, quote the server's words scrubbed, and log in no second time.

Logins are counted at the servers: one definite refusal anywhere means no
further login to any endpoint of the run.
"""

from __future__ import annotations

from contextlib import ExitStack

from tests import test_mailbox_fake as base
from tests.lab.dns_server import DnsServer
from tests.lab.fake_servers import Behaviour, FakeMailHost
from tests.test_mailbox_fake import KEYS, PASSWORD, USER, _auth, _codes, _logins_sent, _statuses

# The fixtures of the mailbox tests: a FakeMailHost with DNS for kunde.test,
# and the CLI run with --user and --format json.
fake = base.fake
check = base.check

GMAIL_APP_PASSWORD = {
    "imap": "NO [ALERT] Application-specific password required: "
    "https://support.google.com/accounts/answer/185833 (Failure)",
    "pop3": "-ERR [AUTH] Application-specific password required: "
    "https://support.google.com/accounts/answer/185833",
    "smtp": "534-5.7.9 Application-specific password required. Learn more at\r\n"
    "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor "
    "2adb3069b0e04-50a9b0a1c2dsm123456e87.12 - gsmtp",
}
M365_TENANT = (
    "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
    "Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. "
    "[AM0PR01CA0123.eurprd01.prod.exchangelabs.com 2023-11-06T10:00:01.234Z 08DBDE2A1B2C3D4E]"
)
M365_WRONG_PASSWORD = (
    "535 5.7.139 Authentication unsuccessful, the user credentials were incorrect. "
    "[AM0PR01CA0123.eurprd01.prod.exchangelabs.com 2023-11-06T10:00:01.234Z 08DBDE2A1B2C3D4E]"
)
SUBMISSION_ONLY = {key: None for key in KEYS if not key.startswith("submission")}


def _logins(host) -> int:
    return sum(len(_logins_sent(host[key])) for key in host.servers)


def _finding(report: dict, code: str) -> dict:
    return next(f for f in report["findings"] if f["code"] == code)


def test_gmail_app_password_is_named_and_tried_once(fake, check):
    host, dns = fake(login_refusals=GMAIL_APP_PASSWORD)
    code, report = check(dns)
    assert code == 2
    assert _statuses(report) == ["password_login_disabled"] + ["skipped"] * 5
    assert _logins(host) == 1 and sum(host[k].failed_logins for k in KEYS) == 1
    causes = [a.get("cause") for a in _auth(report).values() if a["status"] != "skipped"]
    assert causes == ["AUTH_APP_PASSWORD_REQUIRED"]
    finding = _finding(report, "AUTH_APP_PASSWORD_REQUIRED")
    assert finding["severity"] == "critical"
    assert "Application-specific password required" in finding["explanation"]
    assert "app password" in finding["fix"]
    codes = _codes(report)
    assert codes.count("AUTH_SKIPPED_LOCKOUT") == 5
    for wrong in ("AUTH_MECHANISM_UNAVAILABLE", "AUTH_FAILED", "AUTH_ACCOUNT_DISABLED"):
        assert wrong not in codes


def test_microsoft_365_smtp_auth_off_is_not_a_disabled_account(fake, check):
    host, dns = fake(SUBMISSION_ONLY, login_refusals={"smtp": M365_TENANT})
    code, report = check(dns)
    assert code == 2
    by_port = _auth(report)
    assert sorted(by_port[p]["status"] for p in (587, 465)) == [
        "password_login_disabled",
        "skipped",
    ]
    assert _logins(host) == 1
    finding = _finding(report, "AUTH_SMTP_AUTH_DISABLED_M365")
    assert "SmtpClientAuthentication is disabled for the Tenant" in finding["explanation"]
    assert "Authenticated SMTP" in finding["fix"] and "OAuth" in finding["fix"]
    assert "AUTH_ACCOUNT_DISABLED" not in _codes(report)


def test_microsoft_365_wrong_password_twin_is_a_wrong_password(fake, check):
    # The same 535 5.7.139, with the words of a wrong password: AUTH_FAILED,
    # and the hint at the other form of the user name, which is not tried.
    host, dns = fake(SUBMISSION_ONLY, login_refusals={"smtp": M365_WRONG_PASSWORD})
    code, report = check(dns)
    assert code == 2
    assert _logins(host) == 1
    assert "AUTH_SMTP_AUTH_DISABLED_M365" not in _codes(report)
    failed = _finding(report, "AUTH_FAILED")
    assert "the user credentials were incorrect" in failed["explanation"]
    assert "part before the @" in failed["explanation"]


def test_a_login_without_at_hears_of_the_full_address_once_and_in_german(fake, check):
    host, dns = fake()
    code, report = check(dns, "--user", "alice", "--lang", "de")
    assert code == 2
    assert _logins(host) == 1
    failed = _finding(report, "AUTH_FAILED")
    assert "vollständige E-Mail-Adresse" in failed["explanation"]
    assert "„alice“" in failed["explanation"]
    assert "{" not in failed["explanation"]


def test_oauth_only_servers_get_no_password_at_all(fake, check):
    host, dns = fake(dict.fromkeys(KEYS, Behaviour.OAUTH_ONLY))
    code, report = check(dns)
    assert code == 2
    assert _logins(host) == 0
    codes = _codes(report)
    assert codes.count("AUTH_OAUTH_ONLY") == 6
    assert "AUTH_MECHANISM_UNAVAILABLE" not in codes
    finding = _finding(report, "AUTH_OAUTH_ONLY")
    assert "XOAUTH2" in finding["explanation"]
    assert "login window" in finding["explanation"]


def test_oauth_beside_password_logins_is_a_normal_login(fake, check):
    # The twin: a healthy server (PLAIN offered) is not OAuth-only.
    host, dns = fake()
    code, report = check(dns)
    assert _statuses(report) == ["ok"] * 6
    assert _codes(report).count("AUTH_OK") == 6
    assert not [c for c in _codes(report, "critical") if c.startswith("AUTH_")]
    assert "AUTH_OAUTH_ONLY" not in _codes(report)
    assert sum(host[k].successful_logins for k in KEYS) == 6


def test_a_server_that_counts_errors_stops_every_further_login(fake, check):
    host, dns = fake(
        login_refusals={
            "imap": "NO Login failed: account temporarily locked after too many failed attempts",
            "pop3": "-ERR [SYS/TEMP] Too many failed login attempts, wait 60 seconds",
            "smtp": "421 4.7.0 mail.kunde.test Error: too many errors",
        }
    )
    code, report = check(dns)
    assert _logins(host) == 1
    assert _statuses(report) == ["skipped"] * 5 + ["temporary_failure"]
    assert "AUTH_RATE_LIMITED" in _codes(report)
    skipped = [a for a in _auth(report).values() if a["status"] == "skipped"]
    assert all("limits logins from this address" in a["detail"] for a in skipped)
    assert _finding(report, "AUTH_RATE_LIMITED")["severity"] == "warning"
    assert not [c for c in _codes(report, "critical") if c.startswith("AUTH_")]


def test_a_421_that_closes_the_submission_session_is_read_as_a_refusal(fake, check):
    # Postfix's smtpd_hard_error_limit: 421, and the server hangs up.
    host, dns = fake(
        SUBMISSION_ONLY, login_refusals={"smtp": "421 4.7.0 mail.kunde.test Error: too many errors"}
    )
    code, report = check(dns)
    assert _logins(host) == 1
    statuses = sorted(_auth(report)[p]["status"] for p in (587, 465))
    assert statuses == ["skipped", "temporary_failure"]
    limited = _finding(report, "AUTH_RATE_LIMITED")
    assert "too many errors" in limited["explanation"]


def test_a_quoted_refusal_that_echoes_the_login_is_scrubbed(fake, check):
    # The refusal quotes the client's AUTH PLAIN line back; the finding quotes
    # the refusal. The password must show in neither form (check() asserts the
    # plain password is absent from all output).
    host, dns = fake(SUBMISSION_ONLY, login_refusals={"smtp": M365_TENANT}, echo_failed_logins=True)
    code, report = check(dns)
    finding = _finding(report, "AUTH_SMTP_AUTH_DISABLED_M365")
    assert "you sent:" in finding["explanation"] and "********" in finding["explanation"]
    blobs = [c for c in host["submissions"].commands + host["submission"].commands]
    sent = [c.split()[-1].decode() for c in blobs if c.upper().startswith(b"AUTH PLAIN ")]
    assert sent and all(blob not in str(report) for blob in sent)
    assert USER in finding["explanation"] and PASSWORD not in str(report)


def _provider_check(pki, address, check, name: str, mx: str, refusals: dict[str, str]):
    """A check of kunde.test whose IMAPS and POP3S are a provider's ``name`` (SRV)."""
    with ExitStack() as stack:
        host = stack.enter_context(
            FakeMailHost(
                address,
                pki.good([name]).server_context(),
                hostname=name,
                behaviours={"imap": None, "pop3": None, "submission": None, "submissions": None},
                users={USER: PASSWORD},
                login_refusals=refusals,
            )
        )
        label, parent = name.split(".", 1)
        zones = {
            "kunde.test": {
                "@": {"MX": [mx]},
                "_imaps._tcp": {"SRV": [f"0 1 993 {name}."]},
                "_pop3s._tcp": {"SRV": [f"0 1 995 {name}."]},
            },
            parent: {label: {"A": [address]}},
        }
        dns = stack.enter_context(DnsServer(zones, base.DNS_ADDRESS))
        code, report = check(dns)
    return host, code, report


def test_microsoft_hosted_imap_and_pop3_refusals_mean_oauth_only(pki, loopback_address, check):
    # Microsoft 365 answers every password login on outlook.office365.com with a
    # codeless refusal (basic authentication is off); on premises the same
    # words mean a wrong password (see the transcripts' twins).
    name = "outlook.office365.com"
    host, code, report = _provider_check(
        pki,
        loopback_address,
        check,
        name,
        "10 kunde-test.mail.protection.outlook.com.",
        {
            "imap": "NO AUTHENTICATE failed.",
            "pop3": "-ERR Logon failure: unknown user name or bad password.",
        },
    )
    assert code == 2
    assert _logins(host) == 1
    by_port = _auth(report)
    assert sorted(by_port[p]["status"] for p in (993, 995)) == [
        "password_login_disabled",
        "skipped",
    ]
    finding = _finding(report, "AUTH_OAUTH_ONLY")
    assert finding["endpoint"]["host"] == name
    assert "AUTH_FAILED" not in _codes(report)


GMAIL_BAD_CREDENTIALS = (
    "535-5.7.8 Username and Password not accepted. For more information, go to\r\n"
    "535 5.7.8  https://support.google.com/mail/?p=BadCredentials "
    "a640c23a62f3a-9dd0000000000sm123456ejb.12 - gsmtp"
)


def test_googles_wrong_credentials_hint_at_an_app_password(fake, check):
    host, dns = fake(SUBMISSION_ONLY, login_refusals={"smtp": GMAIL_BAD_CREDENTIALS})
    code, report = check(dns)
    assert code == 2
    assert _logins(host) == 1  # still wrong credentials: one failed login, no second
    tried = [a for a in _auth(report).values() if a.get("status") == "wrong_credentials"]
    assert [a["hint"] for a in tried] == ["google_app_password"]
    failed = _finding(report, "AUTH_FAILED")
    assert "Username and Password not accepted" in failed["explanation"]
    assert "app password" in failed["fix"] and "2-Step Verification" in failed["fix"]
    # A hint, not the verdict of Gmail's 534 5.7.9.
    assert "AUTH_APP_PASSWORD_REQUIRED" not in _codes(report)


def test_a_wrong_password_elsewhere_gets_no_google_hint(fake, check):
    # The twin: Postfix's 535 5.7.8 for a wrong password.
    host, dns = fake(SUBMISSION_ONLY)
    code, report = check(dns, password="wrong-one")
    assert _logins(host) == 1
    tried = [a for a in _auth(report).values() if a.get("status") == "wrong_credentials"]
    assert [a["hint"] for a in tried] == [None]
    failed = _finding(report, "AUTH_FAILED")
    assert "Google" not in failed["fix"]


def test_the_google_hint_reads_in_german(fake, check):
    host, dns = fake(SUBMISSION_ONLY, login_refusals={"smtp": GMAIL_BAD_CREDENTIALS})
    code, report = check(dns, "--lang", "de")
    fix = _finding(report, "AUTH_FAILED")["fix"]
    assert "App-Passwort" in fix and "Bestätigung in zwei Schritten" in fix
    assert "{" not in fix


def test_gmail_imap_invalid_credentials_hint_at_an_app_password(pki, loopback_address, check):
    name = "imap.gmail.com"
    host, code, report = _provider_check(
        pki,
        loopback_address,
        check,
        name,
        "1 aspmx.l.google.com.",
        {
            "imap": "NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)",
            "pop3": "-ERR [AUTH] Username and password not accepted.",
        },
    )
    assert code == 2
    assert _logins(host) == 1
    tried = [a for a in _auth(report).values() if a.get("status") == "wrong_credentials"]
    assert [a["hint"] for a in tried] == ["google_app_password"]
    failed = _finding(report, "AUTH_FAILED")
    assert failed["endpoint"]["host"] == name
    # Whichever of IMAP and POP3 logged in first, its reply is quoted.
    quoted = {993: "Invalid credentials (Failure)", 995: "Username and password not accepted"}
    assert quoted[failed["endpoint"]["port"]] in failed["explanation"]
    assert "app password" in failed["fix"]
