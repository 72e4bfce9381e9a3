"""The language a report speaks, and the translated texts of the catalogue.

English is written in the code (the finding catalogue, ``findings.py``);
every other language lives in a gettext catalogue,
``maildiag/locale/<lang>/LC_MESSAGES/maildiag.po``, compiled to ``.mo`` by
``make docs``. The English text is the message id and the finding code (or
another key) its context, so two codes that happen to share a sentence can
still be translated differently.
"""

from __future__ import annotations

import gettext
import os
import re
from collections.abc import Callable, Mapping
from datetime import date
from functools import cache
from pathlib import Path

from msgspec.structs import replace

from .finding_codes import FindingCode
from .model import Finding

LANGUAGES = ("en", "de")
DOMAIN = "maildiag"
LOCALE_DIR = Path(__file__).parent / "locale"

# Checked in this order; the first one set decides (POSIX: LC_ALL overrides
# LC_MESSAGES overrides LANG). MAILDIAG_LANG comes first so a technician can
# have German reports without a German shell.
_LANGUAGE_VARIABLES = ("MAILDIAG_LANG", "LC_ALL", "LC_MESSAGES", "LANG")


def pick_language(requested: str | None = None, environ: Mapping[str, str] = os.environ) -> str:
    """``requested`` if given, else the language the environment asks for.

    A locale such as ``de_DE.UTF-8`` or ``de_AT`` means German; anything else
    (``C``, ``POSIX``, ``en_GB``, ``fr_FR``) means English.
    """
    if requested:
        return _language_of(requested)
    for name in _LANGUAGE_VARIABLES:
        value = environ.get(name, "")
        if value:
            return _language_of(value)
    return "en"


def _language_of(value: str) -> str:
    return "de" if value.strip().lower().startswith("de") else "en"


@cache
def _translations(lang: str) -> gettext.NullTranslations:
    if lang == "en":
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, localedir=LOCALE_DIR, languages=[lang], fallback=True)


def text(lang: str, context: str, english: str) -> str:
    """``english`` (written for ``context``, e.g. a finding code) in ``lang``.

    Falls back to the English text where a translation is missing; the
    catalogue tests make sure none is.
    """
    return _translations(lang).pgettext(context, english)


def localise(finding: Finding, lang: str) -> Finding:
    """``finding`` with its title, explanation and fix in ``lang``.

    The texts are rendered anew from the catalogue with the finding's own
    facts (its details and endpoint), so code, severity and details stay as
    they are: only what a person reads changes.
    """
    if lang == "en":
        return finding
    from .findings import CATALOGUE, render_text

    spec = CATALOGUE[finding.code]
    facts: dict[str, object] = dict(finding.details)
    if finding.endpoint is not None:
        facts = {
            "host": finding.endpoint.host,
            "port": finding.endpoint.port,
            "security": finding.endpoint.security.value,
            **facts,
        }
    facts.update(_sentence_facts(finding.code, facts, lang))
    return replace(
        finding,
        title=text(lang, spec.code, spec.title),
        explanation=render_text(text(lang, spec.code, spec.explanation), facts),
        fix=render_text(text(lang, spec.code, spec.fix), facts),
    )


# Facts that are words of their own language, not names: analysis passes them
# in English ("SMTP submission", the phase "greeting", " after TLS"), so they
# are translated as "fact/<name>" like any other text. Names (IMAP, hosts) are not.
SOURCE_SRV = "SRV record {record}"
SOURCE_AUTOCONFIG = "autoconfig file"
DATE = "%Y-%m-%d"  # how analysis writes dates; the translation is the local order
TLS_NAME = "{name} (implicit TLS)"
SIZE_UNKNOWN = "size unknown"
DECIMAL_MARK = "."  # translated: the decimal mark of numbers and sizes ("2,5 GiB")
# Facts that are sizes written with a decimal point ("2.5 GiB", "20.0 MB").
_SIZE_FACTS = ("size", "max_size", "used", "limit", "attachments")
_DECIMAL_SIZE = re.compile(r"\d+\.\d+ \w+")
# One certificate of TLS_SIGNATURE_WEAK's chain, by its place in the chain.
SIGNED = {
    "leaf": "its certificate {subject} signed with {hash} ({algorithm})",
    "intermediate": "the intermediate {subject} signed with {hash} ({algorithm})",
}


def _login_word(status: str, lang: str) -> str:
    """An AuthStatus value as the report's Login column words it, in ``lang``."""
    from .model import AuthStatus
    from .report.text import LOGIN_LABELS

    try:
        label = LOGIN_LABELS.get(AuthStatus(status))
    except ValueError:
        label = None
    return status if label is None else text(lang, "report/login", label)


def fact_texts() -> list[tuple[str, str]]:
    """(context, English) of the fact words, for the translation catalogue."""
    pairs = [
        (f"fact/{name}", english) for name, words in _fact_words().items() for english in words
    ]
    pairs += [("fact/source", SOURCE_SRV), ("fact/source", SOURCE_AUTOCONFIG), ("fact/date", DATE)]
    pairs += [("fact/tls_name", TLS_NAME), *(("fact/signed", text) for text in SIGNED.values())]
    pairs.append(("fact/decimal_mark", DECIMAL_MARK))
    from .probes.mailbox import LOCKOUT_REASONS

    pairs += [(f"fact/lockout/{kind}", english) for kind, english in LOCKOUT_REASONS.items()]
    return pairs


@cache
def _fact_words() -> dict[str, tuple[str, ...]]:
    from .analysis import OUTDATED_ONLY, _srv_description
    from .model import Phase
    from .probes.mailbox import FIXED_REASONS
    from .protocols.registry import SPECS, SRV_SERVICES

    long_names = [s.long_name for s in SPECS.values() if s.long_name != s.name]
    services = [_srv_description(service) for service in SRV_SERVICES]
    return {
        "what": tuple(dict.fromkeys((*long_names, *services))),
        "phase": (*(phase.value for phase in Phase), "the dialogue"),
        "where": (" after TLS",),
        "security": ("plain", "starttls", "tls"),
        "version": (OUTDATED_ONLY,),
        "size": (SIZE_UNKNOWN,),
        "reason": FIXED_REASONS,
    }


def _fact_words_in(facts: Mapping[str, object], lang: str) -> dict[str, object]:
    """The facts that are words (phases, what, reasons), numbers and dates, in ``lang``."""
    from .findings import render_text

    rebuilt: dict[str, object] = {}
    for name, words in _fact_words().items():
        value = facts.get(name)
        if isinstance(value, str) and value in words:
            rebuilt[name] = text(lang, f"fact/{name}", value)
    tls_name = facts.get("tls_name_of")
    if isinstance(tls_name, str):
        rebuilt["tls_name"] = render_text(text(lang, "fact/tls_name", TLS_NAME), {"name": tls_name})
    mark = text(lang, "fact/decimal_mark", DECIMAL_MARK)
    if mark != DECIMAL_MARK:
        for name, value in facts.items():
            if isinstance(value, float):
                rebuilt[name] = _Number(value, mark)
            elif name in _SIZE_FACTS and isinstance(value, str) and _DECIMAL_SIZE.fullmatch(value):
                rebuilt[name] = value.replace(DECIMAL_MARK, mark)
    for name in ("not_after", "not_before"):
        value = facts.get(name)
        if isinstance(value, str):
            try:
                day = date.fromisoformat(value)
            except ValueError:
                continue
            rebuilt[name] = day.strftime(text(lang, "fact/date", DATE))
    return rebuilt


class _Number(float):
    """A float that formats with another decimal mark: the templates keep their specs."""

    def __new__(cls, value: float, mark: str) -> _Number:
        number = super().__new__(cls, value)
        number.mark = mark
        return number

    mark: str

    def __format__(self, spec: str) -> str:
        return format(float(self), spec).replace(DECIMAL_MARK, self.mark)


def _sentence_facts(code: FindingCode, facts: Mapping[str, object], lang: str) -> dict[str, object]:
    """The facts that are sentences of their own (advice, ...), rebuilt in ``lang``."""
    from .findings import QUOTA_ADVICE, QUOTA_RESOURCES, quota_advice

    rebuilt = _fact_words_in(facts, lang)
    resource = facts.get("resource")
    if isinstance(resource, str) and resource.upper() in QUOTA_RESOURCES:
        rebuilt["resource"] = text(lang, "quota-resource", resource.upper())
    advice_for = facts.get("advice_for")
    if isinstance(advice_for, list) and all(key in QUOTA_ADVICE for key in advice_for):
        folder_space = facts.get("folder_space")
        rebuilt["advice"] = quota_advice(
            advice_for,
            folder_space if isinstance(folder_space, list) else [],
            lambda context, english: text(lang, context, english),
        )
    for rebuild in _CODE_FACTS.get(code, ()):
        rebuilt.update(rebuild(facts, lang))
    return rebuilt


# --- the facts only one finding (or a few) has, rebuilt per code -------------------

_Rebuild = Callable[[Mapping[str, object], str], dict[str, object]]


def _lockout_reason(facts: Mapping[str, object], lang: str) -> dict[str, object]:
    from .findings import render_text
    from .model import LockoutKind
    from .probes.mailbox import LOCKOUT_REASONS

    lockout = facts.get("lockout")
    if not isinstance(lockout, str) or lockout not in LOCKOUT_REASONS:
        return {}
    kind = LockoutKind(lockout)
    reason = render_text(
        text(lang, f"fact/lockout/{kind}", LOCKOUT_REASONS[kind]),
        {
            "where": facts.get("lockout_where", ""),
            "status": _login_word(str(facts.get("lockout_status", "")), lang),
            "cause": facts.get("lockout_cause", ""),
        },
    )
    return {"reason": reason}


def _contradiction_source(facts: Mapping[str, object], lang: str) -> dict[str, object]:
    from .findings import render_text

    source = facts.get("source")
    if not isinstance(source, str):
        return {}
    record = source.removeprefix("SRV record ")
    if record != source:
        return {"source": render_text(text(lang, "fact/source", SOURCE_SRV), {"record": record})}
    if source == SOURCE_AUTOCONFIG:
        return {"source": text(lang, "fact/source", SOURCE_AUTOCONFIG)}
    return {}


def _outcome_words(facts: Mapping[str, object], lang: str) -> dict[str, object]:
    """An Outcome, as the report's table words it (report.text.OUTCOMES)."""
    return {
        name: text(lang, "report/outcome", value)
        for name in ("outcome", "failure")
        if isinstance(value := facts.get(name), str)
    }


def _weak_signatures(facts: Mapping[str, object], lang: str) -> dict[str, object]:
    from .findings import render_text

    signed = facts.get("signed")
    if not isinstance(signed, list):
        return {}
    return {
        "weak_signatures": "; ".join(
            render_text(text(lang, "fact/signed", SIGNED[c["place"]]), c) for c in signed
        )
    }


def _chain_clients(facts: Mapping[str, object], lang: str) -> dict[str, object]:
    from .findings import CHAIN_INCOMPLETE_CLIENTS, render_text

    ca_issuers = facts.get("ca_issuers")
    if not isinstance(ca_issuers, list):
        return {}
    urls = [str(url) for url in ca_issuers]
    context = f"TLS_CHAIN_INCOMPLETE/clients/{'aia' if urls else 'no-aia'}"
    sentence = text(lang, context, CHAIN_INCOMPLETE_CLIENTS[bool(urls)])
    return {"clients": render_text(sentence, {"ca_issuers": ", ".join(urls)})}


def _use_imap(facts: Mapping[str, object], lang: str) -> dict[str, object]:
    from .findings import USE_IMAP_TEXTS, WHERE, render_text

    texts, where = facts.get("texts"), facts.get("where")
    if not (isinstance(texts, list) and isinstance(where, dict)):
        return {}
    place = render_text(text(lang, "ADVICE_USE_IMAP/where", WHERE), where)
    situation, advice = (
        render_text(text(lang, f"ADVICE_USE_IMAP/{key}", USE_IMAP_TEXTS[key]), {"where": place})
        for key in texts
    )
    return {"situation": situation, "advice": advice}


def _block_evidence(facts: Mapping[str, object], lang: str) -> dict[str, object]:
    from .findings import BLOCK_EVIDENCE, BLOCK_FAMILIES, BlockEvidence, render_text

    evidence = facts.get("evidence")
    if not isinstance(evidence, str) or evidence not in BLOCK_EVIDENCE:
        return {}
    kind = BlockEvidence(evidence)
    sentence = text(lang, f"CLIENT_ADDRESS_BLOCKED/{kind}", BLOCK_EVIDENCE[kind])
    rebuilt: dict[str, object] = {"seen": render_text(sentence, facts)}
    if facts.get("families"):
        families = text(lang, "CLIENT_ADDRESS_BLOCKED/families", BLOCK_FAMILIES)
        rebuilt["families"] = render_text(families, facts)
    return rebuilt


def _user_form(facts: Mapping[str, object], lang: str) -> dict[str, object]:
    from .findings import USER_FORM_TEXTS, render_text

    form = facts.get("user_form_key")
    if not (isinstance(form, str) and form in USER_FORM_TEXTS):
        return {}
    sentence = text(lang, f"AUTH_FAILED/user_form/{form}", USER_FORM_TEXTS[form])
    return {"user_form": render_text(sentence, {"user": facts.get("user", "")})}


def _login_hint(facts: Mapping[str, object], lang: str) -> dict[str, object]:
    from .findings import LOGIN_HINTS
    from .model import LoginHint

    hint = facts.get("hint_key")
    if not (isinstance(hint, str) and hint in set(LoginHint)):
        return {}
    kind = LoginHint(hint)
    return {"hint": text(lang, f"AUTH_FAILED/hint/{kind}", LOGIN_HINTS[kind])}


def _typed_suggestion(facts: Mapping[str, object], lang: str) -> dict[str, object]:
    if "suggestion" not in facts:
        return {}
    return {"suggestion": _suggestion(facts.get("suggested"), lang)}


_C = FindingCode
_CODE_FACTS: Mapping[FindingCode, tuple[_Rebuild, ...]] = {
    _C.AUTH_SKIPPED_LOCKOUT: (_lockout_reason,),
    _C.DISCOVERY_CONTRADICTION: (_contradiction_source, _outcome_words),
    _C.IPV6_FAILS: (_outcome_words,),
    _C.IPV4_FAILS: (_outcome_words,),
    _C.TLS_SIGNATURE_WEAK: (_weak_signatures,),
    _C.TLS_CHAIN_INCOMPLETE: (_chain_clients,),
    _C.ADVICE_USE_IMAP: (_use_imap,),
    _C.CLIENT_ADDRESS_BLOCKED: (_block_evidence,),
    _C.AUTH_FAILED: (_user_form, _login_hint),
    # The findings of check --typed: what to type instead, in the report's language.
    _C.TYPED_SSL_ON_STARTTLS_PORT: (_typed_suggestion,),
    _C.TYPED_STARTTLS_ON_TLS_PORT: (_typed_suggestion,),
    _C.TYPED_NO_ENCRYPTION: (_typed_suggestion,),
    _C.TYPED_NO_ENCRYPTION_REFUSED: (_typed_suggestion,),
    _C.TYPED_PORT_25: (_typed_suggestion,),
    _C.TYPED_USE_IMAP: (_typed_suggestion,),
}


def _suggestion(suggested: object, lang: str) -> str:
    from .model import Endpoint, Protocol
    from .typed import NO_SUGGESTION, SUGGESTION, TYPED_SECURITY, suggestion_text

    if not isinstance(suggested, dict):
        return text(lang, "typed/suggestion", NO_SUGGESTION)
    endpoint = Endpoint(
        Protocol(str(suggested["protocol"])),
        str(suggested["host"]),
        int(str(suggested["port"])),
        TYPED_SECURITY[str(suggested["security"])],
    )
    return suggestion_text(endpoint, text(lang, "typed/suggestion", SUGGESTION))
