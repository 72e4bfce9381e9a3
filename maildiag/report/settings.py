"""The settings sheet in every format: for people (text, both languages), for scripts
(json), and as files mail clients import: Thunderbird autoconfig, Outlook
autodiscover (POX) and an Apple configuration profile. None carries a password.
"""

from __future__ import annotations

import json
import plistlib
import textwrap
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from typing import Any

from .. import i18n
from ..findings import render_text
from ..model import Protocol, Security
from ..protocols.registry import spec
from ..settings import ServerSetting, SettingsSheet

# Every text of the sheet, in English; the translations are in the gettext
# catalogue under the context "settings" (tests/translations.py collects them).
TEXTS: Mapping[str, str] = {
    "title": "Mail settings for {who}",
    "checked": "Checked on {when}. Only settings that worked in this check are listed.",
    "date": "%Y-%m-%d %H:%M UTC",
    "incoming": "Incoming mail server ({protocol})",
    "outgoing": "Outgoing mail server (SMTP)",
    "server": "Server",
    "port": "Port",
    "encryption": "Encryption",
    "username": "User name",
    "password": "Password",
    "authentication": "Authentication",
    "password_value": "the password of the mailbox",
    "auth_value": "Password, normal",
    "username_unchecked": "as the provider issued it (not checked: add --user)",
    "login_ok": "{user} (login checked)",
    "login_refused": "{user} (the login was refused: see maildiag check)",
    "smtp_auth": "Turn on 'My outgoing server (SMTP) requires authentication', with the same user "
    "name and password as for the incoming server.",
    "cert_name": "Not {used}: the server's certificate is issued for {host}, so only this "
    "name works without a certificate warning.",
    "none_safe": "{label}: no setting that works safely was found ({codes}). Run 'maildiag "
    "check {domain}' for the reasons and the fix. Do not set up the account until then.",
    "why_imap": "IMAP or POP3? Choose IMAP: the mail stays on the server, so every device "
    "(computer, phone, webmail) sees the same mailbox, folders and read marks. POP3 downloads "
    "the mail to one device and usually deletes it from the server.",
    "only_pop3": "Only POP3 works for this mailbox: set the mail client to leave a copy of "
    "each message on the server, or the other devices stop seeing the mail.",
    "alternative": "Alternatively {protocol}: {host}, port {port}, {encryption}.",
}

_ENCRYPTION = {Security.TLS: "SSL/TLS", Security.STARTTLS: "STARTTLS"}


def _t(lang: str, key: str, **facts: object) -> str:
    return render_text(i18n.text(lang, "settings", TEXTS[key]), facts)


def render_text_sheet(sheet: SettingsSheet, lang: str = "en", width: int = 80) -> str:
    who = sheet.user or sheet.domain
    when = sheet.diagnosis.started_at.strftime(i18n.text(lang, "settings", TEXTS["date"]))
    lines = [_t(lang, "title", who=who), _t(lang, "checked", when=when), ""]
    label_width = max(
        len(i18n.text(lang, "settings", TEXTS[k]))
        for k in ("server", "port", "encryption", "username", "password", "authentication")
    )

    def row(key: str, value: object) -> str:
        label = i18n.text(lang, "settings", TEXTS[key]) + ":"
        return f"  {label:<{label_width + 1}}  {value}"

    def server_rows(setting: ServerSetting) -> list[str]:
        rows = [
            row("server", setting.host),
            row("port", setting.port),
            row("encryption", _ENCRYPTION[setting.security]),
        ]
        if setting.certificate_name_of:
            rows.append(
                "  " + _t(lang, "cert_name", used=setting.certificate_name_of, host=setting.host)
            )
        return rows

    if sheet.incoming:
        first = sheet.incoming[0]
        lines.append(_t(lang, "incoming", protocol=spec(first.protocol).name))
        lines += server_rows(first)
        lines.append(row("username", _username(sheet, first, lang)))
        lines.append(row("password", _t(lang, "password_value")))
        lines.append(row("authentication", _t(lang, "auth_value")))
        lines.append("")
    if sheet.outgoing:
        lines.append(_t(lang, "outgoing"))
        lines += server_rows(sheet.outgoing)
        lines.append(row("authentication", _t(lang, "auth_value")))
        lines.append("  " + _t(lang, "smtp_auth"))
        lines.append("")
    for missing in sheet.unavailable:
        if missing.protocol is Protocol.POP3 and sheet.incoming:
            continue  # IMAP is set up; POP3 is only the alternative
        label = (
            _t(lang, "outgoing")
            if missing.protocol is Protocol.SMTP
            else _t(lang, "incoming", protocol=spec(missing.protocol).name)
        )
        codes = ", ".join(missing.codes) or "-"
        lines.append(_t(lang, "none_safe", label=label, codes=codes, domain=sheet.domain))
        lines.append("")
    if sheet.incoming:
        if sheet.incoming[0].protocol is Protocol.IMAP:
            lines.append(_t(lang, "why_imap"))
            for other in sheet.incoming[1:]:
                lines.append(
                    _t(
                        lang,
                        "alternative",
                        protocol=spec(other.protocol).name,
                        host=other.host,
                        port=other.port,
                        encryption=_ENCRYPTION[other.security],
                    )
                )
        else:
            lines.append(_t(lang, "only_pop3"))
    return "".join(_wrapped(line, width) + "\n" for line in lines).rstrip("\n") + "\n"


def _wrapped(line: str, width: int) -> str:
    indent = line[: len(line) - len(line.lstrip(" "))]
    if len(line) <= width:
        return line
    return textwrap.fill(
        line.strip(),
        width,
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _username(sheet: SettingsSheet, setting: ServerSetting, lang: str) -> str:
    if sheet.user is None:
        return _t(lang, "username_unchecked")
    if setting.login_verified is True:
        return _t(lang, "login_ok", user=sheet.user)
    if setting.login_verified is False:
        return _t(lang, "login_refused", user=sheet.user)
    return sheet.user


def _setting_json(setting: ServerSetting) -> dict[str, Any]:
    return {
        "protocol": setting.protocol.value,
        "host": setting.host,
        "port": setting.port,
        "security": setting.security.value,
        "login_verified": setting.login_verified,
        "certificate_name_of": setting.certificate_name_of,
    }


def render_json(sheet: SettingsSheet, lang: str = "en") -> str:
    document = {
        "kind": "maildiag-settings",
        "version": 1,
        "lang": lang,
        "domain": sheet.domain,
        "user": sheet.user,
        "status": sheet.status.name,
        "complete": sheet.complete,
        "incoming": [_setting_json(s) for s in sheet.incoming],
        "outgoing": _setting_json(sheet.outgoing) if sheet.outgoing else None,
        "unavailable": [
            {"protocol": m.protocol.value, "codes": list(m.codes)} for m in sheet.unavailable
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# --- files mail clients import ---------------------------------------------------------


def _xml(root: ET.Element) -> str:
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def render_autoconfig(sheet: SettingsSheet, lang: str = "en") -> str:
    """Thunderbird's config-v1.1.xml, for https://autoconfig.DOMAIN/mail/config-v1.1.xml."""
    root = ET.Element("clientConfig", version="1.1")
    provider = ET.SubElement(root, "emailProvider", id=sheet.domain)
    for tag in ("domain", "displayName", "displayShortName"):
        ET.SubElement(provider, tag).text = sheet.domain
    servers = [("incomingServer", s) for s in sheet.incoming]
    if sheet.outgoing:
        servers.append(("outgoingServer", sheet.outgoing))
    for tag, setting in servers:
        server = ET.SubElement(provider, tag, type=setting.protocol.value)
        ET.SubElement(server, "hostname").text = setting.host
        ET.SubElement(server, "port").text = str(setting.port)
        socket_type = "SSL" if setting.security is Security.TLS else "STARTTLS"
        ET.SubElement(server, "socketType").text = socket_type
        # %EMAILADDRESS% is filled in by the client (Thunderbird's placeholder).
        ET.SubElement(server, "username").text = sheet.user or "%EMAILADDRESS%"
        ET.SubElement(server, "authentication").text = "password-cleartext"
    return _xml(root)


_AUTODISCOVER = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
_OUTLOOK = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"


def render_autodiscover(sheet: SettingsSheet, lang: str = "en") -> str:
    """Outlook's POX autodiscover response (what /autodiscover/autodiscover.xml answers)."""
    root = ET.Element("Autodiscover", xmlns=_AUTODISCOVER)
    response = ET.SubElement(root, "Response", xmlns=_OUTLOOK)
    account = ET.SubElement(response, "Account")
    ET.SubElement(account, "AccountType").text = "email"
    ET.SubElement(account, "Action").text = "settings"
    for setting in (*sheet.incoming, *([sheet.outgoing] if sheet.outgoing else [])):
        protocol = ET.SubElement(account, "Protocol")
        ET.SubElement(protocol, "Type").text = spec(setting.protocol).name
        ET.SubElement(protocol, "Server").text = setting.host
        ET.SubElement(protocol, "Port").text = str(setting.port)
        ET.SubElement(protocol, "DomainRequired").text = "off"
        if sheet.user:
            ET.SubElement(protocol, "LoginName").text = sheet.user
        ET.SubElement(protocol, "SPA").text = "off"
        ET.SubElement(protocol, "SSL").text = "on"
        # Encryption beats SSL where Outlook knows it: SSL = implicit TLS, TLS = STARTTLS.
        encryption = "SSL" if setting.security is Security.TLS else "TLS"
        ET.SubElement(protocol, "Encryption").text = encryption
        ET.SubElement(protocol, "AuthRequired").text = "on"
        if setting.protocol is Protocol.SMTP:
            ET.SubElement(protocol, "UsePOPAuth").text = "on"
            ET.SubElement(protocol, "SMTPLast").text = "off"
    return _xml(root)


_PROFILE_NAMESPACE = uuid.UUID("8f0e6c55-4f5e-4d38-9a3c-6d61696c6469")  # maildiag's own


def render_mobileconfig(sheet: SettingsSheet, lang: str = "en") -> str:
    """An Apple configuration profile (iPhone, iPad, macOS) with one mail account.

    The identifiers are derived from domain and user, so installing a newer
    profile for the same mailbox replaces the old one instead of adding a twin.
    The device asks for the password when the profile is installed.
    """
    incoming = sheet.incoming[0] if sheet.incoming else None
    outgoing = sheet.outgoing
    if incoming is None or outgoing is None:
        raise ValueError("an incomplete settings sheet cannot be exported")
    key = f"{sheet.domain}/{sheet.user or ''}"
    reverse = ".".join(reversed(sheet.domain.split(".")))
    account: dict[str, Any] = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{reverse}.maildiag.mail",
        "PayloadUUID": str(uuid.uuid5(_PROFILE_NAMESPACE, key + "#account")).upper(),
        "PayloadDisplayName": sheet.user or sheet.domain,
        "EmailAccountDescription": sheet.user or sheet.domain,
        "EmailAccountType": "EmailTypeIMAP"
        if incoming.protocol is Protocol.IMAP
        else "EmailTypePOP",
        "IncomingMailServerHostName": incoming.host,
        "IncomingMailServerPortNumber": incoming.port,
        # Apple's "Use SSL" means TLS either way: implicit on 993/995/465,
        # STARTTLS on 143/110/587.
        "IncomingMailServerUseSSL": True,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": outgoing.host,
        "OutgoingMailServerPortNumber": outgoing.port,
        "OutgoingMailServerUseSSL": True,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingPasswordSameAsIncomingPassword": True,
    }
    if sheet.user:
        account["IncomingMailServerUsername"] = sheet.user
        account["OutgoingMailServerUsername"] = sheet.user
        if "@" in sheet.user:
            account["EmailAddress"] = sheet.user
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{reverse}.maildiag",
        "PayloadUUID": str(uuid.uuid5(_PROFILE_NAMESPACE, key)).upper(),
        "PayloadDisplayName": f"E-Mail {sheet.user or sheet.domain}",
        "PayloadContent": [account],
    }
    return plistlib.dumps(profile, sort_keys=True).decode()


Renderer = Callable[[SettingsSheet, str], str]

FORMATS: Mapping[str, Renderer] = {
    "text": render_text_sheet,
    "json": render_json,
    "autoconfig": render_autoconfig,
    "autodiscover": render_autodiscover,
    "mobileconfig": render_mobileconfig,
}
# Files a client imports must never set up half an account.
NEEDS_COMPLETE = frozenset({"autoconfig", "autodiscover", "mobileconfig"})
