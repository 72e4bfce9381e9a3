"""The pure step from results to findings: each rule and its twin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from maildiag.analysis import Thresholds, analyse, mailbox_findings, overall_status
from maildiag.findings import CATALOGUE, make_finding
from maildiag.model import (
    AuthResult,
    CertificateInfo,
    Discovery,
    DnsFailure,
    DnsProblem,
    Endpoint,
    Folder,
    FolderListing,
    MailboxFacts,
    MxRecord,
    Outcome,
    Phase,
    ProbeResult,
    Protocol,
    QuotaResource,
    Security,
    SendCheck,
    Severity,
    SrvRecord,
    Status,
    TlsFacts,
    TrustStatus,
)

NOW = datetime(2026, 11, 21, tzinfo=UTC)
IMAPS = Endpoint(Protocol.IMAP, "mail.kunde.test", 993, Security.TLS, ("srv:_imaps._tcp",))
IMAP = Endpoint(
    Protocol.IMAP, "mail.kunde.test", 143, Security.STARTTLS, ("guess:mail.kunde.test",)
)
SUBMISSION = Endpoint(Protocol.SMTP, "mail.kunde.test", 587, Security.STARTTLS, ("guess:mail",))


def discovery(*endpoints: Endpoint, **kw: object) -> Discovery:
    fields: dict = {
        "domain": "kunde.test",
        "domain_ascii": "kunde.test",
        "domain_exists": True,
        "mx": (MxRecord(10, "mx.provider.test"),),
        "endpoints": endpoints,
    }
    fields.update(kw)
    return Discovery(**fields)


def cert(sans=("web123.provider.test",), days_left: float = 60) -> CertificateInfo:
    return CertificateInfo(
        subject="CN=web123.provider.test",
        issuer="CN=Test CA",
        common_name=sans[0] if sans else None,
        sans=tuple(sans),
        not_before=NOW - timedelta(days=30),
        not_after=NOW + timedelta(days=days_left),
        serial="01",
        fingerprint_sha256="00",
        self_issued=False,
        key_description="EC secp256r1",
        signature_algorithm="ecdsa-with-SHA256",
    )


def tls(
    trust=TrustStatus.TRUSTED,
    matches=True,
    days_left: float = 60,
    version="TLSv1.3",
    cipher="TLS_AES_256_GCM_SHA384",
    bits=256,
    sans=("mail.kunde.test",),
) -> TlsFacts:
    return TlsFacts(
        version=version,
        cipher=cipher,
        cipher_bits=bits,
        chain=(cert(sans, days_left),),
        trust=trust,
        trust_detail=None,
        hostname="mail.kunde.test",
        hostname_matches=matches,
        days_remaining=days_left,
        handshake_seconds=0.01,
    )


def ok(endpoint: Endpoint, **kw: object) -> ProbeResult:
    return ProbeResult.of(endpoint, Outcome.OK, timings={"connect": 0.001}, **kw)


def codes(findings) -> list[str]:
    return [f.code for f in findings]


def test_a_healthy_endpoint_gets_an_ok_finding_and_status_ok():
    findings = analyse(
        discovery(IMAPS, SUBMISSION), [ok(IMAPS, tls=tls()), ok(SUBMISSION, tls=tls())]
    )
    assert codes(findings).count("ENDPOINT_OK") == 2
    assert overall_status(discovery(IMAPS), findings) is Status.OK


def test_hostname_mismatch_names_the_valid_name_and_tells_to_use_it():
    facts = tls(matches=False, sans=("web123.provider.test",))
    findings = analyse(discovery(IMAPS), [ok(IMAPS, tls=facts)])
    mismatch = next(f for f in findings if f.code == "TLS_HOSTNAME_MISMATCH")
    assert mismatch.severity is Severity.CRITICAL
    assert "web123.provider.test" in mismatch.explanation
    assert "'web123.provider.test'" in mismatch.fix and "mail.kunde.test" in mismatch.fix
    assert "ENDPOINT_OK" not in codes(findings)
    assert overall_status(discovery(IMAPS), findings) is Status.CRITICAL


@pytest.mark.parametrize(
    ("days", "severity"), [(30, None), (20, Severity.WARNING), (6, Severity.CRITICAL)]
)
def test_expiry_thresholds(days, severity):
    findings = analyse(discovery(IMAPS), [ok(IMAPS, tls=tls(days_left=days))], Thresholds(21, 7))
    expiring = [f for f in findings if f.code == "TLS_CERT_EXPIRING"]
    if severity is None:
        assert not expiring
    else:
        assert [f.severity for f in expiring] == [severity]
        assert str(days) in expiring[0].explanation


def test_expired_certificate_is_critical_and_not_also_expiring():
    findings = analyse(
        discovery(IMAPS), [ok(IMAPS, tls=tls(trust=TrustStatus.EXPIRED, days_left=-3))]
    )
    assert "TLS_CERT_EXPIRED" in codes(findings)
    assert "TLS_CERT_EXPIRING" not in codes(findings)
    assert "3 days ago" in next(f for f in findings if f.code == "TLS_CERT_EXPIRED").explanation


@pytest.mark.parametrize(
    ("trust", "code"),
    [
        (TrustStatus.SELF_SIGNED, "TLS_CERT_SELF_SIGNED"),
        (TrustStatus.UNTRUSTED_ROOT, "TLS_CERT_UNTRUSTED"),
        (TrustStatus.INCOMPLETE_CHAIN, "TLS_CHAIN_INCOMPLETE"),
        (TrustStatus.NOT_YET_VALID, "TLS_CERT_NOT_YET_VALID"),
    ],
)
def test_each_trust_failure_has_its_code(trust, code):
    assert code in codes(analyse(discovery(IMAPS), [ok(IMAPS, tls=tls(trust=trust))]))


def test_old_tls_and_weak_cipher_are_reported():
    facts = tls(version="TLSv1", cipher="DES-CBC3-SHA", bits=112)
    found = codes(analyse(discovery(IMAPS), [ok(IMAPS, tls=facts)]))
    assert "TLS_PROTOCOL_OUTDATED" in found and "TLS_CIPHER_WEAK" in found


def test_refused_guessed_port_is_only_info_but_announced_one_is_a_contradiction():
    refused_guess = ProbeResult(IMAP, Outcome.REFUSED, failed_phase=Phase.CONNECT)
    refused_srv = ProbeResult(IMAPS, Outcome.REFUSED, failed_phase=Phase.CONNECT)
    guess = analyse(discovery(IMAP, IMAPS), [refused_guess, ok(IMAPS, tls=tls())])
    closed = next(f for f in guess if f.code == "PORT_CLOSED")
    assert closed.severity is Severity.INFO
    srv = analyse(discovery(IMAP, IMAPS), [ok(IMAP, tls=tls()), refused_srv])
    assert next(f for f in srv if f.code == "PORT_CLOSED").severity is Severity.WARNING
    contradiction = next(f for f in srv if f.code == "DISCOVERY_CONTRADICTION")
    assert "_imaps._tcp" in contradiction.explanation


def test_filtered_and_closed_ports_are_told_apart():
    timeout = ProbeResult(IMAPS, Outcome.TIMEOUT, failed_phase=Phase.CONNECT)
    findings = analyse(discovery(IMAPS), [timeout], timeout=5)
    filtered = next(f for f in findings if f.code == "PORT_FILTERED")
    assert "firewall" in filtered.explanation and "5 s" in filtered.explanation
    assert "IMAP_UNREACHABLE" in codes(findings)


def test_smtp_421_is_inconclusive_not_broken():
    throttled = ProbeResult(SUBMISSION, Outcome.THROTTLED, server_reply="421 4.7.0 Try later")
    findings = analyse(discovery(SUBMISSION), [throttled])
    assert "SMTP_THROTTLED" in codes(findings)
    assert "SUBMISSION_UNREACHABLE" not in codes(findings)
    assert "PROTOCOL_ERROR" not in codes(findings)


def test_plaintext_behind_the_starttls_go_ahead_is_its_own_critical_finding():
    injected = ProbeResult(
        SUBMISSION,
        Outcome.PROTOCOL_ERROR,
        failed_phase=Phase.STARTTLS,
        error="the server sent 44 more bytes in plaintext after agreeing to start TLS",
        starttls_offered=True,
        starttls_injection="250-mail.kunde.test\\x0d\\x0a250 AUTH PLAIN LOGIN\\x0d\\x0a",
    )
    findings = analyse(discovery(SUBMISSION), [injected])
    (finding,) = (f for f in findings if f.code == "STARTTLS_INJECTION")
    assert finding.severity is Severity.CRITICAL
    assert "250 AUTH PLAIN LOGIN" in finding.explanation
    assert "STARTTLS" in finding.explanation and "465" in finding.fix
    assert "PROTOCOL_ERROR" not in codes(findings)
    assert overall_status(discovery(SUBMISSION), findings) is Status.CRITICAL
    # The twin: any other protocol error stays PROTOCOL_ERROR.
    garbage = ProbeResult(SUBMISSION, Outcome.PROTOCOL_ERROR, error="not an SMTP reply line")
    assert codes(analyse(discovery(SUBMISSION), [garbage])).count("PROTOCOL_ERROR") == 1
    assert "STARTTLS_INJECTION" not in codes(analyse(discovery(SUBMISSION), [garbage]))


def test_missing_starttls_and_plaintext_login():
    result = ProbeResult(
        IMAP,
        Outcome.STARTTLS_MISSING,
        capabilities=("IMAP4rev1", "AUTH=PLAIN"),
        starttls_offered=False,
        plaintext_login_offered=True,
    )
    findings = analyse(discovery(IMAP), [result])
    assert {"STARTTLS_MISSING", "PLAINTEXT_AUTH_ALLOWED"} <= set(codes(findings))
    plaintext = next(f for f in findings if f.code == "PLAINTEXT_AUTH_ALLOWED")
    assert "LOGIN" in plaintext.explanation and "PLAIN" in plaintext.explanation


def test_login_disabled_before_tls_is_not_plaintext_auth():
    result = ok(
        IMAP,
        capabilities=("IMAP4rev1", "STARTTLS", "LOGINDISABLED"),
        starttls_offered=True,
        plaintext_login_offered=False,
        tls=tls(),
    )
    assert "PLAINTEXT_AUTH_ALLOWED" not in codes(analyse(discovery(IMAP), [result]))


def test_nonexistent_domain_is_critical():
    # Monitoring-plugins guidelines: UNKNOWN is for "could not check" (bad
    # arguments, a failed lookup); NXDOMAIN is a definite answer, and the
    # domain's mail is down.
    empty = discovery(domain_exists=False, mx=())
    findings = analyse(empty, [])
    assert "DOMAIN_NOT_FOUND" in codes(findings)
    assert overall_status(empty, findings) is Status.CRITICAL
    assert overall_status(empty, iter(findings)) is Status.CRITICAL  # any iterable


def test_dns_failure_with_nothing_found_is_unknown_but_clean_nothing_is_critical():
    failed = discovery(
        mx=(), problems=(DnsProblem("kunde.test MX", DnsFailure.TIMEOUT, "no answer"),)
    )
    findings = analyse(failed, [])
    assert {"DNS_LOOKUP_FAILED", "NO_MAIL_ENDPOINTS"} <= set(codes(findings))
    assert "MX_MISSING" not in codes(findings)  # we don't know: the lookup failed
    assert overall_status(failed, findings) is Status.UNKNOWN
    clean = discovery(mx=())
    findings = analyse(clean, [])
    assert "MX_MISSING" in codes(findings)
    assert overall_status(clean, findings) is Status.CRITICAL


def test_srv_dot_target_means_not_offered_and_no_unreachable_finding():
    srv = (SrvRecord("_pop3._tcp", 0, 0, 0, "."), SrvRecord("_pop3s._tcp", 0, 0, 0, "."))
    findings = analyse(
        discovery(IMAPS, SUBMISSION, srv=srv), [ok(IMAPS, tls=tls()), ok(SUBMISSION, tls=tls())]
    )
    assert codes(findings).count("SRV_NOT_OFFERED") == 2
    assert "POP3_UNREACHABLE" not in codes(findings)


def test_findings_are_sorted_worst_first():
    findings = analyse(discovery(IMAPS), [ok(IMAPS, tls=tls(matches=False, days_left=15))])
    ranks = [f.severity.rank for f in findings]
    assert ranks == sorted(ranks, reverse=True)


def test_every_catalogue_entry_renders_without_placeholders_when_given_its_facts():
    facts = dict(
        domain="kunde.test",
        query="q",
        detail="d",
        service="_imaps._tcp",
        what="IMAP",
        source="s",
        outcome="refused",
        timeout=5.0,
        phase="greeting",
        reply="r",
        deadline=60.0,
        command="STARTTLS",
        tls_port=993,
        mechanisms="PLAIN",
        setting="Dovecot: disable_plaintext_auth = yes",
        hostname="h",
        valid_for="v",
        suggestion="'v'",
        encryption="SSL/TLS",
        not_after="2026-01-01",
        not_before="2026-01-01",
        days_ago=3,
        days_left=3,
        subject="CN=x",
        version="TLSv1",
        cipher="RC4",
        bits=40,
        # the mailbox checks (login, quota, INBOX, advice, sync)
        user="alice@kunde.test",
        mechanism="PLAIN",
        reason="r",
        percent=95.0,
        resource="STORAGE",
        used="973 KiB",
        limit="1.0 MiB",
        messages=12000,
        size="2.5 GiB",
        max_messages=10000,
        max_size="2.0 GiB",
        situation="IMAP works.",
        advice="Use IMAP.",
        delivery=0.5,
        delivery_method="idle",
        flag=0.5,
        flag_method="idle",
        # certificates clients refuse
        clients="Some clients refuse it.",
        common_name="h",
        weak_keys="CN=x: RSA 1024",
        weak_signatures="its certificate CN=x signed with SHA-1",
        target="mail.kunde.test",
        standard_port=993,
        # a TLS port that speaks plaintext, submission without AUTH
        greeting="* OK ready",
        plain_name="IMAP",
        tls_name="IMAPS (implicit TLS)",
        starttls_port=143,
        where=" after TLS",
        # autoconfig naming another domain's servers
        url="https://autoconfig.kunde.test/mail/config-v1.1.xml",
        hosts="imap.elsewhere.test",
        redirect="",
        # where incoming mail goes (MX) and the inbound check
        mx_host="mx.kunde.test",
        cname="real-mx.provider.test",
        preference=10,
        mx_provider="oldhoster.test",
        mailbox_hosts="imap.newhoster.test",
        mailbox_provider="newhoster.test",
        # sending after a submission login
        sender="info@kunde.test",
        attachments="7.5 MB",
        # plaintext behind the go-ahead to STARTTLS
        injected="* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN]\\x0d\\x0a",
        # a server that blocks this client's address
        seen="Every mail port refused.",
        families=" Over IPv6 the same server works from here.",
        local_address="192.0.2.7",
        # the login refusals (maildiag.login_replies)
        user_form=" Most providers want the complete e-mail address.",
        alert="Your mailbox is 95% full",
        hint=" At Google this reply is rarely a mistyped password.",
        address="info@kunde.test",
        mx_address="192.0.2.25",
        mx_hosts="mx1.kunde.test, mx2.kunde.test",
        failures="mx1.kunde.test (192.0.2.25): connection refused",
        # works over one IP family only
        works_address="192.0.2.7",
        fails_address="2001:db8::7",
        failure="refused",
        # folders after an IMAP login
        marked="\\Sent Sent",
        missing="\\Junk",
        folders="INBOX, Sent",
    )
    for code, spec in CATALOGUE.items():
        finding = make_finding(code, IMAPS, **facts)
        assert "{" not in finding.explanation + finding.fix, code
        assert spec.explanation and spec.fix and spec.title
        assert code.isupper()


def _sent(send):
    auth = AuthResult("ok", "PLAIN", "235 2.7.0 Authentication successful")
    return ok(SUBMISSION, tls=tls(), auth=auth, send=send)


def test_a_send_as_refusal_is_critical_and_quotes_the_rcpt_answer():
    send = SendCheck(
        "sender_rejected",
        "info@kunde.test",
        10240000,
        mail_reply="250 2.1.0 Ok",
        rcpt_reply="553 5.7.1 <info@kunde.test>: Sender address rejected: not owned by user web1",
    )
    findings = list(mailbox_findings([_sent(send)], user="web1"))
    rejected = next(f for f in findings if f.code == "SEND_SENDER_REJECTED")
    assert rejected.severity is Severity.CRITICAL
    assert "not owned by user web1" in rejected.explanation
    assert "SEND_SIZE_LIMIT" in codes(findings) and "SEND_OK" not in codes(findings)


def test_a_temporary_refusal_of_the_envelope_is_only_info():
    send = SendCheck("temporary", "a@kunde.test", None, mail_reply="451 4.3.0 Try again later")
    findings = list(mailbox_findings([_sent(send)]))
    refused = next(f for f in findings if f.code == "SEND_REFUSED")
    assert refused.severity is Severity.INFO and "451 4.3.0" in refused.explanation
    assert not {"SEND_SIZE_LIMIT", "SEND_SIZE_SMALL"} & set(codes(findings))


def test_the_size_warning_follows_the_threshold():
    send = SendCheck("accepted", "a@kunde.test", 20_000_000, "250 Ok", "250 Ok")
    assert "SEND_SIZE_LIMIT" in codes(mailbox_findings([_sent(send)]))
    strict = Thresholds(send_size_small_bytes=25_000_000)
    small = next(f for f in mailbox_findings([_sent(send)], strict) if f.code == "SEND_SIZE_SMALL")
    assert "20.0 MB" in small.explanation and "15.0 MB" in small.explanation


def _imap_login(mailbox):
    auth = AuthResult("ok", "PLAIN", "OK Logged in")
    return ok(IMAPS, tls=tls(), auth=auth, mailbox=mailbox)


def test_a_full_message_quota_names_folders_by_message_count():
    mailbox = MailboxFacts(
        quota=(QuotaResource("MESSAGE", 1000, 1000), QuotaResource("STORAGE", 10, 1_000_000)),
        folder_listing=FolderListing.SPECIAL_USE,
        folders=(
            Folder("INBOX", (), 300, 5_000_000),
            Folder("Papierkorb", ("\\Trash",), 650, 1_000_000),
            Folder("Spam", ("\\Junk",), 40, 200_000),  # under a tenth: not the first step
            Folder("Sent", ("\\Sent",), 10, 9_000_000),
        ),
        idle=True,
    )
    full = next(f for f in mailbox_findings([_imap_login(mailbox)]) if f.code == "QUOTA_FULL")
    assert "Here, emptying Papierkorb (650 messages) frees the most." in full.fix
    assert "The largest other folders: INBOX (300 messages), Spam (40 messages), Sent" in full.fix
    assert full.details["folder_space"][0] == {
        "name": "Papierkorb",
        "size": None,
        "size_bytes": 1_000_000,
        "messages": 650,
        "empty": True,
    }


def test_a_storage_quota_names_folders_by_size_in_german_too():
    from maildiag.i18n import localise

    mailbox = MailboxFacts(
        quota=(QuotaResource("STORAGE", 950_000, 1_000_000),),
        folder_listing=FolderListing.LIST,
        folders=(
            Folder("INBOX", (), 10, 300 * 1024**2),
            Folder("Trash", ("\\Trash",), 99, 1024**3),
        ),
        idle=True,
    )
    near = next(f for f in mailbox_findings([_imap_login(mailbox)]) if f.code == "QUOTA_NEAR_LIMIT")
    assert "emptying Trash (1.0 GiB) frees the most" in near.fix
    assert "The largest other folders: INBOX (300.0 MiB)." in near.fix
    german = localise(near, "de")
    assert "das Leeren von Trash (1.0 GiB)" in german.fix
    assert "Die größten übrigen Ordner: INBOX (300.0 MiB)." in german.fix


def test_without_measured_folders_the_quota_advice_is_as_before():
    mailbox = MailboxFacts(quota=(QuotaResource("STORAGE", 950, 1000),))
    near = next(f for f in mailbox_findings([_imap_login(mailbox)]) if f.code == "QUOTA_NEAR_LIMIT")
    assert "emptying" not in near.fix and near.details["folder_space"] == []
    assert not {"FOLDERS_SPECIAL_USE_OK", "FOLDERS_SPECIAL_USE_MISSING", "IMAP_IDLE_MISSING"} & set(
        codes(mailbox_findings([_imap_login(mailbox)]))
    )
