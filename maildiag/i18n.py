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
from collections.abc import Mapping
from dataclasses import replace
from functools import cache
from pathlib import Path

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
    return replace(
        finding,
        title=text(lang, spec.code, spec.title),
        explanation=render_text(text(lang, spec.code, spec.explanation), facts),
        fix=render_text(text(lang, spec.code, spec.fix), facts),
    )
