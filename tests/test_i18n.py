"""The German catalogue: complete, in step with the English texts, and rendering like them."""

from __future__ import annotations

import io
import string

import pytest
from babel.messages.pofile import write_po

from maildiag import i18n
from maildiag.analysis import analyse
from maildiag.findings import make_finding
from maildiag.model import Discovery, Endpoint, Outcome, Phase, ProbeResult, Protocol, Security
from tests import translations

# Words German uses as they are.
SAME_IN_BOTH = {"", "Port", "OK", "TLS", "ok", "PREAUTH", "no AUTH", "Login"}
SAME_IN_BOTH |= {"Code", "Status", "Domains", ":"}

IMAPS = Endpoint(Protocol.IMAP, "mail.kunde.example", 993, Security.TLS, ("guess",))


def placeholders(text: str) -> set[tuple[str, str]]:
    return {
        (field, spec or "")
        for _, field, spec, _ in string.Formatter().parse(text)
        if field is not None
    }


def words(text: str) -> str:
    """``text`` without its placeholders: what a translator translates."""
    return "".join(literal for literal, *_ in string.Formatter().parse(text)).strip()


@pytest.mark.parametrize("lang", translations.TRANSLATED)
def test_every_text_is_translated_and_nothing_is_fuzzy(lang: str) -> None:
    catalog = translations.updated(lang)
    by_key = {(m.context, m.id): m for m in catalog if m.id}
    for context, english in translations.english_texts():
        message = by_key.get((context, english))
        assert message is not None, f"{lang}: {context} has no entry for {english!r}"
        assert message.string, f"{lang}: {context} is not translated: {english!r}"
        assert not message.fuzzy, f"{lang}: {context} is fuzzy (the English text changed)"
        if words(english) not in SAME_IN_BOTH:
            assert message.string != english, f"{lang}: {context} is still English"


@pytest.mark.parametrize("lang", translations.TRANSLATED)
def test_translations_use_exactly_the_facts_of_the_english_text(lang: str) -> None:
    # The English texts render with the facts analysis passes (see
    # tests/test_analysis.py); the same placeholders, with the same format
    # specs, make the translation render with them too.
    for message in translations.read_catalog(lang):
        if message.id and message.string:
            assert placeholders(message.string) == placeholders(message.id), message.context


@pytest.mark.parametrize("lang", translations.TRANSLATED)
def test_po_and_mo_files_are_in_step_with_the_code(lang: str) -> None:
    po = io.BytesIO()
    write_po(
        po,
        translations.updated(lang),
        width=100,
        sort_output=False,
        omit_header=False,
        no_location=True,
    )
    path = translations.po_path(lang)
    assert po.getvalue() == path.read_bytes(), "run `make docs`"
    compiled = translations.compiled(translations.read_catalog(lang))
    assert compiled == path.with_suffix(".mo").read_bytes(), "run `make docs`"


def test_a_finding_from_analysis_reads_in_german_with_its_facts() -> None:
    finding = make_finding(
        "TLS_HOSTNAME_MISMATCH",
        IMAPS,
        hostname="mail.kunde.example",
        valid_for="web123.provider.example",
        suggestion="web123.provider.example",
    )
    german = i18n.localise(finding, "de")
    assert german.title == "Das Zertifikat ist für einen anderen Servernamen ausgestellt"
    assert "Tragen Sie im E-Mail-Programm als Server web123.provider.example" in german.fix
    assert "mail.kunde.example:993" in german.explanation
    assert (german.code, german.severity, german.details, german.endpoint) == (
        finding.code,
        finding.severity,
        finding.details,
        finding.endpoint,
    )
    assert i18n.localise(finding, "en") is finding


def test_every_finding_of_a_real_analysis_localises_without_placeholders() -> None:
    discovery = Discovery("kunde.example", "kunde.example", True, endpoints=(IMAPS,))
    refused = ProbeResult(IMAPS, Outcome.REFUSED, failed_phase=Phase.CONNECT)
    findings = analyse(discovery, [refused])
    assert findings
    for finding in findings:
        german = i18n.localise(finding, "de")
        for part in (german.title, german.explanation, german.fix):
            assert "{" not in part, (finding.code, part)
        assert german.severity is finding.severity


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LANG": "de_DE.UTF-8"}, "de"),
        ({"LANG": "de_AT.UTF-8"}, "de"),
        ({"LANG": "en_US.UTF-8"}, "en"),
        ({"LANG": "C"}, "en"),
        ({}, "en"),
        ({"LANG": "de_DE.UTF-8", "LC_ALL": "C"}, "en"),  # LC_ALL wins (POSIX)
        ({"LANG": "C", "LC_MESSAGES": "de_CH.UTF-8"}, "de"),
        ({"LANG": "en_GB.UTF-8", "MAILDIAG_LANG": "de"}, "de"),
        ({"LANG": "de_DE.UTF-8", "MAILDIAG_LANG": "en"}, "en"),
        ({"LANG": "fr_FR.UTF-8"}, "en"),
    ],
)
def test_the_language_comes_from_the_environment(environ: dict[str, str], expected: str) -> None:
    assert i18n.pick_language(None, environ) == expected


def test_an_explicit_language_beats_the_environment() -> None:
    assert i18n.pick_language("en", {"LANG": "de_DE.UTF-8"}) == "en"
    assert i18n.pick_language("de", {"LANG": "C"}) == "de"


def test_every_error_message_is_recognised_by_its_own_template() -> None:
    # The templates are tried in order; a more general one listed earlier
    # would swallow a message and give it the wrong German text.
    from maildiag import messages

    for template in messages.TEMPLATES:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name]
        facts = {name: f"'<{name}>'" for name in names}
        english = template.format(**facts)
        recognised = messages._recognised(english)
        assert recognised is not None and recognised[0] == template, (template, recognised)
        german = messages.translate(english, "de")
        assert all(value in german for value in facts.values()), german
        if words(template) not in SAME_IN_BOTH:
            assert german != english, template


def test_the_facts_that_are_words_read_in_german_too() -> None:
    # analysis passes some facts as English words (the phase, "SMTP submission",
    # the SRV record the endpoint came from): the German text gets them in German.
    submission = Endpoint(
        Protocol.SMTP, "mail.kunde.example", 587, Security.STARTTLS, ("srv:_submission._tcp",)
    )
    discovery = Discovery("kunde.example", "kunde.example", True, endpoints=(submission,))
    closed = ProbeResult(submission, Outcome.CLOSED, failed_phase=Phase.GREETING)
    findings = {f.code: f for f in analyse(discovery, [closed])}
    english = findings["CONNECTION_CLOSED"].explanation
    assert "during greeting" in english
    german = i18n.localise(findings["CONNECTION_CLOSED"], "de").explanation
    assert "während der Begrüßung getrennt" in german and "greeting" not in german
    contradiction = i18n.localise(findings["DISCOVERY_CONTRADICTION"], "de").explanation
    assert contradiction.startswith("Laut SRV-Eintrag _submission._tcp ist mail.kunde.example:587")
    assert "für SMTP (Postausgang) zuständig" in contradiction
    assert "(Verbindung getrennt)" in contradiction and "submission " not in contradiction
    assert "SRV record _submission._tcp" in findings["DISCOVERY_CONTRADICTION"].explanation


def test_a_date_in_a_german_text_is_written_the_german_way() -> None:
    expired = make_finding(
        "TLS_CERT_EXPIRED", IMAPS, not_after="2026-10-28", days_ago=35, what="IMAP"
    )
    assert "expired on 2026-10-28" in expired.explanation
    assert "ist am 28.10.2026 abgelaufen" in i18n.localise(expired, "de").explanation


def test_the_failure_over_one_address_family_is_worded_like_the_table() -> None:
    ipv6 = make_finding(
        "IPV6_FAILS",
        IMAPS,
        what="IMAP",
        works_address="192.0.2.1",
        fails_address="2001:db8::1",
        failure="timeout",
        fails_outcome="timeout",
    )
    assert "(2001:db8::1: timeout)" in ipv6.explanation
    assert "(2001:db8::1: keine Antwort)" in i18n.localise(ipv6, "de").explanation


def test_numbers_and_sizes_in_german_have_a_decimal_comma() -> None:
    slow = make_finding(
        "SYNC_DELIVERY_SLOW",
        user="a@kunde.example",
        delivery=12.25,
        delivery_method="idle",
        limit=10.0,
    )
    assert "after 12.2 s (idle; more than 10 s is slow)" in slow.explanation
    german = i18n.localise(slow, "de").explanation
    assert "erst nach 12,2 s im Posteingang (idle; mehr als 10 s ist langsam)" in german
    large = make_finding(
        "INBOX_LARGE",
        user="a@kunde.example",
        messages=12000,
        size="2.5 GiB",
        max_messages=10000,
        max_size="2.0 GiB",
    )
    german = i18n.localise(large, "de").explanation
    assert "12000 Nachrichten (2,5 GiB)" in german and "oder 2,0 GiB" in german


def test_a_fixed_reason_for_not_trying_the_password_reads_in_german() -> None:
    from maildiag.probes.mailbox import FOREIGN_HOST

    skipped = make_finding("AUTH_SKIPPED_FOREIGN_HOST", IMAPS, reason=FOREIGN_HOST, what="IMAP")
    assert FOREIGN_HOST in skipped.explanation
    german = i18n.localise(skipped, "de").explanation
    assert "gesendet: Nur ein Autoconfig-Dokument, für das das DNS der Domain nicht bürgt" in german


def test_the_reason_a_login_was_held_back_reads_in_german() -> None:
    finding = make_finding(
        "AUTH_SKIPPED_LOCKOUT",
        IMAPS,
        reason="IMAP mail.kunde.example:143 (starttls) already refused these credentials "
        "(wrong_credentials)",
        lockout="refused",
        lockout_where="IMAP mail.kunde.example:143 (starttls)",
        lockout_status="wrong_credentials",
        lockout_cause="AUTH_FAILED",
    )
    german = i18n.localise(finding, "de").explanation
    where = "IMAP mail.kunde.example:143 (starttls)"
    assert f"{where} hat diese Zugangsdaten bereits abgelehnt (falsches Passwort)" in german
    assert "already" not in german and "wrong_credentials" not in german
    assert finding.explanation.count("already refused these credentials") == 1
