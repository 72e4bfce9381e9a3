"""Logins offered before TLS: warn only when the password itself would go out.

PLAINTEXT_AUTH_ALLOWED used to fire for any login mechanism announced before
STARTTLS, CRAM-MD5 included. Now: PLAIN, LOGIN, IMAP LOGIN (no LOGINDISABLED)
warn; challenge-response, Kerberos and token mechanisms do not; POP3's USER
capability (RFC 2449 §6.6: the command exists, not that it works before
STLS) is an info finding, PLAINTEXT_AUTH_UNCLEAR. The fix names the setting
of the software that answered. Real servers: tests/test_courier_lab.py.
"""

from __future__ import annotations

import pytest

from maildiag.analysis import analyse
from maildiag.model import Endpoint, Outcome, ProbeResult, Protocol, Security
from maildiag.protocols.sasl import Exposure, exposure
from maildiag.servers import GENERIC_CLEARTEXT_LOGIN_SETTINGS
from tests.test_analysis import discovery
from tests.test_analysis import tls as tls_facts
from tests.test_probe_endpoint import STARTTLS_SLOTS, Behaviour, run, slot_id

HOST = "mail.kunde.test"
IMAP = Endpoint(Protocol.IMAP, HOST, 143, Security.STARTTLS, ("guess:mail.kunde.test",))
POP3 = Endpoint(Protocol.POP3, HOST, 110, Security.STARTTLS, ("guess:mail.kunde.test",))
SMTP = Endpoint(Protocol.SMTP, HOST, 587, Security.STARTTLS, ("guess:mail.kunde.test",))


def _findings(endpoint: Endpoint, greeting: str, capabilities: tuple[str, ...]):
    result = ProbeResult(
        endpoint,
        Outcome.OK,
        greeting=greeting,
        capabilities=capabilities,
        starttls_offered=True,
        plaintext_login_offered=True,
        tls=tls_facts(),
    )
    return [f for f in analyse(discovery(endpoint), [result]) if f.code.startswith("PLAINTEXT")]


@pytest.mark.parametrize(
    ("mechanism", "expected"),
    [
        ("PLAIN", Exposure.PASSWORD),
        ("login", Exposure.PASSWORD),
        ("CRAM-MD5", Exposure.NONE),
        ("DIGEST-MD5", Exposure.NONE),
        ("SCRAM-SHA-256-PLUS", Exposure.NONE),
        ("GSSAPI", Exposure.NONE),
        ("NTLM", Exposure.NONE),
        ("XOAUTH2", Exposure.NONE),  # a bearer token, not the password
        ("OAUTHBEARER", Exposure.NONE),
        ("USER", Exposure.UNCLEAR),
        ("X-UNHEARD-OF", Exposure.UNCLEAR),
    ],
)
def test_mechanism_exposure(mechanism: str, expected: Exposure) -> None:
    assert exposure(mechanism) is expected


# -- recorded capabilities ----------------------------------------------------------


def test_exim_cram_md5_before_starttls_is_no_warning():
    found = _findings(
        SMTP,
        "220 mx.kunde.test ESMTP Exim 4.96 Mon, 01 Jan 2024 12:00:00 +0000",
        ("SIZE 52428800", "8BITMIME", "PIPELINING", "AUTH CRAM-MD5", "STARTTLS", "HELP"),
    )
    assert found == []


def test_exim_plain_before_starttls_warns_with_the_exim_setting():
    found = _findings(
        SMTP,
        "220 mx.kunde.test ESMTP Exim 4.96 Mon, 01 Jan 2024 12:00:00 +0000",
        ("SIZE 52428800", "AUTH PLAIN LOGIN CRAM-MD5", "STARTTLS"),
    )
    assert [(f.code, f.severity.value) for f in found] == [("PLAINTEXT_AUTH_ALLOWED", "warning")]
    assert "(PLAIN, LOGIN)" in found[0].explanation  # CRAM-MD5 is not blamed
    assert "auth_advertise_hosts = ${if eq{$tls_in_cipher}{}{}{*}}" in found[0].fix
    assert found[0].details["software"] == "Exim"


def test_dovecot_cram_md5_with_logindisabled_is_no_warning():
    found = _findings(
        IMAP,
        "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS "
        "AUTH=CRAM-MD5 LOGINDISABLED] Dovecot (Debian) ready.",
        ("IMAP4rev1", "SASL-IR", "ID", "STARTTLS", "AUTH=CRAM-MD5", "LOGINDISABLED"),
    )
    assert found == []


def test_dovecot_login_command_before_starttls_warns_with_the_dovecot_setting():
    found = _findings(
        IMAP,
        "* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.",
        ("IMAP4rev1", "STARTTLS", "AUTH=PLAIN"),
    )
    assert [f.code for f in found] == ["PLAINTEXT_AUTH_ALLOWED"]
    assert "(LOGIN, PLAIN)" in found[0].explanation
    assert "disable_plaintext_auth = yes" in found[0].fix
    assert "auth_allow_cleartext = no" in found[0].fix  # Dovecot 2.4's name


def test_postfix_plain_before_starttls_names_smtpd_tls_auth_only():
    found = _findings(
        SMTP, "220 mail.kunde.test ESMTP Postfix (Debian/GNU)", ("PIPELINING", "AUTH PLAIN LOGIN")
    )
    assert [f.code for f in found] == ["PLAINTEXT_AUTH_ALLOWED"]
    assert "Postfix: smtpd_tls_auth_only = yes" in found[0].fix
    assert "Dovecot" not in found[0].fix


def test_courier_pop3_user_before_stls_is_unclear_and_names_pop3_tls_required():
    # Recorded from the Courier lab: CAPA before STLS.
    capa = (
        "STLS",
        "TOP",
        "USER",
        "LOGIN-DELAY 10",
        "PIPELINING",
        "UIDL",
        "UTF8 USER",
        "IMPLEMENTATION Courier Mail Server",
    )
    found = _findings(POP3, "+OK Hello there.", capa)
    assert [(f.code, f.severity.value) for f in found] == [("PLAINTEXT_AUTH_UNCLEAR", "info")]
    assert "Courier: POP3_TLS_REQUIRED=1" in found[0].fix
    assert "does not send a user name or password" in found[0].explanation


def test_pop3_sasl_plain_before_stls_is_a_warning_even_with_user():
    found = _findings(POP3, "+OK Dovecot ready.", ("STLS", "USER", "SASL PLAIN LOGIN"))
    assert [f.code for f in found] == ["PLAINTEXT_AUTH_ALLOWED"]
    assert "(PLAIN, LOGIN)" in found[0].explanation


def test_unknown_software_gets_the_settings_of_the_common_servers():
    found = _findings(IMAP, "* OK IMAP4rev1 server ready", ("IMAP4rev1", "STARTTLS"))
    assert [f.code for f in found] == ["PLAINTEXT_AUTH_ALLOWED"]
    assert GENERIC_CLEARTEXT_LOGIN_SETTINGS in found[0].fix
    assert found[0].details["software"] is None
    assert "{" + "setting}" not in found[0].fix


# -- scriptable servers on loopback: the probe and the analysis together ------------


def _plaintext_codes(slot, address, pki, behaviour):
    result, _, server = run(slot, address, pki, behaviour=behaviour)
    assert result.outcome is Outcome.OK, result.error
    findings = analyse(discovery(result.endpoint), [result])
    before_tls = [c.line for c in server.received if not c.tls]
    return [f for f in findings if f.code.startswith("PLAINTEXT")], before_tls


@pytest.mark.parametrize("slot", STARTTLS_SLOTS, ids=slot_id)
def test_cram_md5_only_before_tls_is_no_warning(slot, loopback_address, pki):
    found, before_tls = _plaintext_codes(slot, loopback_address, pki, Behaviour.CRAM_MD5_BEFORE_TLS)
    assert found == []
    # Nothing but capabilities and the upgrade was sent to find out.
    assert all(
        not line.upper().startswith((b"USER", b"AUTH", b"LOGIN")) and b"LOGIN " not in line.upper()
        for line in before_tls
    ), before_tls


@pytest.mark.parametrize("slot", STARTTLS_SLOTS, ids=slot_id)
def test_plain_before_tls_is_a_warning(slot, loopback_address, pki):
    found, _ = _plaintext_codes(slot, loopback_address, pki, Behaviour.PLAINTEXT_LOGIN)
    assert [(f.code, f.severity.value) for f in found] == [("PLAINTEXT_AUTH_ALLOWED", "warning")]
    assert "PLAIN" in found[0].explanation
