"""The lab itself works: real Dovecot/Postfix, checked with stdlib clients only.

If these fail, every maildiag test against the lab is suspect, so they check
exactly the server behaviour those tests rely on, each with its failure twin.
"""

from __future__ import annotations

import datetime
import imaplib
import poplib
import re
import smtplib
import socket
import ssl
import uuid
from email.message import EmailMessage

import pytest
from cryptography import x509

from tests.lab.real import CertKind, LabError, LabHost, MailLab

pytestmark = pytest.mark.lab
TIMEOUT = 10


def _imaps(lab: MailLab, host: LabHost | None = None) -> imaplib.IMAP4_SSL:
    address = (host or lab.good).address
    return imaplib.IMAP4_SSL(address, lab.IMAPS, ssl_context=lab.client_context(), timeout=TIMEOUT)


def _message(sender: str, to: str, subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg.set_content("Sent by the lab smoke test.\n")
    return msg


def _subject(tag: str) -> str:
    return f"lab-smoke {tag} {uuid.uuid4().hex[:12]}"


def _quota_root(imap: imaplib.IMAP4_SSL) -> tuple[int, int]:
    typ, data = imap.getquotaroot("INBOX")
    assert typ == "OK", data
    # data = [[b'"INBOX" "User quota"'], [b'"User quota" (STORAGE 973 1024)']]
    text = b" ".join(line for part in data for line in part).decode()
    m = re.search(r"\(STORAGE (\d+) (\d+)\)", text)
    assert m, text
    return int(m.group(1)), int(m.group(2))


# -- IMAP -------------------------------------------------------------------


def test_imaps_login_on_the_good_address(mail_lab: MailLab) -> None:
    with _imaps(mail_lab) as imap:
        assert imap.login(mail_lab.alice.address, mail_lab.alice.password)[0] == "OK"
        typ, data = imap.select("INBOX", readonly=True)
        assert typ == "OK" and int(data[0] or b"0") >= 3


def test_imaps_wrong_password_is_refused_and_counted(mail_lab: MailLab) -> None:
    user = mail_lab.alice.address
    before = mail_lab.failed_logins(user)
    with _imaps(mail_lab) as imap, pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap.login(user, "not-" + mail_lab.alice.password)
    assert mail_lab.wait_for_failed_logins(user, before + 1) == before + 1


def test_quota_bob_at_95_and_carol_at_100_percent(mail_lab: MailLab) -> None:
    usage = {}
    for user in (mail_lab.alice, mail_lab.bob, mail_lab.carol):
        with _imaps(mail_lab) as imap:
            imap.login(user.address, user.password)
            # imaplib keeps the pre-login list in .capabilities; ask again.
            assert b"QUOTA" in imap.capability()[1][0].split()
            usage[user.local_part] = _quota_root(imap)
    assert usage["bob"] == (973, 1024)  # 95.0 %
    assert usage["carol"] == (1024, 1024)  # exactly full: quota_grace = 0
    used, limit = usage["alice"]
    assert limit == 1024 and 0 < used < 100


def test_over_quota_mailbox_refuses_delivery(mail_lab: MailLab) -> None:
    msg = _message(f"lab@{mail_lab.domain}", mail_lab.carol.address, _subject("overquota"))
    with pytest.raises(LabError, match="[Qq]uota"):
        mail_lab.deliver(mail_lab.carol.address, msg.as_bytes())


def test_plaintext_login_before_starttls_is_refused(mail_lab: MailLab) -> None:
    with imaplib.IMAP4(mail_lab.address, mail_lab.IMAP, timeout=TIMEOUT) as imap:
        assert "LOGINDISABLED" in imap.capabilities
        assert "STARTTLS" in imap.capabilities
        with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
            imap.login(mail_lab.alice.address, mail_lab.alice.password)


def test_login_after_starttls_on_143_works(mail_lab: MailLab) -> None:
    with imaplib.IMAP4(mail_lab.address, mail_lab.IMAP, timeout=TIMEOUT) as imap:
        imap.starttls(ssl_context=mail_lab.client_context())
        assert "LOGINDISABLED" not in imap.capabilities
        typ, _ = imap.login(mail_lab.alice.address, mail_lab.alice.password)
        assert typ == "OK"


def test_disabled_account_cannot_log_in(mail_lab: MailLab) -> None:
    with _imaps(mail_lab) as imap, pytest.raises(imaplib.IMAP4.error) as err:
        imap.login(mail_lab.dave.address, mail_lab.dave.password)
    # Right password, so Dovecot says why instead of "Authentication failed".
    assert "CONTACTADMIN" in str(err.value)
    assert mail_lab.dave.disabled_reason in str(err.value)


# -- POP3 -------------------------------------------------------------------


def test_pop3s_stat(mail_lab: MailLab) -> None:
    pop = poplib.POP3_SSL(
        mail_lab.address, mail_lab.POP3S, context=mail_lab.client_context(), timeout=TIMEOUT
    )
    try:
        pop.user(mail_lab.bob.address)
        pop.pass_(mail_lab.bob.password)
        count, size = pop.stat()
    finally:
        pop.quit()
    # bob's seeded filler: 8 messages, exactly 973 KiB.
    assert (count, size) == (8, 973 * 1024)


def test_pop3_plaintext_user_before_stls_is_refused(mail_lab: MailLab) -> None:
    pop = poplib.POP3(mail_lab.address, mail_lab.POP3, timeout=TIMEOUT)
    try:
        assert "STLS" in pop.capa()
        with pytest.raises(poplib.error_proto, match="Plaintext authentication disallowed"):
            pop.user(mail_lab.alice.address)
    finally:
        pop.quit()


# -- submission ---------------------------------------------------------------


def test_submission_587_starttls_auth_delivers_to_inbox(mail_lab: MailLab) -> None:
    alice = mail_lab.alice
    before = mail_lab.inbox_state(alice.address)
    subject = _subject("587")
    with smtplib.SMTP(mail_lab.address, mail_lab.SUBMISSION, timeout=TIMEOUT) as smtp:
        smtp.ehlo("client.lab.test")
        assert smtp.has_extn("starttls")
        smtp.starttls(context=mail_lab.client_context())
        smtp.ehlo("client.lab.test")
        assert "PLAIN" in smtp.esmtp_features["auth"].split()
        smtp.login(alice.address, alice.password)
        smtp.send_message(_message(alice.address, alice.address, subject))
    uid = mail_lab.wait_for_message(alice.address, subject, timeout=5)
    after = mail_lab.inbox_state(alice.address)
    assert len(after) == len(before) + 1
    assert (uid, ()) in after  # new, unseen


def test_submission_587_offers_no_auth_and_no_mail_before_starttls(mail_lab: MailLab) -> None:
    with smtplib.SMTP(mail_lab.address, mail_lab.SUBMISSION, timeout=TIMEOUT) as smtp:
        smtp.ehlo("client.lab.test")
        assert not smtp.has_extn("auth")  # smtpd_tls_auth_only
        code, reply = smtp.mail(mail_lab.alice.address)
        assert code == 530 and b"STARTTLS" in reply  # smtpd_tls_security_level = encrypt


def test_submission_587_refuses_unauthenticated_recipient(mail_lab: MailLab) -> None:
    with smtplib.SMTP(mail_lab.address, mail_lab.SUBMISSION, timeout=TIMEOUT) as smtp:
        smtp.starttls(context=mail_lab.client_context())
        smtp.ehlo("client.lab.test")
        assert smtp.mail(mail_lab.bob.address)[0] == 250
        code, _ = smtp.rcpt(mail_lab.alice.address)
        assert code == 554


def test_submissions_465_implicit_tls_delivers(mail_lab: MailLab) -> None:
    # bob sends, alice receives: bob's and carol's quota usage is session-wide
    # fixture state that quota tests depend on, so nothing delivers to them.
    bob, alice = mail_lab.bob, mail_lab.alice
    subject = _subject("465")
    with smtplib.SMTP_SSL(
        mail_lab.address, mail_lab.SUBMISSIONS, context=mail_lab.client_context(), timeout=TIMEOUT
    ) as smtp:
        smtp.login(bob.address, bob.password)
        smtp.send_message(_message(bob.address, alice.address, subject))
    mail_lab.wait_for_message(alice.address, subject, timeout=5)


def test_submissions_465_wrong_password_is_refused_and_counted(mail_lab: MailLab) -> None:
    user = mail_lab.bob.address
    before = mail_lab.failed_logins(user)
    with smtplib.SMTP_SSL(
        mail_lab.address, mail_lab.SUBMISSIONS, context=mail_lab.client_context(), timeout=TIMEOUT
    ) as smtp:
        smtp.ehlo()
        smtp.user, smtp.password = user, "wrong-password"
        # One mechanism only: smtplib's login() tries PLAIN, then LOGIN, so it
        # would fail twice.
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            smtp.auth("PLAIN", smtp.auth_plain)
        assert err.value.smtp_code == 535
    assert mail_lab.wait_for_failed_logins(user, before + 1) == before + 1


def test_deliver_and_inbox_state(mail_lab: MailLab) -> None:
    alice = mail_lab.alice.address
    before = mail_lab.inbox_state(alice)
    subject = _subject("lmtp")
    mail_lab.deliver(alice, _message(f"lab@{mail_lab.domain}", alice, subject).as_bytes())
    uid = mail_lab.find_messages(alice, subject)
    assert len(uid) == 1
    assert mail_lab.inbox_state(alice) == [*before, (uid[0], ())]


# -- certificates -------------------------------------------------------------


def _peer_cert(address: str, port: int) -> x509.Certificate:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((address, port), timeout=TIMEOUT) as raw:
        with ctx.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der
    return x509.load_der_x509_certificate(der)


def _verify_error(lab: MailLab, host: LabHost, port: int, server_hostname: str) -> str | None:
    try:
        with socket.create_connection((host.address, port), timeout=TIMEOUT) as raw:
            with lab.client_context().wrap_socket(raw, server_hostname=server_hostname):
                return None
    except ssl.SSLCertVerificationError as e:
        return e.verify_message


def _san_names(cert: x509.Certificate) -> set[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in san.get_values_for_type(x509.DNSName)} | {
        str(v) for v in san.get_values_for_type(x509.IPAddress)
    }


@pytest.mark.parametrize("port", [MailLab.IMAPS, MailLab.POP3S, MailLab.SUBMISSIONS])
@pytest.mark.parametrize("kind", list(CertKind))
def test_each_address_presents_its_certificate(
    mail_lab: MailLab, kind: CertKind, port: int
) -> None:
    host = next(h for h in mail_lab.hosts if h.cert is kind)
    cert = _peer_cert(host.address, port)
    now = datetime.datetime.now(datetime.UTC)
    assert _san_names(cert) == set(host.cert_names)
    error = _verify_error(mail_lab, host, port, host.name)
    if kind is CertKind.GOOD:
        assert error is None
        # Trusting only the root CA works, so the intermediate came along.
        assert cert.issuer != cert.subject
        assert _verify_error(mail_lab, host, port, host.address) is None
        assert _verify_error(mail_lab, host, port, "other.lab.test") is not None
    elif kind is CertKind.EXPIRED:
        assert cert.not_valid_after_utc < now
        assert error == "certificate has expired"
    elif kind is CertKind.SELF_SIGNED:
        assert cert.issuer == cert.subject
        assert error == "self-signed certificate"
    elif kind is CertKind.WRONG_HOST:
        assert mail_lab.wrong_host_name in _san_names(cert)
        assert error is not None and "Hostname mismatch" in error
        assert _verify_error(mail_lab, host, port, mail_lab.wrong_host_name) is None


def test_submission_587_starttls_presents_the_per_address_certificate(
    mail_lab: MailLab,
) -> None:
    ctx = mail_lab.client_context()
    with smtplib.SMTP(mail_lab.expired.address, mail_lab.SUBMISSION, timeout=TIMEOUT) as smtp:
        with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
            smtp.starttls(context=ctx)
    with smtplib.SMTP(mail_lab.good.address, mail_lab.SUBMISSION, timeout=TIMEOUT) as smtp:
        assert smtp.starttls(context=ctx)[0] == 220


def test_dns_names_cover_every_address(mail_lab: MailLab) -> None:
    assert mail_lab.dns["mail.lab.test"] == mail_lab.good.address
    assert {mail_lab.dns[h.name] for h in mail_lab.hosts} == {h.address for h in mail_lab.hosts}
    assert all(addr.startswith("127.0.0.2") for addr in mail_lab.dns.values())
