"""Which mail server software answered: greeting and capabilities -> product.

Pure and I/O-free. Used to name the *setting* of the software that answered in
a finding's fix ("Courier: POP3_TLS_REQUIRED=1" instead of a list of every
server's setting). Identification is best effort from what servers say about
themselves unasked — a banner is configurable (Postfix ``smtpd_banner``,
Dovecot ``login_greeting``, Exim ``smtp_banner``), so a missing or generic
banner gives ``None`` and callers fall back to generic wording. Nothing here
sends anything to find out more.

    >>> identify_software("* OK [CAPABILITY IMAP4rev1] Dovecot (Debian) ready.")
    Software(product=<Product.DOVECOT: 'Dovecot'>, version=None)
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable

from msgspec import Struct

from .model import Protocol


class Product(enum.StrEnum):
    """Stable identifiers; the value is the name people know the software by."""

    DOVECOT = "Dovecot"
    COURIER = "Courier"
    CYRUS = "Cyrus"
    EXIM = "Exim"
    POSTFIX = "Postfix"
    SENDMAIL = "Sendmail"
    OPENSMTPD = "OpenSMTPD"
    EXCHANGE = "Microsoft Exchange"
    ZIMBRA = "Zimbra"
    UW_IMAP = "UW IMAP"

    def __str__(self) -> str:
        return self.value


class Software(Struct, frozen=True):
    product: Product
    version: str | None = None  # only when the server volunteers it

    def __str__(self) -> str:
        return f"{self.product} {self.version}" if self.version else str(self.product)


_VERSION = r"v?(?P<version>\d+(?:\.\d+){1,3}[a-z]?)"


def _word(word: str) -> str:
    """``word`` standing alone: not part of a host name like dovecot.example.com."""
    return rf"(?<![\w.-]){word}(?![\w-]|\.\w)"


# Checked in order; the first match wins. Each pattern is a word the software
# itself writes into its default banner (see tests/test_servers.py for the
# recorded greetings), never a host name, so "220 dovecot.example.com ESMTP
# Postfix" is Postfix.
_GREETING_PATTERNS: tuple[tuple[Product, re.Pattern[str]], ...] = tuple(
    (product, re.compile(pattern, re.IGNORECASE))
    for product, pattern in (
        # "* OK [CAPABILITY ...] Dovecot (Debian) ready.", "+OK Dovecot ready.",
        # "220 host Dovecot ready." (Dovecot submission)
        (Product.DOVECOT, _word("Dovecot")),
        # "* OK [CAPABILITY ...] Courier-IMAP ready. Copyright 1998-2018 Double Precision, Inc."
        (Product.COURIER, _word("Courier-IMAP") + r"|\bDouble Precision, Inc\b"),
        # "* OK [CAPABILITY ...] host Cyrus IMAP 3.6.1 server ready",
        # "+OK host Cyrus POP3 v3.6.1 server ready <...>"
        (Product.CYRUS, _word("Cyrus") + rf" (?:IMAP|POP3)4?(?: (?:Murder )?{_VERSION})?"),
        # "220 host ESMTP Exim 4.96 Mon, 01 Jan 2024 ..."
        (Product.EXIM, _word("Exim") + rf"(?: {_VERSION})?"),
        # "220 host ESMTP Postfix (Debian/GNU)"
        (Product.POSTFIX, _word("Postfix")),
        # "220 host ESMTP Sendmail 8.17.1.9/8.17.1.9/Debian-2; Mon, ..."
        (Product.SENDMAIL, _word("Sendmail") + rf"(?: {_VERSION})?"),
        # "220 host ESMTP OpenSMTPD"
        (Product.OPENSMTPD, _word("OpenSMTPD")),
        # "220 host Microsoft ESMTP MAIL Service ready at ...",
        # "* OK The Microsoft Exchange IMAP4 service is ready.",
        # "+OK The Microsoft Exchange POP3 service is ready."
        (Product.EXCHANGE, r"\bMicrosoft ESMTP MAIL Service\b|\bMicrosoft Exchange\b"),
        # "* OK host Zimbra IMAP4rev1 server ready", "+OK host Zimbra POP3 server ready"
        (Product.ZIMBRA, _word("Zimbra")),
        # "* OK [CAPABILITY ...] host IMAP4rev1 2007f.404 at Mon, ..." (UW imapd)
        (Product.UW_IMAP, r"\bIMAP4rev1 (?P<version>20\d\d[a-z]?\.\d+) at\b"),
    )
)

# RFC 2449 §6.9: "IMPLEMENTATION <text>" in a POP3 CAPA answer. Courier's
# POP3 greeting ("+OK Hello there.") names nothing, but its CAPA does:
# "IMPLEMENTATION Courier Mail Server".
_IMPLEMENTATION_PATTERNS: tuple[tuple[Product, re.Pattern[str]], ...] = (
    (Product.COURIER, re.compile(r"\bCourier\b", re.IGNORECASE)),
    (Product.DOVECOT, re.compile(r"\bDovecot\b", re.IGNORECASE)),
    (Product.CYRUS, re.compile(r"\bCyrus\b", re.IGNORECASE)),
    (Product.ZIMBRA, re.compile(r"\bZimbra\b", re.IGNORECASE)),
)

MAX_SCAN = 512  # a greeting is one line; never scan more of untrusted text


def identify_software(greeting: str | None, capabilities: Iterable[str] = ()) -> Software | None:
    """The software that wrote ``greeting`` (and ``capabilities``), or None if unsure.

    ``greeting`` is the server's first line as text, with or without the status
    ("* OK", "+OK", "220"); ``capabilities`` are IMAP CAPABILITY atoms, POP3 CAPA
    lines or SMTP EHLO keywords, before or after TLS.
    """
    text = (greeting or "")[:MAX_SCAN]
    for product, pattern in _GREETING_PATTERNS:
        match = pattern.search(text)
        if match:
            version = match.groupdict().get("version")
            return Software(product, version)
    for capability in capabilities:
        name, _, rest = str(capability)[:MAX_SCAN].partition(" ")
        if name.upper() != "IMPLEMENTATION":
            continue
        for product, pattern in _IMPLEMENTATION_PATTERNS:
            if pattern.search(rest):
                return Software(product)
    return None


# The one setting per software (and protocol) that keeps a password-exposing
# login off the unencrypted connection. Configuration syntax, not prose: the
# sentence around it lives in the finding catalogue.
_CLEARTEXT_LOGIN_SETTINGS: dict[tuple[Product, Protocol | None], str] = {
    # Dovecot ≤ 2.3 name, and the 2.4 rename (doc.dovecot.org, "Upgrading 2.3 to 2.4").
    (Product.DOVECOT, None): "Dovecot: disable_plaintext_auth = yes "
    "(Dovecot 2.4: auth_allow_cleartext = no)",
    # /etc/courier/imapd and /etc/courier/pop3d; Courier then announces LOGINDISABLED.
    (Product.COURIER, Protocol.IMAP): "Courier: IMAP_TLS_REQUIRED=1 in /etc/courier/imapd",
    (Product.COURIER, Protocol.POP3): "Courier: POP3_TLS_REQUIRED=1 in /etc/courier/pop3d",
    (Product.COURIER, Protocol.SMTP): "Courier: ESMTPAUTH_TLS (and unset ESMTPAUTH) "
    "in /etc/courier/esmtpd",
    (Product.CYRUS, None): "Cyrus: allowplaintext: no in imapd.conf",
    (Product.POSTFIX, None): "Postfix: smtpd_tls_auth_only = yes",
    (Product.EXIM, None): "Exim: auth_advertise_hosts = ${if eq{$tls_in_cipher}{}{}{*}}",
    (Product.SENDMAIL, None): "Sendmail: define(`confAUTH_OPTIONS', `p')",
    (Product.OPENSMTPD, None): "OpenSMTPD: listen on ... tls auth (or smtps auth), not plain auth",
    (Product.EXCHANGE, Protocol.IMAP): "Exchange: Set-ImapSettings -LoginType SecureLogin",
    (Product.EXCHANGE, Protocol.POP3): "Exchange: Set-PopSettings -LoginType SecureLogin",
    (Product.EXCHANGE, Protocol.SMTP): "Exchange: Set-ReceiveConnector "
    "-AuthMechanism 'Tls, BasicAuth, BasicAuthRequireTLS'",
    (Product.ZIMBRA, Protocol.IMAP): "Zimbra: zimbraImapCleartextLoginEnabled FALSE",
    (Product.ZIMBRA, Protocol.POP3): "Zimbra: zimbraPop3CleartextLoginEnabled FALSE",
    (Product.ZIMBRA, Protocol.SMTP): "Zimbra: zimbraMtaTlsAuthOnly TRUE",
    (Product.UW_IMAP, None): "UW imapd: build with SSLTYPE=unix.nopwd or create "
    "/etc/c-client.cf with 'set disable-plaintext 1'",
}

GENERIC_CLEARTEXT_LOGIN_SETTINGS = (
    "Dovecot: disable_plaintext_auth = yes; Postfix: smtpd_tls_auth_only = yes; "
    "Courier: IMAP_TLS_REQUIRED=1 / POP3_TLS_REQUIRED=1; Exim: auth_advertise_hosts = "
    "${if eq{$tls_in_cipher}{}{}{*}}; Cyrus: allowplaintext: no"
)


def cleartext_login_setting(software: Software | None, protocol: Protocol) -> str:
    """The setting that refuses password logins before TLS, for this software.

    Unknown software gets the settings of the common servers, each named.
    """
    if software is None:
        return GENERIC_CLEARTEXT_LOGIN_SETTINGS
    product = software.product
    return (
        _CLEARTEXT_LOGIN_SETTINGS.get((product, protocol))
        or _CLEARTEXT_LOGIN_SETTINGS.get((product, None))
        or GENERIC_CLEARTEXT_LOGIN_SETTINGS
    )


# --- settings named in the fixes of other findings -------------------------------

_TLS_MIN_VERSION_SETTINGS: dict[Product, str] = {
    Product.POSTFIX: "Postfix: smtpd_tls_protocols = >=TLSv1.2 and "
    "smtpd_tls_mandatory_protocols = >=TLSv1.2",
    Product.DOVECOT: "Dovecot: ssl_min_protocol = TLSv1.2",
    Product.EXIM: "Exim: tls_require_ciphers = NORMAL:-VERS-TLS1.0:-VERS-TLS1.1 (GnuTLS builds "
    "such as Debian's) or openssl_options = +no_tlsv1 +no_tlsv1_1 (OpenSSL builds)",
    Product.COURIER: "Courier: TLS_PROTOCOL=TLSv1.2+ in imapd-ssl, pop3d-ssl and esmtpd-ssl "
    "(OpenSSL builds; GnuTLS builds: TLS_PRIORITY without VERS-TLS1.0/1.1)",
}

# RFC 8314 §3.3: implicit TLS from the first byte on 465, 993 and 995.
_IMPLICIT_TLS_SETTINGS: dict[tuple[Product, Protocol | None], str] = {
    (Product.EXIM, None): "Exim: tls_on_connect_ports = 465 (and 465 in daemon_smtp_ports)",
    (Product.POSTFIX, None): "Postfix: a submissions service on 465 in master.cf with "
    "-o smtpd_tls_wrappermode=yes",
    (Product.DOVECOT, Protocol.IMAP): "Dovecot: ssl = yes in service imap-login "
    "{ inet_listener imaps { port = 993 } }",
    (Product.DOVECOT, Protocol.POP3): "Dovecot: ssl = yes in service pop3-login "
    "{ inet_listener pop3s { port = 995 } }",
    (Product.COURIER, Protocol.IMAP): "Courier: run imapd-ssl (SSLPORT=993 in "
    "/etc/courier/imapd-ssl), not imapd, on 993",
    (Product.COURIER, Protocol.POP3): "Courier: run pop3d-ssl (SSLPORT=995 in "
    "/etc/courier/pop3d-ssl), not pop3d, on 995",
}
_IMPLICIT_TLS_SERVERS = {
    Protocol.SMTP: (Product.EXIM, Product.POSTFIX),
    Protocol.IMAP: (Product.DOVECOT, Product.COURIER),
    Protocol.POP3: (Product.DOVECOT, Product.COURIER),
}

_SUBMISSION_AUTH_SETTINGS: dict[Product, str] = {
    Product.POSTFIX: "Postfix: -o smtpd_sasl_auth_enable=yes -o smtpd_sasl_type=dovecot "
    "-o smtpd_sasl_path=private/auth on the submission and submissions services in master.cf "
    "(with Dovecot's auth service listening on that socket)",
    Product.EXIM: "Exim: authenticators for PLAIN and LOGIN (driver = dovecot, or driver = "
    "plaintext with a server_condition) and auth_advertise_hosts = "
    "${if eq{$tls_in_cipher}{}{}{*}}",
}


def _named(settings: dict[Product, str], software: Software | None) -> str:
    if software is not None and software.product in settings:
        return settings[software.product]
    return "; ".join(settings.values())


def tls_min_version_setting(software: Software | None) -> str:
    """The setting that switches TLS 1.0/1.1 off and 1.2+ on; every common one if unsure."""
    return _named(_TLS_MIN_VERSION_SETTINGS, software)


def submission_auth_setting(software: Software | None) -> str:
    """The setting that offers SMTP AUTH on a submission service."""
    return _named(_SUBMISSION_AUTH_SETTINGS, software)


def implicit_tls_setting(software: Software | None, protocol: Protocol) -> str:
    """The setting that makes the protocol's implicit-TLS port (465/993/995) speak TLS."""
    if software is not None:
        for key in ((software.product, protocol), (software.product, None)):
            if key in _IMPLICIT_TLS_SETTINGS:
                return _IMPLICIT_TLS_SETTINGS[key]
    return "; ".join(
        _IMPLICIT_TLS_SETTINGS.get((p, protocol)) or _IMPLICIT_TLS_SETTINGS[(p, None)]
        for p in _IMPLICIT_TLS_SERVERS[protocol]
    )
