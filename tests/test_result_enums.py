"""Results say why in enums, and everything that acts on a reason goes by its member
(issue 10, item 4): a reason no table knows fails here, not on a customer's screen."""

from __future__ import annotations

import re

import pytest

from maildiag import i18n
from maildiag.analysis import mailbox_findings
from maildiag.finding_codes import FindingCode
from maildiag.findings import CATALOGUE
from maildiag.model import (
    AuthResult,
    AuthStatus,
    Endpoint,
    LockoutKind,
    Outcome,
    ProbeResult,
    Protocol,
    Security,
    SendCheck,
    SendStatus,
    SkipReason,
    SourceKind,
)
from maildiag.probes.mailbox import LOCKOUT_REASONS

IMAPS = Endpoint(Protocol.IMAP, "mail.kunde.test", 993, Security.TLS, ("srv:_imaps._tcp",))

SKIP_FINDINGS = {
    SkipReason.LOCKOUT: FindingCode.AUTH_SKIPPED_LOCKOUT,
    SkipReason.NO_PILOT_VERDICT: FindingCode.AUTH_SKIPPED_LOCKOUT,
    SkipReason.UNTRUSTED_CERTIFICATE: FindingCode.AUTH_SKIPPED_UNTRUSTED,
    SkipReason.PLAINTEXT: FindingCode.AUTH_SKIPPED_PLAINTEXT,
    SkipReason.FOREIGN_HOST: FindingCode.AUTH_SKIPPED_FOREIGN_HOST,
}


@pytest.mark.parametrize("reason", list(SkipReason))
def test_every_reason_not_to_log_in_has_its_finding(reason: SkipReason) -> None:
    auth = AuthResult(AuthStatus.SKIPPED, None, "not tried: because", skipped_because=reason)
    result = ProbeResult.of(IMAPS, Outcome.OK, auth=auth)
    codes = [f.code for f in mailbox_findings([result], user="a@kunde.test")]
    assert codes == [SKIP_FINDINGS[reason]]
    assert set(SKIP_FINDINGS) == set(SkipReason)


def test_plain_values_become_members_so_identity_comparisons_hold() -> None:
    auth = AuthResult("skipped", None, None, skipped_because="plaintext")  # type: ignore[arg-type]
    assert auth.status is AuthStatus.SKIPPED
    assert auth.skipped_because is SkipReason.PLAINTEXT
    send = SendCheck("temporary", "a@kunde.test")  # type: ignore[arg-type]
    assert send.status is SendStatus.TEMPORARY
    with pytest.raises(ValueError):
        AuthResult("maybe", None, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", list(LockoutKind))
def test_every_lockout_kind_has_its_reason_in_every_language(kind: LockoutKind) -> None:
    english = LOCKOUT_REASONS[kind]
    assert i18n.text("de", f"fact/lockout/{kind}", english) != english


# The facts that i18n rebuilds per finding code, and the rebuilder of each.
PER_CODE_FACTS = {
    "suggestion": "_typed_suggestion",
    "seen": "_block_evidence",
    "families": "_block_evidence",
    "user_form": "_user_form",
    "hint": "_login_hint",
    "clients": "_chain_clients",
    "situation": "_use_imap",
    "weak_signatures": "_weak_signatures",
}


def _template_facts(code: FindingCode) -> set[str]:
    spec = CATALOGUE[code]
    return set(re.findall(r"\{(\w+)", spec.title + spec.explanation + spec.fix))


@pytest.mark.parametrize("fact", sorted(PER_CODE_FACTS))
def test_each_code_whose_text_has_a_sentence_fact_gets_it_rebuilt(fact: str) -> None:
    # The table replaces branches on code strings ("TYPED_" prefixes, == "AUTH_FAILED"):
    # a new code using {suggestion} without an entry would stay English in German.
    rebuild = getattr(i18n, PER_CODE_FACTS[fact])
    using = {code for code in FindingCode if fact in _template_facts(code)}
    # Its {suggestion} is a name from the certificate (analysis), not a typed setting.
    using.discard(FindingCode.TLS_HOSTNAME_MISMATCH)
    rebuilt = {code for code, steps in i18n._CODE_FACTS.items() if rebuild in steps}
    assert using and using == rebuilt


@pytest.mark.parametrize("kind", list(SourceKind))
def test_a_source_reads_back_as_its_kind(kind: SourceKind) -> None:
    assert SourceKind.of(kind.source()) is kind
    assert SourceKind.of(kind.source("mail.kunde.test")) is kind
    assert SourceKind.detail(kind.source("_imaps._tcp")) == "_imaps._tcp"
    assert kind.announced is (kind in (SourceKind.OPTION, SourceKind.SRV, SourceKind.AUTOCONFIG))


def test_sources_are_written_as_the_reports_always_printed_them() -> None:
    assert SourceKind.SRV.source("_imaps._tcp") == "srv:_imaps._tcp"
    assert SourceKind.GUESS.source("imap.kunde.test") == "guess:imap.kunde.test"
    assert SourceKind.AUTOCONFIG.source() == "autoconfig"
    assert SourceKind.of("somewhere") is None
