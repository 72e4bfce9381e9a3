"""The gettext catalogues of maildiag's translated texts, kept in step with the code.

The English texts in ``maildiag/findings.py`` are the source. ``sync()``
(called by ``make docs``) brings every ``maildiag/locale/<lang>/LC_MESSAGES/
maildiag.po`` up to date with them (Babel marks a changed English text fuzzy
and adds new ones untranslated) and compiles it to the ``.mo`` file that
``maildiag.i18n`` reads with the standard library's gettext. The tests check
that nothing is missing, fuzzy or stale.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

from maildiag.batch import TEXTS as BATCH_TEXTS
from maildiag.findings import (
    BLOCK_EVIDENCE,
    BLOCK_FAMILIES,
    CATALOGUE,
    CHAIN_INCOMPLETE_CLIENTS,
    LOGIN_HINTS,
    QUOTA_ADVICE,
    QUOTA_FOLDER_TEXTS,
    QUOTA_RESOURCES,
    USE_IMAP_TEXTS,
    USER_FORM_TEXTS,
    WHERE,
)
from maildiag.i18n import DOMAIN, LANGUAGES, LOCALE_DIR, fact_texts
from maildiag.messages import CONTEXT as CLI_CONTEXT
from maildiag.messages import TEMPLATES as CLI_TEMPLATES
from maildiag.report.codes import COLUMNS as CODES_COLUMNS
from maildiag.report.junit import TEXTS as JUNIT_TEXTS
from maildiag.report.nagios import TEXTS as NAGIOS_TEXTS
from maildiag.report.settings import TEXTS as SETTINGS_TEXTS
from maildiag.report.text import all_texts as report_texts

TRANSLATED = tuple(lang for lang in LANGUAGES if lang != "en")


def english_texts() -> Iterator[tuple[str, str]]:
    """(context, English text) of every text a translation must cover."""
    for spec in CATALOGUE.values():
        yield spec.code, spec.title
        yield spec.code, spec.explanation
        yield spec.code, spec.fix
    for has_aia, sentence in CHAIN_INCOMPLETE_CLIENTS.items():
        yield f"TLS_CHAIN_INCOMPLETE/clients/{'aia' if has_aia else 'no-aia'}", sentence
    for evidence, sentence in BLOCK_EVIDENCE.items():
        yield f"CLIENT_ADDRESS_BLOCKED/{evidence}", sentence
    yield "CLIENT_ADDRESS_BLOCKED/families", BLOCK_FAMILIES
    for resource, advice in QUOTA_ADVICE.items():
        yield f"QUOTA_ADVICE/{resource or 'other'}", advice
    for key, english in QUOTA_FOLDER_TEXTS.items():
        yield f"QUOTA_FOLDERS/{key}", english
    for resource in QUOTA_RESOURCES:
        yield "quota-resource", resource
    yield "ADVICE_USE_IMAP/where", WHERE
    for key, english in USE_IMAP_TEXTS.items():
        yield f"ADVICE_USE_IMAP/{key}", english
    for key, english in USER_FORM_TEXTS.items():
        yield f"AUTH_FAILED/user_form/{key}", english
    for hint, english in LOGIN_HINTS.items():
        yield f"AUTH_FAILED/hint/{hint}", english
    for english in SETTINGS_TEXTS.values():
        yield "settings", english
    yield from fact_texts()
    yield from report_texts()
    for column in CODES_COLUMNS:
        yield "codes", column
    for english in NAGIOS_TEXTS.values():
        yield "nagios", english
    for english in JUNIT_TEXTS.values():
        yield "junit", english
    for english in BATCH_TEXTS.values():
        yield "batch", english
    for template in CLI_TEMPLATES:
        yield CLI_CONTEXT, template


def template() -> Catalog:
    catalog = Catalog(domain=DOMAIN, project="maildiag", fuzzy=False)
    for context, english in english_texts():
        catalog.add(english, context=context)
    return catalog


def po_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalog(lang: str) -> Catalog:
    with po_path(lang).open("rb") as file:
        return read_po(file, locale=lang, domain=DOMAIN)


def compiled(catalog: Catalog) -> bytes:
    out = io.BytesIO()
    write_mo(out, catalog, use_fuzzy=False)
    return out.getvalue()


def updated(lang: str) -> Catalog:
    """The catalogue of ``lang`` brought in step with the English texts."""
    catalog = read_catalog(lang)
    catalog.update(
        template(), no_fuzzy_matching=False, update_header_comment=False, update_creation_date=False
    )
    catalog.obsolete.clear()  # texts the code no longer has
    return catalog


def write(lang: str, catalog: Catalog) -> None:
    po = io.BytesIO()
    write_po(po, catalog, width=100, sort_output=False, omit_header=False, no_location=True)
    po_path(lang).write_bytes(po.getvalue())
    po_path(lang).with_suffix(".mo").write_bytes(compiled(catalog))


def sync() -> None:
    for lang in TRANSLATED:
        write(lang, updated(lang))
