"""`make docs`: regenerates what is generated from the catalogue.

* the finding-code table in README.md;
* the ``enum`` of finding codes in maildiag/schema/report.schema.json, so the
  JSON Schema accepts exactly the codes maildiag can emit (tests/test_docs.py
  and tests/test_report_json.py check both);
* the translation catalogues in maildiag/locale/ (new or changed English texts
  become untranslated or fuzzy entries; tests/test_i18n.py fails until they
  are translated) and their compiled .mo files.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

from maildiag.findings import CATALOGUE
from maildiag.report.codes import render
from tests import translations

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
SCHEMA = ROOT / "maildiag" / "schema" / "report.schema.json"
# The one generated list in the schema; the rest of the file is written by hand.
_CODE_ENUM = re.compile(r'("code": \{"description": "[^"]*",\s*"enum": )\[[^\]]*\]')


def schema_with_codes(text: str) -> str:
    """The schema text with the finding-code enum set to the catalogue's codes."""
    codes = ", ".join(json.dumps(code) for code in sorted(CATALOGUE))
    lines = textwrap.wrap(codes, width=90, break_on_hyphens=False)
    listed = "[" + "\n                          ".join(lines) + "]"
    updated, count = _CODE_ENUM.subn(lambda m: m.group(1) + listed, text)
    if count != 1:
        raise SystemExit(f"{SCHEMA}: expected one finding-code enum, found {count}")
    return updated


def main() -> None:
    text = README.read_text()
    table = render("markdown")
    updated = re.sub(
        r"(<!-- codes:start -->\n).*(<!-- codes:end -->)",
        lambda m: m.group(1) + table + m.group(2),
        text,
        flags=re.S,
    )
    README.write_text(updated)
    SCHEMA.write_text(schema_with_codes(SCHEMA.read_text()))
    translations.sync()


if __name__ == "__main__":
    main()
