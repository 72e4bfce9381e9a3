"""The provider's notice at a successful IMAP login: [ALERT] (RFC 3501 §7.1).

A client must show an [ALERT] text to the user; providers use it for "your
mailbox is almost full", "your password expires in 3 days", "this account
will be closed". Scripted servers send such notices with a successful login,
and the report must quote them (scrubbed) as IMAP_ALERT; the twin, a login
without a notice, gets none.
"""

from __future__ import annotations

from maildiag.finding_codes import FindingCode
from maildiag.login_replies import alert_cause, imap_alerts
from maildiag.protocols import imap
from tests import test_mailbox_fake as base
from tests.test_mailbox_fake import PASSWORD, USER, _auth, _codes

fake = base.fake
check = base.check

ALMOST_FULL = "Your mailbox is 95% full. Please delete old messages."
EXPIRES = f"The password {PASSWORD} of {USER} expires in 3 days."
IMAP_PORTS = (143, 993)


def _alerts(report: dict) -> list[dict]:
    return [f for f in report["findings"] if f["code"] == "IMAP_ALERT"]


def test_a_notice_at_login_is_reported_as_the_providers_words(fake, check):
    host, dns = fake(login_alerts=(ALMOST_FULL,))
    code, report = check(dns)
    auth = _auth(report)
    assert [auth[p]["alerts"] for p in IMAP_PORTS] == [[ALMOST_FULL]] * 2
    assert all(auth[p]["alerts"] == [] for p in (110, 995, 587, 465))  # POP3, SMTP: no ALERT
    found = _alerts(report)
    assert sorted(f["endpoint"]["port"] for f in found) == list(IMAP_PORTS)
    notice = found[0]
    assert notice["severity"] == "warning"
    assert f'"{ALMOST_FULL}"' in notice["explanation"]
    assert USER in notice["explanation"]
    assert notice["fix"].startswith("Read the message to the customer")
    assert notice["details"]["alert"] == ALMOST_FULL
    # The login itself worked: the notice comes beside AUTH_OK, not instead.
    assert _codes(report).count("AUTH_OK") == 6
    assert code == 1  # a warning


def test_two_notices_are_two_findings_and_a_secret_in_one_is_scrubbed(fake, check):
    # check() asserts the password appears nowhere in the output.
    host, dns = fake(login_alerts=(ALMOST_FULL, EXPIRES))
    code, report = check(dns)
    texts = {f["details"]["alert"] for f in _alerts(report)}
    assert texts == {ALMOST_FULL, EXPIRES.replace(PASSWORD, "********")}
    assert len(_alerts(report)) == 4  # two notices on each IMAP endpoint


def test_a_login_without_a_notice_gets_no_alert_finding(fake, check):
    # The healthy twin.
    host, dns = fake()
    code, report = check(dns)
    assert code == 0
    assert _alerts(report) == []
    assert all(a["alerts"] == [] for a in _auth(report).values())


def test_a_refusal_keeps_its_alert_in_the_refusal_not_as_a_notice(fake, check):
    # An [ALERT] with a refusal explains the refusal (maildiag.login_replies);
    # it is no separate notice of a login that worked.
    host, dns = fake(login_refusals={"imap": "NO [ALERT] Invalid credentials (Failure)"})
    code, report = check(dns)
    assert _alerts(report) == []
    assert "AUTH_FAILED" in _codes(report)


def test_the_notice_reads_in_german(fake, check):
    host, dns = fake(login_alerts=(ALMOST_FULL,))
    code, report = check(dns, "--lang", "de")
    notice = _alerts(report)[0]
    assert f"„{ALMOST_FULL}“" in notice["explanation"]
    assert "Kunden" in notice["fix"]
    assert "{" not in notice["explanation"] + notice["fix"]


def test_an_alert_on_the_tagged_ok_counts_as_well() -> None:
    parser = imap.ResponseParser()
    parser.feed(
        b"* OK [ALERT] Account will be closed on 2027-01-31\r\n"
        b"* CAPABILITY IMAP4rev1\r\n"
        b"a1 OK [ALERT] Password expires in 3 days\r\n"
    )
    responses = []
    while (response := parser.next_response()) is not None:
        responses.append(response)
    assert list(imap_alerts(responses)) == [
        "Account will be closed on 2027-01-31",
        "Password expires in 3 days",
    ]
    assert list(imap_alerts(responses[1:2])) == []


COURIER_FAM = (
    "Filesystem notification initialization error -- contact your mail administrator "
    "(check for configuration errors with the FAM/Gamin library)"
)


def test_courier_s_fam_error_is_the_servers_fault_not_a_notice_for_the_customer(fake, check):
    # Courier-IMAP sends it on every login when FAM/Gamin cannot start (the
    # Courier lab does too, tests/test_courier_lab.py); the twin is the first
    # test here: a provider's notice stays IMAP_ALERT.
    host, dns = fake(login_alerts=(COURIER_FAM,))
    code, report = check(dns)
    assert _alerts(report) == []
    found = [f for f in report["findings"] if f["code"] == "IMAP_SERVER_NOTIFY_ERROR"]
    assert sorted(f["endpoint"]["port"] for f in found) == list(IMAP_PORTS)
    assert found[0]["severity"] == "warning"
    assert f'"{COURIER_FAM}"' in found[0]["explanation"]
    assert "gamin" in found[0]["fix"]
    assert not found[0]["fix"].startswith("Read the message to the customer")


def test_the_alert_table_tells_server_faults_from_notices() -> None:
    assert alert_cause(COURIER_FAM) is FindingCode.IMAP_SERVER_NOTIFY_ERROR
    assert alert_cause(ALMOST_FULL) is FindingCode.IMAP_ALERT
    # A notice that merely mentions notifications is the provider's words.
    assert alert_cause("New: notifications for shared folders") is FindingCode.IMAP_ALERT
