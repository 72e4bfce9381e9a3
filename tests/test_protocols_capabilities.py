"""Capabilities as data: what CAPABILITY, CAPA and EHLO announce, derived once."""

from __future__ import annotations

from maildiag.model import Protocol
from maildiag.protocols.capabilities import parse

DOVECOT_BEFORE_TLS = ("IMAP4REV1", "SASL-IR", "ID", "IDLE", "LITERAL+", "STARTTLS", "LOGINDISABLED")
DOVECOT_INSIDE_TLS = (
    "IMAP4REV1", "SASL-IR", "IDLE", "AUTH=PLAIN", "AUTH=LOGIN", "LIST-EXTENDED",
    "SPECIAL-USE", "QUOTA", "STATUS=SIZE", "UIDPLUS",
)  # fmt: skip


def test_imap_before_and_inside_tls() -> None:
    before = parse(Protocol.IMAP, DOVECOT_BEFORE_TLS)
    assert before.starttls and before.login_disabled
    assert before.login_names == () and not before.login_offered
    assert before.password_login() is None
    inside = parse(Protocol.IMAP, DOVECOT_INSIDE_TLS)
    assert inside.mechanisms == ("PLAIN", "LOGIN")
    assert inside.login_names == ("LOGIN", "PLAIN", "LOGIN")  # the command, then SASL
    assert inside.password_login() == "PLAIN"
    assert inside.sasl_ir and inside.idle and inside.quota and inside.status_size
    assert inside.special_use and inside.list_extended and inside.uidplus
    assert not inside.xlist and not inside.starttls


def test_imap_login_command_unless_logindisabled() -> None:
    caps = parse(Protocol.IMAP, ("IMAP4REV1", "AUTH=XOAUTH2"))
    assert caps.password_login() == "LOGIN"
    assert parse(Protocol.IMAP, ("IMAP4REV1", "QUOTA=RES-STORAGE")).quota  # RFC 9208


def test_pop3_with_and_without_capa() -> None:
    capa = parse(Protocol.POP3, ("TOP", "UIDL", "STLS", "USER", "SASL PLAIN LOGIN"))
    assert capa.starttls and capa.user_command
    assert capa.login_names == ("USER", "PLAIN", "LOGIN")
    assert capa.password_login() == "PLAIN"
    # RFC 2449 is optional: without CAPA, USER/PASS is presumed.
    none = parse(Protocol.POP3, ())
    assert not none.listed and none.login_names == ("USER",) and none.password_login() == "USER"
    # A CAPA answered, but listing no login at all (Courier with POP3_TLS_REQUIRED).
    empty = parse(Protocol.POP3, (), listed=True)
    assert empty.login_names == () and empty.password_login() is None
    assert parse(Protocol.POP3, ("SASL XOAUTH2",)).password_login() is None


def test_smtp_auth_in_both_spellings_once() -> None:
    caps = parse(
        Protocol.SMTP,
        ("PIPELINING", "SIZE 10240000", "AUTH PLAIN LOGIN", "AUTH=PLAIN LOGIN", "SMTPUTF8"),
    )
    assert caps.mechanisms == ("PLAIN", "LOGIN")
    assert caps.size_limit == 10240000 and caps.smtputf8 and not caps.starttls
    assert caps.password_login() == "PLAIN"
    assert parse(Protocol.SMTP, ("AUTH=LOGIN",)).password_login() == "LOGIN"
    assert parse(Protocol.SMTP, ("STARTTLS", "SIZE 0")).size_limit is None  # RFC 1870 §4
    assert parse(Protocol.SMTP, ("AUTH CRAM-MD5",)).password_login() is None
    assert parse(Protocol.SMTP, ("8BITMIME", "SMTPUTF8")).has("smtputf8")
