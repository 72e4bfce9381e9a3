"""Server identification from recorded greetings (maildiag.servers)."""

from __future__ import annotations

import pytest

from maildiag.model import Protocol
from maildiag.servers import (
    GENERIC_CLEARTEXT_LOGIN_SETTINGS,
    Product,
    Software,
    cleartext_login_setting,
    identify_software,
)

# Greetings as real servers send them (first line, CRLF removed).
RECORDED = [
    (
        "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS "
        "AUTH=PLAIN] Dovecot (Debian) ready.",
        Software(Product.DOVECOT),
    ),
    ("+OK Dovecot (Debian) ready.", Software(Product.DOVECOT)),
    ("+OK Dovecot ready.", Software(Product.DOVECOT)),
    ("220 mail.example.net Dovecot ready.", Software(Product.DOVECOT)),
    (
        "* OK [CAPABILITY IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT "
        "THREAD=REFERENCES SORT QUOTA IDLE ACL ACL2=UNION STARTTLS ENABLE UTF8=ACCEPT] "
        "Courier-IMAP ready. Copyright 1998-2018 Double Precision, Inc.  See COPYING for "
        "distribution information.",
        Software(Product.COURIER),
    ),
    (
        "* OK [CAPABILITY IMAP4rev1 LITERAL+ ID ENABLE STARTTLS AUTH=PLAIN SASL-IR] "
        "imap.example.org Cyrus IMAP 3.6.1 server ready",
        Software(Product.CYRUS, "3.6.1"),
    ),
    (
        "+OK pop.example.org Cyrus POP3 v3.6.1 server ready <1234.1700000000@pop.example.org>",
        Software(Product.CYRUS, "3.6.1"),
    ),
    (
        "220 mx.example.com ESMTP Exim 4.96 Mon, 01 Jan 2024 12:00:00 +0000",
        Software(Product.EXIM, "4.96"),
    ),
    ("220 mail.example.com ESMTP Postfix (Debian/GNU)", Software(Product.POSTFIX)),
    (
        "220 EX01.corp.example Microsoft ESMTP MAIL Service ready at Mon, 1 Jan 2024 12:00:00 "
        "+0100",
        Software(Product.EXCHANGE),
    ),
    ("* OK The Microsoft Exchange IMAP4 service is ready.", Software(Product.EXCHANGE)),
    ("+OK The Microsoft Exchange POP3 service is ready.", Software(Product.EXCHANGE)),
    (
        "220 mail.example.com ESMTP Sendmail 8.17.1.9/8.17.1.9/Debian-2; Mon, 1 Jan 2024",
        Software(Product.SENDMAIL, "8.17.1.9"),
    ),
    ("220 mail.example.com ESMTP OpenSMTPD", Software(Product.OPENSMTPD)),
    ("* OK mail.example.com Zimbra IMAP4rev1 server ready", Software(Product.ZIMBRA)),
    (
        "* OK [CAPABILITY IMAP4REV1 I18NLEVEL=1 LITERAL+ SASL-IR LOGIN-REFERRALS STARTTLS] "
        "localhost IMAP4rev1 2007f.404 at Mon, 1 Jan 2024 12:00:00 +0000 (UTC)",
        Software(Product.UW_IMAP, "2007f.404"),
    ),
]


@pytest.mark.parametrize(("greeting", "expected"), RECORDED, ids=[str(e) for _, e in RECORDED])
def test_recorded_greetings(greeting: str, expected: Software) -> None:
    assert identify_software(greeting) == expected


@pytest.mark.parametrize(
    "greeting",
    [
        "220 mail.example.com ESMTP",  # Postfix with smtpd_banner = $myhostname ESMTP
        "* OK IMAP4rev1 server ready",
        "+OK Hello there.",  # Courier POP3's greeting names nothing by itself
        "220 exim.example.com ESMTP ready",  # a host name is not the software
        "* OK dovecot-01.example.net ready",
        "",
    ],
)
def test_generic_or_hidden_banners_are_not_guessed(greeting: str) -> None:
    assert identify_software(greeting) is None


def test_host_name_does_not_outvote_the_banner_word() -> None:
    assert identify_software("220 dovecot.example.com ESMTP Postfix") == Software(Product.POSTFIX)


def test_courier_pop3_is_known_by_its_capa_implementation_line() -> None:
    capa = (
        "TOP",
        "USER",
        "LOGIN-DELAY 10",
        "PIPELINING",
        "UIDL",
        "IMPLEMENTATION Courier Mail Server",
        "STLS",
    )
    assert identify_software("+OK Hello there.", capa) == Software(Product.COURIER)
    assert identify_software("+OK Hello there.", ("IMPLEMENTATION",)) is None


def test_none_and_hostile_input_never_raise() -> None:
    assert identify_software(None) is None
    assert identify_software("\x00\xff" * 10_000, ["IMPLEMENTATION " + "x" * 100_000]) is None


def test_setting_named_for_the_software_and_protocol() -> None:
    courier = Software(Product.COURIER)
    assert "POP3_TLS_REQUIRED=1" in cleartext_login_setting(courier, Protocol.POP3)
    assert "IMAP_TLS_REQUIRED=1" in cleartext_login_setting(courier, Protocol.IMAP)
    dovecot = cleartext_login_setting(Software(Product.DOVECOT), Protocol.IMAP)
    assert "disable_plaintext_auth = yes" in dovecot and "auth_allow_cleartext = no" in dovecot
    assert "smtpd_tls_auth_only = yes" in cleartext_login_setting(
        Software(Product.POSTFIX), Protocol.SMTP
    )
    assert "auth_advertise_hosts" in cleartext_login_setting(Software(Product.EXIM), Protocol.SMTP)
    assert "allowplaintext: no" in cleartext_login_setting(Software(Product.CYRUS), Protocol.IMAP)
    assert cleartext_login_setting(None, Protocol.IMAP) == GENERIC_CLEARTEXT_LOGIN_SETTINGS
