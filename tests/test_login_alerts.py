"""The provider's notice at a successful IMAP login: [ALERT] (RFC 3501 §7.1).

A client must show an [ALERT] text to the user; providers use it for "your
mailbox is almost full", "your password expires in 3 days", "this account
will be closed". Scripted servers send such notices with a successful login,
and the report must quote them (scrubbed) as IMAP_ALERT; the twin, a login
without a notice, gets none.
"""

from __future__ import annotations

from maildiag.login_replies import imap_alerts
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
