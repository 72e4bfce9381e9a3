"""The settings sheet and the technician's report against the real Dovecot/Postfix lab.

Zones of our own point a customer domain at one lab host each: the good
host, the host whose certificate is issued for the provider's name (the
shared-hosting case), and the host with an expired certificate.
"""

from __future__ import annotations

import json
import plistlib
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from maildiag.autoconfig import parse_autoconfig
from maildiag.cli import main
from maildiag.credentials_input import Credentials, Secret
from maildiag.discovery import Overrides
from maildiag.model import Protocol, Security, Status
from maildiag.report import settings as sheet_formats
from maildiag.runner import CheckRequest, diagnose
from maildiag.settings import SettingsSheet, build_sheet
from tests.lab.dns_server import DnsServer
from tests.lab.real import MailLab

pytestmark = pytest.mark.lab

DNS_ADDRESS = "127.0.4.9"
_SERVICES = (
    ("_imap._tcp", 143),
    ("_imaps._tcp", 993),
    ("_pop3._tcp", 110),
    ("_pop3s._tcp", 995),
    ("_submission._tcp", 587),
    ("_submissions._tcp", 465),
)


def _customer_zone(host: str) -> dict:
    zone: dict = {"@": {"MX": [f"10 {host}."]}}
    for service, port in _SERVICES:
        zone[service] = {"SRV": [f"0 1 {port} {host}."]}
    return zone


@pytest.fixture(scope="module")
def dns(mail_lab: MailLab):
    lab_zone: dict = {"@": {"MX": [f"10 {mail_lab.good.name}."]}}
    for name, address in mail_lab.dns.items():
        lab_zone[name.removesuffix(f".{mail_lab.domain}")] = {"A": [address]}
    provider, _, provider_zone = mail_lab.wrong_host_name.partition(".")
    zones = {
        mail_lab.domain: lab_zone,
        "kunde-gut.test": _customer_zone(mail_lab.good.name),
        "kunde-zwei.test": _customer_zone(mail_lab.good.name),
        "kunde-shared.test": _customer_zone(mail_lab.wrong_host.name),
        "kunde-abgelaufen.test": _customer_zone(mail_lab.expired.name),
        provider_zone: {provider: {"A": [mail_lab.wrong_host.address]}},
    }
    with DnsServer(zones, DNS_ADDRESS) as server:
        yield server


@pytest.fixture
def sheet_for(mail_lab: MailLab, dns: DnsServer):
    def build(domain: str, user=None) -> SettingsSheet:
        request = CheckRequest(
            domain,
            nameserver=dns.nameserver,
            ca_file=str(mail_lab.ca_pem_path),
            autoconfig=False,
            timeout=5,
            deadline=40,
            credentials=None if user is None else Credentials(user.address, Secret(user.password)),
        )
        return build_sheet(request, diagnose)

    return build


def _exports(sheet: SettingsSheet) -> dict[str, str]:
    return {name: render(sheet, "en") for name, render in sheet_formats.FORMATS.items()}


def test_a_healthy_domain_gets_imap_and_submission_with_implicit_tls(sheet_for, mail_lab):
    sheet = sheet_for("kunde-gut.test", mail_lab.alice)
    assert sheet.complete and sheet.status is Status.OK
    imap, pop3 = sheet.incoming
    assert (imap.protocol, imap.host, imap.port, imap.security) == (
        Protocol.IMAP,
        mail_lab.good.name,
        993,
        Security.TLS,
    )
    assert imap.login_verified is True
    assert (pop3.protocol, pop3.port) == (Protocol.POP3, 995)
    assert sheet.outgoing is not None
    assert (sheet.outgoing.port, sheet.outgoing.security) == (465, Security.TLS)
    assert sheet.unavailable == ()

    exports = _exports(sheet)
    for text in exports.values():
        assert mail_lab.alice.password not in text
    servers = parse_autoconfig(exports["autoconfig"].encode(), "kunde-gut.test")
    assert [(s.protocol, s.host, s.port, s.security) for s in servers] == [
        (Protocol.IMAP, mail_lab.good.name, 993, Security.TLS),
        (Protocol.POP3, mail_lab.good.name, 995, Security.TLS),
        (Protocol.SMTP, mail_lab.good.name, 465, Security.TLS),
    ]
    pox = ET.fromstring(exports["autodiscover"])
    ns = {"o": sheet_formats._OUTLOOK}
    protocols = [
        (p.findtext("o:Type", namespaces=ns), p.findtext("o:Port", namespaces=ns))
        for p in pox.iterfind(".//o:Protocol", ns)
    ]
    assert protocols == [("IMAP", "993"), ("POP3", "995"), ("SMTP", "465")]
    assert {
        p.findtext("o:LoginName", namespaces=ns) for p in pox.iterfind(".//o:Protocol", ns)
    } == {mail_lab.alice.address}
    profile = plistlib.loads(exports["mobileconfig"].encode())
    (account,) = profile["PayloadContent"]
    assert account["PayloadType"] == "com.apple.mail.managed"
    assert account["EmailAccountType"] == "EmailTypeIMAP"
    assert (account["IncomingMailServerHostName"], account["IncomingMailServerPortNumber"]) == (
        mail_lab.good.name,
        993,
    )
    assert account["OutgoingMailServerPortNumber"] == 465
    assert "IncomingPassword" not in account and "OutgoingPassword" not in account
    document = json.loads(exports["json"])
    assert document["complete"] is True and document["outgoing"]["port"] == 465

    german = " ".join(sheet_formats.render_text_sheet(sheet, "de").split())
    assert "Posteingangsserver (IMAP)" in german and "Postausgangsserver (SMTP)" in german
    assert "Verschlüsselung:" in german and "SSL/TLS" in german
    assert f"{mail_lab.alice.address} (Anmeldung geprüft)" in german
    assert "Wählen Sie IMAP" in german


def test_shared_hosting_gets_the_name_the_certificate_is_issued_for(sheet_for, mail_lab):
    sheet = sheet_for("kunde-shared.test")
    assert sheet.complete
    names = {s.host for s in (*sheet.incoming, sheet.outgoing) if s is not None}
    assert names == {mail_lab.wrong_host_name}
    assert {s.certificate_name_of for s in sheet.incoming} == {mail_lab.wrong_host.name}
    german = " ".join(sheet_formats.render_text_sheet(sheet, "de").split())
    assert (
        f"Nicht {mail_lab.wrong_host.name} eintragen: Das Zertifikat des Servers ist für" in german
    )
    assert "wie vom Provider vergeben (nicht geprüft" in german  # no --user


def test_the_shared_hosting_twin_keeps_the_domains_own_name(sheet_for, mail_lab):
    # The good host's certificate covers its name: nothing is renamed.
    sheet = sheet_for("kunde-gut.test")
    assert {s.certificate_name_of for s in sheet.incoming} == {None}


def test_an_expired_certificate_gives_no_settings_and_says_why(sheet_for, mail_lab):
    sheet = sheet_for("kunde-abgelaufen.test", mail_lab.alice)
    assert not sheet.complete and sheet.status is Status.CRITICAL
    assert sheet.incoming == () and sheet.outgoing is None
    assert {m.protocol for m in sheet.unavailable} == {Protocol.IMAP, Protocol.POP3, Protocol.SMTP}
    for missing in sheet.unavailable:
        assert "TLS_CERT_EXPIRED" in missing.codes
    text = " ".join(sheet_formats.render_text_sheet(sheet, "de").split())
    assert "Es wurde keine Einstellung gefunden, die sicher funktioniert (TLS_CERT_EXPIRED" in text
    assert mail_lab.expired.name not in text.replace("kunde-abgelaufen.test", "")
    with pytest.raises(ValueError):
        sheet_formats.render_mobileconfig(sheet, "en")


def test_an_explicit_host_override_is_kept_when_the_name_is_rechecked(sheet_for, mail_lab, dns):
    request = CheckRequest(
        "kunde-shared.test",
        overrides=Overrides(hosts={Protocol.SMTP: mail_lab.good.name}),
        nameserver=dns.nameserver,
        ca_file=str(mail_lab.ca_pem_path),
        autoconfig=False,
        timeout=5,
        deadline=40,
    )
    sheet = build_sheet(request, diagnose)
    assert sheet.outgoing is not None and sheet.outgoing.host == mail_lab.good.name
    assert {s.host for s in sheet.incoming} == {mail_lab.wrong_host_name}


@pytest.fixture
def settings_cli(mail_lab: MailLab, dns: DnsServer, capsys, monkeypatch):
    def run(domain: str, *args: str, user=None, env: dict[str, str] | None = None):
        for name in ("MAILDIAG_LANG", "LC_ALL", "LC_MESSAGES", "LANG", "MAILDIAG_PASSWORD"):
            monkeypatch.delenv(name, raising=False)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        argv = ["settings", domain, "--nameserver", dns.nameserver]
        argv += ["--ca-file", str(mail_lab.ca_pem_path), "--no-autoconfig", "--timeout", "5"]
        if user is not None:
            monkeypatch.setenv("MAILDIAG_PASSWORD", user.password)
            argv += ["--user", user.address]
        code = main([*argv, *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_the_settings_command_speaks_the_users_language(settings_cli, mail_lab):
    code, out, _ = settings_cli("kunde-gut.test", user=mail_lab.alice, env={"LANG": "de_DE.UTF-8"})
    assert code == 0
    assert out.startswith(f"E-Mail-Einstellungen für {mail_lab.alice.address}\n")
    assert max(len(line) for line in out.splitlines()) <= 80
    assert mail_lab.alice.password not in out
    code, out, _ = settings_cli("kunde-gut.test", "--lang", "en", env={"LANG": "de_DE.UTF-8"})
    assert code == 0 and out.startswith("Mail settings for kunde-gut.test\n")


def test_the_settings_command_writes_no_half_profile(settings_cli, mail_lab):
    code, out, err = settings_cli("kunde-abgelaufen.test", "--format", "mobileconfig")
    assert code == 2 and out == ""
    assert "TLS_CERT_EXPIRED" in err
    code, out, _ = settings_cli("kunde-gut.test", "--format", "mobileconfig")
    assert code == 0 and plistlib.loads(out.encode())["PayloadType"] == "Configuration"


def test_the_settings_command_refuses_to_write(settings_cli, mail_lab):
    code, _, err = settings_cli("kunde-gut.test", "--sync", user=mail_lab.alice)
    assert code == 3 and "--sync" in err


def lab_options(mail_lab: MailLab, dns: DnsServer) -> list[str]:
    """The options that point a command at the lab's DNS and CA, without autoconfig."""
    ca = str(mail_lab.ca_pem_path)
    return ["--nameserver", dns.nameserver, "--ca-file", ca, "--no-autoconfig", "--timeout", "5"]


# --- the check report of these domains: verdict first, one cause once, 80 columns ---


@pytest.fixture
def check_cli(mail_lab: MailLab, dns: DnsServer, capsys, monkeypatch):
    def run(domain: str, *args: str, env: dict[str, str] | None = None):
        for name in ("MAILDIAG_LANG", "LC_ALL", "LC_MESSAGES", "LANG", "COLUMNS"):
            monkeypatch.delenv(name, raising=False)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        argv = ["check", domain, "--nameserver", dns.nameserver, "--color", "never"]
        argv += ["--ca-file", str(mail_lab.ca_pem_path), "--no-autoconfig", "--timeout", "5"]
        code = main([*argv, *args])
        out, _ = capsys.readouterr()
        return code, out

    return run


def test_the_report_names_the_cause_first_and_once_in_german(check_cli, mail_lab):
    code, out = check_cli("kunde-abgelaufen.test", env={"LANG": "de_DE.UTF-8"})
    assert code == 2
    lines = out.splitlines()
    assert lines[0].startswith("maildiag check kunde-abgelaufen.test: KRITISCH")
    verdict = " ".join(" ".join(lines[1:4]).split())
    assert verdict.startswith(
        f"KRITISCH: Das Zertifikat ist abgelaufen ({mail_lab.expired.name}: "
        "IMAP 143, 993 · POP3 110, 995 · SMTP 587, 465). Erneuern Sie das Zertifikat"
    )
    assert out.count("TLS_CERT_EXPIRED") == 1  # six ports, one entry
    assert max(len(line) for line in lines) <= 80
    rows = [line for line in lines if line.startswith(("IMAP ", "POP3 ", "SMTP "))]
    assert len(rows) == 6 and all("Zertifikat abgelaufen" in row for row in rows)
    assert "ok, critical" not in out and "Warum: " in out and "Abhilfe: " in out


def test_the_shared_hosting_verdict_says_what_to_type(check_cli, mail_lab):
    code, out = check_cli("kunde-shared.test", "--lang", "de", env={"LANG": "C"})
    assert code == 2
    head = " ".join(" ".join(out.splitlines()[1:4]).split())
    assert head.startswith("KRITISCH: Das Zertifikat ist für einen anderen Servernamen")
    assert f"Tragen Sie im E-Mail-Programm als Server '{mail_lab.wrong_host_name}'" in head


def test_the_healthy_twin_has_no_verdict_and_english_follows_the_environment(check_cli):
    code, out = check_cli("kunde-gut.test", env={"LANG": "de_DE.UTF-8", "MAILDIAG_LANG": "en"})
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("maildiag check kunde-gut.test: OK") and lines[1] == ""
    assert "No problems found." in out


def test_a_wide_terminal_gets_every_column(check_cli):
    _, narrow = check_cli("kunde-gut.test", env={"COLUMNS": "80"})
    _, wide = check_cli("kunde-gut.test", env={"COLUMNS": "160"})
    assert "Found via" not in narrow and "Found via" in wide
    assert max(len(line) for line in narrow.splitlines()) <= 80


def test_json_carries_the_language_and_the_grouping_and_keeps_its_codes(check_cli):
    schema = json.loads(
        (Path(__file__).parents[1] / "maildiag/schema/report.schema.json").read_text()
    )
    _, german_out = check_cli("kunde-abgelaufen.test", "--format", "json", "--lang", "de")
    _, english_out = check_cli("kunde-abgelaufen.test", "--format", "json")
    german, english = json.loads(german_out), json.loads(english_out)
    for report in (german, english):
        jsonschema.validate(report, schema)
    assert (german["lang"], english["lang"]) == ("de", "en")
    assert [f["code"] for f in german["findings"]] == [f["code"] for f in english["findings"]]
    expired = [n for n, f in enumerate(german["findings"]) if f["code"] == "TLS_CERT_EXPIRED"]
    assert len(expired) == 6
    assert german["findings"][expired[0]]["title"] == "Das Zertifikat ist abgelaufen"
    (cause,) = [c for c in german["causes"] if c["code"] == "TLS_CERT_EXPIRED"]
    assert cause["findings"] == expired
    assert sorted(e["port"] for e in cause["endpoints"]) == [110, 143, 465, 587, 993, 995]
    covered = sorted(n for c in german["causes"] for n in c["findings"])
    assert covered == list(range(len(german["findings"])))  # every finding in one cause


# --- what the customer typed (--typed), each wrong setting with its working twin ---


def test_typed_settings_are_judged_as_the_client_would_meet_them(check_cli, mail_lab):
    good, wrong = mail_lab.good.name, mail_lab.wrong_host.name
    typed = [
        f"smtp:{good}:587:ssl",  # Postfix greets in plaintext: no TLS handshake ever
        f"smtp:{good}:587:starttls",
        f"imap:{good}:143:none",  # Dovecot: LOGINDISABLED before STARTTLS
        f"imap:{good}:143:starttls",
        f"imap:{good}:993:starttls",  # Dovecot waits for a ClientHello, never greets
        f"imap:{good}:993:ssl",
        f"smtp:{good}:25:starttls",
        f"pop3:{good}:995:ssl",
        f"imap:{wrong}:993:ssl",
        f"imap:nosuchhost.{mail_lab.domain}:993:ssl",
    ]
    args = [arg for text in typed for arg in ("--typed", text)]
    code, out = check_cli("kunde-gut.test", "--format", "json", "--timeout", "3", *args)
    report = json.loads(out)
    schema = json.loads(
        (Path(__file__).parents[1] / "maildiag/schema/report.schema.json").read_text()
    )
    jsonschema.validate(report, schema)
    assert code == 0  # the domain itself is healthy; the typed settings do not change that
    judged = {
        "{protocol}:{host}:{port}:{security}".format(**entry["setting"]): entry
        for entry in report["typed"]
    }
    assert list(judged) == typed

    def verdict(text: str) -> tuple[str, set[str], dict | None]:
        entry = judged[text]
        return entry["verdict"], {f["code"] for f in entry["findings"]}, entry["suggested"]

    def setting(protocol: str, port: int, security: str, host: str = good) -> dict:
        return {"protocol": protocol, "host": host, "port": port, "security": security}

    state, codes, suggested = verdict(f"smtp:{good}:587:ssl")
    assert (state, suggested) == ("fails", setting("smtp", 587, "starttls"))
    assert "TYPED_SSL_ON_STARTTLS_PORT" in codes
    assert verdict(f"smtp:{good}:587:starttls")[::2] == ("works", None)

    state, codes, suggested = verdict(f"imap:{good}:143:none")
    assert (state, suggested) == ("fails", setting("imap", 143, "starttls"))
    assert "TYPED_NO_ENCRYPTION_REFUSED" in codes
    assert verdict(f"imap:{good}:143:starttls")[::2] == ("works", None)

    state, codes, suggested = verdict(f"imap:{good}:993:starttls")
    assert (state, suggested) == ("fails", setting("imap", 993, "ssl"))
    assert "TYPED_STARTTLS_ON_TLS_PORT" in codes
    assert verdict(f"imap:{good}:993:ssl")[::2] == ("works", None)

    state, codes, suggested = verdict(f"smtp:{good}:25:starttls")
    assert (state, suggested) == ("fails", setting("smtp", 465, "ssl"))
    assert "TYPED_PORT_25" in codes

    state, codes, suggested = verdict(f"pop3:{good}:995:ssl")
    assert (state, codes, suggested) == ("warning", {"TYPED_USE_IMAP"}, setting("imap", 993, "ssl"))

    state, codes, _ = verdict(f"imap:{wrong}:993:ssl")
    assert state == "fails" and "TLS_HOSTNAME_MISMATCH" in codes
    state, codes, _ = verdict(f"imap:nosuchhost.{mail_lab.domain}:993:ssl")
    assert state == "fails" and "HOST_UNRESOLVED" in codes


def test_typed_settings_in_the_german_report(check_cli, mail_lab):
    good = mail_lab.good.name
    typed = ["--typed", f"smtp:{good}:587:ssl", "--typed", f"imap:{good}:143:none"]
    _, out = check_cli("kunde-gut.test", "--lang", "de", *typed)
    text = " ".join(out.split())
    assert "Eingabe des Kunden:" in text
    assert f"SMTP {good}:587 SSL/TLS: funktioniert nicht — SSL/TLS auf einem STARTTLS-Port" in text
    assert f"Tragen Sie stattdessen ein: SMTP, Server {good}, Port 587, STARTTLS." in text
    assert (
        f"IMAP {good}:143 ohne Verschlüsselung: funktioniert nicht — Keine Verschlüsselung" in text
    )


@pytest.mark.parametrize(
    "bad",
    [
        "imap:mail.example:143",
        "ftp:mail.example:21:ssl",
        "imap:mail.example:0:ssl",
        "imap:mail.example:143:tls",
    ],
)
def test_a_malformed_typed_setting_is_a_usage_error(check_cli, bad, capsys):
    code, _ = check_cli("kunde-gut.test", "--typed", bad)
    assert code == 3


# --- batch --user over worker processes (the password handed over once per worker) ---


@pytest.mark.parametrize("right", [True, False], ids=["right-password", "wrong-password"])
def test_batch_with_a_login_runs_over_worker_processes(
    mail_lab, dns, tmp_path, capsys, monkeypatch, right
):
    alice = mail_lab.alice
    password = alice.password if right else "not-" + alice.password
    monkeypatch.setenv("MAILDIAG_PASSWORD", password)
    domains = tmp_path / "domains.txt"
    domains.write_text("kunde-gut.test\nkunde-zwei.test\n")
    failed_before = mail_lab.failed_logins(alice.address)
    code = main(
        [
            "batch",
            str(domains),
            "--processes",
            "2",
            "--per-host",
            "2",
            "--no-progress",
            "--quiet",
            "--no-share-probes",
            "--user",
            alice.address,
            *lab_options(mail_lab, dns),
        ]
    )
    out, err = capsys.readouterr()
    assert "Traceback" not in err and password not in out + err
    reports = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["domain"] for r in reports) == ["kunde-gut.test", "kunde-zwei.test"]
    for report in reports:
        statuses = {(e.get("auth") or {}).get("status") for e in report["endpoints"]}
        if right:
            assert statuses == {"ok"}, report["domain"]
        else:
            # Lockout safety per check: one login tried, the others held back.
            assert list(statuses - {"skipped"}) == ["wrong_credentials"]
    if right:
        assert code == 0
    else:
        assert mail_lab.failed_logins(alice.address) - failed_before <= 2


# --- every other format and command speaks the language too ---


def test_nagios_output_in_german_keeps_the_plugin_keywords_and_perfdata(check_cli, mail_lab):
    _, german = check_cli("kunde-abgelaufen.test", "--format", "nagios", "--lang", "de")
    _, english = check_cli("kunde-abgelaufen.test", "--format", "nagios")
    head_de, head_en = german.splitlines()[0], english.splitlines()[0]
    # The status keyword and every perfdata label stay; the words change.
    assert head_de.startswith("MAILDIAG CRITICAL - kunde-abgelaufen.test: Das Zertifikat ist")
    assert head_de.split(" | ")[1].split("=")[0] == head_en.split(" | ")[1].split("=")[0]
    assert [i.split("=")[0] for i in head_de.split(" | ")[1].split()] == [
        i.split("=")[0] for i in head_en.split(" | ")[1].split()
    ]
    assert " und " not in head_en and "certificate EXPIRED" in english
    assert "Server-Ports (0 von 6 ohne Probleme):" in german
    assert "Zertifikat ABGELAUFEN" in german and "certificate" not in german.lower()


def test_junit_messages_in_german_keep_the_test_names(check_cli):
    _, german = check_cli("kunde-abgelaufen.test", "--format", "junit", "--lang", "de")
    _, english = check_cli("kunde-abgelaufen.test", "--format", "junit")
    names = [
        [case.get("name") for case in ET.fromstring(doc).iter("testcase")]
        for doc in (german, english)
    ]
    assert names[0] == names[1]
    failures = [f for f in ET.fromstring(german).iter("failure")]
    assert failures and all(f.get("message", "").startswith("Das Zertifikat") for f in failures)
    assert all("Abhilfe: " in (f.text or "") and "Fix: " not in (f.text or "") for f in failures)


@pytest.mark.parametrize(
    ("args", "german", "english"),
    [
        (["check"], "Das Argument 'DOMAIN' fehlt.", "Missing argument 'DOMAIN'."),
        (
            ["check", "kunde.test", "--timeout", "nan"],
            "Ungültiger Wert für '--timeout': 'nan' ist keine endliche Zahl.",
            "Invalid value for '--timeout': 'nan' is not a finite number.",
        ),
        (
            ["check", "https://kunde.test/webmail"],
            "sieht aus wie eine URL: Geben Sie nur die Domain an, etwa 'kunde.test'",
            "looks like a URL: give the domain only; try 'kunde.test'",
        ),
        (
            ["check", "kunde.test", "--typed", "imap:mail.kunde.test:143:tls"],
            "Als Verschlüsselung sind none, starttls oder ssl möglich",
            "SECURITY must be none, starttls or ssl",
        ),
        (
            ["settings", "kunde.test", "--nameserver", "1.2.3.4:99999"],
            "ungültiger Nameserver '1.2.3.4:99999': '99999' ist keine Portnummer",
            "bad nameserver '1.2.3.4:99999': '99999' is not a port number",
        ),
        (["frob"], "Den Befehl 'frob' gibt es nicht.", "No such command 'frob'."),
    ],
)
def test_error_messages_follow_the_language(args, german, english, capsys, monkeypatch):
    for name in ("MAILDIAG_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)
    assert main([*args, "--lang", "de"]) == 3
    _, err_flag = capsys.readouterr()
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    assert main(args) == 3
    _, err_env = capsys.readouterr()
    monkeypatch.setenv("LANG", "C")
    assert main(args) == 3
    _, err_en = capsys.readouterr()
    for err in (err_flag, err_env):
        assert german in err and err.count("\n") == 1, err
        assert "siehe '" in err or "Domain an" in err or "Verschlüsselung" in err
    assert english in err_en


def test_the_batch_summary_and_complaints_in_german(mail_lab, dns, tmp_path, capsys):
    domains = tmp_path / "domains.txt"
    domains.write_text("kunde-gut.test\nkunde-abgelaufen.test imap\nkunde-zwei.test frob=x\n")
    code = main(
        [
            "batch",
            str(domains),
            "--processes",
            "1",
            "--no-progress",
            "--lang",
            "de",
            *lab_options(mail_lab, dns),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert [json.loads(line)["lang"] for line in out.splitlines()] == ["en"]  # for programs
    assert "maildiag: Zeile 2: 'imap': Nach der Domain dürfen nur imap=SERVER" in err
    assert "maildiag: Zeile 3: unbekannter Schlüssel 'frob'; möglich sind imap, pop3, smtp" in err
    assert "maildiag batch: 1 Domains in " in err and "2 fehlerhafte Zeile(n) übersprungen" in err
    assert "Häufigste Befunde" in err or "Status" in err
