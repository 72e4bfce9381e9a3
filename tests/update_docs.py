"""`make docs`: regenerates the finding-code table in README.md from the catalogue."""

from __future__ import annotations

import re
from pathlib import Path

from maildiag.report.codes import render

README = Path(__file__).parents[1] / "README.md"


def main() -> None:
    text = README.read_text()
    table = render("markdown")
    updated = re.sub(r"(<!-- codes:start -->\n).*(<!-- codes:end -->)",
                     lambda m: m.group(1) + table + m.group(2), text, flags=re.S)
    README.write_text(updated)


if __name__ == "__main__":
    main()
